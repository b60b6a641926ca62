//! Losses by their Keras names and options (`from_logits`, `label_smoothing`, `reduction`), as
//! per-sample values that the model reduces over the batch (Keras's default 'sum_over_batch_size'). Cross-entropies after a final softmax/sigmoid are computed from
//! the logits, as Keras does, so a confident wrong answer gives a large finite loss, not inf.

use crate::activations::Activation;
use crate::ops::unary::{log_softmax, Unary};
use crate::{Error, Result};
use candle_core::{DType, Tensor, Var, D};
use serde_json::{json, Value};

/// Keras's `epsilon()`: probabilities are clipped to [EPS, 1-EPS] when no logits are available.
pub const EPS: f64 = 1e-7;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    CategoricalCrossentropy,
    SparseCategoricalCrossentropy,
    BinaryCrossentropy,
    MeanSquaredError,
    MeanAbsoluteError,
    /// A loss written in Python with `kandle.ops` (a function or a `Loss` subclass): its recorded
    /// graph, by its index in [`custom`]'s table (so that a `Loss` stays a small `Copy` value).
    Custom(u32),
}

/// Recorded loss graphs, by their index in [`crate::symbolic::table`].
pub mod custom {
    use crate::symbolic::table::{self, Recorded};
    use crate::symbolic::OpGraph;
    use crate::{Error, Result};
    use serde_json::Value;

    /// `{"class_name": "kandle>GraphLoss", "config": {"name", "reduction", "graph"}}`: its index,
    /// checked when first seen (two inputs, per-sample or scalar float output).
    pub fn register(v: &Value) -> Result<u32> {
        table::register(v, |v| {
            let cfg = &v["config"];
            let name = cfg["name"].as_str().unwrap_or("custom_loss");
            let who = format!("Loss \"{name}\"");
            let graph = OpGraph::from_json(&cfg["graph"], &who)?;
            if graph.inputs.len() != 2 {
                return Err(Error::Value(format!("{who}: a loss takes (y_true, y_pred); the record has {} inputs", graph.inputs.len())));
            }
            let out = graph.output_sym();
            if out.kind != crate::symbolic::Kind::Float || (!out.shape.is_empty() && out.shape[0].is_some()) {
                return Err(Error::Value(format!(
                    "{who}: a loss must return float values per sample (shape (None, ...)) or one float; it returned shape {} ({})",
                    crate::symbolic::shape::show(&out.shape),
                    out.kind.name()
                )));
            }
            Ok(Recorded { name: crate::layers::custom::intern(name), graphs: vec![graph], state: Vec::new(), init: Vec::new(), value: v.clone() })
        })
    }

    pub fn get(i: u32) -> std::sync::Arc<Recorded> {
        table::get(i)
    }
}

/// How the per-sample losses of a batch become the loss (Keras's `reduction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// 'sum_over_batch_size' (Keras's default), also 'mean' and 'auto'.
    Mean,
    Sum,
}

/// A loss: its kind and Keras's options (`from_logits`, `label_smoothing`, `reduction`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Loss {
    pub kind: Kind,
    /// The model's output is logits: cross-entropies apply their own softmax/sigmoid.
    pub from_logits: bool,
    /// Targets move towards uniform: `y (1 - s) + s / classes` (`s / 2` for binary).
    pub label_smoothing: f64,
    pub reduction: Reduction,
}

#[allow(non_upper_case_globals)]
impl Loss {
    pub const CategoricalCrossentropy: Loss = Loss::of(Kind::CategoricalCrossentropy);
    pub const SparseCategoricalCrossentropy: Loss = Loss::of(Kind::SparseCategoricalCrossentropy);
    pub const BinaryCrossentropy: Loss = Loss::of(Kind::BinaryCrossentropy);
    pub const MeanSquaredError: Loss = Loss::of(Kind::MeanSquaredError);
    pub const MeanAbsoluteError: Loss = Loss::of(Kind::MeanAbsoluteError);

    const fn of(kind: Kind) -> Loss {
        Loss { kind, from_logits: false, label_smoothing: 0.0, reduction: Reduction::Mean }
    }

    fn kind_of(name: &str) -> Result<Kind> {
        if name == "kandle>GraphLoss" {
            return Err(Error::Value("a recorded loss needs its config".into()));
        }
        Ok(match name {
            "categorical_crossentropy" | "CategoricalCrossentropy" => Kind::CategoricalCrossentropy,
            "sparse_categorical_crossentropy" | "SparseCategoricalCrossentropy" => Kind::SparseCategoricalCrossentropy,
            "binary_crossentropy" | "BinaryCrossentropy" => Kind::BinaryCrossentropy,
            "mean_squared_error" | "mse" | "MeanSquaredError" => Kind::MeanSquaredError,
            "mean_absolute_error" | "mae" | "MeanAbsoluteError" => Kind::MeanAbsoluteError,
            other => {
                return Err(Error::Value(format!(
                    "Could not interpret loss identifier: '{other}'. Known: categorical_crossentropy, \
                     sparse_categorical_crossentropy, binary_crossentropy, mean_squared_error (mse), \
                     mean_absolute_error (mae)"
                )))
            }
        })
    }

    /// A name ('categorical_crossentropy') or a loss object's config as JSON:
    /// `{"class_name": "CategoricalCrossentropy", "config": {"from_logits", "label_smoothing", "reduction"}}`.
    pub fn parse(name: &str) -> Result<Self> {
        if name.trim_start().starts_with('{') {
            let v: Value = serde_json::from_str(name).map_err(|e| Error::Value(format!("Could not interpret loss identifier: {e}")))?;
            return Self::from_value(&v);
        }
        Ok(Loss::of(Self::kind_of(name)?))
    }

    /// What `compile_config` stores: a name, or `{"class_name", "config"}` for a loss with options.
    pub fn from_value(v: &Value) -> Result<Self> {
        if let Some(name) = v.as_str() {
            return Self::parse(name);
        }
        let class = v["class_name"].as_str().unwrap_or("<missing class_name>");
        if class == "kandle>GraphLoss" {
            let mut loss = Loss::of(Kind::Custom(custom::register(v)?));
            if v["config"]["reduction"].as_str() == Some("sum") {
                loss.reduction = Reduction::Sum;
            }
            return Ok(loss);
        }
        let mut loss = Loss::of(Self::kind_of(class)?);
        let cfg = &v["config"];
        loss.from_logits = cfg["from_logits"].as_bool().unwrap_or(false);
        if loss.from_logits && !matches!(loss.kind, Kind::CategoricalCrossentropy | Kind::SparseCategoricalCrossentropy | Kind::BinaryCrossentropy) {
            return Err(Error::Value(format!("{class} takes no `from_logits`")));
        }
        if let Some(ls) = cfg.get("label_smoothing").filter(|x| !x.is_null()) {
            let ls = ls.as_f64().filter(|x| (0.0..=1.0).contains(x)).ok_or_else(|| Error::Value(format!("{class}: `label_smoothing` must be a number in [0, 1], got {ls}")))?;
            if ls != 0.0 && !matches!(loss.kind, Kind::CategoricalCrossentropy | Kind::BinaryCrossentropy) {
                return Err(Error::Value(format!("{class} takes no `label_smoothing`")));
            }
            loss.label_smoothing = ls;
        }
        loss.reduction = match cfg["reduction"].as_str() {
            None | Some("sum_over_batch_size") | Some("auto") | Some("mean") => Reduction::Mean,
            Some("sum") => Reduction::Sum,
            Some(other) => {
                return Err(Error::Value(format!(
                    "kandle does not implement the loss reduction '{other}' yet (it has 'sum_over_batch_size', 'mean', 'sum')"
                )))
            }
        };
        Ok(loss)
    }

    /// The loss as `compile_config` keeps it: its name when it has Keras's defaults.
    pub fn to_value(self) -> Value {
        if let Kind::Custom(i) = self.kind {
            return custom::get(i).value.clone();
        }
        if self == Loss::of(self.kind) {
            return json!(self.name());
        }
        let class = match self.kind {
            Kind::CategoricalCrossentropy => "CategoricalCrossentropy",
            Kind::SparseCategoricalCrossentropy => "SparseCategoricalCrossentropy",
            Kind::BinaryCrossentropy => "BinaryCrossentropy",
            Kind::MeanSquaredError => "MeanSquaredError",
            Kind::MeanAbsoluteError => "MeanAbsoluteError",
            Kind::Custom(_) => unreachable!("returned above"),
        };
        let reduction = match self.reduction {
            Reduction::Mean => "sum_over_batch_size",
            Reduction::Sum => "sum",
        };
        json!({"class_name": class, "config": {"from_logits": self.from_logits, "label_smoothing": self.label_smoothing, "reduction": reduction}})
    }

    pub fn name(self) -> &'static str {
        match self.kind {
            Kind::CategoricalCrossentropy => "categorical_crossentropy",
            Kind::SparseCategoricalCrossentropy => "sparse_categorical_crossentropy",
            Kind::BinaryCrossentropy => "binary_crossentropy",
            Kind::MeanSquaredError => "mean_squared_error",
            Kind::MeanAbsoluteError => "mean_absolute_error",
            Kind::Custom(i) => custom::get(i).name,
        }
    }

    /// The per-sample target shape a recorded loss was recorded for (None for the built-in ones).
    pub fn custom_target_shape(self) -> Option<Vec<Option<usize>>> {
        match self.kind {
            Kind::Custom(i) => Some(custom::get(i).graphs[0].inputs[0].shape[1..].to_vec()),
            _ => None,
        }
    }

    /// Whether targets are class indices `(n,)`/`(n, 1)` rather than arrays shaped like the output.
    pub fn sparse(self) -> bool {
        self.kind == Kind::SparseCategoricalCrossentropy
    }

    /// The batch's loss from its per-sample losses.
    pub fn reduce(self, per_sample: &Tensor) -> Result<Tensor> {
        self.reduce_weighted(per_sample, None)
    }

    /// Keras 3's reduction of weighted per-sample losses: `sum(w * l)`, divided by the number of
    /// samples (not by the weights' sum) for 'sum_over_batch_size'.
    pub fn reduce_weighted(self, per_sample: &Tensor, weights: Option<&Tensor>) -> Result<Tensor> {
        let weighted;
        let per_sample = match weights {
            Some(w) => {
                weighted = per_sample.mul(&w.to_dtype(per_sample.dtype())?.reshape(per_sample.shape())?)?;
                &weighted
            }
            None => per_sample,
        };
        Ok(match self.reduction {
            Reduction::Mean => per_sample.mean_all()?,
            Reduction::Sum => per_sample.sum_all()?,
        })
    }

    /// Per-sample loss `(n,)`. `y` is the target (class indices as floats when sparse), `probs` the
    /// model output, `pre` the pre-activation output and `act` the final activation.
    pub fn per_sample(self, y: &Tensor, probs: &Tensor, pre: &Tensor, act: Activation) -> Result<Tensor> {
        let last = |t: Tensor| -> Result<Tensor> { Ok(t.mean(D::Minus1)?) };
        // With from_logits the model's output itself is the logits, whatever its activation.
        let (logits, act) = if self.from_logits { (probs, self.logit_activation()) } else { (pre, act) };
        let smooth = |y: &Tensor, classes: f64| -> Result<Tensor> {
            Ok(if self.label_smoothing > 0.0 {
                y.affine(1.0 - self.label_smoothing, self.label_smoothing / classes)?
            } else {
                y.clone()
            })
        };
        Ok(match self.kind {
            Kind::Custom(i) => {
                // Keras reduces a loss function's values over all their elements: per sample, the
                // mean over the non-batch axes (a scalar result is every sample's).
                let rec = custom::get(i);
                let v = rec.graphs[0].eval(&[y.to_dtype(probs.dtype())?, probs.clone()], &[])?;
                let n = probs.dim(0)?;
                match v.rank() {
                    0 => v.broadcast_as(n)?,
                    1 => v,
                    _ => v.flatten_from(1)?.mean(1)?,
                }
            }
            Kind::MeanSquaredError => last(probs.sub(y)?.sqr()?)?,
            Kind::MeanAbsoluteError => {
                // |d| as d * sign(d): the same value (NaN stays NaN), and a gradient of sign(d), 0 at
                // d = 0 as TensorFlow's (candle's `abs` backward gives 1 there).
                let d = probs.sub(y)?;
                last(d.mul(&d.sign()?)?)?
            }
            Kind::CategoricalCrossentropy => {
                let logp = if act == Activation::Softmax { log_softmax(logits)? } else { clipped_log_normalized(probs)? };
                let y = smooth(y, *probs.dims().last().unwrap_or(&1) as f64)?;
                y.mul(&logp)?.sum(D::Minus1)?.neg()?
            }
            Kind::SparseCategoricalCrossentropy => {
                let logp = if act == Activation::Softmax { log_softmax(logits)? } else { clipped_log_normalized(probs)? };
                let idx = y.flatten_all()?.to_dtype(DType::U32)?.unsqueeze(1)?;
                logp.gather(&idx, 1)?.squeeze(1)?.neg()?
            }
            Kind::BinaryCrossentropy => {
                let y = &smooth(y, 2.0)?;
                if act == Activation::Elementwise(Unary::Sigmoid) {
                    // max(z, 0) - z*y + log(1 + exp(-|z|))
                    let z = logits;
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

    /// The activation a `from_logits` cross-entropy applies to the output itself.
    fn logit_activation(self) -> Activation {
        match self.kind {
            Kind::BinaryCrossentropy => Activation::Elementwise(Unary::Sigmoid),
            _ => Activation::Softmax,
        }
    }
}

/// The batch-mean loss and its gradient with respect to `pre`, the last layer's pre-activation
/// output, which the model's backward pass starts from. candle's autograd differentiates the loss on
/// this small graph, with the output `act(pre)` as a leaf of its own whose gradient then goes
/// through the activation's backward pass (the loss reads the logits, the probabilities, or both).
pub fn loss_and_gradient(loss: Loss, y: &Tensor, pre: &Tensor, act: Activation, weights: Option<&Tensor>) -> Result<(Tensor, Tensor, Tensor)> {
    let pre = Var::from_tensor(pre)?;
    // Detached, so that a linear activation's output is a leaf distinct from `pre`.
    let probs = Var::from_tensor(&act.apply(pre.as_tensor())?.detach())?;
    let value = loss.reduce_weighted(&loss.per_sample(y, probs.as_tensor(), pre.as_tensor(), act)?, weights)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{check_loss, normal, one_hot, uniform, var};

    fn with(kind: Loss, from_logits: bool, label_smoothing: f64, reduction: Reduction) -> Loss {
        Loss { from_logits, label_smoothing, reduction, ..kind }
    }

    #[test]
    fn weighted_gradients_match_finite_differences() {
        let z = || var(normal(20, 41).into_iter().map(|v| 2.0 * v).collect(), &[4, 5]);
        let w = crate::gradcheck::tensor(vec![0.5, 0.0, 2.0, 1.25], &[4]);
        let y = one_hot(&[1, 0, 4, 2], 5);
        crate::gradcheck::check_weighted_loss("weighted CE", Loss::CategoricalCrossentropy, Activation::Softmax, y, z(), Some(w.clone()));
        let (t, p) = (crate::gradcheck::tensor(normal(20, 42), &[4, 5]), var(normal(20, 43), &[4, 5]));
        crate::gradcheck::check_weighted_loss("weighted MSE, sum", with(Loss::MeanSquaredError, false, 0.0, Reduction::Sum), Activation::Linear, t, p, Some(w));
    }

    #[test]
    fn options_gradients_match_finite_differences() {
        // from_logits: the output itself is the logits (no final activation).
        let z = || var(normal(20, 31).into_iter().map(|v| 2.0 * v).collect(), &[4, 5]);
        let y = one_hot(&[1, 0, 4, 2], 5);
        check_loss("CE from_logits", with(Loss::CategoricalCrossentropy, true, 0.0, Reduction::Mean), Activation::Linear, y.clone(), z());
        check_loss("CE from_logits, smoothing, sum", with(Loss::CategoricalCrossentropy, true, 0.2, Reduction::Sum), Activation::Linear, y.clone(), z());
        check_loss("CE after softmax, smoothing", with(Loss::CategoricalCrossentropy, false, 0.1, Reduction::Mean), Activation::Softmax, y, z());
        let labels = crate::gradcheck::tensor(vec![3.0, 0.0, 1.0, 4.0], &[4]);
        check_loss("sparse CE from_logits", with(Loss::SparseCategoricalCrossentropy, true, 0.0, Reduction::Mean), Activation::Linear, labels, z());
        let yb = crate::gradcheck::tensor(uniform(12, 0.0, 1.0, 33).into_iter().map(|v| v.round()).collect(), &[4, 3]);
        let zb = var(normal(12, 34), &[4, 3]);
        check_loss("BCE from_logits, smoothing", with(Loss::BinaryCrossentropy, true, 0.2, Reduction::Mean), Activation::Linear, yb, zb);
        let (t, p) = (crate::gradcheck::tensor(normal(12, 35), &[4, 3]), var(normal(12, 36), &[4, 3]));
        check_loss("MSE, sum", with(Loss::MeanSquaredError, false, 0.0, Reduction::Sum), Activation::Linear, t, p);
    }

    #[test]
    fn the_config_round_trips_and_defaults_stay_names() {
        assert_eq!(Loss::CategoricalCrossentropy.to_value(), json!("categorical_crossentropy"));
        let l = with(Loss::BinaryCrossentropy, true, 0.1, Reduction::Sum);
        assert_eq!(Loss::from_value(&l.to_value()).unwrap(), l);
        assert!(Loss::parse(r#"{"class_name": "MeanSquaredError", "config": {"from_logits": true}}"#).is_err());
        assert!(Loss::parse(r#"{"class_name": "SparseCategoricalCrossentropy", "config": {"label_smoothing": 0.1}}"#).is_err());
    }
}
