//! Weight initializers by their Keras names, drawing from kandle's seeded generator.

use crate::{rng, Error, Result};
use rand::Rng;
use rand_distr::{Distribution, Normal, Uniform};
use serde_json::{json, Value};

#[derive(Clone, Debug, PartialEq)]
pub enum Initializer {
    Zeros,
    Ones,
    Constant(f64),
    RandomUniform { minval: f64, maxval: f64 },
    RandomNormal { mean: f64, stddev: f64 },
    /// Variance scaling: uniform or truncated normal with variance `scale / fan`.
    Scaling { scale: f64, fan: Fan, uniform: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fan {
    In,
    Avg,
}

impl Initializer {
    /// Accepts a Keras name (`"glorot_uniform"`) or a serialized Keras initializer
    /// (`{"class_name": "GlorotUniform", "config": {...}}`).
    pub fn from_json(v: &Value) -> Result<Self> {
        let (name, cfg) = match v {
            Value::String(s) => (s.as_str(), Value::Null),
            Value::Object(m) => (
                m.get("class_name").and_then(Value::as_str).unwrap_or(""),
                m.get("config").cloned().unwrap_or(Value::Null),
            ),
            _ => return Err(Error::Value(format!("Could not interpret initializer identifier: {v}"))),
        };
        let num = |key: &str, default: f64| cfg.get(key).and_then(Value::as_f64).unwrap_or(default);
        let key: String = name.chars().filter(|c| *c != '_').collect::<String>().to_lowercase();
        Ok(match key.as_str() {
            "zeros" | "zero" => Initializer::Zeros,
            "ones" | "one" => Initializer::Ones,
            "constant" => Initializer::Constant(num("value", 0.0)),
            "randomuniform" | "uniform" => {
                Initializer::RandomUniform { minval: num("minval", -0.05), maxval: num("maxval", 0.05) }
            }
            "randomnormal" | "normal" => {
                Initializer::RandomNormal { mean: num("mean", 0.0), stddev: num("stddev", 0.05) }
            }
            "glorotuniform" => Initializer::Scaling { scale: 1.0, fan: Fan::Avg, uniform: true },
            "glorotnormal" => Initializer::Scaling { scale: 1.0, fan: Fan::Avg, uniform: false },
            "heuniform" => Initializer::Scaling { scale: 2.0, fan: Fan::In, uniform: true },
            "henormal" => Initializer::Scaling { scale: 2.0, fan: Fan::In, uniform: false },
            "lecununiform" => Initializer::Scaling { scale: 1.0, fan: Fan::In, uniform: true },
            "lecunnormal" => Initializer::Scaling { scale: 1.0, fan: Fan::In, uniform: false },
            _ => return Err(Error::Value(format!("Could not interpret initializer identifier: {v}"))),
        })
    }

    /// The Keras-style serialized form used in layer configs.
    pub fn to_json(&self) -> Value {
        match self {
            Initializer::Zeros => json!({"class_name": "Zeros", "config": {}}),
            Initializer::Ones => json!({"class_name": "Ones", "config": {}}),
            Initializer::Constant(v) => json!({"class_name": "Constant", "config": {"value": v}}),
            Initializer::RandomUniform { minval, maxval } => {
                json!({"class_name": "RandomUniform", "config": {"minval": minval, "maxval": maxval}})
            }
            Initializer::RandomNormal { mean, stddev } => {
                json!({"class_name": "RandomNormal", "config": {"mean": mean, "stddev": stddev}})
            }
            Initializer::Scaling { scale, fan, uniform } => {
                let name = match (*scale == 2.0, fan, uniform) {
                    (false, Fan::Avg, true) => "GlorotUniform",
                    (false, Fan::Avg, false) => "GlorotNormal",
                    (true, _, true) => "HeUniform",
                    (true, _, false) => "HeNormal",
                    (false, Fan::In, true) => "LecunUniform",
                    (false, Fan::In, false) => "LecunNormal",
                };
                json!({"class_name": name, "config": {}})
            }
        }
    }

    /// Draws `len` values for a weight with the given fans (Keras: a kernel `(kh, kw, in, out)` has
    /// fan_in `kh*kw*in` and fan_out `kh*kw*out`).
    pub fn sample(&self, len: usize, fan_in: usize, fan_out: usize) -> Vec<f32> {
        let mut rng = rng::lock();
        match *self {
            Initializer::Zeros => vec![0.0; len],
            Initializer::Ones => vec![1.0; len],
            Initializer::Constant(v) => vec![v as f32; len],
            Initializer::RandomUniform { minval, maxval } => {
                (0..len).map(|_| rng.random_range(minval..=maxval) as f32).collect()
            }
            Initializer::RandomNormal { mean, stddev } => {
                let d = Normal::new(mean, stddev.max(0.0)).expect("stddev >= 0");
                (0..len).map(|_| d.sample(&mut *rng) as f32).collect()
            }
            Initializer::Scaling { scale, fan, uniform } => {
                let n = match fan {
                    Fan::In => fan_in as f64,
                    Fan::Avg => (fan_in + fan_out) as f64 / 2.0,
                };
                let variance = scale / n.max(1.0);
                if uniform {
                    let limit = (3.0 * variance).sqrt();
                    let d = Uniform::new_inclusive(-limit, limit).expect("finite limit");
                    (0..len).map(|_| d.sample(&mut *rng) as f32).collect()
                } else {
                    // Truncated at two standard deviations, rescaled as Keras does.
                    let stddev = variance.sqrt() / 0.879_625_661_034_239_8;
                    let d = Normal::new(0.0, stddev).expect("finite stddev");
                    (0..len)
                        .map(|_| loop {
                            let v: f64 = d.sample(&mut *rng);
                            if v.abs() <= 2.0 * stddev {
                                break v as f32;
                            }
                        })
                        .collect()
                }
            }
        }
    }
}
