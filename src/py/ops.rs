//! `kandle.ops` in the binding: the op names, one op's symbolic output (what Python records) and
//! one op evaluated on NumPy arrays (eager calls). Arrays arrive as float32, int64 or bool.

use super::error::parse_json;
use candle_core::{DType, Device, Tensor};
use numpy::{IntoPyArray, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

/// Every op name the core records and evaluates.
#[pyfunction]
pub fn op_names() -> Vec<&'static str> {
    crate::symbolic::ops::names()
}

/// The symbolic output (`{"shape", "dtype"}` as JSON) of one op on arguments of these symbolic
/// shapes; the op's ValueError, naming `who`, when they do not fit.
#[pyfunction]
pub fn op_infer(name: &str, attrs_json: &str, args_json: &str, who: &str) -> PyResult<String> {
    let attrs = parse_json(attrs_json)?;
    let args = parse_json(args_json)?;
    let syms = args
        .as_array()
        .map(|a| a.iter().map(|s| crate::symbolic::Sym::from_json(s, who)).collect::<crate::Result<Vec<_>>>())
        .unwrap_or_else(|| Ok(Vec::new()))?;
    Ok(crate::symbolic::infer_json(name, &attrs, &syms, who)?.to_json().to_string())
}

fn to_tensor(obj: &Bound<'_, PyAny>) -> PyResult<Tensor> {
    let err = |e: candle_core::Error| PyErr::from(crate::Error::from(e));
    if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'_, f32>>() {
        let v = a.as_array();
        return Tensor::from_vec(v.iter().copied().collect::<Vec<_>>(), v.shape(), &Device::Cpu).map_err(err);
    }
    if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'_, i64>>() {
        let v = a.as_array();
        return Tensor::from_vec(v.iter().copied().collect::<Vec<_>>(), v.shape(), &Device::Cpu).map_err(err);
    }
    if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'_, bool>>() {
        let v = a.as_array();
        return Tensor::from_vec(v.iter().map(|&b| u8::from(b)).collect::<Vec<_>>(), v.shape(), &Device::Cpu).map_err(err);
    }
    let shown = obj.cast::<numpy::PyUntypedArray>().map(|a| a.dtype().to_string()).unwrap_or_else(|_| obj.get_type().to_string());
    Err(PyTypeError::new_err(format!("kandle.ops computes on float32, int64 and bool arrays, got {shown}")))
}

/// One op on concrete arrays, computed by the same code a recorded graph runs.
#[pyfunction]
pub fn op_eval<'py>(py: Python<'py>, name: &str, attrs_json: &str, args: Vec<Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyAny>> {
    let attrs = parse_json(attrs_json)?;
    let tensors = args.iter().map(to_tensor).collect::<PyResult<Vec<_>>>()?;
    let y = py.detach(|| crate::symbolic::eval_eager(name, &attrs, &tensors))?;
    let shape = y.dims().to_vec();
    let flat = y.flatten_all().map_err(crate::Error::from)?;
    let err = |e: candle_core::Error| PyErr::from(crate::Error::from(e));
    Ok(match y.dtype() {
        DType::U8 => flat.to_vec1::<u8>().map_err(err)?.into_iter().map(|b| b != 0).collect::<Vec<bool>>().into_pyarray(py).reshape(shape)?.into_any(),
        DType::I64 => flat.to_vec1::<i64>().map_err(err)?.into_pyarray(py).reshape(shape)?.into_any(),
        _ => flat.to_dtype(DType::F32).and_then(|f| f.to_vec1::<f32>()).map_err(err)?.into_pyarray(py).reshape(shape)?.into_any(),
    })
}
