//! A Python process group (`kandle.distribution`'s MPI world: `rank`, `size`, and in-place
//! `allreduce(array)` / `bcast(array)` on float32/float64 arrays) as the core's `World`. The GIL
//! is taken for each collective only; timeouts and MPI itself live on the Python side.

use super::error::external;
use crate::distributed::{Alone, World};
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

impl World for PyWorld {
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
