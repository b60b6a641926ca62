//! The shape rules of the ops in [`super::ops::OPS`] that need more than a line: symbolic
//! output shapes (the batch axis `None`) and the errors naming the op and the shapes.

use super::shape::{self, axes, broadcast, flag, ints, reduced, show, Kind, Sym};
use crate::{Error, Result};
use serde_json::Value;

type Dims = Vec<Option<usize>>;

pub(super) fn arith_shape(op: &str, a: &[Sym], float_out: bool) -> Result<Sym> {
    let kind = if float_out || a.iter().any(|s| s.kind == Kind::Float) { Kind::Float } else { Kind::Int };
    Ok(Sym::new(broadcast(op, &a[0].shape, &a[1].shape)?, kind))
}

pub(super) fn where_shape(op: &str, _: &Value, a: &[Sym]) -> Result<Sym> {
    let s = broadcast(op, &broadcast(op, &a[0].shape, &a[1].shape)?, &a[2].shape)?;
    Ok(Sym::new(s, if a[1].kind == Kind::Float || a[2].kind == Kind::Float { Kind::Float } else { a[1].kind }))
}

pub(super) fn float_like(_: &str, _: &Value, a: &[Sym]) -> Result<Sym> {
    Ok(Sym::new(a[0].shape.clone(), Kind::Float))
}

pub(super) fn reduce_shape(op: &str, attrs: &Value, a: &[Sym], kind: Option<Kind>) -> Result<Sym> {
    let ax = axes(op, attrs, "axis", a[0].rank())?;
    let k = kind.unwrap_or(if a[0].kind == Kind::Bool { Kind::Int } else { a[0].kind });
    Ok(Sym::new(reduced(&a[0].shape, &ax, flag(attrs, "keepdims", false)), k))
}

pub(super) fn arg_shape(op: &str, attrs: &Value, a: &[Sym]) -> Result<Sym> {
    match attrs.get("axis").and_then(Value::as_i64) {
        None => Ok(Sym::new(if flag(attrs, "keepdims", false) { vec![Some(1); a[0].rank()] } else { Vec::new() }, Kind::Int)),
        Some(ax) => {
            let ax = shape::axis(op, ax, a[0].rank())?;
            Ok(Sym::new(reduced(&a[0].shape, &[ax], flag(attrs, "keepdims", false)), Kind::Int))
        }
    }
}

pub(super) fn target_kind(op: &str, attrs: &Value) -> Result<Kind> {
    Kind::parse(attrs.get("dtype").and_then(Value::as_str).unwrap_or("float32"), op)
}

pub(super) fn reshape_shape(op: &str, attrs: &Value, a: &[Sym]) -> Result<Sym> {
    let target = ints(op, attrs, "newshape")?;
    if target.iter().filter(|&&d| d < 0).count() > 1 || target.iter().any(|&d| d < -1) {
        return crate::value_err!("{op}: can only specify one unknown dimension (-1) in {target:?}");
    }
    let known_in = shape::known(&a[0].shape);
    let fixed: usize = target.iter().filter(|&&d| d >= 0).map(|&d| d as usize).product();
    let dims: Dims = target
        .iter()
        .map(|&d| {
            if d >= 0 {
                Ok(Some(d as usize))
            } else {
                match &known_in {
                    Some(s) if fixed > 0 && s.iter().product::<usize>() % fixed == 0 => Ok(Some(s.iter().product::<usize>() / fixed)),
                    Some(_) => crate::value_err!("{op}: cannot reshape a tensor of shape {} into {target:?}", show(&a[0].shape)),
                    None => Ok(None),
                }
            }
        })
        .collect::<Result<_>>()?;
    if let Some(s) = known_in {
        if !target.contains(&-1) && s.iter().product::<usize>() != fixed {
            return crate::value_err!("{op}: cannot reshape a tensor of shape {} into {target:?}", show(&a[0].shape));
        }
    } else if !target.contains(&-1) {
        return crate::value_err!("{op}: the input shape {} has an unknown dimension (the batch axis), so the new shape {target:?} must keep it as -1", show(&a[0].shape));
    }
    Ok(Sym::new(dims, a[0].kind))
}

pub(super) fn perm(op: &str, attrs: &Value, rank: usize) -> Result<Vec<usize>> {
    match attrs.get("axes") {
        None | Some(Value::Null) => Ok((0..rank).rev().collect()),
        Some(_) => {
            let p = ints(op, attrs, "axes")?.iter().map(|&i| shape::axis(op, i, rank)).collect::<Result<Vec<_>>>()?;
            let mut sorted = p.clone();
            sorted.sort_unstable();
            if sorted != (0..rank).collect::<Vec<_>>() {
                return crate::value_err!("{op}: axes {p:?} are not a permutation of the {rank} axes");
            }
            Ok(p)
        }
    }
}

pub(super) fn squeeze_axes(op: &str, attrs: &Value, s: &[Option<usize>]) -> Result<Vec<usize>> {
    match attrs.get("axis") {
        None | Some(Value::Null) => Ok(s.iter().enumerate().filter(|(_, &d)| d == Some(1)).map(|(i, _)| i).collect()),
        Some(_) => {
            let ax = axes(op, attrs, "axis", s.len())?;
            if let Some(&bad) = ax.iter().find(|&&i| s[i] != Some(1)) {
                return crate::value_err!("{op}: cannot squeeze axis {bad} of shape {}: it is not of size 1", show(s));
            }
            Ok(ax)
        }
    }
}

pub(super) fn concat_shape(op: &str, attrs: &Value, a: &[Sym], stack: bool) -> Result<Sym> {
    let rank = a[0].rank();
    let ax = shape::axis(op, attrs.get("axis").and_then(Value::as_i64).unwrap_or(0), rank + stack as usize)?;
    let kind = if a.iter().any(|s| s.kind == Kind::Float) { Kind::Float } else { a[0].kind };
    let mut out = a[0].shape.clone();
    for s in &a[1..] {
        let mismatch = s.rank() != rank || s.shape.iter().zip(&out).enumerate().any(|(i, (x, y))| (stack || i != ax) && x.is_some() && y.is_some() && x != y);
        if mismatch {
            let what = if stack { "all input tensors must have the same shape" } else { "all input dimensions except the concatenation axis must match" };
            return crate::value_err!("{op}: {what}; got shapes {} and {}", show(&a[0].shape), show(&s.shape));
        }
        for (i, d) in s.shape.iter().enumerate() {
            if out[i].is_none() && (stack || i != ax) {
                out[i] = *d;
            }
        }
        if !stack {
            out[ax] = match (out[ax], s.shape[ax]) {
                (Some(x), Some(y)) => Some(x + y),
                _ => None,
            };
        }
    }
    if stack {
        out.insert(ax, Some(a.len()));
    }
    Ok(Sym::new(out, kind))
}

pub(super) fn slice_shape(op: &str, attrs: &Value, a: &[Sym]) -> Result<Sym> {
    let (start, size) = (ints(op, attrs, "start_indices")?, ints(op, attrs, "shape")?);
    if start.len() != a[0].rank() || size.len() != a[0].rank() {
        return crate::value_err!("{op}: start_indices {start:?} and shape {size:?} must have one entry per axis of {}", show(&a[0].shape));
    }
    let mut out = Vec::new();
    for ((&s, &n), &d) in start.iter().zip(&size).zip(&a[0].shape) {
        let fits = s >= 0 && n >= -1 && d.is_none_or(|d| s as usize + n.max(0) as usize <= d && (n >= 0 || (s as usize) < d));
        if !fits {
            return crate::value_err!("{op}: start_indices {start:?} with shape {size:?} do not fit in a tensor of shape {}", show(&a[0].shape));
        }
        out.push(if n >= 0 { Some(n as usize) } else { d.map(|d| d - s as usize) });
    }
    Ok(Sym::new(out, a[0].kind))
}

pub(super) fn take_shape(op: &str, attrs: &Value, a: &[Sym]) -> Result<Sym> {
    if a[1].kind == Kind::Float {
        return crate::value_err!("{op}: indices must be integers, got float32 indices");
    }
    match attrs.get("axis").and_then(Value::as_i64) {
        None => Ok(Sym::new(a[1].shape.clone(), a[0].kind)),
        Some(ax) => {
            let ax = shape::axis(op, ax, a[0].rank())?;
            let mut s = a[0].shape[..ax].to_vec();
            s.extend(&a[1].shape);
            s.extend(&a[0].shape[ax + 1..]);
            Ok(Sym::new(s, a[0].kind))
        }
    }
}

pub(super) fn pad_widths(op: &str, attrs: &Value, rank: usize) -> Result<Vec<(usize, usize)>> {
    let v = attrs.get("pad_width").and_then(Value::as_array);
    let bad = || Error::Value(format!("{op}: pad_width must be one [before, after] pair of non-negative ints per axis ({rank} axes)"));
    let rows = v.ok_or_else(bad)?;
    if rows.len() != rank {
        return Err(bad());
    }
    rows.iter()
        .map(|r| {
            let p = r.as_array().ok_or_else(bad)?;
            match (p.first().and_then(Value::as_u64), p.get(1).and_then(Value::as_u64), p.len()) {
                (Some(b), Some(e), 2) => Ok((b as usize, e as usize)),
                _ => Err(bad()),
            }
        })
        .collect()
}

pub(super) fn pad_shape(op: &str, attrs: &Value, a: &[Sym]) -> Result<Sym> {
    let w = pad_widths(op, attrs, a[0].rank())?;
    Ok(Sym::new(a[0].shape.iter().zip(&w).map(|(d, (b, e))| d.map(|d| d + b + e)).collect(), a[0].kind))
}

pub(super) fn matmul_shape(op: &str, _: &Value, a: &[Sym]) -> Result<Sym> {
    let (x, y) = (&a[0].shape, &a[1].shape);
    if x.is_empty() || y.is_empty() {
        return crate::value_err!("{op}: operands must have at least one dimension, got shapes {} and {}", show(x), show(y));
    }
    let x2: Dims = if x.len() == 1 { vec![Some(1), x[0]] } else { x.clone() };
    let y2: Dims = if y.len() == 1 { vec![y[0], Some(1)] } else { y.clone() };
    let (k1, k2) = (x2[x2.len() - 1], y2[y2.len() - 2]);
    if let (Some(p), Some(q)) = (k1, k2) {
        if p != q {
            return crate::value_err!("{op}: incompatible shapes {} and {} (inner dimensions {p} and {q})", show(x), show(y));
        }
    }
    let mut out = broadcast(op, &x2[..x2.len() - 2], &y2[..y2.len() - 2])?;
    if x.len() > 1 {
        out.push(x2[x2.len() - 2]);
    }
    if y.len() > 1 {
        out.push(y2[y2.len() - 1]);
    }
    Ok(Sym::new(out, Kind::Float))
}

pub(super) fn xent_shape(op: &str, attrs: &Value, a: &[Sym]) -> Result<Sym> {
    let s = broadcast(op, &a[0].shape, &a[1].shape)?;
    if a[0].shape.len() != a[1].shape.len() {
        return crate::value_err!("{op}: target and output must have the same rank, got shapes {} and {}", show(&a[0].shape), show(&a[1].shape));
    }
    let ax = shape::axis(op, attrs.get("axis").and_then(Value::as_i64).unwrap_or(-1), s.len())?;
    Ok(Sym::new(reduced(&s, &[ax], false), Kind::Float))
}

