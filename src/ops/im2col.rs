//! Channels-last im2col and its adjoint col2im, so that Conv2D is one GEMM against the Keras kernel
//! `(kh, kw, in, out)` viewed as `(kh*kw*in, out)`. Each op is the other's gradient.

use super::{float_map, Elem, Window};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `(n, h, w, c)` -> `(n*oh*ow, kh*kw*c)`, zeros where the window reads padding.
#[derive(Clone, Copy, Debug)]
pub struct Im2Col {
    pub win: Window,
    pub c: usize,
}

/// `(n*oh*ow, kh*kw*c)` -> `(n, h, w, c)`, summing every column entry back to the pixel it came from.
#[derive(Clone, Copy, Debug)]
pub struct Col2Im {
    pub win: Window,
    pub c: usize,
}

impl Im2Col {
    /// A buffer for `len` im2col entries: zeros where a window can read padding, else left for
    /// the copies to fill (every entry is written when no window leaves the input).
    pub(crate) fn buffer<T: Elem>(&self, len: usize) -> Vec<T> {
        let w = self.win;
        let covers = |o: usize, k: usize, s: usize, pad: usize, size: usize| pad == 0 && (o - 1) * s + k <= size;
        if covers(w.out_h, w.kh, w.sh, w.pad_top, w.in_h) && covers(w.out_w, w.kw, w.sw, w.pad_left, w.in_w) {
            // SAFETY: `image` writes every element of every row when no window reads padding (each
            // (oy, ox, ky, kx) copies its c values), before anything reads them.
            super::linear::uninit(len, |_| ())
        } else {
            vec![T::zero(); len]
        }
    }

    /// Unfolds one `(h, w, c)` image into its `(oh*ow, kh*kw*c)` rows (padding entries untouched).
    pub(crate) fn image<T: Elem>(&self, img: &[T], cols: &mut [T]) {
        let Window { in_h, in_w, kh, kw, sh, sw, pad_top, pad_left, out_h, out_w } = self.win;
        let c = self.c;
        let k = kh * kw * c;
        for oy in 0..out_h {
            for ox in 0..out_w {
                let row = &mut cols[(oy * out_w + ox) * k..][..k];
                // The window's columns are adjacent pixels: one copy of kw*c values per row when
                // the window lies inside the input horizontally.
                let x0 = (ox * sw) as isize - pad_left as isize;
                let inside = x0 >= 0 && x0 as usize + kw <= in_w;
                for ky in 0..kh {
                    let Some(iy) = Window::src(oy, ky, sh, pad_top, in_h) else { continue };
                    if inside {
                        let src = &img[(iy * in_w + x0 as usize) * c..][..kw * c];
                        row[ky * kw * c..][..kw * c].copy_from_slice(src);
                        continue;
                    }
                    for kx in 0..kw {
                        let Some(ix) = Window::src(ox, kx, sw, pad_left, in_w) else { continue };
                        let src = &img[(iy * in_w + ix) * c..][..c];
                        row[(ky * kw + kx) * c..][..c].copy_from_slice(src);
                    }
                }
            }
        }
    }

    /// Unfolds consecutive images (no threads: callers run this inside their own parallel tasks).
    pub(crate) fn images<T: Elem>(&self, x: &[T], cols: &mut [T]) {
        let (image, rows) = (self.win.in_h * self.win.in_w * self.c, self.entries_per_image());
        for (img, cols) in x.chunks_exact(image).zip(cols.chunks_exact_mut(rows)) {
            self.image(img, cols);
        }
    }

    /// Entries of one image's unfolded matrix, `oh*ow * kh*kw*c`.
    pub(crate) fn entries_per_image(&self) -> usize {
        self.win.out_h * self.win.out_w * self.win.kh * self.win.kw * self.c
    }

    pub(crate) fn run<T: Elem>(&self, x: &[T], n: usize) -> Vec<T> {
        let per_image = self.entries_per_image();
        let mut out = self.buffer(n * per_image);
        out.par_chunks_mut(per_image)
            .zip(x.par_chunks(self.win.in_h * self.win.in_w * self.c))
            .for_each(|(cols, img)| self.image(img, cols));
        out
    }
}

impl Col2Im {
    /// Adds one image's `(oh*ow, kh*kw*c)` rows back into its `(h, w, c)` pixels.
    pub(crate) fn image<T: Elem>(&self, cols: &[T], img: &mut [T]) {
        let Window { in_h, in_w, kh, kw, sh, sw, pad_top, pad_left, out_h, out_w } = self.win;
        let c = self.c;
        let k = kh * kw * c;
        for oy in 0..out_h {
            for ox in 0..out_w {
                let row = &cols[(oy * out_w + ox) * k..][..k];
                let x0 = (ox * sw) as isize - pad_left as isize;
                let inside = x0 >= 0 && x0 as usize + kw <= in_w;
                for ky in 0..kh {
                    let Some(iy) = Window::src(oy, ky, sh, pad_top, in_h) else { continue };
                    if inside {
                        let dst = &mut img[(iy * in_w + x0 as usize) * c..][..kw * c];
                        for (d, s) in dst.iter_mut().zip(&row[ky * kw * c..][..kw * c]) {
                            *d += *s;
                        }
                        continue;
                    }
                    for kx in 0..kw {
                        let Some(ix) = Window::src(ox, kx, sw, pad_left, in_w) else { continue };
                        let dst = &mut img[(iy * in_w + ix) * c..][..c];
                        for (d, s) in dst.iter_mut().zip(&row[(ky * kw + kx) * c..][..c]) {
                            *d += *s;
                        }
                    }
                }
            }
        }
    }

    fn run<T: Elem>(&self, cols: &[T], n: usize) -> Vec<T> {
        let Window { in_h, in_w, kh, kw, out_h, out_w, .. } = self.win;
        let c = self.c;
        let mut out = vec![T::zero(); n * in_h * in_w * c];
        out.par_chunks_mut(in_h * in_w * c)
            .zip(cols.par_chunks(out_h * out_w * kh * kw * c))
            .for_each(|(img, cols)| self.image(cols, img));
        out
    }
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "kandle-im2col"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let n = l.dims()[0];
        let shape = Shape::from((n * self.win.out_h * self.win.out_w, self.win.kh * self.win.kw * self.c));
        let out = float_map!(self.name(), s, l, |x| self.run(x, n));
        Ok((out, shape))
    }
}

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "kandle-col2im"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let n = l.dims()[0] / (self.win.out_h * self.win.out_w);
        let shape = Shape::from((n, self.win.in_h, self.win.in_w, self.c));
        let out = float_map!(self.name(), s, l, |x| self.run(x, n));
        Ok((out, shape))
    }
}

/// Unfolds an NHWC batch into GEMM rows.
pub fn im2col(x: &Tensor, win: Window) -> Result<Tensor> {
    let c = x.dims()[3];
    x.contiguous()?.apply_op1_no_bwd(&Im2Col { win, c })
}

/// Folds GEMM rows back into an NHWC batch of `(h, w, c)` images, summing overlaps: the adjoint of
/// [`im2col`], Conv2D's input gradient.
pub fn col2im(cols: &Tensor, win: Window, c: usize) -> Result<Tensor> {
    cols.contiguous()?.apply_op1_no_bwd(&Col2Im { win, c })
}
