//! MaxPooling2D, channels last, TensorFlow's padding and flooring.

use super::{incompatible, Cfg, Extra, Gradients, Layer, Saved, Shapes};
use crate::error::keras_shape;
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
}

pub struct MaxPooling2D {
    cfg: Pool2dConfig,
    shapes: Shapes,
    win: Window,
}

impl MaxPooling2D {
    pub fn new(cfg: Pool2dConfig, name: String, input_shape: &[usize]) -> Result<Self> {
        let &[h, w, c] = input_shape else {
            return Err(incompatible(&name, "ndim=4 (batch, rows, cols, channels)", input_shape));
        };
        let win = Window::new((h, w), cfg.pool_size, cfg.strides, cfg.same).ok_or_else(|| {
            Error::Value(format!(
                "Layer \"{name}\" (MaxPooling2D): pool_size {:?} is larger than its input {} with \
                 padding='valid'; the output would be empty",
                cfg.pool_size,
                keras_shape(input_shape)
            ))
        })?;
        let shapes = Shapes::new(name, input_shape, vec![win.out_h, win.out_w, c]);
        Ok(MaxPooling2D { cfg, shapes, win })
    }
}

impl Layer for MaxPooling2D {
    fn class_name(&self) -> &'static str {
        "MaxPooling2D"
    }
    fn shapes(&self) -> &Shapes {
        &self.shapes
    }
    fn config(&self) -> Value {
        self.cfg.to_json(&self.shapes.name)
    }
    fn forward_pre(&self, x: &Tensor) -> Result<Tensor> {
        Ok(max_pool2d(x, self.win)?.0)
    }

    fn forward_train(&self, x: &Tensor, _activated: bool) -> Result<(Tensor, Extra)> {
        let (y, argmax) = max_pool2d(x, self.win)?;
        Ok((y, Extra::Argmax(argmax)))
    }

    fn backward(&self, saved: &Saved, grad: &Tensor, input_grad: bool) -> Result<Gradients> {
        let Extra::Argmax(argmax) = &saved.extra else {
            return crate::value_err!("MaxPooling2D \"{}\": backward without its saved argmax", self.name());
        };
        let dx = if input_grad { Some(max_pool2d_backward(grad, argmax, saved.input.shape())?) } else { None };
        Ok(Gradients::input(dx))
    }
}
