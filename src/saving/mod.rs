//! Saving and loading models: which parts of a `Model` go into a kandle file (architecture,
//! weights, compile configuration, optimizer and random-generator state) and how a file becomes a
//! model again. The bytes themselves are `container`'s; the random-generator encoding is `state`'s.
//!
//! Format version 2, a safetensors file with these header entries (all strings):
//! `format` = "kandle", `format_version` = "2", `content` = "model" or "weights",
//! `model_config` = JSON, Keras's `{"class_name": "Sequential" | "Functional", "config": ...}`
//! (`crate::graph`), `kandle_version`, and `checksum` (crc32, see `container`). A "model" file adds
//! `compile_config` = JSON `{"optimizer": {"class_name", "config"}, "loss", "metrics"}` and
//! `training_state` = JSON `{"iterations", "slots_per_variable", "variables", "shuffle_rng",
//! "layer_rngs": {layer name: rng}}`. Tensors, float32 in Keras layouts: `layers/<layer>/<weight>`
//! (`conv1/kernel`, `bn_conv1/moving_mean`) and `optimizer/<layer>/<weight>/<s>` (slot s).
//! A `BackupAndRestore` backup is a model file with one more entry (`backup_progress`).
//! Version 1 files (Sequential only, keyed by position: `layers/<i>/<k>`, `optimizer/<j>/<s>`)
//! still load.

pub mod backup;
pub mod container;
pub mod state;

use crate::layers::Layer;
use crate::losses::Loss;
use crate::model::Model;
use crate::optimizers::Optimizer;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use container::{corrupt, Contents, HostTensor};
use serde_json::{json, Value};
use std::path::Path;

/// Keras's `to_json()` of the model: what rebuilds its layers.
pub fn model_config(model: &Model) -> Value {
    model.keras_config()
}

/// What `compile` was given: `{"optimizer": {"class_name", "config"}, "loss", "metrics"}`.
pub fn compile_config(model: &Model) -> Option<Value> {
    let compiled = model.compiled()?;
    let opt = &compiled.optimizer;
    let metrics: Vec<&Value> = compiled.metrics.iter().map(|m| &m.source).collect();
    Some(json!({
        "optimizer": {"class_name": opt.class_name(), "config": opt.config()},
        "loss": compiled.loss.to_value(), "metrics": metrics,
    }))
}

fn host(t: &Tensor) -> Result<HostTensor> {
    Ok(HostTensor { shape: t.dims().to_vec(), data: t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()? })
}

/// How a file names tensors: version 2 by layer and weight name, version 1 by position.
struct Keys {
    v1: bool,
}

impl Keys {
    fn of(c: &Contents) -> Self {
        Keys { v1: c.meta.get("format_version").map(String::as_str) == Some("1") }
    }

    /// `(i, k)`: layer `i`'s variable `k` (`weights()` then `state()`), the layer called `name` in
    /// the file.
    fn weight(&self, model: &Model, i: usize, k: usize, name: &str) -> String {
        if self.v1 {
            return format!("layers/{i}/{k}");
        }
        format!("layers/{name}/{}", model.layers()[i].weight_names().get(k).copied().unwrap_or("?"))
    }

    /// Slot `s` of trainable variable `j` (the optimizer's order), at layer `i`'s weight `k`.
    fn slot(&self, model: &Model, (i, k): (usize, usize), j: usize, s: usize) -> String {
        if self.v1 {
            return format!("optimizer/{j}/{s}");
        }
        let l = &model.layers()[i];
        format!("optimizer/{}/{}/{s}", l.name(), l.weight_names().get(k).copied().unwrap_or("?"))
    }
}

/// Every layer variable as `(layer index, variable index, var)`, `get_weights()` order.
fn variables(model: &Model) -> Vec<(usize, usize, &Var)> {
    model
        .layers()
        .iter()
        .enumerate()
        .flat_map(|(i, l)| l.variables().into_iter().enumerate().map(move |(k, v)| (i, k, v)))
        .collect()
}

/// The optimizer's variables as `(layer index, weight index)`: trainable layers' weights.
fn trained(model: &Model) -> Vec<(usize, usize)> {
    model
        .layers()
        .iter()
        .enumerate()
        .filter(|(_, l)| l.trainable())
        .flat_map(|(i, l)| (0..l.weights().len()).map(move |k| (i, k)))
        .collect()
}

fn base_contents(model: &Model, content: &str) -> Result<Contents> {
    let mut c = Contents::default();
    c.meta.insert("content".into(), content.into());
    c.meta.insert("kandle_version".into(), env!("CARGO_PKG_VERSION").into());
    c.meta.insert("model_config".into(), model_config(model).to_string());
    let keys = Keys { v1: false };
    for (i, k, w) in variables(model) {
        c.tensors.insert(keys.weight(model, i, k, model.layers()[i].name()), host(w.as_tensor())?);
    }
    Ok(c)
}

/// `model.save_weights(path)`: the weights and the architecture they belong to.
pub fn save_weights(model: &Model, path: &Path) -> Result<()> {
    container::write(path, &base_contents(model, "weights")?)
}

/// `model.save(path)`: everything `load_model` needs to predict identically and to resume `fit`:
/// the model's shuffle stream and each Dropout layer's stream included.
pub fn save_model(model: &Model, path: &Path, include_optimizer: bool) -> Result<()> {
    container::write(path, &model_contents(model, include_optimizer)?)
}

/// What `save_model` writes.
fn model_contents(model: &Model, include_optimizer: bool) -> Result<Contents> {
    let mut c = base_contents(model, "model")?;
    let mut training = json!({"shuffle_rng": state::rng_to_json(&model.shuffle_rng)});
    let layer_rngs: serde_json::Map<String, Value> = model
        .layers()
        .iter()
        .filter_map(|l| l.rng().map(|r| (l.name().to_string(), state::rng_to_json(&r.lock().unwrap_or_else(|e| e.into_inner())))))
        .collect();
    training["layer_rngs"] = Value::Object(layer_rngs);
    if let (Some(compiled), Some(compile)) = (model.compiled(), compile_config(model)) {
        let opt = &compiled.optimizer;
        c.meta.insert("compile_config".into(), compile.to_string());
        if include_optimizer {
            let slots = opt.slots();
            let at = trained(model);
            training["iterations"] = json!(opt.iterations);
            training["variables"] = json!(slots.len());
            training["slots_per_variable"] = json!(slots.first().map(Vec::len).unwrap_or(0));
            let keys = Keys { v1: false };
            for (j, per_var) in slots.iter().enumerate() {
                for (s, t) in per_var.iter().enumerate() {
                    c.tensors.insert(keys.slot(model, at[j], j, s), host(t)?);
                }
            }
        }
    }
    c.meta.insert("training_state".into(), training.to_string());
    Ok(c)
}

fn json_entry(c: &Contents, key: &str, path: &Path) -> Result<Option<Value>> {
    c.meta
        .get(key)
        .map(|s| serde_json::from_str(s).map_err(|e| corrupt(path, &format!("its '{key}' entry is not valid JSON ({e})"))))
        .transpose()
}

/// Rebuilds the architecture from `model_config`; an unknown layer is named.
fn build(c: &Contents, path: &Path) -> Result<Model> {
    let cfg = json_entry(c, "model_config", path)?.ok_or_else(|| corrupt(path, "its 'model_config' entry is missing"))?;
    Model::from_config(&cfg, DType::F32).map_err(|e| corrupt(path, &e.to_string()))
}

fn describe(layer: &dyn Layer) -> String {
    format!("layer \"{}\" ({})", layer.name(), layer.class_name())
}

/// One layer's variables as `Model::set_layer_weights` takes them: `(data, shape)` each.
type LayerWeights = Vec<(Vec<f32>, Vec<usize>)>;

/// The file's layer weights, checked against `model` (count, names, shapes) before any is written;
/// `names` are the file's names of the model's layers, in order.
fn layer_weights(c: &Contents, model: &Model, names: &[String], path: &Path) -> Result<Vec<LayerWeights>> {
    let keys = Keys::of(c);
    let mut out: Vec<LayerWeights> = vec![Vec::new(); model.layers().len()];
    let mut expected = std::collections::BTreeSet::new();
    for (i, k, var) in variables(model) {
        let layer = model.layers()[i].as_ref();
        let key = keys.weight(model, i, k, &names[i]);
        let Some(t) = c.tensors.get(&key) else {
            return Err(corrupt(path, &format!("weight {k} of {} ('{key}') is missing", describe(layer))));
        };
        if t.shape != var.dims() {
            return Err(corrupt(
                path,
                &format!("weight {k} of {} has shape {:?} in the file, expected {:?}", describe(layer), t.shape, var.dims()),
            ));
        }
        out[i].push((t.data.clone(), t.shape.clone()));
        expected.insert(key);
    }
    if let Some(extra) = c.tensors.keys().find(|k| k.starts_with("layers/") && !expected.contains(*k)) {
        return Err(corrupt(path, &format!("it holds a tensor '{extra}' that no layer of the model has")));
    }
    Ok(out)
}

fn set_weights(model: &mut Model, weights: &[LayerWeights]) -> Result<()> {
    for (i, values) in weights.iter().enumerate() {
        model.set_layer_weights(i, values)?;
    }
    Ok(())
}

/// Compiles as saved and restores the optimizer's slots and step count.
fn restore_training(model: &mut Model, c: &Contents, path: &Path) -> Result<()> {
    let Some(compile) = json_entry(c, "compile_config", path)? else { return Ok(()) };
    let wrap = |e: Error| corrupt(path, &format!("its compile_config: {e}"));
    let optimizer = Optimizer::from_json(&compile["optimizer"]).map_err(wrap)?;
    let loss = Loss::from_value(&compile["loss"]).map_err(wrap)?;
    let metrics: Vec<String> = compile["metrics"]
        .as_array()
        .ok_or_else(|| wrap(Error::Value("'metrics' is not a list".into())))?
        .iter()
        .map(|m| m.as_str().map(str::to_string).unwrap_or_else(|| m.to_string()))
        .collect();
    model.compile(optimizer, loss, &metrics).map_err(wrap)?;
    let training = json_entry(c, "training_state", path)?.unwrap_or(Value::Null);
    let variables = training["variables"].as_u64().unwrap_or(0) as usize;
    let per_var = training["slots_per_variable"].as_u64().unwrap_or(0) as usize;
    let at = trained(model);
    let vars: Vec<Vec<usize>> = model.weights().iter().map(|v| v.dims().to_vec()).collect();
    if variables != 0 && variables != vars.len() {
        return Err(corrupt(path, &format!("its optimizer state is for {variables} variables, the model has {}", vars.len())));
    }
    let expected = model.compiled().map(|c| c.optimizer.slots_per_variable()).unwrap_or(0);
    if variables != 0 && per_var != expected {
        return Err(corrupt(path, &format!("its optimizer state has {per_var} slot(s) per variable, the optimizer keeps {expected}")));
    }
    let keys = Keys::of(c);
    let mut slots = Vec::with_capacity(variables);
    for (j, dims) in vars.iter().enumerate().take(variables) {
        let mut per = Vec::with_capacity(per_var);
        for s in 0..per_var {
            let key = keys.slot(model, at[j], j, s);
            let t = c.tensors.get(&key).filter(|t| &t.shape == dims).ok_or_else(|| {
                corrupt(path, &format!("optimizer slot '{key}' is missing or not of shape {dims:?}"))
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

/// Restores the model's shuffle stream and each Dropout layer's own, as they were at save time.
/// Version 1 files kept one global stream; their layers' streams were keyed by position.
fn restore_rngs(model: &mut Model, c: &Contents, path: &Path) -> Result<()> {
    let training = json_entry(c, "training_state", path)?.unwrap_or(Value::Null);
    let bad = |what: &str| corrupt(path, &format!("its training_state has an invalid {what}"));
    let keys = Keys::of(c);
    let mut layers = Vec::new();
    if let Some(map) = training["layer_rngs"].as_object() {
        for (key, v) in map {
            let index = if keys.v1 { key.parse::<usize>().ok() } else { model.layer_index(key).ok() };
            let layer = index.and_then(|i| model.layers().get(i)).and_then(|l| l.rng());
            layers.push((layer.ok_or_else(|| bad("layer_rngs entry"))?, state::rng_from_json(v).ok_or_else(|| bad("layer rng"))?));
        }
    }
    for (slot, r) in layers {
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = r;
    }
    let shuffle = match &training[if keys.v1 { "rng" } else { "shuffle_rng" }] {
        Value::Null => None,
        v => Some(state::rng_from_json(v).ok_or_else(|| bad("shuffle_rng"))?),
    };
    if let Some(r) = shuffle {
        model.shuffle_rng = r;
    }
    Ok(())
}

/// `kandle.models.load_model(path)`. With `compile`, also the compile configuration, optimizer state
/// and random streams, so `fit` continues as if never interrupted.
pub fn load_model(path: &Path, compile: bool) -> Result<Model> {
    let c = container::read(path)?;
    if c.meta.get("content").map(String::as_str) == Some("weights") {
        return Err(corrupt(
            path,
            "it holds weights only (written by save_weights): build the model and call model.load_weights(path)",
        ));
    }
    let mut model = build(&c, path)?;
    let names: Vec<String> = model.layers().iter().map(|l| l.name().to_string()).collect();
    let weights = layer_weights(&c, &model, &names, path)?;
    if compile {
        restore_training(&mut model, &c, path)?;
    }
    c.verify(path)?;
    set_weights(&mut model, &weights)?;
    if compile {
        restore_rngs(&mut model, &c, path)?;
    }
    Ok(model)
}

/// The layers of a stored model config: `(name, class_name)` in `model.layers` order.
fn stored_layers(cfg: &Value) -> Vec<(String, String)> {
    let empty = vec![];
    cfg["config"]["layers"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .filter(|l| l["class_name"] != "InputLayer")
        .map(|l| {
            let name = l["name"].as_str().or(l["config"]["name"].as_str()).unwrap_or("").to_string();
            (name, l["class_name"].as_str().unwrap_or("").to_string())
        })
        .collect()
}

/// `model.load_weights(path)` from a kandle model or weights file: layer by layer, each layer's class
/// and weight shapes must match; nothing is written unless everything does. Weights are matched by
/// position, as Keras's `load_weights`, so a model built again (with new automatic names) loads them.
pub fn load_weights(model: &mut Model, path: &Path) -> Result<()> {
    let c = container::read(path)?;
    let cfg = json_entry(&c, "model_config", path)?.ok_or_else(|| corrupt(path, "its 'model_config' entry is missing"))?;
    let stored = stored_layers(&cfg);
    let ours = model.layers();
    if stored.len() != ours.len() {
        return Err(corrupt(path, &format!("it holds a model of {} layers, this model has {}", stored.len(), ours.len())));
    }
    for (layer, (name, class)) in ours.iter().zip(&stored) {
        if class != layer.class_name() {
            return Err(corrupt(path, &format!("its layer \"{name}\" is a {class} where this model has {}", describe(layer.as_ref()))));
        }
    }
    // The file's tensors under the file's own layer names.
    let names: Vec<String> = stored.into_iter().map(|(name, _)| name).collect();
    let weights = layer_weights(&c, model, &names, path)?;
    c.verify(path)?;
    set_weights(model, &weights)
}

#[cfg(test)]
mod tests;
