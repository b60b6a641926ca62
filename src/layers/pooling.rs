//! The pooling family, channels last, TensorFlow's padding and flooring: MaxPooling2D,
//! AveragePooling2D ('same' averages only the cells inside the image, as TensorFlow), and the
//! global poolings as the same kernels over a window the size of the image.

use super::{image, shapes_accessors, single, Arity, Cfg, Entry, Extra, Gradients, Layer, Saved, Shapes};
use crate::error::keras_shape;
use crate::ops::avg_pool::{avg_pool2d, avg_pool2d_backward};
use crate::ops::pool::{max_pool2d, max_pool2d_backward};
use crate::ops::Window;
use crate::{Error, Result};
use candle_core::Tensor;
use serde_json::{json, Value};

#[derive(Clone, Debug)]
pub struct Pool2dConfig {
    pub pool_size: (usize, usize),
    pub strides: (usize, usize),
    pub same: bool,
}

impl Pool2dConfig {
    pub fn parse(cfg: &Cfg) -> Result<Self> {
        cfg.channels_last()?;
        let pool_size = cfg.pair("pool_size")?.unwrap_or((2, 2));
        Ok(Pool2dConfig { pool_size, strides: cfg.pair("strides")?.unwrap_or(pool_size), same: cfg.padding()? })
    }

    pub fn to_json(&self, name: &str) -> Value {
        json!({
            "name": name, "trainable": true, "pool_size": [self.pool_size.0, self.pool_size.1],
            "strides": [self.strides.0, self.strides.1], "padding": if self.same { "same" } else { "valid" },
            "data_format": "channels_last",
        })
    }

    /// The pooling window on this input, or Keras's error naming the layer.
    fn window(&self, class: &str, name: &str, input_shape: &[usize]) -> Result<(Window, usize)> {
        let (h, w, c) = image(name, input_shape)?;
        let win = Window::new((h, w), self.pool_size, self.strides, self.same).ok_or_else(|| {
            Error::Value(format!(
                "Layer \"{name}\" ({class}): pool_size {:?} is larger than its input {} with padding='valid'; \
                 the output would be empty",
                self.pool_size,
                keras_shape(input_shape)
            ))
        })?;
        Ok((win, c))
    }
}

/// The entry of a windowed pooling layer.
macro_rules! pool_entry {
    ($class:literal, $kind:expr) => {
        Entry {
            class_name: $class,
            arity: Arity::One,
            validate: |cfg| Ok(Pool2dConfig::parse(cfg)?.to_json(cfg.name())),
            output_shape: |cfg, inputs| {
                let (win, c) = Pool2dConfig::parse(cfg)?.window($class, cfg.name(), single(inputs))?;
                Ok(vec![win.out_h, win.out_w, c])
            },
            build: |cfg, inputs, _| Ok(Box::new(Pool2D::new($kind, &Pool2dConfig::parse(cfg)?, cfg.name().into(), single(inputs))?)),
        }
    };
}

pub const MAX_POOLING_2D: Entry = pool_entry!("MaxPooling2D", Kind::Max);
pub const AVERAGE_POOLING_2D: Entry = pool_entry!("AveragePooling2D", Kind::Average);

/// The entry of a global pooling layer.
macro_rules! global_entry {
    ($class:literal, $kind:expr) => {
        Entry {
            class_name: $class,
            arity: Arity::One,
            validate: |cfg| global_config(cfg),
            output_shape: |cfg, inputs| {
                let (_, _, c) = image(cfg.name(), single(inputs))?;
                Ok(if cfg.boolean("keepdims", false)? { vec![1, 1, c] } else { vec![c] })
            },
            build: |cfg, inputs, _| {
                let input = single(inputs);
                let (h, w, c) = image(cfg.name(), input)?;
                let win = Pool2dConfig { pool_size: (h, w), strides: (h, w), same: false };
                let mut layer = Pool2D::new($kind, &win, cfg.name().into(), input)?;
                layer.global = true;
                layer.shapes.output = if cfg.boolean("keepdims", false)? { vec![1, 1, c] } else { vec![c] };
                layer.keepdims = cfg.boolean("keepdims", false)?;
                Ok(Box::new(layer))
            },
        }
    };
}

pub const GLOBAL_MAX_POOLING_2D: Entry = global_entry!("GlobalMaxPooling2D", Kind::Max);
pub const GLOBAL_AVERAGE_POOLING_2D: Entry = global_entry!("GlobalAveragePooling2D", Kind::Average);

fn global_config(cfg: &Cfg) -> Result<Value> {
    cfg.channels_last()?;
    Ok(json!({"name": cfg.name(), "data_format": "channels_last", "keepdims": cfg.boolean("keepdims", false)?}))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Max,
    Average,
}

/// A windowed max or average pooling; the global poolings are one window over the whole image.
pub struct Pool2D {
    kind: Kind,
    cfg: Pool2dConfig,
    shapes: Shapes,
    win: Window,
    global: bool,
    keepdims: bool,
}

/// MaxPooling2D's training record: the flat input index of each output's maximum.
struct Argmax(Vec<u32>);

impl Pool2D {
    fn new(kind: Kind, cfg: &Pool2dConfig, name: String, input_shape: &[usize]) -> Result<Self> {
        let class = if kind == Kind::Max { "MaxPooling2D" } else { "AveragePooling2D" };
        let (win, c) = cfg.window(class, &name, input_shape)?;
        let shapes = Shapes::new(name, input_shape, vec![win.out_h, win.out_w, c]);
        Ok(Pool2D { kind, cfg: cfg.clone(), shapes, win, global: false, keepdims: false })
    }

    /// `(n, oh, ow, c)` as the layer's output shape (the global poolings drop the 1x1).
    fn shaped(&self, y: Tensor) -> Result<Tensor> {
        if !self.global {
            return Ok(y);
        }
        let mut shape = vec![y.dim(0)?];
        shape.extend_from_slice(&self.shapes.output);
        Ok(y.reshape(shape)?)
    }

    /// The output gradient as the kernels' `(n, oh, ow, c)`.
    fn unshaped(&self, grad: &Tensor) -> Result<Tensor> {
        if !self.global {
            return Ok(grad.clone());
        }
        let c = *self.shapes.output.last().unwrap_or(&1);
        Ok(grad.reshape((grad.dim(0)?, 1, 1, c))?)
    }
}

impl Layer for Pool2D {
    fn class_name(&self) -> &'static str {
        match (self.kind, self.global) {
            (Kind::Max, false) => "MaxPooling2D",
            (Kind::Average, false) => "AveragePooling2D",
            (Kind::Max, true) => "GlobalMaxPooling2D",
            (Kind::Average, true) => "GlobalAveragePooling2D",
        }
    }
    shapes_accessors!();
    fn config(&self) -> Value {
        if self.global {
            json!({"name": self.shapes.name, "data_format": "channels_last", "keepdims": self.keepdims})
        } else {
            self.cfg.to_json(&self.shapes.name)
        }
    }

    fn forward_pre(&self, xs: &[Tensor]) -> Result<Tensor> {
        let y = match self.kind {
            Kind::Max => max_pool2d(&xs[0], self.win)?.0,
            Kind::Average => avg_pool2d(&xs[0], self.win)?,
        };
        self.shaped(y)
    }

    fn forward_train(&self, xs: &[Tensor], _activated: bool) -> Result<(Tensor, Extra)> {
        match self.kind {
            Kind::Max => {
                let (y, argmax) = max_pool2d(&xs[0], self.win)?;
                Ok((self.shaped(y)?, Extra::new(Argmax(argmax))))
            }
            Kind::Average => Ok((self.forward_pre(xs)?, Extra::none())),
        }
    }

    fn backward(&self, saved: &Saved, grad: &Tensor, input_grads: &[bool]) -> Result<Gradients> {
        if !input_grads[0] {
            return Ok(Gradients::input(None));
        }
        let grad = self.unshaped(grad)?;
        let x = saved.input();
        let dx = match self.kind {
            Kind::Max => {
                let Some(Argmax(argmax)) = saved.extra.get::<Argmax>() else {
                    return crate::value_err!("{} \"{}\": backward without its saved argmax", self.class_name(), self.name());
                };
                max_pool2d_backward(&grad, argmax, x.shape())?
            }
            Kind::Average => avg_pool2d_backward(&grad, self.win, x.dims())?,
        };
        Ok(Gradients::input(Some(dx)))
    }
}
