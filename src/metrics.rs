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
    Precision(Confusion),
    Recall(Confusion),
    /// AUC over Keras's thresholds (evenly spaced, or given, each bracketed by -eps and 1 + eps).
    Auc(Auc),
    /// A metric written in Python with `kandle.ops`, by its index in [`crate::symbolic::table`]: a
    /// function of `(y_true, y_pred)` (its per-sample values averaged, Keras's MeanMetricWrapper), or a
    /// `Metric` subclass whose `update_state` adds to its variables (the sums are the statistics;
    /// `result()` is a recorded graph of the variables).
    Graph(u32),
}

/// Precision's and Recall's options: one threshold; `top_k` counts only each sample's k highest
/// scores as predicted positive (the threshold then defaults to Keras's NEG_INF); `class_id` looks
/// at one column only.
#[derive(Clone, Debug, PartialEq)]
pub struct Confusion {
    pub threshold: f64,
    pub top_k: Option<usize>,
    pub class_id: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    Roc,
    Pr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Summation {
    Interpolation,
    Minoring,
    Majoring,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Auc {
    /// Every threshold, the bracketing ones included.
    pub thresholds: Vec<f64>,
    pub curve: Curve,
    pub summation: Summation,
}

/// Keras's NEG_INF, the default threshold of Precision/Recall with `top_k`.
const NEG_INF: f64 = -1e10;

/// A compiled metric: the name it logs under and what it computes.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    pub name: String,
    pub kind: MetricKind,
    /// What `compile_config` saves: the name it logs under, or the object's `{"class_name", "config"}`
    /// (a weighted metric's wrapped in `{"class_name": "kandle>Weighted", "config": {"metric": ...}}`).
    pub source: Value,
    /// Keras's `weighted_metrics=`: each sample counts with its sample/class weight.
    pub weighted: bool,
}

/// The class name that marks an entry of `weighted_metrics` among the compiled metrics.
pub const WEIGHTED: &str = "kandle>Weighted";

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
            "auc" => (name, MetricKind::Auc(Auc { thresholds: even_thresholds(200), curve: Curve::Roc, summation: Summation::Interpolation })),
            "precision" => (name, MetricKind::Precision(Confusion { threshold: 0.5, top_k: None, class_id: None })),
            "recall" => (name, MetricKind::Recall(Confusion { threshold: 0.5, top_k: None, class_id: None })),
            other => {
                return Err(Error::Value(format!(
                    "Unknown metric function: '{other}'. Known: acc, accuracy, mse, mae, categorical_accuracy, \
                     sparse_categorical_accuracy, binary_accuracy, top_k_categorical_accuracy, auc, precision, recall"
                )))
            }
        };
        Ok(Metric { name: log_name.to_string(), kind, source: Value::String(log_name.to_string()), weighted: false })
    }

    /// A metric object used on its own (`update_state(y_true, y_pred, sample_weight)`): Keras's take
    /// a sample weight at any update, so its statistics are always the weighted ones (weights of 1
    /// where none is given, which gives the unweighted values).
    pub fn standalone(spec: &str) -> Result<Self> {
        Ok(Metric { weighted: true, ..Self::resolve(spec)? })
    }

    /// What `compile_config` stores: a name, or a Keras 3 metric object's `{"class_name", "config"}`.
    pub fn from_value(v: &Value) -> Result<Self> {
        if let Some(name) = v.as_str() {
            return Self::resolve(name);
        }
        let class = v["class_name"].as_str().unwrap_or("<missing class_name>");
        let cfg = &v["config"];
        if class == WEIGHTED {
            let inner = Self::from_value(&cfg["metric"])?;
            if matches!(inner.kind, MetricKind::Graph(_)) {
                return Err(Error::Value(format!("kandle does not implement Python metrics in `weighted_metrics` yet (\"{}\"); pass it in `metrics`", inner.name)));
            }
            return Ok(Metric { weighted: true, source: v.clone(), ..inner });
        }
        if class == "kandle>GraphMetric" {
            let i = graph::register(v)?;
            return Ok(Metric { name: crate::symbolic::table::get(i).name.to_string(), kind: MetricKind::Graph(i), source: v.clone(), weighted: false });
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
        let index = |key: &str| -> Result<Option<usize>> {
            match cfg.get(key).filter(|x| !x.is_null()) {
                None => Ok(None),
                Some(x) => x.as_u64().map(|k| Some(k as usize)).ok_or_else(|| Error::Value(format!("{class}: `{key}` must be a non-negative integer, got {x}"))),
            }
        };
        let confusion = || -> Result<Confusion> {
            let top_k = index("top_k")?;
            if top_k == Some(0) {
                return Err(Error::Value(format!("{class}: `top_k` must be a positive integer")));
            }
            Ok(Confusion { threshold: threshold(if top_k.is_some() { NEG_INF } else { 0.5 })?, top_k, class_id: index("class_id")? })
        };
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
            "Precision" => ("precision", MetricKind::Precision(confusion()?)),
            "Recall" => ("recall", MetricKind::Recall(confusion()?)),
            "AUC" => ("auc", MetricKind::Auc(auc_config(cfg)?)),
            other => return Err(Error::Value(format!("kandle does not implement the metric keras.metrics.{other} yet"))),
        };
        let name = cfg.get("name").and_then(Value::as_str).unwrap_or(default_name).to_string();
        Ok(Metric { name, kind, source: v.clone(), weighted: false })
    }

    /// How many statistics the metric adds up per batch.
    pub fn width(&self) -> usize {
        match self.kind {
            MetricKind::Precision(_) | MetricKind::Recall(_) | MetricKind::Mean => 2,
            MetricKind::Auc(ref a) => 4 * a.thresholds.len(),
            MetricKind::Graph(i) => crate::symbolic::table::get(i).init.len().max(1),
            _ if self.weighted => 2, // the weighted sum and the sum of the weights
            _ => 1,
        }
    }

    /// The batch's statistics. `y` holds class indices when `sparse_y`; for `Mean`, `p` holds the values;
    /// `w` (one per sample) weights a `weighted` metric's samples (none: every weight 1).
    pub fn batch_stats(&self, y: &Tensor, p: &Tensor, sparse_y: bool, w: Option<&Tensor>) -> Result<Vec<f64>> {
        let n = p.dim(0)?;
        let w = match (self.weighted, w) {
            (true, Some(w)) => Some(w.flatten_all()?.to_dtype(DType::F64)?),
            (true, None) => Some(Tensor::ones(n, DType::F64, p.device())?),
            (false, _) => None,
        };
        self.stats(y, p, sparse_y, w.as_ref())
    }

    /// Per-sample values `v` as the statistics: `[sum v]`, or `[sum w v, sum w]` when weighted.
    fn sample_sums(v: Tensor, w: Option<&Tensor>) -> Result<Vec<f64>> {
        let v = v.to_dtype(DType::F64)?.flatten_all()?;
        Ok(match w {
            None => vec![count(v)?],
            Some(w) => vec![count(v.mul(w)?)?, count(w.clone())?],
        })
    }

    fn stats(&self, y: &Tensor, p: &Tensor, sparse_y: bool, w: Option<&Tensor>) -> Result<Vec<f64>> {
        let y_class = || -> Result<Tensor> {
            Ok(if sparse_y { y.flatten_all()?.to_dtype(DType::U32)? } else { y.argmax(D::Minus1)? })
        };
        let kind = match self.kind {
            MetricKind::Accuracy if p.dims().last() == Some(&1) => MetricKind::BinaryAccuracy(0.5),
            MetricKind::Accuracy if sparse_y => MetricKind::SparseCategoricalAccuracy,
            MetricKind::Accuracy => MetricKind::CategoricalAccuracy,
            ref k => k.clone(),
        };
        let positives = |c: &Confusion| -> Result<(Tensor, Tensor)> {
            let (mut p, mut y) = (p.clone(), y.clone());
            if let Some(k) = c.top_k {
                p = top_k_only(&p, k)?;
            }
            if let Some(i) = c.class_id {
                let classes = p.dims().last().copied().unwrap_or(1);
                if i >= classes {
                    return Err(Error::Value(format!("{}: class_id={i} is out of range for predictions with {classes} classes", self.name)));
                }
                (p, y) = (p.narrow(D::Minus1, i, 1)?, y.narrow(D::Minus1, i, 1)?);
            }
            Ok((p.flatten_all()?.to_dtype(DType::F64)?.gt(c.threshold)?.to_dtype(DType::F64)?, y.flatten_all()?.ne(0.0)?.to_dtype(DType::F64)?))
        };
        // A weighted metric's per-element weights: each sample's weight over its columns.
        let element_weights = |elements: usize| -> Result<Option<Vec<f64>>> {
            let Some(w) = w else { return Ok(None) };
            let n = w.elem_count().max(1);
            Ok(Some(w.unsqueeze(1)?.broadcast_as((n, elements / n))?.flatten_all()?.to_vec1::<f64>()?))
        };
        let weighted_count = |t: Tensor| -> Result<f64> {
            match element_weights(t.elem_count())? {
                None => count(t),
                Some(ew) => Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?.iter().zip(&ew).map(|(a, b)| a * b).sum()),
            }
        };
        Ok(match kind {
            MetricKind::Graph(i) => graph::batch_stats(i, y, p)?,
            MetricKind::Accuracy => unreachable!("resolved above"),
            MetricKind::Equal => {
                let y = if y.dims() == p.dims() { y.clone() } else { y.reshape(p.shape())? };
                Self::sample_sums(p.eq(&y)?.to_dtype(DType::F64)?.flatten_from(1)?.mean(D::Minus1)?, w)?
            }
            MetricKind::CategoricalAccuracy | MetricKind::SparseCategoricalAccuracy => {
                Self::sample_sums(p.argmax(D::Minus1)?.eq(&y_class()?)?, w)?
            }
            MetricKind::BinaryAccuracy(t) => {
                let pred = p.gt(t)?.to_dtype(p.dtype())?;
                Self::sample_sums(pred.eq(y)?.to_dtype(DType::F64)?.mean(D::Minus1)?, w)?
            }
            MetricKind::TopKCategoricalAccuracy(k) => {
                // In top k when fewer than k classes score strictly higher (ties count as in, as in TF).
                let target = p.gather(&y_class()?.unsqueeze(1)?, 1)?;
                let higher = p.broadcast_gt(&target)?.to_dtype(DType::F64)?.sum(D::Minus1)?;
                Self::sample_sums(higher.lt(k as f64)?, w)?
            }
            MetricKind::MeanSquaredError => Self::sample_sums(p.sub(y)?.sqr()?.mean(D::Minus1)?, w)?,
            MetricKind::MeanAbsoluteError => Self::sample_sums(p.sub(y)?.abs()?.mean(D::Minus1)?, w)?,
            MetricKind::Mean => match element_weights(p.elem_count())? {
                None => vec![count(p.clone())?, p.elem_count() as f64],
                Some(ew) => {
                    let v = p.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
                    vec![v.iter().zip(&ew).map(|(a, b)| a * b).sum(), ew.iter().sum()]
                }
            },
            MetricKind::Precision(ref c) => {
                let (pred, actual) = positives(c)?;
                vec![weighted_count(pred.mul(&actual)?)?, weighted_count(pred)?]
            }
            MetricKind::Recall(ref c) => {
                let (pred, actual) = positives(c)?;
                vec![weighted_count(pred.mul(&actual)?)?, weighted_count(actual)?]
            }
            MetricKind::Auc(ref a) => {
                let (pv, yv) = (p.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?, y.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?);
                let ew = element_weights(pv.len())?.unwrap_or_else(|| vec![1.0; pv.len()]);
                let n = a.thresholds.len();
                let mut stats = vec![0.0; 4 * n];
                for (i, &t) in a.thresholds.iter().enumerate() {
                    for ((&pi, &yi), &wi) in pv.iter().zip(&yv).zip(&ew) {
                        let (pred, pos) = (pi > t, yi != 0.0); // Keras casts the targets to bool
                        let slot = match (pred, pos) {
                            (true, true) => 0,
                            (true, false) => 1,
                            (false, false) => 2,
                            (false, true) => 3,
                        };
                        stats[slot * n + i] += wi;
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
            MetricKind::Auc(ref a) => auc_value(a, stats),
            _ if self.weighted => divide_no_nan(stats[0], stats[1]),
            _ => stats[0] / count.max(1.0),
        }
    }
}

/// Keras's evenly spaced thresholds: just below 0, i/(n-1) for 0 < i < n-1, just above 1.
fn even_thresholds(n: usize) -> Vec<f64> {
    const EPS: f64 = 1e-7;
    (0..n).map(|i| if i == 0 { -EPS } else if i == n - 1 { 1.0 + EPS } else { i as f64 / (n - 1) as f64 }).collect()
}

/// `AUC(num_thresholds, curve, summation_method, thresholds)` as Keras 3 reads them.
fn auc_config(cfg: &Value) -> Result<Auc> {
    let curve = match cfg.get("curve").and_then(Value::as_str).unwrap_or("ROC").to_uppercase().as_str() {
        "ROC" => Curve::Roc,
        "PR" => Curve::Pr,
        other => return Err(Error::Value(format!("kandle does not implement AUC(curve={other:?}) yet: 'ROC' and 'PR'"))),
    };
    let summation = match cfg.get("summation_method").and_then(Value::as_str).unwrap_or("interpolation").to_lowercase().as_str() {
        "interpolation" => Summation::Interpolation,
        "minoring" => Summation::Minoring,
        "majoring" => Summation::Majoring,
        other => return Err(Error::Value(format!("Invalid AUC summation method value \"{other}\". Expected values are [\"interpolation\", \"majoring\", \"minoring\"]"))),
    };
    if cfg.get("multi_label").and_then(Value::as_bool).unwrap_or(false) || cfg.get("label_weights").is_some_and(|x| !x.is_null()) {
        return Err(Error::Value("kandle does not implement AUC(multi_label=True) or label_weights yet".into()));
    }
    let thresholds = match cfg.get("thresholds").filter(|x| !x.is_null()) {
        Some(Value::Array(given)) => {
            let mut t: Vec<f64> = given.iter().map(|x| x.as_f64().filter(|t| (0.0..=1.0).contains(t))).collect::<Option<_>>().ok_or_else(|| {
                Error::Value(format!("Threshold values must be in [0, 1]. Received: {}", Value::Array(given.clone())))
            })?;
            t.insert(0, -1e-7);
            t.push(1.0 + 1e-7);
            t
        }
        Some(x) => return Err(Error::Value(format!("AUC: `thresholds` must be a list of numbers in [0, 1], got {x}"))),
        None => {
            let n = cfg.get("num_thresholds").and_then(Value::as_u64).unwrap_or(200);
            if n <= 1 {
                return Err(Error::Value(format!("Argument `num_thresholds` must be an integer > 1. Received: num_thresholds={n}")));
            }
            even_thresholds(n as usize)
        }
    };
    Ok(Auc { thresholds, curve, summation })
}

/// Keras 3's `AUC.result()`: a Riemann sum over the thresholds (PR with interpolation is Davis &
/// Goadrich's, as `interpolate_pr_auc`).
fn auc_value(a: &Auc, stats: &[f64]) -> f64 {
    let n = a.thresholds.len();
    let (tp, fp, tn, fn_) = (&stats[..n], &stats[n..2 * n], &stats[2 * n..3 * n], &stats[3 * n..]);
    if (a.curve, a.summation) == (Curve::Pr, Summation::Interpolation) {
        return (0..n - 1)
            .map(|i| {
                let dtp = tp[i] - tp[i + 1];
                let (p0, p1) = (tp[i] + fp[i], tp[i + 1] + fp[i + 1]);
                let slope = divide_no_nan(dtp, (p0 - p1).max(0.0));
                let intercept = tp[i + 1] - slope * p1;
                let ratio = if p0 > 0.0 && p1 > 0.0 { divide_no_nan(p0, p1.max(0.0)) } else { 1.0 };
                divide_no_nan(slope * (dtp + intercept * ratio.ln()), (tp[i + 1] + fn_[i + 1]).max(0.0))
            })
            .sum();
    }
    let recall: Vec<f64> = (0..n).map(|i| divide_no_nan(tp[i], tp[i] + fn_[i])).collect();
    let (x, y): (Vec<f64>, Vec<f64>) = match a.curve {
        Curve::Roc => ((0..n).map(|i| divide_no_nan(fp[i], fp[i] + tn[i])).collect(), recall),
        Curve::Pr => (recall, (0..n).map(|i| divide_no_nan(tp[i], tp[i] + fp[i])).collect()),
    };
    (0..n - 1)
        .map(|i| {
            let height = match a.summation {
                Summation::Interpolation => (y[i] + y[i + 1]) / 2.0,
                Summation::Minoring => y[i].min(y[i + 1]),
                Summation::Majoring => y[i].max(y[i + 1]),
            };
            (x[i] - x[i + 1]) * height
        })
        .sum()
}

/// Keras's `_filter_top_k`: each row's k highest scores kept (ties to the lower index, as
/// `top_k`), the others set to NEG_INF.
fn top_k_only(p: &Tensor, k: usize) -> Result<Tensor> {
    let classes = p.dims().last().copied().unwrap_or(1);
    let rows = p.to_dtype(DType::F64)?.reshape(((), classes))?.to_vec2::<f64>()?;
    let mut out = Vec::with_capacity(rows.len() * classes);
    for row in rows {
        let mut order: Vec<usize> = (0..classes).collect();
        order.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).unwrap_or(std::cmp::Ordering::Equal).then(a.cmp(&b)));
        let mut kept = vec![NEG_INF; classes];
        for &j in order.iter().take(k) {
            kept[j] = row[j];
        }
        out.extend(kept);
    }
    Ok(Tensor::from_vec(out, p.shape(), p.device())?)
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
