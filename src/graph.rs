//! The model graph: input tensors, layers, and the calls (nodes) between them in topological order,
//! as Keras 3's `Function`; `Sequential` is its chain-shaped case. Built by appending layers (a
//! Sequential) or from Keras's functional config (`layers` with `inbound_nodes`, `input_layers`,
//! `output_layers`: what Python records from the user's calls, what `get_config` shows, what a
//! `.keras` file holds), and written back in that format.

use crate::error::keras_shape;
use crate::layers::{self, config_of, Layer};
use crate::{Error, Result};
use candle_core::DType;
use serde_json::{json, Value};
use std::collections::HashMap;

/// A layer of a functional config before it is built: class, config, and each call's input
/// histories `(layer, node_index)`.
type LayerSpec = (String, Value, Vec<Vec<(String, usize)>>);

/// One call of a layer: which layer, the tensors it reads, the tensor it makes.
pub struct Node {
    pub layer: usize,
    pub inputs: Vec<usize>,
    pub output: usize,
    /// Which call of its layer this is (Keras's node index, in `inbound_nodes` order).
    pub call: usize,
}

/// A model input (Keras's `InputLayer`).
pub struct Input {
    pub name: String,
    pub shape: Vec<usize>,
}

pub struct Graph {
    pub name: String,
    /// Tensor ids `0..inputs.len()` are the inputs.
    pub inputs: Vec<Input>,
    /// `model.layers` order, without the InputLayers.
    pub layers: Vec<Box<dyn Layer>>,
    /// Topological order: every node's inputs are made by earlier nodes or are model inputs.
    pub nodes: Vec<Node>,
    /// Per-sample shape of each tensor.
    pub shapes: Vec<Vec<usize>>,
    pub output: usize,
    /// Built by `add` (a Sequential); written as a Sequential config.
    pub sequential: bool,
    /// Per tensor: whether some trainable weight lies upstream of it, so that its gradient is
    /// needed (recomputed by `refresh` when layers are frozen or thawed).
    pub needs_grad: Vec<bool>,
    /// Calls per layer (a shared layer's weight gradients are summed over its calls).
    pub calls: Vec<usize>,
}

fn check_shape(what: &str, shape: &[usize]) -> Result<()> {
    if shape.is_empty() || shape.contains(&0) {
        return crate::value_err!("Invalid input shape {} for {what}: every dimension must be a positive integer", keras_shape(shape));
    }
    Ok(())
}

impl Graph {
    /// An empty chain on one input, for `add`.
    pub fn sequential(name: &str, input_shape: &[usize]) -> Result<Self> {
        check_shape(name, input_shape)?;
        let input = Input { name: format!("{name}_input"), shape: input_shape.to_vec() };
        let mut g = Graph::empty(name, vec![input]);
        g.sequential = true;
        Ok(g)
    }

    fn empty(name: &str, inputs: Vec<Input>) -> Self {
        let shapes = inputs.iter().map(|i| i.shape.clone()).collect();
        Graph {
            name: name.into(),
            inputs,
            layers: Vec::new(),
            nodes: Vec::new(),
            shapes,
            output: 0,
            sequential: false,
            needs_grad: Vec::new(),
            calls: Vec::new(),
        }
    }

    /// The activation of the call that gives the model's output (the loss reads its logits).
    pub fn output_activation(&self) -> crate::activations::Activation {
        self.nodes
            .iter()
            .find(|n| n.output == self.output)
            .map(|n| self.layers[n.layer].activation())
            .unwrap_or(crate::activations::Activation::Linear)
    }

    pub fn output_shape(&self) -> &[usize] {
        &self.shapes[self.output]
    }

    /// Appends a layer called on the current output (Sequential's `add`).
    pub fn add(&mut self, class_name: &str, config: &Value, dtype: DType) -> Result<()> {
        self.check_new_name(config)?;
        let layer = layers::build(class_name, config, &[self.output_shape().to_vec()], dtype)?;
        let output = self.shapes.len();
        self.shapes.push(layer.output_shape().to_vec());
        self.nodes.push(Node { layer: self.layers.len(), inputs: vec![self.output], output, call: 0 });
        self.layers.push(layer);
        self.output = output;
        self.refresh();
        Ok(())
    }

    fn check_new_name(&self, config: &Value) -> Result<()> {
        let name = config["name"].as_str().unwrap_or("");
        if !name.is_empty() && (self.layers.iter().any(|l| l.name() == name) || self.inputs.iter().any(|i| i.name == name)) {
            return crate::value_err!(
                "All layers added to a Sequential model should have unique names. Name \"{name}\" is already the name of a layer in this model."
            );
        }
        Ok(())
    }

    /// Recomputes `needs_grad` and `calls` after the layers or their trainable flags changed.
    pub fn refresh(&mut self) {
        let mut needs = vec![false; self.shapes.len()];
        let mut calls = vec![0; self.layers.len()];
        for n in &self.nodes {
            let l = &self.layers[n.layer];
            calls[n.layer] += 1;
            needs[n.output] = (l.trainable() && !l.weights().is_empty()) || n.inputs.iter().any(|&t| needs[t]);
        }
        self.needs_grad = needs;
        self.calls = calls;
    }

    pub fn layer_index(&self, name: &str) -> Result<usize> {
        self.layers.iter().position(|l| l.name() == name).ok_or_else(|| {
            let names: Vec<&str> = self.layers.iter().map(|l| l.name()).collect();
            Error::Value(format!("No such layer: {name}. Existing layers are: {names:?}."))
        })
    }

    /// The Keras history `[layer, node_index, 0]` of each tensor.
    fn histories(&self) -> Vec<(String, usize)> {
        let mut h: Vec<(String, usize)> = self.inputs.iter().map(|i| (i.name.clone(), 0)).collect();
        h.resize(self.shapes.len(), (String::new(), 0));
        for n in &self.nodes {
            h[n.output] = (self.layers[n.layer].name().to_string(), n.call);
        }
        h
    }

    /// Keras's `{"class_name", "config"}` of the model: a Sequential's layer list, or the
    /// functional config with every call as `inbound_nodes` (Keras 3's format).
    pub fn keras_config(&self) -> Value {
        if self.sequential {
            let layers: Vec<Value> =
                self.layers.iter().map(|l| json!({"class_name": l.class_name(), "config": config_of(l.as_ref())})).collect();
            return json!({"class_name": "Sequential", "config": {
                "name": self.name, "input_shape": self.inputs[0].shape, "layers": layers,
            }});
        }
        let hist = self.histories();
        let tensor = |t: usize| {
            let mut shape: Vec<Value> = vec![Value::Null];
            shape.extend(self.shapes[t].iter().map(|d| json!(d)));
            json!({"class_name": "__keras_tensor__", "config": {
                "shape": shape, "dtype": "float32", "keras_history": [hist[t].0, hist[t].1, 0]}})
        };
        let mut layers: Vec<Value> = self
            .inputs
            .iter()
            .map(|i| {
                let mut batch_shape: Vec<Value> = vec![Value::Null];
                batch_shape.extend(i.shape.iter().map(|d| json!(d)));
                json!({"class_name": "InputLayer", "name": i.name, "inbound_nodes": [], "config": {
                    "batch_shape": batch_shape, "dtype": "float32", "sparse": false, "name": i.name}})
            })
            .collect();
        for (li, l) in self.layers.iter().enumerate() {
            let mut calls: Vec<&Node> = self.nodes.iter().filter(|n| n.layer == li).collect();
            calls.sort_by_key(|n| n.call);
            let inbound: Vec<Value> = calls
                .iter()
                .map(|n| {
                    let args = match n.inputs.as_slice() {
                        [one] if layers::takes_one_input(l.class_name()) => tensor(*one),
                        many => Value::Array(many.iter().map(|&t| tensor(t)).collect()),
                    };
                    json!({"args": [args], "kwargs": {}})
                })
                .collect();
            layers.push(json!({"class_name": l.class_name(), "name": l.name(), "config": config_of(l.as_ref()),
                               "inbound_nodes": inbound}));
        }
        let input_layers: Vec<Value> = self.inputs.iter().map(|i| json!([i.name, 0, 0])).collect();
        json!({"class_name": "Functional", "config": {
            "name": self.name, "trainable": true, "layers": layers, "input_layers": input_layers,
            "output_layers": [[hist[self.output].0, hist[self.output].1, 0]],
        }})
    }

    /// A graph from Keras's functional config (Keras 3's `inbound_nodes` with `args`, or Keras 2's
    /// nested lists). Layers are built at their first call in topological order; an output that the
    /// inputs cannot reach is Keras's "Graph disconnected".
    pub fn functional(config: &Value, dtype: DType) -> Result<Self> {
        let cfg = &config["config"];
        let name = cfg["name"].as_str().unwrap_or("functional");
        let Some(layer_list) = cfg["layers"].as_array() else {
            return crate::value_err!("Model \"{name}\": its config has no 'layers' list");
        };
        let mut inputs = Vec::new();
        // Per layer (not InputLayer): class, config, and each call's input histories.
        let mut specs: Vec<LayerSpec> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for l in layer_list {
            let class = l["class_name"].as_str().unwrap_or("");
            let lname = l["name"].as_str().or(l["config"]["name"].as_str()).unwrap_or("").to_string();
            if !seen.insert(lname.clone()) {
                return crate::value_err!(
                    "The name \"{lname}\" is used 2 times in the model. All operation names should be unique."
                );
            }
            if class == "InputLayer" {
                let c = &l["config"];
                let shape = c["batch_shape"].as_array().or(c["batch_input_shape"].as_array());
                let shape: Option<Vec<usize>> =
                    shape.and_then(|s| s.iter().skip(1).map(|d| d.as_u64().map(|d| d as usize)).collect());
                let shape = shape.ok_or_else(|| {
                    Error::Value(format!("InputLayer \"{lname}\": kandle needs a fully known per-sample shape, got {c}"))
                })?;
                check_shape(&format!("input \"{lname}\""), &shape)?;
                inputs.push(Input { name: lname, shape });
                continue;
            }
            let mut layer_cfg = l["config"].clone();
            if layer_cfg.is_object() {
                layer_cfg["name"] = Value::String(lname.clone());
            }
            let calls = l["inbound_nodes"].as_array().map(|v| v.as_slice()).unwrap_or(&[]);
            let calls = calls.iter().map(|c| call_histories(c, &lname)).collect::<Result<Vec<_>>>()?;
            specs.push((class.to_string(), layer_cfg, calls));
        }
        let roots = |key: &str| -> Result<Vec<(String, usize)>> {
            let v = &cfg[key];
            let list: Vec<&Value> = match v.as_array() {
                Some(a) if a.first().map(|x| x.is_string()).unwrap_or(false) => vec![v],
                Some(a) => a.iter().collect(),
                None => return crate::value_err!("Model \"{name}\": its config has no '{key}'"),
            };
            list.into_iter().map(history).collect()
        };
        let (input_roots, output_roots) = (roots("input_layers")?, roots("output_layers")?);
        if output_roots.len() != 1 {
            return crate::value_err!(
                "Model \"{name}\" has {} outputs: kandle does not implement models with several outputs yet",
                output_roots.len()
            );
        }
        // Model inputs in `input_layers` order.
        let mut ordered = Vec::new();
        for (n, _) in &input_roots {
            let i = inputs.iter().position(|i| &i.name == n).ok_or_else(|| {
                Error::Value(format!("Model \"{name}\": input layer \"{n}\" is not among its layers"))
            })?;
            ordered.push(Input { name: inputs[i].name.clone(), shape: inputs[i].shape.clone() });
        }
        let mut g = Graph::empty(name, ordered);
        let layer_of: HashMap<String, usize> =
            specs.iter().enumerate().map(|(i, s)| (s.1["name"].as_str().unwrap_or("").to_string(), i)).collect();
        let mut built: Vec<Option<Box<dyn Layer>>> = (0..specs.len()).map(|_| None).collect();
        let mut tensor_of: HashMap<(String, usize), usize> =
            g.inputs.iter().enumerate().map(|(i, inp)| ((inp.name.clone(), 0), i)).collect();
        let mut visiting = std::collections::HashSet::new();
        let out = g.visit(&output_roots[0], &specs, &layer_of, &mut built, &mut tensor_of, &mut visiting, dtype)?;
        g.output = out;
        // `model.layers` keeps the config's order; layers no call of the model reaches are dropped.
        let mut index = vec![usize::MAX; specs.len()];
        for (i, l) in built.into_iter().enumerate() {
            if let Some(l) = l {
                index[i] = g.layers.len();
                g.layers.push(l);
            }
        }
        for n in &mut g.nodes {
            n.layer = index[n.layer];
        }
        g.refresh();
        Ok(g)
    }

    /// Depth-first: makes the tensor `(layer, call)` after everything it reads; returns its id.
    #[allow(clippy::too_many_arguments)]
    fn visit(
        &mut self,
        at: &(String, usize),
        specs: &[LayerSpec],
        layer_of: &HashMap<String, usize>,
        built: &mut [Option<Box<dyn Layer>>],
        tensor_of: &mut HashMap<(String, usize), usize>,
        visiting: &mut std::collections::HashSet<(String, usize)>,
        dtype: DType,
    ) -> Result<usize> {
        if let Some(&t) = tensor_of.get(at) {
            return Ok(t);
        }
        let disconnected = || {
            let inputs: Vec<&str> = self.inputs.iter().map(|i| i.name.as_str()).collect();
            Error::Value(format!(
                "Graph disconnected: cannot find parent for tensor of layer \"{}\" (call {}). The following \
                 previous layers were accessed without issue: model inputs {inputs:?}",
                at.0, at.1
            ))
        };
        let &li = layer_of.get(&at.0).ok_or_else(disconnected)?;
        let (class, config, calls) = &specs[li];
        let call = calls.get(at.1).ok_or_else(disconnected)?;
        if !visiting.insert(at.clone()) {
            return crate::value_err!("The graph of model \"{}\" has a cycle through layer \"{}\"", self.name, at.0);
        }
        let mut ins = Vec::with_capacity(call.len());
        for h in call {
            ins.push(self.visit(h, specs, layer_of, built, tensor_of, visiting, dtype)?);
        }
        let shapes: Vec<Vec<usize>> = ins.iter().map(|&t| self.shapes[t].clone()).collect();
        let out_shape = match &built[li] {
            None => {
                let layer = layers::build(class, config, &shapes, dtype)?;
                let s = layer.output_shape().to_vec();
                built[li] = Some(layer);
                s
            }
            Some(layer) => {
                if layer.shapes().inputs != shapes {
                    return crate::value_err!(
                        "Layer \"{}\" was first called on inputs of shape {} and now on {}: kandle does not implement \
                         calling one layer on inputs of different shapes yet",
                        at.0,
                        fmt_shapes(&layer.shapes().inputs),
                        fmt_shapes(&shapes)
                    );
                }
                layer.output_shape().to_vec()
            }
        };
        let output = self.shapes.len();
        self.shapes.push(out_shape);
        self.nodes.push(Node { layer: li, inputs: ins, output, call: at.1 });
        tensor_of.insert(at.clone(), output);
        visiting.remove(at);
        Ok(output)
    }
}

fn fmt_shapes(s: &[Vec<usize>]) -> String {
    s.iter().map(|s| keras_shape(s)).collect::<Vec<_>>().join(", ")
}

/// `[layer, node_index, tensor_index]` (or Keras 2's with a kwargs dict after it).
fn history(v: &Value) -> Result<(String, usize)> {
    match v.as_array().map(|a| a.as_slice()) {
        Some([name, node, ..]) if name.is_string() && node.is_u64() => {
            Ok((name.as_str().unwrap().to_string(), node.as_u64().unwrap() as usize))
        }
        _ => crate::value_err!("invalid keras_history {v}: expected [layer_name, node_index, tensor_index]"),
    }
}

/// The input histories of one call in `inbound_nodes`: Keras 3's `{"args": [tensor or [tensors]],
/// "kwargs"}` or Keras 2's `[[name, node, tensor, kwargs], ...]`.
fn call_histories(call: &Value, layer: &str) -> Result<Vec<(String, usize)>> {
    fn tensors(v: &Value, out: &mut Vec<(String, usize)>) -> Result<()> {
        match v {
            Value::Object(m) if m.get("class_name").and_then(Value::as_str) == Some("__keras_tensor__") => {
                out.push(history(&v["config"]["keras_history"])?);
            }
            Value::Array(a) => a.iter().try_for_each(|x| tensors(x, out))?,
            _ => {}
        }
        Ok(())
    }
    let mut out = Vec::new();
    match call {
        Value::Object(m) => tensors(m.get("args").unwrap_or(&Value::Null), &mut out)?,
        Value::Array(a) => {
            for h in a {
                out.push(history(h)?);
            }
        }
        _ => {}
    }
    if out.is_empty() {
        return crate::value_err!("layer \"{layer}\": a call in its inbound_nodes names no input tensor: {call}");
    }
    Ok(out)
}
