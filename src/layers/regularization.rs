//! Dropout: inverted dropout while training, the identity otherwise. Every Dropout layer owns its
//! random stream (Keras 3's per-layer SeedGenerator): seeded from `seed=`, else drawn from the
//! global generator when the layer is built, advanced only by this layer, saved with the model.

use super::{shapes_accessors, single, Arity, Cfg, Entry, Extra, Gradients, Layer, Saved, Shapes};
use crate::{rng, Error, Result};
use candle_core::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use std::sync::Mutex;

#[derive(Clone, Debug)]
pub struct DropoutConfig {
    pub rate: f64,
    pub seed: Option<u64>,
}

impl DropoutConfig {
    pub fn parse(cfg: &Cfg) -> Result<Self> {
        let rate = cfg.float("rate", f64::NAN)?;
        if !(0.0..1.0).contains(&rate) {
            return Err(Error::Value(format!(
                "Invalid value received for argument `rate`. Expected a float value between 0 and 1 \
                 (1 excluded). Received: rate={rate}"
            )));
        }
        Ok(DropoutConfig { rate, seed: cfg.optional_u64("seed")? })
    }

    pub fn to_json(&self, name: &str) -> Value {
        json!({"name": name, "trainable": true, "rate": self.rate, "seed": self.seed, "noise_shape": null})
    }
}

pub const DROPOUT: Entry = Entry {
    class_name: "Dropout",
    arity: Arity::One,
    validate: |cfg| Ok(DropoutConfig::parse(cfg)?.to_json(cfg.name())),
    output_shape: |_, inputs| Ok(single(inputs).to_vec()),
    build: |cfg, inputs, _| Ok(Box::new(Dropout::new(DropoutConfig::parse(cfg)?, cfg.name().into(), single(inputs)))),
};

pub struct Dropout {
    cfg: DropoutConfig,
    shapes: Shapes,
    rng: Mutex<ChaCha8Rng>,
}

/// The training mask, already scaled by 1 / (1 - rate).
struct Mask(Tensor);

impl Dropout {
    pub fn new(cfg: DropoutConfig, name: String, input_shape: &[usize]) -> Self {
        let rng = cfg.seed.map(ChaCha8Rng::seed_from_u64).unwrap_or_else(rng::fork);
        Dropout { cfg, shapes: Shapes::new(name, input_shape, input_shape.to_vec()), rng: Mutex::new(rng) }
    }

    fn mask(&self, len: usize) -> Vec<f32> {
        let keep = 1.0 - self.cfg.rate;
        let scale = (1.0 / keep) as f32;
        let draw = |r: &mut ChaCha8Rng| -> Vec<f32> {
            (0..len).map(|_| if r.random::<f64>() < keep { scale } else { 0.0 }).collect()
        };
        draw(&mut self.rng.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Layer for Dropout {
    fn class_name(&self) -> &'static str {
        "Dropout"
    }
    shapes_accessors!();
    fn config(&self) -> Value {
        self.cfg.to_json(&self.shapes.name)
    }
    fn rng(&self) -> Option<&Mutex<ChaCha8Rng>> {
        Some(&self.rng)
    }
    /// The identity: Keras drops only while training.
    fn forward_pre(&self, xs: &[Tensor]) -> Result<Tensor> {
        Ok(xs[0].clone())
    }

    fn forward_train(&self, xs: &[Tensor], _activated: bool) -> Result<(Tensor, Extra)> {
        let x = &xs[0];
        if self.cfg.rate == 0.0 {
            return Ok((x.clone(), Extra::none()));
        }
        let mask = Tensor::from_vec(self.mask(x.elem_count()), x.shape(), x.device())?.to_dtype(x.dtype())?;
        Ok((x.mul(&mask)?, Extra::new(Mask(mask))))
    }

    fn backward(&self, saved: &Saved, grad: &Tensor, _input_grads: &[bool]) -> Result<Gradients> {
        Ok(Gradients::input(Some(match saved.extra.get::<Mask>() {
            Some(Mask(mask)) => grad.mul(mask)?,
            None => grad.clone(),
        })))
    }
}
