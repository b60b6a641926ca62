//! `act(x @ w + b)` as one candle op (Dense), and the GEMM + bias + activation kernels that Conv2D
//! shares once its input is unfolded by im2col.

use super::bias_act::BiasAct;
use super::unary::{Unary, UnaryBackward};
use super::{contiguous, float_map, unsupported, Elem};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

/// `dst (m x n) = lhs (m x k) @ rhs (k x n)`, all row-major and contiguous, on the `gemm` crate
/// (AVX-512 kernels where the CPU has them), split across rayon's threads.
pub(crate) fn matmul<T: Elem>(lhs: &[T], rhs: &[T], dst: &mut [T], m: usize, k: usize, n: usize) -> Result<()> {
    if lhs.len() < m * k || rhs.len() < k * n || dst.len() < m * n {
        candle_core::bail!("matmul: buffers smaller than ({m}x{k}) @ ({k}x{n})");
    }
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    // SAFETY: the buffers are distinct, contiguous and at least as large as checked above.
    unsafe {
        gemm::gemm(
            m, n, k,
            dst.as_mut_ptr(), 1, n as isize, false,
            lhs.as_ptr(), 1, k as isize,
            rhs.as_ptr(), 1, n as isize,
            T::zero(), T::one(), false, false, false, parallelism,
        )
    }
    Ok(())
}

/// Forward kernel: `out = act(x @ w + b)` for `x (m x k)`, `w (k x n)`, `b (n)`, `out (m x n)`.
pub(crate) fn forward_into<T: Elem>(x: &[T], w: &[T], b: &[T], m: usize, k: usize, act: Option<Unary>, out: &mut [T]) -> Result<()> {
    matmul(x, w, out, m, k, b.len())?;
    BiasAct(act).apply_in_place(out, b);
    Ok(())
}

fn forward<T: Elem>(x: &[T], w: &[T], b: &[T], m: usize, k: usize, act: Option<Unary>) -> Result<Vec<T>> {
    let mut out = vec![T::zero(); m * b.len()];
    forward_into(x, w, b, m, k, act, &mut out)?;
    Ok(out)
}

/// Backward kernel from the saved output: `(dx, dw, db)` for 2-D `x (m x k)` and `w (k x n)`; `dx`
/// only when `input_grad` (the model's input needs none, which saves a GEMM in the first layer).
pub(crate) fn backward(
    x: &Tensor,
    w: &Tensor,
    out: &Tensor,
    grad: &Tensor,
    act: Option<Unary>,
    input_grad: bool,
) -> Result<(Option<Tensor>, Tensor, Tensor)> {
    let grad = grad.contiguous()?;
    let dpre = match act {
        Some(u) => out.contiguous()?.apply_op2_no_bwd(&grad, &UnaryBackward(u))?,
        None => grad,
    };
    let db = dpre.apply_op1_no_bwd(&ColumnSum)?;
    let dw = x.t()?.matmul(&dpre)?;
    let dx = if input_grad { Some(dpre.matmul(&w.t()?)?) } else { None };
    Ok((dx, dw, db))
}

/// Sums a contiguous `(m, n)` matrix over its rows (the bias gradient): per-thread partial sums over
/// row blocks, then one reduction; candle's generic `sum(0)` walks it column by column.
struct ColumnSum;

impl candle_core::CustomOp1 for ColumnSum {
    fn name(&self) -> &'static str {
        "kandle-column-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        fn run<T: Elem>(x: &[T], n: usize) -> Vec<T> {
            use rayon::prelude::*;
            if n == 0 {
                return Vec::new();
            }
            let rows_per_task = (super::unary::PAR_CHUNK / n).max(1);
            x.par_chunks(rows_per_task * n)
                .map(|block| {
                    let mut acc = vec![T::zero(); n];
                    for row in block.chunks_exact(n) {
                        acc.iter_mut().zip(row).for_each(|(a, &v)| *a += v);
                    }
                    acc
                })
                .reduce(|| vec![T::zero(); n], |mut a, b| {
                    a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
                    a
                })
        }
        let &[_, n] = l.dims() else { candle_core::bail!("column-sum expects a matrix") };
        let out = float_map!(self.name(), s, l, |x| run(x, n));
        Ok((out, Shape::from(n)))
    }
}

/// The Dense op on 2-D input.
struct LinearOp(Option<Unary>);

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "kandle-dense"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let (&[m, k], &[k2, n]) = (l1.dims(), l2.dims()) else { candle_core::bail!("dense expects 2-D operands") };
        if k != k2 || l3.shape().elem_count() != n {
            candle_core::bail!("dense: shapes {:?} @ {:?} + {:?} do not match", l1.dims(), l2.dims(), l3.dims());
        }
        let out = match s1 {
            CpuStorage::F32(_) => CpuStorage::F32(forward(contiguous(s1, l1)?, contiguous(s2, l2)?, contiguous(s3, l3)?, m, k, self.0)?),
            CpuStorage::F64(_) => CpuStorage::F64(forward(contiguous(s1, l1)?, contiguous(s2, l2)?, contiguous(s3, l3)?, m, k, self.0)?),
            _ => return Err(unsupported(self.name(), s1.dtype())),
        };
        Ok((out, Shape::from((m, n))))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _b: &Tensor, out: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, db) = backward(x, w, out, grad, self.0, x.track_op())?;
        Ok((dx, Some(dw), Some(db)))
    }
}

/// `act(x @ w + b)` for 2-D `x` (differentiable in all three).
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor, act: Option<Unary>) -> Result<Tensor> {
    x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, LinearOp(act))
}
