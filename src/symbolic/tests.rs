//! Finite-difference checks of every differentiable op's gradient (candle's autograd through the
//! op's forward), in float64 on ragged, broadcasting shapes; and the shape rules against the
//! shapes the forward gives.

use super::ops::{find, OPS};
use super::{eval_eager, Sym};
use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

fn rand_t(shape: &[usize], lo: f64, hi: f64, seed: u64) -> Tensor {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.random_range(lo..hi)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn ints(v: &[i64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape, &Device::Cpu).unwrap()
}

/// L = sum(op(args) * r) for a fixed random r.
fn loss(name: &str, attrs: &Value, args: &[Tensor], r: &Tensor) -> f64 {
    let y = eval_eager(name, attrs, args).unwrap();
    (y.to_dtype(DType::F64).unwrap() * r).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap()
}

/// Checks the gradient of every float argument against central differences.
fn check(name: &str, attrs: Value, args: Vec<Tensor>) {
    let vars: Vec<Option<Var>> = args.iter().map(|t| (t.dtype() == DType::F64).then(|| Var::from_tensor(t).unwrap())).collect();
    let tracked: Vec<Tensor> = args.iter().zip(&vars).map(|(t, v)| v.as_ref().map_or(t.clone(), |v| v.as_tensor().clone())).collect();
    let y = eval_eager(name, &attrs, &tracked).unwrap();
    let r = rand_t(y.dims(), -1.0, 1.0, 99);
    let l = (y.to_dtype(DType::F64).unwrap() * &r).unwrap().sum_all().unwrap();
    let grads = l.backward().unwrap();
    for (i, v) in vars.iter().enumerate() {
        let Some(v) = v else { continue };
        let g = grads.get(v.as_tensor()).map(|g| g.flatten_all().unwrap().to_vec1::<f64>().unwrap()).unwrap_or_else(|| vec![0.0; v.elem_count()]);
        let base = args[i].flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let h = 1e-6;
        for (j, &gj) in g.iter().enumerate() {
            let mut plus = base.clone();
            plus[j] += h;
            let mut minus = base.clone();
            minus[j] -= h;
            let mut a = args.clone();
            a[i] = Tensor::from_vec(plus, args[i].dims(), &Device::Cpu).unwrap();
            let lp = loss(name, &attrs, &a, &r);
            a[i] = Tensor::from_vec(minus, args[i].dims(), &Device::Cpu).unwrap();
            let lm = loss(name, &attrs, &a, &r);
            let fd = (lp - lm) / (2.0 * h);
            assert!((fd - gj).abs() <= 1e-5 * (1.0 + fd.abs()), "ops.{name} {attrs}: argument {i} element {j}: autograd {gj}, finite differences {fd}");
        }
    }
}

#[test]
fn elementwise_gradients() {
    let (a, b) = (rand_t(&[3, 1, 4], -2.0, 2.0, 1), rand_t(&[5, 1], -2.0, 2.0, 2));
    for op in ["add", "subtract", "multiply", "maximum", "minimum"] {
        check(op, json!({}), vec![a.clone(), b.clone()]);
    }
    check("divide", json!({}), vec![a.clone(), rand_t(&[5, 1], 0.5, 2.0, 3)]);
    check("power", json!({}), vec![rand_t(&[2, 3], 0.5, 2.0, 4), rand_t(&[3], -1.5, 1.5, 5)]);
    check("power", json!({"exponent": 3.0}), vec![rand_t(&[2, 3], -2.0, 2.0, 4), Tensor::new(3.0f64, &Device::Cpu).unwrap()]);
    for op in ["negative", "abs", "square", "exp", "sin", "cos", "tanh", "sigmoid", "silu", "softplus", "relu"] {
        check(op, json!({}), vec![rand_t(&[2, 7], -2.0, 2.0, 6)]);
    }
    check("gelu", json!({"approximate": true}), vec![rand_t(&[2, 7], -2.0, 2.0, 6)]);
    check("gelu", json!({"approximate": false}), vec![rand_t(&[2, 7], -2.0, 2.0, 6)]);
    for op in ["sqrt", "log", "reciprocal"] {
        check(op, json!({}), vec![rand_t(&[2, 7], 0.5, 3.0, 7)]);
    }
    check("clip", json!({"x_min": -0.5, "x_max": 0.7}), vec![rand_t(&[3, 5], -2.0, 2.0, 8)]);
    let cond = rand_t(&[4, 1], -1.0, 1.0, 9).gt(0.0).unwrap();
    check("where", json!({}), vec![cond, rand_t(&[4, 3], -1.0, 1.0, 10), rand_t(&[3], -1.0, 1.0, 11)]);
}

#[test]
fn reduction_gradients() {
    let x = rand_t(&[3, 4, 5], -2.0, 2.0, 12);
    for op in ["sum", "mean", "max", "min", "var", "std", "logsumexp"] {
        for attrs in [json!({"axis": null}), json!({"axis": 1}), json!({"axis": [0, -1], "keepdims": true}), json!({"axis": -1})] {
            check(op, attrs, vec![x.clone()]);
        }
    }
}

#[test]
fn shape_gradients() {
    let x = rand_t(&[2, 3, 4], -1.0, 1.0, 13);
    check("reshape", json!({"newshape": [-1, 12]}), vec![x.clone()]);
    check("transpose", json!({"axes": [2, 0, 1]}), vec![x.clone()]);
    check("transpose", json!({}), vec![x.clone()]);
    check("expand_dims", json!({"axis": -1}), vec![x.clone()]);
    check("squeeze", json!({"axis": 1}), vec![rand_t(&[2, 1, 3], -1.0, 1.0, 14)]);
    check("concatenate", json!({"axis": 1}), vec![x.clone(), rand_t(&[2, 2, 4], -1.0, 1.0, 15)]);
    check("stack", json!({"axis": -1}), vec![x.clone(), rand_t(&[2, 3, 4], -1.0, 1.0, 16)]);
    check("slice", json!({"start_indices": [1, 0, 1], "shape": [1, -1, 2]}), vec![x.clone()]);
    check("take", json!({"axis": 1}), vec![x.clone(), ints(&[2, 0, -1, 2], &[2, 2])]);
    check("take", json!({"axis": null}), vec![x.clone(), ints(&[5, 7], &[2])]);
    check("tile", json!({"repeats": [2, 1, 1, 3]}), vec![x.clone()]);
    check("pad", json!({"pad_width": [[0, 1], [2, 0], [1, 1]], "constant_values": 0.5}), vec![x.clone()]);
    check("cast", json!({"dtype": "float32"}), vec![x.clone()]);
}

#[test]
fn linear_algebra_gradients() {
    check("matmul", json!({}), vec![rand_t(&[2, 1, 3, 4], -1.0, 1.0, 17), rand_t(&[3, 4, 2], -1.0, 1.0, 18)]);
    check("matmul", json!({}), vec![rand_t(&[4], -1.0, 1.0, 19), rand_t(&[4, 3], -1.0, 1.0, 20)]);
    check("matmul", json!({}), vec![rand_t(&[2, 4], -1.0, 1.0, 21), rand_t(&[4], -1.0, 1.0, 22)]);
    check("einsum", json!({"subscripts": "bij,jk->bik"}), vec![rand_t(&[2, 3, 4], -1.0, 1.0, 23), rand_t(&[4, 5], -1.0, 1.0, 24)]);
    check("einsum", json!({"subscripts": "...c,cd->...d"}), vec![rand_t(&[2, 3, 4], -1.0, 1.0, 25), rand_t(&[4, 2], -1.0, 1.0, 26)]);
    check("einsum", json!({"subscripts": "ij,jk,kl->il"}), vec![rand_t(&[2, 3], -1.0, 1.0, 27), rand_t(&[3, 4], -1.0, 1.0, 28), rand_t(&[4, 2], -1.0, 1.0, 29)]);
    check("einsum", json!({"subscripts": "bhwc,bc->bhw"}), vec![rand_t(&[2, 3, 3, 4], -1.0, 1.0, 30), rand_t(&[2, 4], -1.0, 1.0, 31)]);
    check("einsum", json!({"subscripts": "ij->ji"}), vec![rand_t(&[2, 3], -1.0, 1.0, 32)]);
    check("einsum", json!({"subscripts": "ij,ij->"}), vec![rand_t(&[2, 3], -1.0, 1.0, 33), rand_t(&[2, 3], -1.0, 1.0, 34)]);
}

#[test]
fn nn_gradients() {
    for op in ["softmax", "log_softmax"] {
        check(op, json!({"axis": -1}), vec![rand_t(&[3, 5], -2.0, 2.0, 35)]);
        check(op, json!({"axis": 0}), vec![rand_t(&[3, 5], -2.0, 2.0, 36)]);
    }
    let t = rand_t(&[4, 5], 0.0, 1.0, 37);
    check("categorical_crossentropy", json!({"from_logits": true}), vec![t.clone(), rand_t(&[4, 5], -2.0, 2.0, 38)]);
    check("categorical_crossentropy", json!({"from_logits": false}), vec![t.clone(), rand_t(&[4, 5], 0.1, 1.0, 39)]);
    check("binary_crossentropy", json!({"from_logits": true}), vec![t.clone(), rand_t(&[4, 5], -2.0, 2.0, 40)]);
    check("binary_crossentropy", json!({"from_logits": false}), vec![t, rand_t(&[4, 5], 0.05, 0.95, 41)]);
    let img = rand_t(&[2, 5, 6, 3], -1.0, 1.0, 42);
    check("conv", json!({"strides": 1, "padding": "same"}), vec![img.clone(), rand_t(&[3, 3, 3, 2], -1.0, 1.0, 43)]);
    check("conv", json!({"strides": 2, "padding": "valid"}), vec![img.clone(), rand_t(&[2, 3, 3, 4], -1.0, 1.0, 44)]);
    check("conv", json!({"strides": 2, "padding": "same"}), vec![img.clone(), rand_t(&[3, 2, 3, 2], -1.0, 1.0, 45)]);
    for op in ["max_pool", "average_pool"] {
        check(op, json!({"pool_size": 2, "padding": "valid"}), vec![img.clone()]);
        check(op, json!({"pool_size": [2, 4], "padding": "same"}), vec![img.clone()]);
    }
}

/// Each op's shape rule gives the shape its forward computes (here on concrete shapes; Python's
/// tests cover the unknown batch axis).
#[test]
fn shape_rules_match_forward() {
    let x = rand_t(&[2, 3, 4], -1.0, 1.0, 50);
    let cases: Vec<(&str, Value, Vec<Tensor>)> = vec![
        ("sum", json!({"axis": [0, 2]}), vec![x.clone()]),
        ("argmax", json!({"axis": 1, "keepdims": true}), vec![x.clone()]),
        ("argmin", json!({}), vec![x.clone()]),
        ("one_hot", json!({"num_classes": 4}), vec![ints(&[0, 3, 1], &[3])]),
        ("greater", json!({}), vec![x.clone(), rand_t(&[4], -1.0, 1.0, 51)]),
        ("reshape", json!({"newshape": [4, -1]}), vec![x.clone()]),
        ("einsum", json!({"subscripts": "abc,c"}), vec![x.clone(), rand_t(&[4], -1.0, 1.0, 52)]),
        ("max_pool", json!({"pool_size": 2, "padding": "same"}), vec![rand_t(&[1, 5, 5, 2], -1.0, 1.0, 53)]),
        ("full_like", json!({"fill_value": 2.0}), vec![x.clone()]),
        ("floor", json!({}), vec![x.clone()]),
    ];
    for (name, attrs, args) in cases {
        let syms: Vec<Sym> = args.iter().map(Sym::of).collect();
        let sym = super::infer_json(name, &attrs, &syms, "test").unwrap();
        let y = eval_eager(name, &attrs, &args).unwrap();
        let dims: Vec<Option<usize>> = y.dims().iter().map(|&d| Some(d)).collect();
        assert_eq!(sym.shape, dims, "ops.{name} {attrs}");
        assert_eq!(sym.kind, super::Kind::of(y.dtype()), "ops.{name} {attrs}");
    }
    assert!(OPS.len() >= 60, "the op table lists {} ops", OPS.len());
    assert!(find("no_such_op").is_err());
}

#[test]
fn shape_errors_name_the_op_and_shapes() {
    let a = Sym::new(vec![None, Some(3)], super::Kind::Float);
    let b = Sym::new(vec![Some(4)], super::Kind::Float);
    let e = super::infer_json("add", &json!({}), &[a.clone(), b.clone()], "Layer \"mine\"").unwrap_err().to_string();
    assert!(e.contains("mine") && e.contains("ops.add") && e.contains("(None, 3)") && e.contains("(4,)"), "{e}");
    let e = super::infer_json("matmul", &json!({}), &[a, b], "L").unwrap_err().to_string();
    assert!(e.contains("ops.matmul") && e.contains("inner dimensions 3 and 4"), "{e}");
}
