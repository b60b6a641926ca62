//! A weight's gradient as the kernels produce it: computed, or still a product that plain SGD can
//! fold into the update (so the optimizer and the convolution kernels share it without either
//! importing the layers).

use super::bf16::Precision;
use candle_core::{Result, Tensor};

/// A weight's gradient, computed or still a product: a kernel's gradient is `xᵀ @ dy` (im2col rows
/// or Dense inputs against the output gradient), which plain SGD folds into one GEMM that updates
/// the weight in place, so the gradient itself is never stored.
pub enum Grad {
    Value(Tensor),
    /// `lhsᵀ @ rhs` for 2-D `lhs (m, k)` and `rhs (m, n)`, reshaped to the weight's shape, in
    /// the precision of the layer's products.
    Product { lhs: Tensor, rhs: Tensor, precision: Precision },
}

impl Grad {
    /// The gradient as a tensor shaped like `like`.
    pub fn value(&self, like: &Tensor) -> Result<Tensor> {
        match self {
            Grad::Value(t) => Ok(t.clone()),
            Grad::Product { lhs, rhs, precision } => super::linear::matmul_tn(lhs, rhs, *precision)?.reshape(like.shape()),
        }
    }

    /// The sum of two gradients of one weight (a layer called twice in a graph).
    pub fn add(self, other: &Grad, like: &Tensor) -> Result<Grad> {
        Ok(Grad::Value(self.value(like)?.add(&other.value(like)?)?))
    }
}
