//! Channels-last max-pooling whose forward pass remembers where each maximum came from, so the
//! backward pass routes the whole gradient to that one input (TensorFlow's rule, first maximum wins).

use super::{contiguous, float_map, unsupported, Elem, Window};
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
    fn run<T: Elem>(&self, x: &[T], n: usize, c: usize) -> (Vec<T>, Vec<u32>) {
        let Window { in_h, in_w, kh, kw, sh, sw, pad_top, pad_left, out_h, out_w } = self.win;
        let len = n * out_h * out_w * c;
        let mut out = vec![T::neg_infinity(); len];
        let mut arg = vec![0u32; len];
        let per_image = out_h * out_w * c;
        out.par_chunks_mut(per_image).zip(arg.par_chunks_mut(per_image)).enumerate().for_each(|(b, (out, arg))| {
            for oy in 0..out_h {
                for ox in 0..out_w {
                    let o = (oy * out_w + ox) * c;
                    for ky in 0..kh {
                        let Some(iy) = Window::src(oy, ky, sh, pad_top, in_h) else { continue };
                        for kx in 0..kw {
                            let Some(ix) = Window::src(ox, kx, sw, pad_left, in_w) else { continue };
                            let i = ((b * in_h + iy) * in_w + ix) * c;
                            for ch in 0..c {
                                // Strictly greater keeps the first maximum; NaN propagates like TF.
                                let v = x[i + ch];
                                if v > out[o + ch] || v.is_nan() && !out[o + ch].is_nan() {
                                    out[o + ch] = v;
                                    arg[o + ch] = (i + ch) as u32;
                                }
                            }
                        }
                    }
                }
            }
        });
        (out, arg)
    }
}

impl CustomOp1 for MaxPool2d {
    fn name(&self) -> &'static str {
        "kandle-max-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let &[n, _, _, c] = l.dims() else { candle_core::bail!("max-pool2d expects NHWC") };
        let shape = Shape::from((n, self.win.out_h, self.win.out_w, c));
        let (out, arg) = match s {
            CpuStorage::F32(_) => {
                let (o, a) = self.run(contiguous::<f32>(s, l)?, n, c);
                (CpuStorage::F32(o), a)
            }
            CpuStorage::F64(_) => {
                let (o, a) = self.run(contiguous::<f64>(s, l)?, n, c);
                (CpuStorage::F64(o), a)
            }
            _ => return Err(unsupported(self.name(), s.dtype())),
        };
        *self.argmax.lock().unwrap_or_else(|e| e.into_inner()) = arg;
        Ok((out, shape))
    }
}

impl CustomOp1 for MaxPool2dBackward<'_> {
    fn name(&self) -> &'static str {
        "kandle-max-pool2d-backward"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        fn scatter<T: Elem>(g: &[T], argmax: &[u32], len: usize) -> Vec<T> {
            let mut out = vec![T::zero(); len];
            for (gi, &ai) in g.iter().zip(argmax) {
                out[ai as usize] += *gi;
            }
            out
        }
        let len = self.input_shape.elem_count();
        let out = float_map!(self.name(), s, l, |g| scatter(g, self.argmax, len));
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
