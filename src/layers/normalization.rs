//! BatchNormalization over the channel (last) axis, Keras 3's semantics: batch mean and biased
//! variance while training, moving statistics updated as `moving = moving * momentum + batch *
//! (1 - momentum)`, moving statistics at inference and whenever the layer is frozen. gamma and
//! beta are trainable weights; the moving statistics are non-trainable state the optimizer never
//! sees.

use super::{new_var, shapes_accessors, single, Arity, Cfg, Entry, Extra, Grad, Gradients, Layer, Saved, Shapes};
use crate::initializers::Initializer;
use crate::ops::batchnorm::{batch_norm_backward, batch_norm_infer, batch_norm_train, BnTrain};
use crate::{Error, Result};
use candle_core::{DType, Tensor, Var};
use serde_json::{json, Value};

pub const BATCH_NORMALIZATION: Entry = Entry {
    class_name: "BatchNormalization",
    arity: Arity::One,
    validate: |cfg| Ok(BnConfig::parse(cfg)?.to_json(cfg.name())),
    output_shape: |cfg, inputs| {
        BnConfig::parse(cfg)?.check_axis(cfg.name(), single(inputs))?;
        Ok(single(inputs).to_vec())
    },
    build: |cfg, inputs, dtype| Ok(Box::new(BatchNormalization::new(BnConfig::parse(cfg)?, cfg.name().into(), single(inputs), dtype)?)),
};

#[derive(Clone, Debug)]
pub struct BnConfig {
    pub axis: i64,
    pub momentum: f64,
    pub epsilon: f64,
    pub center: bool,
    pub scale: bool,
    pub beta_initializer: Initializer,
    pub gamma_initializer: Initializer,
    pub moving_mean_initializer: Initializer,
    pub moving_variance_initializer: Initializer,
}

impl BnConfig {
    pub fn parse(cfg: &Cfg) -> Result<Self> {
        let axis = match cfg.raw("axis") {
            Some(Value::Array(a)) if a.len() == 1 => a[0].as_i64().unwrap_or(i64::MAX),
            _ => cfg.int("axis", -1)?,
        };
        let epsilon = cfg.float("epsilon", 1e-3)?;
        if epsilon.is_nan() || epsilon <= 0.0 {
            return crate::value_err!("BatchNormalization: `epsilon` must be positive, got {epsilon}");
        }
        for key in ["beta_regularizer", "gamma_regularizer", "beta_constraint", "gamma_constraint"] {
            if let Some(v) = cfg.raw(key) {
                return crate::value_err!("BatchNormalization: `{key}` is not supported by kandle yet (got {v})");
            }
        }
        if cfg.boolean("synchronized", false)? || cfg.boolean("renorm", false)? {
            return crate::value_err!("BatchNormalization: `synchronized` and `renorm` are not supported by kandle yet");
        }
        Ok(BnConfig {
            axis,
            momentum: cfg.float("momentum", 0.99)?,
            epsilon,
            center: cfg.boolean("center", true)?,
            scale: cfg.boolean("scale", true)?,
            beta_initializer: cfg.initializer("beta_initializer", "zeros")?,
            gamma_initializer: cfg.initializer("gamma_initializer", "ones")?,
            moving_mean_initializer: cfg.initializer("moving_mean_initializer", "zeros")?,
            moving_variance_initializer: cfg.initializer("moving_variance_initializer", "ones")?,
        })
    }

    pub fn to_json(&self, name: &str) -> Value {
        json!({
            "name": name, "trainable": true, "axis": self.axis, "momentum": self.momentum, "epsilon": self.epsilon,
            "center": self.center, "scale": self.scale,
            "beta_initializer": self.beta_initializer.to_json(), "gamma_initializer": self.gamma_initializer.to_json(),
            "moving_mean_initializer": self.moving_mean_initializer.to_json(),
            "moving_variance_initializer": self.moving_variance_initializer.to_json(),
            "beta_regularizer": null, "gamma_regularizer": null, "beta_constraint": null, "gamma_constraint": null,
            "synchronized": false,
        })
    }

    /// Normalising over the last axis is what kandle implements (`axis=-1`, or `axis=3` on images
    /// as the ResNet assignment writes it); another axis is refused, not silently moved.
    fn check_axis(&self, name: &str, input: &[usize]) -> Result<usize> {
        let rank = input.len() as i64 + 1;
        let axis = if self.axis < 0 { self.axis + rank } else { self.axis };
        if axis < 1 || axis >= rank {
            return crate::value_err!(
                "Layer \"{name}\" (BatchNormalization): invalid axis={} for an input of rank {rank}",
                self.axis
            );
        }
        if axis != rank - 1 {
            return crate::value_err!(
                "Layer \"{name}\" (BatchNormalization): kandle does not implement normalising over axis={} yet; \
                 it normalises over the last (channels) axis, axis=-1",
                self.axis
            );
        }
        Ok(input[input.len() - 1])
    }
}

pub struct BatchNormalization {
    cfg: BnConfig,
    shapes: Shapes,
    gamma: Option<Var>,
    beta: Option<Var>,
    moving_mean: Var,
    moving_variance: Var,
}

impl BatchNormalization {
    pub fn new(cfg: BnConfig, name: String, input_shape: &[usize], dtype: DType) -> Result<Self> {
        let c = cfg.check_axis(&name, input_shape)?;
        let var = |init: &Initializer| new_var(init.sample(&[c], c, c)?, &[c], dtype);
        Ok(BatchNormalization {
            gamma: if cfg.scale { Some(var(&cfg.gamma_initializer)?) } else { None },
            beta: if cfg.center { Some(var(&cfg.beta_initializer)?) } else { None },
            moving_mean: var(&cfg.moving_mean_initializer)?,
            moving_variance: var(&cfg.moving_variance_initializer)?,
            shapes: Shapes::new(name, input_shape, input_shape.to_vec()),
            cfg,
        })
    }

    fn infer(&self, x: &Tensor) -> Result<Tensor> {
        Ok(batch_norm_infer(
            x,
            self.gamma.as_ref().map(|v| v.as_tensor()),
            self.beta.as_ref().map(|v| v.as_tensor()),
            self.moving_mean.as_tensor(),
            self.moving_variance.as_tensor(),
            self.cfg.epsilon,
        )?)
    }

    /// `moving = moving * momentum + batch * (1 - momentum)`.
    fn update_moving(&self, moving: &Var, batch: &Tensor) -> Result<()> {
        let m = self.cfg.momentum;
        moving.set(&moving.as_tensor().affine(m, 0.0)?.add(&batch.to_dtype(moving.dtype())?.affine(1.0 - m, 0.0)?)?)?;
        Ok(())
    }
}

impl Layer for BatchNormalization {
    fn class_name(&self) -> &'static str {
        "BatchNormalization"
    }
    shapes_accessors!();
    fn weights(&self) -> Vec<&Var> {
        self.gamma.iter().chain(self.beta.iter()).collect()
    }
    fn state(&self) -> Vec<&Var> {
        vec![&self.moving_mean, &self.moving_variance]
    }
    fn weight_names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.gamma.is_some() {
            names.push("gamma");
        }
        if self.beta.is_some() {
            names.push("beta");
        }
        names.extend(["moving_mean", "moving_variance"]);
        names
    }
    fn config(&self) -> Value {
        self.cfg.to_json(&self.shapes.name)
    }

    fn forward_pre(&self, xs: &[Tensor]) -> Result<Tensor> {
        self.infer(&xs[0])
    }

    /// Batch statistics and a moving-statistics update, unless frozen: a frozen layer runs in
    /// inference mode (Keras's rule for `trainable=False`).
    fn forward_train(&self, xs: &[Tensor], _activated: bool) -> Result<(Tensor, Extra)> {
        if !self.trainable() {
            return Ok((self.infer(&xs[0])?, Extra::none()));
        }
        let t = batch_norm_train(
            &xs[0],
            self.gamma.as_ref().map(|v| v.as_tensor()),
            self.beta.as_ref().map(|v| v.as_tensor()),
            self.cfg.epsilon,
        )?;
        self.update_moving(&self.moving_mean, &t.mean)?;
        self.update_moving(&self.moving_variance, &t.var)?;
        let y = t.y.clone();
        Ok((y, Extra::new(t)))
    }

    fn backward(&self, saved: &Saved, grad: &Tensor, input_grads: &[bool]) -> Result<Gradients> {
        let gamma = self.gamma.as_ref().map(|v| v.as_tensor());
        let Some(t) = saved.extra.get::<BnTrain>() else {
            // Frozen: y = x * scale + shift with constant statistics.
            let inv = self.moving_variance.as_tensor().affine(1.0, self.cfg.epsilon)?.sqrt()?.recip()?;
            let scale = match gamma {
                Some(g) => g.mul(&inv)?,
                None => inv,
            };
            let dx = if input_grads[0] { Some(grad.broadcast_mul(&scale)?) } else { None };
            return Ok(Gradients { inputs: vec![dx], weights: Vec::new() });
        };
        let (dx, dgamma, dbeta) = batch_norm_backward(grad, t, gamma, input_grads[0])?;
        let mut weights = Vec::new();
        if self.gamma.is_some() {
            weights.push(Grad::Value(dgamma));
        }
        if self.beta.is_some() {
            weights.push(Grad::Value(dbeta));
        }
        if dx.is_none() && input_grads[0] {
            return Err(Error::Runtime(format!("BatchNormalization \"{}\": no input gradient", self.name())));
        }
        Ok(Gradients { inputs: vec![dx], weights })
    }
}
