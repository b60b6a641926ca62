//! The bfloat16 GEMM against its plain definition: every available kernel, ragged shapes, both
//! storage orders, accumulation; and the rounding against TensorFlow's rules.

use super::*;

/// Deterministic values in about [-2, 2) with a spread of magnitudes (bfloat16 rounds them).
fn numbers(len: usize, seed: usize) -> Vec<f32> {
    (0..len).map(|i| ((((i + 3 * seed) * 7919 + seed) % 2003) as f32 / 500.0 - 2.0) * (1.0 + (i % 7) as f32 * 0.013)).collect()
}

/// The definition: operands rounded to bfloat16, products and sums in f64; and the sum of the
/// products' magnitudes, which bounds float32 summation error.
fn reference(a: View, b: View, (m, k, n): (usize, usize, usize)) -> (Vec<f64>, Vec<f64>) {
    let (mut c, mut mag) = (vec![0f64; m * n], vec![0f64; m * n]);
    for i in 0..m {
        for j in 0..n {
            for p in 0..k {
                let x = widen(round(a.data[i * a.rs + p * a.cs])) as f64 * widen(round(b.data[p * b.rs + j * b.cs])) as f64;
                c[i * n + j] += x;
                mag[i * n + j] += x.abs();
            }
        }
    }
    (c, mag)
}

fn kernels() -> Vec<Kernel> {
    eprintln!("bf16 kernels on this machine: {:?}, chosen {:?}", [Kernel::Amx, Kernel::Avx512, Kernel::Plain].map(|k| (k, k.available())), kernel());
    [Kernel::Amx, Kernel::Avx512, Kernel::Plain].into_iter().filter(|k| k.available()).collect()
}

#[test]
fn every_kernel_matches_the_definition_on_ragged_shapes_and_both_orders() {
    let shapes = [(1, 1, 1), (3, 0, 5), (1, 27, 100), (5, 3, 7), (17, 33, 31), (32, 32, 32), (33, 64, 16), (40, 288, 64), (64, 100, 33), (3, 577, 45)];
    for kernel in kernels() {
        for &(m, k, n) in &shapes {
            for (oa, ob) in [(Order::Plain, Order::Plain), (Order::Plain, Order::Transposed), (Order::Transposed, Order::Plain)] {
                for threads in [Threads::One, Threads::All] {
                    let (da, db) = (numbers(m * k, m + n), numbers(k * n, k));
                    let (a, b) = (View::of(&da, oa, (m, k)), View::of(&db, ob, (k, n)));
                    let mut c = vec![f32::NAN; m * n];
                    // SAFETY: c holds m*n entries; the operands are checked by gemm_with.
                    unsafe { gemm_with(kernel, c.as_mut_ptr(), a, b, (m, k, n), None, threads) };
                    let (want, mag) = reference(a, b, (m, k, n));
                    for i in 0..m * n {
                        let tol = 2e-6 * mag[i] + 1e-6;
                        assert!(
                            (c[i] as f64 - want[i]).abs() <= tol,
                            "{kernel:?} {oa:?}/{ob:?} {threads:?} ({m}x{k}x{n}) entry {i}: {} vs {}",
                            c[i],
                            want[i]
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn accumulation_scales_the_old_values_and_the_product() {
    // Both ways of running aᵀ @ b: as stored, and as (bᵀ aᵀ)ᵀ where b is the narrower one.
    for (m, k, n) in [(35, 70, 50), (50, 70, 35)] {
        let (da, db) = (numbers(k * m, 1), numbers(k * n, 2));
        // aᵀ @ b stored (k x m): the kernel-gradient and SGD-update shape.
        let (a, b) = (View::of(&da, Order::Transposed, (m, k)), View::of(&db, Order::Plain, (k, n)));
        let (want, mag) = reference(a, b, (m, k, n));
        for kernel in kernels() {
            let old = numbers(m * n, 3);
            let mut c = old.clone();
            // SAFETY: c holds m*n entries.
            unsafe { gemm_with(kernel, c.as_mut_ptr(), a, b, (m, k, n), Some((1.0, -0.5)), Threads::All) };
            for i in 0..m * n {
                let expect = old[i] as f64 - 0.5 * want[i];
                assert!((c[i] as f64 - expect).abs() <= 2e-6 * mag[i] + 1e-6, "{kernel:?} ({m}x{k}x{n}) entry {i}: {} vs {expect}", c[i]);
            }
        }
    }
}

#[test]
fn results_lie_within_bfloat16_rounding_of_the_float32_product() {
    let (m, k, n) = (31, 129, 47);
    let (da, db) = (numbers(m * k, 5), numbers(k * n, 6));
    let mut c = vec![0f32; m * n];
    // SAFETY: c holds m*n entries.
    unsafe { gemm(c.as_mut_ptr(), View::of(&da, Order::Plain, (m, k)), View::of(&db, Order::Plain, (k, n)), (m, k, n), None, Threads::All) };
    for i in 0..m {
        for j in 0..n {
            let (exact, mag): (f64, f64) = (0..k).fold((0.0, 0.0), |(s, g), p| {
                let x = da[i * k + p] as f64 * db[p * n + j] as f64;
                (s + x, g + x.abs())
            });
            // Each operand moves by at most 2^-9 of itself, so each product by about 2^-8.
            assert!((c[i * n + j] as f64 - exact).abs() <= mag * 2f64.powi(-8), "({i}, {j}): {} vs {exact}", c[i * n + j]);
        }
    }
}

#[test]
fn rounding_is_to_nearest_even_and_keeps_specials() {
    assert_eq!(round(1.0), 0x3f80);
    // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even one (1.0).
    assert_eq!(round(1.0 + 2f32.powi(-8)), 0x3f80);
    // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: up.
    assert_eq!(round(1.0 + 3.0 * 2f32.powi(-8)), 0x3f82);
    assert_eq!(round(1.0 + 2f32.powi(-8) + 2f32.powi(-20)), 0x3f81);
    assert_eq!(round(-2.5), 0xc020);
    assert_eq!(round(f32::INFINITY), 0x7f80);
    assert_eq!(round(f32::MAX), 0x7f80, "the largest float32 rounds up to infinity, as TensorFlow's cast");
    assert!(widen(round(f32::NAN)).is_nan());
    assert!(widen(round(-f32::NAN)).is_nan());
}

#[test]
fn rounding_agrees_with_the_half_crate_over_a_sweep_of_bit_patterns() {
    // Every 4099th float32 bit pattern: normals, subnormals, infinities and NaNs of both signs.
    for bits in (0..=u32::MAX).step_by(4099) {
        let x = f32::from_bits(bits);
        let want = half::bf16::from_f32(x);
        if x.is_nan() {
            assert!(widen(round(x)).is_nan());
        } else {
            assert_eq!(round(x), want.to_bits(), "{x:e} ({bits:#x})");
        }
    }
}

#[test]
fn the_chosen_kernel_is_available_and_named() {
    let k = kernel();
    assert!(k.available());
    assert!(!k.name().is_empty());
}

mod layers {
    //! Conv2D and Dense in bfloat16 equal the full-precision ops run on bfloat16-rounded operands
    //! (within float32 summation error), forward and both gradients, on every convolution path.
    use super::{numbers, round, widen};
    use crate::ops::bf16::Precision;
    use crate::ops::conv::{conv2d, conv2d_backward, with_path, Path};
    use crate::ops::linear::{backward, linear};
    use crate::ops::Window;
    use candle_core::{Device, Tensor};

    fn tensor(v: &[f32], shape: &[usize]) -> Tensor {
        Tensor::from_slice(v, shape, &Device::Cpu).unwrap()
    }

    fn rounded(v: &[f32]) -> Vec<f32> {
        v.iter().map(|&x| widen(round(x))).collect()
    }

    fn flat(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    fn close(got: &Tensor, want: &Tensor, what: &str) {
        let (g, w) = (flat(got), flat(want));
        assert_eq!(g.len(), w.len(), "{what}");
        let scale = w.iter().fold(0f32, |m, v| m.max(v.abs())).max(1.0);
        for (i, (a, b)) in g.iter().zip(&w).enumerate() {
            assert!((a - b).abs() <= 2e-5 * scale, "{what} entry {i}: {a} vs {b}");
        }
    }

    #[test]
    fn conv2d_in_bfloat16_is_the_float32_conv_of_rounded_operands_on_every_path() {
        // (input h, w, c; kernel; filters; same): a small kernel (grouped path), a large one and a
        // 1x1 (never Winograd's).
        for &((h, w, c), k, f, same) in &[((7, 6, 3), 3, 5, true), ((6, 5, 40), 3, 40, false), ((5, 5, 130), 1, 20, true)] {
            let n = 3;
            let win = Window::new((h, w), (k, k), (1, 1), same).unwrap();
            let x = numbers(n * h * w * c, 1);
            let kern = numbers(k * k * c * f, 2);
            let b = numbers(f, 3);
            let dy = numbers(n * win.out_h * win.out_w * f, 4);
            for path in [Path::Grouped, Path::Batch, Path::Winograd] {
                with_path(path, || {
                    let run = |x: &[f32], kern: &[f32], dy: &[f32], p: Precision| {
                        let (xt, kt) = (tensor(x, &[n, h, w, c]), tensor(kern, &[k, k, c, f]));
                        let (y, cols) = conv2d(&xt, &kt, &tensor(&b, &[f]), win, None, true, p).unwrap();
                        let dyt = tensor(dy, &[n, win.out_h, win.out_w, f]);
                        let (dx, dw, _) = conv2d_backward(&xt, cols.as_ref(), &kt, &dyt, win, true, p).unwrap();
                        (y, dx.unwrap(), dw.value(&kt).unwrap())
                    };
                    let got = run(&x, &kern, &dy, Precision::Bf16);
                    let what = format!("{path:?} {h}x{w}x{c} k{k} f{f}");
                    if path == Path::Winograd && crate::ops::winograd::fits(&win) {
                        // Winograd's products round the transformed tiles, not the operands:
                        // within bfloat16's rounding of the float32 result, and not equal to it.
                        let exact = run(&x, &kern, &dy, Precision::Full);
                        for (g, e, part) in [(&got.0, &exact.0, "output"), (&got.1, &exact.1, "input gradient"), (&got.2, &exact.2, "kernel gradient")] {
                            let (g, e) = (flat(g), flat(e));
                            let scale = e.iter().fold(0f32, |m, v| m.max(v.abs()));
                            let worst = g.iter().zip(&e).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                            assert!(worst <= scale * 2e-2 && worst > 0.0, "{what} {part}: off by {worst} at scale {scale}");
                        }
                        return;
                    }
                    let want = run(&rounded(&x), &rounded(&kern), &rounded(&dy), Precision::Full);
                    close(&got.0, &want.0, &format!("{what} output"));
                    close(&got.1, &want.1, &format!("{what} input gradient"));
                    close(&got.2, &want.2, &format!("{what} kernel gradient"));
                });
            }
        }
    }

    #[test]
    fn dense_in_bfloat16_is_the_float32_dense_of_rounded_operands() {
        for &(m, k, n) in &[(1, 5, 3), (32, 100, 10), (70, 33, 65)] {
            let (x, w, b, dy) = (numbers(m * k, 1), numbers(k * n, 2), numbers(n, 3), numbers(m * n, 4));
            let run = |x: &[f32], w: &[f32], dy: &[f32], p: Precision| {
                let (xt, wt) = (tensor(x, &[m, k]), tensor(w, &[k, n]));
                let y = linear(&xt, &wt, &tensor(&b, &[n]), None, p).unwrap();
                let (dx, (lhs, rhs), _) = backward(&xt, &wt, &tensor(dy, &[m, n]), true, p).unwrap();
                let dw = crate::ops::grad::Grad::Product { lhs, rhs, precision: p }.value(&wt).unwrap();
                (y, dx.unwrap(), dw)
            };
            let got = run(&x, &w, &dy, Precision::Bf16);
            let want = run(&rounded(&x), &rounded(&w), &rounded(&dy), Precision::Full);
            close(&got.0, &want.0, &format!("dense ({m}x{k}x{n}) output"));
            close(&got.1, &want.1, &format!("dense ({m}x{k}x{n}) input gradient"));
            close(&got.2, &want.2, &format!("dense ({m}x{k}x{n}) kernel gradient"));
        }
    }
}
