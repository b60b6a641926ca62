//! Conv2D as one candle op: im2col + GEMM (the `gemm` crate, AVX-512 where the CPU has it) + bias +
//! activation in the forward pass; the backward pass reuses the saved im2col matrix for the weight
//! gradient. One node in candle's graph instead of five keeps the autograd bookkeeping (a zeroed
//! buffer and an addition per node and argument) off the large intermediate tensors.

use super::im2col::{Col2Im, Im2Col};
use super::linear;
use super::unary::Unary;
use super::{contiguous, unsupported, Elem, Window};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Device, Layout, Result, Shape, Tensor};
use std::sync::Mutex;

/// Elements of the im2col matrix unfolded at once during inference (16 MB of f32).
const INFERENCE_COLS: usize = 4 << 20;

pub struct Conv2dOp {
    pub win: Window,
    pub act: Option<Unary>,
    /// Keep the im2col matrix for the backward pass (training only).
    pub save: bool,
    cols: Mutex<Option<Tensor>>,
}

impl Conv2dOp {
    pub fn new(win: Window, act: Option<Unary>, save: bool) -> Self {
        Conv2dOp { win, act, save, cols: Mutex::new(None) }
    }

    fn run<T: Elem>(&self, x: &[T], w: &[T], b: &[T], n: usize, c: usize) -> Result<Vec<T>> {
        let (k, f) = (self.win.kh * self.win.kw * c, b.len());
        let rows = self.win.out_h * self.win.out_w;
        let unfold = Im2Col { win: self.win, c };
        let mut out = vec![T::zero(); n * rows * f];
        if self.save {
            let cols = unfold.run(x, n);
            linear::forward_into(&cols, w, b, n * rows, k, self.act, &mut out)?;
            *self.cols.lock().unwrap_or_else(|e| e.into_inner()) = Some(Tensor::from_vec(cols, (n * rows, k), &Device::Cpu)?);
        } else {
            // Inference keeps nothing for a backward pass, so it unfolds a few images at a time:
            // a predict batch of 256 would otherwise build a 230 MB matrix for the second layer.
            let per_chunk = (INFERENCE_COLS / (rows * k).max(1)).clamp(1, n.max(1));
            let image = self.win.in_h * self.win.in_w * c;
            for (imgs, dst) in x.chunks(per_chunk * image).zip(out.chunks_mut(per_chunk * rows * f)) {
                let nb = imgs.len() / image;
                linear::forward_into(&unfold.run(imgs, nb), w, b, nb * rows, k, self.act, dst)?;
            }
        }
        Ok(out)
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

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let c = x.dim(3)?;
        let f = w.dim(3)?;
        let k = self.win.kh * self.win.kw * c;
        let m = grad.elem_count() / f;
        let cols = match self.cols.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            Some(cols) => cols,
            None => x.contiguous()?.apply_op1_no_bwd(&Im2Col { win: self.win, c })?,
        };
        let (grad, res) = (grad.contiguous()?.reshape((m, f))?, res.contiguous()?.reshape((m, f))?);
        let (dcols, dw, db) = linear::backward(&cols, &w.reshape((k, f))?, &res, &grad, self.act, x.track_op())?;
        let dx = dcols.map(|d| d.apply_op1_no_bwd(&Col2Im { win: self.win, c })).transpose()?;
        Ok((dx, Some(dw.reshape(w.shape())?), Some(db)))
    }
}

/// Convolves an NHWC batch with a Keras kernel `(kh, kw, in, out)`, adds the bias and applies the
/// element-wise activation (differentiable in all three inputs).
pub fn conv2d(x: &Tensor, kernel: &Tensor, bias: &Tensor, win: Window, act: Option<Unary>, train: bool) -> Result<Tensor> {
    x.contiguous()?.apply_op3(&kernel.contiguous()?, &bias.contiguous()?, Conv2dOp::new(win, act, train))
}
