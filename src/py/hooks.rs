//! Hooks that forward the core loops' events to the Python `CallbackList`, take the GIL only for
//! that, and check for Ctrl-C once per batch.

use super::error::external;
use crate::training::{Control, Hooks, Logs};
use crate::Result;
use pyo3::prelude::*;
use pyo3::types::PyDict;

#[derive(Clone, Copy)]
pub enum Phase {
    Train,
    Test,
    Predict,
}

pub struct PyHooks {
    /// A `kandle.callbacks.CallbackList`, or None (no callbacks, but Ctrl-C is still noticed).
    callbacks: Option<Py<PyAny>>,
    /// The Python model, whose `stop_training` any callback may set.
    model: Option<Py<PyAny>>,
    phase: Phase,
}

impl PyHooks {
    pub fn new(callbacks: Option<Py<PyAny>>, model: Option<Py<PyAny>>, phase: Phase) -> Self {
        PyHooks { callbacks, model, phase }
    }

    fn call(&self, method: &str, args: impl for<'py> FnOnce(Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyTuple>>) -> Result<()> {
        Python::attach(|py| -> PyResult<()> {
            if let Some(cb) = &self.callbacks {
                cb.bind(py).call_method1(method, args(py)?)?;
            }
            py.check_signals()
        })
        .map_err(external)
    }

    fn control(&self) -> Result<Control> {
        Python::attach(|py| -> PyResult<Control> {
            let stop = match &self.model {
                Some(m) => m.bind(py).getattr("stop_training")?.is_truthy()?,
                None => false,
            };
            Ok(if stop { Control::Stop } else { Control::Continue })
        })
        .map_err(external)
    }

    fn prefix(&self) -> &'static str {
        match self.phase {
            Phase::Train => "on_train_batch",
            Phase::Test => "on_test_batch",
            Phase::Predict => "on_predict_batch",
        }
    }
}

fn logs_dict<'py>(py: Python<'py>, batch: Option<(usize, usize)>, logs: &Logs) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    if let Some((b, size)) = batch {
        d.set_item("batch", b)?;
        d.set_item("size", size)?;
    }
    for (k, v) in logs {
        d.set_item(k, *v)?;
    }
    Ok(d)
}

impl Hooks for PyHooks {
    fn epoch_begin(&mut self, epoch: usize) -> Result<()> {
        self.call("on_epoch_begin", |py| (epoch, PyDict::new(py)).into_pyobject(py))
    }

    fn batch_begin(&mut self, batch: usize) -> Result<()> {
        let method = format!("{}_begin", self.prefix());
        self.call(&method, |py| (batch, logs_dict(py, Some((batch, 0)), &Vec::new())?).into_pyobject(py))
    }

    fn batch_end(&mut self, batch: usize, size: usize, logs: &Logs) -> Result<Control> {
        let method = format!("{}_end", self.prefix());
        self.call(&method, |py| (batch, logs_dict(py, Some((batch, size)), logs)?).into_pyobject(py))?;
        self.control()
    }

    fn epoch_end(&mut self, epoch: usize, logs: &Logs) -> Result<Control> {
        self.call("on_epoch_end", |py| (epoch, logs_dict(py, None, logs)?).into_pyobject(py))?;
        self.control()
    }

    fn poll(&mut self) -> Result<()> {
        Python::attach(|py| py.check_signals()).map_err(external)
    }
}
