//! Channels-last average pooling with TensorFlow's rule for 'same' padding (an output is the mean
//! of the window cells inside the image; padding cells are not counted) and its backward pass.
//! GlobalAveragePooling2D is the same kernel with one window over the whole image.

use super::{float_map, Elem, Window};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::ops::Range;

/// The input rows (or columns) that output `o`'s window covers inside the input: the window's
/// `k` cells start at `o * stride - pad`.
#[inline]
fn inside(o: usize, k: usize, stride: usize, pad: usize, size: usize) -> Range<usize> {
    let start = (o * stride).max(pad) - pad;
    let end = (o * stride + k).min(pad + size).saturating_sub(pad);
    start..end.max(start)
}

/// Each output's window as the ranges of input rows and columns it averages over, in output order
/// (both empty when either is: a hand-built window that misses the image).
fn windows(win: &Window) -> impl Iterator<Item = (Range<usize>, Range<usize>)> + '_ {
    (0..win.out_h).flat_map(move |oy| {
        let ys = inside(oy, win.kh, win.sh, win.pad_top, win.in_h);
        (0..win.out_w).map(move |ox| {
            let xs = inside(ox, win.kw, win.sw, win.pad_left, win.in_w);
            if ys.is_empty() || xs.is_empty() {
                (0..0, 0..0)
            } else {
                (ys.clone(), xs)
            }
        })
    })
}

/// `(n, h, w, c)` -> `(n, oh, ow, c)`, the mean over each window's inside cells.
#[derive(Clone, Copy, Debug)]
struct AvgPool2d {
    win: Window,
}

/// `(n, oh, ow, c)` -> `(n, h, w, c)`: each output's gradient divided by its cell count, added to
/// each of its cells.
#[derive(Clone, Copy, Debug)]
struct AvgPool2dBackward {
    win: Window,
}

impl AvgPool2d {
    /// One image. The window's cells in one input row are adjacent pixels, `c` values each, and
    /// every sum runs over whole channel vectors so that the loops vectorise.
    fn image<T: Elem>(&self, img: &[T], c: usize, out: &mut [T]) {
        let in_w = self.win.in_w;
        for (o, (ys, xs)) in out.chunks_exact_mut(c).zip(windows(&self.win)) {
            let count = ys.len() * xs.len();
            for iy in ys {
                let row = &img[(iy * in_w + xs.start) * c..(iy * in_w + xs.end) * c];
                for px in row.chunks_exact(c) {
                    o.iter_mut().zip(px).for_each(|(a, &v)| *a += v);
                }
            }
            // A sum divided by the count, as TensorFlow's AvgPool does (a window always holds a
            // cell of the image under TF's padding; a hand-built empty one gives 0, not NaN).
            let count = T::from(count.max(1)).unwrap();
            o.iter_mut().for_each(|a| *a /= count);
        }
    }

    fn run<T: Elem>(&self, x: &[T], n: usize, c: usize) -> Vec<T> {
        let Window { in_h, in_w, out_h, out_w, .. } = self.win;
        let (image, per_image) = (in_h * in_w * c, out_h * out_w * c);
        let mut out = vec![T::zero(); n * per_image];
        if c == 0 || per_image == 0 {
            return out;
        }
        out.par_chunks_mut(per_image).zip(x.par_chunks(image.max(1))).for_each(|(out, img)| self.image(img, c, out));
        out
    }
}

impl AvgPool2dBackward {
    /// One image's input gradient (zeros on entry). Where windows do not overlap (stride at least
    /// the pool size, or a single window per axis as in the global pooling), each cell takes one
    /// window's share, so it is stored rather than added.
    fn image<T: Elem>(&self, g: &[T], c: usize, dx: &mut [T], share: &mut [T]) {
        let Window { in_w, kh, kw, sh, sw, out_h, out_w, .. } = self.win;
        let disjoint = (out_h == 1 || sh >= kh) && (out_w == 1 || sw >= kw);
        for (g, (ys, xs)) in g.chunks_exact(c).zip(windows(&self.win)) {
            let inv = T::one() / T::from((ys.len() * xs.len()).max(1)).unwrap();
            share.iter_mut().zip(g).for_each(|(s, &g)| *s = g * inv);
            for iy in ys {
                let row = &mut dx[(iy * in_w + xs.start) * c..(iy * in_w + xs.end) * c];
                for px in row.chunks_exact_mut(c) {
                    if disjoint {
                        px.copy_from_slice(share);
                    } else {
                        px.iter_mut().zip(&*share).for_each(|(d, &s)| *d += s);
                    }
                }
            }
        }
    }

    fn run<T: Elem>(&self, g: &[T], n: usize, c: usize) -> Vec<T> {
        let Window { in_h, in_w, out_h, out_w, .. } = self.win;
        let (image, per_image) = (in_h * in_w * c, out_h * out_w * c);
        let mut dx = vec![T::zero(); n * image];
        if c == 0 || image == 0 {
            return dx;
        }
        dx.par_chunks_mut(image)
            .zip(g.par_chunks(per_image.max(1)))
            .for_each_init(|| vec![T::zero(); c], |share, (dx, g)| self.image(g, c, dx, share));
        dx
    }
}

impl CustomOp1 for AvgPool2d {
    fn name(&self) -> &'static str {
        "kandle-avg-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let &[n, h, w, c] = l.dims() else { candle_core::bail!("avg-pool2d expects NHWC, got {:?}", l.dims()) };
        if (h, w) != (self.win.in_h, self.win.in_w) {
            candle_core::bail!("avg-pool2d: a {h}x{w} input for a window over {}x{}", self.win.in_h, self.win.in_w);
        }
        let out = float_map!(self.name(), s, l, |x| self.run(x, n, c));
        Ok((out, Shape::from((n, self.win.out_h, self.win.out_w, c))))
    }
}

impl CustomOp1 for AvgPool2dBackward {
    fn name(&self) -> &'static str {
        "kandle-avg-pool2d-backward"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let &[n, oh, ow, c] = l.dims() else { candle_core::bail!("avg-pool2d backward expects NHWC, got {:?}", l.dims()) };
        if (oh, ow) != (self.win.out_h, self.win.out_w) {
            candle_core::bail!("avg-pool2d backward: a {oh}x{ow} gradient for a {}x{} output", self.win.out_h, self.win.out_w);
        }
        let out = float_map!(self.name(), s, l, |g| self.run(g, n, c));
        Ok((out, Shape::from((n, self.win.in_h, self.win.in_w, c))))
    }
}

/// Average-pools an NHWC batch over `win` (built for the input's height and width).
pub fn avg_pool2d(x: &Tensor, win: Window) -> Result<Tensor> {
    x.contiguous()?.apply_op1_no_bwd(&AvgPool2d { win })
}

/// The input gradient of [`avg_pool2d`]: `(n, oh, ow, c)` -> `input_shape`, `(n, h, w, c)`.
pub fn avg_pool2d_backward(dy: &Tensor, win: Window, input_shape: &[usize]) -> Result<Tensor> {
    let &[n, h, w, c] = input_shape else { candle_core::bail!("avg-pool2d backward: input shape {input_shape:?} is not NHWC") };
    if (h, w) != (win.in_h, win.in_w) || dy.dims().first().is_some_and(|&b| b != n) || dy.dims().last().is_some_and(|&d| d != c) {
        candle_core::bail!("avg-pool2d backward: gradient {:?} does not fit input {input_shape:?} and {win:?}", dy.dims());
    }
    dy.contiguous()?.apply_op1_no_bwd(&AvgPool2dBackward { win })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_data::{flat, numbers, tensor};
    use candle_core::{DType, Device};

    /// The input entries of output `(oy, ox)`'s window, by the window's definition.
    fn cells(win: &Window, oy: usize, ox: usize) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        for ky in 0..win.kh {
            for kx in 0..win.kw {
                if let (Some(iy), Some(ix)) = (Window::src(oy, ky, win.sh, win.pad_top, win.in_h), Window::src(ox, kx, win.sw, win.pad_left, win.in_w)) {
                    v.push((iy, ix));
                }
            }
        }
        v
    }

    /// Forward and backward by the definition: every (output, cell) pair, weighted 1/count.
    fn reference(x: &[f64], dy: &[f64], n: usize, win: &Window, c: usize) -> (Vec<f64>, Vec<f64>) {
        let mut y = vec![0.0; n * win.out_h * win.out_w * c];
        let mut dx = vec![0.0; x.len()];
        for b in 0..n {
            for oy in 0..win.out_h {
                for ox in 0..win.out_w {
                    let cells = cells(win, oy, ox);
                    let o = ((b * win.out_h + oy) * win.out_w + ox) * c;
                    for (iy, ix) in &cells {
                        let i = ((b * win.in_h + iy) * win.in_w + ix) * c;
                        for ch in 0..c {
                            y[o + ch] += x[i + ch] / cells.len() as f64;
                            dx[i + ch] += dy[o + ch] / cells.len() as f64;
                        }
                    }
                }
            }
        }
        (y, dx)
    }

    fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (k, (a, b)) in got.iter().zip(want).enumerate() {
            assert!((a - b).abs() <= tol * (1.0 + b.abs()), "{what} at {k}: {a} vs {b}");
        }
    }

    /// `(n, (h, w), c, pool, strides, same)`.
    type Case = (usize, (usize, usize), usize, (usize, usize), (usize, usize), bool);

    /// Odd sizes, stride below and above the pool size, a window larger than the image ('same'),
    /// a single image, and the global window.
    const CASES: [Case; 9] = [
        (2, (7, 5), 3, (3, 3), (2, 2), true),
        (2, (7, 5), 3, (3, 3), (2, 2), false),
        (1, (6, 7), 5, (3, 2), (1, 1), true),
        (3, (7, 8), 2, (2, 3), (3, 4), false),
        (2, (7, 8), 2, (2, 3), (3, 4), true),
        (1, (5, 5), 4, (2, 2), (2, 2), true),
        (2, (3, 2), 3, (5, 4), (1, 1), true),
        (2, (4, 5), 9, (4, 5), (1, 1), false),
        (1, (1, 1), 17, (1, 1), (1, 1), false),
    ];

    #[test]
    fn forward_and_backward_match_the_definition() {
        for (n, hw, c, k, s, same) in CASES {
            let win = Window::new(hw, k, s, same).unwrap();
            let x = numbers(n * hw.0 * hw.1 * c, 2);
            let dy = numbers(n * win.out_h * win.out_w * c, 9);
            let (y, dx) = reference(&x, &dy, n, &win, c);
            let what = format!("n {n} input {hw:?} c {c} pool {k:?} strides {s:?} same {same}");
            for (dtype, tol) in [(DType::F64, 1e-14), (DType::F32, 1e-6)] {
                let xt = tensor(&x, &[n, hw.0, hw.1, c]).to_dtype(dtype).unwrap();
                let got = avg_pool2d(&xt, win).unwrap();
                assert_eq!((got.dims(), got.dtype()), (&[n, win.out_h, win.out_w, c][..], dtype), "{what}");
                assert_close(&flat(&got), &y, tol, &format!("forward {dtype:?}, {what}"));
                let g = tensor(&dy, &[n, win.out_h, win.out_w, c]).to_dtype(dtype).unwrap();
                let got = avg_pool2d_backward(&g, win, &[n, hw.0, hw.1, c]).unwrap();
                assert_close(&flat(&got), &dx, tol, &format!("backward {dtype:?}, {what}"));
            }
        }
    }

    #[test]
    fn same_padding_counts_only_the_cells_inside() {
        // 3x3 pool, stride 1, 'same' on a 2x2 image of ones: every window holds the image's 4
        // cells and 5 padding cells, so the mean is 1 (counting padding would give 4/9).
        let win = Window::new((2, 2), (3, 3), (1, 1), true).unwrap();
        let y = flat(&avg_pool2d(&tensor(&[1.0; 4], &[1, 2, 2, 1]), win).unwrap());
        assert_eq!(y, [1.0; 4]);
        // 3 wide, pool 2, stride 2, 'same': the second window is one column plus one padding.
        let win = Window::new((1, 3), (1, 2), (1, 2), true).unwrap();
        let y = flat(&avg_pool2d(&tensor(&[1.0, 2.0, 4.0], &[1, 1, 3, 1]), win).unwrap());
        assert_eq!(y, [1.5, 4.0]);
    }

    #[test]
    fn backward_matches_central_differences() {
        for (n, hw, c, k, s, same) in CASES {
            let win = Window::new(hw, k, s, same).unwrap();
            let dims = [n, hw.0, hw.1, c];
            let x = numbers(dims.iter().product(), 4);
            let r = numbers(n * win.out_h * win.out_w * c, 13);
            let sum = |x: &[f64]| flat(&avg_pool2d(&tensor(x, &dims), win).unwrap()).iter().zip(&r).map(|(y, r)| y * r).sum::<f64>();
            let h = 1e-3;
            let numeric: Vec<f64> = (0..x.len())
                .map(|i| {
                    let (mut up, mut down) = (x.clone(), x.clone());
                    up[i] += h;
                    down[i] -= h;
                    (sum(&up) - sum(&down)) / (2.0 * h)
                })
                .collect();
            let analytic = flat(&avg_pool2d_backward(&tensor(&r, &[n, win.out_h, win.out_w, c]), win, &dims).unwrap());
            assert_close(&analytic, &numeric, 1e-9, &format!("n {n} input {hw:?} pool {k:?} strides {s:?} same {same}"));
        }
    }

    #[test]
    fn refuses_shapes_that_do_not_fit_the_window() {
        let win = Window::new((4, 4), (2, 2), (2, 2), false).unwrap();
        let x = Tensor::zeros((1, 5, 4, 2), DType::F32, &Device::Cpu).unwrap();
        assert!(avg_pool2d(&x, win).is_err());
        let dy = Tensor::zeros((1, 2, 2, 2), DType::F32, &Device::Cpu).unwrap();
        assert!(avg_pool2d_backward(&dy, win, &[1, 4, 4, 3]).is_err());
        assert!(avg_pool2d_backward(&dy, win, &[1, 4, 4]).is_err());
        assert_eq!(avg_pool2d_backward(&dy, win, &[1, 4, 4, 2]).unwrap().dims(), [1, 4, 4, 2]);
    }
}
