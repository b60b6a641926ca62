//! `ModelCore`: the compiled half of `kandle.models.Model` and `Sequential`. Each method converts,
//! releases the GIL for the work, and delegates to `crate::model` / `crate::training` / `crate::feed`. Layers are
//! addressed by name.

use super::arrays::Source;
use super::error::parse_json;
use super::feed::PyFeed;
use super::hooks::{Phase, PyHooks};
use super::world::world_of;
use crate::data::BatchSource;
use crate::feed::{self, FeedValidation};
use crate::losses::Loss;
use crate::model::Model;
use crate::optimizers::Optimizer;
use crate::training::{self, Dataset, FitConfig, Logs, SharedModel, Validation};
use numpy::{IntoPyArray, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn};
use pyo3::prelude::*;

/// What `layer_info` returns to Python: class, name, input shapes, output shape, parameter count,
/// config JSON, trainable.
type LayerInfo = (String, String, Vec<Vec<usize>>, Vec<usize>, usize, String, bool);

#[pyclass(frozen, module = "kandle._kandle")]
pub struct ModelCore {
    shared: SharedModel,
}

fn values(logs: Logs) -> Vec<f64> {
    logs.into_iter().map(|(_, v)| v).collect()
}

/// NumPy arrays (one per model input) as borrowed sources.
fn sources<'py>(xs: &[Bound<'py, PyAny>], what: &str) -> PyResult<Vec<Source<'py>>> {
    xs.iter().map(|x| Source::new(x, what)).collect()
}

/// Keras's `validation_freq`: an int or a list of epochs (checked by the core).
fn validation_freq_of(v: &Bound<'_, PyAny>) -> PyResult<training::ValidationFreq> {
    let every: Option<i64> = v.extract().ok().filter(|_| !v.is_instance_of::<pyo3::types::PyBool>());
    let epochs: Option<Vec<i64>> = if every.is_none() { v.extract().ok() } else { None };
    Ok(training::ValidationFreq::new(every, epochs)?)
}

fn refs<'a>(boxes: &'a [Box<dyn BatchSource + 'a>]) -> Vec<&'a dyn BatchSource> {
    boxes.iter().map(|b| b.as_ref()).collect()
}

impl ModelCore {
    pub(super) fn from_shared(shared: SharedModel) -> Self {
        ModelCore { shared }
    }

    pub(super) fn shared(&self) -> &SharedModel {
        &self.shared
    }
}

#[pymethods]
impl ModelCore {
    /// An empty Sequential on one per-sample input shape.
    #[new]
    fn new(name: &str, input_shape: Vec<usize>) -> PyResult<Self> {
        Ok(ModelCore { shared: SharedModel::new(Model::new(name, &input_shape)?) })
    }

    /// A model from Keras's `{"class_name": "Functional" | "Sequential", "config": ...}`.
    #[staticmethod]
    fn from_config(config_json: &str) -> PyResult<Self> {
        let model = Model::from_config(&parse_json(config_json)?, candle_core::DType::F32)?;
        Ok(ModelCore { shared: SharedModel::new(model) })
    }

    fn config_json(&self) -> String {
        self.shared.read().keras_config().to_string()
    }

    fn add(&self, class_name: &str, config_json: &str) -> PyResult<()> {
        Ok(self.shared.write().add(class_name, &parse_json(config_json)?)?)
    }

    fn layer_names(&self) -> Vec<String> {
        self.shared.read().layers().iter().map(|l| l.name().to_string()).collect()
    }

    fn layer_info(&self, name: &str) -> PyResult<LayerInfo> {
        let model = self.shared.read();
        let l = model.layer(model.layer_index(name)?)?;
        let params = l.weights().iter().chain(&l.state()).map(|w| w.elem_count()).sum();
        Ok((
            l.class_name().into(),
            l.name().into(),
            l.shapes().inputs.clone(),
            l.output_shape().to_vec(),
            params,
            crate::layers::config_of(l).to_string(),
            l.trainable(),
        ))
    }

    /// `(trainable, non-trainable)` counts of a layer's weight variables (`get_weights` order).
    fn layer_weight_counts(&self, name: &str) -> PyResult<(usize, usize)> {
        let model = self.shared.read();
        let l = model.layer(model.layer_index(name)?)?;
        Ok((l.weights().len(), l.state().len()))
    }

    fn layer_weight_names(&self, name: &str) -> PyResult<Vec<String>> {
        let model = self.shared.read();
        let l = model.layer(model.layer_index(name)?)?;
        Ok(l.weight_names().iter().map(|s| s.to_string()).collect())
    }

    fn layer_get_weights<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Vec<Bound<'py, PyArrayDyn<f32>>>> {
        let model = self.shared.read();
        let weights = model.layer_weights(model.layer_index(name)?)?;
        weights.into_iter().map(|(data, shape)| data.into_pyarray(py).reshape(shape)).collect()
    }

    /// Arrays must already be float32 (the Python side converts); shapes are checked here.
    fn layer_set_weights(&self, name: &str, arrays: Vec<PyReadonlyArrayDyn<'_, f32>>) -> PyResult<()> {
        let values: Vec<(Vec<f32>, Vec<usize>)> =
            arrays.iter().map(|a| (a.as_array().iter().copied().collect(), a.as_array().shape().to_vec())).collect();
        let mut model = self.shared.write();
        let i = model.layer_index(name)?;
        Ok(model.set_layer_weights(i, &values)?)
    }

    fn set_trainable(&self, name: &str, trainable: bool) -> PyResult<()> {
        let mut model = self.shared.write();
        let i = model.layer_index(name)?;
        Ok(model.set_trainable(i, trainable)?)
    }

    fn count_params(&self) -> usize {
        self.shared.read().count_params()
    }

    fn trainable_count(&self) -> usize {
        self.shared.read().trainable_count()
    }

    fn input_shapes(&self) -> Vec<Vec<usize>> {
        self.shared.read().input_shapes().iter().map(|s| s.to_vec()).collect()
    }

    fn input_names(&self) -> Vec<String> {
        self.shared.read().graph().inputs.iter().map(|i| i.name.clone()).collect()
    }

    fn output_shape(&self) -> Vec<usize> {
        self.shared.read().output_shape().to_vec()
    }

    fn compile(&self, optimizer_json: &str, loss: &str, metrics: Vec<String>) -> PyResult<Vec<String>> {
        let optimizer = Optimizer::from_json(&parse_json(optimizer_json)?)?;
        let mut model = self.shared.write();
        model.compile(optimizer, Loss::parse(loss)?, &metrics)?;
        Ok(model.metrics_names())
    }

    fn metrics_names(&self) -> Vec<String> {
        self.shared.read().metrics_names()
    }

    #[getter]
    fn get_learning_rate(&self) -> Option<f64> {
        self.shared.read().compiled().map(|c| c.optimizer.current_learning_rate())
    }

    #[setter]
    fn set_learning_rate(&self, lr: f64) -> PyResult<()> {
        if let Some(c) = self.shared.write().compiled_mut() {
            c.optimizer.set_learning_rate(lr)?;
        }
        Ok(())
    }

    /// The optimizer's state: for each trained weight (`trainable_weights` order), its slots
    /// (Adam: first and second moments; SGD with momentum: the momentum); empty before the first step.
    fn optimizer_slots<'py>(&self, py: Python<'py>) -> PyResult<Vec<Vec<Bound<'py, PyArrayDyn<f32>>>>> {
        let model = self.shared.read();
        let Some(c) = model.compiled() else { return Ok(Vec::new()) };
        c.optimizer.slots().iter().map(|slots| slots.iter().map(|t| super::arrays::to_numpy(py, t)).collect()).collect()
    }

    /// Replaces the optimizer's state (`optimizer_slots`' layout) and step count, checked first.
    fn set_optimizer_state(&self, slots: Vec<Vec<PyReadonlyArrayDyn<'_, f32>>>, iterations: u64) -> PyResult<()> {
        let tensors = slots.iter().map(|per| per.iter().map(super::arrays::tensor).collect::<PyResult<Vec<_>>>()).collect::<PyResult<Vec<_>>>()?;
        Ok(self.shared.write().set_optimizer_state(tensors, iterations)?)
    }

    #[getter]
    fn iterations(&self) -> u64 {
        self.shared.read().compiled().map(|c| c.optimizer.iterations).unwrap_or(0)
    }

    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (xs, y, val_xs, val_y, validation_split, batch_size, epochs, initial_epoch, shuffle, validation_freq, callbacks, model, world=None, sample_weight=None, val_sample_weight=None))]
    fn fit(
        &self,
        py: Python<'_>,
        xs: Vec<Bound<'_, PyAny>>,
        y: &Bound<'_, PyAny>,
        val_xs: Option<Vec<Bound<'_, PyAny>>>,
        val_y: Option<&Bound<'_, PyAny>>,
        validation_split: f64,
        batch_size: i64,
        epochs: i64,
        initial_epoch: i64,
        shuffle: bool,
        validation_freq: &Bound<'_, PyAny>,
        callbacks: Option<Py<PyAny>>,
        model: Option<Py<PyAny>>,
        world: Option<Py<PyAny>>,
        sample_weight: Option<&Bound<'_, PyAny>>,
        val_sample_weight: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let world = world_of(py, world)?;
        let (xs, ys) = (sources(&xs, "x")?, Source::new(y, "y")?);
        let xb: Vec<_> = xs.iter().map(|s| s.batches()).collect();
        let yb = ys.batches();
        let ws = sample_weight.map(|w| Source::new(w, "sample_weight")).transpose()?;
        let wb = ws.as_ref().map(|s| s.batches());
        let vws = val_sample_weight.map(|w| Source::new(w, "validation sample_weight")).transpose()?;
        let vwb = vws.as_ref().map(|s| s.batches());
        let vxs = val_xs.map(|v| sources(&v, "validation_data x")).transpose()?;
        let vys = val_y.map(|v| Source::new(v, "validation_data y")).transpose()?;
        let vxb: Option<Vec<_>> = vxs.as_ref().map(|v| v.iter().map(|s| s.batches()).collect());
        let vyb = vys.as_ref().map(|s| s.batches());
        let mut cfg = FitConfig::new(batch_size, epochs, initial_epoch, shuffle)?;
        cfg.validation_freq = validation_freq_of(validation_freq)?;
        let mut hooks = PyHooks::new(callbacks, model, Phase::Train);
        py.detach(|| {
            let all = Dataset::new(refs(&xb), Some(yb.as_ref()))?.with_weights(wb.as_deref())?;
            let validation = match (&vxb, &vyb) {
                (Some(vx), Some(vy)) => Validation::Data(Dataset::new(refs(vx), Some(vy.as_ref()))?.with_weights(vwb.as_deref())?),
                _ => Validation::Split(validation_split),
            };
            training::fit_all(&self.shared, all, validation, &cfg, &mut hooks, world.as_ref())
        })?;
        Ok(())
    }

    #[pyo3(signature = (xs, y, batch_size, callbacks=None, world=None, sample_weight=None))]
    #[allow(clippy::too_many_arguments)]
    fn evaluate(
        &self,
        py: Python<'_>,
        xs: Vec<Bound<'_, PyAny>>,
        y: &Bound<'_, PyAny>,
        batch_size: usize,
        callbacks: Option<Py<PyAny>>,
        world: Option<Py<PyAny>>,
        sample_weight: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<f64>> {
        let world = world_of(py, world)?;
        let (xs, ys) = (sources(&xs, "x")?, Source::new(y, "y")?);
        let xb: Vec<_> = xs.iter().map(|s| s.batches()).collect();
        let yb = ys.batches();
        let ws = sample_weight.map(|w| Source::new(w, "sample_weight")).transpose()?;
        let wb = ws.as_ref().map(|s| s.batches());
        let mut hooks = PyHooks::new(callbacks, None, Phase::Test);
        let logs = py.detach(|| {
            let data = Dataset::new(refs(&xb), Some(yb.as_ref()))?.with_weights(wb.as_deref())?;
            training::evaluate(&self.shared, &data, batch_size, &mut hooks, world.as_ref())
        })?;
        Ok(values(logs))
    }

    #[pyo3(signature = (xs, batch_size, callbacks=None, world=None))]
    fn predict<'py>(&self, py: Python<'py>, xs: Vec<Bound<'py, PyAny>>, batch_size: usize, callbacks: Option<Py<PyAny>>, world: Option<Py<PyAny>>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let world = world_of(py, world)?;
        let xs = sources(&xs, "x")?;
        let xb: Vec<_> = xs.iter().map(|s| s.batches()).collect();
        let mut hooks = PyHooks::new(callbacks, None, Phase::Predict);
        let (data, shape) = py.detach(|| {
            let data = Dataset::new(refs(&xb), None)?;
            training::predict(&self.shared, &data, batch_size, &mut hooks, world.as_ref())
        })?;
        data.into_pyarray(py).reshape(shape)
    }

    #[pyo3(signature = (xs, y, world=None, sample_weight=None))]
    fn train_on_batch(&self, py: Python<'_>, xs: Vec<Bound<'_, PyAny>>, y: &Bound<'_, PyAny>, world: Option<Py<PyAny>>, sample_weight: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<f64>> {
        let world = world_of(py, world)?;
        let (xs, ys) = (sources(&xs, "x")?, Source::new(y, "y")?);
        let xb: Vec<_> = xs.iter().map(|s| s.batches()).collect();
        let yb = ys.batches();
        let ws = sample_weight.map(|w| Source::new(w, "sample_weight")).transpose()?;
        let wb = ws.as_ref().map(|s| s.batches());
        Ok(values(py.detach(|| {
            let data = Dataset::new(refs(&xb), Some(yb.as_ref()))?.with_weights(wb.as_deref())?;
            training::train_on_batch(&self.shared, &data, world.as_ref())
        })?))
    }

    /// `fit` on batches from a Python adapter; validation from arrays or from another adapter.
    #[pyo3(signature = (adapter, val_xs, val_y, val_adapter, batch_size, epochs, initial_epoch, validation_freq, callbacks=None, model=None, world=None))]
    #[allow(clippy::too_many_arguments)]
    fn fit_feed(
        &self,
        py: Python<'_>,
        adapter: Py<PyAny>,
        val_xs: Option<Vec<Bound<'_, PyAny>>>,
        val_y: Option<&Bound<'_, PyAny>>,
        val_adapter: Option<Py<PyAny>>,
        batch_size: i64,
        epochs: i64,
        initial_epoch: i64,
        validation_freq: &Bound<'_, PyAny>,
        callbacks: Option<Py<PyAny>>,
        model: Option<Py<PyAny>>,
        world: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let world = world_of(py, world)?;
        let vxs = val_xs.map(|v| sources(&v, "validation_data x")).transpose()?;
        let vys = val_y.map(|v| Source::new(v, "validation_data y")).transpose()?;
        let vxb: Option<Vec<_>> = vxs.as_ref().map(|v| v.iter().map(|s| s.batches()).collect());
        let vyb = vys.as_ref().map(|s| s.batches());
        let mut cfg = FitConfig::new(batch_size, epochs, initial_epoch, false)?;
        cfg.validation_freq = validation_freq_of(validation_freq)?;
        let mut hooks = PyHooks::new(callbacks, model, Phase::Train);
        let (mut train, mut val_feed) = (PyFeed::new(adapter), val_adapter.map(PyFeed::new));
        py.detach(|| {
            let validation = match (&vxb, &vyb, val_feed.as_mut()) {
                (Some(vx), Some(vy), _) => FeedValidation::Data(Dataset::new(refs(vx), Some(vy.as_ref()))?),
                (_, _, Some(f)) => FeedValidation::Feed(f),
                _ => FeedValidation::None,
            };
            feed::fit(&self.shared, &mut train, validation, &cfg, &mut hooks, world.as_ref())
        })?;
        Ok(())
    }

    #[pyo3(signature = (adapter, callbacks=None, world=None))]
    fn evaluate_feed(&self, py: Python<'_>, adapter: Py<PyAny>, callbacks: Option<Py<PyAny>>, world: Option<Py<PyAny>>) -> PyResult<Vec<f64>> {
        let world = world_of(py, world)?;
        let mut hooks = PyHooks::new(callbacks, None, Phase::Test);
        let mut data = PyFeed::new(adapter);
        Ok(values(py.detach(|| feed::evaluate(&self.shared, &mut data, &mut hooks, false, world.as_ref()))?))
    }

    #[pyo3(signature = (adapter, callbacks=None, world=None))]
    fn predict_feed<'py>(&self, py: Python<'py>, adapter: Py<PyAny>, callbacks: Option<Py<PyAny>>, world: Option<Py<PyAny>>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let world = world_of(py, world)?;
        let mut hooks = PyHooks::new(callbacks, None, Phase::Predict);
        let mut data = PyFeed::new(adapter);
        let (out, shape) = py.detach(|| feed::predict(&self.shared, &mut data, &mut hooks, world.as_ref()))?;
        out.into_pyarray(py).reshape(shape)
    }
}
