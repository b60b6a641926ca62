//! `act(x @ w + b)` as one candle op (Dense), the GEMM + bias + activation kernels that Conv2D
//! shares once its input is unfolded by im2col, and their backward pass.

use super::bf16::{self, Precision, View};
use super::bias_act::BiasAct;
use super::skinny;
use super::unary::Unary;
use super::{contiguous, float_map, unsupported, Elem};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

/// A `len`-element buffer that the caller overwrites entirely before reading (GEMM outputs):
/// zeroing it first would cost a full extra pass over memory.
pub(crate) fn uninit<T: Elem>(len: usize, fill: impl FnOnce(*mut T)) -> Vec<T> {
    let mut v = Vec::with_capacity(len);
    fill(v.spare_capacity_mut().as_mut_ptr().cast::<T>());
    // SAFETY: `fill` wrote all `len` elements (every caller passes a GEMM or copy that does).
    unsafe { v.set_len(len) };
    v
}

/// Whether a GEMM splits itself across rayon's threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Threads {
    All,
    One,
}

/// How a GEMM operand is stored: `(rows x cols)` row-major, or its transpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Order {
    Plain,
    Transposed,
}

/// `dst (m x n) = alpha * dst + beta * op(lhs) (m x k) @ op(rhs) (k x n)` on the `gemm` crate
/// (AVX-512 kernels where the CPU has them), split across rayon's threads unless `Threads::One`
/// (callers already running one task per thread); `dst` is only read when `accumulate`. `op(a)`
/// reads a transposed operand through strides, without copying it.
///
/// # Safety
/// `dst` must be valid for `m * n` writes (and reads when `accumulate`), `lhs`/`rhs` for `m * k` /
/// `k * n` reads, and none may overlap.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_raw<T: Elem>(
    dst: *mut T,
    lhs: (&[T], Order),
    rhs: (&[T], Order),
    (m, k, n): (usize, usize, usize),
    accumulate: Option<(T, T)>,
    threads: Threads,
) {
    let all = rayon::current_num_threads();
    let tasks = if threads == Threads::All { all } else { 1 };
    // SAFETY: the caller's guarantees carry over.
    if T::DTYPE == candle_core::DType::F32 && unsafe { skinny_f32(dst, lhs, rhs, (m, k, n), accumulate, tasks) }.is_some() {
        return;
    }
    let parallelism = if all > 1 && threads == Threads::All { gemm::Parallelism::Rayon(all) } else { gemm::Parallelism::None };
    // gemm takes (column stride, row stride) per operand.
    let (lcs, lrs) = match lhs.1 {
        Order::Plain => (1, k as isize),
        Order::Transposed => (m as isize, 1),
    };
    let (rcs, rrs) = match rhs.1 {
        Order::Plain => (1, n as isize),
        Order::Transposed => (k as isize, 1),
    };
    let (alpha, beta) = accumulate.unwrap_or((T::zero(), T::one()));
    // SAFETY: the caller guarantees the buffer sizes; strides match the stated storage orders.
    unsafe {
        gemm::gemm(
            m, n, k,
            dst, 1, n as isize, accumulate.is_some(),
            lhs.0.as_ptr(), lcs, lrs,
            rhs.0.as_ptr(), rcs, rrs,
            alpha, beta, false, false, false, parallelism,
        )
    }
}

/// `gemm_raw` through `skinny`'s few-row kernels where one fits (T must be f32): a product with
/// few rows (Dense forward, and its input gradient against the transposed kernel), or one whose
/// shared dimension is short (the kernel update `w += beta * xᵀ @ dy` from a small batch).
unsafe fn skinny_f32<T: Elem>(
    dst: *mut T,
    lhs: (&[T], Order),
    rhs: (&[T], Order),
    (m, k, n): (usize, usize, usize),
    accumulate: Option<(T, T)>,
    tasks: usize,
) -> Option<()> {
    // SAFETY (all casts): T is f32, checked by the caller.
    let f32s = |s: &[T]| unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<f32>(), s.len()) };
    let dst = dst.cast::<f32>();
    match (lhs.1, rhs.1, accumulate) {
        (Order::Plain, Order::Plain, None) if m <= skinny::MAX_ROWS => unsafe { skinny::gemm_f32(dst, f32s(lhs.0), f32s(rhs.0), (m, k, n), tasks) },
        (Order::Plain, Order::Transposed, None) if m <= skinny::MAX_ROWS => unsafe { skinny::gemm_nt_f32(dst, f32s(lhs.0), f32s(rhs.0), (m, k, n), tasks) },
        (Order::Transposed, Order::Plain, _) if k <= skinny::MAX_ROWS => {
            let (keep, scale) = match accumulate {
                None => (false, 1.0),
                Some((alpha, beta)) if alpha == T::one() => (true, beta.to_f32()?),
                Some(_) => return None,
            };
            unsafe { skinny::gemm_tn_f32(dst, f32s(lhs.0), f32s(rhs.0), (m, k, n), scale, keep, tasks) }
        }
        _ => None,
    }
}

/// [`gemm_raw`] in a layer's precision: with `Precision::Bf16` the operands are rounded to
/// bfloat16 and their products summed in float32 ([`bf16::gemm`]); f64 (the gradient checks)
/// always runs in full precision.
///
/// # Safety
/// As [`gemm_raw`].
pub(crate) unsafe fn gemm_in<T: Elem>(
    precision: Precision,
    dst: *mut T,
    lhs: (&[T], Order),
    rhs: (&[T], Order),
    (m, k, n): (usize, usize, usize),
    accumulate: Option<(T, T)>,
    threads: Threads,
) {
    if precision == Precision::Bf16 && T::DTYPE == candle_core::DType::F32 {
        // SAFETY (casts): T is f32, checked above.
        let f32s = |s: &[T]| unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<f32>(), s.len()) };
        let (a, b) = (View::of(f32s(lhs.0), lhs.1, (m, k)), View::of(f32s(rhs.0), rhs.1, (k, n)));
        let accumulate = accumulate.map(|(alpha, beta)| (alpha.to_f32().unwrap_or(1.0), beta.to_f32().unwrap_or(1.0)));
        // SAFETY: the caller's guarantees carry over.
        return unsafe { bf16::gemm(dst.cast::<f32>(), a, b, (m, k, n), accumulate, threads) };
    }
    // SAFETY: the caller's guarantees carry over.
    unsafe { gemm_raw(dst, lhs, rhs, (m, k, n), accumulate, threads) }
}

/// `op(lhs) @ op(rhs)` into a new `(m x n)` buffer.
pub(crate) fn matmul<T: Elem>(precision: Precision, lhs: (&[T], Order), rhs: (&[T], Order), (m, k, n): (usize, usize, usize)) -> Result<Vec<T>> {
    if lhs.0.len() < m * k || rhs.0.len() < k * n {
        candle_core::bail!("matmul: buffers smaller than ({m}x{k}) @ ({k}x{n})");
    }
    // SAFETY: sizes checked above; the output is a fresh buffer that gemm fills completely.
    Ok(uninit(m * n, |dst| unsafe { gemm_in(precision, dst, lhs, rhs, (m, k, n), None, Threads::All) }))
}

/// Forward kernel into `out`: `out = act(x @ w + b)` for `x (m x k)`, `w (k x n)`, `b (n)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_into<T: Elem>(precision: Precision, x: &[T], w: &[T], b: &[T], m: usize, k: usize, act: Option<Unary>, out: &mut [T]) -> Result<()> {
    let n = b.len();
    if x.len() < m * k || w.len() < k * n || out.len() < m * n {
        candle_core::bail!("dense: buffers smaller than ({m}x{k}) @ ({k}x{n})");
    }
    // SAFETY: sizes checked above; `out` is borrowed mutably, so it overlaps nothing.
    unsafe { gemm_in(precision, out.as_mut_ptr(), (x, Order::Plain), (w, Order::Plain), (m, k, n), None, Threads::All) };
    BiasAct(act).apply_in_place(out, b);
    Ok(())
}

/// Forward kernel into a new buffer.
pub(crate) fn forward<T: Elem>(precision: Precision, x: &[T], w: &[T], b: &[T], m: usize, k: usize, act: Option<Unary>) -> Result<Vec<T>> {
    let mut out = matmul(precision, (x, Order::Plain), (w, Order::Plain), (m, k, b.len()))?;
    BiasAct(act).apply_in_place(&mut out, b);
    Ok(out)
}

/// `aᵀ @ b` for 2-D `a (m x k)` and `b (m x n)`: a kernel's gradient from its inputs and output
/// gradient.
pub fn matmul_tn(a: &Tensor, b: &Tensor, precision: Precision) -> Result<Tensor> {
    a.contiguous()?.apply_op2_no_bwd(&b.contiguous()?, &MatMul(Order::Transposed, Order::Plain, precision))
}

/// `w <- w - lr * aᵀ @ b` in one GEMM that reads and writes `w` (plain SGD on a kernel whose
/// gradient is `aᵀ @ b`); `w` must be contiguous with `k * n` elements.
pub fn sgd_update_tn(w: &Tensor, a: &Tensor, b: &Tensor, lr: f64, precision: Precision) -> Result<()> {
    w.inplace_op3(&a.contiguous()?, &b.contiguous()?, &SgdTn(lr, precision))
}

struct SgdTn(f64, Precision);

impl candle_core::InplaceOp3 for SgdTn {
    fn name(&self) -> &'static str {
        "kandle-sgd-gemm"
    }

    fn cpu_fwd(&self, w: &mut CpuStorage, wl: &Layout, a: &CpuStorage, al: &Layout, b: &CpuStorage, bl: &Layout) -> Result<()> {
        fn run<T: Elem>(w: &mut [T], a: &[T], b: &[T], (m, k, n): (usize, usize, usize), lr: f64, p: Precision) -> Result<()> {
            if w.len() != k * n || a.len() != m * k || b.len() != m * n {
                candle_core::bail!("sgd update: weight of {} elements for ({m}x{k})ᵀ @ ({m}x{n})", w.len());
            }
            // SAFETY: sizes checked above; `w` is borrowed mutably, so it overlaps nothing.
            unsafe { gemm_in(p, w.as_mut_ptr(), (a, Order::Transposed), (b, Order::Plain), (k, m, n), Some((T::one(), T::from(-lr).unwrap())), Threads::All) };
            Ok(())
        }
        let (&[m, k], &[m2, n]) = (al.dims(), bl.dims()) else { candle_core::bail!("sgd update expects 2-D factors") };
        let Some((start, end)) = wl.contiguous_offsets() else { candle_core::bail!("sgd update: weight not contiguous") };
        if m != m2 {
            candle_core::bail!("sgd update: factors have {m} and {m2} rows");
        }
        match w {
            CpuStorage::F32(w) => run(&mut w[start..end], contiguous(a, al)?, contiguous(b, bl)?, (m, k, n), self.0, self.1),
            CpuStorage::F64(w) => run(&mut w[start..end], contiguous(a, al)?, contiguous(b, bl)?, (m, k, n), self.0, self.1),
            other => Err(unsupported(self.name(), other.dtype())),
        }
    }
}

/// The gradients of `x @ w + b` from the gradient `dpre` of its result, for 2-D `x (m x k)` and
/// `w (k x n)`: `dx` (only when `input_grad`: a model's input needs none, which saves a GEMM in the
/// first layer), `db`, and `dw = xᵀ @ dpre` left as its two factors (see `Grad::Product`).
pub(crate) fn backward(x: &Tensor, w: &Tensor, dpre: &Tensor, input_grad: bool, precision: Precision) -> Result<(Option<Tensor>, (Tensor, Tensor), Tensor)> {
    let dpre = dpre.contiguous()?;
    let db = dpre.apply_op1_no_bwd(&ColumnSum)?;
    let dx = if input_grad { Some(dpre.apply_op2_no_bwd(&w.contiguous()?, &MatMul(Order::Plain, Order::Transposed, precision))?) } else { None };
    Ok((dx, (x.contiguous()?, dpre), db))
}

/// `op(a) @ op(b)` for contiguous 2-D tensors given in their stored shapes.
struct MatMul(Order, Order, Precision);

impl CustomOp2 for MatMul {
    fn name(&self) -> &'static str {
        "kandle-matmul"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (&[r1, c1], &[r2, c2]) = (l1.dims(), l2.dims()) else { candle_core::bail!("matmul expects 2-D operands") };
        let (m, k) = if self.0 == Order::Plain { (r1, c1) } else { (c1, r1) };
        let (k2, n) = if self.1 == Order::Plain { (r2, c2) } else { (c2, r2) };
        if k != k2 {
            candle_core::bail!("matmul: inner dimensions {k} and {k2} differ");
        }
        let out = float_map!(self.name(), [a = (s1, l1), b = (s2, l2)], matmul(self.2, (a, self.0), (b, self.1), (m, k, n))?);
        Ok((out, Shape::from((m, n))))
    }
}

/// Sums a contiguous `(m, n)` matrix over its rows (the bias gradient): per-thread partial sums over
/// row blocks, then one reduction; candle's generic `sum(0)` walks it column by column.
pub(crate) struct ColumnSum;

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
                .reduce(|| vec![T::zero(); n], super::add_partials)
        }
        let &[_, n] = l.dims() else { candle_core::bail!("column-sum expects a matrix") };
        let out = float_map!(self.name(), s, l, |x| run(x, n));
        Ok((out, Shape::from(n)))
    }
}

/// The Dense op on 2-D input.
struct LinearOp(Option<Unary>, Precision);

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "kandle-dense"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let (&[m, k], &[k2, n]) = (l1.dims(), l2.dims()) else { candle_core::bail!("dense expects 2-D operands") };
        if k != k2 || l3.shape().elem_count() != n {
            candle_core::bail!("dense: shapes {:?} @ {:?} + {:?} do not match", l1.dims(), l2.dims(), l3.dims());
        }
        let out = float_map!(self.name(), [x = (s1, l1), w = (s2, l2), b = (s3, l3)], forward(self.1, x, w, b, m, k, self.0)?);
        Ok((out, Shape::from((m, n))))
    }
}

/// `act(x @ w + b)` for 2-D `x`.
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor, act: Option<Unary>, precision: Precision) -> Result<Tensor> {
    x.contiguous()?.apply_op3_no_bwd(&w.contiguous()?, &b.contiguous()?, &LinearOp(act, precision))
}
