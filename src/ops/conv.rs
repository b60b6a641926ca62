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
        let k = self.win.kh * self.win.kw * c;
        let m = n * self.win.out_h * self.win.out_w;
        let cols = Im2Col { win: self.win, c }.run(x, n);
        let out = linear::forward(&cols, w, b, m, k, self.act)?;
        if self.save {
            *self.cols.lock().unwrap_or_else(|e| e.into_inner()) = Some(Tensor::from_vec(cols, (m, k), &Device::Cpu)?);
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
