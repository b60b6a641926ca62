//! Conv2D, channels last, as im2col + one GEMM against the Keras kernel `(kh, kw, in, out)`.

use super::{
    with_policy, bias_or_zeros, image, incompatible, new_weight, shapes_accessors, single, split_activation, Arity, Cfg, Entry, Extra,
    Gradients, Layer, Saved, Shapes,
};
use crate::activations::Activation;
use crate::error::keras_shape;
use crate::initializers::Initializer;
use crate::ops::bf16::Precision;
use crate::ops::conv::{conv2d, conv2d_backward};
use crate::ops::Window;
use crate::{Error, Result};
use candle_core::{DType, Tensor, Var};
use serde_json::{json, Value};

#[derive(Clone, Debug)]
pub struct Conv2dConfig {
    pub filters: usize,
    pub kernel_size: (usize, usize),
    pub strides: (usize, usize),
    pub same: bool,
    pub activation: Activation,
    pub use_bias: bool,
    pub kernel_initializer: Initializer,
    pub bias_initializer: Initializer,
    pub precision: Precision,
}

impl Conv2dConfig {
    pub fn parse(cfg: &Cfg) -> Result<Self> {
        cfg.channels_last()?;
        if let Some(d) = cfg.pair("dilation_rate")? {
            if d != (1, 1) {
                return crate::value_err!("Conv2D: dilation_rate other than 1 is not supported yet, got {d:?}");
            }
        }
        Ok(Conv2dConfig {
            filters: cfg.positive("filters")?,
            kernel_size: cfg.required_pair("kernel_size")?,
            strides: cfg.pair("strides")?.unwrap_or((1, 1)),
            same: cfg.padding()?,
            activation: cfg.activation()?,
            use_bias: cfg.boolean("use_bias", true)?,
            kernel_initializer: cfg.initializer("kernel_initializer", "glorot_uniform")?,
            bias_initializer: cfg.initializer("bias_initializer", "zeros")?,
            precision: cfg.precision()?,
        })
    }

    pub fn to_json(&self, name: &str) -> Value {
        with_policy(json!({
            "name": name, "trainable": true, "filters": self.filters,
            "kernel_size": [self.kernel_size.0, self.kernel_size.1],
            "strides": [self.strides.0, self.strides.1],
            "padding": if self.same { "same" } else { "valid" }, "data_format": "channels_last",
            "dilation_rate": [1, 1], "activation": self.activation.name(), "use_bias": self.use_bias,
            "kernel_initializer": self.kernel_initializer.to_json(),
            "bias_initializer": self.bias_initializer.to_json(),
        }), self.precision)
    }
}

pub const CONV2D: Entry = Entry {
    class_name: "Conv2D",
    arity: Arity::One,
    validate: |cfg| Ok(Conv2dConfig::parse(cfg)?.to_json(cfg.name())),
    output_shape: |cfg, inputs| {
        let c = Conv2dConfig::parse(cfg)?;
        let (win, _) = conv_window(&c, cfg.name(), single(inputs))?;
        Ok(vec![win.out_h, win.out_w, c.filters])
    },
    build: |cfg, inputs, dtype| Ok(Box::new(Conv2D::new(Conv2dConfig::parse(cfg)?, cfg.name().into(), single(inputs), dtype)?)),
};

/// The convolution's geometry on this input and the input's channel count, or Keras's error.
fn conv_window(cfg: &Conv2dConfig, name: &str, input_shape: &[usize]) -> Result<(Window, usize)> {
    let (h, w, c) = image(name, input_shape)?;
    let win = Window::new((h, w), cfg.kernel_size, cfg.strides, cfg.same).ok_or_else(|| {
        Error::Value(format!(
            "Layer \"{name}\" (Conv2D): kernel_size {:?} is larger than its input {} with padding='valid'; \
             the output would be empty",
            cfg.kernel_size,
            keras_shape(input_shape)
        ))
    })?;
    if c == 0 {
        return Err(incompatible(name, "at least one channel", input_shape));
    }
    Ok((win, c))
}

pub struct Conv2D {
    cfg: Conv2dConfig,
    shapes: Shapes,
    win: Window,
    kernel: Var,
    bias: Option<Var>,
}

impl Conv2D {
    pub fn new(cfg: Conv2dConfig, name: String, input_shape: &[usize], dtype: DType) -> Result<Self> {
        let (win, c) = conv_window(&cfg, &name, input_shape)?;
        let (kh, kw) = cfg.kernel_size;
        let f = cfg.filters;
        let (fan_in, fan_out) = (kh * kw * c, kh * kw * f);
        let kernel = new_weight(&name, &cfg.kernel_initializer, &[kh, kw, c, f], (fan_in, fan_out), dtype)?;
        let bias = match cfg.use_bias {
            true => Some(new_weight(&name, &cfg.bias_initializer, &[f], (fan_in, fan_out), dtype)?),
            false => None,
        };
        let shapes = Shapes::new(name, input_shape, vec![win.out_h, win.out_w, f]);
        Ok(Conv2D { cfg, shapes, win, kernel, bias })
    }
}

impl Conv2D {
    /// One fused op for conv + bias + element-wise activation; a softmax is applied after it. With
    /// `keep_cols` (training) also the im2col matrix, when the op keeps one.
    fn compute(&self, x: &Tensor, activated: bool, keep_cols: bool) -> Result<(Tensor, Option<Tensor>)> {
        let (fused, rest) = split_activation(self.cfg.activation, activated);
        let bias = bias_or_zeros(self.bias.as_ref(), self.cfg.filters, &self.kernel)?;
        let (y, cols) = conv2d(x, self.kernel.as_tensor(), &bias, self.win, fused, keep_cols, self.cfg.precision)?;
        Ok((rest.apply(&y)?, cols))
    }
}

impl Layer for Conv2D {
    fn class_name(&self) -> &'static str {
        "Conv2D"
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
        Ok(self.compute(&xs[0], false, false)?.0)
    }

    fn forward(&self, xs: &[Tensor]) -> Result<Tensor> {
        Ok(self.compute(&xs[0], true, false)?.0)
    }

    /// Keeps what the kernel gradient multiplies: the im2col matrix, or on the Winograd path the
    /// transformed input tiles.
    fn forward_train(&self, xs: &[Tensor], activated: bool) -> Result<(Tensor, Extra)> {
        let (y, cols) = self.compute(&xs[0], activated, true)?;
        Ok((y, cols.map(Extra::new).unwrap_or_else(Extra::none)))
    }

    fn backward(&self, saved: &Saved, grad: &Tensor, input_grads: &[bool]) -> Result<Gradients> {
        let cols = saved.extra.get::<Tensor>();
        let dpre = saved.pre_activation_grad(self.cfg.activation, grad)?;
        let (dx, dw, db) = conv2d_backward(saved.input(), cols, self.kernel.as_tensor(), &dpre, self.win, input_grads[0], self.cfg.precision)?;
        Ok(Gradients::kernel_and_bias(dx, dw, self.bias.is_some().then_some(db)))
    }
}
