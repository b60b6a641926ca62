//! `BackupAndRestore`'s file: a whole model file (weights, optimizer state, random streams) that also
//! carries the fit's progress (a JSON string the Python callback owns: epochs done, their logs), and
//! its restore *into the model being trained*, refused unless the file was written by a model of the
//! same architecture compiled the same way.
//!
//! One file, written atomically (`container`), so the weights and the epoch counter can never
//! disagree: a process killed mid-write leaves the previous backup whole.

use super::container::{self, corrupt};
use super::{compile_config, json_entry, load_model, model_contents};
use crate::model::Model;
use crate::Result;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// The header entry holding the progress JSON; its presence is what makes a model file a backup.
const ENTRY: &str = "backup_progress";

/// `model.save(path)` plus `progress`; `load_model` reads the file as a model too.
pub fn save_backup(model: &Model, path: &Path, progress: &str) -> Result<()> {
    let mut c = model_contents(model, true)?;
    c.meta.insert(ENTRY.into(), progress.into());
    container::write(path, &c)
}

/// The model config with every layer name replaced by its position, the model's name and the
/// initializers dropped: what two runs of the same script share even when Keras's automatic names
/// (`dense_3`) differ.
fn canonical(config: &Value) -> Value {
    let empty = vec![];
    let names: HashMap<String, String> = config["config"]["layers"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l["name"].as_str().or(l["config"]["name"].as_str()).map(|n| (n.to_string(), format!("#{i}"))))
        .collect();
    // Initializers only chose the starting weights, which the backup replaces; their serialized form
    // may also differ between kandle versions (a backup must survive an upgrade mid-run).
    fn walk(v: &Value, names: &HashMap<String, String>) -> Value {
        match v {
            Value::String(s) => Value::String(names.get(s).cloned().unwrap_or_else(|| s.clone())),
            Value::Array(a) => Value::Array(a.iter().map(|x| walk(x, names)).collect()),
            Value::Object(m) => {
                Value::Object(m.iter().filter(|(k, _)| !k.ends_with("_initializer")).map(|(k, x)| (k.clone(), walk(x, names))).collect())
            }
            other => other.clone(),
        }
    }
    let mut out = walk(config, &names);
    out["config"]["name"] = Value::Null;
    out
}

/// What must agree for a backup to continue a fit: loss, metrics and the optimizer's kind (its
/// learning rate may have been changed by a callback since; the backup's value is restored).
fn compile_signature(model: &Model) -> Option<Value> {
    let mut c = compile_config(model)?;
    c["optimizer"]["config"] = Value::Null;
    Some(c)
}

/// Restores the backup at `path` into `model` (weights, moving statistics, optimizer state and
/// learning rate, the shuffle stream and each layer's random stream) and returns its progress JSON.
/// Nothing is changed unless the whole file is valid and was written by this architecture and
/// compile configuration.
pub fn restore_backup(model: &mut Model, path: &Path) -> Result<String> {
    let c = container::read(path)?;
    let Some(progress) = c.meta.get(ENTRY).cloned() else {
        return Err(corrupt(path, "it is a kandle model file, not a BackupAndRestore backup"));
    };
    let stored = json_entry(&c, "model_config", path)?.unwrap_or(Value::Null);
    let foreign = |what: &str| {
        corrupt(
            path,
            &format!(
                "this backup was written by a different model ({what}). Use another backup_dir for this model, \
                 or delete the folder to start from scratch"
            ),
        )
    };
    if canonical(&stored) != canonical(&model.keras_config()) {
        return Err(foreign("its architecture differs"));
    }
    let Some(ours) = compile_signature(model) else {
        return Err(crate::Error::Value("You must compile your model before training/testing. Use `model.compile(optimizer, loss)`.".into()));
    };
    drop(c);
    // The file as a model of its own: every entry validated (checksum, shapes, optimizer slots).
    let mut saved = load_model(path, true)?;
    if compile_signature(&saved).as_ref() != Some(&ours) {
        return Err(foreign("it was compiled with another optimizer, loss or metrics"));
    }
    for i in 0..model.layers().len() {
        model.set_layer_weights(i, &saved.layer_weights(i)?)?;
        if let (Some(to), Some(from)) = (model.layers()[i].rng(), saved.layers()[i].rng()) {
            let value = from.lock().unwrap_or_else(|e| e.into_inner()).clone();
            *to.lock().unwrap_or_else(|e| e.into_inner()) = value;
        }
    }
    if let (Some(to), Some(from)) = (model.compiled_mut(), saved.compiled_mut()) {
        std::mem::swap(&mut to.optimizer, &mut from.optimizer);
    }
    model.shuffle_rng = saved.shuffle_rng.clone();
    Ok(progress)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_configs_ignore_names_and_initializers_but_not_shapes() {
        let cfg = |name: &str, units: u64, init: Value| {
            json!({"class_name": "Sequential", "config": {"name": "m", "input_shape": [3], "layers": [
                {"class_name": "Dense", "config": {"name": name, "units": units, "kernel_initializer": init}}]}})
        };
        let a = cfg("dense", 4, json!({"class_name": "GlorotUniform", "config": {}}));
        let b = cfg("dense_7", 4, json!({"class_name": "GlorotUniform", "config": {"seed": null}}));
        assert_eq!(canonical(&a), canonical(&b));
        assert_ne!(canonical(&a), canonical(&cfg("dense", 5, json!("glorot_uniform"))));
    }
}
