//! `ops.einsum`: subscripts parsed once (ellipses expanded), then evaluated as a chain of batched
//! matrix products (each pair of operands permuted to `(batch, free, contracted)` and multiplied),
//! so the common 2-4 operand patterns run on the GEMM and differentiate through it.

use super::shape::{show, Kind, Sym};
use crate::Result;
use candle_core::{DType, Tensor};
use serde_json::Value;

/// Parsed subscripts: one letter list per operand and the output's.
struct Spec {
    inputs: Vec<Vec<char>>,
    output: Vec<char>,
}

fn parse(op: &str, attrs: &Value, ranks: &[usize]) -> Result<Spec> {
    let s: String = attrs.get("subscripts").and_then(Value::as_str).unwrap_or("").chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match s.split_once("->") {
        Some((l, r)) => (l.to_string(), Some(r.to_string())),
        None => (s.clone(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != ranks.len() {
        return crate::value_err!("{op}: subscripts {s:?} name {} operands, but {} were given", terms.len(), ranks.len());
    }
    // An ellipsis stands for the leading axes the letters leave: fresh capital letters, aligned
    // to the right as NumPy broadcasts them.
    let fresh: Vec<char> = ('A'..='Z').collect();
    let max_ell = terms.iter().zip(ranks).map(|(t, &r)| if t.contains("...") { r.saturating_sub(t.replace("...", "").chars().count()) } else { 0 }).max().unwrap_or(0);
    let mut inputs = Vec::new();
    for (t, &r) in terms.iter().zip(ranks) {
        let letters: Vec<char> = t.replace("...", "").chars().collect();
        if letters.iter().any(|c| !c.is_ascii_lowercase()) {
            return crate::value_err!("{op}: subscripts {s:?}: use lower-case letters (and '...')");
        }
        let mut v = Vec::new();
        if let Some(pos) = t.find("...") {
            let n = r.checked_sub(letters.len()).ok_or_else(|| crate::Error::Value(format!("{op}: subscripts {t:?} name more axes than its operand's {r}")))?;
            v.extend(t[..pos].chars());
            v.extend(&fresh[max_ell - n..max_ell]);
            v.extend(t[pos + 3..].chars());
        } else {
            v = letters;
        }
        if v.len() != r {
            return crate::value_err!("{op}: subscripts {t:?} name {} axes, but the operand has {r}", v.len());
        }
        let mut seen = v.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != v.len() {
            return crate::value_err!("{op}: kandle does not implement repeated subscripts within one operand ({t:?}, a diagonal) yet");
        }
        inputs.push(v);
    }
    let output = match rhs {
        Some(r) => {
            let mut v: Vec<char> = Vec::new();
            if let Some(pos) = r.find("...") {
                v.extend(r[..pos].chars());
                v.extend(&fresh[..max_ell]);
                v.extend(r[pos + 3..].chars());
            } else {
                v.extend(r.chars());
            }
            for c in &v {
                if !inputs.iter().any(|i| i.contains(c)) {
                    return crate::value_err!("{op}: output subscript {c:?} does not appear in the inputs of {s:?}");
                }
            }
            v
        }
        None => {
            let all: Vec<char> = inputs.iter().flatten().copied().collect();
            let mut once: Vec<char> = all.iter().copied().filter(|c| all.iter().filter(|d| *d == c).count() == 1).collect();
            once.sort_unstable();
            let mut v: Vec<char> = fresh[..max_ell].to_vec();
            v.extend(once.into_iter().filter(|c| c.is_ascii_lowercase()));
            v
        }
    };
    Ok(Spec { inputs, output })
}

pub fn shape(op: &str, attrs: &Value, a: &[Sym]) -> Result<Sym> {
    let ranks: Vec<usize> = a.iter().map(Sym::rank).collect();
    let spec = parse(op, attrs, &ranks)?;
    let mut dims: Vec<(char, Option<usize>)> = Vec::new();
    for (letters, sym) in spec.inputs.iter().zip(a) {
        for (&c, &d) in letters.iter().zip(&sym.shape) {
            match dims.iter_mut().find(|(k, _)| *k == c) {
                Some((_, known)) => match (*known, d) {
                    (Some(x), Some(y)) if x != y => {
                        return crate::value_err!("{op}: subscript {c:?} has size {x} in one operand and {y} in another (shapes {})", a.iter().map(|s| show(&s.shape)).collect::<Vec<_>>().join(", "));
                    }
                    (None, Some(y)) => *known = Some(y),
                    _ => {}
                },
                None => dims.push((c, d)),
            }
        }
    }
    let out = spec.output.iter().map(|c| dims.iter().find(|(k, _)| k == c).and_then(|(_, d)| *d)).collect();
    Ok(Sym::new(out, Kind::Float))
}

pub fn eval(attrs: &Value, a: &[Tensor]) -> Result<Tensor> {
    let ranks: Vec<usize> = a.iter().map(Tensor::rank).collect();
    let spec = parse("einsum", attrs, &ranks)?;
    let mut ops: Vec<(Tensor, Vec<char>)> = Vec::new();
    for (t, letters) in a.iter().zip(&spec.inputs) {
        let t = if t.dtype().is_float() { t.clone() } else { t.to_dtype(DType::F32)? };
        ops.push((t, letters.clone()));
    }
    // Letters that only one operand has and the output lacks are summed out first.
    for i in 0..ops.len() {
        let lonely: Vec<usize> = ops[i]
            .1
            .iter()
            .enumerate()
            .filter(|(_, c)| !spec.output.contains(c) && !ops.iter().enumerate().any(|(j, o)| j != i && o.1.contains(c)))
            .map(|(k, _)| k)
            .collect();
        if !lonely.is_empty() {
            let (t, l) = &ops[i];
            let t = t.sum(lonely.clone())?;
            let l: Vec<char> = l.iter().enumerate().filter(|(k, _)| !lonely.contains(k)).map(|(_, &c)| c).collect();
            ops[i] = (t, l);
        }
    }
    let mut iter = ops.into_iter();
    let (mut cur, mut cur_l) = iter.next().expect("einsum has operands");
    let rest: Vec<(Tensor, Vec<char>)> = iter.collect();
    for (k, (t, l)) in rest.iter().enumerate() {
        let later: Vec<char> = spec.output.iter().copied().chain(rest[k + 1..].iter().flat_map(|o| o.1.iter().copied())).collect();
        let batch: Vec<char> = cur_l.iter().copied().filter(|c| l.contains(c) && later.contains(c)).collect();
        let contract: Vec<char> = cur_l.iter().copied().filter(|c| l.contains(c) && !later.contains(c)).collect();
        let free_a: Vec<char> = cur_l.iter().copied().filter(|c| !l.contains(c)).collect();
        let free_b: Vec<char> = l.iter().copied().filter(|c| !cur_l.contains(c)).collect();
        let size = |t: &Tensor, letters: &[char], of: &[char]| -> Vec<usize> { of.iter().map(|c| t.dims()[letters.iter().position(|x| x == c).unwrap()]).collect() };
        let order = |letters: &[char], want: &[char]| -> Vec<usize> { want.iter().map(|c| letters.iter().position(|x| x == c).unwrap()).collect() };
        let (bd, md, kd) = (size(&cur, &cur_l, &batch), size(&cur, &cur_l, &free_a), size(&cur, &cur_l, &contract));
        let nd = size(t, l, &free_b);
        let prod = |d: &[usize]| d.iter().product::<usize>();
        let a_perm: Vec<char> = batch.iter().chain(&free_a).chain(&contract).copied().collect();
        let b_perm: Vec<char> = batch.iter().chain(&contract).chain(&free_b).copied().collect();
        let am = cur.permute(order(&cur_l, &a_perm))?.contiguous()?.reshape((prod(&bd), prod(&md), prod(&kd)))?;
        let bm = t.permute(order(l, &b_perm))?.contiguous()?.reshape((prod(&bd), prod(&kd), prod(&nd)))?;
        let z = am.matmul(&bm)?;
        let dims: Vec<usize> = bd.iter().chain(&md).chain(&nd).copied().collect();
        cur = z.reshape(dims)?;
        cur_l = batch.iter().chain(&free_a).chain(&free_b).copied().collect();
    }
    let extra: Vec<usize> = cur_l.iter().enumerate().filter(|(_, c)| !spec.output.contains(c)).map(|(k, _)| k).collect();
    if !extra.is_empty() {
        cur = cur.sum(extra.clone())?;
        cur_l = cur_l.iter().enumerate().filter(|(k, _)| !extra.contains(k)).map(|(_, &c)| c).collect();
    }
    let perm: Vec<usize> = spec.output.iter().map(|c| cur_l.iter().position(|x| x == c).unwrap()).collect();
    Ok(if perm.iter().enumerate().all(|(i, &p)| i == p) { cur } else { cur.permute(perm)? })
}
