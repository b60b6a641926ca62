//! kandle: Keras-style models on candle. The core is a plain Rust library; only `py` (behind the
//! `python` feature) knows about Python.

pub mod error;
pub mod ops;
pub mod rng;

pub use error::{Error, Result};
pub mod activations;
pub mod initializers;
pub mod layers;
pub mod losses;
pub mod metrics;
pub mod optimizers;
pub mod schedules;
pub mod data;
pub mod graph;
pub mod symbolic;
pub mod model;
pub mod saving;
pub mod training;
pub mod feed;
pub mod distributed;

#[cfg(test)]
mod gradcheck;
#[cfg(test)]
mod gradcheck_graph;

#[cfg(feature = "python")]
mod py;
