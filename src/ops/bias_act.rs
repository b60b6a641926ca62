//! `act(y + bias)` in one pass over a `(rows, units)` matrix: the tail of every Dense and Conv2D
//! (after its GEMM), fused so the output is written once and the backward pass needs only the output.

use super::unary::{Unary, UnaryBackward, PAR_CHUNK};
use super::{contiguous, unsupported, Elem};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `None` is the identity (a linear layer, or the pre-activation of a final softmax).
#[derive(Clone, Copy, Debug)]
pub struct BiasAct(pub Option<Unary>);

impl BiasAct {
    fn run<T: Elem>(&self, y: &[T], b: &[T]) -> Vec<T> {
        let mut out = y.to_vec();
        self.apply_in_place(&mut out, b);
        out
    }

    /// `y <- act(y + b)` row by row, split across threads.
    pub(crate) fn apply_in_place<T: Elem>(&self, y: &mut [T], b: &[T]) {
        let n = b.len().max(1);
        let rows_per_task = (PAR_CHUNK / n).max(1);
        y.par_chunks_mut(rows_per_task * n).for_each(|chunk| {
            for row in chunk.chunks_exact_mut(n) {
                for (v, &b) in row.iter_mut().zip(b) {
                    *v = match self.0 {
                        Some(u) => u.f(*v + b),
                        None => *v + b,
                    };
                }
            }
        });
    }
}

impl CustomOp2 for BiasAct {
    fn name(&self) -> &'static str {
        "kandle-bias-activation"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (&n, b_len) = (l1.dims().last().unwrap_or(&0), l2.shape().elem_count());
        if n != b_len {
            candle_core::bail!("bias-activation: {n} units but a bias of {b_len}");
        }
        let out = match s1 {
            CpuStorage::F32(_) => CpuStorage::F32(self.run(contiguous::<f32>(s1, l1)?, contiguous::<f32>(s2, l2)?)),
            CpuStorage::F64(_) => CpuStorage::F64(self.run(contiguous::<f64>(s1, l1)?, contiguous::<f64>(s2, l2)?)),
            _ => return Err(unsupported(self.name(), s1.dtype())),
        };
        Ok((out, l1.shape().clone()))
    }

    fn bwd(&self, _y: &Tensor, _b: &Tensor, out: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let grad_pre = match self.0 {
            Some(u) => out.contiguous()?.apply_op2_no_bwd(&grad, &UnaryBackward(u))?,
            None => grad,
        };
        let grad_b = grad_pre.sum(0)?;
        Ok((Some(grad_pre), Some(grad_b)))
    }
}

/// `act(y + b)` for `y` of shape `(rows, units)` and `b` of shape `(units,)` (differentiable in both).
pub fn bias_act(y: &Tensor, b: &Tensor, act: Option<Unary>) -> Result<Tensor> {
    y.contiguous()?.apply_op2(&b.contiguous()?, BiasAct(act))
}
