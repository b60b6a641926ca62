//! `Model`: a layer graph (`crate::graph`), its compile configuration, and the one training step
//! (forward -> loss -> backward -> optimizer step -> metrics). Sequential and functional models are
//! the same type; a Sequential is a chain.

use crate::activations::Activation;
use crate::error::keras_shape;
use crate::graph::Graph;
use crate::layers::{Grad, Layer, Saved};
use crate::losses::{loss_and_gradient, Loss};
use crate::metrics::Metric;
use crate::optimizers::Optimizer;
use crate::{rng, Error, Result};
use candle_core::{DType, Tensor, Var};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

/// What `compile` sets.
pub struct Compiled {
    pub loss: Loss,
    pub metrics: Vec<Metric>,
    pub optimizer: Optimizer,
}

pub struct Model {
    pub name: String,
    graph: Graph,
    compiled: Option<Compiled>,
    dtype: DType,
    /// The model's own shuffle stream, saved with it, so that a resumed `fit` shuffles as the
    /// uninterrupted one and other models never change its order.
    pub shuffle_rng: ChaCha8Rng,
}

/// Inference runs large batches in slices whose largest tensor has about this many elements
/// (8 MB of f32): a predict batch of 256 then page-faults 12x less memory (measured: 307k -> 25k
/// faults over 24 calls) and its peak memory no longer grows with the batch, at the same speed.
const INFERENCE_SLICE_ELEMENTS: usize = 2 << 20;

/// Adds `g` into the gradient slot of a tensor (a tensor read by several calls sums their gradients).
fn accumulate(slot: &mut Option<Tensor>, g: Tensor) -> Result<()> {
    *slot = Some(match slot.take() {
        Some(acc) => acc.add(&g)?,
        None => g,
    });
    Ok(())
}

/// The training pass: every call forward keeping what its `backward` needs, the loss and its
/// gradient, then the calls in reverse, summing gradients where a tensor feeds several calls and
/// freeing each call's record (and its large buffers) right after it is used. Each trainable
/// layer's weight gradients go to `on_layer` as soon as they are complete (a layer called several
/// times: after its last call in the reverse walk, summed). Returns the batch-mean loss and the
/// output.
pub(crate) fn backward_pass(
    g: &Graph,
    loss: Loss,
    xs: &[Tensor],
    y: &Tensor,
    weights: Option<&Tensor>,
    mut on_layer: impl FnMut(usize, Vec<Grad>) -> Result<()>,
) -> Result<(Tensor, Tensor)> {
    let mut values: Vec<Option<Tensor>> = vec![None; g.shapes.len()];
    for (i, x) in xs.iter().enumerate() {
        values[i] = Some(x.clone());
    }
    let mut saved: Vec<Option<Saved>> = Vec::with_capacity(g.nodes.len());
    for n in &g.nodes {
        let inputs: Vec<Tensor> = n.inputs.iter().map(|&t| values[t].clone().expect("topological order")).collect();
        // The call giving the model's output stops before its activation: the loss starts from its
        // logits.
        let activated = n.output != g.output;
        let (out, extra) = g.layers[n.layer].forward_train(&inputs, activated)?;
        values[n.output] = Some(out.clone());
        saved.push(Some(Saved { inputs, output: out, activated, extra }));
    }
    let pre = values[g.output].take().unwrap_or_else(|| xs[0].clone());
    drop(values);
    let act = g.output_activation();
    let (value, out, grad) = loss_and_gradient(loss, y, &pre, act, weights)?;
    let mut grads: Vec<Option<Tensor>> = vec![None; g.shapes.len()];
    grads[g.output] = Some(grad);
    let mut pending: Vec<Option<Vec<Grad>>> = (0..g.layers.len()).map(|_| None).collect();
    let mut remaining = g.calls.clone();
    for (i, n) in g.nodes.iter().enumerate().rev() {
        let record = saved[i].take();
        // No trainable weight at or before this call: nothing below needs a gradient.
        if !g.needs_grad[n.output] {
            continue;
        }
        let (Some(s), Some(grad)) = (record, grads[n.output].take()) else { continue };
        let layer = &g.layers[n.layer];
        let want: Vec<bool> = n.inputs.iter().map(|&t| g.needs_grad[t]).collect();
        let got = layer.backward(&s, &grad, &want)?;
        drop(s);
        for ((&t, gi), &w) in n.inputs.iter().zip(got.inputs).zip(&want) {
            match gi {
                Some(gi) if w => accumulate(&mut grads[t], gi)?,
                None if w => {
                    return Err(Error::Runtime(format!("layer {} returned no input gradient", layer.name())));
                }
                _ => {}
            }
        }
        if !layer.trainable() || got.weights.is_empty() {
            continue;
        }
        remaining[n.layer] -= 1;
        let total = match pending[n.layer].take() {
            None => got.weights,
            Some(acc) => {
                let vars = layer.weights();
                acc.into_iter().zip(&got.weights).zip(vars).map(|((a, b), v)| a.add(b, v.as_tensor())).collect::<candle_core::Result<_>>()?
            }
        };
        if remaining[n.layer] == 0 {
            on_layer(n.layer, total)?;
        } else {
            pending[n.layer] = Some(total);
        }
    }
    Ok((value, out))
}

/// Per-batch sums: the loss first, then each metric's statistics (`Metric::width` of them), in
/// `metrics_names` order; `training::Mean` turns their totals into the logged values.
pub type StepSums = Vec<f64>;

impl Model {
    /// An empty Sequential on one input shape.
    pub fn new(name: &str, input_shape: &[usize]) -> Result<Self> {
        Self::with_dtype(name, input_shape, DType::F32)
    }

    /// A Sequential computing in `dtype` (f32 as Keras; f64 for gradient checks).
    pub fn with_dtype(name: &str, input_shape: &[usize], dtype: DType) -> Result<Self> {
        Ok(Self::from_graph(Graph::sequential(name, input_shape)?, dtype))
    }

    /// A model from Keras's `{"class_name": "Sequential" | "Functional", "config": ...}`.
    pub fn from_config(config: &Value, dtype: DType) -> Result<Self> {
        let inner = &config["config"];
        match config["class_name"].as_str() {
            Some("Sequential") => {
                let input_shape: Vec<usize> = serde_json::from_value(inner["input_shape"].clone())
                    .map_err(|_| Error::Value("Sequential config: no valid 'input_shape'".into()))?;
                let Some(layers) = inner["layers"].as_array() else {
                    return crate::value_err!("Sequential config: no 'layers' list");
                };
                let mut m = Self::with_dtype(inner["name"].as_str().unwrap_or("sequential"), &input_shape, dtype)?;
                for l in layers {
                    m.add(l["class_name"].as_str().unwrap_or("<missing class_name>"), &l["config"])?;
                }
                Ok(m)
            }
            Some("Functional") | Some("Model") => Ok(Self::from_graph(Graph::functional(config, dtype)?, dtype)),
            other => crate::value_err!("Unknown model class {other:?}: expected 'Sequential' or 'Functional'"),
        }
    }

    fn from_graph(graph: Graph, dtype: DType) -> Self {
        Model { name: graph.name.clone(), graph, compiled: None, dtype, shuffle_rng: rng::fork() }
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Keras's `{"class_name", "config"}` of the model.
    pub fn keras_config(&self) -> Value {
        self.graph.keras_config()
    }

    /// Builds the layer on the current output shape; shape errors surface here, as in Keras.
    pub fn add(&mut self, class_name: &str, config: &Value) -> Result<()> {
        if !self.graph.sequential {
            return crate::value_err!("`add` is for Sequential models; model \"{}\" is functional", self.name);
        }
        self.graph.add(class_name, config, self.dtype)
    }

    pub fn layers(&self) -> &[Box<dyn Layer>] {
        &self.graph.layers
    }

    pub fn layer(&self, i: usize) -> Result<&dyn Layer> {
        self.graph.layers.get(i).map(|l| l.as_ref()).ok_or_else(|| Error::Value(format!("no layer at index {i}")))
    }

    pub fn layer_index(&self, name: &str) -> Result<usize> {
        self.graph.layer_index(name)
    }

    /// Keras's `layer.trainable = ...`: frozen layers keep their weights and (BatchNormalization)
    /// run in inference mode; the optimizer's state is rebuilt for the new set of trained weights.
    pub fn set_trainable(&mut self, i: usize, trainable: bool) -> Result<()> {
        let layer = self.graph.layers.get_mut(i).ok_or_else(|| Error::Value(format!("no layer at index {i}")))?;
        if layer.trainable() != trainable {
            layer.shapes_mut().trainable = trainable;
            self.graph.refresh();
            if let Some(c) = &mut self.compiled {
                c.optimizer.set_slots(Vec::new(), c.optimizer.iterations);
            }
        }
        Ok(())
    }

    pub fn input_shapes(&self) -> Vec<&[usize]> {
        self.graph.inputs.iter().map(|i| i.shape.as_slice()).collect()
    }

    pub fn input_shape(&self) -> &[usize] {
        &self.graph.inputs[0].shape
    }

    pub fn output_shape(&self) -> &[usize] {
        self.graph.output_shape()
    }

    /// The weights gradients train: those of trainable layers, in layer order (the optimizer's).
    pub fn weights(&self) -> Vec<&Var> {
        self.graph.layers.iter().filter(|l| l.trainable()).flat_map(|l| l.weights()).collect()
    }

    /// Every variable of every layer, `get_weights()` order.
    pub fn all_weights(&self) -> Vec<&Var> {
        self.graph.layers.iter().flat_map(|l| l.variables()).collect()
    }

    pub fn count_params(&self) -> usize {
        self.all_weights().iter().map(|w| w.elem_count()).sum()
    }

    pub fn trainable_count(&self) -> usize {
        self.weights().iter().map(|w| w.elem_count()).sum()
    }

    pub fn compile(&mut self, optimizer: Optimizer, loss: Loss, metrics: &[String]) -> Result<()> {
        let mut metrics = metrics.iter().map(|m| Metric::resolve(m)).collect::<Result<Vec<_>>>()?;
        // Keras 3's log names: a repeated name gets `_1`, `_2`, ...; a weighted metric whose name is
        // taken becomes `weighted_<name>` first.
        let mut used: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for m in metrics.iter_mut() {
            let mut name = m.name.clone();
            if used.contains_key(&name) && m.weighted {
                name = format!("weighted_{name}");
            }
            if let Some(k) = used.get_mut(&name) {
                let renamed = format!("{name}_{k}");
                *k += 1;
                name = renamed;
            }
            used.entry(name.clone()).or_insert(1);
            m.name = name;
        }
        self.compiled = Some(Compiled { loss, metrics, optimizer });
        Ok(())
    }

    pub fn compiled(&self) -> Option<&Compiled> {
        self.compiled.as_ref()
    }

    pub fn compiled_mut(&mut self) -> Option<&mut Compiled> {
        self.compiled.as_mut()
    }

    fn require_compiled(&self) -> Result<&Compiled> {
        self.compiled.as_ref().ok_or_else(|| {
            Error::Runtime("You must compile your model before training/testing. Use `model.compile(optimizer, loss)`.".into())
        })
    }

    /// `['loss', 'acc', ...]`, the order of `evaluate`'s list and of the logs.
    pub fn metrics_names(&self) -> Vec<String> {
        let mut names = vec!["loss".to_string()];
        if let Some(c) = &self.compiled {
            names.extend(c.metrics.iter().map(|m| m.name.clone()));
        }
        names
    }

    /// Checks the per-sample shapes of a batch's inputs against the model's inputs.
    pub fn check_inputs(&self, sample_shapes: &[&[usize]]) -> Result<()> {
        let inputs = &self.graph.inputs;
        if sample_shapes.len() != inputs.len() {
            return crate::value_err!(
                "Model \"{}\" expects {} input(s), but it received {} input arrays",
                self.name,
                inputs.len(),
                sample_shapes.len()
            );
        }
        for (i, (input, shape)) in inputs.iter().zip(sample_shapes).enumerate() {
            if input.shape.as_slice() != *shape {
                let layer = match (self.graph.sequential, self.graph.layers.first()) {
                    (true, Some(l)) => l.name(),
                    _ => &input.name,
                };
                return crate::value_err!(
                    "Input {i} of layer \"{layer}\" is incompatible with the layer: expected shape={}, found shape={}",
                    keras_shape(&input.shape),
                    keras_shape(shape)
                );
            }
        }
        Ok(())
    }

    /// Checks targets against the model output (and the loss's expectations).
    pub fn check_target(&self, sample_shape: &[usize]) -> Result<()> {
        let compiled = self.require_compiled()?;
        let out = self.output_shape();
        if let Some(want) = compiled.loss.custom_target_shape() {
            let fits = want.len() == sample_shape.len() && want.iter().zip(sample_shape).all(|(w, s)| w.is_none_or(|w| w == *s));
            if fits {
                return Ok(());
            }
            return Err(Error::Value(format!(
                "Target shape mismatch: loss '{}' was recorded for targets of shape {} (the model's output shape; \
                 kandle records a Python loss once, at compile), but received targets of shape {}",
                compiled.loss.name(),
                crate::symbolic::shape::show(&std::iter::once(None).chain(want.iter().copied()).collect::<Vec<_>>()),
                keras_shape(sample_shape)
            )));
        }
        let ok = if compiled.loss.sparse() {
            sample_shape.is_empty() || sample_shape == [1]
        } else {
            sample_shape == out || (out == [1] && sample_shape.is_empty())
        };
        if ok {
            return Ok(());
        }
        let expected = if compiled.loss.sparse() { "(None,) or (None, 1) class indices".to_string() } else { keras_shape(out) };
        Err(Error::Value(format!(
            "Target shape mismatch: the model's output is {} and loss '{}' expects targets of shape {expected}, \
             but received targets of shape {}",
            keras_shape(out),
            compiled.loss.name(),
            keras_shape(sample_shape)
        )))
    }

    /// Inference: the final output, the final call's pre-activation output, and its activation.
    /// Large batches go through the network a slice at a time (samples are independent at
    /// inference), so every intermediate tensor stays small enough to be reused from the heap
    /// instead of being mapped fresh from the OS on every call.
    fn forward_full(&self, xs: &[Tensor]) -> Result<(Tensor, Tensor, Activation)> {
        let n = xs[0].dim(0)?;
        let per_sample = self.graph.shapes.iter().map(|s| s.iter().product::<usize>()).max().unwrap_or(1);
        let slice = (INFERENCE_SLICE_ELEMENTS / per_sample.max(1)).max(1);
        if n <= slice {
            return self.forward_slice(xs);
        }
        let (mut outs, mut pres) = (Vec::new(), Vec::new());
        let mut act = Activation::Linear;
        for start in (0..n).step_by(slice) {
            let part = xs.iter().map(|x| x.narrow(0, start, slice.min(n - start))).collect::<candle_core::Result<Vec<_>>>()?;
            let (out, pre, a) = self.forward_slice(&part)?;
            outs.push(out);
            pres.push(pre);
            act = a;
        }
        Ok((Tensor::cat(&outs, 0)?, Tensor::cat(&pres, 0)?, act))
    }

    /// One inference pass; each tensor is freed once its last reader has run.
    fn forward_slice(&self, xs: &[Tensor]) -> Result<(Tensor, Tensor, Activation)> {
        let g = &self.graph;
        if g.nodes.is_empty() {
            return Ok((xs[0].clone(), xs[0].clone(), Activation::Linear));
        }
        let mut readers = vec![0usize; g.shapes.len()];
        g.nodes.iter().flat_map(|n| &n.inputs).for_each(|&t| readers[t] += 1);
        let mut values: Vec<Option<Tensor>> = vec![None; g.shapes.len()];
        for (i, x) in xs.iter().enumerate() {
            values[i] = Some(x.clone());
        }
        for n in &g.nodes {
            let inputs: Vec<Tensor> = n.inputs.iter().map(|&t| values[t].clone().expect("topological order")).collect();
            for &t in &n.inputs {
                readers[t] -= 1;
                if readers[t] == 0 {
                    values[t] = None;
                }
            }
            let layer = &g.layers[n.layer];
            values[n.output] = Some(if n.output == g.output { layer.forward_pre(&inputs)? } else { layer.forward(&inputs)? });
        }
        let pre = values[g.output].take().expect("the output is computed");
        let act = g.output_activation();
        Ok((act.apply(&pre)?, pre, act))
    }

    pub(crate) fn cast(&self, xs: &[Tensor]) -> Result<Vec<Tensor>> {
        Ok(xs.iter().map(|x| x.to_dtype(self.dtype)).collect::<candle_core::Result<_>>()?)
    }

    pub fn predict_batch(&self, xs: &[Tensor]) -> Result<Tensor> {
        Ok(self.forward_full(&self.cast(xs)?)?.0)
    }

    /// Forward and backward pass on one batch in training mode (Dropout active): the batch-mean
    /// loss, the output, and the loss's gradient for every weight, in `weights()` order. `y` is the
    /// validated target (see `target`). Changes no weight (BatchNormalization's moving statistics
    /// do move, as in any training-mode call).
    pub fn gradients(&self, xs: &[Tensor], y: &Tensor) -> Result<(Tensor, Tensor, Vec<Tensor>)> {
        let loss = self.require_compiled()?.loss;
        let mut by_layer: Vec<Option<Vec<Tensor>>> = vec![None; self.graph.layers.len()];
        let (value, out) = backward_pass(&self.graph, loss, &self.cast(xs)?, y, None, |i, g| {
            let weights = self.graph.layers[i].weights();
            let values = g.iter().zip(&weights).map(|(g, w)| g.value(w.as_tensor())).collect::<candle_core::Result<Vec<_>>>()?;
            by_layer[i] = Some(values);
            Ok(())
        })?;
        let mut grads = Vec::new();
        for (l, g) in self.graph.layers.iter().zip(by_layer) {
            if l.trainable() {
                match g {
                    Some(g) => grads.extend(g),
                    None => grads.extend(l.weights().iter().map(|w| w.as_tensor().zeros_like()).collect::<candle_core::Result<Vec<_>>>()?),
                }
            }
        }
        Ok((value, out, grads))
    }

    /// Targets as a tensor shaped like the output (or `(n,)` class indices), validated.
    pub(crate) fn target(&self, y: &Tensor, n: usize) -> Result<Tensor> {
        let compiled = self.require_compiled()?;
        if compiled.loss.sparse() {
            let classes = *self.output_shape().last().unwrap_or(&1);
            let labels = y.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
            if let Some(bad) = labels.iter().find(|l| !(l.fract() == 0.0 && **l >= 0.0 && (**l as usize) < classes)) {
                return Err(Error::Value(format!(
                    "Received a label value of {bad} which is outside the valid range of [0, {}) for \
                     sparse_categorical_crossentropy",
                    classes
                )));
            }
            return Ok(y.flatten_all()?.to_dtype(self.dtype)?);
        }
        let mut shape = vec![n];
        shape.extend_from_slice(self.output_shape());
        Ok(y.to_dtype(self.dtype)?.reshape(shape)?)
    }

    /// Sample weights as a flat tensor in the model's dtype.
    pub(crate) fn sample_weights(&self, w: Option<&Tensor>) -> Result<Option<Tensor>> {
        Ok(match w {
            Some(w) => Some(w.flatten_all()?.to_dtype(self.dtype)?),
            None => None,
        })
    }

    /// How many numbers a step's sums hold (the loss, then each metric's statistics).
    pub(crate) fn sums_width(&self) -> usize {
        1 + self.compiled.as_ref().map_or(0, |c| c.metrics.iter().map(|m| m.width()).sum())
    }

    pub(crate) fn sums(&self, loss: &Tensor, y: &Tensor, out: &Tensor, w: Option<&Tensor>) -> Result<StepSums> {
        let compiled = self.require_compiled()?;
        let n = out.dim(0)? as f64;
        let mut sums = vec![loss.to_dtype(DType::F64)?.to_scalar::<f64>()? * n];
        for m in &compiled.metrics {
            sums.extend(m.batch_stats(y, out, compiled.loss.sparse(), w)?);
        }
        Ok(sums)
    }

    /// One optimisation step on one batch (per-sample loss weights `w`, Keras's `sample_weight`,
    /// when given); returns the batch's loss/metric sums. Each layer's weights are updated as soon
    /// as the backward pass has their complete gradients (nothing later in the walk reads them),
    /// while those gradients are still in cache.
    pub fn train_step(&mut self, xs: &[Tensor], y: &Tensor, w: Option<&Tensor>) -> Result<StepSums> {
        let y = self.target(y, xs[0].dim(0)?)?;
        let w = self.sample_weights(w)?;
        let w = w.as_ref();
        let xs = self.cast(xs)?;
        let vars: Vec<Var> = self.weights().into_iter().cloned().collect();
        let refs: Vec<&Var> = vars.iter().collect();
        // Index of each trainable layer's first weight in `vars`.
        let mut first = Vec::with_capacity(self.graph.layers.len());
        let mut count = 0;
        for layer in &self.graph.layers {
            first.push(count);
            if layer.trainable() {
                count += layer.weights().len();
            }
        }
        let Model { graph, compiled, .. } = self;
        let compiled = compiled.as_mut().expect("checked by target");
        let optimizer = &mut compiled.optimizer;
        optimizer.prepare(&refs)?;
        let (loss, out) = if optimizer.needs_all_gradients() {
            // `global_clipnorm` scales the step's gradients by their joint norm: all of them first.
            let mut all: Vec<(usize, Tensor)> = Vec::with_capacity(vars.len());
            let result = backward_pass(graph, compiled.loss, &xs, &y, w, |i, grads| {
                for (j, g) in grads.iter().enumerate() {
                    let k = first[i] + j;
                    all.push((k, g.value(vars[k].as_tensor())?));
                }
                Ok(())
            })?;
            let tensors: Vec<Tensor> = all.iter().map(|(_, g)| g.clone()).collect();
            let scale = optimizer.global_scale(&tensors)?;
            drop(tensors);
            for (k, g) in all {
                optimizer.update(k, &vars[k], &Grad::Value(g.affine(scale, 0.0)?))?;
            }
            result
        } else {
            backward_pass(graph, compiled.loss, &xs, &y, w, |i, grads| {
                for (j, g) in grads.iter().enumerate() {
                    optimizer.update(first[i] + j, &vars[first[i] + j], g)?;
                }
                Ok(())
            })?
        };
        compiled.optimizer.finish_step();
        self.sums(&loss, &y, &out, w)
    }

    /// Loss and metrics on one batch, without training (the loss weighted by `w` when given; the
    /// metrics never are, as Keras 3's `metrics=`).
    pub fn test_step(&self, xs: &[Tensor], y: &Tensor, w: Option<&Tensor>) -> Result<StepSums> {
        let n = xs[0].dim(0)?;
        let y = self.target(y, n)?;
        let w = self.sample_weights(w)?;
        let loss_kind = self.require_compiled()?.loss;
        let (out, pre, act) = self.forward_full(&self.cast(xs)?)?;
        let loss = loss_kind.reduce_weighted(&loss_kind.per_sample(&y, &out, &pre, act)?, w.as_ref())?;
        self.sums(&loss, &y, &out, w.as_ref())
    }

    /// Sets the optimizer's state from outside (a Keras file): each trained weight's slots, in
    /// `weights()` order, and the step count; counts and shapes are checked before anything changes.
    pub fn set_optimizer_state(&mut self, slots: Vec<Vec<Tensor>>, iterations: u64) -> Result<()> {
        let shapes: Vec<Vec<usize>> = self.weights().iter().map(|v| v.dims().to_vec()).collect();
        let compiled = self.compiled.as_mut().ok_or_else(|| Error::Runtime("the model is not compiled".into()))?;
        let per = compiled.optimizer.slots_per_variable();
        let ok = slots.len() == shapes.len() && slots.iter().zip(&shapes).all(|(s, dims)| s.len() == per && s.iter().all(|t| t.dims() == dims.as_slice()));
        if !(ok || slots.is_empty()) {
            return crate::value_err!(
                "optimizer state for {} weight(s) does not fit: the model trains {} weight(s) with {per} slot(s) each",
                slots.len(),
                shapes.len()
            );
        }
        compiled.optimizer.set_slots(slots, iterations);
        Ok(())
    }

    /// A layer's variables (`weights()` then `state()`) as host data in Keras layouts.
    pub fn layer_weights(&self, i: usize) -> Result<Vec<(Vec<f32>, Vec<usize>)>> {
        let l = self.layer(i)?;
        l.variables()
            .into_iter()
            .map(|w| Ok((w.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?, w.dims().to_vec())))
            .collect()
    }

    /// Replaces a layer's variables; the count and every shape must match (checked before any write).
    pub fn set_layer_weights(&mut self, i: usize, values: &[(Vec<f32>, Vec<usize>)]) -> Result<()> {
        let layer = self.layer(i)?;
        let vars: Vec<&Var> = layer.variables();
        if vars.len() != values.len() {
            return Err(Error::Value(format!(
                "Layer \"{}\" expects {} weight(s), but the weight list received has {}",
                layer.name(),
                vars.len(),
                values.len()
            )));
        }
        for (k, (v, (data, shape))) in vars.iter().zip(values).enumerate() {
            if v.dims() != shape.as_slice() || data.len() != v.elem_count() {
                return Err(Error::Value(format!(
                    "Layer \"{}\" weight {k}: expected shape {:?}, received {:?}",
                    layer.name(),
                    v.dims(),
                    shape
                )));
            }
        }
        for (v, (data, shape)) in vars.iter().zip(values) {
            v.set(&Tensor::from_slice(data, shape.as_slice(), v.device())?.to_dtype(v.dtype())?)?;
        }
        Ok(())
    }
}
