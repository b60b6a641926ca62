//! Layers written in Python with `kandle.ops`: a subclass of `kandle.layers.Layer` (its `build`,
//! `add_weight` and `call`), and the ops a functional model applies between layers. Python records
//! `call` once on symbolic tensors into an [`OpGraph`] (one for `training=True`, one for inference
//! when they differ); this layer evaluates it in Rust, and its backward pass is candle's autograd
//! through the recorded ops, so training runs without Python.

use super::{Arity, Cfg, Entry, Extra, Gradients, Layer, Saved, Shapes};
use crate::symbolic::{OpGraph, Sym};
use crate::{Error, Result};
use candle_core::{DType, Tensor, Var};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Mutex;

/// The config key that marks a recorded layer (whatever its Keras class name).
pub const GRAPH_KEY: &str = "_kandle_graph";
const TRAIN_KEY: &str = "_kandle_train_graph";
const WEIGHTS_KEY: &str = "_kandle_weights";
const CLASS_KEY: &str = "_kandle_class";

pub const CUSTOM: Entry = Entry { class_name: "Layer", arity: Arity::Any, validate: |cfg| Ok(cfg.value()), output_shape, build };

/// A `&'static str` for a name known at run time (the user's class and weight names); each
/// distinct name is leaked once.
pub(crate) fn intern(s: &str) -> &'static str {
    static NAMES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut guard = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let set = guard.get_or_insert_with(HashSet::new);
    if let Some(&s) = set.get(s) {
        return s;
    }
    let leaked: &'static str = Box::leak(s.to_string().into_boxed_str());
    set.insert(leaked);
    leaked
}

/// One `add_weight`: name, shape, trainable, initializer.
struct WeightSpec {
    name: &'static str,
    shape: Vec<usize>,
    trainable: bool,
    init: crate::initializers::Initializer,
}

fn weight_specs(cfg: &Cfg) -> Result<Vec<WeightSpec>> {
    let who = format!("Layer \"{}\"", cfg.name());
    let list = cfg.raw(WEIGHTS_KEY).and_then(Value::as_array).cloned().unwrap_or_default();
    list.iter()
        .map(|w| {
            let bad = || Error::Value(format!("{who}: bad weight record {w}"));
            let shape = w.get("shape").and_then(Value::as_array).ok_or_else(bad)?.iter().map(|d| d.as_u64().map(|d| d as usize).ok_or_else(bad)).collect::<Result<Vec<_>>>()?;
            let init = crate::initializers::Initializer::from_json(w.get("initializer").unwrap_or(&Value::String("glorot_uniform".into())))?;
            Ok(WeightSpec { name: intern(w.get("name").and_then(Value::as_str).unwrap_or("weight")), shape, trainable: w.get("trainable").and_then(Value::as_bool).unwrap_or(true), init })
        })
        .collect()
}

/// The recorded graph(s), checked against the input shapes of this call.
fn graphs(cfg: &Cfg, inputs: &[Vec<usize>]) -> Result<(OpGraph, Option<OpGraph>)> {
    let who = format!("Layer \"{}\"", cfg.name());
    let parse = |key: &str| -> Result<Option<OpGraph>> { cfg.raw(key).map(|v| OpGraph::from_json(v, &who)).transpose() };
    let infer = parse(GRAPH_KEY)?.ok_or_else(|| Error::Value(format!("{who}: no recorded graph")))?;
    let train = parse(TRAIN_KEY)?;
    for g in std::iter::once(&infer).chain(train.as_ref()) {
        if g.inputs.len() != inputs.len() {
            return crate::value_err!("{who} was recorded with {} inputs, but is called on {}", g.inputs.len(), inputs.len());
        }
        for (i, (sym, shape)) in g.inputs.iter().zip(inputs).enumerate() {
            let fits = sym.rank() == shape.len() + 1 && sym.shape[1..].iter().zip(shape).all(|(a, b)| a.is_none_or(|a| a == *b));
            if !fits {
                return crate::value_err!(
                    "Input {i} of layer \"{}\" is incompatible with the layer: expected shape={}, found shape={}",
                    cfg.name(),
                    crate::symbolic::shape::show(&sym.shape),
                    crate::error::keras_shape(shape)
                );
            }
        }
        per_sample(&who, &g.output_sym())?;
    }
    Ok((infer, train))
}

/// A layer output's per-sample shape: the batch axis first, every other dimension known. (Its
/// kind may be int or bool: an op of a functional model such as `x > 0` feeds a later `where`.)
fn per_sample(who: &str, sym: &Sym) -> Result<Vec<usize>> {
    let show = crate::symbolic::shape::show(&sym.shape);
    if sym.shape.first() != Some(&None) {
        return crate::value_err!("{who}: `call` must return a tensor whose first axis is the batch axis (None); it returned shape {show}");
    }
    sym.shape[1..].iter().map(|d| d.ok_or_else(|| Error::Value(format!("{who}: `call` returned shape {show}: kandle needs every axis but the batch axis known")))).collect()
}

fn output_shape(cfg: &Cfg, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
    let (g, _) = graphs(cfg, inputs)?;
    per_sample(&format!("Layer \"{}\"", cfg.name()), &g.output_sym())
}

fn build(cfg: &Cfg, inputs: &[Vec<usize>], dtype: DType) -> Result<Box<dyn Layer>> {
    let (infer, train) = graphs(cfg, inputs)?;
    let out = output_shape(cfg, inputs)?;
    let specs = weight_specs(cfg)?;
    if specs.len() != infer.weights.len() {
        return crate::value_err!("Layer \"{}\": {} weights recorded, {} used by the graph", cfg.name(), specs.len(), infer.weights.len());
    }
    let mut vars = Vec::new();
    for (s, sym) in specs.iter().zip(&infer.weights) {
        if sym.shape.iter().map(|d| d.unwrap_or(0)).collect::<Vec<_>>() != s.shape {
            return crate::value_err!("Layer \"{}\": weight \"{}\" recorded with two shapes", cfg.name(), s.name);
        }
        let fans = crate::initializers::fans(&s.shape);
        vars.push(super::new_weight(cfg.name(), &s.init, &s.shape, fans, dtype)?);
    }
    let class = intern(cfg.raw(CLASS_KEY).and_then(Value::as_str).unwrap_or("Layer"));
    Ok(Box::new(Custom { class, config: cfg.value(), shapes: Shapes::multi(cfg.name().into(), inputs, out), infer, train, specs, vars }))
}

pub struct Custom {
    class: &'static str,
    config: Value,
    shapes: Shapes,
    infer: OpGraph,
    train: Option<OpGraph>,
    specs: Vec<WeightSpec>,
    /// In Keras's order (the graph's weight indices): the layer's own, then each sublayer's.
    vars: Vec<Var>,
}

/// The training pass's tracked inputs and output, for candle's backward.
struct Tape {
    inputs: Vec<Option<Var>>,
    shapes: Vec<Vec<usize>>,
    output: Tensor,
}

impl Custom {
    fn order(&self, trainable: bool) -> impl Iterator<Item = usize> + '_ {
        self.specs.iter().enumerate().filter(move |(_, s)| s.trainable == trainable).map(|(i, _)| i)
    }
}

impl Layer for Custom {
    fn class_name(&self) -> &'static str {
        self.class
    }
    super::shapes_accessors!();
    fn config(&self) -> Value {
        self.config.clone()
    }
    fn weights(&self) -> Vec<&Var> {
        self.order(true).map(|i| &self.vars[i]).collect()
    }
    fn state(&self) -> Vec<&Var> {
        self.order(false).map(|i| &self.vars[i]).collect()
    }
    fn variables(&self) -> Vec<&Var> {
        self.vars.iter().collect()
    }
    fn weight_names(&self) -> Vec<&'static str> {
        self.specs.iter().map(|s| s.name).collect()
    }

    fn forward_pre(&self, xs: &[Tensor]) -> Result<Tensor> {
        let weights: Vec<Tensor> = self.vars.iter().map(|v| v.as_tensor().detach()).collect();
        let inputs: Vec<Tensor> = xs.iter().map(Tensor::detach).collect();
        self.infer.eval(&inputs, &weights)
    }

    fn forward_train(&self, xs: &[Tensor], _activated: bool) -> Result<(Tensor, Extra)> {
        let graph = self.train.as_ref().unwrap_or(&self.infer);
        // Float inputs are tracked for their gradients; int and bool ones are constants of the pass.
        let inputs = xs.iter().map(|x| if x.dtype().is_float() { Var::from_tensor(&x.detach()).map(Some) } else { Ok(None) }).collect::<candle_core::Result<Vec<_>>>()?;
        let tracked: Vec<Tensor> = inputs.iter().zip(xs).map(|(v, x)| v.as_ref().map_or_else(|| x.detach(), |v| v.as_tensor().clone())).collect();
        // Frozen weights and non-trainable ones are constants of the pass.
        let weights: Vec<Tensor> = self.vars.iter().zip(&self.specs).map(|(v, s)| if s.trainable && self.trainable() { v.as_tensor().clone() } else { v.as_tensor().detach() }).collect();
        let output = graph.eval(&tracked, &weights)?;
        let shapes = xs.iter().map(|x| x.dims().to_vec()).collect();
        Ok((output.detach(), Extra::new(Tape { inputs, shapes, output })))
    }

    fn backward(&self, saved: &Saved, grad: &Tensor, input_grads: &[bool]) -> Result<Gradients> {
        let tape = saved.extra.get::<Tape>().ok_or_else(|| Error::Runtime(format!("Layer \"{}\": backward without its training pass", self.name())))?;
        // An int or bool output (a comparison) passes no gradient back.
        let store = if tape.output.dtype().is_float() { Some((tape.output.to_dtype(grad.dtype())? * grad)?.sum_all()?.backward()?) } else { None };
        let zeros = |t: &Tensor| t.zeros_like();
        let found = |t: &Tensor| store.as_ref().and_then(|s| s.get(t)).cloned();
        let inputs = tape
            .inputs
            .iter()
            .zip(&tape.shapes)
            .zip(input_grads)
            .map(|((v, shape), &want)| {
                if !want {
                    return Ok(None);
                }
                match v {
                    Some(v) => found(v.as_tensor()).map_or_else(|| zeros(v.as_tensor()), Ok).map(Some),
                    None => Tensor::zeros(shape.as_slice(), grad.dtype(), grad.device()).map(Some),
                }
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let weights = self
            .order(true)
            .map(|i| {
                let v = self.vars[i].as_tensor();
                Ok(crate::ops::grad::Grad::Value(found(v).map_or_else(|| zeros(v), Ok)?))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Gradients { inputs, weights })
    }
}
