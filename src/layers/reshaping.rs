//! Flatten, in channels-last order, so Keras Dense weights after a Flatten load unchanged.

use super::{Gradients, Layer, Saved, Shapes};
use crate::Result;
use candle_core::Tensor;
use serde_json::{json, Value};

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
    fn shapes(&self) -> &Shapes {
        &self.shapes
    }
    fn config(&self) -> Value {
        flatten_config(&self.shapes.name)
    }
    fn forward_pre(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.reshape((x.dim(0)?, self.shapes.output[0]))?)
    }

    fn backward(&self, saved: &Saved, grad: &Tensor, _input_grad: bool) -> Result<Gradients> {
        Ok(Gradients::input(Some(grad.reshape(saved.input.shape())?)))
    }
}
