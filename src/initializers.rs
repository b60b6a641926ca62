//! Weight initializers by their Keras 3 names and configs. Unseeded ones draw from kandle's global
//! generator (`set_random_seed`); a `seed` makes an initializer draw the same values at every call,
//! as Keras 3's seeded initializers do (from kandle's generator, so not Keras's values).

use crate::{rng, Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, StandardNormal, Uniform};
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    FanIn,
    FanOut,
    FanAvg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Distribution_ {
    TruncatedNormal,
    UntruncatedNormal,
    Uniform,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Zeros,
    Ones,
    Constant(f64),
    RandomUniform { minval: f64, maxval: f64 },
    RandomNormal { mean: f64, stddev: f64 },
    /// Normal, redrawn beyond two standard deviations.
    TruncatedNormal { mean: f64, stddev: f64 },
    /// Keras's `VarianceScaling`; Glorot, He and Lecun are named cases of it.
    VarianceScaling { scale: f64, mode: Mode, distribution: Distribution_ },
    Orthogonal { gain: f64 },
    Identity { gain: f64 },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Initializer {
    pub kind: Kind,
    pub seed: Option<u64>,
    /// The Keras class name it was given as (GlorotUniform stays GlorotUniform in configs).
    class: &'static str,
}

const NAMED: [(&str, f64, Mode, Distribution_); 6] = [
    ("GlorotUniform", 1.0, Mode::FanAvg, Distribution_::Uniform),
    ("GlorotNormal", 1.0, Mode::FanAvg, Distribution_::TruncatedNormal),
    ("HeUniform", 2.0, Mode::FanIn, Distribution_::Uniform),
    ("HeNormal", 2.0, Mode::FanIn, Distribution_::TruncatedNormal),
    ("LecunUniform", 1.0, Mode::FanIn, Distribution_::Uniform),
    ("LecunNormal", 1.0, Mode::FanIn, Distribution_::TruncatedNormal),
];

/// Keras's `compute_fans` for a weight of `shape`.
pub fn fans(shape: &[usize]) -> (usize, usize) {
    match shape {
        [] => (1, 1),
        [n] => (*n, *n),
        [a, b] => (*a, *b),
        _ => {
            let field: usize = shape[..shape.len() - 2].iter().product();
            (shape[shape.len() - 2] * field, shape[shape.len() - 1] * field)
        }
    }
}

impl Initializer {
    /// Accepts a Keras name (`"glorot_uniform"`) or a serialized Keras initializer
    /// (`{"class_name": "GlorotUniform", "config": {"seed": 0}}`).
    pub fn from_json(v: &Value) -> Result<Self> {
        let (name, cfg) = match v {
            Value::String(s) => (s.as_str(), Value::Null),
            Value::Object(m) => (m.get("class_name").and_then(Value::as_str).unwrap_or(""), m.get("config").cloned().unwrap_or(Value::Null)),
            _ => return Err(Error::Value(format!("Could not interpret initializer identifier: {v}"))),
        };
        let bad = |what: String| Error::Value(format!("{name}: {what}"));
        let num = |key: &str, default: f64| -> Result<f64> {
            match cfg.get(key).filter(|x| !x.is_null()) {
                None => Ok(default),
                Some(x) => x.as_f64().filter(|f| f.is_finite()).ok_or_else(|| bad(format!("`{key}` must be a number, got {x}"))),
            }
        };
        let seed = match cfg.get("seed").filter(|x| !x.is_null()) {
            None => None,
            Some(x) => Some(x.as_u64().ok_or_else(|| bad(format!("`seed` must be a non-negative integer or None, got {x}")))?),
        };
        let key: String = name.chars().filter(|c| *c != '_').collect::<String>().to_lowercase();
        let named = NAMED.iter().find(|(n, ..)| n.to_lowercase() == key);
        let (class, kind) = if let Some(&(class, scale, mode, distribution)) = named {
            (class, Kind::VarianceScaling { scale, mode, distribution })
        } else {
            match key.as_str() {
                "zeros" | "zero" => ("Zeros", Kind::Zeros),
                "ones" | "one" => ("Ones", Kind::Ones),
                "constant" => ("Constant", Kind::Constant(num("value", 0.0)?)),
                "randomuniform" | "uniform" => {
                    ("RandomUniform", Kind::RandomUniform { minval: num("minval", -0.05)?, maxval: num("maxval", 0.05)? })
                }
                "randomnormal" | "normal" => ("RandomNormal", Kind::RandomNormal { mean: num("mean", 0.0)?, stddev: num("stddev", 0.05)? }),
                "truncatednormal" => ("TruncatedNormal", Kind::TruncatedNormal { mean: num("mean", 0.0)?, stddev: num("stddev", 0.05)? }),
                "variancescaling" => {
                    let scale = num("scale", 1.0)?;
                    if scale <= 0.0 {
                        return Err(bad(format!("Argument `scale` must be positive float. Received: scale={scale}")));
                    }
                    let mode = match cfg.get("mode").and_then(Value::as_str).unwrap_or("fan_in") {
                        "fan_in" => Mode::FanIn,
                        "fan_out" => Mode::FanOut,
                        "fan_avg" => Mode::FanAvg,
                        m => return Err(bad(format!("Invalid `mode` argument: {m}. Expected one of {{'fan_in', 'fan_out', 'fan_avg'}}"))),
                    };
                    let distribution = match cfg.get("distribution").and_then(Value::as_str).unwrap_or("truncated_normal") {
                        "truncated_normal" => Distribution_::TruncatedNormal,
                        "untruncated_normal" | "normal" => Distribution_::UntruncatedNormal,
                        "uniform" => Distribution_::Uniform,
                        d => return Err(bad(format!("Invalid `distribution` argument: {d}"))),
                    };
                    ("VarianceScaling", Kind::VarianceScaling { scale, mode, distribution })
                }
                "orthogonal" => ("Orthogonal", Kind::Orthogonal { gain: num("gain", 1.0)? }),
                "identity" => ("Identity", Kind::Identity { gain: num("gain", 1.0)? }),
                _ => {
                    return Err(Error::Value(format!(
                        "Could not interpret initializer identifier: {v} (kandle does not implement it yet, or it is not a Keras initializer)"
                    )))
                }
            }
        };
        if let Kind::RandomNormal { stddev, .. } | Kind::TruncatedNormal { stddev, .. } = kind {
            if stddev < 0.0 {
                return Err(bad(format!("`stddev` must be non-negative, got {stddev}")));
            }
        }
        Ok(Initializer { kind, seed, class })
    }

    /// The Keras-style serialized form used in layer configs.
    pub fn to_json(&self) -> Value {
        let mut config = match &self.kind {
            Kind::Zeros | Kind::Ones => json!({}),
            Kind::Constant(v) => json!({"value": v}),
            Kind::RandomUniform { minval, maxval } => json!({"minval": minval, "maxval": maxval}),
            Kind::RandomNormal { mean, stddev } | Kind::TruncatedNormal { mean, stddev } => json!({"mean": mean, "stddev": stddev}),
            Kind::VarianceScaling { scale, mode, distribution } => {
                let mode = match mode {
                    Mode::FanIn => "fan_in",
                    Mode::FanOut => "fan_out",
                    Mode::FanAvg => "fan_avg",
                };
                let distribution = match distribution {
                    Distribution_::TruncatedNormal => "truncated_normal",
                    Distribution_::UntruncatedNormal => "untruncated_normal",
                    Distribution_::Uniform => "uniform",
                };
                if self.class == "VarianceScaling" {
                    json!({"scale": scale, "mode": mode, "distribution": distribution})
                } else {
                    json!({})
                }
            }
            Kind::Orthogonal { gain } | Kind::Identity { gain } => json!({"gain": gain}),
        };
        if !matches!(self.kind, Kind::Zeros | Kind::Ones | Kind::Constant(_) | Kind::Identity { .. }) {
            config["seed"] = json!(self.seed);
        }
        json!({"class_name": self.class, "config": config})
    }

    /// Draws the values of a weight of `shape` with the given fans (Keras: a kernel `(kh, kw, in, out)`
    /// has fan_in `kh*kw*in` and fan_out `kh*kw*out`).
    pub fn sample(&self, shape: &[usize], fan_in: usize, fan_out: usize) -> Result<Vec<f32>> {
        match self.seed {
            Some(seed) => self.draw(shape, fan_in, fan_out, &mut ChaCha8Rng::seed_from_u64(seed)),
            None => self.draw(shape, fan_in, fan_out, &mut rng::lock()),
        }
    }

    fn draw(&self, shape: &[usize], fan_in: usize, fan_out: usize, rng: &mut ChaCha8Rng) -> Result<Vec<f32>> {
        let len: usize = shape.iter().product();
        let truncated = |rng: &mut ChaCha8Rng, mean: f64, stddev: f64| -> Vec<f32> {
            (0..len)
                .map(|_| loop {
                    let z: f64 = StandardNormal.sample(rng);
                    if z.abs() <= 2.0 {
                        break (mean + stddev * z) as f32;
                    }
                })
                .collect()
        };
        Ok(match self.kind {
            Kind::Zeros => vec![0.0; len],
            Kind::Ones => vec![1.0; len],
            Kind::Constant(v) => vec![v as f32; len],
            Kind::RandomUniform { minval, maxval } => (0..len).map(|_| rng.random_range(minval..=maxval) as f32).collect(),
            Kind::RandomNormal { mean, stddev } => {
                let d = Normal::new(mean, stddev).expect("stddev checked");
                (0..len).map(|_| d.sample(rng) as f32).collect()
            }
            Kind::TruncatedNormal { mean, stddev } => truncated(rng, mean, stddev),
            Kind::VarianceScaling { scale, mode, distribution } => {
                let n = match mode {
                    Mode::FanIn => fan_in as f64,
                    Mode::FanOut => fan_out as f64,
                    Mode::FanAvg => (fan_in + fan_out) as f64 / 2.0,
                };
                let variance = scale / n.max(1.0);
                match distribution {
                    Distribution_::Uniform => {
                        let limit = (3.0 * variance).sqrt();
                        let d = Uniform::new_inclusive(-limit, limit).expect("finite limit");
                        (0..len).map(|_| d.sample(rng) as f32).collect()
                    }
                    // Truncated at two standard deviations, rescaled as Keras does.
                    Distribution_::TruncatedNormal => truncated(rng, 0.0, variance.sqrt() / 0.879_625_661_034_239_8),
                    Distribution_::UntruncatedNormal => {
                        let d = Normal::new(0.0, variance.sqrt()).expect("finite stddev");
                        (0..len).map(|_| d.sample(rng) as f32).collect()
                    }
                }
            }
            Kind::Identity { gain } => {
                let [rows, cols] = shape else {
                    return Err(Error::Value(format!("Identity initializer can only be used for 2D matrices. Received: shape={shape:?}")));
                };
                (0..rows * cols).map(|i| if i / cols == i % cols { gain as f32 } else { 0.0 }).collect()
            }
            Kind::Orthogonal { gain } => {
                if shape.len() < 2 {
                    return Err(Error::Value(format!("The tensor to initialize must be at least two-dimensional. Received: shape={shape:?}")));
                }
                let cols = shape[shape.len() - 1];
                let rows = len / cols.max(1);
                orthogonal(rows, cols, gain, rng)
            }
        })
    }
}

/// A `(rows, cols)` matrix with orthonormal rows or columns (whichever are fewer), times `gain`:
/// Gram-Schmidt on a normal draw, signs fixed as the QR convention (positive diagonal of R).
fn orthogonal(rows: usize, cols: usize, gain: f64, rng: &mut ChaCha8Rng) -> Vec<f32> {
    // Work on the tall orientation (n x k, n >= k), transpose back at the end.
    let (n, k) = if rows >= cols { (rows, cols) } else { (cols, rows) };
    let mut q: Vec<Vec<f64>> = (0..k).map(|_| (0..n).map(|_| StandardNormal.sample(rng)).collect()).collect();
    for j in 0..k {
        for i in 0..j {
            let dot: f64 = (0..n).map(|t| q[j][t] * q[i][t]).sum();
            let (done, rest) = q.split_at_mut(j);
            rest[0].iter_mut().zip(&done[i]).for_each(|(v, u)| *v -= dot * u);
        }
        let norm = q[j].iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-300);
        q[j].iter_mut().for_each(|v| *v /= norm);
    }
    let mut out = vec![0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            let v = if rows >= cols { q[c][r] } else { q[r][c] };
            out[r * cols + c] = (gain * v) as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn init(v: Value) -> Initializer {
        Initializer::from_json(&v).unwrap()
    }

    #[test]
    fn seeded_initializers_repeat_and_unseeded_do_not() {
        let seeded = init(json!({"class_name": "GlorotNormal", "config": {"seed": 42}}));
        assert_eq!(seeded.sample(&[3, 4], 3, 4).unwrap(), seeded.sample(&[3, 4], 3, 4).unwrap());
        let free = init(json!("glorot_normal"));
        assert_ne!(free.sample(&[3, 4], 3, 4).unwrap(), free.sample(&[3, 4], 3, 4).unwrap());
    }

    #[test]
    fn orthogonal_and_identity() {
        for (r, c) in [(5, 3), (3, 5), (4, 4)] {
            let w = init(json!({"class_name": "Orthogonal", "config": {"gain": 2.0, "seed": 1}})).sample(&[r, c], r, c).unwrap();
            let small = r.min(c);
            for i in 0..small {
                for j in 0..small {
                    let dot: f64 = if r >= c {
                        (0..r).map(|t| w[t * c + i] as f64 * w[t * c + j] as f64).sum()
                    } else {
                        (0..c).map(|t| w[i * c + t] as f64 * w[j * c + t] as f64).sum()
                    };
                    let want = if i == j { 4.0 } else { 0.0 };
                    assert!((dot - want).abs() < 1e-4, "({r}, {c}) [{i}, {j}] = {dot}");
                }
            }
        }
        let id = init(json!({"class_name": "Identity", "config": {"gain": 3.0}})).sample(&[2, 3], 2, 3).unwrap();
        assert_eq!(id, vec![3.0, 0.0, 0.0, 0.0, 3.0, 0.0]);
        assert!(init(json!("identity")).sample(&[2, 2, 2], 4, 4).is_err());
    }

    #[test]
    fn variance_scaling_matches_its_named_cases_and_round_trips() {
        let v = init(json!({"class_name": "VarianceScaling", "config": {"scale": 2.0, "mode": "fan_in", "distribution": "uniform", "seed": 3}}));
        let he = init(json!({"class_name": "HeUniform", "config": {"seed": 3}}));
        assert_eq!(v.sample(&[10, 10], 10, 10).unwrap(), he.sample(&[10, 10], 10, 10).unwrap());
        assert_eq!(Initializer::from_json(&v.to_json()).unwrap(), v);
        assert_eq!(he.to_json(), json!({"class_name": "HeUniform", "config": {"seed": 3}}));
        assert!(Initializer::from_json(&json!({"class_name": "VarianceScaling", "config": {"mode": "fan_sideways"}})).is_err());
    }
}
