//! `model.save` / `load_model` / `save_weights` / `load_weights` for `ModelCore`: the GIL is released
//! while the file is written or read; everything else is `crate::saving`.

use super::model::ModelCore;
use crate::saving;
use crate::training::SharedModel;
use pyo3::prelude::*;
use std::path::PathBuf;

/// Writes the whole model (architecture, weights, compile configuration, optimizer state).
#[pyfunction]
#[pyo3(signature = (core, path, include_optimizer=true))]
pub fn save_model(py: Python<'_>, core: &ModelCore, path: PathBuf, include_optimizer: bool) -> PyResult<()> {
    Ok(py.detach(|| saving::save_model(&core.shared().read(), &path, include_optimizer))?)
}

#[pyfunction]
pub fn save_weights(py: Python<'_>, core: &ModelCore, path: PathBuf) -> PyResult<()> {
    Ok(py.detach(|| saving::save_weights(&core.shared().read(), &path))?)
}

#[pyfunction]
pub fn load_weights(py: Python<'_>, core: &ModelCore, path: PathBuf) -> PyResult<()> {
    Ok(py.detach(|| saving::load_weights(&mut core.shared().write(), &path))?)
}

/// A model read from a kandle file: its core, `to_json()` config, and compile config (if compiled).
#[pyfunction]
#[pyo3(signature = (path, compile=true))]
pub fn load_model(py: Python<'_>, path: PathBuf, compile: bool) -> PyResult<(ModelCore, String, Option<String>)> {
    let model = py.detach(|| saving::load_model(&path, compile))?;
    let config = saving::model_config(&model).to_string();
    let compiled = saving::compile_config(&model).map(|c| c.to_string());
    Ok((ModelCore::from_shared(SharedModel::new(model)), config, compiled))
}

/// `BackupAndRestore`: the model file plus the fit's progress (JSON from the callback), atomically.
#[pyfunction]
pub fn save_backup(py: Python<'_>, core: &ModelCore, path: PathBuf, progress: String) -> PyResult<()> {
    Ok(py.detach(|| saving::backup::save_backup(&core.shared().read(), &path, &progress))?)
}

/// Restores a backup into the model (refused for another architecture or compile); its progress JSON.
#[pyfunction]
pub fn restore_backup(py: Python<'_>, core: &ModelCore, path: PathBuf) -> PyResult<String> {
    Ok(py.detach(|| saving::backup::restore_backup(&mut core.shared().write(), &path))?)
}
