//! Optimizers with Keras 3's defaults and update rules (keras/src/optimizers/*.py), applied to
//! candle `Var`s in place.

use crate::ops::grad::Grad;
use crate::ops::linear::sgd_update_tn;
use crate::ops::update::{update1, update2};
use crate::{Error, Result};
use candle_core::{Tensor, Var};
use serde_json::{json, Value};

#[derive(Clone, Debug, PartialEq)]
pub enum Rule {
    Sgd { momentum: f64, nesterov: bool },
    Adam { beta_1: f64, beta_2: f64, epsilon: f64 },
    RmsProp { rho: f64, momentum: f64, epsilon: f64, centered: bool },
    Adagrad { initial_accumulator_value: f64, epsilon: f64 },
}

pub struct Optimizer {
    pub rule: Rule,
    pub learning_rate: f64,
    /// Steps taken so far (Keras's `iterations`); Adam's bias correction uses it.
    pub iterations: u64,
    /// Per-variable state (momenta, moments, accumulators), created on the first step.
    slots: Vec<Vec<Tensor>>,
}

impl Optimizer {
    /// From `{"class_name": "Adam", "config": {...}}` or a bare name ('sgd', 'adam', ...).
    pub fn from_json(v: &Value) -> Result<Self> {
        let (name, cfg) = match v {
            Value::String(s) => (s.as_str(), json!({})),
            Value::Object(m) => (
                m.get("class_name").and_then(Value::as_str).unwrap_or(""),
                m.get("config").cloned().unwrap_or(json!({})),
            ),
            _ => return Err(Error::Value(format!("Could not interpret optimizer identifier: {v}"))),
        };
        let num = |key: &str, default: f64| -> Result<f64> {
            match cfg.get(key).filter(|v| !v.is_null()) {
                None => Ok(default),
                Some(x) => match x.as_f64() {
                    Some(f) if f.is_finite() && f >= 0.0 => Ok(f),
                    _ => Err(Error::Value(format!("{name}: `{key}` must be a non-negative number, got {x}"))),
                },
            }
        };
        let flag = |key: &str| cfg.get(key).and_then(Value::as_bool).unwrap_or(false);
        let (rule, default_lr) = match name.to_lowercase().as_str() {
            "sgd" => (Rule::Sgd { momentum: num("momentum", 0.0)?, nesterov: flag("nesterov") }, 0.01),
            "adam" => (
                Rule::Adam { beta_1: num("beta_1", 0.9)?, beta_2: num("beta_2", 0.999)?, epsilon: num("epsilon", 1e-7)? },
                0.001,
            ),
            "rmsprop" => (
                Rule::RmsProp {
                    rho: num("rho", 0.9)?,
                    momentum: num("momentum", 0.0)?,
                    epsilon: num("epsilon", 1e-7)?,
                    centered: flag("centered"),
                },
                0.001,
            ),
            "adagrad" => (
                Rule::Adagrad {
                    initial_accumulator_value: num("initial_accumulator_value", 0.1)?,
                    epsilon: num("epsilon", 1e-7)?,
                },
                0.001,
            ),
            _ => {
                return Err(Error::Value(format!(
                    "Could not interpret optimizer identifier: '{name}'. Known: sgd, adam, rmsprop, adagrad"
                )))
            }
        };
        let learning_rate = num("learning_rate", default_lr)?;
        Ok(Optimizer { rule, learning_rate, iterations: 0, slots: Vec::new() })
    }

    /// Sets the learning rate (a callback's `model.optimizer.learning_rate = ...`), checked as
    /// Keras's constructor checks it.
    pub fn set_learning_rate(&mut self, lr: f64) -> Result<()> {
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(Error::Value(format!("learning_rate must be a non-negative number, got {lr}")));
        }
        self.learning_rate = lr;
        Ok(())
    }

    pub fn class_name(&self) -> &'static str {
        match self.rule {
            Rule::Sgd { .. } => "SGD",
            Rule::Adam { .. } => "Adam",
            Rule::RmsProp { .. } => "RMSprop",
            Rule::Adagrad { .. } => "Adagrad",
        }
    }

    /// Keras `get_config()` of the optimizer.
    pub fn config(&self) -> Value {
        let mut c = match &self.rule {
            Rule::Sgd { momentum, nesterov } => json!({"momentum": momentum, "nesterov": nesterov}),
            Rule::Adam { beta_1, beta_2, epsilon } => json!({"beta_1": beta_1, "beta_2": beta_2, "epsilon": epsilon}),
            Rule::RmsProp { rho, momentum, epsilon, centered } => {
                json!({"rho": rho, "momentum": momentum, "epsilon": epsilon, "centered": centered})
            }
            Rule::Adagrad { initial_accumulator_value, epsilon } => {
                json!({"initial_accumulator_value": initial_accumulator_value, "epsilon": epsilon})
            }
        };
        c["learning_rate"] = json!(self.learning_rate);
        c["name"] = json!(self.class_name());
        c
    }

    /// The state tensors per variable, for saving; restored with `set_slots`.
    pub fn slots(&self) -> &[Vec<Tensor>] {
        &self.slots
    }

    pub fn set_slots(&mut self, slots: Vec<Vec<Tensor>>, iterations: u64) {
        self.slots = slots;
        self.iterations = iterations;
    }

    /// How many state tensors each variable has once stepped (a saved state must have as many).
    pub fn slots_per_variable(&self) -> usize {
        match self.rule {
            Rule::Sgd { momentum, .. } => usize::from(momentum > 0.0),
            Rule::Adam { .. } => 2,
            Rule::RmsProp { .. } => 3,
            Rule::Adagrad { .. } => 1,
        }
    }

    fn init_slots(&mut self, vars: &[&Var]) -> Result<()> {
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        self.slots = vars
            .iter()
            .map(|v| -> Result<Vec<Tensor>> {
                Ok(match &self.rule {
                    Rule::Sgd { momentum, .. } if *momentum > 0.0 => vec![zeros(v)?],
                    Rule::Sgd { .. } => vec![],
                    Rule::Adam { .. } => vec![zeros(v)?, zeros(v)?],
                    Rule::RmsProp { .. } => vec![zeros(v)?, zeros(v)?, zeros(v)?],
                    Rule::Adagrad { initial_accumulator_value, .. } => {
                        vec![v.as_tensor().ones_like()?.affine(*initial_accumulator_value, 0.0)?]
                    }
                })
            })
            .collect::<Result<_>>()?;
        Ok(())
    }

    /// Creates the per-variable state on the first step (or after the variables changed).
    pub fn prepare(&mut self, vars: &[&Var]) -> Result<()> {
        if self.slots.len() != vars.len() {
            self.init_slots(vars)?;
        }
        Ok(())
    }

    /// Updates variable `index` (in the order given to `prepare`) from its gradient, in place
    /// (Keras 3's formulas). Call `finish_step` once every variable of the step is updated.
    pub fn update(&mut self, index: usize, var: &Var, grad: &Grad) -> Result<()> {
        let lr = self.learning_rate;
        let t = (self.iterations + 1) as f64;
        let w = var.as_tensor();
        if let (Rule::Sgd { momentum, .. }, Grad::Product { lhs, rhs }) = (&self.rule, grad) {
            if *momentum == 0.0 {
                return Ok(sgd_update_tn(w, lhs, rhs, lr)?);
            }
        }
        let g = &grad.value(w)?;
        let Some(slots) = self.slots.get_mut(index) else {
            return Err(Error::Runtime(format!("optimizer: no state for variable {index}; call prepare first")));
        };
        match self.rule {
            Rule::Sgd { momentum, nesterov } if momentum > 0.0 => {
                update1(&slots[0], g, |m, [g]| momentum * m - lr * g)?;
                if nesterov {
                    update2(w, &slots[0], g, |w, [m, g]| w + momentum * m - lr * g)?;
                } else {
                    update1(w, &slots[0], |w, [m]| w + m)?;
                }
            }
            Rule::Sgd { .. } => update1(w, g, |w, [g]| w - lr * g)?,
            Rule::Adam { beta_1, beta_2, epsilon } => {
                let alpha = lr * (1.0 - beta_2.powf(t)).sqrt() / (1.0 - beta_1.powf(t));
                update1(&slots[0], g, |m, [g]| m + (g - m) * (1.0 - beta_1))?;
                update1(&slots[1], g, |v, [g]| v + (g * g - v) * (1.0 - beta_2))?;
                update2(w, &slots[0], &slots[1], |w, [m, v]| w - alpha * m / (v.sqrt() + epsilon))?;
            }
            Rule::RmsProp { rho, momentum, epsilon, centered } => {
                update1(&slots[0], g, |v, [g]| rho * v + (1.0 - rho) * g * g)?;
                let denominator = if centered {
                    update1(&slots[2], g, |a, [g]| rho * a + (1.0 - rho) * g)?;
                    slots[0].sub(&slots[2].sqr()?)?
                } else {
                    slots[0].clone()
                };
                let step = |g: f64, d: f64| lr * g / (d + epsilon).sqrt();
                if momentum > 0.0 {
                    update2(&slots[1], g, &denominator, |m, [g, d]| momentum * m + step(g, d))?;
                    update1(w, &slots[1], |w, [m]| w - m)?;
                } else {
                    update2(w, g, &denominator, |w, [g, d]| w - step(g, d))?;
                }
            }
            Rule::Adagrad { epsilon, .. } => {
                update1(&slots[0], g, |a, [g]| a + g * g)?;
                update2(w, g, &slots[0], |w, [g, a]| w - lr * g / (a + epsilon).sqrt())?;
            }
        }
        Ok(())
    }

    /// Ends a step: counts it (Adam's bias correction reads the count).
    pub fn finish_step(&mut self) {
        self.iterations += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use serde_json::json;

    fn tensor(n: usize, shape: (usize, usize), scale: f32) -> Tensor {
        let v: Vec<f32> = (0..n).map(|i| ((i * 7919 % 101) as f32 - 50.0) * scale).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn plain_sgd_folded_into_the_kernel_gradient_gemm_equals_the_update_from_the_gradient() {
        // A (6, 4) kernel whose gradient is xᵀ @ dy for x (5, 6) and dy (5, 4).
        let (x, dy) = (tensor(30, (5, 6), 0.01), tensor(20, (5, 4), 0.02));
        let w0 = tensor(24, (6, 4), 0.03);
        let run = |grad: Grad| -> Vec<f32> {
            let w = Var::from_tensor(&w0.copy().unwrap()).unwrap();
            let mut opt = Optimizer::from_json(&json!({"class_name": "SGD", "config": {"learning_rate": 0.1}})).unwrap();
            opt.prepare(&[&w]).unwrap();
            opt.update(0, &w, &grad).unwrap();
            opt.finish_step();
            assert_eq!(opt.iterations, 1);
            w.as_tensor().flatten_all().unwrap().to_vec1().unwrap()
        };
        let fused = run(Grad::Product { lhs: x.clone(), rhs: dy.clone() });
        let g = x.t().unwrap().matmul(&dy).unwrap();
        let expected = run(Grad::Value(g.clone()));
        let by_hand: Vec<f32> = w0.sub(&g.affine(0.1, 0.0).unwrap()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        for ((f, e), h) in fused.iter().zip(&expected).zip(&by_hand) {
            assert!((f - e).abs() <= 1e-6 && (e - h).abs() <= 1e-6, "fused {f}, from the gradient {e}, by hand {h}");
        }
        assert_eq!(w0.dtype(), DType::F32);
    }
}
