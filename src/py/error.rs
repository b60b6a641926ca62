//! The one conversion from core errors to Python exceptions.

use crate::Error;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::PyErr;

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        match e {
            Error::Value(m) => PyValueError::new_err(m),
            Error::Type(m) => PyTypeError::new_err(m),
            Error::Runtime(m) => PyRuntimeError::new_err(m),
            Error::Io(m) => PyOSError::new_err(m),
            Error::Candle(e) => PyRuntimeError::new_err(format!("kandle internal error: {e}")),
            Error::External(e) => match e.downcast::<PyErr>() {
                Ok(py) => *py,
                Err(other) => PyRuntimeError::new_err(other.to_string()),
            },
        }
    }
}

/// A Python exception raised inside a hook travels through the core unchanged.
pub fn external(e: PyErr) -> Error {
    Error::External(Box::new(e))
}

pub fn parse_json(s: &str) -> Result<serde_json::Value, PyErr> {
    serde_json::from_str(s).map_err(|e| PyValueError::new_err(format!("invalid config JSON: {e}")))
}
