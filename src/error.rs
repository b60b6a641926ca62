//! The one error type of the core. The Python binding maps each variant to one exception class
//! (`src/py/error.rs`), so messages here are written for a Keras user: they name the layer, what
//! was expected and what was found.

/// Errors raised by the core; `Value`/`Type`/`Runtime` become Python's exceptions of those names,
/// `Io` an `OSError`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Value(String),
    #[error("{0}")]
    Type(String),
    #[error("{0}")]
    Runtime(String),
    /// A file could not be written (Python's `OSError`).
    #[error("{0}")]
    Io(String),
    /// An error raised by candle itself: a bug on our side if it ever escapes, but never a panic.
    #[error("internal tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    /// An error raised by a caller-supplied hook (a Python callback, Ctrl-C); passed through unchanged.
    #[error("{0}")]
    External(Box<dyn std::error::Error + Send + Sync>),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Shorthand for the common `Err(Error::Value(format!(..)))`.
#[macro_export]
macro_rules! value_err {
    ($($arg:tt)*) => { Err($crate::error::Error::Value(format!($($arg)*))) };
}

/// Formats a per-sample shape the way Keras prints it: `(None, 32, 32, 3)`.
pub fn keras_shape(shape: &[usize]) -> String {
    let mut s = String::from("(None");
    for d in shape {
        s.push_str(&format!(", {d}"));
    }
    s.push(')');
    s
}
