//! Symbolic shapes of recorded tensors (a dimension is `None` where it is only known at run time,
//! the batch axis) and the shape helpers the op rules share: NumPy broadcasting, axis arguments.

use crate::{Error, Result};
use candle_core::{DType, Tensor};
use serde_json::{json, Value};

/// The element kinds kandle's ops compute on: float32, int64 (indices, `argmax`) and bool
/// (comparisons), stored by candle as f32, i64 and u8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Float,
    Int,
    Bool,
}

impl Kind {
    pub fn parse(s: &str, who: &str) -> Result<Kind> {
        Ok(match s {
            "float32" | "float" | "float64" | "float16" | "bfloat16" => Kind::Float,
            "int64" | "int32" | "int" | "int16" | "int8" | "uint8" | "uint32" | "uint16" => Kind::Int,
            "bool" => Kind::Bool,
            _ => return crate::value_err!("{who}: kandle does not implement dtype {s:?} yet (float32, int64 and bool are supported)"),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Float => "float32",
            Kind::Int => "int64",
            Kind::Bool => "bool",
        }
    }

    pub fn of(dtype: DType) -> Kind {
        match dtype {
            DType::U8 => Kind::Bool,
            DType::I64 | DType::U32 => Kind::Int,
            _ => Kind::Float,
        }
    }
}

/// A symbolic tensor: shape (`None` = known at run time) and kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sym {
    pub shape: Vec<Option<usize>>,
    pub kind: Kind,
}

impl Sym {
    pub fn new(shape: Vec<Option<usize>>, kind: Kind) -> Self {
        Sym { shape, kind }
    }

    pub fn of(t: &Tensor) -> Self {
        Sym { shape: t.dims().iter().map(|&d| Some(d)).collect(), kind: Kind::of(t.dtype()) }
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn from_json(v: &Value, who: &str) -> Result<Self> {
        let bad = || Error::Value(format!("{who}: bad symbolic tensor {v} in recorded graph"));
        let shape = v.get("shape").and_then(Value::as_array).ok_or_else(bad)?;
        let shape = shape.iter().map(|d| if d.is_null() { Ok(None) } else { d.as_u64().map(|d| Some(d as usize)).ok_or_else(bad) }).collect::<Result<Vec<_>>>()?;
        let kind = Kind::parse(v.get("dtype").and_then(Value::as_str).unwrap_or("float32"), who)?;
        Ok(Sym { shape, kind })
    }

    pub fn to_json(&self) -> Value {
        json!({"shape": self.shape, "dtype": self.kind.name()})
    }
}

/// A shape as Keras prints it: `(None, 3)`.
pub fn show(shape: &[Option<usize>]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.map_or("None".into(), |d| d.to_string())).collect();
    if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    }
}

/// NumPy broadcasting of two shapes, or the error naming `op` and both shapes.
pub fn broadcast(op: &str, a: &[Option<usize>], b: &[Option<usize>]) -> Result<Vec<Option<usize>>> {
    let n = a.len().max(b.len());
    let mut out = vec![None; n];
    for i in 0..n {
        let da = if i + a.len() >= n { a[i + a.len() - n] } else { Some(1) };
        let db = if i + b.len() >= n { b[i + b.len() - n] } else { Some(1) };
        out[i] = match (da, db) {
            (Some(1), d) | (d, Some(1)) => d,
            (Some(x), Some(y)) if x == y => Some(x),
            (Some(_), Some(_)) => return crate::value_err!("{op}: cannot broadcast shapes {} and {}", show(a), show(b)),
            (None, d) | (d, None) => d,
        };
    }
    Ok(out)
}

/// A (possibly negative) axis of a rank-`rank` tensor.
pub fn axis(op: &str, a: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    if a < -r || a >= r {
        return crate::value_err!("{op}: axis {a} is out of bounds for a tensor of rank {rank}");
    }
    Ok(if a < 0 { (a + r) as usize } else { a as usize })
}

/// The `axis` attribute of a reduction: all axes when null; an int or a list otherwise; sorted,
/// without repeats.
pub fn axes(op: &str, attrs: &Value, key: &str, rank: usize) -> Result<Vec<usize>> {
    let v = attrs.get(key).unwrap_or(&Value::Null);
    let mut out = match v {
        Value::Null => (0..rank).collect(),
        Value::Number(_) => vec![axis(op, v.as_i64().unwrap_or(0), rank)?],
        Value::Array(list) => list.iter().map(|a| axis(op, a.as_i64().unwrap_or(i64::MAX), rank)).collect::<Result<Vec<_>>>()?,
        _ => return crate::value_err!("{op}: `{key}` must be an int, a list of ints or None, got {v}"),
    };
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// An integer attribute.
pub fn int(op: &str, attrs: &Value, key: &str) -> Result<i64> {
    attrs.get(key).and_then(Value::as_i64).ok_or_else(|| Error::Value(format!("{op}: `{key}` must be an integer, got {}", attrs.get(key).unwrap_or(&Value::Null))))
}

/// A list-of-integers attribute.
pub fn ints(op: &str, attrs: &Value, key: &str) -> Result<Vec<i64>> {
    let v = attrs.get(key).unwrap_or(&Value::Null);
    let bad = || Error::Value(format!("{op}: `{key}` must be a list of integers, got {v}"));
    v.as_array().ok_or_else(bad)?.iter().map(|x| x.as_i64().ok_or_else(bad)).collect()
}

/// A boolean attribute with a default.
pub fn flag(attrs: &Value, key: &str, default: bool) -> bool {
    attrs.get(key).and_then(Value::as_bool).unwrap_or(default)
}

/// A float attribute with a default.
pub fn float(attrs: &Value, key: &str, default: f64) -> f64 {
    attrs.get(key).and_then(Value::as_f64).unwrap_or(default)
}

/// The shape with `axes` removed, or set to 1 when `keepdims`.
pub fn reduced(shape: &[Option<usize>], axes: &[usize], keepdims: bool) -> Vec<Option<usize>> {
    shape.iter().enumerate().filter_map(|(i, &d)| if axes.contains(&i) { keepdims.then_some(Some(1)) } else { Some(d) }).collect()
}

/// The concrete shape (every dimension known), for runtime use.
pub fn known(shape: &[Option<usize>]) -> Option<Vec<usize>> {
    shape.iter().copied().collect()
}
