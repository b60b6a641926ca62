//! `ModelCore`: the compiled half of `kandle.models.Sequential`. Each method converts, releases the
//! GIL for the work, and delegates to `crate::model` / `crate::training`.

use super::arrays::Source;
use super::error::parse_json;
use super::hooks::{Phase, PyHooks};
use crate::losses::Loss;
use crate::model::Sequential;
use crate::optimizers::Optimizer;
use crate::training::{self, Dataset, FitConfig, Logs, SharedModel};
use numpy::{IntoPyArray, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn};
use pyo3::prelude::*;

/// What `layer_info` returns to Python.
type LayerInfo = (String, String, Vec<usize>, Vec<usize>, usize, String);

#[pyclass(frozen, module = "kandle._kandle")]
pub struct ModelCore {
    shared: SharedModel,
}

fn values(logs: Logs) -> Vec<f64> {
    logs.into_iter().map(|(_, v)| v).collect()
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
    #[new]
    fn new(name: &str, input_shape: Vec<usize>) -> PyResult<Self> {
        Ok(ModelCore { shared: SharedModel::new(Sequential::new(name, &input_shape)?) })
    }

    fn add(&self, class_name: &str, config_json: &str) -> PyResult<()> {
        Ok(self.shared.write().add(class_name, &parse_json(config_json)?)?)
    }

    fn num_layers(&self) -> usize {
        self.shared.read().layers().len()
    }

    /// `(class_name, name, input_shape, output_shape, count_params, config_json)` of layer `i`.
    fn layer_info(&self, i: usize) -> PyResult<LayerInfo> {
        let model = self.shared.read();
        let l = model.layer(i)?;
        let params = l.weights().iter().map(|w| w.elem_count()).sum();
        Ok((
            l.class_name().into(),
            l.name().into(),
            l.input_shape().to_vec(),
            l.output_shape().to_vec(),
            params,
            l.config().to_string(),
        ))
    }

    fn layer_get_weights<'py>(&self, py: Python<'py>, i: usize) -> PyResult<Vec<Bound<'py, PyArrayDyn<f32>>>> {
        let weights = self.shared.read().layer_weights(i)?;
        weights
            .into_iter()
            .map(|(data, shape)| data.into_pyarray(py).reshape(shape))
            .collect()
    }

    /// Arrays must already be float32 (the Python side converts); shapes are checked here.
    fn layer_set_weights(&self, i: usize, arrays: Vec<PyReadonlyArrayDyn<'_, f32>>) -> PyResult<()> {
        let values: Vec<(Vec<f32>, Vec<usize>)> =
            arrays.iter().map(|a| (a.as_array().iter().copied().collect(), a.as_array().shape().to_vec())).collect();
        Ok(self.shared.write().set_layer_weights(i, &values)?)
    }

    fn count_params(&self) -> usize {
        self.shared.read().count_params()
    }

    fn input_shape(&self) -> Vec<usize> {
        self.shared.read().input_shape().to_vec()
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
        self.shared.read().compiled().map(|c| c.optimizer.learning_rate)
    }

    #[setter]
    fn set_learning_rate(&self, lr: f64) -> PyResult<()> {
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(pyo3::exceptions::PyValueError::new_err(format!("learning_rate must be a non-negative number, got {lr}")));
        }
        if let Some(c) = self.shared.write().compiled_mut() {
            c.optimizer.learning_rate = lr;
        }
        Ok(())
    }

    #[getter]
    fn iterations(&self) -> u64 {
        self.shared.read().compiled().map(|c| c.optimizer.iterations).unwrap_or(0)
    }

    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (x, y, val_x, val_y, validation_split, batch_size, epochs, initial_epoch, shuffle, callbacks, model))]
    fn fit(
        &self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        y: &Bound<'_, PyAny>,
        val_x: Option<&Bound<'_, PyAny>>,
        val_y: Option<&Bound<'_, PyAny>>,
        validation_split: f64,
        batch_size: usize,
        epochs: usize,
        initial_epoch: usize,
        shuffle: bool,
        callbacks: Option<Py<PyAny>>,
        model: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let (xs, ys) = (Source::new(x, "x")?, Source::new(y, "y")?);
        let (xb, yb) = (xs.batches(), ys.batches());
        let vxs = val_x.map(|v| Source::new(v, "validation_data x")).transpose()?;
        let vys = val_y.map(|v| Source::new(v, "validation_data y")).transpose()?;
        let (vxb, vyb) = (vxs.as_ref().map(|s| s.batches()), vys.as_ref().map(|s| s.batches()));
        let cfg = FitConfig { batch_size, epochs, initial_epoch, shuffle };
        let mut hooks = PyHooks::new(callbacks, model, Phase::Train);
        py.detach(|| {
            let all = Dataset::new(xb.as_ref(), Some(yb.as_ref()))?;
            let (train, mut val) = match validation_split > 0.0 {
                true => {
                    let (t, v) = all.split(validation_split)?;
                    (t, Some(v))
                }
                false => (all, None),
            };
            if let (Some(vx), Some(vy)) = (&vxb, &vyb) {
                val = Some(Dataset::new(vx.as_ref(), Some(vy.as_ref()))?);
            }
            training::fit(&self.shared, &train, val.as_ref(), &cfg, &mut hooks)
        })?;
        Ok(())
    }

    #[pyo3(signature = (x, y, batch_size, callbacks=None))]
    fn evaluate(&self, py: Python<'_>, x: &Bound<'_, PyAny>, y: &Bound<'_, PyAny>, batch_size: usize, callbacks: Option<Py<PyAny>>) -> PyResult<Vec<f64>> {
        let (xs, ys) = (Source::new(x, "x")?, Source::new(y, "y")?);
        let (xb, yb) = (xs.batches(), ys.batches());
        let mut hooks = PyHooks::new(callbacks, None, Phase::Test);
        let logs = py.detach(|| {
            let data = Dataset::new(xb.as_ref(), Some(yb.as_ref()))?;
            training::evaluate(&self.shared, &data, batch_size, &mut hooks)
        })?;
        Ok(values(logs))
    }

    #[pyo3(signature = (x, batch_size, callbacks=None))]
    fn predict<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>, batch_size: usize, callbacks: Option<Py<PyAny>>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let xs = Source::new(x, "x")?;
        let xb = xs.batches();
        let mut hooks = PyHooks::new(callbacks, None, Phase::Predict);
        let (data, shape) = py.detach(|| training::predict(&self.shared, xb.as_ref(), batch_size, &mut hooks))?;
        data.into_pyarray(py).reshape(shape)
    }

    fn train_on_batch(&self, py: Python<'_>, x: &Bound<'_, PyAny>, y: &Bound<'_, PyAny>) -> PyResult<Vec<f64>> {
        let (xs, ys) = (Source::new(x, "x")?, Source::new(y, "y")?);
        let (xb, yb) = (xs.batches(), ys.batches());
        Ok(values(py.detach(|| training::train_on_batch(&self.shared, xb.as_ref(), yb.as_ref()))?))
    }
}
