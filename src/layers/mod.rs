//! Layers, one module per family, built from Keras-style configs
//! (`{"class_name": "Conv2D", "config": {...}}`) through one registry ([`REGISTRY`]) that the Python
//! side reads too. Shapes here are per sample, without the batch axis, channels last. A layer takes
//! a list of inputs (one for most, several for the merging layers) and gives one output.

pub mod augment;
pub mod config;
pub mod conv;
pub mod core;
pub mod custom;
pub mod merging;
pub mod normalization;
pub mod pooling;
pub mod preprocessing;
pub mod regularization;
pub mod reshaping;

use crate::activations::Activation;
use crate::error::keras_shape;
use crate::ops::unary::Unary;
use crate::{Error, Result};
use candle_core::{DType, Tensor, Var};
pub use config::Cfg;
pub use crate::ops::grad::Grad;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use std::any::Any;
use std::sync::Mutex;

/// What every layer provides. `forward_pre` stops before the activation so that the model can give
/// losses the logits of a final softmax/sigmoid (Keras computes cross-entropy from them).
///
/// Training runs its own pass, not candle's autograd: `forward_train` returns the output and what
/// the layer needs later ([`Extra`], a value of the layer's own type); the model keeps each call's
/// inputs and output beside it in [`Saved`] and walks the calls backwards with `backward`.
pub trait Layer: Send + Sync {
    fn class_name(&self) -> &'static str;
    fn shapes(&self) -> &Shapes;
    fn shapes_mut(&mut self) -> &mut Shapes;
    fn name(&self) -> &str {
        &self.shapes().name
    }
    /// The first input's per-sample shape.
    fn input_shape(&self) -> &[usize] {
        &self.shapes().inputs[0]
    }
    fn output_shape(&self) -> &[usize] {
        &self.shapes().output
    }
    /// Keras's `layer.trainable`: a frozen layer's weights are not trained, and a frozen
    /// BatchNormalization runs in inference mode.
    fn trainable(&self) -> bool {
        self.shapes().trainable
    }
    /// Inference output before the activation.
    fn forward_pre(&self, xs: &[Tensor]) -> Result<Tensor>;
    fn activation(&self) -> Activation {
        Activation::Linear
    }
    /// Weights that gradients train (unless the layer is frozen), in Keras order (kernel, bias).
    fn weights(&self) -> Vec<&Var> {
        Vec::new()
    }
    /// Variables that are not trained by gradients (BatchNormalization's moving statistics); Keras
    /// lists them after the trainable ones in `get_weights()`.
    fn state(&self) -> Vec<&Var> {
        Vec::new()
    }
    /// Every variable in Keras's `get_weights()` order: `weights()` then `state()` for the built-in
    /// layers; a custom layer lists its own, then each sublayer's, as Keras tracks them.
    fn variables(&self) -> Vec<&Var> {
        self.weights().into_iter().chain(self.state()).collect()
    }
    /// Keras's variable names, in `variables()` order (`kernel`, `bias`, `gamma`, ...).
    fn weight_names(&self) -> Vec<&'static str> {
        Vec::new()
    }
    /// Keras `get_config()`, without `name` and `trainable` (the model adds those).
    fn config(&self) -> Value;
    /// The layer's own random stream (Dropout), saved with the model so that a resumed `fit`
    /// draws what the uninterrupted run would have.
    fn rng(&self) -> Option<&Mutex<ChaCha8Rng>> {
        None
    }

    /// Inference output (`training=False` in Keras).
    fn forward(&self, xs: &[Tensor]) -> Result<Tensor> {
        self.activation().apply(&self.forward_pre(xs)?)
    }

    /// Training output, after the activation when `activated`, and what `backward` will need.
    fn forward_train(&self, xs: &[Tensor], activated: bool) -> Result<(Tensor, Extra)> {
        let y = if activated { self.forward(xs)? } else { self.forward_pre(xs)? };
        Ok((y, Extra::none()))
    }

    /// The gradients given `grad`, the gradient of the loss with respect to this call's output
    /// (its pre-activation output when `saved.activated` is false): input `i`'s gradient where
    /// `input_grads[i]`, and one gradient per weight in `weights()` order.
    fn backward(&self, saved: &Saved, grad: &Tensor, input_grads: &[bool]) -> Result<Gradients>;
}

/// What a layer's training forward pass keeps for its backward pass, besides inputs and output: a
/// value of the layer's own type (Conv2D's im2col matrix, MaxPooling2D's argmax, Dropout's mask),
/// so that a new layer family defines its own and edits nothing here.
pub struct Extra(Option<Box<dyn Any + Send + Sync>>);

impl Extra {
    pub fn none() -> Self {
        Extra(None)
    }
    pub fn new<T: Any + Send + Sync>(value: T) -> Self {
        Extra(Some(Box::new(value)))
    }
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.0.as_ref().and_then(|b| b.downcast_ref())
    }
}

/// One layer call's record of a training forward pass.
pub struct Saved {
    pub inputs: Vec<Tensor>,
    pub output: Tensor,
    /// Whether `output` went through the layer's activation (the call giving the model's output
    /// stops before it; the loss takes its gradient from there).
    pub activated: bool,
    pub extra: Extra,
}

impl Saved {
    pub fn input(&self) -> &Tensor {
        &self.inputs[0]
    }

    /// The gradient with respect to the pre-activation output.
    pub fn pre_activation_grad(&self, act: Activation, grad: &Tensor) -> Result<Tensor> {
        if self.activated {
            act.backward(&self.output, grad)
        } else {
            Ok(grad.clone())
        }
    }
}

/// What `backward` returns: one entry per input (None where not asked for), one per weight.
pub struct Gradients {
    pub inputs: Vec<Option<Tensor>>,
    pub weights: Vec<Grad>,
}

impl Gradients {
    /// For single-input layers without weights.
    pub fn input(input: Option<Tensor>) -> Self {
        Gradients { inputs: vec![input], weights: Vec::new() }
    }

    /// For a kernel and an optional bias (Dense, Conv2D), in `weights()` order.
    pub fn kernel_and_bias(input: Option<Tensor>, kernel: Grad, bias: Option<Tensor>) -> Self {
        Gradients { inputs: vec![input], weights: std::iter::once(kernel).chain(bias.map(Grad::Value)).collect() }
    }
}

/// A built layer's name, per-sample shapes (one per input) and trainable flag.
pub struct Shapes {
    pub name: String,
    pub inputs: Vec<Vec<usize>>,
    pub output: Vec<usize>,
    pub trainable: bool,
    /// The layer's dtype policy as the precision of its products (kept by every layer, so that
    /// its config says it; only Conv2D and Dense multiply).
    pub precision: crate::ops::bf16::Precision,
}

impl Shapes {
    pub fn new(name: String, input: &[usize], output: Vec<usize>) -> Self {
        Shapes::multi(name, &[input.to_vec()], output)
    }

    pub fn multi(name: String, inputs: &[Vec<usize>], output: Vec<usize>) -> Self {
        Shapes { name, inputs: inputs.to_vec(), output, trainable: true, precision: Default::default() }
    }
}

/// How many inputs a layer family takes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    One,
    /// Two or more (the merging layers); `Subtract` takes exactly two and checks that itself.
    Many,
    /// As many as the layer was recorded with (a `kandle.ops` layer checks that itself).
    Any,
}

/// One layer family's entry in the registry: its Keras class name, how many inputs it takes, the
/// check of its config (defaults filled in, as `get_config()` shows it), its output shape (the
/// same checks as building, without making weights) and its constructor.
pub struct Entry {
    pub class_name: &'static str,
    pub arity: Arity,
    pub validate: fn(&Cfg) -> Result<Value>,
    pub output_shape: ShapeFn,
    pub build: BuildFn,
}

/// A family's output shape from its config and its inputs' per-sample shapes.
pub type ShapeFn = fn(&Cfg, &[Vec<usize>]) -> Result<Vec<usize>>;
/// A family's constructor.
pub type BuildFn = fn(&Cfg, &[Vec<usize>], DType) -> Result<Box<dyn Layer>>;

/// Every layer family kandle implements; Python's `kandle.layers` is checked against it.
pub const REGISTRY: &[Entry] = &[
    core::DENSE,
    core::ACTIVATION,
    conv::CONV2D,
    pooling::MAX_POOLING_2D,
    pooling::AVERAGE_POOLING_2D,
    pooling::GLOBAL_MAX_POOLING_2D,
    pooling::GLOBAL_AVERAGE_POOLING_2D,
    regularization::DROPOUT,
    reshaping::FLATTEN,
    reshaping::ZERO_PADDING_2D,
    normalization::BATCH_NORMALIZATION,
    merging::ADD,
    merging::SUBTRACT,
    merging::MULTIPLY,
    merging::AVERAGE,
    merging::MAXIMUM,
    merging::MINIMUM,
    merging::CONCATENATE,
    preprocessing::RESCALING,
    preprocessing::CENTER_CROP,
    preprocessing::RANDOM_FLIP,
    preprocessing::RANDOM_CONTRAST,
    augment::RANDOM_TRANSLATION,
    augment::RANDOM_ROTATION,
    augment::RANDOM_ZOOM,
    augment::RANDOM_CROP,
];

/// Every class name the registry knows, for error messages and the Python side.
pub fn class_names() -> Vec<&'static str> {
    REGISTRY.iter().map(|e| e.class_name).collect()
}

/// Whether a layer family takes one input (its call records one tensor, not a list).
pub fn takes_one_input(class_name: &str) -> bool {
    entry(class_name).map(|e| e.arity == Arity::One).unwrap_or(true)
}

/// The registry entry for a config: a recorded `kandle.ops` layer whatever its class name, else
/// the family of that name.
fn entry_for(class_name: &str, config: &Value) -> Result<&'static Entry> {
    if config.get(custom::GRAPH_KEY).is_some_and(|g| !g.is_null()) {
        return Ok(&custom::CUSTOM);
    }
    entry(class_name)
}

fn entry(class_name: &str) -> Result<&'static Entry> {
    REGISTRY.iter().find(|e| e.class_name == class_name).ok_or_else(|| {
        Error::Value(format!(
            "Unknown layer: '{class_name}'. kandle does not implement it yet; kandle supports: {}",
            class_names().join(", ")
        ))
    })
}

/// Checks a config without building (Keras raises for `Dense(units=0)` at construction, before any
/// input shape is known) and returns it normalised, with Keras's defaults filled in.
pub fn validate(class_name: &str, config: &Value) -> Result<Value> {
    let e = entry_for(class_name, config)?;
    let cfg = Cfg::new(class_name, config)?;
    let mut v = (e.validate)(&cfg)?;
    v["name"] = Value::String(cfg.name().to_string());
    v["trainable"] = Value::Bool(cfg.boolean("trainable", true)?);
    Ok(with_policy(v, cfg.precision()?))
}

fn check_arity(e: &Entry, cfg: &Cfg, inputs: &[Vec<usize>]) -> Result<()> {
    match (e.arity, inputs.len()) {
        (Arity::One, 1) => Ok(()),
        (Arity::Many, n) if n >= 2 => Ok(()),
        (Arity::Any, _) => Ok(()),
        (Arity::One, n) => crate::value_err!(
            "Layer \"{}\" ({}) expects 1 input, but it received {n} input tensors",
            cfg.name(),
            e.class_name
        ),
        (Arity::Many, n) => crate::value_err!(
            "A merge layer should be called on a list of at least 2 inputs. Layer \"{}\" ({}) received {n} input",
            cfg.name(),
            e.class_name
        ),
    }
}

/// The largest tensor (per sample) or weight kandle allocates, in elements (4 GiB of f32): past it a
/// layer is refused with a ValueError, where the allocation would abort the process.
pub const MAX_ELEMENTS: usize = 1 << 30;

/// The element count of `shape`, or an error naming the layer when it passes `MAX_ELEMENTS`.
pub(crate) fn checked_size(layer: &str, what: &str, shape: &[usize]) -> Result<usize> {
    let n = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    match n {
        Some(n) if n <= MAX_ELEMENTS => Ok(n),
        _ => crate::value_err!(
            "Layer \"{layer}\": its {what} of shape {shape:?} is too large (more than {MAX_ELEMENTS} elements)"
        ),
    }
}

/// The per-sample output shape of a call on inputs of these shapes; the errors building would give.
pub fn output_shape(class_name: &str, config: &Value, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
    let e = entry_for(class_name, config)?;
    let cfg = Cfg::new(class_name, config)?;
    check_arity(e, &cfg, inputs)?;
    let out = (e.output_shape)(&cfg, inputs)?;
    checked_size(cfg.name(), "output (per sample)", &out)?;
    Ok(out)
}

/// Builds a layer for known per-sample input shapes.
pub fn build(class_name: &str, config: &Value, inputs: &[Vec<usize>], dtype: DType) -> Result<Box<dyn Layer>> {
    let e = entry_for(class_name, config)?;
    let cfg = Cfg::new(class_name, config)?;
    check_arity(e, &cfg, inputs)?;
    checked_size(cfg.name(), "output (per sample)", &(e.output_shape)(&cfg, inputs)?)?;
    let mut layer = (e.build)(&cfg, inputs, dtype)?;
    layer.shapes_mut().trainable = cfg.boolean("trainable", true)?;
    layer.shapes_mut().precision = cfg.precision()?;
    Ok(layer)
}

/// Keras's error for an input of the wrong rank or size.
pub fn incompatible(layer: &str, expected: &str, found: &[usize]) -> Error {
    Error::Value(format!(
        "Input 0 of layer \"{layer}\" is incompatible with the layer: expected {expected}, found shape={}",
        keras_shape(found)
    ))
}

/// The one input of a single-input layer.
pub(crate) fn single(inputs: &[Vec<usize>]) -> &[usize] {
    &inputs[0]
}

/// `(h, w, c)` of an image input, or Keras's ndim error.
pub(crate) fn image(name: &str, input: &[usize]) -> Result<(usize, usize, usize)> {
    match *input {
        [h, w, c] => Ok((h, w, c)),
        _ => Err(incompatible(name, "ndim=4 (batch, rows, cols, channels)", input)),
    }
}

/// The bias as a tensor, or zeros for `use_bias=False` (the fused ops always take one).
pub(crate) fn bias_or_zeros(bias: Option<&Var>, units: usize, like: &Var) -> Result<Tensor> {
    Ok(match bias {
        Some(b) => b.as_tensor().clone(),
        None => Tensor::zeros(units, like.dtype(), like.device())?,
    })
}

/// A layer's config with its dtype policy where it is not the default float32 (kandle's configs
/// leave the default out, as they always have).
pub(crate) fn with_policy(mut config: Value, precision: crate::ops::bf16::Precision) -> Value {
    if precision == crate::ops::bf16::Precision::Bf16 {
        config["dtype"] = Value::from("mixed_bfloat16");
    }
    config
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

/// A weight of `shape` drawn from `init` (checked against `MAX_ELEMENTS` before anything is drawn).
pub(crate) fn new_weight(layer: &str, init: &crate::initializers::Initializer, shape: &[usize], fans: (usize, usize), dtype: DType) -> Result<Var> {
    checked_size(layer, "weight", shape)?;
    new_var(init.sample(shape, fans.0, fans.1)?, shape, dtype)
}

/// Creates a weight variable from host data.
pub(crate) fn new_var(data: Vec<f32>, shape: &[usize], dtype: DType) -> Result<Var> {
    let t = Tensor::from_vec(data, shape, &candle_core::Device::Cpu)?.to_dtype(dtype)?;
    Ok(Var::from_tensor(&t)?)
}

/// The `Shapes` boilerplate of a layer struct with a `shapes` field.
macro_rules! shapes_accessors {
    () => {
        fn shapes(&self) -> &$crate::layers::Shapes {
            &self.shapes
        }
        fn shapes_mut(&mut self) -> &mut $crate::layers::Shapes {
            &mut self.shapes
        }
    };
}
pub(crate) use shapes_accessors;

/// A built layer's Keras config with its current name and trainable flag.
pub fn config_of(layer: &dyn Layer) -> Value {
    let mut v = layer.config();
    v["name"] = Value::String(layer.name().to_string());
    v["trainable"] = Value::Bool(layer.trainable());
    with_policy(v, layer.shapes().precision)
}
