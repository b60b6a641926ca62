//! Optimizers with Keras 3's defaults and update rules (keras/src/optimizers/*.py), applied to
//! candle `Var`s in place, with Keras's gradient clipping (`clipnorm`, `clipvalue`,
//! `global_clipnorm`), decoupled `weight_decay` and learning-rate schedules (`crate::schedules`).

use crate::ops::grad::Grad;
use crate::ops::linear::sgd_update_tn;
use crate::ops::update::{update1, update2};
use crate::schedules::Schedule;
use crate::{Error, Result};
use candle_core::{Tensor, Var};
use serde_json::{json, Value};

#[derive(Clone, Debug, PartialEq)]
pub enum Rule {
    Sgd { momentum: f64, nesterov: bool },
    /// Adam, and AdamW (the same rule; only its default `weight_decay` differs); `amsgrad` divides
    /// by the running maximum of the second moment (a third slot).
    Adam { beta_1: f64, beta_2: f64, epsilon: f64, w: bool, amsgrad: bool },
    RmsProp { rho: f64, momentum: f64, epsilon: f64, centered: bool },
    Adagrad { initial_accumulator_value: f64, epsilon: f64 },
    Nadam { beta_1: f64, beta_2: f64, epsilon: f64 },
    Adadelta { rho: f64, epsilon: f64 },
    Adamax { beta_1: f64, beta_2: f64, epsilon: f64 },
    Lion { beta_1: f64, beta_2: f64 },
}

/// Keras's gradient clipping: at most one kind per optimizer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Clip {
    None,
    /// Each gradient rescaled to an L2 norm of at most this.
    Norm(f64),
    /// Each gradient element clipped to [-v, v].
    Value(f64),
    /// All gradients of a step rescaled together to a joint L2 norm of at most this.
    GlobalNorm(f64),
}

pub struct Optimizer {
    pub rule: Rule,
    /// The constant learning rate (unused while `schedule` is set).
    pub learning_rate: f64,
    pub schedule: Option<Schedule>,
    /// Decoupled weight decay: `w -= w * weight_decay * lr` before each update.
    pub weight_decay: Option<f64>,
    pub clip: Clip,
    /// Steps taken so far (Keras's `iterations`); Adam's bias correction uses it.
    pub iterations: u64,
    /// Per-variable state (momenta, moments, accumulators), created on the first step.
    slots: Vec<Vec<Tensor>>,
    /// Nadam's running product of its momentum schedule, `(step, product)`: a function of the step
    /// count, cached (recomputed from the count after a load).
    nadam_product: (u64, f64),
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
        let adam = |w| -> Result<Rule> {
            Ok(Rule::Adam { beta_1: num("beta_1", 0.9)?, beta_2: num("beta_2", 0.999)?, epsilon: num("epsilon", 1e-7)?, w, amsgrad: flag("amsgrad") })
        };
        let (rule, default_lr) = match name.to_lowercase().as_str() {
            "sgd" => (Rule::Sgd { momentum: num("momentum", 0.0)?, nesterov: flag("nesterov") }, 0.01),
            "adam" => (adam(false)?, 0.001),
            "adamw" => (adam(true)?, 0.001),
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
            "nadam" => (Rule::Nadam { beta_1: num("beta_1", 0.9)?, beta_2: num("beta_2", 0.999)?, epsilon: num("epsilon", 1e-7)? }, 0.001),
            "adadelta" => (Rule::Adadelta { rho: num("rho", 0.95)?, epsilon: num("epsilon", 1e-7)? }, 0.001),
            "adamax" => (Rule::Adamax { beta_1: num("beta_1", 0.9)?, beta_2: num("beta_2", 0.999)?, epsilon: num("epsilon", 1e-7)? }, 0.001),
            "lion" => {
                let beta_1 = num("beta_1", 0.9)?;
                if beta_1 <= 0.0 || beta_1 > 1.0 {
                    return Err(Error::Value(format!("Argument `beta_1` must be in the [0, 1] range. Otherwise, the optimizer degenerates to SignSGD. Received: beta_1={beta_1}.")));
                }
                (Rule::Lion { beta_1, beta_2: num("beta_2", 0.99)? }, 0.001)
            }
            _ => {
                return Err(Error::Value(format!(
                    "Could not interpret optimizer identifier: '{name}'. Known: sgd, adam, adamw, rmsprop, adagrad, \
                     nadam, adadelta, adamax, lion"
                )))
            }
        };
        let (learning_rate, schedule) = match cfg.get("learning_rate") {
            Some(v @ Value::Object(_)) => (default_lr, Some(Schedule::from_json(v)?)),
            _ => (num("learning_rate", default_lr)?, None),
        };
        let optional = |key: &str| -> Result<Option<f64>> {
            match cfg.get(key).filter(|v| !v.is_null()) {
                None => Ok(None),
                Some(_) => num(key, 0.0).map(Some),
            }
        };
        let weight_decay = match (optional("weight_decay")?, &rule) {
            (None, Rule::Adam { w: true, .. }) => Some(0.004),
            (wd, _) => wd,
        };
        let clips = [optional("clipnorm")?.map(Clip::Norm), optional("clipvalue")?.map(Clip::Value), optional("global_clipnorm")?.map(Clip::GlobalNorm)];
        let clip = match clips.iter().flatten().collect::<Vec<_>>()[..] {
            [] => Clip::None,
            [one] => *one,
            _ => {
                return Err(Error::Value(format!(
                    "{name}: Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. Received: clipnorm={}, clipvalue={}, global_clipnorm={}",
                    cfg["clipnorm"], cfg["clipvalue"], cfg["global_clipnorm"]
                )))
            }
        };
        Ok(Optimizer { rule, learning_rate, schedule, weight_decay, clip, iterations: 0, slots: Vec::new(), nadam_product: (0, 1.0) })
    }

    /// The learning rate of the next update: the schedule's value at the step count, or the constant.
    pub fn current_learning_rate(&self) -> f64 {
        match &self.schedule {
            Some(s) => s.at(self.iterations),
            None => self.learning_rate,
        }
    }

    /// True when an update needs every gradient of the step first (`global_clipnorm`).
    pub fn needs_all_gradients(&self) -> bool {
        matches!(self.clip, Clip::GlobalNorm(_))
    }

    /// `global_clipnorm`'s factor for the step's gradients (Keras's `clip_by_global_norm`).
    pub fn global_scale(&self, grads: &[Tensor]) -> Result<f64> {
        let Clip::GlobalNorm(c) = self.clip else { return Ok(1.0) };
        let mut sum = 0.0;
        for g in grads {
            sum += g.sqr()?.sum_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
        }
        let norm = sum.sqrt();
        Ok(c * (1.0 / norm).min(1.0 / c))
    }

    /// Sets the learning rate (a callback's `model.optimizer.learning_rate = ...`), checked as
    /// Keras's constructor checks it.
    pub fn set_learning_rate(&mut self, lr: f64) -> Result<()> {
        if self.schedule.is_some() {
            return Err(Error::Type(
                "This optimizer was created with a `LearningRateSchedule` object as its `learning_rate` constructor \
                 argument, hence its learning rate is not settable. If you need the learning rate to be settable, you \
                 should instantiate the optimizer with a float `learning_rate` argument."
                    .into(),
            ));
        }
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(Error::Value(format!("learning_rate must be a non-negative number, got {lr}")));
        }
        self.learning_rate = lr;
        Ok(())
    }

    pub fn class_name(&self) -> &'static str {
        match self.rule {
            Rule::Sgd { .. } => "SGD",
            Rule::Adam { w: false, .. } => "Adam",
            Rule::Adam { w: true, .. } => "AdamW",
            Rule::RmsProp { .. } => "RMSprop",
            Rule::Adagrad { .. } => "Adagrad",
            Rule::Nadam { .. } => "Nadam",
            Rule::Adadelta { .. } => "Adadelta",
            Rule::Adamax { .. } => "Adamax",
            Rule::Lion { .. } => "Lion",
        }
    }

    /// Keras `get_config()` of the optimizer.
    pub fn config(&self) -> Value {
        let mut c = match &self.rule {
            Rule::Sgd { momentum, nesterov } => json!({"momentum": momentum, "nesterov": nesterov}),
            Rule::Adam { beta_1, beta_2, epsilon, amsgrad, .. } => {
                json!({"beta_1": beta_1, "beta_2": beta_2, "epsilon": epsilon, "amsgrad": amsgrad})
            }
            Rule::Nadam { beta_1, beta_2, epsilon } | Rule::Adamax { beta_1, beta_2, epsilon } => {
                json!({"beta_1": beta_1, "beta_2": beta_2, "epsilon": epsilon})
            }
            Rule::RmsProp { rho, momentum, epsilon, centered } => {
                json!({"rho": rho, "momentum": momentum, "epsilon": epsilon, "centered": centered})
            }
            Rule::Adagrad { initial_accumulator_value, epsilon } => {
                json!({"initial_accumulator_value": initial_accumulator_value, "epsilon": epsilon})
            }
            Rule::Adadelta { rho, epsilon } => json!({"rho": rho, "epsilon": epsilon}),
            Rule::Lion { beta_1, beta_2 } => json!({"beta_1": beta_1, "beta_2": beta_2}),
        };
        c["learning_rate"] = match &self.schedule {
            Some(s) => s.to_json(),
            None => json!(self.learning_rate),
        };
        c["name"] = json!(self.class_name());
        c["weight_decay"] = json!(self.weight_decay);
        let (clipnorm, clipvalue, global) = match self.clip {
            Clip::None => (None, None, None),
            Clip::Norm(v) => (Some(v), None, None),
            Clip::Value(v) => (None, Some(v), None),
            Clip::GlobalNorm(v) => (None, None, Some(v)),
        };
        c["clipnorm"] = json!(clipnorm);
        c["clipvalue"] = json!(clipvalue);
        c["global_clipnorm"] = json!(global);
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
            Rule::Adam { amsgrad: true, .. } => 3,
            Rule::Adam { .. } | Rule::Nadam { .. } | Rule::Adadelta { .. } | Rule::Adamax { .. } => 2,
            Rule::RmsProp { .. } => 3,
            Rule::Adagrad { .. } | Rule::Lion { .. } => 1,
        }
    }

    /// Nadam's `u_product` after the momentum-schedule factor of step `step` (1-based):
    /// `prod_{t <= step} beta_1 (1 - 0.5 * 0.96^t)`.
    fn nadam_u_product(&mut self, beta_1: f64, step: u64) -> f64 {
        let u = |t: u64| beta_1 * (1.0 - 0.5 * 0.96f64.powf(t as f64));
        let (mut at, mut product) = self.nadam_product;
        if at > step {
            (at, product) = (0, 1.0);
        }
        while at < step {
            at += 1;
            product *= u(at);
        }
        self.nadam_product = (at, product);
        product
    }

    fn init_slots(&mut self, vars: &[&Var]) -> Result<()> {
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        self.slots = vars
            .iter()
            .map(|v| -> Result<Vec<Tensor>> {
                Ok(match &self.rule {
                    Rule::Sgd { momentum, .. } if *momentum > 0.0 => vec![zeros(v)?],
                    Rule::Sgd { .. } => vec![],
                    Rule::Adam { amsgrad: true, .. } => vec![zeros(v)?, zeros(v)?, zeros(v)?],
                    Rule::Adam { .. } | Rule::Nadam { .. } | Rule::Adadelta { .. } | Rule::Adamax { .. } => vec![zeros(v)?, zeros(v)?],
                    Rule::Lion { .. } => vec![zeros(v)?],
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
        let lr = self.current_learning_rate();
        let t = (self.iterations + 1) as f64;
        let w = var.as_tensor();
        if let Some(wd) = self.weight_decay {
            // Keras applies it to every variable before any update; each touches only itself.
            var.set(&w.affine(1.0 - wd * lr, 0.0)?)?;
        }
        if let (Rule::Sgd { momentum, .. }, Grad::Product { lhs, rhs, precision }, Clip::None) = (&self.rule, grad, self.clip) {
            if *momentum == 0.0 {
                return Ok(sgd_update_tn(w, lhs, rhs, lr, *precision)?);
            }
        }
        let g = &match self.clip {
            Clip::Norm(c) => {
                let g = grad.value(w)?;
                let norm = g.sqr()?.sum_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?.sqrt();
                if norm > 0.0 { g.affine(c / norm.max(c), 0.0)? } else { g }
            }
            Clip::Value(v) => grad.value(w)?.clamp(-v, v)?,
            _ => grad.value(w)?,
        };
        let nadam = match self.rule {
            Rule::Nadam { beta_1, .. } => {
                let step = self.iterations + 1;
                let product = self.nadam_u_product(beta_1, step);
                Some((product, product * beta_1 * (1.0 - 0.5 * 0.96f64.powf((step + 1) as f64))))
            }
            _ => None,
        };
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
            Rule::Adam { beta_1, beta_2, epsilon, amsgrad, .. } => {
                let alpha = lr * (1.0 - beta_2.powf(t)).sqrt() / (1.0 - beta_1.powf(t));
                update1(&slots[0], g, |m, [g]| m + (g - m) * (1.0 - beta_1))?;
                update1(&slots[1], g, |v, [g]| v + (g * g - v) * (1.0 - beta_2))?;
                let v = if amsgrad {
                    update1(&slots[2], &slots[1], |h, [v]| h.max(v))?;
                    &slots[2]
                } else {
                    &slots[1]
                };
                update2(w, &slots[0], v, |w, [m, v]| w - alpha * m / (v.sqrt() + epsilon))?;
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
            Rule::Nadam { beta_1, beta_2, epsilon } => {
                let (product, next_product) = nadam.expect("computed above");
                let u_t = beta_1 * (1.0 - 0.5 * 0.96f64.powf(t));
                let u_t1 = beta_1 * (1.0 - 0.5 * 0.96f64.powf(t + 1.0));
                let v_corr = 1.0 - beta_2.powf(t);
                update1(&slots[0], g, |m, [g]| m + (g - m) * (1.0 - beta_1))?;
                update1(&slots[1], g, |v, [g]| v + (g * g - v) * (1.0 - beta_2))?;
                let m_hat = slots[0].affine(u_t1 / (1.0 - next_product), 0.0)?.add(&g.affine((1.0 - u_t) / (1.0 - product), 0.0)?)?;
                update2(w, &m_hat, &slots[1], |w, [m, v]| w - m * lr / ((v / v_corr).sqrt() + epsilon))?;
            }
            Rule::Adadelta { rho, epsilon } => {
                update1(&slots[0], g, |a, [g]| rho * a + (1.0 - rho) * g * g)?;
                let delta = slots[1].affine(1.0, epsilon)?.sqrt()?.mul(g)?.div(&slots[0].affine(1.0, epsilon)?.sqrt()?)?.neg()?;
                update1(&slots[1], &delta, |d, [x]| rho * d + (1.0 - rho) * x * x)?;
                update1(w, &delta, |w, [x]| w + lr * x)?;
            }
            Rule::Adamax { beta_1, beta_2, epsilon } => {
                let correction = 1.0 - beta_1.powf(t);
                update1(&slots[0], g, |m, [g]| m + (g - m) * (1.0 - beta_1))?;
                update1(&slots[1], g, |u, [g]| (beta_2 * u).max(g.abs()))?;
                update2(w, &slots[0], &slots[1], |w, [m, u]| w - lr * m / (correction * (u + epsilon)))?;
            }
            Rule::Lion { beta_1, beta_2 } => {
                let sign = |x: f64| if x > 0.0 { 1.0 } else if x < 0.0 { -1.0 } else { 0.0 };
                update2(w, &slots[0], g, |w, [m, g]| w - lr * sign(m * beta_1 + g * (1.0 - beta_1)))?;
                update1(&slots[0], g, |m, [g]| m * beta_2 + g * (1.0 - beta_2))?;
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
        let fused = run(Grad::Product { lhs: x.clone(), rhs: dy.clone(), precision: Default::default() });
        let g = x.t().unwrap().matmul(&dy).unwrap();
        let expected = run(Grad::Value(g.clone()));
        let by_hand: Vec<f32> = w0.sub(&g.affine(0.1, 0.0).unwrap()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        for ((f, e), h) in fused.iter().zip(&expected).zip(&by_hand) {
            assert!((f - e).abs() <= 1e-6 && (e - h).abs() <= 1e-6, "fused {f}, from the gradient {e}, by hand {h}");
        }
        assert_eq!(w0.dtype(), DType::F32);
    }
}
