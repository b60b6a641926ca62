//! Learning-rate schedules (Keras 3's `keras.optimizers.schedules`, formulas of
//! keras/src/optimizers/schedules/learning_rate_schedule.py): the optimizer evaluates one at its step
//! count before each update, so a scheduled fit needs no Python per batch.

use crate::{Error, Result};
use serde_json::{json, Value};

#[derive(Clone, Debug, PartialEq)]
pub enum Schedule {
    Exponential { initial: f64, decay_steps: f64, decay_rate: f64, staircase: bool },
    InverseTime { initial: f64, decay_steps: f64, decay_rate: f64, staircase: bool },
    PiecewiseConstant { boundaries: Vec<f64>, values: Vec<f64> },
    Cosine { initial: f64, decay_steps: f64, alpha: f64, warmup_target: Option<f64>, warmup_steps: f64 },
    Polynomial { initial: f64, decay_steps: f64, end: f64, power: f64, cycle: bool },
}

fn bad(class: &str, what: String) -> Error {
    Error::Value(format!("{class}: {what}"))
}

impl Schedule {
    /// From Keras's serialized schedule: `{"class_name": "ExponentialDecay", "config": {...}}`
    /// (`module` and `registered_name`, when present, are ignored).
    pub fn from_json(v: &Value) -> Result<Self> {
        let class = v["class_name"].as_str().unwrap_or("");
        let cfg = &v["config"];
        let num = |key: &str, default: Option<f64>| -> Result<f64> {
            match (cfg.get(key).filter(|x| !x.is_null()), default) {
                (Some(x), _) => x.as_f64().filter(|f| f.is_finite()).ok_or_else(|| bad(class, format!("`{key}` must be a number, got {x}"))),
                (None, Some(d)) => Ok(d),
                (None, None) => Err(bad(class, format!("missing argument `{key}`"))),
            }
        };
        let positive = |key: &str| -> Result<f64> {
            let x = num(key, None)?;
            if x <= 0.0 {
                return Err(bad(class, format!("Argument `{key}` must be > 0. Received: {key}={x}")));
            }
            Ok(x)
        };
        let flag = |key: &str| cfg.get(key).and_then(Value::as_bool).unwrap_or(false);
        let list = |key: &str| -> Result<Vec<f64>> {
            cfg[key]
                .as_array()
                .ok_or_else(|| bad(class, format!("`{key}` must be a list of numbers")))?
                .iter()
                .map(|x| x.as_f64().ok_or_else(|| bad(class, format!("`{key}` must be a list of numbers, got {x}"))))
                .collect()
        };
        Ok(match class {
            "ExponentialDecay" => Schedule::Exponential {
                initial: num("initial_learning_rate", None)?,
                decay_steps: positive("decay_steps")?,
                decay_rate: num("decay_rate", None)?,
                staircase: flag("staircase"),
            },
            "InverseTimeDecay" => Schedule::InverseTime {
                initial: num("initial_learning_rate", None)?,
                decay_steps: positive("decay_steps")?,
                decay_rate: num("decay_rate", None)?,
                staircase: flag("staircase"),
            },
            "PiecewiseConstantDecay" => {
                let (boundaries, values) = (list("boundaries")?, list("values")?);
                if values.len() != boundaries.len() + 1 {
                    return Err(bad(
                        class,
                        format!(
                            "The length of boundaries should be 1 less than the length of values. Received: \
                             boundaries={boundaries:?} of length {}, and values={values:?} of length {}.",
                            boundaries.len(),
                            values.len()
                        ),
                    ));
                }
                Schedule::PiecewiseConstant { boundaries, values }
            }
            "CosineDecay" => Schedule::Cosine {
                initial: num("initial_learning_rate", None)?,
                decay_steps: positive("decay_steps")?,
                alpha: num("alpha", Some(0.0))?,
                warmup_target: cfg.get("warmup_target").filter(|x| !x.is_null()).map(|_| num("warmup_target", None)).transpose()?,
                warmup_steps: num("warmup_steps", Some(0.0))?,
            },
            "PolynomialDecay" => Schedule::Polynomial {
                initial: num("initial_learning_rate", None)?,
                decay_steps: positive("decay_steps")?,
                end: num("end_learning_rate", Some(0.0001))?,
                power: num("power", Some(1.0))?,
                cycle: flag("cycle"),
            },
            other => {
                return Err(Error::Value(format!(
                    "kandle does not implement the learning-rate schedule '{other}' yet (it has ExponentialDecay, \
                     InverseTimeDecay, PiecewiseConstantDecay, CosineDecay, PolynomialDecay)"
                )))
            }
        })
    }

    pub fn class_name(&self) -> &'static str {
        match self {
            Schedule::Exponential { .. } => "ExponentialDecay",
            Schedule::InverseTime { .. } => "InverseTimeDecay",
            Schedule::PiecewiseConstant { .. } => "PiecewiseConstantDecay",
            Schedule::Cosine { .. } => "CosineDecay",
            Schedule::Polynomial { .. } => "PolynomialDecay",
        }
    }

    /// Keras's serialized form (what an optimizer's `get_config()["learning_rate"]` holds).
    pub fn to_json(&self) -> Value {
        let config = match self {
            Schedule::Exponential { initial, decay_steps, decay_rate, staircase }
            | Schedule::InverseTime { initial, decay_steps, decay_rate, staircase } => json!({
                "initial_learning_rate": initial, "decay_steps": decay_steps, "decay_rate": decay_rate,
                "staircase": staircase,
            }),
            Schedule::PiecewiseConstant { boundaries, values } => json!({"boundaries": boundaries, "values": values}),
            Schedule::Cosine { initial, decay_steps, alpha, warmup_target, warmup_steps } => json!({
                "initial_learning_rate": initial, "decay_steps": decay_steps, "alpha": alpha,
                "warmup_target": warmup_target, "warmup_steps": warmup_steps,
            }),
            Schedule::Polynomial { initial, decay_steps, end, power, cycle } => json!({
                "initial_learning_rate": initial, "decay_steps": decay_steps, "end_learning_rate": end,
                "power": power, "cycle": cycle,
            }),
        };
        let mut config = config;
        // Keras's default names: the class name, but "PiecewiseConstant".
        config["name"] = json!(match self {
            Schedule::PiecewiseConstant { .. } => "PiecewiseConstant",
            other => other.class_name(),
        });
        json!({"module": "keras.optimizers.schedules", "class_name": self.class_name(), "config": config, "registered_name": null})
    }

    /// The learning rate at optimizer step `step` (the number of updates done so far).
    pub fn at(&self, step: u64) -> f64 {
        let s = step as f64;
        match *self {
            Schedule::Exponential { initial, decay_steps, decay_rate, staircase } => {
                let p = if staircase { (s / decay_steps).floor() } else { s / decay_steps };
                initial * decay_rate.powf(p)
            }
            Schedule::InverseTime { initial, decay_steps, decay_rate, staircase } => {
                let p = if staircase { (s / decay_steps).floor() } else { s / decay_steps };
                initial / (1.0 + decay_rate * p)
            }
            Schedule::PiecewiseConstant { ref boundaries, ref values } => {
                let i = boundaries.iter().take_while(|&&b| s > b).count();
                values[i]
            }
            Schedule::Cosine { initial, decay_steps, alpha, warmup_target, warmup_steps } => {
                let decay = |step: f64, from: f64| {
                    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * step / decay_steps).cos());
                    from * ((1.0 - alpha) * cosine + alpha)
                };
                match warmup_target {
                    None => decay(s.min(decay_steps), initial),
                    Some(target) => {
                        let s = s.min(decay_steps + warmup_steps);
                        if s < warmup_steps {
                            (target - initial) * (s / warmup_steps) + initial
                        } else {
                            decay(s - warmup_steps, target)
                        }
                    }
                }
            }
            Schedule::Polynomial { initial, decay_steps, end, power, cycle } => {
                let (s, steps) = if cycle {
                    let mult = if s == 0.0 { 1.0 } else { (s / decay_steps).ceil() };
                    (s, decay_steps * mult)
                } else {
                    (s.min(decay_steps), decay_steps)
                };
                (initial - end) * (1.0 - s / steps).powf(power) + end
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(class: &str, config: Value) -> Schedule {
        Schedule::from_json(&json!({"class_name": class, "config": config})).unwrap()
    }

    #[test]
    fn the_formulas_at_a_few_steps() {
        let e = schedule("ExponentialDecay", json!({"initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.5}));
        assert!((e.at(0) - 0.1).abs() < 1e-15 && (e.at(10) - 0.05).abs() < 1e-15 && (e.at(5) - 0.1 * 0.5f64.sqrt()).abs() < 1e-15);
        let st = schedule("ExponentialDecay", json!({"initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.5, "staircase": true}));
        assert_eq!(st.at(9), 0.1);
        let p = schedule("PiecewiseConstantDecay", json!({"boundaries": [2, 5], "values": [1.0, 0.5, 0.1]}));
        assert_eq!([p.at(0), p.at(2), p.at(3), p.at(5), p.at(6)], [1.0, 1.0, 0.5, 0.5, 0.1]);
        let c = schedule("CosineDecay", json!({"initial_learning_rate": 1.0, "decay_steps": 4, "alpha": 0.1}));
        assert!((c.at(2) - 0.55).abs() < 1e-12 && (c.at(9) - 0.1).abs() < 1e-12);
        let w = schedule("CosineDecay", json!({"initial_learning_rate": 0.0, "decay_steps": 4, "warmup_target": 1.0, "warmup_steps": 2}));
        assert!((w.at(1) - 0.5).abs() < 1e-12 && (w.at(2) - 1.0).abs() < 1e-12);
        let i = schedule("InverseTimeDecay", json!({"initial_learning_rate": 1.0, "decay_steps": 1, "decay_rate": 0.5}));
        assert!((i.at(2) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn bad_configs_are_errors() {
        let err = |class: &str, config: Value| Schedule::from_json(&json!({"class_name": class, "config": config})).unwrap_err().to_string();
        assert!(err("ExponentialDecay", json!({"initial_learning_rate": 0.1, "decay_steps": 0, "decay_rate": 0.5})).contains("decay_steps"));
        assert!(err("PiecewiseConstantDecay", json!({"boundaries": [1], "values": [1.0]})).contains("1 less"));
        assert!(err("CosineDecayRestarts", json!({})).contains("kandle does not implement"));
        assert!(err("ExponentialDecay", json!({"decay_steps": 1, "decay_rate": 0.5})).contains("initial_learning_rate"));
    }

    #[test]
    fn round_trips_through_its_json() {
        let s = schedule("CosineDecay", json!({"initial_learning_rate": 0.1, "decay_steps": 100, "warmup_target": 0.2, "warmup_steps": 5}));
        assert_eq!(Schedule::from_json(&s.to_json()).unwrap(), s);
    }
}
