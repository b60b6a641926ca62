//! Dropout: inverted dropout while training, the identity otherwise. The mask comes from kandle's
//! seeded generator (or the layer's own, when `seed` is given), so runs are reproducible.

use super::{Cfg, Extra, Gradients, Layer, Saved, Shapes};
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

pub struct Dropout {
    cfg: DropoutConfig,
    shapes: Shapes,
    /// The layer's own stream when seeded; `None` draws from the global generator.
    rng: Option<Mutex<ChaCha8Rng>>,
}

impl Dropout {
    pub fn new(cfg: DropoutConfig, name: String, input_shape: &[usize]) -> Self {
        let rng = cfg.seed.map(|s| Mutex::new(ChaCha8Rng::seed_from_u64(s)));
        Dropout { cfg, shapes: Shapes::new(name, input_shape, input_shape.to_vec()), rng }
    }

    fn mask(&self, len: usize) -> Vec<f32> {
        let keep = 1.0 - self.cfg.rate;
        let scale = (1.0 / keep) as f32;
        let draw = |r: &mut ChaCha8Rng| -> Vec<f32> {
            (0..len).map(|_| if r.random::<f64>() < keep { scale } else { 0.0 }).collect()
        };
        match &self.rng {
            Some(m) => draw(&mut m.lock().unwrap_or_else(|e| e.into_inner())),
            None => draw(&mut rng::lock()),
        }
    }
}

impl Layer for Dropout {
    fn class_name(&self) -> &'static str {
        "Dropout"
    }
    fn shapes(&self) -> &Shapes {
        &self.shapes
    }
    fn config(&self) -> Value {
        self.cfg.to_json(&self.shapes.name)
    }
    fn rng(&self) -> Option<&Mutex<ChaCha8Rng>> {
        self.rng.as_ref()
    }
    /// The identity: Keras drops only while training.
    fn forward_pre(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.clone())
    }

    fn forward_train(&self, x: &Tensor, _activated: bool) -> Result<(Tensor, Extra)> {
        if self.cfg.rate == 0.0 {
            return Ok((x.clone(), Extra::None));
        }
        let mask = Tensor::from_vec(self.mask(x.elem_count()), x.shape(), x.device())?.to_dtype(x.dtype())?;
        Ok((x.mul(&mask)?, Extra::Mask(mask)))
    }

    fn backward(&self, saved: &Saved, grad: &Tensor, _input_grad: bool) -> Result<Gradients> {
        Ok(Gradients::input(Some(match &saved.extra {
            Extra::Mask(mask) => grad.mul(mask)?,
            _ => grad.clone(),
        })))
    }
}
