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
///
/// Training runs its own pass, not candle's autograd: `forward_train` returns the output and what
/// the layer needs later ([`Extra`]); the model keeps each layer's input and output beside it in
/// [`Saved`] and walks the layers backwards with `backward`. Gradients go straight into the buffers
/// the optimizer reads, with no graph, no zero-filled accumulators and no extra additions.
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
    /// Inference output before the activation.
    fn forward_pre(&self, x: &Tensor) -> Result<Tensor>;
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

    /// Inference output (`training=False` in Keras).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.activation().apply(&self.forward_pre(x)?)
    }

    /// Training output, after the activation when `activated`, and what `backward` will need.
    fn forward_train(&self, x: &Tensor, activated: bool) -> Result<(Tensor, Extra)> {
        let y = if activated { self.forward(x)? } else { self.forward_pre(x)? };
        Ok((y, Extra::None))
    }

    /// The gradients given `grad`, the gradient of the loss with respect to this layer's output
    /// (its pre-activation output when `saved.activated` is false): the input's gradient when
    /// `input_grad`, and one gradient per weight in `weights()` order.
    fn backward(&self, saved: &Saved, grad: &Tensor, input_grad: bool) -> Result<Gradients>;
}

/// What a layer's training forward pass keeps for its backward pass, besides input and output.
pub enum Extra {
    None,
    /// What Conv2D's kernel gradient multiplies: its im2col matrix, or on the Winograd path the
    /// transformed input tiles.
    Cols(Tensor),
    /// MaxPooling2D: the flat input index of each output's maximum.
    Argmax(Vec<u32>),
    /// Dropout's mask, already scaled by 1 / (1 - rate).
    Mask(Tensor),
}

/// One layer's record of a training forward pass.
pub struct Saved {
    pub input: Tensor,
    pub output: Tensor,
    /// Whether `output` went through the layer's activation (the model's last layer stops before
    /// it; the loss takes its gradient from there).
    pub activated: bool,
    pub extra: Extra,
}

impl Saved {
    /// The gradient with respect to the pre-activation output.
    pub fn pre_activation_grad(&self, act: Activation, grad: &Tensor) -> Result<Tensor> {
        if self.activated {
            act.backward(&self.output, grad)
        } else {
            Ok(grad.clone())
        }
    }
}

/// What `backward` returns.
pub struct Gradients {
    pub input: Option<Tensor>,
    pub weights: Vec<Grad>,
}

/// A weight's gradient, computed or still a product: a kernel's gradient is `xᵀ @ dy` (im2col rows
/// or Dense inputs against the output gradient), which plain SGD folds into one GEMM that updates
/// the weight in place, so the gradient itself is never stored.
pub enum Grad {
    Value(Tensor),
    /// `lhsᵀ @ rhs` for 2-D `lhs (m, k)` and `rhs (m, n)`, reshaped to the weight's shape.
    Product { lhs: Tensor, rhs: Tensor },
}

impl Grad {
    /// The gradient as a tensor shaped like `like`.
    pub fn value(&self, like: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Grad::Value(t) => t.clone(),
            Grad::Product { lhs, rhs } => crate::ops::linear::matmul_tn(lhs, rhs)?.reshape(like.shape())?,
        })
    }
}

impl Gradients {
    /// For layers without weights.
    pub fn input(input: Option<Tensor>) -> Self {
        Gradients { input, weights: Vec::new() }
    }

    /// For a kernel and an optional bias (Dense, Conv2D), in `weights()` order.
    pub fn kernel_and_bias(input: Option<Tensor>, kernel: Grad, bias: Option<Tensor>) -> Self {
        Gradients { input, weights: std::iter::once(kernel).chain(bias.map(Grad::Value)).collect() }
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

/// The bias as a tensor, or zeros for `use_bias=False` (the fused ops always take one).
pub(crate) fn bias_or_zeros(bias: Option<&Var>, units: usize, like: &Var) -> Result<Tensor> {
    Ok(match bias {
        Some(b) => b.as_tensor().clone(),
        None => Tensor::zeros(units, like.dtype(), like.device())?,
    })
}

/// The part of a layer's activation that can be fused into its op (element-wise ones) and the part
/// applied after it (softmax); nothing at all before the activation (`activated` false).
pub(crate) fn split_activation(act: Activation, activated: bool) -> (Option<Unary>, Activation) {
    match act {
        Activation::Elementwise(u) if activated => (Some(u), Activation::Linear),
        other if activated => (None, other),
        _ => (None, Activation::Linear),
    }
}

/// Creates a weight variable from host data.
pub(crate) fn new_var(data: Vec<f32>, shape: &[usize], dtype: DType) -> Result<Var> {
    let t = Tensor::from_vec(data, shape, &candle_core::Device::Cpu)?.to_dtype(dtype)?;
    Ok(Var::from_tensor(&t)?)
}
