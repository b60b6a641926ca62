//! Dense and Activation: the layers of a plain dense network.

use super::{
    with_policy, bias_or_zeros, incompatible, new_weight, shapes_accessors, single, split_activation, Arity, Cfg, Entry, Extra, Grad,
    Gradients, Layer, Saved, Shapes,
};
use crate::ops::bf16::Precision;
use crate::ops::linear::{self, linear};
use crate::activations::Activation;
use crate::initializers::Initializer;
use crate::Result;
use candle_core::{DType, Tensor, Var};
use serde_json::{json, Value};

#[derive(Clone, Debug)]
pub struct DenseConfig {
    pub units: usize,
    pub activation: Activation,
    pub use_bias: bool,
    pub kernel_initializer: Initializer,
    pub bias_initializer: Initializer,
    pub precision: Precision,
}

impl DenseConfig {
    pub fn parse(cfg: &Cfg) -> Result<Self> {
        Ok(DenseConfig {
            units: cfg.positive("units")?,
            activation: cfg.activation()?,
            use_bias: cfg.boolean("use_bias", true)?,
            kernel_initializer: cfg.initializer("kernel_initializer", "glorot_uniform")?,
            bias_initializer: cfg.initializer("bias_initializer", "zeros")?,
            precision: cfg.precision()?,
        })
    }

    pub fn to_json(&self, name: &str) -> Value {
        with_policy(json!({
            "name": name, "trainable": true, "units": self.units, "activation": self.activation.name(),
            "use_bias": self.use_bias, "kernel_initializer": self.kernel_initializer.to_json(),
            "bias_initializer": self.bias_initializer.to_json(),
        }), self.precision)
    }
}

pub const DENSE: Entry = Entry {
    class_name: "Dense",
    arity: Arity::One,
    validate: |cfg| Ok(DenseConfig::parse(cfg)?.to_json(cfg.name())),
    output_shape: |cfg, inputs| dense_shape(&DenseConfig::parse(cfg)?, cfg.name(), single(inputs)),
    build: |cfg, inputs, dtype| Ok(Box::new(Dense::new(DenseConfig::parse(cfg)?, cfg.name().into(), single(inputs), dtype)?)),
};

pub const ACTIVATION: Entry = Entry {
    class_name: "Activation",
    arity: Arity::One,
    validate: |cfg| Ok(ActivationConfig::parse(cfg)?.to_json(cfg.name())),
    output_shape: |_, inputs| Ok(single(inputs).to_vec()),
    build: |cfg, inputs, _| {
        Ok(Box::new(ActivationLayer::new(ActivationConfig::parse(cfg)?, cfg.name().into(), single(inputs))))
    },
};

fn dense_shape(cfg: &DenseConfig, name: &str, input_shape: &[usize]) -> Result<Vec<usize>> {
    match input_shape.last() {
        None => Err(incompatible(name, "min_ndim=2", input_shape)),
        Some(0) => Err(incompatible(name, "a non-empty last axis", input_shape)),
        Some(_) => {
            let mut out = input_shape.to_vec();
            *out.last_mut().unwrap() = cfg.units;
            Ok(out)
        }
    }
}

/// `y = activation(x @ kernel + bias)` on the last axis; kernel `(in, units)` as in Keras.
pub struct Dense {
    cfg: DenseConfig,
    shapes: Shapes,
    kernel: Var,
    bias: Option<Var>,
}

impl Dense {
    pub fn new(cfg: DenseConfig, name: String, input_shape: &[usize], dtype: DType) -> Result<Self> {
        let output_shape = dense_shape(&cfg, &name, input_shape)?;
        let fan_in = input_shape[input_shape.len() - 1];
        let units = cfg.units;
        let kernel = new_weight(&name, &cfg.kernel_initializer, &[fan_in, units], (fan_in, units), dtype)?;
        let bias = match cfg.use_bias {
            true => Some(new_weight(&name, &cfg.bias_initializer, &[units], (fan_in, units), dtype)?),
            false => None,
        };
        Ok(Dense { cfg, shapes: Shapes::new(name, input_shape, output_shape), kernel, bias })
    }
}

/// `(rows, last)`: Dense acts on the last axis of inputs of any rank.
fn as_matrix(x: &Tensor) -> Result<Tensor> {
    let dims = x.dims();
    let last = *dims.last().unwrap_or(&1);
    Ok(x.reshape((x.elem_count() / last.max(1), last))?)
}

impl Dense {
    fn compute(&self, x: &Tensor, activated: bool) -> Result<Tensor> {
        let (fused, rest) = split_activation(self.cfg.activation, activated);
        let bias = bias_or_zeros(self.bias.as_ref(), self.cfg.units, &self.kernel)?;
        let y = rest.apply(&linear(&as_matrix(x)?, self.kernel.as_tensor(), &bias, fused, self.cfg.precision)?)?;
        let mut out = x.dims().to_vec();
        *out.last_mut().unwrap() = self.cfg.units;
        Ok(y.reshape(out)?)
    }
}

impl Layer for Dense {
    fn class_name(&self) -> &'static str {
        "Dense"
    }
    shapes_accessors!();
    fn weight_names(&self) -> Vec<&'static str> {
        vec!["kernel", "bias"][..self.weights().len()].to_vec()
    }
    fn activation(&self) -> Activation {
        self.cfg.activation
    }
    fn weights(&self) -> Vec<&Var> {
        std::iter::once(&self.kernel).chain(self.bias.as_ref()).collect()
    }
    fn config(&self) -> Value {
        self.cfg.to_json(&self.shapes.name)
    }

    fn forward_pre(&self, xs: &[Tensor]) -> Result<Tensor> {
        self.compute(&xs[0], false)
    }

    fn forward(&self, xs: &[Tensor]) -> Result<Tensor> {
        self.compute(&xs[0], true)
    }

    fn forward_train(&self, xs: &[Tensor], activated: bool) -> Result<(Tensor, Extra)> {
        Ok((self.compute(&xs[0], activated)?, Extra::none()))
    }

    fn backward(&self, saved: &Saved, grad: &Tensor, input_grads: &[bool]) -> Result<Gradients> {
        let dpre = saved.pre_activation_grad(self.cfg.activation, grad)?;
        let x = saved.input();
        let (dx, dw, db) = linear::backward(&as_matrix(x)?, self.kernel.as_tensor(), &as_matrix(&dpre)?, input_grads[0], self.cfg.precision)?;
        let input = dx.map(|d| d.reshape(x.shape())).transpose()?;
        let dw = Grad::Product { lhs: dw.0, rhs: dw.1, precision: self.cfg.precision };
        Ok(Gradients::kernel_and_bias(input, dw, self.bias.is_some().then_some(db)))
    }
}

#[derive(Clone, Debug)]
pub struct ActivationConfig {
    pub activation: Activation,
}

impl ActivationConfig {
    pub fn parse(cfg: &Cfg) -> Result<Self> {
        Ok(ActivationConfig { activation: cfg.activation()? })
    }
    pub fn to_json(&self, name: &str) -> Value {
        json!({"name": name, "trainable": true, "activation": self.activation.name()})
    }
}

/// `Activation('relu')`: an activation as a layer of its own.
pub struct ActivationLayer {
    cfg: ActivationConfig,
    shapes: Shapes,
}

impl ActivationLayer {
    pub fn new(cfg: ActivationConfig, name: String, input_shape: &[usize]) -> Self {
        ActivationLayer { cfg, shapes: Shapes::new(name, input_shape, input_shape.to_vec()) }
    }
}

impl Layer for ActivationLayer {
    fn class_name(&self) -> &'static str {
        "Activation"
    }
    shapes_accessors!();
    fn activation(&self) -> Activation {
        self.cfg.activation
    }
    fn config(&self) -> Value {
        self.cfg.to_json(&self.shapes.name)
    }
    fn forward_pre(&self, xs: &[Tensor]) -> Result<Tensor> {
        Ok(xs[0].clone())
    }

    fn backward(&self, saved: &Saved, grad: &Tensor, _input_grads: &[bool]) -> Result<Gradients> {
        Ok(Gradients::input(Some(saved.pre_activation_grad(self.cfg.activation, grad)?)))
    }
}
