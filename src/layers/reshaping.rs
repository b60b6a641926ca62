//! Flatten, in channels-last order, so Keras Dense weights after a Flatten load unchanged.

use super::Layer;
use crate::Result;
use candle_core::Tensor;
use serde_json::{json, Value};

pub fn flatten_config(name: &str) -> Value {
    json!({"name": name, "trainable": true, "data_format": "channels_last"})
}

pub struct Flatten {
    name: String,
    input_shape: Vec<usize>,
    output_shape: Vec<usize>,
}

impl Flatten {
    pub fn new(name: String, input_shape: &[usize]) -> Self {
        Flatten { name, input_shape: input_shape.to_vec(), output_shape: vec![input_shape.iter().product()] }
    }
}

impl Layer for Flatten {
    fn class_name(&self) -> &'static str {
        "Flatten"
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }
    fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }
    fn config(&self) -> Value {
        flatten_config(&self.name)
    }
    fn forward_pre(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
        Ok(x.reshape((x.dim(0)?, self.output_shape[0]))?)
    }
}
