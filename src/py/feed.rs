//! A Python batch producer (`kandle.models.data_adapter`'s adapters: `begin(epoch)`, `next()` giving
//! `(list of float32 arrays, float32 array or None, float32 sample weights or None)` or None) as a `crate::feed::Feed`; the GIL is
//! taken for each batch only.

use super::arrays::tensor;
use super::error::external;
use crate::feed::{Batch, Feed};
use crate::Result;
use numpy::PyReadonlyArrayDyn;
use pyo3::prelude::*;

pub struct PyFeed {
    adapter: Py<PyAny>,
}

impl PyFeed {
    pub fn new(adapter: Py<PyAny>) -> Self {
        PyFeed { adapter }
    }
}

impl Feed for PyFeed {
    fn begin(&mut self, epoch: usize) -> Result<()> {
        Python::attach(|py| self.adapter.bind(py).call_method1("begin", (epoch,)).map(|_| ())).map_err(external)
    }

    fn next(&mut self) -> Result<Option<Batch>> {
        Python::attach(|py| -> PyResult<Option<Batch>> {
            let item = self.adapter.bind(py).call_method0("next")?;
            if item.is_none() {
                return Ok(None);
            }
            type Arrays<'py> = (Vec<PyReadonlyArrayDyn<'py, f32>>, Option<PyReadonlyArrayDyn<'py, f32>>, Option<PyReadonlyArrayDyn<'py, f32>>);
            let (xs, y, w): Arrays<'_> = item.extract()?;
            let xs = xs.iter().map(tensor).collect::<PyResult<Vec<_>>>()?;
            let y = y.as_ref().map(tensor).transpose()?;
            let w = w.as_ref().map(tensor).transpose()?;
            py.check_signals()?;
            Ok(Some(Batch { xs, y, w }))
        })
        .map_err(external)
    }
}
