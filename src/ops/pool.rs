//! Channels-last max-pooling whose forward pass remembers where each maximum came from, so the
//! backward pass routes the whole gradient to that one input (TensorFlow's rule, first maximum wins).

use super::{float_map, Elem, Window};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Mutex;

/// `(n, h, w, c)` -> `(n, oh, ow, c)`. Padding ('same') never wins: it is skipped, not read as 0.
#[derive(Debug)]
pub struct MaxPool2d {
    pub win: Window,
    /// Flat input index of each output's maximum, filled by the forward pass for the backward one.
    argmax: Mutex<Vec<u32>>,
}

/// Scatters the output gradient to the saved argmax positions.
struct MaxPool2dBackward<'a> {
    argmax: &'a [u32],
    input_shape: Shape,
}

impl MaxPool2d {
    /// The pooled batch; the argmax goes to `self.argmax`.
    fn run<T: Elem>(&self, x: &[T], n: usize, c: usize) -> Vec<T> {
        let Window { in_h, in_w, out_h, out_w, .. } = self.win;
        let (per_image, image) = (out_h * out_w * c, in_h * in_w * c);
        let mut out = vec![T::zero(); n * per_image];
        let mut arg = vec![0u32; n * per_image];
        out.par_chunks_mut(per_image).zip(arg.par_chunks_mut(per_image)).zip(x.par_chunks(image)).enumerate().for_each(
            |(b, ((out, arg), img))| self.image(img, (b * image) as u32, c, out, arg),
        );
        *self.argmax.lock().unwrap_or_else(|e| e.into_inner()) = arg;
        out
    }

    /// One image: each output starts from its window's first input, then takes any later input
    /// that is strictly greater (the first maximum wins) or NaN (NaN propagates, as in TF). The
    /// channel loop is branch-free so that it vectorises.
    fn image<T: Elem>(&self, img: &[T], base: u32, c: usize, out: &mut [T], arg: &mut [u32]) {
        let Window { in_h, in_w, kh, kw, sh, sw, pad_top, pad_left, out_h, out_w } = self.win;
        for oy in 0..out_h {
            for ox in 0..out_w {
                let o = (oy * out_w + ox) * c;
                let (out, arg) = (&mut out[o..o + c], &mut arg[o..o + c]);
                let mut first = true;
                for ky in 0..kh {
                    let Some(iy) = Window::src(oy, ky, sh, pad_top, in_h) else { continue };
                    for kx in 0..kw {
                        let Some(ix) = Window::src(ox, kx, sw, pad_left, in_w) else { continue };
                        let i = (iy * in_w + ix) * c;
                        let src = &img[i..i + c];
                        let at = base + i as u32;
                        if first {
                            out.copy_from_slice(src);
                            arg.iter_mut().enumerate().for_each(|(ch, a)| *a = at + ch as u32);
                            first = false;
                            continue;
                        }
                        for (ch, ((o, a), &v)) in out.iter_mut().zip(arg.iter_mut()).zip(src).enumerate() {
                            let take = v > *o || (v.is_nan() & !o.is_nan());
                            *o = if take { v } else { *o };
                            *a = if take { at + ch as u32 } else { *a };
                        }
                    }
                }
            }
        }
    }
}

impl CustomOp1 for MaxPool2d {
    fn name(&self) -> &'static str {
        "kandle-max-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let &[n, _, _, c] = l.dims() else { candle_core::bail!("max-pool2d expects NHWC") };
        let shape = Shape::from((n, self.win.out_h, self.win.out_w, c));
        let out = float_map!(self.name(), s, l, |x| self.run(x, n, c));
        Ok((out, shape))
    }
}

impl CustomOp1 for MaxPool2dBackward<'_> {
    fn name(&self) -> &'static str {
        "kandle-max-pool2d-backward"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        /// Image by image in parallel: an image's maxima all lie in that image.
        fn scatter<T: Elem>(g: &[T], argmax: &[u32], n: usize, len: usize) -> Vec<T> {
            let mut out = vec![T::zero(); len];
            let (image, per_image) = (len / n.max(1), g.len() / n.max(1));
            if image == 0 || per_image == 0 {
                return out;
            }
            out.par_chunks_mut(image).zip(g.par_chunks(per_image).zip(argmax.par_chunks(per_image))).enumerate().for_each(
                |(b, (out, (g, argmax)))| {
                    for (gi, &ai) in g.iter().zip(argmax) {
                        out[ai as usize - b * image] += *gi;
                    }
                },
            );
            out
        }
        let len = self.input_shape.elem_count();
        let n = self.input_shape.dims().first().copied().unwrap_or(1);
        let out = float_map!(self.name(), s, l, |g| scatter(g, self.argmax, n, len));
        Ok((out, self.input_shape.clone()))
    }
}

/// Max-pools an NHWC batch; also returns the flat input index of each output's maximum, which
/// [`max_pool2d_backward`] needs.
pub fn max_pool2d(x: &Tensor, win: Window) -> Result<(Tensor, Vec<u32>)> {
    let op = MaxPool2d { win, argmax: Mutex::new(Vec::new()) };
    let y = x.contiguous()?.apply_op1_no_bwd(&op)?;
    Ok((y, op.argmax.into_inner().unwrap_or_else(|e| e.into_inner())))
}

/// The input gradient: each output's gradient goes to the input its maximum came from.
pub fn max_pool2d_backward(grad: &Tensor, argmax: &[u32], input_shape: &Shape) -> Result<Tensor> {
    if argmax.len() != grad.elem_count() {
        candle_core::bail!("max-pool2d backward: {} saved positions for {} gradients", argmax.len(), grad.elem_count());
    }
    let op = MaxPool2dBackward { argmax, input_shape: input_shape.clone() };
    grad.contiguous()?.apply_op1_no_bwd(&op)
}
