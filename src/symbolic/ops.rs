//! The `kandle.ops` table: every op's name, arity, shape rule and forward (candle operations, so
//! that candle's autograd is its backward). Python's `kandle.ops` reads the names from here.

use super::einsum;
use super::forward::*;
use super::rules::*;
use super::shape::{self, axes, broadcast, flag, float, int, ints, reduced, Kind, Sym};
use crate::{Error, Result};
use candle_core::{DType, Tensor, D};
use serde_json::Value;

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

