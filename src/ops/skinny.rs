//! GEMM for a few rows times a large matrix (`x @ kernel` for a batch of at most [`MAX_ROWS`]
//! samples, a single image's late convolutions): the `gemm` crate packs the whole right-hand matrix
//! first, which for 32 rows costs more than the product. Here the kernel is streamed once, row
//! block by row block, straight from where it lies; f32 with AVX-512 only (elsewhere `gemm` runs).

/// Up to this many rows the unpacked product beats `gemm` (measured: 2x at 32 rows with a 12 MB
/// kernel, even at 64, behind it from ~100 rows on).
pub(crate) const MAX_ROWS: usize = 64;

/// `c (m x n) = a (m x k) @ b (k x n)`, all row-major and contiguous, split over `tasks` threads by
/// column ranges; `None` where this CPU has no AVX-512 or a dimension is 0 (the caller runs `gemm`).
///
/// # Safety
/// `c` must be valid for `m * n` writes and overlap neither `a` (`m * k`) nor `b` (`k * n`).
pub(crate) unsafe fn gemm_f32(c: *mut f32, a: &[f32], b: &[f32], (m, k, n): (usize, usize, usize), tasks: usize) -> Option<()> {
    #[cfg(target_arch = "x86_64")]
    if m > 0 && k > 0 && n > 0 && a.len() >= m * k && b.len() >= k * n && std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F is present; the caller guarantees `c`, the slices' sizes are checked.
        unsafe { avx512::gemm(c, a, b, (m, k, n), tasks) };
        return Some(());
    }
    let _ = (c, a, b, m, k, n, tasks);
    None
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// Rows and columns of one register tile: 8 x 48 accumulators (24 of the 32 zmm registers).
    const MR: usize = 8;
    const NR: usize = 48;
    /// Rows of `b` per pass: a 64 x 48 panel (12 KB) stays in L1 while every row tile uses it, and
    /// consecutive panels read consecutive parts of the same 64 rows (contiguous memory streams).
    const KC: usize = 64;
    /// How many rows ahead of its use the first row tile prefetches `b` (measured: 8 beats 4 and 16).
    const PREFETCH_ROWS: usize = 8;

    struct SendPtr(*mut f32);
    // SAFETY: each task writes a disjoint column range of `c`.
    unsafe impl Send for SendPtr {}
    unsafe impl Sync for SendPtr {}

    impl SendPtr {
        /// Through a method, so that closures capture the wrapper (Sync), not its raw field.
        fn at(&self, offset: usize) -> *mut f32 {
            self.0.wrapping_add(offset)
        }
    }

    pub(super) unsafe fn gemm(c: *mut f32, a: &[f32], b: &[f32], (m, k, n): (usize, usize, usize), tasks: usize) {
        let panels = n.div_ceil(NR);
        let tasks = tasks.clamp(1, panels);
        let c = SendPtr(c);
        let run = |t: usize| {
            let (first, last) = (panels * t / tasks, panels * (t + 1) / tasks);
            for p0 in (0..k).step_by(KC) {
                let kc = (k - p0).min(KC);
                for panel in first..last {
                    let j = panel * NR;
                    let cols = (n - j).min(NR);
                    for i in (0..m).step_by(MR) {
                        // SAFETY: row `i..i+rows`, columns `j..j+cols` and rows `p0..p0+kc` lie inside
                        // the operands; this task alone writes columns `first*NR..last*NR` of `c`.
                        unsafe {
                            tile(
                                a.as_ptr().add(i * k + p0), k, (m - i).min(MR),
                                b.as_ptr().add(p0 * n + j), n, cols,
                                c.at(i * n + j), n, kc, p0 > 0, i == 0,
                            )
                        };
                    }
                }
            }
        };
        if tasks == 1 {
            run(0);
        } else {
            use rayon::prelude::*;
            (0..tasks).into_par_iter().for_each(run);
        }
    }

    /// Lanes of a 16-wide vector that hold columns, for `cols` columns left from its start.
    #[inline(always)]
    fn lanes(cols: isize) -> __mmask16 {
        if cols >= 16 {
            0xffff
        } else if cols <= 0 {
            0
        } else {
            ((1u32 << cols) - 1) as __mmask16
        }
    }

    /// `c[rows x cols] (+)= a[rows x kc] @ b[kc x cols]` for `rows <= 8`, `cols <= 48`: adds to `c`
    /// when `accumulate`, overwrites it otherwise. Missing rows repeat the last one (never stored);
    /// missing columns are masked off in every load and store.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile(
        a: *const f32, lda: usize, rows: usize,
        b: *const f32, ldb: usize, cols: usize,
        c: *mut f32, ldc: usize, kc: usize, accumulate: bool, prefetch: bool,
    ) {
        let cols = cols as isize;
        let mask = [lanes(cols), lanes(cols - 16), lanes(cols - 32)];
        let mut acc = [[_mm512_setzero_ps(); 3]; MR];
        let mut row = [a; MR];
        for (i, r) in row.iter_mut().enumerate() {
            *r = unsafe { a.add(i.min(rows - 1) * lda) };
        }
        if accumulate {
            for (i, acc) in acc.iter_mut().enumerate().take(rows) {
                for (v, acc) in acc.iter_mut().enumerate() {
                    *acc = unsafe { _mm512_maskz_loadu_ps(mask[v], c.add(i * ldc + 16 * v)) };
                }
            }
        }
        let mut bp = b;
        for p in 0..kc {
            if prefetch {
                let ahead = bp.wrapping_add(PREFETCH_ROWS * ldb) as *const i8;
                _mm_prefetch::<_MM_HINT_T0>(ahead);
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(128));
            }
            let bv = unsafe { [0, 1, 2].map(|v| _mm512_maskz_loadu_ps(mask[v], bp.add(16 * v))) };
            for i in 0..MR {
                let av = _mm512_set1_ps(unsafe { *row[i].add(p) });
                for v in 0..3 {
                    acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
                }
            }
            bp = bp.wrapping_add(ldb);
        }
        for (i, acc) in acc.iter().enumerate().take(rows) {
            for (v, acc) in acc.iter().enumerate() {
                unsafe { _mm512_mask_storeu_ps(c.add(i * ldc + 16 * v), mask[v], *acc) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(a: &[f32], b: &[f32], (m, k, n): (usize, usize, usize)) -> Vec<f32> {
        let mut c = vec![0f64; m * n];
        for i in 0..m {
            for p in 0..k {
                for j in 0..n {
                    c[i * n + j] += a[i * k + p] as f64 * b[p * n + j] as f64;
                }
            }
        }
        c.into_iter().map(|v| v as f32).collect()
    }

    #[test]
    fn matches_the_plain_product_on_ragged_shapes() {
        if !cfg!(target_arch = "x86_64") || !std::arch::is_x86_feature_detected!("avx512f") {
            // The dispatcher must then decline, so that `gemm` runs instead.
            assert!(unsafe { gemm_f32(std::ptr::null_mut(), &[1.0], &[1.0], (1, 1, 1), 1) }.is_none());
            return;
        }
        for &m in &[1, 3, 8, 9, 33, 64] {
            for &k in &[1, 5, 64, 65, 200] {
                for &n in &[1, 15, 16, 17, 47, 48, 49, 100, 145] {
                    let a: Vec<f32> = (0..m * k).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect();
                    let b: Vec<f32> = (0..k * n).map(|i| ((i * 53) % 97) as f32 / 48.0 - 1.0).collect();
                    let want = reference(&a, &b, (m, k, n));
                    for tasks in [1, 2, 5] {
                        // Guard cells after the output catch a store past column n or row m.
                        let mut c = vec![f32::NAN; m * n + 16];
                        unsafe { gemm_f32(c.as_mut_ptr(), &a, &b, (m, k, n), tasks) }.unwrap();
                        for (idx, (&got, &want)) in c.iter().zip(&want).enumerate() {
                            assert!((got - want).abs() <= 1e-4 * (1.0 + want.abs()), "{m}x{k}x{n} tasks {tasks} at {idx}: {got} vs {want}");
                        }
                        assert!(c[m * n..].iter().all(|v| v.is_nan()), "{m}x{k}x{n}: wrote past the output");
                    }
                }
            }
        }
    }

    #[test]
    fn declines_empty_products() {
        assert!(unsafe { gemm_f32(std::ptr::null_mut(), &[], &[], (0, 3, 4), 1) }.is_none());
        assert!(unsafe { gemm_f32(std::ptr::null_mut(), &[], &[], (2, 0, 4), 1) }.is_none());
    }
}
