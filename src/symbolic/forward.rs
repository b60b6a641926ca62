//! The forwards of the ops in [`super::ops::OPS`] that need more than a line, as candle operations
//! (so candle's autograd is their backward), and the dtype promotion they share.

use super::rules::pad_widths;
use super::shape::{self, axes, flag, float, Kind};
use crate::Result;
use candle_core::{DType, Tensor, D};
use serde_json::Value;

/// A float tensor: float32 unless it already is a float (the gradient checks run in float64).
pub(crate) fn to_float(t: &Tensor) -> candle_core::Result<Tensor> {
    if t.dtype().is_float() {
        Ok(t.clone())
    } else {
        t.to_dtype(DType::F32)
    }
}

pub(super) fn as_bool(t: &Tensor) -> Result<Tensor> {
    Ok(if t.dtype() == DType::U8 { t.clone() } else { t.ne(0f64)? })
}

pub(super) fn cast(t: &Tensor, kind: Kind) -> Result<Tensor> {
    Ok(match kind {
        Kind::Bool => as_bool(t)?,
        Kind::Float => to_float(t)?,
        Kind::Int if t.dtype() == DType::F32 => t.to_dtype(DType::I64)?,
        Kind::Int => t.to_dtype(DType::I64)?,
    })
}

/// The two operands in one dtype: float32 when either is (or when `float_out`), else int64.
pub(super) fn promote(x: &Tensor, y: &Tensor, float_out: bool) -> Result<(Tensor, Tensor)> {
    let target = if x.dtype().is_float() && (y.dtype() == x.dtype() || !y.dtype().is_float()) {
        x.dtype()
    } else if y.dtype().is_float() {
        y.dtype()
    } else if float_out {
        DType::F32
    } else if x.dtype() == DType::U8 && y.dtype() == DType::U8 {
        DType::U8
    } else {
        DType::I64
    };
    let conv = |t: &Tensor| if t.dtype() == target { Ok(t.clone()) } else { t.to_dtype(target) };
    Ok((conv(x)?, conv(y)?))
}

pub(super) fn promote_all(xs: &[Tensor]) -> Result<Vec<Tensor>> {
    let target = xs.iter().map(|t| t.dtype()).find(|d| d.is_float()).unwrap_or(xs[0].dtype());
    Ok(xs.iter().map(|t| if t.dtype() == target { Ok(t.clone()) } else { t.to_dtype(target) }).collect::<candle_core::Result<Vec<_>>>()?)
}

pub(super) fn broadcast_dims(shapes: &[&[usize]]) -> Vec<usize> {
    let n = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    (0..n)
        .map(|i| shapes.iter().map(|s| if i + s.len() >= n { s[i + s.len() - n] } else { 1 }).max().unwrap_or(1))
        .collect()
}

pub(super) fn power(attrs: &Value, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let x = to_float(x)?;
    // A constant exponent (recorded as `exponent`): x^2 as a square, any other as powf, both exact
    // for negative bases; a tensor exponent as exp(y log x), as candle defines it.
    if let Some(e) = attrs.get("exponent").and_then(Value::as_f64) {
        return Ok(if e == 2.0 { x.sqr()? } else if e == 1.0 { x } else { x.powf(e)? });
    }
    let y = to_float(y)?;
    Ok(x.broadcast_pow(&y)?)
}

/// NumPy's (and Keras's) rounding: halves go to the even neighbour.
pub(super) fn round_half_even(x: &Tensor) -> candle_core::Result<Tensor> {
    let f = x.floor()?;
    let diff = (x - &f)?;
    let odd = (&f - ((&f * 0.5)?.floor()? * 2.0)?)?.ne(0.0)?;
    let up = diff.gt(0.5)?.maximum(&diff.eq(0.5)?.mul(&odd)?)?;
    up.where_cond(&(&f + 1.0)?, &f)
}

pub(super) fn softplus(x: &Tensor) -> candle_core::Result<Tensor> {
    x.relu()? + x.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?
}

/// Drops the reduced axes unless `keepdims` (`y` was computed with them kept).
pub(super) fn keep(attrs: &Value, x: &Tensor, ax: &[usize], y: Tensor) -> Result<Tensor> {
    if flag(attrs, "keepdims", false) {
        return Ok(y);
    }
    let dims: Vec<usize> = x.dims().iter().enumerate().filter(|(i, _)| !ax.contains(i)).map(|(_, &d)| d).collect();
    Ok(y.reshape(dims)?)
}

pub(super) fn mean_keep(x: &Tensor, ax: &[usize]) -> Result<Tensor> {
    if ax.is_empty() {
        return Ok(x.clone());
    }
    let n: usize = ax.iter().map(|&d| x.dims()[d]).product();
    Ok((x.sum_keepdim(ax.to_vec())? / n as f64)?)
}

pub(super) fn variance_keep(x: &Tensor, ax: &[usize]) -> Result<Tensor> {
    let m = mean_keep(x, ax)?;
    mean_keep(&x.broadcast_sub(&m)?.sqr()?, ax)
}

pub(super) fn extreme(attrs: &Value, x: &Tensor, max: bool) -> Result<Tensor> {
    let x = if x.dtype() == DType::U8 { x.to_dtype(DType::I64)? } else { x.clone() };
    let ax = axes(if max { "max" } else { "min" }, attrs, "axis", x.rank())?;
    let mut y = x.clone();
    for &d in &ax {
        y = if max { y.max_keepdim(d)? } else { y.min_keepdim(d)? };
    }
    keep(attrs, &x, &ax, y)
}

pub(super) fn arg_extreme(attrs: &Value, x: &Tensor, max: bool) -> Result<Tensor> {
    let rank = x.rank();
    let (x, ax) = match attrs.get("axis").and_then(Value::as_i64) {
        None => (x.flatten_all()?, 0),
        Some(a) => (x.clone(), shape::axis("argmax", a, x.rank())?),
    };
    let y = if max { x.argmax_keepdim(ax)? } else { x.argmin_keepdim(ax)? }.to_dtype(DType::I64)?;
    if attrs.get("axis").and_then(Value::as_i64).is_none() {
        return Ok(if flag(attrs, "keepdims", false) { y.reshape(vec![1; rank])? } else { y.reshape(())? });
    }
    keep(attrs, &x, &[ax], y)
}

pub(super) fn take(attrs: &Value, x: &Tensor, idx: &Tensor) -> Result<Tensor> {
    let (x, ax) = match attrs.get("axis").and_then(Value::as_i64) {
        None => (x.flatten_all()?, 0),
        Some(a) => (x.clone(), shape::axis("take", a, x.rank())?),
    };
    let n = x.dim(ax)? as i64;
    let flat = idx.to_dtype(DType::I64)?.flatten_all()?;
    let values = flat.to_vec1::<i64>()?;
    if let Some(bad) = values.iter().find(|&&i| i < -n || i >= n) {
        return crate::value_err!("ops.take: index {bad} is out of bounds for axis {ax} of size {n}");
    }
    let wrapped: Vec<i64> = values.iter().map(|&i| if i < 0 { i + n } else { i }).collect();
    let flat = Tensor::from_vec(wrapped, flat.dims(), x.device())?;
    let y = x.contiguous()?.index_select(&flat, ax)?;
    let mut dims = x.dims()[..ax].to_vec();
    dims.extend(idx.dims());
    dims.extend(&x.dims()[ax + 1..]);
    Ok(y.reshape(dims)?)
}

pub(super) fn pad(attrs: &Value, x: &Tensor) -> Result<Tensor> {
    let w = pad_widths("pad", attrs, x.rank())?;
    let value = float(attrs, "constant_values", 0.0);
    let mut y = x.clone();
    for (ax, &(b, e)) in w.iter().enumerate() {
        if b == 0 && e == 0 {
            continue;
        }
        let mut parts = Vec::new();
        let side = |n: usize, y: &Tensor| -> Result<Tensor> {
            let mut dims = y.dims().to_vec();
            dims[ax] = n;
            Ok(Tensor::full(value, dims, y.device())?.to_dtype(y.dtype())?)
        };
        if b > 0 {
            parts.push(side(b, &y)?);
        }
        parts.push(y.clone());
        if e > 0 {
            parts.push(side(e, &y)?);
        }
        y = Tensor::cat(&parts, ax)?;
    }
    Ok(y)
}

pub(super) fn matmul(x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let (x, y) = promote(x, y, false)?;
    let (x, y) = if !x.dtype().is_float() { (x.to_dtype(DType::F32)?, y.to_dtype(DType::F32)?) } else { (x, y) };
    let (xr, yr) = (x.rank(), y.rank());
    let x2 = if xr == 1 { x.unsqueeze(0)? } else { x };
    let y2 = if yr == 1 { y.unsqueeze(1)? } else { y };
    let mut z = if x2.rank() == 2 && y2.rank() == 2 { x2.contiguous()?.matmul(&y2.contiguous()?)? } else { x2.contiguous()?.broadcast_matmul(&y2.contiguous()?)? };
    if yr == 1 {
        z = z.squeeze(D::Minus1)?;
    }
    if xr == 1 {
        z = z.squeeze(if yr == 1 { z.rank() - 1 } else { z.rank() - 2 })?;
    }
    Ok(z)
}
