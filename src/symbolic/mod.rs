//! Graphs of `kandle.ops` calls: what Python records when a custom layer's `call`, a subclassed
//! model's glue code or a loss function runs on symbolic tensors, and their evaluation on candle
//! tensors. Each op (in [`ops::OPS`], the one list Python reads too) has a shape rule, checked
//! when it is recorded, and a forward made of candle operations; the backward pass is candle's
//! autograd over those operations, so every op's gradient is the one candle defines for its parts
//! (checked against finite differences op by op in `tests.rs`).

pub mod einsum;
mod forward;
mod rules;
pub mod nn;
pub mod ops;
pub mod shape;
pub mod table;
#[cfg(test)]
mod tests;

use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use serde_json::Value;
pub use shape::{Kind, Sym};

/// Where an op's argument comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ref {
    /// The graph's `i`-th input (a layer's input tensor, a loss's `y_true`/`y_pred`).
    Input(usize),
    /// The `i`-th weight (a layer's `add_weight`), passed at evaluation.
    Weight(usize),
    /// The output of node `i` (an earlier node).
    Node(usize),
    /// The `i`-th constant recorded with the graph (a Python number or array).
    Const(usize),
}

/// One recorded op call.
pub struct OpNode {
    pub op: &'static ops::OpDef,
    pub attrs: Value,
    pub args: Vec<Ref>,
}

/// A recorded graph: its inputs' and weights' symbolic shapes, constants, nodes in call order, and
/// the reference that is its output.
pub struct OpGraph {
    pub inputs: Vec<Sym>,
    pub weights: Vec<Sym>,
    pub consts: Vec<Tensor>,
    pub nodes: Vec<OpNode>,
    /// Symbolic shape of each node's output, from the shape rules.
    pub syms: Vec<Sym>,
    pub output: Ref,
}

impl OpGraph {
    /// Parses Python's record: `{"inputs": [sym], "weights": [sym], "consts": [{"dtype", "shape",
    /// "data"}], "nodes": [{"op", "attrs", "args": [ref]}], "output": ref}` where a sym is
    /// `{"shape": [int|null], "dtype": "float32"|"int64"|"bool"}` and a ref `["input"|"weight"|
    /// "node"|"const", i]`. Every shape rule is run again, so a hand-edited file cannot make a
    /// graph whose evaluation fails on shapes.
    pub fn from_json(v: &Value, who: &str) -> Result<Self> {
        let list = |key: &str| -> Result<&Vec<Value>> {
            v.get(key).and_then(Value::as_array).ok_or_else(|| Error::Value(format!("{who}: recorded graph has no `{key}` list")))
        };
        let inputs = list("inputs")?.iter().map(|s| Sym::from_json(s, who)).collect::<Result<Vec<_>>>()?;
        let weights = list("weights")?.iter().map(|s| Sym::from_json(s, who)).collect::<Result<Vec<_>>>()?;
        let consts = list("consts")?.iter().map(|c| const_tensor(c, who)).collect::<Result<Vec<_>>>()?;
        let mut g = OpGraph { inputs, weights, consts, nodes: Vec::new(), syms: Vec::new(), output: Ref::Input(0) };
        for n in list("nodes")? {
            let name = n.get("op").and_then(Value::as_str).unwrap_or("");
            let op = ops::find(name)?;
            let attrs = n.get("attrs").cloned().unwrap_or(Value::Object(Default::default()));
            let args = n.get("args").and_then(Value::as_array).map(|a| a.iter().map(|r| g.parse_ref(r, who)).collect::<Result<Vec<_>>>()).unwrap_or_else(|| Ok(Vec::new()))?;
            let arg_syms: Vec<Sym> = args.iter().map(|r| g.sym(*r)).collect();
            let out = ops::infer(op, &attrs, &arg_syms, who)?;
            g.nodes.push(OpNode { op, attrs, args });
            g.syms.push(out);
        }
        g.output = g.parse_ref(v.get("output").unwrap_or(&Value::Null), who)?;
        Ok(g)
    }

    fn parse_ref(&self, r: &Value, who: &str) -> Result<Ref> {
        let bad = || Error::Value(format!("{who}: bad reference {r} in recorded graph"));
        let kind = r.get(0).and_then(Value::as_str).ok_or_else(bad)?;
        let i = r.get(1).and_then(Value::as_u64).ok_or_else(bad)? as usize;
        let (r, n) = match kind {
            "input" => (Ref::Input(i), self.inputs.len()),
            "weight" => (Ref::Weight(i), self.weights.len()),
            "node" => (Ref::Node(i), self.nodes.len()),
            "const" => (Ref::Const(i), self.consts.len()),
            _ => return Err(bad()),
        };
        if i >= n {
            return Err(bad());
        }
        Ok(r)
    }

    /// The symbolic shape of a reference.
    pub fn sym(&self, r: Ref) -> Sym {
        match r {
            Ref::Input(i) => self.inputs[i].clone(),
            Ref::Weight(i) => self.weights[i].clone(),
            Ref::Node(i) => self.syms[i].clone(),
            Ref::Const(i) => Sym::of(&self.consts[i]),
        }
    }

    pub fn output_sym(&self) -> Sym {
        self.sym(self.output)
    }

    /// Evaluates the graph. Autograd follows whatever of `inputs`/`weights` is a candle variable;
    /// plain tensors make a plain (untracked) evaluation.
    pub fn eval(&self, inputs: &[Tensor], weights: &[Tensor]) -> Result<Tensor> {
        let mut values: Vec<Tensor> = Vec::with_capacity(self.nodes.len());
        let get = |values: &Vec<Tensor>, r: Ref| -> Tensor {
            match r {
                Ref::Input(i) => inputs[i].clone(),
                Ref::Weight(i) => weights[i].clone(),
                Ref::Node(i) => values[i].clone(),
                Ref::Const(i) => self.consts[i].clone(),
            }
        };
        for n in &self.nodes {
            let args: Vec<Tensor> = n.args.iter().map(|r| get(&values, *r)).collect();
            let y = (n.op.eval)(&n.attrs, &args).map_err(|e| name_op(n.op.name, e))?;
            values.push(y);
        }
        Ok(get(&values, self.output))
    }
}

/// Prefixes a candle error with the op it came from.
fn name_op(op: &str, e: Error) -> Error {
    match e {
        Error::Candle(c) => Error::Value(format!("ops.{op}: {c}")),
        other => other,
    }
}

/// A recorded constant: `{"dtype", "shape", "data"}` (data flattened).
fn const_tensor(c: &Value, who: &str) -> Result<Tensor> {
    let bad = || Error::Value(format!("{who}: bad constant in recorded graph"));
    let shape: Vec<usize> = c.get("shape").and_then(Value::as_array).ok_or_else(bad)?.iter().map(|d| d.as_u64().map(|d| d as usize).ok_or_else(bad)).collect::<Result<_>>()?;
    let data = c.get("data").and_then(Value::as_array).ok_or_else(bad)?;
    if data.len() != shape.iter().product::<usize>() {
        return Err(bad());
    }
    let kind = Kind::parse(c.get("dtype").and_then(Value::as_str).unwrap_or("float32"), who)?;
    let t = match kind {
        Kind::Float => Tensor::from_vec(data.iter().map(|x| x.as_f64().unwrap_or(f64::NAN) as f32).collect::<Vec<_>>(), shape, &Device::Cpu)?,
        Kind::Int => Tensor::from_vec(data.iter().map(|x| x.as_i64().ok_or_else(bad)).collect::<Result<Vec<_>>>()?, shape, &Device::Cpu)?,
        Kind::Bool => Tensor::from_vec(data.iter().map(|x| x.as_bool().map(u8::from).ok_or_else(bad)).collect::<Result<Vec<_>>>()?, shape, &Device::Cpu)?,
    };
    Ok(t)
}

/// Evaluates one op on concrete tensors (eager `kandle.ops` calls): the shape rule first, for its
/// errors, then the forward.
pub fn eval_eager(name: &str, attrs: &Value, args: &[Tensor]) -> Result<Tensor> {
    let op = ops::find(name)?;
    let syms: Vec<Sym> = args.iter().map(Sym::of).collect();
    ops::infer(op, attrs, &syms, &format!("ops.{name}"))?;
    (op.eval)(attrs, args).map_err(|e| name_op(name, e))
}

/// The symbolic output of one op (what Python records), or the op's error naming `who`.
pub fn infer_json(name: &str, attrs: &Value, args: &[Sym], who: &str) -> Result<Sym> {
    ops::infer(ops::find(name)?, attrs, args, who)
}

/// The candle dtype of a kind.
pub fn dtype_of(kind: Kind) -> DType {
    match kind {
        Kind::Float => DType::F32,
        Kind::Int => DType::I64,
        Kind::Bool => DType::U8,
    }
}
