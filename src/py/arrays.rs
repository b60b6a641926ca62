//! NumPy arrays of any real dtype and layout, borrowed (never copied) as batch sources.

use crate::data::{ArraySource, BatchSource};
use numpy::{PyArrayDescrMethods, PyReadonlyArrayDyn, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

macro_rules! sources {
    ($($variant:ident => $t:ty),*) => {
        /// A read-only borrow of a NumPy array, by element type.
        pub enum Source<'py> { $($variant(PyReadonlyArrayDyn<'py, $t>)),* }

        impl<'py> Source<'py> {
            pub fn new(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Self> {
                let arr = obj.cast::<PyUntypedArray>().map_err(|_| {
                    PyTypeError::new_err(format!("`{what}` must be a NumPy array, got {}", obj.get_type()))
                })?;
                let dtype = arr.dtype();
                $(if dtype.is_equiv_to(&numpy::dtype::<$t>(obj.py())) {
                    return Ok(Source::$variant(obj.extract()?));
                })*
                Err(PyTypeError::new_err(format!(
                    "`{what}` has dtype {dtype}, which kandle cannot train on: pass an array of numbers \
                     (float32, float64, int or uint types)"
                )))
            }

            /// The array as a batch source; borrows, so it can cross `py.detach`.
            pub fn batches(&self) -> Box<dyn BatchSource + '_> {
                match self { $(Source::$variant(a) => Box::new(ArraySource::new(a.as_array()))),* }
            }
        }
    };
}

sources!(F32 => f32, F64 => f64, U8 => u8, U16 => u16, U32 => u32, U64 => u64,
         I8 => i8, I16 => i16, I32 => i32, I64 => i64);

/// A float32 array as a candle tensor (small arrays: used by the functional helpers, not by fit).
pub fn tensor(a: &PyReadonlyArrayDyn<'_, f32>) -> PyResult<candle_core::Tensor> {
    let view = a.as_array();
    let data: Vec<f32> = view.iter().copied().collect();
    candle_core::Tensor::from_vec(data, view.shape(), &candle_core::Device::Cpu).map_err(|e| crate::Error::from(e).into())
}

pub fn to_numpy<'py>(py: Python<'py>, t: &candle_core::Tensor) -> PyResult<Bound<'py, numpy::PyArrayDyn<f32>>> {
    use numpy::{IntoPyArray, PyArrayMethods};
    let shape = t.dims().to_vec();
    let data = t.flatten_all().and_then(|f| f.to_vec1::<f32>()).map_err(crate::Error::from)?;
    data.into_pyarray(py).reshape(shape)
}
