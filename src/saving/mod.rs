//! Saving and loading models: which parts of a `Sequential` go into a kandle file (architecture,
//! weights, compile configuration, optimizer and random-generator state) and how a file becomes a
//! model again. The bytes themselves are `container`'s; the random-generator encoding is `state`'s.
//!
//! Format version 1, a safetensors file with these header entries (all strings):
//! `format` = "kandle", `format_version` = "1", `content` = "model" or "weights",
//! `model_config` = JSON `{"class_name": "Sequential", "config": {"name", "input_shape", "layers":
//! [{"class_name", "config"}, ...]}}` (Keras layer configs), `kandle_version`, and `checksum`
//! (crc32, see `container`). A "model" file adds `compile_config` = JSON `{"optimizer":
//! {"class_name", "config"}, "loss", "metrics"}` and `training_state` = JSON `{"iterations",
//! "slots_per_variable", "variables", "rng", "layer_rngs"}`. Tensors, float32 in Keras layouts:
//! `layers/<i>/<k>` (weight k of layer i) and `optimizer/<j>/<s>` (slot s of model weight j).

pub mod container;
pub mod state;

use crate::layers::Layer;
use crate::losses::Loss;
use crate::model::Sequential;
use crate::optimizers::Optimizer;
use crate::{rng, Error, Result};
use candle_core::{DType, Device, Tensor};
use container::{corrupt, Contents, HostTensor};
use serde_json::{json, Value};
use std::path::Path;

/// Keras's `to_json()` of the model: what rebuilds its layers.
pub fn model_config(model: &Sequential) -> Value {
    let layers: Vec<Value> =
        model.layers().iter().map(|l| json!({"class_name": l.class_name(), "config": l.config()})).collect();
    json!({"class_name": "Sequential", "config": {
        "name": model.name, "input_shape": model.input_shape(), "layers": layers,
    }})
}

/// What `compile` was given: `{"optimizer": {"class_name", "config"}, "loss", "metrics"}`.
pub fn compile_config(model: &Sequential) -> Option<Value> {
    let compiled = model.compiled()?;
    let opt = &compiled.optimizer;
    let metrics: Vec<&str> = compiled.metrics.iter().map(|m| m.name.as_str()).collect();
    Some(json!({
        "optimizer": {"class_name": opt.class_name(), "config": opt.config()},
        "loss": compiled.loss.name(), "metrics": metrics,
    }))
}

fn host(t: &Tensor) -> Result<HostTensor> {
    Ok(HostTensor { shape: t.dims().to_vec(), data: t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()? })
}

fn base_contents(model: &Sequential, content: &str) -> Result<Contents> {
    let mut c = Contents::default();
    c.meta.insert("content".into(), content.into());
    c.meta.insert("kandle_version".into(), env!("CARGO_PKG_VERSION").into());
    c.meta.insert("model_config".into(), model_config(model).to_string());
    for (i, layer) in model.layers().iter().enumerate() {
        for (k, w) in layer.weights().iter().enumerate() {
            c.tensors.insert(format!("layers/{i}/{k}"), host(w.as_tensor())?);
        }
    }
    Ok(c)
}

/// `model.save_weights(path)`: the weights and the architecture they belong to.
pub fn save_weights(model: &Sequential, path: &Path) -> Result<()> {
    container::write(path, &base_contents(model, "weights")?)
}

/// `model.save(path)`: everything `load_model` needs to predict identically and to resume `fit`.
/// The global generator is saved too, so a resumed `fit` shuffles as the uninterrupted one.
pub fn save_model(model: &Sequential, path: &Path, include_optimizer: bool) -> Result<()> {
    let mut c = base_contents(model, "model")?;
    let mut training = json!({"rng": state::rng_to_json(&rng::lock())});
    let layer_rngs: serde_json::Map<String, Value> = model
        .layers()
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.rng().map(|r| (i.to_string(), state::rng_to_json(&r.lock().unwrap_or_else(|e| e.into_inner())))))
        .collect();
    training["layer_rngs"] = Value::Object(layer_rngs);
    if let (Some(compiled), Some(compile)) = (model.compiled(), compile_config(model)) {
        let opt = &compiled.optimizer;
        c.meta.insert("compile_config".into(), compile.to_string());
        if include_optimizer {
            let slots = opt.slots();
            training["iterations"] = json!(opt.iterations);
            training["variables"] = json!(slots.len());
            training["slots_per_variable"] = json!(slots.first().map(Vec::len).unwrap_or(0));
            for (j, per_var) in slots.iter().enumerate() {
                for (s, t) in per_var.iter().enumerate() {
                    c.tensors.insert(format!("optimizer/{j}/{s}"), host(t)?);
                }
            }
        }
    }
    c.meta.insert("training_state".into(), training.to_string());
    container::write(path, &c)
}

fn json_entry(c: &Contents, key: &str, path: &Path) -> Result<Option<Value>> {
    c.meta
        .get(key)
        .map(|s| serde_json::from_str(s).map_err(|e| corrupt(path, &format!("its '{key}' entry is not valid JSON ({e})"))))
        .transpose()
}

/// Rebuilds the architecture from `model_config`; an unknown layer is named.
fn build(c: &Contents, path: &Path) -> Result<Sequential> {
    let cfg = json_entry(c, "model_config", path)?.ok_or_else(|| corrupt(path, "its 'model_config' entry is missing"))?;
    let inner = &cfg["config"];
    let input_shape: Option<Vec<usize>> = serde_json::from_value(inner["input_shape"].clone()).ok();
    let (Some(layers), Some(input_shape)) = (inner["layers"].as_array(), input_shape) else {
        return Err(corrupt(path, "its model_config has no 'layers' list or no 'input_shape'"));
    };
    let wrap = |e: Error| corrupt(path, &e.to_string());
    let mut model = Sequential::new(inner["name"].as_str().unwrap_or("sequential"), &input_shape).map_err(wrap)?;
    for layer in layers {
        let class = layer["class_name"].as_str().unwrap_or("<missing class_name>");
        model.add(class, &layer["config"]).map_err(wrap)?;
    }
    Ok(model)
}

fn describe(layer: &dyn Layer) -> String {
    format!("layer \"{}\" ({})", layer.name(), layer.class_name())
}

/// One layer's weights as `Sequential::set_layer_weights` takes them: `(data, shape)` each.
type LayerWeights = Vec<(Vec<f32>, Vec<usize>)>;

/// The file's layer weights, checked against `model` (count, names, shapes) before any is written.
fn layer_weights(c: &Contents, model: &Sequential, path: &Path) -> Result<Vec<LayerWeights>> {
    let mut out = Vec::new();
    for (i, layer) in model.layers().iter().enumerate() {
        let mut values = Vec::new();
        for (k, var) in layer.weights().iter().enumerate() {
            let Some(t) = c.tensors.get(&format!("layers/{i}/{k}")) else {
                return Err(corrupt(path, &format!("weight {k} of {} is missing", describe(layer.as_ref()))));
            };
            if t.shape != var.dims() {
                return Err(corrupt(
                    path,
                    &format!("weight {k} of {} has shape {:?} in the file, expected {:?}", describe(layer.as_ref()), t.shape, var.dims()),
                ));
            }
            values.push((t.data.clone(), t.shape.clone()));
        }
        out.push(values);
    }
    let expected: std::collections::BTreeSet<String> = (0..out.len())
        .flat_map(|i| (0..out[i].len()).map(move |k| format!("layers/{i}/{k}")))
        .collect();
    if let Some(extra) = c.tensors.keys().find(|k| k.starts_with("layers/") && !expected.contains(*k)) {
        return Err(corrupt(path, &format!("it holds a tensor '{extra}' that no layer of the model has")));
    }
    Ok(out)
}

fn set_weights(model: &mut Sequential, weights: &[LayerWeights]) -> Result<()> {
    for (i, values) in weights.iter().enumerate() {
        model.set_layer_weights(i, values)?;
    }
    Ok(())
}

/// Compiles as saved and restores the optimizer's slots and step count.
fn restore_training(model: &mut Sequential, c: &Contents, path: &Path) -> Result<()> {
    let Some(compile) = json_entry(c, "compile_config", path)? else { return Ok(()) };
    let wrap = |e: Error| corrupt(path, &format!("its compile_config: {e}"));
    let optimizer = Optimizer::from_json(&compile["optimizer"]).map_err(wrap)?;
    let loss = Loss::parse(compile["loss"].as_str().unwrap_or("")).map_err(wrap)?;
    let metrics: Vec<String> = serde_json::from_value(compile["metrics"].clone()).map_err(|e| wrap(Error::Value(e.to_string())))?;
    model.compile(optimizer, loss, &metrics).map_err(wrap)?;
    let training = json_entry(c, "training_state", path)?.unwrap_or(Value::Null);
    let variables = training["variables"].as_u64().unwrap_or(0) as usize;
    let per_var = training["slots_per_variable"].as_u64().unwrap_or(0) as usize;
    let vars: Vec<Vec<usize>> = model.weights().iter().map(|v| v.dims().to_vec()).collect();
    if variables != 0 && variables != vars.len() {
        return Err(corrupt(path, &format!("its optimizer state is for {variables} variables, the model has {}", vars.len())));
    }
    let expected = model.compiled().map(|c| c.optimizer.slots_per_variable()).unwrap_or(0);
    if variables != 0 && per_var != expected {
        return Err(corrupt(path, &format!("its optimizer state has {per_var} slot(s) per variable, the optimizer keeps {expected}")));
    }
    let mut slots = Vec::with_capacity(variables);
    for (j, dims) in vars.iter().enumerate().take(variables) {
        let mut per = Vec::with_capacity(per_var);
        for s in 0..per_var {
            let t = c.tensors.get(&format!("optimizer/{j}/{s}")).filter(|t| &t.shape == dims).ok_or_else(|| {
                corrupt(path, &format!("optimizer slot {s} of variable {j} is missing or not of shape {dims:?}"))
            })?;
            per.push(Tensor::from_vec(t.data.clone(), t.shape.as_slice(), &Device::Cpu)?);
        }
        slots.push(per);
    }
    let stored = c.tensors.keys().filter(|k| k.starts_with("optimizer/")).count();
    if stored != variables * per_var {
        return Err(corrupt(path, &format!("it holds {stored} optimizer tensors, its training_state describes {}", variables * per_var)));
    }
    let iterations = training["iterations"].as_u64().unwrap_or(0);
    model.compiled_mut().expect("compiled above").optimizer.set_slots(slots, iterations);
    Ok(())
}

/// Restores the global generator and each seeded layer's own, as they were at save time.
fn restore_rngs(model: &Sequential, c: &Contents, path: &Path) -> Result<()> {
    let training = json_entry(c, "training_state", path)?.unwrap_or(Value::Null);
    let bad = |what: &str| corrupt(path, &format!("its training_state has an invalid {what}"));
    let global = match &training["rng"] {
        Value::Null => None,
        v => Some(state::rng_from_json(v).ok_or_else(|| bad("rng"))?),
    };
    let mut layers = Vec::new();
    if let Some(map) = training["layer_rngs"].as_object() {
        for (i, v) in map {
            let layer = i.parse::<usize>().ok().and_then(|i| model.layers().get(i)).and_then(|l| l.rng());
            layers.push((layer.ok_or_else(|| bad("layer_rngs entry"))?, state::rng_from_json(v).ok_or_else(|| bad("layer rng"))?));
        }
    }
    if let Some(g) = global {
        *rng::lock() = g;
    }
    for (slot, r) in layers {
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = r;
    }
    Ok(())
}

/// `kandle.models.load_model(path)`. With `compile`, also the compile configuration, optimizer state
/// and random generators (the global one included), so `fit` continues as if never interrupted.
pub fn load_model(path: &Path, compile: bool) -> Result<Sequential> {
    let c = container::read(path)?;
    if c.meta.get("content").map(String::as_str) == Some("weights") {
        return Err(corrupt(
            path,
            "it holds weights only (written by save_weights): build the model and call model.load_weights(path)",
        ));
    }
    let mut model = build(&c, path)?;
    let weights = layer_weights(&c, &model, path)?;
    if compile {
        restore_training(&mut model, &c, path)?;
    }
    c.verify(path)?;
    set_weights(&mut model, &weights)?;
    if compile {
        restore_rngs(&model, &c, path)?;
    }
    Ok(model)
}

/// `model.load_weights(path)` from a kandle model or weights file: layer by layer, each layer's class
/// and weight shapes must match; nothing is written unless everything does.
pub fn load_weights(model: &mut Sequential, path: &Path) -> Result<()> {
    let c = container::read(path)?;
    if let Some(cfg) = json_entry(&c, "model_config", path)? {
        let empty = vec![];
        let stored = cfg["config"]["layers"].as_array().unwrap_or(&empty);
        let ours = model.layers();
        if stored.len() != ours.len() {
            return Err(corrupt(path, &format!("it holds a model of {} layers, this model has {}", stored.len(), ours.len())));
        }
        for (layer, s) in ours.iter().zip(stored) {
            let class = s["class_name"].as_str().unwrap_or("");
            if class != layer.class_name() {
                let name = s["config"]["name"].as_str().unwrap_or("");
                return Err(corrupt(path, &format!("its layer \"{name}\" is a {class} where this model has {}", describe(layer.as_ref()))));
            }
        }
    }
    let weights = layer_weights(&c, model, path)?;
    c.verify(path)?;
    set_weights(model, &weights)
}

#[cfg(test)]
mod tests;
