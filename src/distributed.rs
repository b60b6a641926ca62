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

fn flatten(ts: &[Tensor]) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(ts.iter().map(|t| t.elem_count()).sum());
    for t in ts {
        out.extend(t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?);
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
    let mut flat = flatten(&vars.iter().map(|v| v.as_tensor().clone()).collect::<Vec<_>>())?;
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
            let mut flat = flatten(&slots)?;
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
    /// same update (the fused SGD path is not taken: it would use the local gradient). Moving
    /// statistics are averaged the same way, so all processes keep identical variables. Returns
    /// the global batch's loss/metric sums.
    pub fn train_step_parallel(&mut self, local: Option<(&[Tensor], &Tensor)>, global: usize, world: &dyn World) -> Result<StepSums> {
        let vars: Vec<Var> = self.weights().into_iter().cloned().collect();
        let (grads, sums, weight) = match local {
            Some((xs, y)) => {
                let n = xs[0].dim(0)?;
                let y = self.target(y, n)?;
                let xs = self.cast(xs)?;
                let loss = self.compiled().expect("checked by target").loss;
                let weight = match loss.reduction {
                    crate::losses::Reduction::Mean => n as f64 / global as f64,
                    crate::losses::Reduction::Sum => 1.0,
                };
                let mut by_layer: Vec<Option<Vec<Tensor>>> = vec![None; self.graph().layers.len()];
                let (value, out) = backward_pass(self.graph(), loss, &xs, &y, |i, g| {
                    let ws = self.graph().layers[i].weights();
                    by_layer[i] = Some(g.iter().zip(&ws).map(|(g, w)| g.value(w.as_tensor())?.affine(weight, 0.0)).collect::<candle_core::Result<_>>()?);
                    Ok(())
                })?;
                let mut grads = Vec::with_capacity(vars.len());
                for (layer, g) in self.graph().layers.iter().zip(by_layer) {
                    if layer.trainable() {
                        match g {
                            Some(g) => grads.extend(g),
                            None => grads.extend(layer.weights().iter().map(|w| w.as_tensor().zeros_like()).collect::<candle_core::Result<Vec<_>>>()?),
                        }
                    }
                }
                (grads, self.sums(&value, &y, &out)?, weight)
            }
            None => {
                let grads = vars.iter().map(|v| v.as_tensor().zeros_like()).collect::<candle_core::Result<Vec<_>>>()?;
                (grads, vec![0.0; self.sums_width()], 0.0)
            }
        };
        let refs: Vec<&Var> = vars.iter().collect();
        let mut flat = flatten(&grads)?;
        drop(grads);
        world.allreduce_f32(&mut flat)?;
        let grads = unflatten(&flat, &refs)?;
        drop(flat);
        let compiled = self.compiled_mut().expect("checked by target");
        let optimizer = &mut compiled.optimizer;
        optimizer.prepare(&refs)?;
        let scale = if optimizer.needs_all_gradients() { optimizer.global_scale(&grads)? } else { 1.0 };
        for (k, g) in grads.into_iter().enumerate() {
            let g = if scale == 1.0 { g } else { g.affine(scale, 0.0)? };
            optimizer.update(k, &vars[k], &Grad::Value(g))?;
        }
        optimizer.finish_step();
        self.average_state(weight, world)?;
        reduce_sums(world, sums, global)
    }

    /// Moving statistics of the trained layers, averaged over the group with the step's weights.
    fn average_state(&self, weight: f64, world: &dyn World) -> Result<()> {
        let state: Vec<Var> = self.graph().layers.iter().filter(|l| l.trainable()).flat_map(|l| l.state()).cloned().collect();
        if state.is_empty() {
            return Ok(());
        }
        let values = state.iter().map(|v| v.as_tensor().affine(weight, 0.0)).collect::<candle_core::Result<Vec<_>>>()?;
        let mut flat = flatten(&values)?;
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
