//! The `fit` / `evaluate` / `predict` loops over batches handed in one at a time (a Python
//! generator, a `PyDataset`, any iterable of `(x, y)` batches) instead of arrays sampled by index.
//! The feed owns the order and each pass's length (`steps_per_epoch` included); the loops own the
//! steps, the checks of every batch, the running means and the callbacks, as `training`'s do.

use crate::distributed::{self, World};
use crate::model::{Model, StepSums};
use crate::training::{Control, Dataset, FitConfig, Hooks, Logs, Mean, SharedModel};
use crate::Result;
use candle_core::Tensor;

/// One batch: a tensor per model input, and the targets (absent for `predict`).
pub struct Batch {
    pub xs: Vec<Tensor>,
    pub y: Option<Tensor>,
    /// Per-sample loss weights (a `(x, y, sample_weight)` batch).
    pub w: Option<Tensor>,
}

impl Batch {
    fn len(&self) -> usize {
        self.xs.first().and_then(|x| x.dims().first().copied()).unwrap_or(0)
    }

    /// This process's share of the batch (`distributed::shard`), None when it is empty.
    fn local(&self, world: &dyn World) -> Result<Option<Batch>> {
        let r = distributed::shard(self.len(), world.rank(), world.size());
        if r.is_empty() {
            return Ok(None);
        }
        let cut = |t: &Tensor| t.narrow(0, r.start, r.len());
        let xs = self.xs.iter().map(cut).collect::<candle_core::Result<_>>()?;
        Ok(Some(Batch { xs, y: self.y.as_ref().map(cut).transpose()?, w: self.w.as_ref().map(cut).transpose()? }))
    }

    /// The model's input and target checks, per batch (a feed's batches may differ from each other).
    fn check(&self, model: &Model, targets: bool) -> Result<()> {
        let shapes: Vec<&[usize]> = self.xs.iter().map(|x| x.dims().get(1..).unwrap_or(&[])).collect();
        model.check_inputs(&shapes)?;
        let n = self.len();
        if self.xs.iter().any(|x| x.dims().first() != Some(&n))
            || self.y.as_ref().is_some_and(|y| y.dims().first() != Some(&n))
            || self.w.as_ref().is_some_and(|w| w.elem_count() != n)
        {
            let sizes: Vec<String> = self.xs.iter().chain(&self.y).chain(&self.w).map(|t| t.dims().first().copied().unwrap_or(0).to_string()).collect();
            return crate::value_err!("Data cardinality is ambiguous within a batch: sizes {}", sizes.join(", "));
        }
        match (&self.y, targets) {
            (Some(y), true) => model.check_target(y.dims().get(1..).unwrap_or(&[])),
            (None, true) => crate::value_err!("The batch has no targets: the data must yield (x, y) batches for training and evaluation"),
            _ => Ok(()),
        }
    }
}

/// Where the batches come from.
pub trait Feed {
    /// Starts a pass (epoch `epoch`; 0 for evaluate/predict).
    fn begin(&mut self, epoch: usize) -> Result<()>;
    /// The next batch of the pass, or None when it is over.
    fn next(&mut self) -> Result<Option<Batch>>;
}

/// `fit`'s validation data when the training data is a feed.
pub enum FeedValidation<'a> {
    None,
    Data(Dataset<'a>),
    Feed(&'a mut dyn Feed),
}

/// Trains for `epochs - initial_epoch` passes over `train`. A pass that yields no batch at all ends
/// training, as Keras does when its input runs out of data.
pub fn fit(shared: &SharedModel, train: &mut dyn Feed, mut val: FeedValidation, cfg: &FitConfig, hooks: &mut dyn Hooks, world: &dyn World) -> Result<()> {
    shared.exclusive(|| {
        distributed::sync_start(&mut shared.write(), world, cfg.initial_epoch, &[])?;
        for epoch in cfg.initial_epoch..cfg.epochs {
            train.begin(epoch)?;
            let first = train.next()?;
            if distributed::any(world, first.is_none())? {
                break;
            }
            hooks.epoch_begin(epoch)?;
            let mut mean = Mean::new(&shared.read());
            let mut stop = false;
            let mut next = first;
            let mut step = 0;
            while let Some(b) = next.take() {
                hooks.batch_begin(step)?;
                b.check(&shared.read(), true)?;
                let sums = train_batch(shared, &b, world)?;
                mean.add(&sums, b.len());
                let asked = hooks.batch_end(step, b.len(), &mean.logs(""))? == Control::Stop;
                if distributed::any(world, asked)? {
                    stop = true;
                    break;
                }
                step += 1;
                next = train.next()?;
                if world.size() > 1 && distributed::any(world, next.is_none())? != next.is_none() {
                    return crate::value_err!("kandle.distribution: the processes' data ran out after different numbers of batches: with DataParallel every process must read the same data");
                }
            }
            let mut logs = mean.logs("");
            let val_logs = match &mut val {
                _ if !cfg.validation_freq.due(epoch) => None,
                FeedValidation::None => None,
                FeedValidation::Data(d) => Some(crate::training::validate(shared, d, cfg.batch_size, hooks, world)?),
                FeedValidation::Feed(f) => Some(evaluate(shared, &mut **f, hooks, true, world)?),
            };
            if let Some(v) = val_logs {
                logs.extend(v.into_iter().map(|(k, s)| (format!("val_{k}"), s)));
            }
            let asked = hooks.epoch_end(epoch, &logs)? == Control::Stop;
            if distributed::any(world, asked)? || stop {
                break;
            }
        }
        Ok(())
    })
}

/// Loss and metrics over one pass of `feed` (sample-weighted means); `validation`: inside `fit`,
/// where no test callbacks run.
pub fn evaluate(shared: &SharedModel, feed: &mut dyn Feed, hooks: &mut dyn Hooks, validation: bool, world: &dyn World) -> Result<Logs> {
    let mut mean = Mean::new(&shared.read());
    feed.begin(0)?;
    let mut step = 0;
    while let Some(b) = feed.next()? {
        if validation {
            hooks.poll()?;
        } else {
            hooks.batch_begin(step)?;
        }
        b.check(&shared.read(), true)?;
        let sums = test_batch(shared, &b, world)?;
        mean.add(&sums, b.len());
        if !validation {
            hooks.batch_end(step, b.len(), &mean.logs(""))?;
        }
        step += 1;
    }
    Ok(mean.logs(""))
}

/// Model outputs for one pass of `feed`, row-major, with the full output shape.
pub fn predict(shared: &SharedModel, feed: &mut dyn Feed, hooks: &mut dyn Hooks, world: &dyn World) -> Result<(Vec<f32>, Vec<usize>)> {
    let mut out = Vec::new();
    let mut rows = 0;
    feed.begin(0)?;
    let mut step = 0;
    while let Some(b) = feed.next()? {
        hooks.batch_begin(step)?;
        let model = shared.read();
        b.check(&model, false)?;
        let mine = match b.local(world)? {
            Some(local) => model.predict_batch(&local.xs)?.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?,
            None => Vec::new(),
        };
        out.extend(distributed::gather_rows(world, mine, b.len(), model.output_shape())?);
        drop(model);
        rows += b.len();
        hooks.batch_end(step, b.len(), &Vec::new())?;
        step += 1;
    }
    let mut shape = vec![rows];
    shape.extend_from_slice(shared.read().output_shape());
    Ok((out, shape))
}

/// One training step on batch `b` (this process's share of it in a larger world).
fn train_batch(shared: &SharedModel, b: &Batch, world: &dyn World) -> Result<StepSums> {
    if world.size() == 1 {
        return shared.write().train_step(&b.xs, b.y.as_ref().expect("checked"), b.w.as_ref());
    }
    let local = b.local(world)?;
    let local = local.as_ref().map(|l| (l.xs.as_slice(), l.y.as_ref().expect("checked"), l.w.as_ref()));
    shared.write().train_step_parallel(local, b.len(), world)
}

/// Loss/metric sums of batch `b`, over the whole world.
fn test_batch(shared: &SharedModel, b: &Batch, world: &dyn World) -> Result<StepSums> {
    let model = shared.read();
    let sums = match b.local(world)? {
        Some(l) => model.test_step(&l.xs, l.y.as_ref().expect("checked"), l.w.as_ref())?,
        None => vec![0.0; model.sums_width()],
    };
    drop(model);
    distributed::reduce_sums(world, sums, b.len())
}
