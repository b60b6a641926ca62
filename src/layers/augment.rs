//! Keras 3's geometric augmentation layers: RandomTranslation, RandomRotation and RandomZoom (one
//! affine transform drawn per image, resampled as TensorFlow's `ImageProjectiveTransformV3` does,
//! active while training only) and RandomCrop (one random window per batch while training, the
//! largest central window of the target's aspect ratio, resized, at inference). Each has its own
//! random stream (seeded from `seed=`, else drawn when built, saved with the model, as Dropout's).

use super::{image, shapes_accessors, single, Arity, Cfg, Entry, Extra, Gradients, Layer, Saved, Shapes};
use crate::ops::resample::{affine_taps, resample, resample_backward, resize_taps, FillMode, Interpolation, Taps};
use crate::{rng, Error, Result};
use candle_core::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use std::sync::Mutex;

/// A factor's range as Keras reads it: a number f is (-|f|, |f|), a pair is sorted; `ok` says which
/// values the layer accepts (each family has its own bounds and wording).
fn factor_range(cfg: &Cfg, key: &str, ok: fn(f64) -> bool, message: &str) -> Result<(f64, f64)> {
    let raw = cfg.raw(key);
    let bad = || Error::Value(format!("{message}Received: {key}={}", raw.map(|v| v.to_string()).unwrap_or("None".into())));
    let (lo, hi) = match raw {
        Some(Value::Array(pair)) if pair.len() == 2 => {
            let (a, b) = (pair[0].as_f64().ok_or_else(bad)?, pair[1].as_f64().ok_or_else(bad)?);
            (a.min(b), a.max(b))
        }
        Some(v) => v.as_f64().map(|f| (-f.abs(), f.abs())).ok_or_else(bad)?,
        None => return crate::value_err!("{}: missing required argument `{key}`", cfg.name()),
    };
    if !ok(lo) || !ok(hi) {
        return Err(bad());
    }
    Ok((lo, hi))
}

fn fill_mode(cfg: &Cfg) -> Result<FillMode> {
    match cfg.raw("fill_mode").map(|v| v.as_str()) {
        None | Some(Some("reflect")) => Ok(FillMode::Reflect),
        Some(Some("wrap")) => Ok(FillMode::Wrap),
        Some(Some("constant")) => Ok(FillMode::Constant),
        Some(Some("nearest")) => Ok(FillMode::Nearest),
        _ => crate::value_err!(
            "Unknown `fill_mode` {}. Expected of one ('reflect', 'wrap', 'constant', 'nearest').",
            cfg.raw("fill_mode").map(|v| v.to_string()).unwrap_or_default()
        ),
    }
}

fn interpolation(cfg: &Cfg) -> Result<Interpolation> {
    match cfg.raw("interpolation").map(|v| v.as_str()) {
        None | Some(Some("bilinear")) => Ok(Interpolation::Bilinear),
        Some(Some("nearest")) => Ok(Interpolation::Nearest),
        _ => crate::value_err!(
            "Unknown `interpolation` {}. Expected of one ('nearest', 'bilinear').",
            cfg.raw("interpolation").map(|v| v.to_string()).unwrap_or_default()
        ),
    }
}

/// Which transform a layer draws, with its factor ranges.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Fractions of the height and width.
    Translation { height: (f64, f64), width: (f64, f64) },
    /// Fractions of a full turn (counter-clockwise for positive values).
    Rotation { factor: (f64, f64) },
    /// `1 + factor` per axis; the width follows the height when it has no factor of its own.
    Zoom { height: (f64, f64), width: Option<(f64, f64)> },
}

const IN_UNIT: fn(f64) -> bool = |f| (-1.0..=1.0).contains(&f);

fn kind(class: &str, cfg: &Cfg) -> Result<Kind> {
    match class {
        "RandomTranslation" => {
            let m = "The `factor` argument should be a number (or a list of two numbers) in the range [-1.0, 1.0]. ";
            Ok(Kind::Translation { height: factor_range(cfg, "height_factor", IN_UNIT, m)?, width: factor_range(cfg, "width_factor", IN_UNIT, m)? })
        }
        "RandomRotation" => {
            let m = "The `factor` argument should be a number (or a list of two numbers) in the range [-1, 1]. ";
            Ok(Kind::Rotation { factor: factor_range(cfg, "factor", IN_UNIT, m)? })
        }
        _ => {
            let m = "The `height_factor` and `width_factor` arguments should be a number (or a list of two numbers) in the range (-1.0, 1.0]. ";
            let ok: fn(f64) -> bool = |f| f > -1.0 && f <= 1.0;
            let width = match cfg.raw("width_factor") {
                None => None,
                Some(_) => Some(factor_range(cfg, "width_factor", ok, m)?),
            };
            Ok(Kind::Zoom { height: factor_range(cfg, "height_factor", ok, m)?, width })
        }
    }
}

/// The validated config: the factors as given, the resampling arguments with Keras's defaults.
fn affine_json(class: &str, cfg: &Cfg) -> Result<Value> {
    kind(class, cfg)?;
    let (mode, interp) = (fill_mode(cfg)?, interpolation(cfg)?);
    let mut v = json!({
        "name": cfg.name(), "trainable": true,
        "fill_mode": format!("{mode:?}").to_lowercase(),
        "interpolation": format!("{interp:?}").to_lowercase(),
        "seed": cfg.optional_u64("seed")?, "fill_value": cfg.float("fill_value", 0.0)?,
        "data_format": "channels_last",
    });
    let keys: &[&str] = if class == "RandomRotation" { &["factor"] } else { &["height_factor", "width_factor"] };
    for key in keys {
        v[*key] = cfg.raw(key).cloned().unwrap_or(Value::Null);
    }
    Ok(v)
}

macro_rules! affine_entry {
    ($name:ident, $class:literal) => {
        pub const $name: Entry = Entry {
            class_name: $class,
            arity: Arity::One,
            validate: |cfg| {
                cfg.channels_last()?;
                affine_json($class, cfg)
            },
            output_shape: |cfg, inputs| {
                image(cfg.name(), single(inputs))?;
                Ok(single(inputs).to_vec())
            },
            build: |cfg, inputs, _| build_affine($class, cfg, inputs),
        };
    };
}

affine_entry!(RANDOM_TRANSLATION, "RandomTranslation");
affine_entry!(RANDOM_ROTATION, "RandomRotation");
affine_entry!(RANDOM_ZOOM, "RandomZoom");

fn build_affine(class: &'static str, cfg: &Cfg, inputs: &[Vec<usize>]) -> Result<Box<dyn Layer>> {
    let input = single(inputs);
    image(cfg.name(), input)?;
    let config = affine_json(class, cfg)?;
    let seed = cfg.optional_u64("seed")?;
    let rng = seed.map(ChaCha8Rng::seed_from_u64).unwrap_or_else(rng::fork);
    Ok(Box::new(RandomAffine {
        class,
        kind: kind(class, cfg)?,
        fill_mode: fill_mode(cfg)?,
        interpolation: interpolation(cfg)?,
        fill_value: cfg.float("fill_value", 0.0)?,
        config,
        shapes: Shapes::new(cfg.name().into(), input, input.to_vec()),
        rng: Mutex::new(rng),
    }))
}

/// While training, each image moved by its own draw of the layer's transform; the identity at
/// inference.
pub struct RandomAffine {
    class: &'static str,
    kind: Kind,
    fill_mode: FillMode,
    interpolation: Interpolation,
    fill_value: f64,
    config: Value,
    shapes: Shapes,
    rng: Mutex<ChaCha8Rng>,
}

/// One call's tap tables, one per image.
struct Drawn(Vec<Taps>);

impl RandomAffine {
    /// The transform (output pixel to input position) for one draw, as Keras 3 builds its matrix.
    fn transform(&self, r: &mut ChaCha8Rng, h: usize, w: usize) -> [f32; 8] {
        let mut uniform = |(lo, hi): (f64, f64)| lo + (hi - lo) * r.random::<f64>();
        let (hf, wf) = (h as f32, w as f32);
        match self.kind {
            Kind::Translation { height, width } => {
                let dy = uniform(height) as f32 * hf;
                let dx = uniform(width) as f32 * wf;
                [1.0, 0.0, -dx, 0.0, 1.0, -dy, 0.0, 0.0]
            }
            Kind::Rotation { factor } => {
                let degrees = uniform((factor.0 * 360.0, factor.1 * 360.0)) as f32;
                let (sin, cos) = (degrees * (std::f32::consts::PI / 180.0)).sin_cos();
                let (cx, cy) = (0.5 * (wf - 1.0), 0.5 * (hf - 1.0));
                let (a0, a1, b0, b1) = (cos, -sin, sin, cos);
                [a0, a1, cx - cx * a0 - cy * a1, b0, b1, cy - cx * b0 - cy * b1, 0.0, 0.0]
            }
            Kind::Zoom { height, width } => {
                let zy = 1.0 + uniform(height) as f32;
                let zx = width.map(|w| 1.0 + uniform(w) as f32).unwrap_or(zy);
                [zx, 0.0, (wf - 1.0) / 2.0 * (1.0 - zx), 0.0, zy, (hf - 1.0) / 2.0 * (1.0 - zy), 0.0, 0.0]
            }
        }
    }
}

impl Layer for RandomAffine {
    fn class_name(&self) -> &'static str {
        self.class
    }
    shapes_accessors!();
    fn config(&self) -> Value {
        let mut v = self.config.clone();
        v["name"] = json!(self.shapes.name);
        v
    }
    fn rng(&self) -> Option<&Mutex<ChaCha8Rng>> {
        Some(&self.rng)
    }
    /// The identity: Keras augments only while training.
    fn forward_pre(&self, xs: &[Tensor]) -> Result<Tensor> {
        Ok(xs[0].clone())
    }
    fn forward_train(&self, xs: &[Tensor], _activated: bool) -> Result<(Tensor, Extra)> {
        let (n, h, w, _) = xs[0].dims4()?;
        let taps: Vec<Taps> = {
            let mut r = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            (0..n).map(|_| affine_taps(self.transform(&mut r, h, w), (h, w), self.interpolation, self.fill_mode)).collect()
        };
        if taps.is_empty() {
            return Ok((xs[0].clone(), Extra::none()));
        }
        Ok((resample(&xs[0], &taps, self.fill_value)?, Extra::new(Drawn(taps))))
    }
    /// The transpose of the call's resampling (exact for its draw; the fill value takes none).
    fn backward(&self, saved: &Saved, grad: &Tensor, _input_grads: &[bool]) -> Result<Gradients> {
        Ok(Gradients::input(Some(match saved.extra.get::<Drawn>() {
            Some(Drawn(taps)) => resample_backward(grad, taps)?,
            None => grad.clone(),
        })))
    }
}

pub const RANDOM_CROP: Entry = Entry {
    class_name: "RandomCrop",
    arity: Arity::One,
    validate: |cfg| {
        cfg.channels_last()?;
        Ok(crop_json(cfg.name(), cfg.positive("height")?, cfg.positive("width")?, cfg.optional_u64("seed")?))
    },
    output_shape: |cfg, inputs| {
        let (_, _, c) = image(cfg.name(), single(inputs))?;
        Ok(vec![cfg.positive("height")?, cfg.positive("width")?, c])
    },
    build: |cfg, inputs, _| {
        let input = single(inputs);
        let (h, w, c) = image(cfg.name(), input)?;
        let (height, width, seed) = (cfg.positive("height")?, cfg.positive("width")?, cfg.optional_u64("seed")?);
        let rng = seed.map(ChaCha8Rng::seed_from_u64).unwrap_or_else(rng::fork);
        let central = Window::central(h, w, height, width);
        Ok(Box::new(RandomCrop { seed, central, shapes: Shapes::new(cfg.name().into(), input, vec![height, width, c]), rng: Mutex::new(rng) }))
    },
};

fn crop_json(name: &str, height: usize, width: usize, seed: Option<u64>) -> Value {
    json!({"name": name, "trainable": true, "height": height, "width": width, "seed": seed, "data_format": "channels_last"})
}

/// A window of the input, `(top, left, rows, cols)`, and the resize from it to the target size
/// where they differ.
#[derive(Clone, Debug)]
pub(crate) struct Window {
    top: usize,
    left: usize,
    rows: usize,
    cols: usize,
    resize: Option<Taps>,
}

impl Window {
    pub(crate) fn new(top: usize, left: usize, rows: usize, cols: usize, target: (usize, usize)) -> Self {
        let resize = ((rows, cols) != target).then(|| resize_taps((rows, cols), target));
        Window { top, left, rows, cols, resize }
    }

    /// The largest central window of the target's aspect ratio (Keras's box for inference and for
    /// images not larger than the target), resized to the target.
    pub(crate) fn central(h: usize, w: usize, height: usize, width: usize) -> Self {
        let rows = ((w * height) as f64 / width as f64) as usize;
        let cols = ((h * width) as f64 / height as f64) as usize;
        let (rows, cols) = (rows.clamp(1, h.max(1)), cols.clamp(1, w.max(1)));
        Window::new((h - rows) / 2, (w - cols) / 2, rows, cols, (height, width))
    }

    pub(crate) fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let crop = x.narrow(1, self.top, self.rows)?.narrow(2, self.left, self.cols)?.contiguous()?;
        match &self.resize {
            Some(taps) => Ok(resample(&crop, std::slice::from_ref(taps), 0.0)?),
            None => Ok(crop),
        }
    }

    pub(crate) fn backward(&self, grad: &Tensor, (h, w): (usize, usize)) -> Result<Tensor> {
        let g = match &self.resize {
            Some(taps) => resample_backward(grad, std::slice::from_ref(taps))?,
            None => grad.clone(),
        };
        let g = g.pad_with_zeros(1, self.top, h - self.rows - self.top)?;
        Ok(g.pad_with_zeros(2, self.left, w - self.cols - self.left)?)
    }
}

/// While training, one random `height x width` window of the batch (Keras 3 draws one per batch);
/// at inference, and for images not larger than the target, the central window of the target's
/// aspect ratio resized to it, as Keras documents.
pub struct RandomCrop {
    seed: Option<u64>,
    central: Window,
    shapes: Shapes,
    rng: Mutex<ChaCha8Rng>,
}

impl RandomCrop {
    fn target(&self) -> (usize, usize) {
        (self.shapes.output[0], self.shapes.output[1])
    }
    fn input(&self) -> (usize, usize) {
        (self.shapes.inputs[0][0], self.shapes.inputs[0][1])
    }
}

impl Layer for RandomCrop {
    fn class_name(&self) -> &'static str {
        "RandomCrop"
    }
    shapes_accessors!();
    fn config(&self) -> Value {
        let (height, width) = self.target();
        crop_json(&self.shapes.name, height, width, self.seed)
    }
    fn rng(&self) -> Option<&Mutex<ChaCha8Rng>> {
        Some(&self.rng)
    }
    fn forward_pre(&self, xs: &[Tensor]) -> Result<Tensor> {
        self.central.apply(&xs[0])
    }
    fn forward_train(&self, xs: &[Tensor], _activated: bool) -> Result<(Tensor, Extra)> {
        let ((h, w), (height, width)) = (self.input(), self.target());
        let window = if h > height && w > width {
            let mut r = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            let top = (r.random::<f64>() * (h - height + 1) as f64) as usize;
            let left = (r.random::<f64>() * (w - width + 1) as f64) as usize;
            Window::new(top.min(h - height), left.min(w - width), height, width, (height, width))
        } else {
            // Keras 3 cuts a target-sized window from the central box's corner (clipped to the
            // image), then resizes it.
            let c = &self.central;
            let (rows, cols) = ((c.top + height).min(h) - c.top, (c.left + width).min(w) - c.left);
            Window::new(c.top, c.left, rows, cols, (height, width))
        };
        Ok((window.apply(&xs[0])?, Extra::new(window)))
    }
    fn backward(&self, saved: &Saved, grad: &Tensor, _input_grads: &[bool]) -> Result<Gradients> {
        let window = saved.extra.get::<Window>().unwrap_or(&self.central);
        Ok(Gradients::input(Some(window.backward(grad, self.input())?)))
    }
}

#[cfg(test)]
#[path = "augment_tests.rs"]
mod tests;
