//! Conv2D as one candle op: im2col + GEMM (the `gemm` crate, AVX-512 where the CPU has it) + bias +
//! activation in the forward pass, which keeps the im2col matrix when training so that the backward
//! pass ([`conv2d_backward`]) gets the weight gradient from one GEMM.

use super::im2col::{Col2Im, Im2Col};
use super::linear::{self, uninit};
use super::unary::Unary;
use super::{contiguous, unsupported, Elem, Window};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Device, Layout, Result, Shape, Tensor};
use std::sync::Mutex;

/// Elements of the im2col matrix unfolded at once during inference (16 MB of f32).
const INFERENCE_COLS: usize = 4 << 20;

struct Conv2dOp {
    win: Window,
    act: Option<Unary>,
    /// Keep the im2col matrix for the backward pass (training only).
    save: bool,
    cols: Mutex<Option<Tensor>>,
}

impl Conv2dOp {
    fn run<T: Elem>(&self, x: &[T], w: &[T], b: &[T], n: usize, c: usize) -> Result<Vec<T>> {
        let (k, f) = (self.win.kh * self.win.kw * c, b.len());
        let rows = self.win.out_h * self.win.out_w;
        let unfold = Im2Col { win: self.win, c };
        if self.save {
            let cols = unfold.run(x, n);
            let out = linear::forward(&cols, w, b, n * rows, k, self.act)?;
            *self.cols.lock().unwrap_or_else(|e| e.into_inner()) = Some(Tensor::from_vec(cols, (n * rows, k), &Device::Cpu)?);
            return Ok(out);
        }
        // Inference keeps nothing for a backward pass, so it unfolds a few images at a time: a
        // predict batch of 256 would otherwise build a 230 MB matrix for the second layer.
        let per_chunk = (INFERENCE_COLS / (rows * k).max(1)).clamp(1, n.max(1));
        let image = self.win.in_h * self.win.in_w * c;
        let mut result = Ok(());
        let out = uninit(n * rows * f, |dst: *mut T| {
            for (i, imgs) in x.chunks(per_chunk * image).enumerate() {
                let nb = imgs.len() / image;
                // SAFETY: chunk i covers outputs [i*per_chunk*rows*f, ..+nb*rows*f), inside the buffer.
                let out = unsafe { std::slice::from_raw_parts_mut(dst.add(i * per_chunk * rows * f), nb * rows * f) };
                if let Err(e) = linear::forward_into(&unfold.run(imgs, nb), w, b, nb * rows, k, self.act, out) {
                    result = Err(e);
                    // Keep the buffer fully written even on error (it is dropped by the caller).
                    out.iter_mut().for_each(|v| *v = T::zero());
                }
            }
        });
        result.map(|_| out)
    }
}

impl CustomOp3 for Conv2dOp {
    fn name(&self) -> &'static str {
        "kandle-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let &[n, h, w, c] = l1.dims() else { candle_core::bail!("conv2d expects NHWC input") };
        let f = l3.shape().elem_count();
        if (h, w) != (self.win.in_h, self.win.in_w) || l2.dims() != [self.win.kh, self.win.kw, c, f] {
            candle_core::bail!("conv2d: input {:?} / kernel {:?} do not match the layer", l1.dims(), l2.dims());
        }
        let out = match s1 {
            CpuStorage::F32(_) => CpuStorage::F32(self.run(
                contiguous::<f32>(s1, l1)?,
                contiguous::<f32>(s2, l2)?,
                contiguous::<f32>(s3, l3)?,
                n,
                c,
            )?),
            CpuStorage::F64(_) => CpuStorage::F64(self.run(
                contiguous::<f64>(s1, l1)?,
                contiguous::<f64>(s2, l2)?,
                contiguous::<f64>(s3, l3)?,
                n,
                c,
            )?),
            _ => return Err(unsupported(self.name(), s1.dtype())),
        };
        Ok((out, Shape::from((n, self.win.out_h, self.win.out_w, f))))
    }
}

/// Convolves an NHWC batch with a Keras kernel `(kh, kw, in, out)`, adds the bias and applies the
/// element-wise activation. With `keep_cols` (training) it also returns the im2col matrix
/// `(n*oh*ow, kh*kw*in)` for [`conv2d_backward`].
pub fn conv2d(x: &Tensor, kernel: &Tensor, bias: &Tensor, win: Window, act: Option<Unary>, keep_cols: bool) -> Result<(Tensor, Option<Tensor>)> {
    let op = Conv2dOp { win, act, save: keep_cols, cols: Mutex::new(None) };
    let y = x.contiguous()?.apply_op3_no_bwd(&kernel.contiguous()?, &bias.contiguous()?, &op)?;
    Ok((y, op.cols.into_inner().unwrap_or_else(|e| e.into_inner())))
}

/// `(dx, dkernel, dbias)` from the gradient `dpre` with respect to the pre-activation output
/// `(n, oh, ow, f)`; `dx` only when `input_grad`; `dkernel = colsᵀ @ dpre` as its two factors.
pub fn conv2d_backward(
    cols: &Tensor,
    kernel: &Tensor,
    dpre: &Tensor,
    win: Window,
    input_grad: bool,
) -> Result<(Option<Tensor>, (Tensor, Tensor), Tensor)> {
    let &[kh, kw, c, f] = kernel.dims() else { candle_core::bail!("conv2d: kernel must be 4-D") };
    let m = dpre.elem_count() / f;
    let (dcols, dw, db) = linear::backward(cols, &kernel.reshape((kh * kw * c, f))?, &dpre.reshape((m, f))?, input_grad)?;
    let dx = dcols.map(|d| d.apply_op1_no_bwd(&Col2Im { win, c })).transpose()?;
    Ok((dx, dw, db))
}
