//! A Python process group (`kandle.distribution`'s MPI world: `rank`, `size`, and in-place
//! `allreduce(array)` / `bcast(array)` on float32/float64 arrays) as the core's `World`. The GIL
//! is taken for each collective only; timeouts and MPI itself live on the Python side.

use super::error::external;
use crate::distributed::{Alone, Pending, World};
use crate::Result;
use numpy::{Element, PyArray1, PyArrayMethods};
use pyo3::prelude::*;

pub struct PyWorld {
    group: Py<PyAny>,
    rank: usize,
    size: usize,
}

/// The world a loop runs in: the distribution's group, or this process alone.
pub fn world_of(py: Python<'_>, group: Option<Py<PyAny>>) -> PyResult<Box<dyn World>> {
    let Some(group) = group else { return Ok(Box::new(Alone)) };
    let (rank, size): (usize, usize) = (group.bind(py).getattr("rank")?.extract()?, group.bind(py).getattr("size")?.extract()?);
    Ok(Box::new(PyWorld { group, rank, size }))
}

impl PyWorld {
    fn collective<T: Element + Copy>(&self, method: &str, data: &mut [T]) -> Result<()> {
        Python::attach(|py| -> PyResult<()> {
            let array = PyArray1::from_slice(py, data);
            self.group.bind(py).call_method1(method, (&array,))?;
            data.copy_from_slice(array.readonly().as_slice()?);
            Ok(())
        })
        .map_err(external)
    }
}

/// A reduction started in Python (`group.start_allreduce(array)` returned `request`).
struct PyPending {
    group: Py<PyAny>,
    array: Py<PyArray1<f32>>,
    request: Py<PyAny>,
}

impl Pending for PyPending {
    fn wait(self: Box<Self>) -> Result<Vec<f32>> {
        Python::attach(|py| -> PyResult<Vec<f32>> {
            self.group.bind(py).call_method1("finish", (self.request.bind(py),))?;
            Ok(self.array.bind(py).readonly().as_slice()?.to_vec())
        })
        .map_err(external)
    }
}

impl World for PyWorld {
    fn allreduce_start(&self, data: Vec<f32>) -> Result<Box<dyn Pending + '_>> {
        Python::attach(|py| -> PyResult<Box<dyn Pending>> {
            // The vector becomes the array's memory (no copy); the sums are read back in `wait`.
            let array = PyArray1::from_vec(py, data);
            let request = self.group.bind(py).call_method1("start_allreduce", (&array,))?.unbind();
            Ok(Box::new(PyPending { group: self.group.clone_ref(py), array: array.unbind(), request }))
        })
        .map_err(external)
    }
    fn progress(&self) -> Result<()> {
        Python::attach(|py| self.group.bind(py).call_method0("progress").map(|_| ())).map_err(external)
    }
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn allreduce_f32(&self, data: &mut [f32]) -> Result<()> {
        self.collective("allreduce", data)
    }
    fn allreduce_f64(&self, data: &mut [f64]) -> Result<()> {
        self.collective("allreduce", data)
    }
    fn broadcast_f32(&self, data: &mut [f32]) -> Result<()> {
        self.collective("bcast", data)
    }
    fn broadcast_f64(&self, data: &mut [f64]) -> Result<()> {
        self.collective("bcast", data)
    }
}
