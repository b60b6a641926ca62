//! The merging layers: Add, Subtract, Multiply, Average, Maximum, Minimum (inputs of one shape) and
//! Concatenate (one axis may differ). They take a list of inputs, as Keras's `Add()([x, y])`.

use super::{shapes_accessors, Arity, Cfg, Entry, Gradients, Layer, Saved, Shapes};
use crate::error::keras_shape;
use crate::Result;
use candle_core::Tensor;
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Add,
    Subtract,
    Multiply,
    Average,
    Maximum,
    Minimum,
}

impl Op {
    const fn class_name(self) -> &'static str {
        match self {
            Op::Add => "Add",
            Op::Subtract => "Subtract",
            Op::Multiply => "Multiply",
            Op::Average => "Average",
            Op::Maximum => "Maximum",
            Op::Minimum => "Minimum",
        }
    }
}

/// The entry of an element-wise merge.
macro_rules! merge_entry {
    ($op:expr) => {
        Entry {
            class_name: $op.class_name(),
            arity: Arity::Many,
            validate: |cfg| Ok(json!({"name": cfg.name()})),
            output_shape: |cfg, inputs| same_shapes($op, cfg.name(), inputs),
            build: |cfg, inputs, _| {
                let out = same_shapes($op, cfg.name(), inputs)?;
                Ok(Box::new(Merge { op: $op, shapes: Shapes::multi(cfg.name().into(), inputs, out) }))
            },
        }
    };
}

pub const ADD: Entry = merge_entry!(Op::Add);
pub const SUBTRACT: Entry = merge_entry!(Op::Subtract);
pub const MULTIPLY: Entry = merge_entry!(Op::Multiply);
pub const AVERAGE: Entry = merge_entry!(Op::Average);
pub const MAXIMUM: Entry = merge_entry!(Op::Maximum);
pub const MINIMUM: Entry = merge_entry!(Op::Minimum);

/// Keras's check: every input of an element-wise merge has the same shape.
fn same_shapes(op: Op, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
    if op == Op::Subtract && inputs.len() != 2 {
        return crate::value_err!(
            "A `Subtract` layer should be called on exactly 2 inputs. Layer \"{name}\" received {} inputs",
            inputs.len()
        );
    }
    let first = &inputs[0];
    if let Some(other) = inputs.iter().find(|s| *s != first) {
        return crate::value_err!(
            "Layer \"{name}\" ({}): Inputs have incompatible shapes. Received shapes {} and {}",
            op.class_name(),
            keras_shape(first),
            keras_shape(other)
        );
    }
    Ok(first.clone())
}

pub struct Merge {
    op: Op,
    shapes: Shapes,
}

/// For Maximum/Minimum: whether `x` wins over the running result `acc` (strictly; ties stay with
/// the earlier input, as TensorFlow's gradient of `maximum(acc, x)` sends them to `acc`).
fn wins(op: Op, x: &Tensor, acc: &Tensor) -> Result<Tensor> {
    Ok(match op {
        Op::Maximum => x.gt(acc)?,
        _ => x.lt(acc)?,
    })
}

impl Layer for Merge {
    fn class_name(&self) -> &'static str {
        self.op.class_name()
    }
    shapes_accessors!();
    fn config(&self) -> Value {
        json!({"name": self.shapes.name})
    }

    fn forward_pre(&self, xs: &[Tensor]) -> Result<Tensor> {
        let mut acc = xs[0].clone();
        for x in &xs[1..] {
            acc = match self.op {
                Op::Add | Op::Average => acc.add(x)?,
                Op::Subtract => acc.sub(x)?,
                Op::Multiply => acc.mul(x)?,
                Op::Maximum => acc.maximum(x)?,
                Op::Minimum => acc.minimum(x)?,
            };
        }
        if self.op == Op::Average {
            acc = acc.affine(1.0 / xs.len() as f64, 0.0)?;
        }
        Ok(acc)
    }

    fn backward(&self, saved: &Saved, grad: &Tensor, input_grads: &[bool]) -> Result<Gradients> {
        let xs = &saved.inputs;
        let n = xs.len();
        let inputs = match self.op {
            Op::Add => vec![Some(grad.clone()); n],
            Op::Average => vec![Some(grad.affine(1.0 / n as f64, 0.0)?); n],
            Op::Subtract => vec![Some(grad.clone()), Some(grad.neg()?)],
            Op::Multiply => (0..n)
                .map(|i| {
                    if !input_grads[i] {
                        return Ok(None);
                    }
                    let mut g = grad.clone();
                    for (j, x) in xs.iter().enumerate() {
                        if j != i {
                            g = g.mul(x)?;
                        }
                    }
                    Ok(Some(g))
                })
                .collect::<Result<Vec<_>>>()?,
            Op::Maximum | Op::Minimum => {
                // The running result after each input, then the gradient walked back through the
                // chain of pairwise maxima.
                let mut accs = vec![xs[0].clone()];
                for x in &xs[1..] {
                    let last = accs.last().unwrap();
                    accs.push(if self.op == Op::Maximum { last.maximum(x)? } else { last.minimum(x)? });
                }
                let zeros = grad.zeros_like()?;
                let mut out = vec![None; n];
                let mut g = grad.clone();
                for i in (1..n).rev() {
                    let mask = wins(self.op, &xs[i], &accs[i - 1])?;
                    out[i] = Some(mask.where_cond(&g, &zeros)?);
                    g = mask.where_cond(&zeros, &g)?;
                }
                out[0] = Some(g);
                out
            }
        };
        let inputs = inputs.into_iter().zip(input_grads).map(|(g, &want)| if want { g } else { None }).collect();
        Ok(Gradients { inputs, weights: Vec::new() })
    }
}

pub const CONCATENATE: Entry = Entry {
    class_name: "Concatenate",
    arity: Arity::Many,
    validate: |cfg| Ok(json!({"name": cfg.name(), "axis": cfg.int("axis", -1)?})),
    output_shape: |cfg, inputs| Ok(concat_shape(cfg, inputs)?.1),
    build: |cfg, inputs, _| {
        let (axis, out) = concat_shape(cfg, inputs)?;
        Ok(Box::new(Concatenate { axis: cfg.int("axis", -1)?, sample_axis: axis, shapes: Shapes::multi(cfg.name().into(), inputs, out) }))
    },
};

/// The per-sample axis and the output shape; Keras's error when the other axes differ.
fn concat_shape(cfg: &Cfg, inputs: &[Vec<usize>]) -> Result<(usize, Vec<usize>)> {
    let axis = cfg.int("axis", -1)?;
    let rank = inputs[0].len() as i64;
    // Keras counts the batch axis: axis 0 is the batch, -1 (or rank) the last per-sample axis.
    let full = if axis < 0 { axis + rank + 1 } else { axis };
    let shapes_text = || inputs.iter().map(|s| keras_shape(s)).collect::<Vec<_>>().join(", ");
    if full < 1 || full > rank {
        return crate::value_err!(
            "Layer \"{}\" (Concatenate): invalid axis={axis} for inputs of rank {} (shapes {})",
            cfg.name(),
            rank + 1,
            shapes_text()
        );
    }
    let a = (full - 1) as usize;
    for s in inputs {
        let differs = s.len() != inputs[0].len() || s.iter().zip(&inputs[0]).enumerate().any(|(i, (x, y))| i != a && x != y);
        if differs {
            return crate::value_err!(
                "A `Concatenate` layer requires inputs with matching shapes except for the concatenation axis. \
                 Layer \"{}\" received: input_shape={}",
                cfg.name(),
                shapes_text()
            );
        }
    }
    let mut out = inputs[0].clone();
    out[a] = inputs.iter().map(|s| s[a]).sum();
    Ok((a, out))
}

pub struct Concatenate {
    axis: i64,
    sample_axis: usize,
    shapes: Shapes,
}

impl Layer for Concatenate {
    fn class_name(&self) -> &'static str {
        "Concatenate"
    }
    shapes_accessors!();
    fn config(&self) -> Value {
        json!({"name": self.shapes.name, "axis": self.axis})
    }

    fn forward_pre(&self, xs: &[Tensor]) -> Result<Tensor> {
        Ok(Tensor::cat(xs, self.sample_axis + 1)?)
    }

    fn backward(&self, _saved: &Saved, grad: &Tensor, input_grads: &[bool]) -> Result<Gradients> {
        let mut start = 0;
        let mut inputs = Vec::with_capacity(self.shapes.inputs.len());
        for (s, &want) in self.shapes.inputs.iter().zip(input_grads) {
            let len = s[self.sample_axis];
            inputs.push(if want { Some(grad.narrow(self.sample_axis + 1, start, len)?.contiguous()?) } else { None });
            start += len;
        }
        Ok(Gradients { inputs, weights: Vec::new() })
    }
}
