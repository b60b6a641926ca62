//! Reading Keras-style layer configs: each accessor validates and says which layer and argument was
//! wrong, so `Conv2D(filters=0)` fails with a message a Keras user recognises.

use crate::activations::Activation;
use crate::initializers::Initializer;
use crate::ops::bf16::Precision;
use crate::{Error, Result};
use serde_json::{Map, Value};

/// A dtype policy kandle implements (Keras 3's `DTypePolicy`): the dtype layers compute in, the
/// dtype of their variables, and what that means for their products.
pub struct DtypePolicy {
    pub name: &'static str,
    pub compute_dtype: &'static str,
    pub variable_dtype: &'static str,
    pub precision: Precision,
}

/// The policies kandle implements; both sides read this list.
pub const DTYPE_POLICIES: [DtypePolicy; 2] = [
    DtypePolicy { name: "float32", compute_dtype: "float32", variable_dtype: "float32", precision: Precision::Full },
    DtypePolicy { name: "mixed_bfloat16", compute_dtype: "bfloat16", variable_dtype: "float32", precision: Precision::Bf16 },
];

/// The policy of this name, or the error saying which ones kandle has.
pub fn dtype_policy(name: &str) -> Result<&'static DtypePolicy> {
    DTYPE_POLICIES.iter().find(|p| p.name == name).ok_or_else(|| {
        let known: Vec<String> = DTYPE_POLICIES.iter().map(|p| format!("'{}'", p.name)).collect();
        Error::Value(format!("kandle does not implement the dtype policy '{name}' yet (it has {})", known.join(" and ")))
    })
}

pub struct Cfg<'a> {
    class: &'a str,
    map: &'a Map<String, Value>,
}

impl<'a> Cfg<'a> {
    pub fn new(class: &'a str, v: &'a Value) -> Result<Self> {
        match v.as_object() {
            Some(map) => Ok(Cfg { class, map }),
            None => Err(Error::Value(format!("{class}: config must be a JSON object, got {v}"))),
        }
    }

    pub fn name(&self) -> &str {
        self.map.get("name").and_then(Value::as_str).unwrap_or("")
    }

    fn err(&self, key: &str, what: &str, got: &Value) -> Error {
        Error::Value(format!("{}: `{key}` must be {what}, got {got}", self.class))
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// The whole config as a JSON object.
    pub fn value(&self) -> Value {
        Value::Object(self.map.clone())
    }

    /// The raw value of an argument, `None` when absent or null.
    pub fn raw(&self, key: &str) -> Option<&Value> {
        self.get(key)
    }

    /// A signed integer argument (an axis).
    pub fn int(&self, key: &str, default: i64) -> Result<i64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_i64().ok_or_else(|| self.err(key, "an integer", v)),
        }
    }

    pub fn positive(&self, key: &str) -> Result<usize> {
        match self.get(key) {
            Some(v) => match v.as_u64() {
                Some(n) if n > 0 => Ok(n as usize),
                _ => Err(self.err(key, "a positive integer", v)),
            },
            None => Err(Error::Value(format!("{}: missing required argument `{key}`", self.class))),
        }
    }

    /// An int or a pair of ints, like Keras's `kernel_size=3` or `(3, 3)`; `None` when absent.
    pub fn pair(&self, key: &str) -> Result<Option<(usize, usize)>> {
        let Some(v) = self.get(key) else { return Ok(None) };
        let bad = || self.err(key, "a positive integer or a tuple of 2 positive integers", v);
        let one = |x: &Value| x.as_u64().filter(|n| *n > 0).map(|n| n as usize);
        match v {
            Value::Array(a) if a.len() == 2 => Ok(Some((one(&a[0]).ok_or_else(bad)?, one(&a[1]).ok_or_else(bad)?))),
            Value::Array(_) => Err(bad()),
            x => one(x).map(|n| Some((n, n))).ok_or_else(bad),
        }
    }

    pub fn required_pair(&self, key: &str) -> Result<(usize, usize)> {
        self.pair(key)?.ok_or_else(|| Error::Value(format!("{}: missing required argument `{key}`", self.class)))
    }

    pub fn float(&self, key: &str, default: f64) -> Result<f64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| self.err(key, "a number", v)),
        }
    }

    pub fn boolean(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.err(key, "a boolean", v)),
        }
    }

    pub fn optional_u64(&self, key: &str) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| self.err(key, "a non-negative integer", v)),
        }
    }

    /// `padding`: 'valid' or 'same' (case-insensitive, as Keras); true means 'same'.
    pub fn padding(&self) -> Result<bool> {
        match self.get("padding") {
            None => Ok(false),
            Some(v) => match v.as_str().map(str::to_lowercase).as_deref() {
                Some("valid") => Ok(false),
                Some("same") => Ok(true),
                _ => Err(self.err("padding", "one of 'valid', 'same'", v)),
            },
        }
    }

    pub fn activation(&self) -> Result<Activation> {
        match self.get("activation") {
            None => Activation::parse(None),
            Some(Value::String(s)) => Activation::parse(Some(s)),
            Some(v) => Err(self.err("activation", "an activation name", v)),
        }
    }

    pub fn initializer(&self, key: &str, default: &str) -> Result<Initializer> {
        match self.get(key) {
            None => Initializer::from_json(&Value::String(default.into())),
            Some(v) => Initializer::from_json(v).map_err(|e| Error::Value(format!("{}: `{key}`: {e}", self.class))),
        }
    }

    /// The layer's dtype policy (Keras 3's `dtype=`: a name or a serialized `DTypePolicy`) as the
    /// precision of its products: 'float32' (the default) or 'mixed_bfloat16' (float32 variables,
    /// bfloat16 products).
    pub fn precision(&self) -> Result<Precision> {
        let Some(v) = self.get("dtype") else { return Ok(Precision::Full) };
        let name = match v {
            Value::String(s) => Some(s.as_str()),
            Value::Object(o) => o.get("config").and_then(|c| c.get("name")).and_then(Value::as_str),
            _ => None,
        };
        match name {
            Some(name) => Ok(dtype_policy(name).map_err(|e| Error::Value(format!("{}: {e}", self.class)))?.precision),
            None => Err(self.err("dtype", "a dtype policy name or a DTypePolicy config", v)),
        }
    }

    /// Keras's data_format argument: only channels_last is implemented, and saying so beats a
    /// silently transposed result.
    pub fn channels_last(&self) -> Result<()> {
        match self.get("data_format").and_then(Value::as_str) {
            None | Some("channels_last") => Ok(()),
            Some(other) => Err(Error::Value(format!(
                "{}: data_format='{other}' is not supported; kandle is channels_last (NHWC) only",
                self.class
            ))),
        }
    }
}
