//! Reshaping: Flatten, in channels-last order, so Keras Dense weights after a Flatten load unchanged;
//! ZeroPadding2D.

use super::{image, shapes_accessors, single, Arity, Cfg, Entry, Gradients, Layer, Saved, Shapes};
use crate::ops::pad::{zero_pad2d, zero_pad2d_backward};
use crate::{Error, Result};
use candle_core::Tensor;
use serde_json::{json, Value};

pub const FLATTEN: Entry = Entry {
    class_name: "Flatten",
    arity: Arity::One,
    validate: |cfg| {
        cfg.channels_last()?;
        Ok(flatten_config(cfg.name()))
    },
    output_shape: |_, inputs| Ok(vec![single(inputs).iter().product()]),
    build: |cfg, inputs, _| Ok(Box::new(Flatten::new(cfg.name().into(), single(inputs)))),
};

pub fn flatten_config(name: &str) -> Value {
    json!({"name": name, "trainable": true, "data_format": "channels_last"})
}

pub struct Flatten {
    shapes: Shapes,
}

impl Flatten {
    pub fn new(name: String, input_shape: &[usize]) -> Self {
        Flatten { shapes: Shapes::new(name, input_shape, vec![input_shape.iter().product()]) }
    }
}

impl Layer for Flatten {
    fn class_name(&self) -> &'static str {
        "Flatten"
    }
    shapes_accessors!();
    fn config(&self) -> Value {
        flatten_config(&self.shapes.name)
    }
    fn forward_pre(&self, xs: &[Tensor]) -> Result<Tensor> {
        Ok(xs[0].reshape((xs[0].dim(0)?, self.shapes.output[0]))?)
    }

    fn backward(&self, saved: &Saved, grad: &Tensor, _input_grads: &[bool]) -> Result<Gradients> {
        Ok(Gradients::input(Some(grad.reshape(saved.input().shape())?)))
    }
}

pub const ZERO_PADDING_2D: Entry = Entry {
    class_name: "ZeroPadding2D",
    arity: Arity::One,
    validate: |cfg| Ok(padding_json(cfg.name(), parse_padding(cfg)?)),
    output_shape: |cfg, inputs| padded_shape(cfg.name(), parse_padding(cfg)?, single(inputs)),
    build: |cfg, inputs, _| {
        let pad = parse_padding(cfg)?;
        let input = single(inputs);
        let output = padded_shape(cfg.name(), pad, input)?;
        Ok(Box::new(ZeroPadding2D { pad, shapes: Shapes::new(cfg.name().into(), input, output) }))
    },
};

/// `((top, bottom), (left, right))`.
type Padding = ((usize, usize), (usize, usize));

/// Keras's `padding`: an int, a pair `(rows, cols)`, or a pair of pairs `((top, bottom), (left, right))`.
fn parse_padding(cfg: &Cfg) -> Result<Padding> {
    cfg.channels_last()?;
    let bad = |v: &Value| {
        Error::Value(format!(
            "ZeroPadding2D: `padding` should have two elements, each an int or a tuple of 2 ints, found padding={v}"
        ))
    };
    let int = |v: &Value| v.as_u64().map(|n| n as usize);
    let side = |v: &Value| -> Option<(usize, usize)> {
        match v {
            Value::Array(a) if a.len() == 2 => Some((int(&a[0])?, int(&a[1])?)),
            x => int(x).map(|n| (n, n)),
        }
    };
    let v = cfg.raw("padding").cloned().unwrap_or(json!(1));
    match &v {
        Value::Array(a) if a.len() == 2 => Ok((side(&a[0]).ok_or_else(|| bad(&v))?, side(&a[1]).ok_or_else(|| bad(&v))?)),
        x => int(x).map(|n| ((n, n), (n, n))).ok_or_else(|| bad(&v)),
    }
}

fn padding_json(name: &str, ((t, b), (l, r)): Padding) -> Value {
    json!({"name": name, "trainable": true, "padding": [[t, b], [l, r]], "data_format": "channels_last"})
}

fn padded_shape(name: &str, ((t, b), (l, r)): Padding, input: &[usize]) -> Result<Vec<usize>> {
    let (h, w, c) = image(name, input)?;
    Ok(vec![h + t + b, w + l + r, c])
}

pub struct ZeroPadding2D {
    pad: Padding,
    shapes: Shapes,
}

impl Layer for ZeroPadding2D {
    fn class_name(&self) -> &'static str {
        "ZeroPadding2D"
    }
    shapes_accessors!();
    fn config(&self) -> Value {
        padding_json(&self.shapes.name, self.pad)
    }
    fn forward_pre(&self, xs: &[Tensor]) -> Result<Tensor> {
        let ((t, b), (l, r)) = self.pad;
        Ok(zero_pad2d(&xs[0], t, b, l, r)?)
    }

    fn backward(&self, _saved: &Saved, grad: &Tensor, input_grads: &[bool]) -> Result<Gradients> {
        let ((t, b), (l, r)) = self.pad;
        Ok(Gradients::input(if input_grads[0] { Some(zero_pad2d_backward(grad, t, b, l, r)?) } else { None }))
    }
}
