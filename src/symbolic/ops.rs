//! The `kandle.ops` table: every op's name, arity, shape rule and forward (candle operations, so
//! that candle's autograd is its backward). Python's `kandle.ops` reads the names from here.

use super::einsum;
use super::shape::{self, axes, broadcast, flag, float, int, ints, reduced, show, Kind, Sym};
use crate::{Error, Result};
use candle_core::{DType, Tensor, D};
use serde_json::Value;

type Dims = Vec<Option<usize>>;

/// How many arguments an op takes.
#[derive(Clone, Copy)]
pub enum Arity {
    Fixed(usize),
    /// One or more (`concatenate`, `stack`, `einsum`).
    Many,
}

/// One op: name (as in `keras.ops`), arity, shape rule and forward.
pub struct OpDef {
    pub name: &'static str,
    pub arity: Arity,
    pub shape: fn(&str, &Value, &[Sym]) -> Result<Sym>,
    pub eval: fn(&Value, &[Tensor]) -> Result<Tensor>,
}

macro_rules! op {
    ($name:literal, $arity:expr, $shape:expr, $eval:expr) => {
        OpDef { name: $name, arity: $arity, shape: $shape, eval: $eval }
    };
}

macro_rules! unary {
    ($name:literal, $f:expr) => {
        op!($name, Arity::Fixed(1), |_, _, a| Ok(Sym::new(a[0].shape.clone(), Kind::Float)), |attrs, a| {
            let x = to_float(&a[0])?;
            let f: fn(&Value, &Tensor) -> candle_core::Result<Tensor> = $f;
            Ok(f(attrs, &x)?)
        })
    };
}

macro_rules! arith {
    ($name:literal, $f:ident) => {
        op!($name, Arity::Fixed(2), |op, _, a| arith_shape(op, a, false), |_, a| {
            let (x, y) = promote(&a[0], &a[1], false)?;
            Ok(x.$f(&y)?)
        })
    };
}

macro_rules! compare {
    ($name:literal, $f:ident) => {
        op!($name, Arity::Fixed(2), |op, _, a| Ok(Sym::new(broadcast(op, &a[0].shape, &a[1].shape)?, Kind::Bool)), |_, a| {
            let (x, y) = promote(&a[0], &a[1], false)?;
            Ok(x.$f(&y)?)
        })
    };
}

/// Every op kandle records, in the order `kandle.ops` documents them.
pub const OPS: &[OpDef] = &[
    arith!("add", broadcast_add),
    arith!("subtract", broadcast_sub),
    arith!("multiply", broadcast_mul),
    op!("divide", Arity::Fixed(2), |op, _, a| arith_shape(op, a, true), |_, a| {
        let (x, y) = promote(&a[0], &a[1], true)?;
        Ok(x.broadcast_div(&y)?)
    }),
    op!("power", Arity::Fixed(2), |op, _, a| arith_shape(op, a, true), |attrs, a| power(attrs, &a[0], &a[1])),
    arith!("maximum", broadcast_maximum),
    arith!("minimum", broadcast_minimum),
    compare!("greater", broadcast_gt),
    compare!("greater_equal", broadcast_ge),
    compare!("less", broadcast_lt),
    compare!("less_equal", broadcast_le),
    compare!("equal", broadcast_eq),
    compare!("not_equal", broadcast_ne),
    op!("negative", Arity::Fixed(1), |_, _, a| Ok(a[0].clone()), |_, a| Ok(a[0].neg()?)),
    op!("abs", Arity::Fixed(1), |_, _, a| Ok(a[0].clone()), |_, a| Ok(a[0].abs()?)),
    unary!("square", |_, x| x.sqr()),
    unary!("sqrt", |_, x| x.sqrt()),
    unary!("exp", |_, x| x.exp()),
    unary!("log", |_, x| x.log()),
    unary!("reciprocal", |_, x| x.recip()),
    unary!("sin", |_, x| x.sin()),
    unary!("cos", |_, x| x.cos()),
    unary!("tanh", |_, x| x.tanh()),
    unary!("relu", |_, x| x.relu()),
    unary!("sigmoid", |_, x| candle_nn::ops::sigmoid(x)),
    unary!("silu", |_, x| x.silu()),
    unary!("gelu", |attrs, x| if flag(attrs, "approximate", true) { x.gelu() } else { x.gelu_erf() }),
    unary!("softplus", |_, x| softplus(x)),
    unary!("floor", |_, x| x.floor()),
    unary!("round", |_, x| round_half_even(x)),
    unary!("sign", |_, x| x.sign()),
    op!("clip", Arity::Fixed(1), |_, _, a| Ok(Sym::new(a[0].shape.clone(), if a[0].kind == Kind::Bool { Kind::Int } else { a[0].kind })), |attrs, a| {
        let x = if a[0].dtype() == DType::U8 { a[0].to_dtype(DType::I64)? } else { a[0].clone() };
        let (lo, hi) = (float(attrs, "x_min", f64::NEG_INFINITY), float(attrs, "x_max", f64::INFINITY));
        Ok(x.clamp(lo, hi)?)
    }),
    op!("where", Arity::Fixed(3), where_shape, |_, a| {
        let cond = as_bool(&a[0])?;
        let (x, y) = promote(&a[1], &a[2], false)?;
        let dims = broadcast_dims(&[cond.dims(), x.dims(), y.dims()]);
        Ok(cond.broadcast_as(dims.clone())?.where_cond(&x.broadcast_as(dims.clone())?, &y.broadcast_as(dims)?)?)
    }),
    op!("cast", Arity::Fixed(1), |op, attrs, a| Ok(Sym::new(a[0].shape.clone(), target_kind(op, attrs)?)), |attrs, a| cast(&a[0], target_kind("cast", attrs)?)),
    op!("stop_gradient", Arity::Fixed(1), |_, _, a| Ok(a[0].clone()), |_, a| Ok(a[0].detach())),
    op!("full_like", Arity::Fixed(1), |_, _, a| Ok(a[0].clone()), |attrs, a| {
        let v = float(attrs, "fill_value", 0.0);
        Ok(Tensor::full(v, a[0].dims(), a[0].device())?.to_dtype(a[0].dtype())?)
    }),
    // Reductions.
    op!("sum", Arity::Fixed(1), |op, attrs, a| reduce_shape(op, attrs, a, None), |attrs, a| {
        let x = if a[0].dtype() == DType::U8 { a[0].to_dtype(DType::I64)? } else { a[0].clone() };
        let ax = axes("sum", attrs, "axis", x.rank())?;
        keep(attrs, &x, &ax, if ax.is_empty() { x.clone() } else { x.sum_keepdim(ax.clone())? })
    }),
    op!("mean", Arity::Fixed(1), |op, attrs, a| reduce_shape(op, attrs, a, Some(Kind::Float)), |attrs, a| {
        let x = to_float(&a[0])?;
        let ax = axes("mean", attrs, "axis", x.rank())?;
        keep(attrs, &x, &ax, mean_keep(&x, &ax)?)
    }),
    op!("max", Arity::Fixed(1), |op, attrs, a| reduce_shape(op, attrs, a, None), |attrs, a| extreme(attrs, &a[0], true)),
    op!("min", Arity::Fixed(1), |op, attrs, a| reduce_shape(op, attrs, a, None), |attrs, a| extreme(attrs, &a[0], false)),
    op!("var", Arity::Fixed(1), |op, attrs, a| reduce_shape(op, attrs, a, Some(Kind::Float)), |attrs, a| {
        let x = to_float(&a[0])?;
        let ax = axes("var", attrs, "axis", x.rank())?;
        keep(attrs, &x, &ax, variance_keep(&x, &ax)?)
    }),
    op!("std", Arity::Fixed(1), |op, attrs, a| reduce_shape(op, attrs, a, Some(Kind::Float)), |attrs, a| {
        let x = to_float(&a[0])?;
        let ax = axes("std", attrs, "axis", x.rank())?;
        keep(attrs, &x, &ax, variance_keep(&x, &ax)?.sqrt()?)
    }),
    op!("argmax", Arity::Fixed(1), arg_shape, |attrs, a| arg_extreme(attrs, &a[0], true)),
    op!("argmin", Arity::Fixed(1), arg_shape, |attrs, a| arg_extreme(attrs, &a[0], false)),
    op!("logsumexp", Arity::Fixed(1), |op, attrs, a| reduce_shape(op, attrs, a, Some(Kind::Float)), |attrs, a| {
        let x = to_float(&a[0])?;
        let ax = axes("logsumexp", attrs, "axis", x.rank())?;
        let mut m = x.clone();
        for &d in &ax {
            m = m.max_keepdim(d)?;
        }
        let m = m.detach();
        let s = if ax.is_empty() { x.broadcast_sub(&m)?.exp()? } else { x.broadcast_sub(&m)?.exp()?.sum_keepdim(ax.clone())? };
        keep(attrs, &x, &ax, (s.log()? + &m)?)
    }),
    // Shapes.
    op!("reshape", Arity::Fixed(1), reshape_shape, |attrs, a| {
        let target = ints("reshape", attrs, "newshape")?;
        let n = a[0].elem_count();
        let known: usize = target.iter().filter(|&&d| d >= 0).map(|&d| d as usize).product();
        let dims: Vec<usize> = target.iter().map(|&d| if d < 0 { n / known.max(1) } else { d as usize }).collect();
        Ok(a[0].reshape(dims)?)
    }),
    op!("transpose", Arity::Fixed(1), |op, attrs, a| {
        let p = perm(op, attrs, a[0].rank())?;
        Ok(Sym::new(p.iter().map(|&i| a[0].shape[i]).collect(), a[0].kind))
    }, |attrs, a| Ok(a[0].permute(perm("transpose", attrs, a[0].rank())?)?)),
    op!("expand_dims", Arity::Fixed(1), |op, attrs, a| {
        let ax = shape::axis(op, int(op, attrs, "axis")?, a[0].rank() + 1)?;
        let mut s = a[0].shape.clone();
        s.insert(ax, Some(1));
        Ok(Sym::new(s, a[0].kind))
    }, |attrs, a| Ok(a[0].unsqueeze(shape::axis("expand_dims", int("expand_dims", attrs, "axis")?, a[0].rank() + 1)?)?)),
    op!("squeeze", Arity::Fixed(1), |op, attrs, a| {
        let ax = squeeze_axes(op, attrs, &a[0].shape)?;
        Ok(Sym::new(reduced(&a[0].shape, &ax, false), a[0].kind))
    }, |attrs, a| {
        let sym = Sym::of(&a[0]);
        let ax = squeeze_axes("squeeze", attrs, &sym.shape)?;
        let dims: Vec<usize> = a[0].dims().iter().enumerate().filter(|(i, _)| !ax.contains(i)).map(|(_, &d)| d).collect();
        Ok(a[0].reshape(dims)?)
    }),
    op!("concatenate", Arity::Many, |op, attrs, a| concat_shape(op, attrs, a, false), |attrs, a| {
        let ax = shape::axis("concatenate", attrs.get("axis").and_then(Value::as_i64).unwrap_or(0), a[0].rank())?;
        let xs = promote_all(a)?;
        Ok(Tensor::cat(&xs, ax)?)
    }),
    op!("stack", Arity::Many, |op, attrs, a| concat_shape(op, attrs, a, true), |attrs, a| {
        let ax = shape::axis("stack", attrs.get("axis").and_then(Value::as_i64).unwrap_or(0), a[0].rank() + 1)?;
        let xs = promote_all(a)?;
        Ok(Tensor::stack(&xs, ax)?)
    }),
    op!("slice", Arity::Fixed(1), slice_shape, |attrs, a| {
        let (start, size) = (ints("slice", attrs, "start_indices")?, ints("slice", attrs, "shape")?);
        let mut x = a[0].clone();
        for (ax, (&s, &n)) in start.iter().zip(&size).enumerate() {
            let d = x.dim(ax)?;
            let n = if n < 0 { d - s as usize } else { n as usize };
            if s != 0 || n != d {
                x = x.narrow(ax, s as usize, n)?;
            }
        }
        Ok(x)
    }),
    op!("take", Arity::Fixed(2), take_shape, |attrs, a| take(attrs, &a[0], &a[1])),
    op!("tile", Arity::Fixed(1), |op, attrs, a| {
        let reps = ints(op, attrs, "repeats")?;
        let mut s = a[0].shape.clone();
        while s.len() < reps.len() {
            s.insert(0, Some(1));
        }
        let off = s.len() - reps.len();
        for (i, &r) in reps.iter().enumerate() {
            if r < 0 {
                return crate::value_err!("{op}: `repeats` must be non-negative, got {reps:?}");
            }
            s[off + i] = s[off + i].map(|d| d * r as usize);
        }
        Ok(Sym::new(s, a[0].kind))
    }, |attrs, a| {
        let reps: Vec<usize> = ints("tile", attrs, "repeats")?.iter().map(|&r| r as usize).collect();
        let mut x = a[0].clone();
        while x.rank() < reps.len() {
            x = x.unsqueeze(0)?;
        }
        let mut full = vec![1; x.rank() - reps.len()];
        full.extend(reps);
        Ok(x.repeat(full)?)
    }),
    op!("pad", Arity::Fixed(1), pad_shape, |attrs, a| pad(attrs, &a[0])),
    // Linear algebra.
    op!("matmul", Arity::Fixed(2), matmul_shape, |_, a| matmul(&a[0], &a[1])),
    op!("einsum", Arity::Many, |op, attrs, a| einsum::shape(op, attrs, a), |attrs, a| einsum::eval(attrs, a)),
    // Neural-network ops.
    op!("softmax", Arity::Fixed(1), float_like, |attrs, a| {
        let x = to_float(&a[0])?;
        let ax = shape::axis("softmax", attrs.get("axis").and_then(Value::as_i64).unwrap_or(-1), x.rank())?;
        Ok(candle_nn::ops::softmax(&x, ax)?)
    }),
    op!("log_softmax", Arity::Fixed(1), float_like, |attrs, a| {
        let x = to_float(&a[0])?;
        let ax = shape::axis("log_softmax", attrs.get("axis").and_then(Value::as_i64).unwrap_or(-1), x.rank())?;
        Ok(candle_nn::ops::log_softmax(&x, ax)?)
    }),
    op!("one_hot", Arity::Fixed(1), |op, attrs, a| {
        let n = int(op, attrs, "num_classes")?;
        if n <= 0 || a[0].kind == Kind::Float {
            return crate::value_err!("{op}: needs integer class indices and num_classes > 0 (got {} indices, num_classes={n})", a[0].kind.name());
        }
        let mut s = a[0].shape.clone();
        s.push(Some(n as usize));
        Ok(Sym::new(s, Kind::Float))
    }, |attrs, a| {
        let n = int("one_hot", attrs, "num_classes")? as usize;
        let classes = Tensor::arange(0i64, n as i64, a[0].device())?;
        Ok(a[0].to_dtype(DType::I64)?.unsqueeze(D::Minus1)?.broadcast_eq(&classes)?.to_dtype(DType::F32)?)
    }),
    op!("categorical_crossentropy", Arity::Fixed(2), |op, attrs, a| xent_shape(op, attrs, a), |attrs, a| {
        let (t, o) = (to_float(&a[0])?, to_float(&a[1])?);
        let ax = shape::axis("categorical_crossentropy", attrs.get("axis").and_then(Value::as_i64).unwrap_or(-1), o.rank())?;
        let logp = if flag(attrs, "from_logits", false) {
            candle_nn::ops::log_softmax(&o, ax)?
        } else {
            o.broadcast_div(&o.sum_keepdim(ax)?)?.clamp(EPSILON, 1.0 - EPSILON)?.log()?
        };
        Ok((t * logp)?.sum(ax)?.neg()?)
    }),
    op!("binary_crossentropy", Arity::Fixed(2), |op, _, a| Ok(Sym::new(broadcast(op, &a[0].shape, &a[1].shape)?, Kind::Float)), |attrs, a| {
        let (t, o) = promote(&a[0], &a[1], true)?;
        if flag(attrs, "from_logits", false) {
            // relu(x) - x t + log(1 + exp(-|x|)), Keras's stable form.
            Ok(((o.relu()? - o.broadcast_mul(&t)?)?.broadcast_add(&o.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?))?)
        } else {
            let o = o.clamp(EPSILON, 1.0 - EPSILON)?;
            let pos = t.broadcast_mul(&o.log()?)?;
            let neg = t.affine(-1.0, 1.0)?.broadcast_mul(&o.affine(-1.0, 1.0)?.log()?)?;
            Ok((pos + neg)?.neg()?)
        }
    }),
    op!("conv", Arity::Fixed(2), super::nn::conv_shape, |attrs, a| super::nn::conv(attrs, &a[0], &a[1])),
    op!("max_pool", Arity::Fixed(1), super::nn::pool_shape, |attrs, a| super::nn::pool(attrs, &a[0], true)),
    op!("average_pool", Arity::Fixed(1), super::nn::pool_shape, |attrs, a| super::nn::pool(attrs, &a[0], false)),
];

/// Keras's `backend.epsilon()`, the clip of probabilities in the cross-entropies.
const EPSILON: f64 = 1e-7;

/// The op of this name, or the error listing what kandle has.
pub fn find(name: &str) -> Result<&'static OpDef> {
    OPS.iter().find(|o| o.name == name).ok_or_else(|| Error::Value(format!("kandle does not implement keras.ops.{name} yet")))
}

/// The names of every op (read by Python's `kandle.ops`).
pub fn names() -> Vec<&'static str> {
    OPS.iter().map(|o| o.name).collect()
}

/// Checks an op's arity and runs its shape rule; errors name the op and `who` (the layer).
pub fn infer(op: &OpDef, attrs: &Value, args: &[Sym], who: &str) -> Result<Sym> {
    let ok = match op.arity {
        Arity::Fixed(n) => args.len() == n,
        Arity::Many => !args.is_empty(),
    };
    if !ok {
        return crate::value_err!("{who}: ops.{} got {} arguments", op.name, args.len());
    }
    let label = if who.starts_with("ops.") { who.to_string() } else { format!("{who}: ops.{}", op.name) };
    (op.shape)(&label, attrs, args)
}

// --- shape rules -------------------------------------------------------------------------------

fn arith_shape(op: &str, a: &[Sym], float_out: bool) -> Result<Sym> {
    let kind = if float_out || a.iter().any(|s| s.kind == Kind::Float) { Kind::Float } else { Kind::Int };
    Ok(Sym::new(broadcast(op, &a[0].shape, &a[1].shape)?, kind))
}

fn where_shape(op: &str, _: &Value, a: &[Sym]) -> Result<Sym> {
    let s = broadcast(op, &broadcast(op, &a[0].shape, &a[1].shape)?, &a[2].shape)?;
    Ok(Sym::new(s, if a[1].kind == Kind::Float || a[2].kind == Kind::Float { Kind::Float } else { a[1].kind }))
}

fn float_like(_: &str, _: &Value, a: &[Sym]) -> Result<Sym> {
    Ok(Sym::new(a[0].shape.clone(), Kind::Float))
}

fn reduce_shape(op: &str, attrs: &Value, a: &[Sym], kind: Option<Kind>) -> Result<Sym> {
    let ax = axes(op, attrs, "axis", a[0].rank())?;
    let k = kind.unwrap_or(if a[0].kind == Kind::Bool { Kind::Int } else { a[0].kind });
    Ok(Sym::new(reduced(&a[0].shape, &ax, flag(attrs, "keepdims", false)), k))
}

fn arg_shape(op: &str, attrs: &Value, a: &[Sym]) -> Result<Sym> {
    match attrs.get("axis").and_then(Value::as_i64) {
        None => Ok(Sym::new(if flag(attrs, "keepdims", false) { vec![Some(1); a[0].rank()] } else { Vec::new() }, Kind::Int)),
        Some(ax) => {
            let ax = shape::axis(op, ax, a[0].rank())?;
            Ok(Sym::new(reduced(&a[0].shape, &[ax], flag(attrs, "keepdims", false)), Kind::Int))
        }
    }
}

fn target_kind(op: &str, attrs: &Value) -> Result<Kind> {
    Kind::parse(attrs.get("dtype").and_then(Value::as_str).unwrap_or("float32"), op)
}

fn reshape_shape(op: &str, attrs: &Value, a: &[Sym]) -> Result<Sym> {
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

fn perm(op: &str, attrs: &Value, rank: usize) -> Result<Vec<usize>> {
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

fn squeeze_axes(op: &str, attrs: &Value, s: &[Option<usize>]) -> Result<Vec<usize>> {
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

fn concat_shape(op: &str, attrs: &Value, a: &[Sym], stack: bool) -> Result<Sym> {
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

fn slice_shape(op: &str, attrs: &Value, a: &[Sym]) -> Result<Sym> {
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

fn take_shape(op: &str, attrs: &Value, a: &[Sym]) -> Result<Sym> {
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

fn pad_widths(op: &str, attrs: &Value, rank: usize) -> Result<Vec<(usize, usize)>> {
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

fn pad_shape(op: &str, attrs: &Value, a: &[Sym]) -> Result<Sym> {
    let w = pad_widths(op, attrs, a[0].rank())?;
    Ok(Sym::new(a[0].shape.iter().zip(&w).map(|(d, (b, e))| d.map(|d| d + b + e)).collect(), a[0].kind))
}

fn matmul_shape(op: &str, _: &Value, a: &[Sym]) -> Result<Sym> {
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

fn xent_shape(op: &str, attrs: &Value, a: &[Sym]) -> Result<Sym> {
    let s = broadcast(op, &a[0].shape, &a[1].shape)?;
    if a[0].shape.len() != a[1].shape.len() {
        return crate::value_err!("{op}: target and output must have the same rank, got shapes {} and {}", show(&a[0].shape), show(&a[1].shape));
    }
    let ax = shape::axis(op, attrs.get("axis").and_then(Value::as_i64).unwrap_or(-1), s.len())?;
    Ok(Sym::new(reduced(&s, &[ax], false), Kind::Float))
}

// --- forward helpers ---------------------------------------------------------------------------

/// A float tensor: float32 unless it already is a float (the gradient checks run in float64).
pub(crate) fn to_float(t: &Tensor) -> candle_core::Result<Tensor> {
    if t.dtype().is_float() {
        Ok(t.clone())
    } else {
        t.to_dtype(DType::F32)
    }
}

fn as_bool(t: &Tensor) -> Result<Tensor> {
    Ok(if t.dtype() == DType::U8 { t.clone() } else { t.ne(0f64)? })
}

fn cast(t: &Tensor, kind: Kind) -> Result<Tensor> {
    Ok(match kind {
        Kind::Bool => as_bool(t)?,
        Kind::Float => to_float(t)?,
        Kind::Int if t.dtype() == DType::F32 => t.to_dtype(DType::I64)?,
        Kind::Int => t.to_dtype(DType::I64)?,
    })
}

/// The two operands in one dtype: float32 when either is (or when `float_out`), else int64.
fn promote(x: &Tensor, y: &Tensor, float_out: bool) -> Result<(Tensor, Tensor)> {
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

fn promote_all(xs: &[Tensor]) -> Result<Vec<Tensor>> {
    let target = xs.iter().map(|t| t.dtype()).find(|d| d.is_float()).unwrap_or(xs[0].dtype());
    Ok(xs.iter().map(|t| if t.dtype() == target { Ok(t.clone()) } else { t.to_dtype(target) }).collect::<candle_core::Result<Vec<_>>>()?)
}

fn broadcast_dims(shapes: &[&[usize]]) -> Vec<usize> {
    let n = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    (0..n)
        .map(|i| shapes.iter().map(|s| if i + s.len() >= n { s[i + s.len() - n] } else { 1 }).max().unwrap_or(1))
        .collect()
}

fn power(attrs: &Value, x: &Tensor, y: &Tensor) -> Result<Tensor> {
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
fn round_half_even(x: &Tensor) -> candle_core::Result<Tensor> {
    let f = x.floor()?;
    let diff = (x - &f)?;
    let odd = (&f - ((&f * 0.5)?.floor()? * 2.0)?)?.ne(0.0)?;
    let up = diff.gt(0.5)?.maximum(&diff.eq(0.5)?.mul(&odd)?)?;
    up.where_cond(&(&f + 1.0)?, &f)
}

fn softplus(x: &Tensor) -> candle_core::Result<Tensor> {
    x.relu()? + x.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?
}

/// Drops the reduced axes unless `keepdims` (`y` was computed with them kept).
fn keep(attrs: &Value, x: &Tensor, ax: &[usize], y: Tensor) -> Result<Tensor> {
    if flag(attrs, "keepdims", false) {
        return Ok(y);
    }
    let dims: Vec<usize> = x.dims().iter().enumerate().filter(|(i, _)| !ax.contains(i)).map(|(_, &d)| d).collect();
    Ok(y.reshape(dims)?)
}

fn mean_keep(x: &Tensor, ax: &[usize]) -> Result<Tensor> {
    if ax.is_empty() {
        return Ok(x.clone());
    }
    let n: usize = ax.iter().map(|&d| x.dims()[d]).product();
    Ok((x.sum_keepdim(ax.to_vec())? / n as f64)?)
}

fn variance_keep(x: &Tensor, ax: &[usize]) -> Result<Tensor> {
    let m = mean_keep(x, ax)?;
    mean_keep(&x.broadcast_sub(&m)?.sqr()?, ax)
}

fn extreme(attrs: &Value, x: &Tensor, max: bool) -> Result<Tensor> {
    let x = if x.dtype() == DType::U8 { x.to_dtype(DType::I64)? } else { x.clone() };
    let ax = axes(if max { "max" } else { "min" }, attrs, "axis", x.rank())?;
    let mut y = x.clone();
    for &d in &ax {
        y = if max { y.max_keepdim(d)? } else { y.min_keepdim(d)? };
    }
    keep(attrs, &x, &ax, y)
}

fn arg_extreme(attrs: &Value, x: &Tensor, max: bool) -> Result<Tensor> {
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

fn take(attrs: &Value, x: &Tensor, idx: &Tensor) -> Result<Tensor> {
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

fn pad(attrs: &Value, x: &Tensor) -> Result<Tensor> {
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

fn matmul(x: &Tensor, y: &Tensor) -> Result<Tensor> {
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
