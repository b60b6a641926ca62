//! Layers, one module per family, built from Keras-style configs
//! (`{"class_name": "Conv2D", "config": {...}}`) dispatched by class name. Shapes here are per
//! sample, without the batch axis, channels last.

pub mod config;
pub mod conv;
pub mod core;
pub mod pooling;
pub mod regularization;
pub mod reshaping;

use crate::activations::Activation;
use crate::ops::unary::Unary;
use crate::{Error, Result};
use candle_core::{DType, Tensor, Var};
pub use config::Cfg;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use std::sync::Mutex;

/// What every layer provides. `forward_pre` stops before the activation so that the model can give
/// losses the logits of a final softmax/sigmoid (Keras computes cross-entropy from them).
pub trait Layer: Send + Sync {
    fn class_name(&self) -> &'static str;
    fn shapes(&self) -> &Shapes;
    fn name(&self) -> &str {
        &self.shapes().name
    }
    fn input_shape(&self) -> &[usize] {
        &self.shapes().input
    }
    fn output_shape(&self) -> &[usize] {
        &self.shapes().output
    }
    fn forward_pre(&self, x: &Tensor, train: bool) -> Result<Tensor>;
    fn activation(&self) -> Activation {
        Activation::Linear
    }
    /// Trainable weights in Keras order (kernel, then bias).
    fn weights(&self) -> Vec<&Var> {
        Vec::new()
    }
    /// Keras `get_config()`: the arguments that rebuild this layer.
    fn config(&self) -> Value;
    /// The layer's own random stream (a seeded Dropout), saved with the model so that a resumed
    /// `fit` draws what the uninterrupted run would have.
    fn rng(&self) -> Option<&Mutex<ChaCha8Rng>> {
        None
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.activation().apply(&self.forward_pre(x, train)?)
    }
}

/// A built layer's name and per-sample shapes, as `summary()` shows them.
pub struct Shapes {
    pub name: String,
    pub input: Vec<usize>,
    pub output: Vec<usize>,
}

impl Shapes {
    pub fn new(name: String, input: &[usize], output: Vec<usize>) -> Self {
        Shapes { name, input: input.to_vec(), output }
    }
}

/// Every class name `build` knows, for error messages and the Python side.
pub const CLASS_NAMES: &[&str] = &["Dense", "Conv2D", "MaxPooling2D", "Dropout", "Flatten", "Activation"];

/// Checks a config without building (Keras raises for `Dense(units=0)` at construction, before any
/// input shape is known) and returns it normalised, with Keras's defaults filled in.
pub fn validate(class_name: &str, config: &Value) -> Result<Value> {
    let cfg = Cfg::new(class_name, config)?;
    Ok(match class_name {
        "Dense" => core::DenseConfig::parse(&cfg)?.to_json(cfg.name()),
        "Activation" => core::ActivationConfig::parse(&cfg)?.to_json(cfg.name()),
        "Conv2D" => conv::Conv2dConfig::parse(&cfg)?.to_json(cfg.name()),
        "MaxPooling2D" => pooling::Pool2dConfig::parse(&cfg)?.to_json(cfg.name()),
        "Dropout" => regularization::DropoutConfig::parse(&cfg)?.to_json(cfg.name()),
        "Flatten" => reshaping::flatten_config(cfg.name()),
        other => return Err(unknown_layer(other)),
    })
}

/// Builds a layer for a known per-sample input shape.
pub fn build(class_name: &str, config: &Value, input_shape: &[usize], dtype: DType) -> Result<Box<dyn Layer>> {
    let cfg = Cfg::new(class_name, config)?;
    let name = cfg.name().to_string();
    Ok(match class_name {
        "Dense" => Box::new(core::Dense::new(core::DenseConfig::parse(&cfg)?, name, input_shape, dtype)?),
        "Activation" => Box::new(core::ActivationLayer::new(core::ActivationConfig::parse(&cfg)?, name, input_shape)),
        "Conv2D" => Box::new(conv::Conv2D::new(conv::Conv2dConfig::parse(&cfg)?, name, input_shape, dtype)?),
        "MaxPooling2D" => Box::new(pooling::MaxPooling2D::new(pooling::Pool2dConfig::parse(&cfg)?, name, input_shape)?),
        "Dropout" => Box::new(regularization::Dropout::new(regularization::DropoutConfig::parse(&cfg)?, name, input_shape)),
        "Flatten" => Box::new(reshaping::Flatten::new(name, input_shape)),
        other => return Err(unknown_layer(other)),
    })
}

fn unknown_layer(name: &str) -> Error {
    Error::Value(format!("Unknown layer: '{name}'. kandle supports: {}", CLASS_NAMES.join(", ")))
}

/// Keras's error for an input of the wrong rank or size.
pub fn incompatible(layer: &str, expected: &str, found: &[usize]) -> Error {
    Error::Value(format!(
        "Input 0 of layer \"{layer}\" is incompatible with the layer: expected {expected}, found shape={}",
        crate::error::keras_shape(found)
    ))
}

/// A weight as a tensor: tracked for gradients while training, detached for inference so that
/// `predict` builds no backward graph.
pub(crate) fn param(v: &Var, train: bool) -> Tensor {
    if train {
        v.as_tensor().clone()
    } else {
        v.as_tensor().detach()
    }
}

/// The bias as a tensor, or zeros for `use_bias=False` (the fused ops always take one).
pub(crate) fn bias_or_zeros(bias: Option<&Var>, units: usize, like: &Var, train: bool) -> Result<Tensor> {
    Ok(match bias {
        Some(b) => param(b, train),
        None => Tensor::zeros(units, like.dtype(), like.device())?,
    })
}

/// The part of a layer's activation that can be fused into its op (element-wise ones) and the part
/// applied after it (softmax); nothing at all for `forward_pre` (`with_activation` false).
pub(crate) fn split_activation(act: Activation, with_activation: bool) -> (Option<Unary>, Activation) {
    match act {
        Activation::Elementwise(u) if with_activation => (Some(u), Activation::Linear),
        other if with_activation => (None, other),
        _ => (None, Activation::Linear),
    }
}

/// Creates a weight variable from host data.
pub(crate) fn new_var(data: Vec<f32>, shape: &[usize], dtype: DType) -> Result<Var> {
    let t = Tensor::from_vec(data, shape, &candle_core::Device::Cpu)?.to_dtype(dtype)?;
    Ok(Var::from_tensor(&t)?)
}
