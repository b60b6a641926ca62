//! `ops.conv`, `ops.max_pool` and `ops.average_pool` on channels-last images (Keras's default
//! layout), computed by candle's NCHW kernels between two transposes; "same" padding as Keras
//! places it (the extra row or column after).

use super::shape::{show, Sym};
use crate::Result;
use candle_core::Tensor;
use serde_json::Value;

/// A 2-D window argument: an int for both axes or a pair.
fn pair(op: &str, attrs: &Value, key: &str, default: Option<(usize, usize)>) -> Result<(usize, usize)> {
    match attrs.get(key) {
        None | Some(Value::Null) => default.ok_or_else(|| crate::Error::Value(format!("{op}: `{key}` is required"))),
        Some(v) => {
            let one = |x: &Value| x.as_u64().filter(|&x| x > 0).map(|x| x as usize);
            let p = match v {
                Value::Array(a) if a.len() == 2 => one(&a[0]).zip(one(&a[1])),
                Value::Array(a) if a.len() == 1 => one(&a[0]).map(|x| (x, x)),
                other => one(other).map(|x| (x, x)),
            };
            p.ok_or_else(|| crate::Error::Value(format!("{op}: `{key}` must be a positive int or a pair of them, got {v}")))
        }
    }
}

fn padding(op: &str, attrs: &Value) -> Result<bool> {
    match attrs.get("padding").and_then(Value::as_str).unwrap_or("valid").to_ascii_lowercase().as_str() {
        "valid" => Ok(false),
        "same" => Ok(true),
        other => crate::value_err!("{op}: `padding` must be 'valid' or 'same', got {other:?}"),
    }
}

fn check_layout(op: &str, attrs: &Value, x: &Sym) -> Result<()> {
    if let Some(f) = attrs.get("data_format").and_then(Value::as_str) {
        if f != "channels_last" {
            return crate::value_err!("{op}: kandle does not implement data_format={f:?} yet (channels_last only)");
        }
    }
    if x.rank() != 4 {
        return crate::value_err!("{op}: kandle implements 2-D images only yet: expected an input of rank 4 (batch, rows, cols, channels), got shape {}", show(&x.shape));
    }
    Ok(())
}

/// Output length and (before, after) padding of one axis.
fn window(n: usize, k: usize, s: usize, d: usize, same: bool) -> (usize, usize, usize) {
    let span = (k - 1) * d + 1;
    if same {
        let out = n.div_ceil(s);
        let total = ((out - 1) * s + span).saturating_sub(n);
        (out, total / 2, total - total / 2)
    } else {
        (if n >= span { (n - span) / s + 1 } else { 0 }, 0, 0)
    }
}

pub fn conv_shape(op: &str, attrs: &Value, a: &[Sym]) -> Result<Sym> {
    check_layout(op, attrs, &a[0])?;
    let (x, k) = (&a[0].shape, &a[1].shape);
    if k.len() != 4 {
        return crate::value_err!("{op}: the kernel must have shape (rows, cols, in_channels, out_channels), got {}", show(k));
    }
    let (s, d, same) = (pair(op, attrs, "strides", Some((1, 1)))?, pair(op, attrs, "dilation_rate", Some((1, 1)))?, padding(op, attrs)?);
    if s.0 != s.1 || d.0 != d.1 {
        return crate::value_err!("{op}: kandle does not implement different strides or dilations per axis yet (got strides {s:?}, dilation_rate {d:?})");
    }
    if let (Some(c), Some(kc)) = (x[3], k[2]) {
        if c != kc {
            return crate::value_err!("{op}: the input has {c} channels but the kernel expects {kc} (input shape {}, kernel shape {})", show(x), show(k));
        }
    }
    let mut out = vec![x[0]];
    for (i, n) in x[1..3].iter().enumerate() {
        let kk = k[i].unwrap_or(1);
        out.push(match n {
            Some(n) => {
                let (o, _, _) = window(*n, kk, s.0, d.0, same);
                if o == 0 {
                    return crate::value_err!("{op}: the kernel {} does not fit in the input {} with padding 'valid'", show(k), show(x));
                }
                Some(o)
            }
            None => None,
        });
    }
    out.push(k[3]);
    Ok(Sym::new(out, super::Kind::Float))
}

pub fn conv(attrs: &Value, x: &Tensor, k: &Tensor) -> Result<Tensor> {
    let (x, k) = (super::forward::to_float(x)?, super::forward::to_float(k)?);
    let (s, d, same) = (pair("conv", attrs, "strides", Some((1, 1)))?, pair("conv", attrs, "dilation_rate", Some((1, 1)))?, padding("conv", attrs)?);
    let (kh, kw) = (k.dim(0)?, k.dim(1)?);
    let (_, bh, ah) = window(x.dim(1)?, kh, s.0, d.0, same);
    let (_, bw, aw) = window(x.dim(2)?, kw, s.0, d.0, same);
    let x = x.permute((0, 3, 1, 2))?.pad_with_zeros(2, bh, ah)?.pad_with_zeros(3, bw, aw)?.contiguous()?;
    let k = k.permute((3, 2, 0, 1))?.contiguous()?;
    Ok(x.conv2d(&k, 0, s.0, d.0, 1)?.permute((0, 2, 3, 1))?)
}

pub fn pool_shape(op: &str, attrs: &Value, a: &[Sym]) -> Result<Sym> {
    check_layout(op, attrs, &a[0])?;
    let k = pair(op, attrs, "pool_size", None)?;
    let s = pair(op, attrs, "strides", Some(k))?;
    if s != k {
        return crate::value_err!("{op}: kandle implements strides equal to pool_size only yet (got pool_size {k:?}, strides {s:?})");
    }
    let same = padding(op, attrs)?;
    let x = &a[0].shape;
    let mut out = vec![x[0]];
    for (n, kk) in [(x[1], k.0), (x[2], k.1)] {
        out.push(n.map(|n| if same { n.div_ceil(kk) } else { n / kk }));
    }
    if out.contains(&Some(0)) {
        return crate::value_err!("{op}: pool_size {k:?} does not fit in the input {} with padding 'valid'", show(x));
    }
    out.push(x[3]);
    Ok(Sym::new(out, super::Kind::Float))
}

/// Pools with strides equal to the window as a reshape to `(n, rows, k, cols, k, c)` and a
/// reduction over the two window axes (candle's max-pool backward is not used: it scales ties).
pub fn pool(attrs: &Value, x: &Tensor, max: bool) -> Result<Tensor> {
    let x = super::forward::to_float(x)?;
    let k = pair("pool", attrs, "pool_size", None)?;
    let same = padding("pool", attrs)?;
    let (n, h, w, c) = x.dims4()?;
    let (oh, ow) = if same { (h.div_ceil(k.0), w.div_ceil(k.1)) } else { (h / k.0, w / k.1) };
    let (ph, pw) = (oh * k.0, ow * k.1);
    // Keras's "same" pools ignore the padding: -inf for max, and an average over the real values.
    let fit = |t: &Tensor, value: f64| -> Result<Tensor> {
        let mut t = t.clone();
        for (axis, want) in [(1, ph), (2, pw)] {
            let have = t.dim(axis)?;
            if want < have {
                t = t.narrow(axis, 0, want)?;
            } else if want > have {
                let total = want - have;
                let mut parts = Vec::new();
                for (i, m) in [(0, total / 2), (1, total - total / 2)] {
                    let mut dims = t.dims().to_vec();
                    dims[axis] = m;
                    if m > 0 {
                        parts.push((i, Tensor::full(value, dims, t.device())?.to_dtype(t.dtype())?));
                    }
                }
                let mut all: Vec<Tensor> = parts.iter().filter(|(i, _)| *i == 0).map(|(_, p)| p.clone()).collect();
                all.push(t.clone());
                all.extend(parts.iter().filter(|(i, _)| *i == 1).map(|(_, p)| p.clone()));
                t = Tensor::cat(&all, axis)?;
            }
        }
        Ok(t)
    };
    let windows = |t: &Tensor| -> Result<Tensor> { Ok(t.reshape((t.dim(0)?, oh, k.0, ow, k.1, t.dim(3)?))?) };
    let y = if max {
        windows(&fit(&x, f64::NEG_INFINITY)?)?.max_keepdim(4)?.max_keepdim(2)?
    } else {
        let sum = windows(&fit(&x, 0.0)?)?.sum_keepdim(4)?.sum_keepdim(2)?;
        let ones = Tensor::ones((1, h, w, 1), x.dtype(), x.device())?;
        let count = windows(&fit(&ones, 0.0)?)?.sum_keepdim(4)?.sum_keepdim(2)?;
        sum.broadcast_div(&count)?
    };
    Ok(y.reshape((n, oh, ow, c))?)
}
