//! Metrics by their Keras names or as Keras 3 metric objects' configs. Each metric turns a batch into
//! a few statistics that add up over batches (a per-sample sum for the averaged metrics; counts of
//! true and false positives for Precision, Recall and AUC) and computes its value from the totals, as
//! Keras's stateful metric objects do; the training loop keeps the totals.

use crate::{Error, Result};
use candle_core::{DType, Tensor, D};
use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
pub enum MetricKind {
    /// 'acc'/'accuracy': binary for one output unit, sparse for class-index targets, else categorical
    /// (Keras 3 decides from the shapes).
    Accuracy,
    /// `keras.metrics.Accuracy()`: how often the prediction equals the target exactly.
    Equal,
    CategoricalAccuracy,
    SparseCategoricalAccuracy,
    BinaryAccuracy(f64),
    TopKCategoricalAccuracy(usize),
    MeanSquaredError,
    MeanAbsoluteError,
    /// `keras.metrics.Mean()`: the weighted mean of the values given (standalone only).
    Mean,
    Precision(f64),
    Recall(f64),
    /// ROC AUC with Keras's thresholds and interpolation.
    Auc(usize),
    /// A metric written in Python with `kandle.ops`, by its index in [`crate::symbolic::table`]: a
    /// function of `(y_true, y_pred)` (its per-sample values averaged, Keras's MeanMetricWrapper), or a
    /// `Metric` subclass whose `update_state` adds to its variables (the sums are the statistics;
    /// `result()` is a recorded graph of the variables).
    Graph(u32),
}

/// A compiled metric: the name it logs under and what it computes.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    pub name: String,
    pub kind: MetricKind,
    /// What `compile_config` saves: the name it logs under, or the object's `{"class_name", "config"}`.
    pub source: Value,
}

fn count(t: Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?)
}

fn divide_no_nan(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a / b
    }
}

impl Metric {
    /// Resolves a name as Keras does ('mse' logs under the 2018 name 'mean_squared_error'; History
    /// answers to both spellings), or a metric object's `{"class_name", "config"}` as JSON.
    pub fn resolve(name: &str) -> Result<Self> {
        if name.trim_start().starts_with('{') {
            let v: Value = serde_json::from_str(name).map_err(|e| Error::Value(format!("Could not interpret metric identifier: {e}")))?;
            return Self::from_value(&v);
        }
        let (log_name, kind) = match name {
            "acc" | "accuracy" => (name, MetricKind::Accuracy),
            "mse" | "mean_squared_error" => ("mean_squared_error", MetricKind::MeanSquaredError),
            "mae" | "mean_absolute_error" => ("mean_absolute_error", MetricKind::MeanAbsoluteError),
            "categorical_accuracy" => (name, MetricKind::CategoricalAccuracy),
            "sparse_categorical_accuracy" => (name, MetricKind::SparseCategoricalAccuracy),
            "binary_accuracy" => (name, MetricKind::BinaryAccuracy(0.5)),
            "top_k_categorical_accuracy" => (name, MetricKind::TopKCategoricalAccuracy(5)),
            "auc" => (name, MetricKind::Auc(200)),
            "precision" => (name, MetricKind::Precision(0.5)),
            "recall" => (name, MetricKind::Recall(0.5)),
            other => {
                return Err(Error::Value(format!(
                    "Unknown metric function: '{other}'. Known: acc, accuracy, mse, mae, categorical_accuracy, \
                     sparse_categorical_accuracy, binary_accuracy, top_k_categorical_accuracy, auc, precision, recall"
                )))
            }
        };
        Ok(Metric { name: log_name.to_string(), kind, source: Value::String(log_name.to_string()) })
    }

    /// What `compile_config` stores: a name, or a Keras 3 metric object's `{"class_name", "config"}`.
    pub fn from_value(v: &Value) -> Result<Self> {
        if let Some(name) = v.as_str() {
            return Self::resolve(name);
        }
        let class = v["class_name"].as_str().unwrap_or("<missing class_name>");
        let cfg = &v["config"];
        if class == "kandle>GraphMetric" {
            let i = graph::register(v)?;
            return Ok(Metric { name: crate::symbolic::table::get(i).name.to_string(), kind: MetricKind::Graph(i), source: v.clone() });
        }
        let num = |key: &str, default: f64| cfg.get(key).and_then(Value::as_f64).unwrap_or(default);
        let threshold = |default: f64| -> Result<f64> {
            match cfg.get("thresholds").filter(|x| !x.is_null()) {
                None => Ok(default),
                Some(x) => x.as_f64().filter(|t| (0.0..=1.0).contains(t)).ok_or_else(|| {
                    Error::Value(format!("kandle does not implement {class}(thresholds={x}) yet: one threshold in [0, 1]"))
                }),
            }
        };
        for key in ["top_k", "class_id"] {
            if cfg.get(key).is_some_and(|x| !x.is_null()) {
                return Err(Error::Value(format!("kandle does not implement {class}({key}=...) yet")));
            }
        }
        let (default_name, kind) = match class {
            "Accuracy" => ("accuracy", MetricKind::Equal),
            "CategoricalAccuracy" => ("categorical_accuracy", MetricKind::CategoricalAccuracy),
            "SparseCategoricalAccuracy" => ("sparse_categorical_accuracy", MetricKind::SparseCategoricalAccuracy),
            "BinaryAccuracy" => ("binary_accuracy", MetricKind::BinaryAccuracy(num("threshold", 0.5))),
            "TopKCategoricalAccuracy" => {
                let k = cfg.get("k").and_then(Value::as_u64).unwrap_or(5);
                if k == 0 {
                    return Err(Error::Value("TopKCategoricalAccuracy: `k` must be a positive integer".into()));
                }
                ("top_k_categorical_accuracy", MetricKind::TopKCategoricalAccuracy(k as usize))
            }
            "MeanSquaredError" => ("mean_squared_error", MetricKind::MeanSquaredError),
            "MeanAbsoluteError" => ("mean_absolute_error", MetricKind::MeanAbsoluteError),
            "Mean" => ("mean", MetricKind::Mean),
            "Precision" => ("precision", MetricKind::Precision(threshold(0.5)?)),
            "Recall" => ("recall", MetricKind::Recall(threshold(0.5)?)),
            "AUC" => {
                let curve = cfg.get("curve").and_then(Value::as_str).unwrap_or("ROC");
                let method = cfg.get("summation_method").and_then(Value::as_str).unwrap_or("interpolation");
                let multi = cfg.get("multi_label").and_then(Value::as_bool).unwrap_or(false);
                if !curve.eq_ignore_ascii_case("roc") || method != "interpolation" || multi || cfg.get("thresholds").is_some_and(|x| !x.is_null()) {
                    return Err(Error::Value(format!(
                        "kandle does not implement AUC(curve={curve:?}, summation_method={method:?}, multi_label={multi}, thresholds=...) yet: \
                         it has the ROC curve with 'interpolation' and evenly spaced thresholds"
                    )));
                }
                let n = cfg.get("num_thresholds").and_then(Value::as_u64).unwrap_or(200);
                if n <= 1 {
                    return Err(Error::Value(format!("Argument `num_thresholds` must be an integer > 1. Received: num_thresholds={n}")));
                }
                ("auc", MetricKind::Auc(n as usize))
            }
            other => return Err(Error::Value(format!("kandle does not implement the metric keras.metrics.{other} yet"))),
        };
        let name = cfg.get("name").and_then(Value::as_str).unwrap_or(default_name).to_string();
        Ok(Metric { name, kind, source: v.clone() })
    }

    /// How many statistics the metric adds up per batch.
    pub fn width(&self) -> usize {
        match self.kind {
            MetricKind::Precision(_) | MetricKind::Recall(_) | MetricKind::Mean => 2,
            MetricKind::Auc(n) => 4 * n,
            MetricKind::Graph(i) => crate::symbolic::table::get(i).init.len().max(1),
            _ => 1,
        }
    }

    /// The batch's statistics. `y` holds class indices when `sparse_y`; for `Mean`, `p` holds the values.
    pub fn batch_stats(&self, y: &Tensor, p: &Tensor, sparse_y: bool) -> Result<Vec<f64>> {
        let y_class = || -> Result<Tensor> {
            Ok(if sparse_y { y.flatten_all()?.to_dtype(DType::U32)? } else { y.argmax(D::Minus1)? })
        };
        let kind = match self.kind {
            MetricKind::Accuracy if p.dims().last() == Some(&1) => MetricKind::BinaryAccuracy(0.5),
            MetricKind::Accuracy if sparse_y => MetricKind::SparseCategoricalAccuracy,
            MetricKind::Accuracy => MetricKind::CategoricalAccuracy,
            ref k => k.clone(),
        };
        let positives = |t: f64| -> Result<(Tensor, Tensor)> {
            Ok((p.flatten_all()?.gt(t)?.to_dtype(DType::F64)?, y.flatten_all()?.ne(0.0)?.to_dtype(DType::F64)?))
        };
        Ok(match kind {
            MetricKind::Graph(i) => graph::batch_stats(i, y, p)?,
            MetricKind::Accuracy => unreachable!("resolved above"),
            MetricKind::Equal => {
                let y = if y.dims() == p.dims() { y.clone() } else { y.reshape(p.shape())? };
                vec![count(p.eq(&y)?.to_dtype(DType::F64)?.flatten_from(1)?.mean(D::Minus1)?)?]
            }
            MetricKind::CategoricalAccuracy | MetricKind::SparseCategoricalAccuracy => {
                vec![count(p.argmax(D::Minus1)?.eq(&y_class()?)?)?]
            }
            MetricKind::BinaryAccuracy(t) => {
                let pred = p.gt(t)?.to_dtype(p.dtype())?;
                vec![count(pred.eq(y)?.to_dtype(DType::F64)?.mean(D::Minus1)?)?]
            }
            MetricKind::TopKCategoricalAccuracy(k) => {
                // In top k when fewer than k classes score strictly higher (ties count as in, as in TF).
                let target = p.gather(&y_class()?.unsqueeze(1)?, 1)?;
                let higher = p.broadcast_gt(&target)?.to_dtype(DType::F64)?.sum(D::Minus1)?;
                vec![count(higher.lt(k as f64)?)?]
            }
            MetricKind::MeanSquaredError => vec![count(p.sub(y)?.sqr()?.mean(D::Minus1)?)?],
            MetricKind::MeanAbsoluteError => vec![count(p.sub(y)?.abs()?.mean(D::Minus1)?)?],
            MetricKind::Mean => vec![count(p.clone())?, p.elem_count() as f64],
            MetricKind::Precision(t) => {
                let (pred, actual) = positives(t)?;
                vec![count(pred.mul(&actual)?)?, count(pred)?]
            }
            MetricKind::Recall(t) => {
                let (pred, actual) = positives(t)?;
                vec![count(pred.mul(&actual)?)?, count(actual)?]
            }
            MetricKind::Auc(n) => {
                // Keras's thresholds: just below 0, (i+1)/(n-1) for i < n-2, just above 1.
                let (pv, yv) = (p.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?, y.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?);
                let mut stats = vec![0.0; 4 * n];
                for i in 0..n {
                    let t = auc_threshold(i, n);
                    for (&pi, &yi) in pv.iter().zip(&yv) {
                        let (pred, pos) = (pi > t, yi != 0.0); // Keras casts the targets to bool
                        let slot = match (pred, pos) {
                            (true, true) => 0,
                            (true, false) => 1,
                            (false, false) => 2,
                            (false, true) => 3,
                        };
                        stats[slot * n + i] += 1.0;
                    }
                }
                stats
            }
        })
    }

    /// The metric's value from its totals over `count` samples.
    pub fn value(&self, stats: &[f64], count: f64) -> f64 {
        match self.kind {
            MetricKind::Graph(i) => graph::value(i, stats, count),
            MetricKind::Precision(_) | MetricKind::Recall(_) | MetricKind::Mean => divide_no_nan(stats[0], stats[1]),
            MetricKind::Auc(n) => {
                let (tp, fp, tn, fn_) = (&stats[..n], &stats[n..2 * n], &stats[2 * n..3 * n], &stats[3 * n..]);
                let recall: Vec<f64> = (0..n).map(|i| divide_no_nan(tp[i], tp[i] + fn_[i])).collect();
                let fpr: Vec<f64> = (0..n).map(|i| divide_no_nan(fp[i], fp[i] + tn[i])).collect();
                (0..n - 1).map(|i| (fpr[i] - fpr[i + 1]) * (recall[i] + recall[i + 1]) / 2.0).sum()
            }
            _ => stats[0] / count.max(1.0),
        }
    }
}

fn auc_threshold(i: usize, n: usize) -> f64 {
    const EPS: f64 = 1e-7;
    if i == 0 {
        -EPS
    } else if i == n - 1 {
        1.0 + EPS
    } else {
        i as f64 / (n - 1) as f64
    }
}

/// Metrics recorded in Python (`MetricKind::Graph`).
mod graph {
    use crate::symbolic::table::{self, Recorded};
    use crate::symbolic::{Kind, OpGraph};
    use crate::{Error, Result};
    use candle_core::{DType, Device, Tensor};
    use serde_json::Value;

    /// `{"class_name": "kandle>GraphMetric", "config": {"name", "update", "result", "state", "init"}}`:
    /// `update` maps `(y_true, y_pred)` to per-sample values (no `state`) or to the flattened
    /// additions to the state variables; `result` maps the variables (as weights) to one float.
    pub fn register(v: &Value) -> Result<u32> {
        table::register(v, |v| {
            let cfg = &v["config"];
            let name = cfg["name"].as_str().unwrap_or("custom_metric");
            let who = format!("Metric \"{name}\"");
            let update = OpGraph::from_json(&cfg["update"], &who)?;
            if update.inputs.len() != 2 || update.output_sym().kind == Kind::Bool {
                return Err(Error::Value(format!("{who}: update must read (y_true, y_pred) and give numbers")));
            }
            let bad = || Error::Value(format!("{who}: bad state record"));
            let state: Vec<Vec<usize>> = cfg["state"].as_array().map(|a| a.iter().map(|s| s.as_array().map(|d| d.iter().filter_map(Value::as_u64).map(|d| d as usize).collect()).ok_or_else(bad)).collect::<Result<Vec<_>>>()).unwrap_or_else(|| Ok(Vec::new()))?;
            let init: Vec<f64> = cfg["init"].as_array().map(|a| a.iter().filter_map(Value::as_f64).collect()).unwrap_or_default();
            let mut graphs = vec![update];
            if !state.is_empty() {
                if init.len() != state.iter().map(|s| s.iter().product::<usize>()).sum::<usize>() {
                    return Err(bad());
                }
                let result = OpGraph::from_json(&cfg["result"], &who)?;
                if !result.output_sym().shape.is_empty() {
                    return Err(Error::Value(format!("{who}: result() must return one number, got shape {}", crate::symbolic::shape::show(&result.output_sym().shape))));
                }
                graphs.push(result);
            }
            Ok(Recorded { name: crate::layers::custom::intern(name), graphs, state, init, value: v.clone() })
        })
    }

    pub fn batch_stats(i: u32, y: &Tensor, p: &Tensor) -> Result<Vec<f64>> {
        let rec = table::get(i);
        // The targets in the shape the metric was recorded for: class indices come as (n,) or (n, 1).
        let n = p.dim(0)?;
        let mut want = vec![n];
        want.extend(rec.graphs[0].inputs[0].shape[1..].iter().map(|d| d.unwrap_or(1)));
        if want.iter().product::<usize>() != y.elem_count() {
            return Err(Error::Value(format!(
                "Metric \"{}\" was recorded for targets of shape {}, but received targets of shape {:?}",
                rec.name,
                crate::symbolic::shape::show(&rec.graphs[0].inputs[0].shape),
                y.dims()
            )));
        }
        let y = y.reshape(want)?.to_dtype(p.dtype())?;
        let out = rec.graphs[0].eval(&[y, p.clone()], &[])?.to_dtype(DType::F64)?;
        if rec.state.is_empty() {
            // Per-sample values, averaged over their non-batch axes (a scalar counts for every sample).
            let n = p.dim(0)? as f64;
            let total = match out.rank() {
                0 => out.to_scalar::<f64>()? * n,
                1 => out.sum_all()?.to_scalar::<f64>()?,
                _ => out.flatten_from(1)?.mean(1)?.sum_all()?.to_scalar::<f64>()?,
            };
            return Ok(vec![total]);
        }
        Ok(out.flatten_all()?.to_vec1::<f64>()?)
    }

    pub fn value(i: u32, stats: &[f64], count: f64) -> f64 {
        let rec = table::get(i);
        if rec.state.is_empty() {
            return stats[0] / count.max(1.0);
        }
        let mut offset = 0;
        let mut vars = Vec::new();
        for shape in &rec.state {
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n).map(|k| (rec.init[offset + k] + stats.get(offset + k).copied().unwrap_or(0.0)) as f32).collect();
            offset += n;
            match Tensor::from_vec(v, shape.as_slice(), &Device::Cpu) {
                Ok(t) => vars.push(t),
                Err(_) => return f64::NAN,
            }
        }
        rec.graphs[1].eval(&[], &vars).and_then(|t| Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)).unwrap_or(f64::NAN)
    }
}
