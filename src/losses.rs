//! Losses by their Keras names, as per-sample values that the model averages over the batch
//! (Keras's 'sum_over_batch_size'). Cross-entropies after a final softmax/sigmoid are computed from
//! the logits, as Keras does, so a confident wrong answer gives a large finite loss, not inf.

use crate::activations::Activation;
use crate::ops::unary::{log_softmax, Unary};
use crate::{Error, Result};
use candle_core::{DType, Tensor, Var, D};

/// Keras's `epsilon()`: probabilities are clipped to [EPS, 1-EPS] when no logits are available.
pub const EPS: f64 = 1e-7;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    CategoricalCrossentropy,
    SparseCategoricalCrossentropy,
    BinaryCrossentropy,
    MeanSquaredError,
    MeanAbsoluteError,
}

impl Loss {
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "categorical_crossentropy" | "CategoricalCrossentropy" => Loss::CategoricalCrossentropy,
            "sparse_categorical_crossentropy" | "SparseCategoricalCrossentropy" => {
                Loss::SparseCategoricalCrossentropy
            }
            "binary_crossentropy" | "BinaryCrossentropy" => Loss::BinaryCrossentropy,
            "mean_squared_error" | "mse" | "MeanSquaredError" => Loss::MeanSquaredError,
            "mean_absolute_error" | "mae" | "MeanAbsoluteError" => Loss::MeanAbsoluteError,
            other => {
                return Err(Error::Value(format!(
                    "Could not interpret loss identifier: '{other}'. Known: categorical_crossentropy, \
                     sparse_categorical_crossentropy, binary_crossentropy, mean_squared_error (mse), \
                     mean_absolute_error (mae)"
                )))
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Loss::CategoricalCrossentropy => "categorical_crossentropy",
            Loss::SparseCategoricalCrossentropy => "sparse_categorical_crossentropy",
            Loss::BinaryCrossentropy => "binary_crossentropy",
            Loss::MeanSquaredError => "mean_squared_error",
            Loss::MeanAbsoluteError => "mean_absolute_error",
        }
    }

    /// Whether targets are class indices `(n,)`/`(n, 1)` rather than arrays shaped like the output.
    pub fn sparse(self) -> bool {
        self == Loss::SparseCategoricalCrossentropy
    }

    /// Per-sample loss `(n,)`. `y` is the target (class indices as floats when sparse), `probs` the
    /// model output, `pre` the pre-activation output and `act` the final activation.
    pub fn per_sample(self, y: &Tensor, probs: &Tensor, pre: &Tensor, act: Activation) -> Result<Tensor> {
        let last = |t: Tensor| -> Result<Tensor> { Ok(t.mean(D::Minus1)?) };
        Ok(match self {
            Loss::MeanSquaredError => last(probs.sub(y)?.sqr()?)?,
            Loss::MeanAbsoluteError => {
                // |d| as d * sign(d): the same value (NaN stays NaN), and a gradient of sign(d), 0 at
                // d = 0 as TensorFlow's (candle's `abs` backward gives 1 there).
                let d = probs.sub(y)?;
                last(d.mul(&d.sign()?)?)?
            }
            Loss::CategoricalCrossentropy => {
                let logp = if act == Activation::Softmax { log_softmax(pre)? } else { clipped_log_normalized(probs)? };
                y.mul(&logp)?.sum(D::Minus1)?.neg()?
            }
            Loss::SparseCategoricalCrossentropy => {
                let logp = if act == Activation::Softmax { log_softmax(pre)? } else { clipped_log_normalized(probs)? };
                let idx = y.flatten_all()?.to_dtype(DType::U32)?.unsqueeze(1)?;
                logp.gather(&idx, 1)?.squeeze(1)?.neg()?
            }
            Loss::BinaryCrossentropy => {
                if act == Activation::Elementwise(Unary::Sigmoid) {
                    // max(z, 0) - z*y + log(1 + exp(-|z|))
                    let z = pre;
                    let t = z.relu()?.sub(&z.mul(y)?)?.add(&z.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?)?;
                    last(t)?
                } else {
                    let p = probs.clamp(EPS, 1.0 - EPS)?;
                    let one_minus_y = y.affine(-1.0, 1.0)?;
                    let one_minus_p = p.affine(-1.0, 1.0)?;
                    let t = y.mul(&p.log()?)?.add(&one_minus_y.mul(&one_minus_p.log()?)?)?.neg()?;
                    last(t)?
                }
            }
        })
    }
}

/// The batch-mean loss and its gradient with respect to `pre`, the last layer's pre-activation
/// output, which the model's backward pass starts from. candle's autograd differentiates the loss on
/// this small graph, with the output `act(pre)` as a leaf of its own whose gradient then goes
/// through the activation's backward pass (the loss reads the logits, the probabilities, or both).
pub fn loss_and_gradient(loss: Loss, y: &Tensor, pre: &Tensor, act: Activation) -> Result<(Tensor, Tensor, Tensor)> {
    let pre = Var::from_tensor(pre)?;
    // Detached, so that a linear activation's output is a leaf distinct from `pre`.
    let probs = Var::from_tensor(&act.apply(pre.as_tensor())?.detach())?;
    let value = loss.per_sample(y, probs.as_tensor(), pre.as_tensor(), act)?.mean_all()?;
    let grads = value.backward()?;
    let mut dpre = match grads.get(pre.as_tensor()) {
        Some(g) => g.clone(),
        None => pre.as_tensor().zeros_like()?,
    };
    if let Some(dprobs) = grads.get(probs.as_tensor()) {
        dpre = dpre.add(&act.backward(probs.as_tensor(), dprobs)?)?;
    }
    Ok((value.detach(), probs.as_tensor().detach(), dpre))
}

/// Keras's cross-entropy on probabilities: renormalise, clip to [EPS, 1-EPS], log.
fn clipped_log_normalized(p: &Tensor) -> Result<Tensor> {
    let p = p.broadcast_div(&p.sum_keepdim(D::Minus1)?)?;
    Ok(p.clamp(EPS, 1.0 - EPS)?.log()?)
}
