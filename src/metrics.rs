//! Metrics by their Keras names. Each gives the sum over a batch of a per-sample value; the training
//! loop keeps sample-weighted running means, as Keras's metric objects do.

use crate::{Error, Result};
use candle_core::{DType, Tensor, D};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// 'acc'/'accuracy': binary for one output unit, sparse for class-index targets, else categorical
    /// (Keras 3 decides from the shapes).
    Accuracy,
    CategoricalAccuracy,
    SparseCategoricalAccuracy,
    BinaryAccuracy,
    TopKCategoricalAccuracy(usize),
    MeanSquaredError,
    MeanAbsoluteError,
}

/// A compiled metric: the name it logs under and what it computes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metric {
    pub name: String,
    pub kind: MetricKind,
}

impl Metric {
    /// Resolves a name as Keras does; 'mse' logs under the 2018 name 'mean_squared_error' (History
    /// answers to both spellings).
    pub fn resolve(name: &str) -> Result<Self> {
        let (log_name, kind) = match name {
            "acc" | "accuracy" => (name, MetricKind::Accuracy),
            "mse" | "mean_squared_error" => ("mean_squared_error", MetricKind::MeanSquaredError),
            "mae" | "mean_absolute_error" => ("mean_absolute_error", MetricKind::MeanAbsoluteError),
            "categorical_accuracy" => (name, MetricKind::CategoricalAccuracy),
            "sparse_categorical_accuracy" => (name, MetricKind::SparseCategoricalAccuracy),
            "binary_accuracy" => (name, MetricKind::BinaryAccuracy),
            "top_k_categorical_accuracy" => (name, MetricKind::TopKCategoricalAccuracy(5)),
            other => {
                return Err(Error::Value(format!(
                    "Unknown metric function: '{other}'. Known: acc, accuracy, mse, mae, categorical_accuracy, \
                     sparse_categorical_accuracy, binary_accuracy, top_k_categorical_accuracy"
                )))
            }
        };
        Ok(Metric { name: log_name.to_string(), kind })
    }

    /// Sum over the batch of the per-sample metric. `y` holds class indices when `sparse_y`.
    pub fn batch_sum(&self, y: &Tensor, p: &Tensor, sparse_y: bool) -> Result<f64> {
        let y_class = || -> Result<Tensor> {
            Ok(if sparse_y { y.flatten_all()?.to_dtype(DType::U32)? } else { y.argmax(D::Minus1)? })
        };
        let count = |t: Tensor| -> Result<f64> { Ok(t.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?) };
        let kind = match self.kind {
            MetricKind::Accuracy if p.dims().last() == Some(&1) => MetricKind::BinaryAccuracy,
            MetricKind::Accuracy if sparse_y => MetricKind::SparseCategoricalAccuracy,
            MetricKind::Accuracy => MetricKind::CategoricalAccuracy,
            k => k,
        };
        match kind {
            MetricKind::Accuracy => unreachable!("resolved above"),
            MetricKind::CategoricalAccuracy | MetricKind::SparseCategoricalAccuracy => {
                count(p.argmax(D::Minus1)?.eq(&y_class()?)?)
            }
            MetricKind::BinaryAccuracy => {
                let pred = p.gt(0.5)?.to_dtype(p.dtype())?;
                count(pred.eq(y)?.to_dtype(DType::F64)?.mean(D::Minus1)?)
            }
            MetricKind::TopKCategoricalAccuracy(k) => {
                // In top k when fewer than k classes score strictly higher (ties count as in, as in TF).
                let target = p.gather(&y_class()?.unsqueeze(1)?, 1)?;
                let higher = p.broadcast_gt(&target)?.to_dtype(DType::F64)?.sum(D::Minus1)?;
                count(higher.lt(k as f64)?)
            }
            MetricKind::MeanSquaredError => count(p.sub(y)?.sqr()?.mean(D::Minus1)?),
            MetricKind::MeanAbsoluteError => count(p.sub(y)?.abs()?.mean(D::Minus1)?),
        }
    }
}
