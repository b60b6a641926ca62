//! The loops behind `fit`, `evaluate` and `predict`. They share the batching, run without any
//! Python, and talk to the caller only through `Hooks` (callbacks, progress, Ctrl-C). The model
//! lock is taken per batch, so hooks and other threads can read the model between steps.

use crate::data::{batch_tensor, BatchSource};
use crate::distributed::{self, World};
use crate::model::Model;
use crate::{rng, Error, Result};
use candle_core::DType;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Running log values, in `metrics_names` order (with `val_` entries appended at epoch end).
pub type Logs = Vec<(String, f64)>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

/// What the loops tell their caller. Every method may fail (an exception in a callback, Ctrl-C);
/// the loop then stops and returns that error, leaving the model as of the last finished step.
pub trait Hooks {
    fn epoch_begin(&mut self, _epoch: usize) -> Result<()> {
        Ok(())
    }
    fn batch_begin(&mut self, _batch: usize) -> Result<()> {
        Ok(())
    }
    fn batch_end(&mut self, _batch: usize, _size: usize, _logs: &Logs) -> Result<Control> {
        Ok(Control::Continue)
    }
    fn epoch_end(&mut self, _epoch: usize, _logs: &Logs) -> Result<Control> {
        Ok(Control::Continue)
    }
    /// Called between validation batches, where no callback runs: the place to notice Ctrl-C.
    fn poll(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Samples `indices` of the inputs `xs` (one source per model input) and of `y`.
pub struct Dataset<'a> {
    pub xs: Vec<&'a dyn BatchSource>,
    pub y: Option<&'a dyn BatchSource>,
    /// Keras's `sample_weight`: one loss weight per sample.
    pub w: Option<&'a dyn BatchSource>,
    pub indices: Vec<usize>,
}

impl<'a> Dataset<'a> {
    pub fn new(xs: Vec<&'a dyn BatchSource>, y: Option<&'a dyn BatchSource>) -> Result<Self> {
        let Some(first) = xs.first() else {
            return crate::value_err!("No input data provided: `x` is an empty list");
        };
        let n = first.len();
        let sizes: Vec<usize> = xs.iter().map(|x| x.len()).chain(y.map(|y| y.len())).collect();
        if sizes.iter().any(|&s| s != n) {
            let xs_sizes: Vec<String> = xs.iter().map(|x| x.len().to_string()).collect();
            return Err(Error::Value(format!(
                "Data cardinality is ambiguous: x sizes: {}, y sizes: {}. Make sure all arrays contain \
                 the same number of samples.",
                xs_sizes.join(", "),
                y.map(|y| y.len().to_string()).unwrap_or_default()
            )));
        }
        Ok(Dataset { xs, y, w: None, indices: (0..n).collect() })
    }

    /// The same samples with per-sample loss weights (`sample_weight`: shape `(n,)` or `(n, 1)`).
    pub fn with_weights(mut self, w: Option<&'a dyn BatchSource>) -> Result<Self> {
        if let Some(w) = w {
            let n = self.xs[0].len();
            if w.len() != n || !(w.sample_shape().is_empty() || w.sample_shape() == [1]) {
                return Err(Error::Value(format!(
                    "`sample_weight` must hold one weight per sample, shape ({n},) or ({n}, 1); received shape ({}{})",
                    w.len(),
                    w.sample_shape().iter().map(|d| format!(", {d}")).collect::<String>()
                )));
            }
        }
        self.w = w;
        Ok(self)
    }

    /// The weights of the samples at `idx`, when the data has weights.
    fn weights(&self, idx: &[usize]) -> Result<Option<candle_core::Tensor>> {
        self.w.map(|w| batch_tensor(w, idx, DType::F32)).transpose()
    }

    /// The inputs of the samples at `idx`, one tensor per model input.
    fn inputs(&self, idx: &[usize]) -> Result<Vec<candle_core::Tensor>> {
        self.xs.iter().map(|x| batch_tensor(*x, idx, DType::F32)).collect()
    }

    /// Keras's `validation_split`: the last `fraction` of the samples, taken before any shuffling.
    pub fn split(self, fraction: f64) -> Result<(Dataset<'a>, Dataset<'a>)> {
        if !(0.0..1.0).contains(&fraction) {
            return Err(Error::Value(format!("`validation_split` must be in [0, 1), got {fraction}")));
        }
        let at = (self.indices.len() as f64 * (1.0 - fraction)).floor() as usize;
        let (a, b) = self.indices.split_at(at);
        Ok((
            Dataset { xs: self.xs.clone(), y: self.y, w: self.w, indices: a.to_vec() },
            Dataset { xs: self.xs, y: self.y, w: self.w, indices: b.to_vec() },
        ))
    }

    fn check(&self, model: &Model) -> Result<()> {
        let shapes: Vec<&[usize]> = self.xs.iter().map(|x| x.sample_shape()).collect();
        model.check_inputs(&shapes)?;
        if let Some(y) = self.y {
            model.check_target(y.sample_shape())?;
        }
        Ok(())
    }
}

/// A model shared between Python threads: many readers (predict) or one writer (a training step);
/// `busy` refuses a second concurrent `fit` instead of interleaving two trainings.
pub struct SharedModel {
    model: RwLock<Model>,
    busy: AtomicBool,
}

impl SharedModel {
    pub fn new(model: Model) -> Self {
        SharedModel { model: RwLock::new(model), busy: AtomicBool::new(false) }
    }

    /// Errors never leave the model half-updated, so a poisoned lock still holds a valid model.
    pub fn read(&self) -> RwLockReadGuard<'_, Model> {
        self.model.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, Model> {
        self.model.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` as the only training of this model.
    pub fn exclusive<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        if self.busy.swap(true, Ordering::AcqRel) {
            return Err(Error::Runtime(
                "This model is already being trained (fit/train_on_batch) in another thread; wait for it to finish."
                    .into(),
            ));
        }
        let out = f();
        self.busy.store(false, Ordering::Release);
        out
    }
}

/// The running totals of the step sums and the logs they give (sample-weighted means for the loss
/// and averaged metrics, ratios of counts for Precision/Recall/AUC: `Model::log_values`).
pub(crate) struct Mean {
    names: Vec<String>,
    metrics: Vec<crate::metrics::Metric>,
    sums: Vec<f64>,
    count: usize,
}

impl Mean {
    pub(crate) fn new(model: &Model) -> Self {
        let metrics = model.compiled().map(|c| c.metrics.clone()).unwrap_or_default();
        let width = 1 + metrics.iter().map(|m| m.width()).sum::<usize>();
        Mean { names: model.metrics_names(), metrics, sums: vec![0.0; width], count: 0 }
    }

    pub(crate) fn add(&mut self, sums: &[f64], n: usize) {
        self.sums.iter_mut().zip(sums).for_each(|(a, b)| *a += b);
        self.count += n;
    }

    pub(crate) fn logs(&self, prefix: &str) -> Logs {
        let n = self.count.max(1) as f64;
        let mut values = vec![self.sums[0] / n];
        let mut at = 1;
        for m in &self.metrics {
            values.push(m.value(&self.sums[at..at + m.width()], self.count as f64));
            at += m.width();
        }
        self.names.iter().zip(values).map(|(k, v)| (format!("{prefix}{k}"), v)).collect()
    }
}

pub struct FitConfig {
    pub batch_size: usize,
    pub epochs: usize,
    pub initial_epoch: usize,
    pub shuffle: bool,
    /// Keras's `validation_freq`: validate after every n-th epoch, or after the listed (1-based) ones.
    pub validation_freq: ValidationFreq,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValidationFreq {
    Every(usize),
    Epochs(Vec<usize>),
}

impl ValidationFreq {
    /// From Keras's argument: a positive integer, or a list of epochs (1-based).
    pub fn new(every: Option<i64>, epochs: Option<Vec<i64>>) -> Result<Self> {
        match (every, epochs) {
            (Some(n), None) if n >= 1 => Ok(ValidationFreq::Every(n as usize)),
            (None, Some(list)) if list.iter().all(|&e| e >= 1) => Ok(ValidationFreq::Epochs(list.into_iter().map(|e| e as usize).collect())),
            _ => crate::value_err!("`validation_freq` must be a positive integer or a list of positive epoch numbers"),
        }
    }

    /// Whether validation runs after epoch `epoch` (0-based).
    pub fn due(&self, epoch: usize) -> bool {
        match self {
            ValidationFreq::Every(n) => (epoch + 1).is_multiple_of(*n),
            ValidationFreq::Epochs(list) => list.contains(&(epoch + 1)),
        }
    }
}

impl FitConfig {
    /// From the arguments as the user gave them (Python ints as i64): Keras runs no epoch when
    /// `epochs <= initial_epoch` (a negative `epochs` included); a negative `initial_epoch` or a
    /// batch size below 1 is an error.
    pub fn new(batch_size: i64, epochs: i64, initial_epoch: i64, shuffle: bool) -> Result<Self> {
        if batch_size < 1 {
            return crate::value_err!("`batch_size` must be a positive integer, got {batch_size}");
        }
        if initial_epoch < 0 {
            return crate::value_err!("`initial_epoch` must be a non-negative integer, got {initial_epoch}");
        }
        let epochs = epochs.max(initial_epoch);
        Ok(FitConfig {
            batch_size: batch_size as usize,
            epochs: epochs as usize,
            initial_epoch: initial_epoch as usize,
            shuffle,
            validation_freq: ValidationFreq::Every(1),
        })
    }
}

fn check_batch_size(batch_size: usize) -> Result<()> {
    if batch_size == 0 {
        return Err(Error::Value("`batch_size` must be a positive integer, got 0".into()));
    }
    Ok(())
}

/// Where `fit`'s validation data comes from.
pub enum Validation<'a> {
    None,
    /// Keras's `validation_split`: the last fraction of the samples.
    Split(f64),
    /// `validation_data`, which takes precedence over a split, as in Keras.
    Data(Dataset<'a>),
}

/// `fit` on all the samples given, splitting off validation data as Keras does.
pub fn fit_all(shared: &SharedModel, all: Dataset, validation: Validation, cfg: &FitConfig, hooks: &mut dyn Hooks, world: &dyn World) -> Result<()> {
    let (train, val) = match validation {
        Validation::Data(v) => (all, Some(v)),
        Validation::Split(f) if f > 0.0 => {
            let (t, v) = all.split(f)?;
            (t, Some(v))
        }
        Validation::Split(f) if f < 0.0 || f.is_nan() => return all.split(f).map(|_| ()),
        _ => (all, None),
    };
    fit(shared, &train, val.as_ref(), cfg, hooks, world)
}

/// Trains for `epochs - initial_epoch` epochs; validation (if any) runs after each epoch. In a
/// world of several processes each takes its share of every batch (`distributed`), process 0's
/// shuffled order is everyone's, and a stop on any process stops all.
pub fn fit(shared: &SharedModel, train: &Dataset, val: Option<&Dataset>, cfg: &FitConfig, hooks: &mut dyn Hooks, world: &dyn World) -> Result<()> {
    check_batch_size(cfg.batch_size)?;
    distributed::check_batch_size(cfg.batch_size, world)?;
    {
        let model = shared.read();
        train.check(&model)?;
        if let Some(v) = val {
            v.check(&model)?;
        }
    }
    let y = train.y.ok_or_else(|| Error::Value("fit needs targets `y`".into()))?;
    shared.exclusive(|| {
        let samples = [train.indices.len(), val.map_or(0, |v| v.indices.len())];
        distributed::sync_start(&mut shared.write(), world, cfg.initial_epoch, &samples)?;
        for epoch in cfg.initial_epoch..cfg.epochs {
            hooks.epoch_begin(epoch)?;
            let mut order: Vec<usize> = match cfg.shuffle {
                true => {
                    let perm = rng::permutation_with(&mut shared.write().shuffle_rng, train.indices.len());
                    perm.into_iter().map(|i| train.indices[i]).collect()
                }
                false => train.indices.clone(),
            };
            if cfg.shuffle && world.size() > 1 {
                let mut root: Vec<f64> = order.iter().map(|&i| i as f64).collect();
                world.broadcast_f64(&mut root)?;
                order = root.into_iter().map(|i| i as usize).collect();
            }
            let mut mean = Mean::new(&shared.read());
            let mut stop = false;
            for (batch, idx) in order.chunks(cfg.batch_size).enumerate() {
                hooks.batch_begin(batch)?;
                let sums = train_batch(shared, train, y, idx, world)?;
                mean.add(&sums, idx.len());
                let asked = hooks.batch_end(batch, idx.len(), &mean.logs(""))? == Control::Stop;
                if distributed::any(world, asked)? {
                    stop = true;
                    break;
                }
            }
            let mut logs = mean.logs("");
            if let Some(v) = val.filter(|_| cfg.validation_freq.due(epoch)) {
                logs.extend(evaluate_inner(shared, v, cfg.batch_size, hooks, true, world)?.into_iter().map(|(k, s)| (format!("val_{k}"), s)));
            }
            let asked = hooks.epoch_end(epoch, &logs)? == Control::Stop;
            if distributed::any(world, asked)? || stop {
                break;
            }
        }
        Ok(())
    })
}

/// One training step on the samples `idx` (this process's share of them in a larger world).
fn train_batch(shared: &SharedModel, data: &Dataset, y: &dyn BatchSource, idx: &[usize], world: &dyn World) -> Result<crate::model::StepSums> {
    if world.size() == 1 {
        let (xb, yb, wb) = (data.inputs(idx)?, batch_tensor(y, idx, DType::F32)?, data.weights(idx)?);
        return shared.write().train_step(&xb, &yb, wb.as_ref());
    }
    let local = &idx[distributed::shard(idx.len(), world.rank(), world.size())];
    let batch = match local.is_empty() {
        true => None,
        false => Some((data.inputs(local)?, batch_tensor(y, local, DType::F32)?, data.weights(local)?)),
    };
    shared.write().train_step_parallel(batch.as_ref().map(|(x, y, w)| (x.as_slice(), y, w.as_ref())), idx.len(), world)
}

/// Loss/metric sums of the samples `idx`, over the whole world.
fn test_batch(shared: &SharedModel, data: &Dataset, y: &dyn BatchSource, idx: &[usize], world: &dyn World) -> Result<crate::model::StepSums> {
    let local = &idx[distributed::shard(idx.len(), world.rank(), world.size())];
    let model = shared.read();
    let sums = match local.is_empty() {
        true => vec![0.0; model.sums_width()],
        false => model.test_step(&data.inputs(local)?, &batch_tensor(y, local, DType::F32)?, data.weights(local)?.as_ref())?,
    };
    drop(model);
    distributed::reduce_sums(world, sums, idx.len())
}

/// `fit`'s validation pass over arrays (no test callbacks; Ctrl-C noticed between batches).
pub(crate) fn validate(shared: &SharedModel, data: &Dataset, batch_size: usize, hooks: &mut dyn Hooks, world: &dyn World) -> Result<Logs> {
    data.check(&shared.read())?;
    evaluate_inner(shared, data, batch_size, hooks, true, world)
}

fn evaluate_inner(shared: &SharedModel, data: &Dataset, batch_size: usize, hooks: &mut dyn Hooks, validation: bool, world: &dyn World) -> Result<Logs> {
    let y = data.y.ok_or_else(|| Error::Value("evaluate needs targets `y`".into()))?;
    let mut mean = Mean::new(&shared.read());
    for (batch, idx) in data.indices.chunks(batch_size).enumerate() {
        if validation {
            hooks.poll()?;
        } else {
            hooks.batch_begin(batch)?;
        }
        let sums = test_batch(shared, data, y, idx, world)?;
        mean.add(&sums, idx.len());
        if !validation {
            hooks.batch_end(batch, idx.len(), &mean.logs(""))?;
        }
    }
    Ok(mean.logs(""))
}

/// Loss and metrics over `data` (sample-weighted means).
pub fn evaluate(shared: &SharedModel, data: &Dataset, batch_size: usize, hooks: &mut dyn Hooks, world: &dyn World) -> Result<Logs> {
    check_batch_size(batch_size)?;
    distributed::check_batch_size(batch_size, world)?;
    data.check(&shared.read())?;
    evaluate_inner(shared, data, batch_size, hooks, false, world)
}

/// Model outputs for `x`, row-major, with the full output shape. In a larger world each process
/// computes its share of every batch and all of them return every row.
pub fn predict(shared: &SharedModel, data: &Dataset, batch_size: usize, hooks: &mut dyn Hooks, world: &dyn World) -> Result<(Vec<f32>, Vec<usize>)> {
    check_batch_size(batch_size)?;
    distributed::check_batch_size(batch_size, world)?;
    data.check(&shared.read())?;
    let mut out = Vec::new();
    for (batch, idx) in data.indices.chunks(batch_size).enumerate() {
        hooks.batch_begin(batch)?;
        let local = &idx[distributed::shard(idx.len(), world.rank(), world.size())];
        let rows = match local.is_empty() {
            true => Vec::new(),
            false => shared.read().predict_batch(&data.inputs(local)?)?.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?,
        };
        out.extend(distributed::gather_rows(world, rows, idx.len(), shared.read().output_shape())?);
        hooks.batch_end(batch, idx.len(), &Vec::new())?;
    }
    let mut shape = vec![data.indices.len()];
    shape.extend_from_slice(shared.read().output_shape());
    Ok((out, shape))
}

/// One training step on exactly these samples (Keras's `train_on_batch`); returns the logs.
pub fn train_on_batch(shared: &SharedModel, data: &Dataset, world: &dyn World) -> Result<Logs> {
    data.check(&shared.read())?;
    distributed::check_batch_size(data.indices.len(), world)?;
    let y = data.y.ok_or_else(|| Error::Value("train_on_batch needs targets `y`".into()))?;
    shared.exclusive(|| {
        if world.size() > 1 && shared.read().compiled().is_some_and(|c| c.optimizer.iterations == 0) {
            distributed::sync_start(&mut shared.write(), world, 0, &[data.indices.len(), 0])?;
        }
        let sums = train_batch(shared, data, y, &data.indices, world)?;
        let mut mean = Mean::new(&shared.read());
        mean.add(&sums, data.indices.len());
        Ok(mean.logs(""))
    })
}
