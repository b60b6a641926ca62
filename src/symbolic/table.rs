//! Recorded graphs that a loss or a metric refers to by index (so that `Loss` and `Metric` stay
//! small `Copy`/`PartialEq` values): each distinct record is parsed once and kept for the process.

use super::OpGraph;
use crate::Result;
use serde_json::Value;
use std::sync::{Arc, RwLock};

/// One record: its name, its graphs (a loss's one; a metric's update and result graphs) and what
/// compile_config saves.
pub struct Recorded {
    pub name: &'static str,
    pub graphs: Vec<OpGraph>,
    /// A metric's state: the shape of each variable and their initial values, flattened.
    pub state: Vec<Vec<usize>>,
    pub init: Vec<f64>,
    pub value: Value,
}

static TABLE: RwLock<Vec<Arc<Recorded>>> = RwLock::new(Vec::new());

/// The index of the record `v`, built by `parse` the first time it is seen.
pub fn register(v: &Value, parse: impl FnOnce(&Value) -> Result<Recorded>) -> Result<u32> {
    if let Some(i) = TABLE.read().unwrap_or_else(|e| e.into_inner()).iter().position(|e| &e.value == v) {
        return Ok(i as u32);
    }
    let rec = Arc::new(parse(v)?);
    let mut table = TABLE.write().unwrap_or_else(|e| e.into_inner());
    table.push(rec);
    Ok((table.len() - 1) as u32)
}

pub fn get(i: u32) -> Arc<Recorded> {
    TABLE.read().unwrap_or_else(|e| e.into_inner())[i as usize].clone()
}
