//! Data parallelism over a group of processes (Keras 3's `DataParallel`): the collectives a group
//! offers (`World`; the binding implements it over MPI), how a global batch is split among the
//! processes, the start of a data-parallel run (everyone adopts process 0's model) and the
//! data-parallel training step. With a world of one process the loops never come here, so a
//! plain `fit` runs exactly as before.

use crate::layers::Grad;
use crate::model::{backward_pass, Model, StepSums};
use crate::{Error, Result};
use candle_core::{DType, Tensor, Var};
use std::ops::Range;

/// A group of processes that run the same script on the same data. Every method is collective:
/// each process calls it, in the same order, with buffers of the same length; a process that does
/// not take part makes the others fail (the implementation's timeout), never hang.
pub trait World: Send + Sync {
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// Sums `data` elementwise over all processes, in place; every process gets the same values.
    fn allreduce_f32(&self, data: &mut [f32]) -> Result<()>;
    fn allreduce_f64(&self, data: &mut [f64]) -> Result<()>;
    /// Overwrites `data` with process 0's.
    fn broadcast_f32(&self, data: &mut [f32]) -> Result<()>;
    fn broadcast_f64(&self, data: &mut [f64]) -> Result<()>;
    /// Starts summing `data` over all processes (processes start their reductions in the same
    /// order); the default reduces at once.
    fn allreduce_start(&self, mut data: Vec<f32>) -> Result<Box<dyn Pending + '_>> {
        self.allreduce_f32(&mut data)?;
        Ok(Box::new(Done(data)))
    }
    /// Lets started reductions move on (MPI moves data only inside its calls).
    fn progress(&self) -> Result<()> {
        Ok(())
    }
}

/// A reduction under way (`World::allreduce_start`).
pub trait Pending {
    /// Waits for the sums.
    fn wait(self: Box<Self>) -> Result<Vec<f32>>;
}

/// A reduction that was done at once.
pub struct Done(pub Vec<f32>);

impl Pending for Done {
    fn wait(self: Box<Self>) -> Result<Vec<f32>> {
        Ok(self.0)
    }
}

/// Starts the layers' gradient reductions in `order` (the same on every process), each as soon as
/// it and every layer before it in that order are ready.
struct Reducer<'w, 'o> {
    world: &'w dyn World,
    order: &'o [usize],
    next: usize,
    ready: Vec<Option<Vec<f32>>>,
    pending: Vec<(usize, Box<dyn Pending + 'w>)>,
}

impl Reducer<'_, '_> {
    fn advance(&mut self) -> Result<()> {
        while let Some(&i) = self.order.get(self.next) {
            let Some(flat) = self.ready[i].take() else { break };
            self.pending.push((i, self.world.allreduce_start(flat)?));
            self.next += 1;
        }
        self.world.progress()
    }
}

/// The world of a process on its own (no distribution set): every collective is the identity.
pub struct Alone;

impl World for Alone {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn allreduce_f32(&self, _: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn allreduce_f64(&self, _: &mut [f64]) -> Result<()> {
        Ok(())
    }
    fn broadcast_f32(&self, _: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn broadcast_f64(&self, _: &mut [f64]) -> Result<()> {
        Ok(())
    }
}

/// This process's rows of a global batch of `n` samples: contiguous, the first `n % size`
/// processes one row more (NumPy's `array_split`), so sizes need not divide evenly.
pub fn shard(n: usize, rank: usize, size: usize) -> Range<usize> {
    let (base, extra) = (n / size, n % size);
    let start = rank * base + rank.min(extra);
    start..start + base + usize::from(rank < extra)
}

/// Keras's DataParallel splits `batch_size` (the global batch) among the processes.
pub fn check_batch_size(batch_size: usize, world: &dyn World) -> Result<()> {
    if world.size() > 1 && batch_size < world.size() {
        return crate::value_err!(
            "batch_size={batch_size} is smaller than the number of processes ({}): with DataParallel, \
             batch_size is the global batch, split among the processes; use at least {}",
            world.size(),
            world.size()
        );
    }
    Ok(())
}

/// Whether any process says yes (`EarlyStopping` or `stop_training` on one process stops all).
pub fn any(world: &dyn World, flag: bool) -> Result<bool> {
    if world.size() == 1 {
        return Ok(flag);
    }
    let mut v = [f64::from(u8::from(flag))];
    world.allreduce_f64(&mut v)?;
    Ok(v[0] > 0.0)
}

/// Sums a step's loss/metric sums over the processes, checking on the way that all of them worked
/// on the same global batch (a feed that yields different batches on different processes).
pub fn reduce_sums(world: &dyn World, mut sums: StepSums, global: usize) -> Result<StepSums> {
    if world.size() == 1 {
        return Ok(sums);
    }
    sums.push(global as f64);
    world.allreduce_f64(&mut sums)?;
    let total = sums.pop().unwrap_or_default();
    if total != (global * world.size()) as f64 {
        return Err(Error::Value(format!(
            "kandle.distribution: the processes disagree on the size of a batch (this one has {global} samples, \
             {} in all over {} processes): with DataParallel every process must read the same data in the same order",
            total,
            world.size()
        )));
    }
    Ok(sums)
}

/// A batch's outputs from every process: this process's `rows` (its share of the `n` samples,
/// each of `row_shape`) in place, the others' summed in (they are zero here).
pub fn gather_rows(world: &dyn World, rows: Vec<f32>, n: usize, row_shape: &[usize]) -> Result<Vec<f32>> {
    if world.size() == 1 {
        return Ok(rows);
    }
    let per = row_shape.iter().product::<usize>();
    let mut all = vec![0f32; n * per];
    let at = shard(n, world.rank(), world.size()).start * per;
    all[at..at + rows.len()].copy_from_slice(&rows);
    world.allreduce_f32(&mut all)?;
    Ok(all)
}

/// The tensors' values, one after the other, times `weight`.
fn flatten(ts: &[Tensor], weight: f32) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(ts.iter().map(|t| t.elem_count()).sum());
    for t in ts {
        let values = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        match weight == 1.0 {
            true => out.extend_from_slice(&values),
            false => out.extend(values.iter().map(|v| v * weight)),
        }
    }
    Ok(out)
}

/// `flat` cut back into tensors shaped (and typed) like `like`.
fn unflatten(flat: &[f32], like: &[&Var]) -> Result<Vec<Tensor>> {
    let mut at = 0;
    like.iter()
        .map(|v| {
            let n = v.elem_count();
            let t = Tensor::from_slice(&flat[at..at + n], v.dims(), v.device())?.to_dtype(v.dtype())?;
            at += n;
            Ok(t)
        })
        .collect()
}

/// Before a data-parallel `fit`: every process takes process 0's weights, layer state (moving
/// statistics), optimizer state and step count, so that all start identical whatever each built;
/// a process whose model differs in size, or that resumes at another epoch, fails on all of them.
pub fn sync_start(model: &mut Model, world: &dyn World, initial_epoch: usize, samples: &[usize]) -> Result<()> {
    if world.size() == 1 {
        return Ok(());
    }
    let vars: Vec<Var> = model.all_weights().into_iter().cloned().collect();
    let optimizer = model.compiled().map(|c| &c.optimizer);
    let slots: Vec<Tensor> = optimizer.map(|o| o.slots().iter().flatten().cloned().collect()).unwrap_or_default();
    let iterations = optimizer.map_or(0, |o| o.iterations);
    let mut mine = vec![
        vars.len() as f64,
        vars.iter().map(|v| v.elem_count()).sum::<usize>() as f64,
        slots.iter().map(|s| s.elem_count()).sum::<usize>() as f64,
        initial_epoch as f64,
        iterations as f64,
    ];
    mine.extend(samples.iter().map(|&n| n as f64));
    let mut root = mine.clone();
    world.broadcast_f64(&mut root)?;
    let flag = |differs: bool| f64::from(u8::from(differs));
    let mut bad = [flag(mine[..2] != root[..2]), flag(mine[3] != root[3]), flag(mine[5..] != root[5..])];
    world.allreduce_f64(&mut bad)?;
    if bad[0] > 0.0 {
        return Err(Error::Value(format!(
            "kandle.distribution: the processes hold different models (process {} has {} weights with {} values, \
             process 0 has {} with {}): every process must build and compile the same model",
            world.rank(),
            mine[0],
            mine[1],
            root[0],
            root[1]
        )));
    }
    if bad[1] > 0.0 {
        return Err(Error::Value(format!(
            "kandle.distribution: the processes start fit at different epochs (process {} at {}, process 0 at {}): \
             a BackupAndRestore backup_dir must be on a file system that every process reads",
            world.rank(),
            mine[3],
            root[3]
        )));
    }
    if bad[2] > 0.0 {
        return Err(Error::Value(format!(
            "kandle.distribution: the processes were given different data (process {} has {:?} training and \
             validation samples, process 0 has {:?}): with DataParallel every process passes the same arrays",
            world.rank(),
            &mine[5..],
            &root[5..]
        )));
    }
    let mut flat = flatten(&vars.iter().map(|v| v.as_tensor().clone()).collect::<Vec<_>>(), 1.0)?;
    world.broadcast_f32(&mut flat)?;
    let refs: Vec<&Var> = vars.iter().collect();
    for (v, t) in vars.iter().zip(unflatten(&flat, &refs)?) {
        v.set(&t)?;
    }
    // The optimizer's state travels when process 0 has some and this process has the same layout.
    let mut has = [f64::from(u8::from(mine[2] == root[2] && root[2] > 0.0))];
    world.allreduce_f64(&mut has)?;
    if let Some(c) = model.compiled_mut() {
        if has[0] == world.size() as f64 {
            let per = c.optimizer.slots().iter().map(|s| s.len()).collect::<Vec<_>>();
            let mut flat = flatten(&slots, 1.0)?;
            world.broadcast_f32(&mut flat)?;
            let mut at = 0;
            let mut rebuilt = Vec::with_capacity(per.len());
            for (k, n) in per.into_iter().enumerate() {
                let mut group = Vec::with_capacity(n);
                for s in &c.optimizer.slots()[k] {
                    let len = s.elem_count();
                    group.push(Tensor::from_slice(&flat[at..at + len], s.dims(), s.device())?.to_dtype(s.dtype())?);
                    at += len;
                }
                rebuilt.push(group);
            }
            c.optimizer.set_slots(rebuilt, root[4] as u64);
        } else {
            c.optimizer.set_slots(Vec::new(), root[4] as u64);
        }
    }
    Ok(())
}

impl Model {
    /// One data-parallel step on this process's share `local` (inputs, targets) of a global batch
    /// of `global` samples; `None` when the share is empty (a last batch smaller than the group).
    /// Each process's gradients are weighted by its share of the batch and summed over the group,
    /// which gives the gradient of the global batch's mean loss; every process then applies the
    /// same update (the fused SGD path is not taken: it would use the local gradient). A layer's
    /// reduction starts as soon as the backward pass has its gradients, so it travels while the
    /// layers before it are still differentiated. Moving statistics are averaged the same way,
    /// so all processes keep identical variables. Returns the global batch's loss/metric sums.
    pub fn train_step_parallel(&mut self, local: Option<(&[Tensor], &Tensor, Option<&Tensor>)>, global: usize, world: &dyn World) -> Result<StepSums> {
        let layers = &self.graph().layers;
        // The layers whose weights train, in the order their reductions start on every process:
        // last layer first, which is the order in which a backward pass completes them.
        let order: Vec<usize> = (0..layers.len()).rev().filter(|&i| layers[i].trainable() && !layers[i].weights().is_empty()).collect();
        let mut reducer = Reducer { world, order: &order, next: 0, ready: vec![None; layers.len()], pending: Vec::new() };
        let (sums, share) = match local {
            Some((xs, y, w)) => {
                let n = xs[0].dim(0)?;
                let y = self.target(y, n)?;
                let w = self.sample_weights(w)?;
                let xs = self.cast(xs)?;
                let loss = self.compiled().expect("checked by target").loss;
                let share = n as f64 / global as f64;
                let weight = match loss.reduction {
                    crate::losses::Reduction::Mean => share,
                    crate::losses::Reduction::Sum => 1.0,
                };
                let (value, out) = backward_pass(self.graph(), loss, &xs, &y, w.as_ref(), |i, g| {
                    let ws = layers[i].weights();
                    let values = g.iter().zip(&ws).map(|(g, w)| g.value(w.as_tensor())).collect::<candle_core::Result<Vec<_>>>()?;
                    reducer.ready[i] = Some(flatten(&values, weight as f32)?);
                    reducer.advance()
                })?;
                (self.sums(&value, &y, &out, w.as_ref())?, share)
            }
            None => (vec![0.0; self.sums_width()], 0.0),
        };
        // Layers that got no gradient (none at all on an empty share) reduce zeros, in the same order.
        for &i in &order {
            if reducer.ready[i].is_none() && reducer.pending.iter().all(|(l, _)| *l != i) {
                reducer.ready[i] = Some(vec![0.0; layers[i].weights().iter().map(|w| w.elem_count()).sum()]);
            }
        }
        reducer.advance()?;
        let mut by_layer: Vec<Option<Vec<Tensor>>> = vec![None; layers.len()];
        for (i, p) in std::mem::take(&mut reducer.pending) {
            let flat = p.wait()?;
            by_layer[i] = Some(unflatten(&flat, &layers[i].weights())?);
        }
        let grads: Vec<Tensor> = layers.iter().zip(by_layer).filter(|(l, _)| l.trainable()).flat_map(|(_, g)| g.unwrap_or_default()).collect();
        let vars: Vec<Var> = self.weights().into_iter().cloned().collect();
        let refs: Vec<&Var> = vars.iter().collect();
        let compiled = self.compiled_mut().expect("checked by target");
        let optimizer = &mut compiled.optimizer;
        optimizer.prepare(&refs)?;
        let scale = if optimizer.needs_all_gradients() { optimizer.global_scale(&grads)? } else { 1.0 };
        for (k, g) in grads.into_iter().enumerate() {
            let g = if scale == 1.0 { g } else { g.affine(scale, 0.0)? };
            optimizer.update(k, &vars[k], &Grad::Value(g))?;
        }
        optimizer.finish_step();
        self.average_state(share, world)?;
        reduce_sums(world, sums, global)
    }

    /// Moving statistics of the trained layers, averaged over the group, each process's weighted
    /// by its share of the batch.
    fn average_state(&self, weight: f64, world: &dyn World) -> Result<()> {
        let state: Vec<Var> = self.graph().layers.iter().filter(|l| l.trainable()).flat_map(|l| l.state()).cloned().collect();
        if state.is_empty() {
            return Ok(());
        }
        let values: Vec<Tensor> = state.iter().map(|v| v.as_tensor().clone()).collect();
        let mut flat = flatten(&values, weight as f32)?;
        world.allreduce_f32(&mut flat)?;
        let refs: Vec<&Var> = state.iter().collect();
        for (v, t) in state.iter().zip(unflatten(&flat, &refs)?) {
            v.set(&t)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::ArraySource;
    use crate::losses::Loss;
    use crate::optimizers::Optimizer;
    use crate::training::{self, Dataset, FitConfig, Hooks, SharedModel};
    use serde_json::json;
    use std::sync::{Arc, Barrier, Mutex};

    /// Processes as threads: collectives through one shared accumulator and a barrier.
    struct Threads {
        rank: usize,
        size: usize,
        acc: Arc<Mutex<Vec<f64>>>,
        barrier: Arc<Barrier>,
    }

    impl Threads {
        /// Each thread adds its part into the accumulator, then all read it back.
        fn exchange(&self, data: &mut [f64], contribute: impl FnOnce(&mut Vec<f64>, &[f64])) {
            contribute(&mut self.acc.lock().unwrap(), data);
            self.barrier.wait();
            data.copy_from_slice(&self.acc.lock().unwrap());
            self.barrier.wait();
            if self.rank == 0 {
                self.acc.lock().unwrap().clear();
            }
            self.barrier.wait();
        }

        fn sum(&self, data: &mut [f64]) {
            self.exchange(data, |acc, d| {
                if acc.len() != d.len() {
                    *acc = vec![0.0; d.len()];
                }
                acc.iter_mut().zip(d).for_each(|(a, d)| *a += d);
            });
        }

        fn root(&self, data: &mut [f64]) {
            let rank = self.rank;
            self.exchange(data, |acc, d| {
                if rank == 0 {
                    *acc = d.to_vec();
                }
            });
        }
    }

    fn via_f64(data: &mut [f32], f: impl FnOnce(&mut [f64])) {
        let mut wide: Vec<f64> = data.iter().map(|&v| v as f64).collect();
        f(&mut wide);
        data.iter_mut().zip(wide).for_each(|(d, w)| *d = w as f32);
    }

    impl World for Threads {
        fn rank(&self) -> usize {
            self.rank
        }
        fn size(&self) -> usize {
            self.size
        }
        fn allreduce_f32(&self, data: &mut [f32]) -> Result<()> {
            via_f64(data, |w| self.sum(w));
            Ok(())
        }
        fn allreduce_f64(&self, data: &mut [f64]) -> Result<()> {
            self.sum(data);
            Ok(())
        }
        fn broadcast_f32(&self, data: &mut [f32]) -> Result<()> {
            via_f64(data, |w| self.root(w));
            Ok(())
        }
        fn broadcast_f64(&self, data: &mut [f64]) -> Result<()> {
            self.root(data);
            Ok(())
        }
    }

    struct Quiet;
    impl Hooks for Quiet {}

    fn model(optimizer: &str, batchnorm: bool) -> Model {
        let mut m = Model::new("net", &[6, 6, 2]).unwrap();
        m.add("Conv2D", &json!({"name": "c", "filters": 3, "kernel_size": 3, "activation": "relu"})).unwrap();
        if batchnorm {
            m.add("BatchNormalization", &json!({"name": "bn"})).unwrap();
        }
        m.add("Flatten", &json!({"name": "f"})).unwrap();
        m.add("Dense", &json!({"name": "o", "units": 4, "activation": "softmax"})).unwrap();
        let opt = Optimizer::from_json(&json!({"class_name": optimizer, "config": {"learning_rate": 0.05}})).unwrap();
        m.compile(opt, Loss::CategoricalCrossentropy, &["acc".into()]).unwrap();
        m
    }

    fn weights(m: &Model) -> Vec<Vec<f32>> {
        m.all_weights().iter().map(|w| w.flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect()
    }

    /// Two "processes" (threads) with a global batch of 10 (shares of 5) and a last batch of 7
    /// (4 and 3) train as one process with batch 10 does; both end with the same weights, which
    /// started as process 0's (process 1 built other ones). With BatchNormalization each share
    /// normalizes with its own statistics (as Keras's DataParallel does), so only the processes'
    /// agreement is checked.
    fn two_threads_train_as_one(optimizer: &str, batchnorm: bool) {
        let x: Vec<f32> = (0..27 * 72).map(|i| ((i * 37 % 101) as f32) / 101.0).collect();
        let y: Vec<f32> = (0..27 * 4).map(|i| if i % 4 == (i / 4) % 3 { 1.0 } else { 0.0 }).collect();
        let xv = ndarray::ArrayViewD::from_shape(vec![27, 6, 6, 2], &x).unwrap();
        let yv = ndarray::ArrayViewD::from_shape(vec![27, 4], &y).unwrap();
        let (xs, ys) = (ArraySource::new(xv), ArraySource::new(yv));
        let cfg = FitConfig::new(10, 3, 0, true).unwrap();
        let one = SharedModel::new(model(optimizer, batchnorm));
        let (start, order) = (weights(&one.read()), one.read().shuffle_rng.clone());
        training::fit(&one, &Dataset::new(vec![&xs], Some(&ys)).unwrap(), None, &cfg, &mut Quiet, &Alone).unwrap();
        let alone = weights(&one.read());
        let (acc, barrier) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Barrier::new(2)));
        let results: Vec<Vec<Vec<f32>>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|rank| {
                    let (acc, barrier, start, xs, ys, cfg, order) = (acc.clone(), barrier.clone(), &start, &xs, &ys, &cfg, &order);
                    s.spawn(move || {
                        let mut m = model(optimizer, batchnorm);
                        if rank == 0 {
                            m.shuffle_rng = order.clone();
                            for (v, w) in m.all_weights().iter().zip(start) {
                                v.set(&Tensor::from_slice(w, v.dims(), v.device()).unwrap()).unwrap();
                            }
                        }
                        let shared = SharedModel::new(m);
                        let world = Threads { rank, size: 2, acc, barrier };
                        training::fit(&shared, &Dataset::new(vec![xs], Some(ys)).unwrap(), None, cfg, &mut Quiet, &world).unwrap();
                        let w = weights(&shared.read());
                        w
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(results[0], results[1], "{optimizer}: the processes' weights differ");
        assert_ne!(results[0], start);
        if batchnorm {
            return;
        }
        for (k, (a, b)) in alone.iter().zip(&results[0]).enumerate() {
            let worst = a.iter().zip(b).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-5, "{optimizer}: weight {k} differs by {worst}");
        }
    }

    #[test]
    fn two_processes_train_as_one_with_sgd() {
        two_threads_train_as_one("SGD", false);
    }

    #[test]
    fn two_processes_train_as_one_with_adam() {
        two_threads_train_as_one("Adam", false);
    }

    #[test]
    fn two_processes_keep_identical_batchnorm_statistics() {
        two_threads_train_as_one("Adam", true);
    }


    #[test]
    fn shards_cover_the_batch_in_order() {
        for n in 0..40 {
            for size in 1..6 {
                let parts: Vec<Range<usize>> = (0..size).map(|r| shard(n, r, size)).collect();
                assert_eq!(parts[0].start, 0);
                assert_eq!(parts[size - 1].end, n);
                for w in parts.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                    assert!(w[0].len() >= w[1].len() && w[0].len() - w[1].len() <= 1);
                }
            }
        }
    }
}
