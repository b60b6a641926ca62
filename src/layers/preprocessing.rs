//! Preprocessing and augmentation layers (Keras 3's): Rescaling and CenterCrop (cropping, or resizing
//! as Keras's smart_resize where the target is larger), the same in training and inference; RandomFlip and RandomContrast, active while training only, each with its own random
//! stream (seeded from `seed=`, else drawn when built, saved with the model, as Dropout's).

use super::augment::Window;
use super::{image, shapes_accessors, single, Arity, Cfg, Entry, Extra, Gradients, Layer, Saved, Shapes};
use crate::{rng, Error, Result};
use candle_core::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use std::sync::Mutex;

/// `scale` or `offset`: a number, or a list broadcast along the last axis (per channel).
fn factors(cfg: &Cfg, key: &str, default: f64) -> Result<Vec<f64>> {
    match cfg.raw(key) {
        None => Ok(vec![default]),
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_number) => Ok(a.iter().filter_map(Value::as_f64).collect()),
        Some(Value::Array(_)) => crate::value_err!("kandle does not implement Rescaling with a `{key}` other than a number or a flat list of numbers (one per channel) yet"),
        Some(v) => v.as_f64().map(|f| vec![f]).ok_or_else(|| Error::Value(format!("Rescaling: `{key}` must be a number or a list of numbers, got {v}"))),
    }
}

fn rescaling(cfg: &Cfg) -> Result<(Vec<f64>, Vec<f64>)> {
    if cfg.raw("scale").is_none() {
        return crate::value_err!("Rescaling: missing required argument `scale`");
    }
    Ok((factors(cfg, "scale", 1.0)?, factors(cfg, "offset", 0.0)?))
}

/// A list's length must be 1 or the input's last dimension, as broadcasting requires.
fn rescaling_fits(name: &str, input: &[usize], (scale, offset): (&[f64], &[f64])) -> Result<()> {
    let last = input.last().copied().unwrap_or(1);
    for (key, v) in [("scale", scale), ("offset", offset)] {
        if v.len() != 1 && v.len() != last {
            return crate::value_err!(
                "Layer \"{name}\" (Rescaling): a `{key}` of {} values does not broadcast against inputs of shape {}",
                v.len(),
                crate::error::keras_shape(input)
            );
        }
    }
    Ok(())
}

fn number_or_list(v: &[f64]) -> Value {
    if v.len() == 1 {
        json!(v[0])
    } else {
        json!(v)
    }
}

pub const RESCALING: Entry = Entry {
    class_name: "Rescaling",
    arity: Arity::One,
    validate: |cfg| {
        let (scale, offset) = rescaling(cfg)?;
        Ok(json!({"name": cfg.name(), "trainable": true, "scale": number_or_list(&scale), "offset": number_or_list(&offset)}))
    },
    output_shape: |cfg, inputs| {
        let (scale, offset) = rescaling(cfg)?;
        rescaling_fits(cfg.name(), single(inputs), (&scale, &offset))?;
        Ok(single(inputs).to_vec())
    },
    build: |cfg, inputs, dtype| {
        let (scale, offset) = rescaling(cfg)?;
        rescaling_fits(cfg.name(), single(inputs), (&scale, &offset))?;
        let tensor = |v: &[f64]| -> Result<Tensor> { Ok(Tensor::new(v, &candle_core::Device::Cpu)?.to_dtype(dtype)?) };
        let (scale_t, offset_t) = (tensor(&scale)?, tensor(&offset)?);
        Ok(Box::new(Rescaling { scale, offset, scale_t, offset_t, shapes: Shapes::new(cfg.name().into(), single(inputs), single(inputs).to_vec()) }))
    },
};

/// `x * scale + offset`, each a number or one value per channel.
pub struct Rescaling {
    scale: Vec<f64>,
    offset: Vec<f64>,
    scale_t: Tensor,
    offset_t: Tensor,
    shapes: Shapes,
}

impl Layer for Rescaling {
    fn class_name(&self) -> &'static str {
        "Rescaling"
    }
    shapes_accessors!();
    fn config(&self) -> Value {
        json!({"name": self.shapes.name, "trainable": true, "scale": number_or_list(&self.scale), "offset": number_or_list(&self.offset)})
    }
    fn forward_pre(&self, xs: &[Tensor]) -> Result<Tensor> {
        if let ([scale], [offset]) = (&self.scale[..], &self.offset[..]) {
            return Ok(xs[0].affine(*scale, *offset)?);
        }
        let x = &xs[0];
        Ok(x.broadcast_mul(&self.scale_t.to_dtype(x.dtype())?)?.broadcast_add(&self.offset_t.to_dtype(x.dtype())?)?)
    }
    fn backward(&self, _saved: &Saved, grad: &Tensor, _input_grads: &[bool]) -> Result<Gradients> {
        Ok(Gradients::input(Some(match &self.scale[..] {
            [scale] => grad.affine(*scale, 0.0)?,
            _ => grad.broadcast_mul(&self.scale_t.to_dtype(grad.dtype())?)?,
        })))
    }
}

/// Keras's CenterCrop of an image of `(h, w)`: the central `height x width` window where it fits
/// (the extra row or column, if any, cut at the bottom/right), else `smart_resize` (the largest
/// central window of the target's aspect ratio, resized).
fn crop_window(name: &str, cfg: &Cfg, input: &[usize]) -> Result<Window> {
    let (height, width) = (cfg.positive("height")?, cfg.positive("width")?);
    let (h, w, _) = image(name, input)?;
    if height <= h && width <= w {
        return Ok(Window::new((h - height) / 2, (w - width) / 2, height, width, (height, width)));
    }
    Ok(Window::central(h, w, height, width))
}

pub const CENTER_CROP: Entry = Entry {
    class_name: "CenterCrop",
    arity: Arity::One,
    validate: |cfg| Ok(json!({"name": cfg.name(), "trainable": true, "height": cfg.positive("height")?, "width": cfg.positive("width")?, "data_format": "channels_last"})),
    output_shape: |cfg, inputs| {
        let (_, _, c) = image(cfg.name(), single(inputs))?;
        Ok(vec![cfg.positive("height")?, cfg.positive("width")?, c])
    },
    build: |cfg, inputs, _| {
        let input = single(inputs);
        let window = crop_window(cfg.name(), cfg, input)?;
        let shapes = Shapes::new(cfg.name().into(), input, vec![cfg.positive("height")?, cfg.positive("width")?, input[2]]);
        Ok(Box::new(CenterCrop { window, shapes }))
    },
};

pub struct CenterCrop {
    window: Window,
    shapes: Shapes,
}

impl Layer for CenterCrop {
    fn class_name(&self) -> &'static str {
        "CenterCrop"
    }
    shapes_accessors!();
    fn config(&self) -> Value {
        json!({"name": self.shapes.name, "trainable": true, "height": self.shapes.output[0], "width": self.shapes.output[1], "data_format": "channels_last"})
    }
    fn forward_pre(&self, xs: &[Tensor]) -> Result<Tensor> {
        self.window.apply(&xs[0])
    }
    fn backward(&self, _saved: &Saved, grad: &Tensor, _input_grads: &[bool]) -> Result<Gradients> {
        let (h, w) = (self.shapes.inputs[0][0], self.shapes.inputs[0][1]);
        Ok(Gradients::input(Some(self.window.backward(grad, (h, w))?)))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FlipMode {
    Horizontal,
    Vertical,
    Both,
}

fn flip_config(cfg: &Cfg) -> Result<(FlipMode, Option<u64>)> {
    let mode = match cfg.raw("mode").map(|v| v.as_str()) {
        None | Some(Some("horizontal_and_vertical")) => FlipMode::Both,
        Some(Some("horizontal")) => FlipMode::Horizontal,
        Some(Some("vertical")) => FlipMode::Vertical,
        _ => {
            return Err(Error::Value(format!(
                "RandomFlip layer {} received an unknown mode argument {}",
                cfg.name(),
                cfg.raw("mode").map(|v| v.to_string()).unwrap_or_default()
            )))
        }
    };
    Ok((mode, cfg.optional_u64("seed")?))
}

fn flip_json(name: &str, mode: FlipMode, seed: Option<u64>) -> Value {
    let mode = match mode {
        FlipMode::Horizontal => "horizontal",
        FlipMode::Vertical => "vertical",
        FlipMode::Both => "horizontal_and_vertical",
    };
    json!({"name": name, "trainable": true, "mode": mode, "seed": seed, "data_format": "channels_last"})
}

pub const RANDOM_FLIP: Entry = Entry {
    class_name: "RandomFlip",
    arity: Arity::One,
    validate: |cfg| {
        let (mode, seed) = flip_config(cfg)?;
        Ok(flip_json(cfg.name(), mode, seed))
    },
    output_shape: |cfg, inputs| {
        image(cfg.name(), single(inputs))?;
        Ok(single(inputs).to_vec())
    },
    build: |cfg, inputs, _| {
        let (mode, seed) = flip_config(cfg)?;
        let input = single(inputs);
        image(cfg.name(), input)?;
        let rng = seed.map(ChaCha8Rng::seed_from_u64).unwrap_or_else(rng::fork);
        Ok(Box::new(RandomFlip { mode, seed, shapes: Shapes::new(cfg.name().into(), input, input.to_vec()), rng: Mutex::new(rng) }))
    },
};

/// Each image flipped left-right and/or top-bottom, each with probability 1/2, while training.
pub struct RandomFlip {
    mode: FlipMode,
    seed: Option<u64>,
    shapes: Shapes,
    rng: Mutex<ChaCha8Rng>,
}

/// The batch's draws: for each image, (flipped left-right, flipped top-bottom).
struct Flips(Vec<(bool, bool)>);

/// `x` (batch, rows, cols, channels) with image `i` flipped as `flips[i]` says.
fn flip(x: &Tensor, flips: &[(bool, bool)]) -> Result<Tensor> {
    let (_, h, w, _) = x.dims4()?;
    let reversed = |n: usize| Tensor::from_vec((0..n as u32).rev().collect::<Vec<_>>(), n, x.device());
    let (rows, cols) = (reversed(h)?, reversed(w)?);
    let images = flips
        .iter()
        .enumerate()
        .map(|(i, &(lr, tb))| {
            let mut img = x.narrow(0, i, 1)?;
            if lr {
                img = img.index_select(&cols, 2)?;
            }
            if tb {
                img = img.index_select(&rows, 1)?;
            }
            Ok(img)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::cat(&images, 0)?)
}

impl Layer for RandomFlip {
    fn class_name(&self) -> &'static str {
        "RandomFlip"
    }
    shapes_accessors!();
    fn config(&self) -> Value {
        flip_json(&self.shapes.name, self.mode, self.seed)
    }
    fn rng(&self) -> Option<&Mutex<ChaCha8Rng>> {
        Some(&self.rng)
    }
    /// The identity: Keras augments only while training.
    fn forward_pre(&self, xs: &[Tensor]) -> Result<Tensor> {
        Ok(xs[0].clone())
    }
    fn forward_train(&self, xs: &[Tensor], _activated: bool) -> Result<(Tensor, Extra)> {
        let n = xs[0].dim(0)?;
        let flips: Vec<(bool, bool)> = {
            let mut r = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            (0..n)
                .map(|_| {
                    let lr = self.mode != FlipMode::Vertical && r.random::<f64>() < 0.5;
                    let tb = self.mode != FlipMode::Horizontal && r.random::<f64>() < 0.5;
                    (lr, tb)
                })
                .collect()
        };
        Ok((flip(&xs[0], &flips)?, Extra::new(Flips(flips))))
    }
    /// A flip is its own inverse and its own transpose.
    fn backward(&self, saved: &Saved, grad: &Tensor, _input_grads: &[bool]) -> Result<Gradients> {
        Ok(Gradients::input(Some(match saved.extra.get::<Flips>() {
            Some(Flips(flips)) => flip(grad, flips)?,
            None => grad.clone(),
        })))
    }
}

/// Keras's `factor`: a number f (the contrast factor drawn from [1 - f, 1 + f]) or a pair (lower,
/// upper) for [1 - lower, 1 + upper]; and `value_range`, where the output is clipped.
/// RandomContrast's arguments: the factor's (lower, upper), the value range, the seed.
type ContrastConfig = ((f64, f64), (f64, f64), Option<u64>);

fn contrast_config(cfg: &Cfg) -> Result<ContrastConfig> {
    let bad = || Error::Value(format!("RandomContrast layer {}: `factor` must be a number in [0, 1] or a pair (lower, upper) with 0 <= lower <= 1 and upper >= 0, got {}", cfg.name(), cfg.raw("factor").map(|v| v.to_string()).unwrap_or("nothing".into())));
    let number = |v: &Value| v.as_f64();
    let factor = match cfg.raw("factor") {
        Some(Value::Array(pair)) if pair.len() == 2 => (number(&pair[0]).ok_or_else(bad)?, number(&pair[1]).ok_or_else(bad)?),
        Some(v) => number(v).map(|f| (f, f)).ok_or_else(bad)?,
        None => return Err(bad()),
    };
    if !(0.0..=1.0).contains(&factor.0) || factor.1.is_nan() || factor.1 < 0.0 || (cfg.raw("factor").is_some_and(|v| !v.is_array()) && factor.1 > 1.0) {
        return Err(bad());
    }
    let range = match cfg.raw("value_range") {
        None => (0.0, 255.0),
        Some(Value::Array(r)) if r.len() == 2 && r[0].as_f64().zip(r[1].as_f64()).is_some_and(|(a, b)| a < b) => (r[0].as_f64().unwrap_or(0.0), r[1].as_f64().unwrap_or(255.0)),
        Some(v) => return crate::value_err!("RandomContrast layer {}: `value_range` must be a pair (low, high) with low < high, got {v}", cfg.name()),
    };
    Ok((factor, range, cfg.optional_u64("seed")?))
}

fn contrast_json(name: &str, factor: (f64, f64), range: (f64, f64), seed: Option<u64>) -> Value {
    let factor = if factor.0 == factor.1 { json!(factor.0) } else { json!([factor.0, factor.1]) };
    json!({"name": name, "trainable": true, "factor": factor, "value_range": [range.0, range.1], "seed": seed})
}

pub const RANDOM_CONTRAST: Entry = Entry {
    class_name: "RandomContrast",
    arity: Arity::One,
    validate: |cfg| {
        let (factor, range, seed) = contrast_config(cfg)?;
        Ok(contrast_json(cfg.name(), factor, range, seed))
    },
    output_shape: |cfg, inputs| {
        image(cfg.name(), single(inputs))?;
        Ok(single(inputs).to_vec())
    },
    build: |cfg, inputs, _| {
        let (factor, range, seed) = contrast_config(cfg)?;
        let input = single(inputs);
        image(cfg.name(), input)?;
        let rng = seed.map(ChaCha8Rng::seed_from_u64).unwrap_or_else(rng::fork);
        let shapes = Shapes::new(cfg.name().into(), input, input.to_vec());
        Ok(Box::new(RandomContrast { factor, range, seed, shapes, rng: Mutex::new(rng) }))
    },
};

/// While training, each image's contrast scaled by a factor drawn from [1 - lower, 1 + upper]:
/// `clip((x - m) * f + m, value_range)`, `m` the image's mean per channel (Keras 3's formula).
pub struct RandomContrast {
    factor: (f64, f64),
    range: (f64, f64),
    seed: Option<u64>,
    shapes: Shapes,
    rng: Mutex<ChaCha8Rng>,
}

/// One call's draws, `(n, 1, 1, 1)`, and where the output was not clipped.
struct Contrast {
    factors: Tensor,
    inside: Tensor,
}

fn image_mean(x: &Tensor) -> Result<Tensor> {
    Ok(x.mean_keepdim(1)?.mean_keepdim(2)?)
}

impl Layer for RandomContrast {
    fn class_name(&self) -> &'static str {
        "RandomContrast"
    }
    shapes_accessors!();
    fn config(&self) -> Value {
        contrast_json(&self.shapes.name, self.factor, self.range, self.seed)
    }
    fn rng(&self) -> Option<&Mutex<ChaCha8Rng>> {
        Some(&self.rng)
    }
    /// The identity: Keras augments only while training.
    fn forward_pre(&self, xs: &[Tensor]) -> Result<Tensor> {
        Ok(xs[0].clone())
    }
    fn forward_train(&self, xs: &[Tensor], _activated: bool) -> Result<(Tensor, Extra)> {
        let x = &xs[0];
        let n = x.dim(0)?;
        let (low, high) = (1.0 - self.factor.0, 1.0 + self.factor.1);
        let draws: Vec<f64> = {
            let mut r = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            (0..n).map(|_| low + (high - low) * r.random::<f64>()).collect()
        };
        let factors = Tensor::from_vec(draws, (n, 1, 1, 1), x.device())?.to_dtype(x.dtype())?;
        let mean = image_mean(x)?;
        let z = x.broadcast_sub(&mean)?.broadcast_mul(&factors)?.broadcast_add(&mean)?;
        let inside = z.ge(self.range.0)?.mul(&z.le(self.range.1)?)?.to_dtype(x.dtype())?;
        Ok((z.clamp(self.range.0, self.range.1)?, Extra::new(Contrast { factors, inside })))
    }
    /// With g the gradient inside the clip: `f g + (1 - f) mean(g)` per image and channel.
    fn backward(&self, saved: &Saved, grad: &Tensor, _input_grads: &[bool]) -> Result<Gradients> {
        let Some(Contrast { factors, inside }) = saved.extra.get::<Contrast>() else {
            return Ok(Gradients::input(Some(grad.clone())));
        };
        let g = grad.mul(inside)?;
        let rest = factors.affine(-1.0, 1.0)?;
        Ok(Gradients::input(Some(g.broadcast_mul(factors)?.broadcast_add(&image_mean(&g)?.broadcast_mul(&rest)?)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{check_layer, normal, var};

    fn build(class: &str, config: Value, input: &[usize]) -> Box<dyn Layer> {
        crate::layers::build(class, &config, &[input.to_vec()], candle_core::DType::F64).unwrap()
    }

    #[test]
    fn rescaling_and_center_crop_gradients_match_finite_differences() {
        let x = var(normal(2 * 5 * 6 * 2, 3), &[2, 5, 6, 2]);
        check_layer("Rescaling", build("Rescaling", json!({"name": "r", "scale": 0.25, "offset": -1.0}), &[5, 6, 2]).as_ref(), &x);
        check_layer("CenterCrop", build("CenterCrop", json!({"name": "c", "height": 2, "width": 3}), &[5, 6, 2]).as_ref(), &x);
        check_layer("Rescaling per channel", build("Rescaling", json!({"name": "r", "scale": [0.5, -3.0], "offset": [1.0, 2.0]}), &[5, 6, 2]).as_ref(), &x);
        // Larger than the input: Keras's smart_resize (a central window, resized).
        check_layer("CenterCrop resize", build("CenterCrop", json!({"name": "c", "height": 7, "width": 4}), &[5, 6, 2]).as_ref(), &x);
    }

    /// RandomContrast draws anew at every call: three layers with one seed draw alike, so the
    /// directional derivative of one draw, by central differences, meets its backward pass.
    #[test]
    fn random_contrast_gradient_matches_central_differences_of_one_draw() {
        let config = json!({"name": "c", "factor": [0.4, 0.7], "value_range": [-1.5, 1.5], "seed": 9});
        let layer = || build("RandomContrast", config.clone(), &[3, 4, 2]);
        let x = Tensor::from_vec(normal(5 * 24, 7), (5, 3, 4, 2), &candle_core::Device::Cpu).unwrap();
        let v = Tensor::from_vec(normal(5 * 24, 8), (5, 3, 4, 2), &candle_core::Device::Cpu).unwrap();
        let g = Tensor::from_vec(normal(5 * 24, 9), (5, 3, 4, 2), &candle_core::Device::Cpu).unwrap();
        let dot = |a: &Tensor, b: &Tensor| a.mul(b).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap();
        let eps = 1e-6;
        let at = |t: &Tensor| layer().forward_train(std::slice::from_ref(t), true).unwrap().0;
        let (plus, minus) = (at(&(&x + v.affine(eps, 0.0).unwrap()).unwrap()), at(&(&x - v.affine(eps, 0.0).unwrap()).unwrap()));
        let numeric = dot(&(plus - minus).unwrap(), &g) / (2.0 * eps);
        let l = layer();
        let (y, extra) = l.forward_train(std::slice::from_ref(&x), true).unwrap();
        let clipped = y.eq(1.5).unwrap().to_dtype(candle_core::DType::F64).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap();
        assert!(clipped > 0.0, "the test should reach the clip");
        let saved = Saved { inputs: vec![x.clone()], output: y, activated: true, extra };
        let back = l.backward(&saved, &g, &[true]).unwrap().inputs.remove(0).unwrap();
        let analytic = dot(&v, &back);
        assert!((numeric - analytic).abs() < 1e-6 * analytic.abs().max(1.0), "{numeric} vs {analytic}");
    }

    /// RandomFlip draws anew at every call, so instead of finite differences: its backward pass is
    /// the adjoint of that call's forward pass, <forward(x), g> = <x, backward(g)>, and it flips.
    #[test]
    fn random_flip_backward_is_the_adjoint_of_its_draw() {
        let layer = build("RandomFlip", json!({"name": "f", "seed": 4}), &[3, 4, 1]);
        let x = Tensor::from_vec(normal(16 * 12, 5), (16, 3, 4, 1), &candle_core::Device::Cpu).unwrap();
        let g = Tensor::from_vec(normal(16 * 12, 6), (16, 3, 4, 1), &candle_core::Device::Cpu).unwrap();
        let (y, extra) = layer.forward_train(std::slice::from_ref(&x), true).unwrap();
        let flips = extra.get::<Flips>().unwrap().0.clone();
        assert!(flips.iter().any(|f| f.0) && flips.iter().any(|f| !f.0) && flips.iter().any(|f| f.1), "{flips:?}");
        let saved = Saved { inputs: vec![x.clone()], output: y.clone(), activated: true, extra };
        let back = layer.backward(&saved, &g, &[true]).unwrap().inputs.remove(0).unwrap();
        let dot = |a: &Tensor, b: &Tensor| a.mul(b).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap();
        assert!((dot(&y, &g) - dot(&x, &back)).abs() < 1e-9);
        let (img, out) = (x.get(0).unwrap().squeeze(2).unwrap().to_vec2::<f64>().unwrap(), y.get(0).unwrap().squeeze(2).unwrap().to_vec2::<f64>().unwrap());
        let (lr, tb) = flips[0];
        for r in 0..3 {
            for c in 0..4 {
                let (sr, sc) = (if tb { 2 - r } else { r }, if lr { 3 - c } else { c });
                assert_eq!(out[r][c], img[sr][sc]);
            }
        }
        let inference = layer.forward(std::slice::from_ref(&x)).unwrap();
        assert_eq!(inference.flatten_all().unwrap().to_vec1::<f64>().unwrap(), x.flatten_all().unwrap().to_vec1::<f64>().unwrap());
    }
}
