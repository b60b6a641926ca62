//! Element-wise activations as single candle ops whose gradients are TensorFlow's (ReLU has gradient
//! 0 at exactly 0; ELU/SELU/sigmoid/tanh gradients are computed from the saved output), and a
//! last-axis softmax with its backward pass.

use super::{float_map, Elem};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, D};

const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;
const SELU_SCALE: f64 = 1.050_700_987_355_480_5;

/// The element-wise activations; `Linear` never reaches an op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unary {
    Relu,
    Sigmoid,
    Tanh,
    Elu,
    Selu,
    Softplus,
}

impl Unary {
    #[inline]
    pub(crate) fn f<T: Elem>(self, x: T) -> T {
        let one = T::one();
        let c = |v: f64| T::from(v).unwrap();
        match self {
            // `<=` lets NaN through, as TensorFlow's relu does.
            Unary::Relu => if x <= T::zero() { T::zero() } else { x },
            Unary::Sigmoid => {
                // Never evaluates exp of a large positive number.
                if x >= T::zero() { one / (one + (-x).exp()) } else { let e = x.exp(); e / (one + e) }
            }
            Unary::Tanh => x.tanh(),
            Unary::Elu => if x > T::zero() { x } else { x.exp_m1() },
            Unary::Selu => {
                if x > T::zero() { c(SELU_SCALE) * x } else { c(SELU_SCALE * SELU_ALPHA) * x.exp_m1() }
            }
            Unary::Softplus => num_traits::Float::max(x, T::zero()) + (-x.abs()).exp().ln_1p(),
        }
    }

    /// d f / d x from the output `y` alone (every activation here is monotone, so `y` determines
    /// `x`'s side of the kink); matches TensorFlow's *Grad kernels, including ReLU's 0 at exactly 0.
    #[inline]
    pub(crate) fn df<T: Elem>(self, y: T) -> T {
        let one = T::one();
        let c = |v: f64| T::from(v).unwrap();
        match self {
            Unary::Relu => if y > T::zero() { one } else { T::zero() },
            Unary::Sigmoid => y * (one - y),
            Unary::Tanh => one - y * y,
            // TF's EluGrad/SeluGrad select on `output < 0`, so x = 0 takes the positive branch.
            Unary::Elu => if y >= T::zero() { one } else { y + one },
            Unary::Selu => if y >= T::zero() { c(SELU_SCALE) } else { y + c(SELU_SCALE * SELU_ALPHA) },
            // softplus' = sigmoid(x) = 1 - exp(-y)
            Unary::Softplus => one - (-y).exp(),
        }
    }
}

impl CustomOp1 for Unary {
    fn name(&self) -> &'static str {
        "kandle-activation"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = float_map!(self.name(), s, l, |x| self.map(x));
        Ok((out, l.shape().clone()))
    }
}

/// Runs `$body` with `$op` bound to a constant variant, so that `f`/`df` inline without a
/// per-element match (a match inside the loop made a separate ReLU pass ~10x slower than memory).
macro_rules! each_unary {
    ($u:expr, $op:ident => $body:expr) => {
        match $u {
            Unary::Relu => { const $op: Unary = Unary::Relu; $body }
            Unary::Sigmoid => { const $op: Unary = Unary::Sigmoid; $body }
            Unary::Tanh => { const $op: Unary = Unary::Tanh; $body }
            Unary::Elu => { const $op: Unary = Unary::Elu; $body }
            Unary::Selu => { const $op: Unary = Unary::Selu; $body }
            Unary::Softplus => { const $op: Unary = Unary::Softplus; $body }
        }
    };
}

impl Unary {
    fn map<T: Elem>(self, x: &[T]) -> Vec<T> {
        each_unary!(self, OP => par_map(x, |v| OP.f(v)))
    }
}

/// Element-wise map, split across threads for large tensors.
pub(crate) fn par_map<T: Elem>(x: &[T], f: impl Fn(T) -> T + Sync) -> Vec<T> {
    use rayon::prelude::*;
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(PAR_CHUNK).zip(x.par_chunks(PAR_CHUNK)).for_each(|(o, i)| {
        o.iter_mut().zip(i).for_each(|(o, &i)| *o = f(i));
    });
    out
}

/// Elements per parallel task: big enough that scheduling costs nothing, small enough to split.
pub(crate) const PAR_CHUNK: usize = 1 << 15;

/// `grad * f'(y)`, element-wise, from the saved output `y`.
pub(crate) struct UnaryBackward(pub Unary);

impl CustomOp2 for UnaryBackward {
    fn name(&self) -> &'static str {
        "kandle-activation-backward"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        fn run<T: Elem>(op: Unary, y: &[T], g: &[T]) -> Vec<T> {
            use rayon::prelude::*;
            let mut out = vec![T::zero(); y.len()];
            each_unary!(op, OP => out.par_chunks_mut(PAR_CHUNK).zip(y.par_chunks(PAR_CHUNK).zip(g.par_chunks(PAR_CHUNK))).for_each(
                |(o, (y, g))| {
                    for ((o, &y), &g) in o.iter_mut().zip(y).zip(g) {
                        *o = g * OP.df(y);
                    }
                },
            ));
            out
        }
        let out = float_map!(self.name(), [y = (s1, l1), g = (s2, l2)], run(self.0, y, g));
        Ok((out, l1.shape().clone()))
    }
}

/// Applies an element-wise activation.
pub fn unary(x: &Tensor, op: Unary) -> Result<Tensor> {
    x.contiguous()?.apply_op1_no_bwd(&op)
}

/// `grad * f'(x)` from the activation's output `y`.
pub fn unary_backward(y: &Tensor, grad: &Tensor, op: Unary) -> Result<Tensor> {
    y.contiguous()?.apply_op2_no_bwd(&grad.contiguous()?, &UnaryBackward(op))
}

/// Softmax's vector-Jacobian product from its output: `y * (grad - sum(grad * y))` per row.
pub fn softmax_backward(y: &Tensor, grad: &Tensor) -> Result<Tensor> {
    let dot = grad.mul(y)?.sum_keepdim(D::Minus1)?;
    y.mul(&grad.broadcast_sub(&dot)?)
}

/// Softmax over the last axis, shifted by the row maximum; differentiable through candle's own ops
/// (unlike `candle_nn::ops::softmax_last_dim`, whose gradient silently stops), which the losses use.
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// log(softmax(x)) over the last axis, computed without forming the softmax (stable for large logits).
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    shifted.broadcast_sub(&shifted.exp()?.sum_keepdim(D::Minus1)?.log()?)
}
