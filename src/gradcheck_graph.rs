//! Finite-difference gradient checks for the graph engine's layers (merging, BatchNormalization,
//! ZeroPadding2D, average and global pooling) and for functional graphs: fan-out (a tensor read by
//! two calls sums their gradients), a layer called twice (its weight gradients summed over its
//! calls), two inputs, BatchNormalization and Add in a residual block, a frozen layer. The harness
//! is `gradcheck`'s.

use crate::gradcheck::{
    batched, check_layer, check_model_inputs, distinct, layer, normal, one_hot, random_bias, tensor,
    uniform, values, var, SEED_LOCK,
};
use crate::layers::{build, Layer};
use crate::losses::Loss;
use crate::model::Model;
use crate::optimizers::Optimizer;
use crate::rng;
use candle_core::{DType, Tensor, Var};
use serde_json::{json, Value};

/// A multi-input layer in f64.
fn multi(class: &str, config: Value, inputs: &[Vec<usize>]) -> Box<dyn Layer> {
    build(class, &config, inputs, DType::F64).unwrap_or_else(|e| panic!("building {class} {config}: {e}"))
}

/// Checks a layer of several inputs, each `(batch, *shape)` with distinct values.
fn check_merge(class: &str, config: Value, shapes: &[Vec<usize>]) {
    let l = multi(class, config.clone(), shapes);
    let vars: Vec<Var> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            // Each input's values offset by a third of their spacing, so no two inputs tie.
            let shape = batched(2, s);
            var(distinct(shape.iter().product(), 70 + i as u64).iter().map(|v| v + 0.033 * i as f64).collect(), &shape)
        })
        .collect();
    let refs: Vec<&Var> = vars.iter().collect();
    crate::gradcheck::check_layer_inputs(&format!("{class} {config} on {shapes:?}"), l.as_ref(), &refs);
}

#[test]
fn add_subtract_multiply_average_gradients_match_finite_differences() {
    for class in ["Add", "Multiply", "Average"] {
        check_merge(class, json!({}), &[vec![3, 2], vec![3, 2], vec![3, 2]]);
    }
    check_merge("Subtract", json!({}), &[vec![2, 2, 3], vec![2, 2, 3]]);
}

#[test]
fn maximum_and_minimum_send_each_gradient_to_the_winning_input() {
    // Distinct values, so no finite-difference step changes the winner.
    check_merge("Maximum", json!({}), &[vec![4], vec![4], vec![4]]);
    check_merge("Minimum", json!({}), &[vec![2, 3], vec![2, 3]]);
}

#[test]
fn maximum_ties_go_to_the_first_input_as_tensorflow() {
    let l = multi("Maximum", json!({}), &[vec![2], vec![2]]);
    let a = tensor(vec![1.0, 2.0], &[1, 2]);
    let b = tensor(vec![1.0, 3.0], &[1, 2]);
    let g = crate::gradcheck::layer_backward(l.as_ref(), &[a, b], &tensor(vec![1.0, 1.0], &[1, 2])).unwrap();
    assert_eq!(values(g[0].as_ref().unwrap()), [1.0, 0.0]);
    assert_eq!(values(g[1].as_ref().unwrap()), [0.0, 1.0]);
}

#[test]
fn concatenate_on_the_last_and_on_an_inner_axis_gradients_match_finite_differences() {
    check_merge("Concatenate", json!({"axis": -1}), &[vec![2, 3, 2], vec![2, 3, 4]]);
    check_merge("Concatenate", json!({"axis": 1}), &[vec![1, 3, 2], vec![3, 3, 2]]);
    check_merge("Concatenate", json!({"axis": -1}), &[vec![2], vec![3], vec![1]]);
}

#[test]
fn merging_refuses_incompatible_shapes_naming_the_layer_and_both_shapes() {
    let e = crate::layers::output_shape("Add", &json!({"name": "add_3"}), &[vec![4], vec![5]]).unwrap_err().to_string();
    assert!(e.contains("add_3") && e.contains("(None, 4)") && e.contains("(None, 5)"), "{e}");
    let e = crate::layers::output_shape("Concatenate", &json!({"name": "c"}), &[vec![2, 3], vec![3, 3]]).unwrap_err().to_string();
    assert!(e.contains("matching shapes except for the concatenation axis"), "{e}");
    let e = crate::layers::output_shape("Add", &json!({"name": "a"}), &[vec![4]]).unwrap_err().to_string();
    assert!(e.contains("at least 2 inputs"), "{e}");
    let e = crate::layers::output_shape("Dense", &json!({"name": "d", "units": 2}), &[vec![4], vec![4]]).unwrap_err().to_string();
    assert!(e.contains("expects 1 input"), "{e}");
}

fn check_bn(per_sample: &[usize], config: Value) {
    let l = layer("BatchNormalization", config.clone(), per_sample, 0);
    // gamma and beta away from their defaults (1, 0) so their gradients are not special cases.
    for (w, seed) in l.weights().iter().zip([81, 82]) {
        w.set(&tensor(uniform(w.elem_count(), 0.5, 1.5, seed), w.dims())).unwrap();
    }
    let shape = batched(3, per_sample);
    let x = var(normal(shape.iter().product(), 83).iter().map(|v| 2.0 * v + 0.5).collect(), &shape);
    check_layer(&format!("BatchNormalization {config} on {shape:?}"), l.as_ref(), &x);
}

#[test]
fn batch_normalization_training_gradients_match_finite_differences() {
    check_bn(&[3, 2, 4], json!({}));
    check_bn(&[5], json!({"axis": -1, "epsilon": 0.01}));
    check_bn(&[2, 2, 3], json!({"axis": 3, "center": false}));
    check_bn(&[2, 3], json!({"scale": false}));
}

#[test]
fn batch_normalization_moves_its_statistics_in_training_and_uses_them_in_inference() {
    let l = layer("BatchNormalization", json!({"momentum": 0.9, "epsilon": 0.001}), &[2], 0);
    let x = tensor(vec![1.0, 10.0, 3.0, 20.0, 5.0, 30.0], &[3, 2]);
    let (y, _) = l.forward_train(std::slice::from_ref(&x), true).unwrap();
    // Batch mean (3, 20), biased variance (8/3, 200/3): y = (x - mean) / sqrt(var + eps).
    let expected = [-2.0 / (8.0f64 / 3.0 + 0.001).sqrt(), -10.0 / (200.0f64 / 3.0 + 0.001).sqrt()];
    let y = values(&y);
    assert!((y[0] - expected[0]).abs() < 1e-12 && (y[1] - expected[1]).abs() < 1e-12, "{y:?}");
    let state: Vec<Vec<f64>> = l.state().iter().map(|v| values(v.as_tensor())).collect();
    let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(a, b)| (a - b).abs() < 1e-12);
    assert!(close(&state[0], &[0.3, 2.0]), "moving mean {:?}", state[0]);
    assert!(close(&state[1], &[0.9 + 0.1 * 8.0 / 3.0, 0.9 + 0.1 * 200.0 / 3.0]), "moving variance {:?}", state[1]);
    let inferred = values(&l.forward(&[x]).unwrap());
    let want = (1.0 - 0.3) / (state[1][0] + 0.001).sqrt();
    assert!((inferred[0] - want).abs() < 1e-12, "inference uses the moving statistics: {} vs {want}", inferred[0]);
}

#[test]
fn batch_normalization_other_axes_are_refused_not_silently_moved() {
    let e = crate::layers::output_shape("BatchNormalization", &json!({"name": "bn", "axis": 1}), &[vec![4, 4, 3]]).unwrap_err();
    assert!(e.to_string().contains("kandle does not implement normalising over axis=1"), "{e}");
}

#[test]
fn zero_padding_average_and_global_pooling_gradients_match_finite_differences() {
    let cases: [(&str, Value, [usize; 3]); 8] = [
        ("ZeroPadding2D", json!({"padding": [[1, 2], [0, 3]]}), [3, 2, 2]),
        ("ZeroPadding2D", json!({"padding": 1}), [2, 3, 1]),
        ("AveragePooling2D", json!({"pool_size": 2}), [5, 4, 2]),
        ("AveragePooling2D", json!({"pool_size": 3, "strides": 2, "padding": "same"}), [7, 6, 2]),
        ("AveragePooling2D", json!({"pool_size": 3, "strides": 1, "padding": "valid"}), [5, 5, 1]),
        ("GlobalAveragePooling2D", json!({}), [3, 4, 2]),
        ("GlobalAveragePooling2D", json!({"keepdims": true}), [3, 3, 2]),
        ("GlobalMaxPooling2D", json!({}), [3, 4, 2]),
    ];
    for (class, cfg, input) in cases {
        let l = layer(class, cfg.clone(), &input, 0);
        let shape = batched(2, &input);
        let x = var(distinct(shape.iter().product(), 90), &shape);
        check_layer(&format!("{class} {cfg} on {shape:?}"), l.as_ref(), &x);
    }
}

// ---------------------------------------------------------------------------------------------
// Graphs
// ---------------------------------------------------------------------------------------------

/// A Keras 3 tensor reference `layer[node][0]` of the given per-sample shape.
fn t(layer: &str, node: usize, shape: &[usize]) -> Value {
    let mut s = vec![Value::Null];
    s.extend(shape.iter().map(|d| json!(d)));
    json!({"class_name": "__keras_tensor__", "config": {"shape": s, "dtype": "float32", "keras_history": [layer, node, 0]}})
}

fn input(name: &str, shape: &[usize]) -> Value {
    let mut s = vec![Value::Null];
    s.extend(shape.iter().map(|d| json!(d)));
    json!({"class_name": "InputLayer", "name": name, "config": {"batch_shape": s, "name": name}, "inbound_nodes": []})
}

/// A layer spec called once per entry of `calls` (each: its argument, a tensor or a list).
fn call(class: &str, name: &str, config: Value, calls: Vec<Value>) -> Value {
    let mut cfg = config;
    cfg["name"] = json!(name);
    let inbound: Vec<Value> = calls.into_iter().map(|a| json!({"args": [a], "kwargs": {}})).collect();
    json!({"class_name": class, "name": name, "config": cfg, "inbound_nodes": inbound})
}

/// A compiled functional model in f64, weights drawn after `set_seed(seed)`.
fn functional(layers: Vec<Value>, inputs: &[&str], output: (&str, usize), loss: Loss, seed: u64) -> Model {
    let _guard = SEED_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    rng::set_seed(seed);
    let inputs: Vec<Value> = inputs.iter().map(|n| json!([n, 0, 0])).collect();
    let config = json!({"class_name": "Functional", "config": {"name": "g", "layers": layers,
        "input_layers": inputs, "output_layers": [[output.0, output.1, 0]]}});
    let mut m = Model::from_config(&config, DType::F64).unwrap_or_else(|e| panic!("{e}"));
    m.compile(Optimizer::from_json(&json!("sgd")).unwrap(), loss, &[]).unwrap();
    m
}

fn dense(units: usize, activation: &str) -> Value {
    json!({"units": units, "activation": activation, "bias_initializer": random_bias()})
}

#[test]
fn fan_out_and_add_gradients_match_finite_differences() {
    // x -> d1(tanh) -> {d2, d3} -> Add -> out(softmax): d1's output gradient is the sum of two.
    let layers = vec![
        input("x", &[4]),
        call("Dense", "d1", dense(5, "tanh"), vec![t("x", 0, &[4])]),
        call("Dense", "d2", dense(3, "linear"), vec![t("d1", 0, &[5])]),
        call("Dense", "d3", dense(3, "sigmoid"), vec![t("d1", 0, &[5])]),
        call("Add", "add", json!({}), vec![json!([t("d2", 0, &[3]), t("d3", 0, &[3])])]),
        call("Dense", "out", dense(3, "softmax"), vec![t("add", 0, &[3])]),
    ];
    let m = functional(layers, &["x"], ("out", 0), Loss::CategoricalCrossentropy, 101);
    let x = tensor(normal(12, 102), &[3, 4]);
    check_model_inputs("fan-out + Add", &m, &[x], &one_hot(&[0, 2, 1], 3));
}

#[test]
fn a_layer_called_twice_sums_its_weight_gradients_over_both_calls() {
    // The same Dense `shared` on two inputs; Concatenate; a head. The shared kernel gets both
    // calls' gradients, and the input gradient of each call flows to its own input path.
    let layers = vec![
        input("a", &[3]),
        input("b", &[3]),
        call("Dense", "pre", dense(3, "tanh"), vec![t("b", 0, &[3])]),
        call("Dense", "shared", dense(4, "tanh"), vec![t("a", 0, &[3]), t("pre", 0, &[3])]),
        call("Concatenate", "cat", json!({"axis": -1}), vec![json!([t("shared", 0, &[4]), t("shared", 1, &[4])])]),
        call("Dense", "out", dense(2, "linear"), vec![t("cat", 0, &[8])]),
    ];
    let m = functional(layers, &["a", "b"], ("out", 0), Loss::MeanSquaredError, 103);
    assert_eq!(m.graph().calls[m.layer_index("shared").unwrap()], 2);
    let xs = [tensor(normal(9, 104), &[3, 3]), tensor(normal(9, 105), &[3, 3])];
    check_model_inputs("shared layer on two inputs", &m, &xs, &tensor(normal(6, 106), &[3, 2]));
}

/// conv -> BN -> relu, a second branch conv -> BN, Add, relu, global average, softmax head: a
/// residual block in miniature.
fn residual(seed: u64) -> Model {
    let conv = |f: usize, k: usize| json!({"filters": f, "kernel_size": k, "padding": "same", "bias_initializer": random_bias()});
    // A bias right before a BatchNormalization has an exactly zero gradient (the batch mean takes it
    // out): those convolutions have none, as in ResNet practice.
    let conv_nb = |f: usize, k: usize| json!({"filters": f, "kernel_size": k, "padding": "same", "use_bias": false});
    let layers = vec![
        input("x", &[5, 5, 2]),
        call("Conv2D", "c1", conv_nb(3, 3), vec![t("x", 0, &[5, 5, 2])]),
        call("BatchNormalization", "bn1", json!({"axis": 3}), vec![t("c1", 0, &[5, 5, 3])]),
        call("Activation", "r1", json!({"activation": "tanh"}), vec![t("bn1", 0, &[5, 5, 3])]),
        call("Conv2D", "c2", conv(3, 1), vec![t("r1", 0, &[5, 5, 3])]),
        call("Conv2D", "short", conv_nb(3, 1), vec![t("x", 0, &[5, 5, 2])]),
        call("BatchNormalization", "bn2", json!({"axis": 3}), vec![t("short", 0, &[5, 5, 3])]),
        call("Add", "add", json!({}), vec![json!([t("c2", 0, &[5, 5, 3]), t("bn2", 0, &[5, 5, 3])])]),
        call("Activation", "r2", json!({"activation": "tanh"}), vec![t("add", 0, &[5, 5, 3])]),
        call("GlobalAveragePooling2D", "gap", json!({}), vec![t("r2", 0, &[5, 5, 3])]),
        call("Dense", "out", dense(3, "softmax"), vec![t("gap", 0, &[3])]),
    ];
    functional(layers, &["x"], ("out", 0), Loss::CategoricalCrossentropy, seed)
}

#[test]
fn residual_block_with_batch_normalization_gradients_match_finite_differences() {
    let m = residual(107);
    let x = tensor(normal(100, 108), &[2, 5, 5, 2]);
    check_model_inputs("residual block", &m, &[x], &one_hot(&[1, 2], 3));
}

#[test]
fn a_frozen_layer_gets_no_update_and_still_passes_gradients_below_it() {
    let mut m = residual(109);
    let bn2 = m.layer_index("bn2").unwrap();
    let short = m.layer_index("short").unwrap();
    let trained_before = m.weights().len();
    m.set_trainable(bn2, false).unwrap();
    // bn2's gamma and beta leave the trained weights; the conv below it still trains.
    assert_eq!(m.weights().len(), trained_before - 2);
    let x = tensor(normal(100, 110), &[2, 5, 5, 2]);
    let y = one_hot(&[0, 1], 3);
    let before: Vec<Vec<f64>> = m.layers()[bn2].weights().iter().chain(&m.layers()[bn2].state()).map(|v| values(v.as_tensor())).collect();
    let short_before = values(m.layers()[short].weights()[0].as_tensor());
    check_model_inputs("residual block, bn2 frozen (inference mode)", &m, std::slice::from_ref(&x), &y);
    m.train_step(&[x.to_dtype(DType::F32).unwrap()], &y, None).unwrap();
    let after: Vec<Vec<f64>> = m.layers()[bn2].weights().iter().chain(&m.layers()[bn2].state()).map(|v| values(v.as_tensor())).collect();
    assert_eq!(before, after, "a frozen BatchNormalization keeps gamma, beta and its moving statistics");
    assert_ne!(short_before, values(m.layers()[short].weights()[0].as_tensor()), "the conv below it trains");
}

#[test]
fn a_training_step_applies_the_gradients_the_check_verified() {
    // Plain SGD: w_after = w - lr * grad, for every weight, on the graph with a shared layer too.
    for m in [residual(111)] {
        let mut m = m;
        let x = tensor(normal(100, 112), &[2, 5, 5, 2]);
        let y = one_hot(&[2, 0], 3);
        let w0: Vec<Tensor> = m.weights().iter().map(|w| w.as_tensor().copy().unwrap()).collect();
        let grads = m.gradients(std::slice::from_ref(&x), &y).unwrap().2;
        m.train_step(&[x], &y, None).unwrap();
        for ((w0, g), w) in w0.iter().zip(&grads).zip(m.weights()) {
            let expected = values(&w0.sub(&g.affine(0.01, 0.0).unwrap()).unwrap());
            let got = values(w.as_tensor());
            assert!(expected.iter().zip(&got).all(|(a, b)| (a - b).abs() < 1e-12), "w - lr * g");
        }
    }
}

#[test]
fn graph_errors_name_what_is_wrong() {
    let e = |layers: Vec<Value>, inputs: &[&str], out: (&str, usize)| -> String {
        let inputs: Vec<Value> = inputs.iter().map(|n| json!([n, 0, 0])).collect();
        let c = json!({"class_name": "Functional", "config": {"name": "g", "layers": layers, "input_layers": inputs,
                       "output_layers": [[out.0, out.1, 0]]}});
        match Model::from_config(&c, DType::F32) {
            Ok(_) => panic!("should fail"),
            Err(e) => e.to_string(),
        }
    };
    // An output computed from an input that is not a model input.
    let disconnected = e(
        vec![input("x", &[2]), input("z", &[2]), call("Dense", "d", json!({"units": 1}), vec![t("z", 0, &[2])])],
        &["x"],
        ("d", 0),
    );
    assert!(disconnected.contains("Graph disconnected"), "{disconnected}");
    let duplicate = e(
        vec![input("x", &[2]), call("Dense", "d", json!({"units": 2}), vec![t("x", 0, &[2])]), call("Dense", "d", json!({"units": 1}), vec![t("d", 0, &[2])])],
        &["x"],
        ("d", 0),
    );
    assert!(duplicate.contains("\"d\" is used 2 times"), "{duplicate}");
    let incompatible = e(
        vec![
            input("x", &[2]),
            call("Dense", "a", json!({"units": 2}), vec![t("x", 0, &[2])]),
            call("Dense", "b", json!({"units": 3}), vec![t("x", 0, &[2])]),
            call("Add", "add_1", json!({}), vec![json!([t("a", 0, &[2]), t("b", 0, &[3])])]),
        ],
        &["x"],
        ("add_1", 0),
    );
    assert!(incompatible.contains("add_1") && incompatible.contains("(None, 2) and (None, 3)"), "{incompatible}");
}

#[test]
fn a_functional_config_round_trips_through_the_core() {
    let m = residual(113);
    let again = Model::from_config(&m.keras_config(), DType::F64).unwrap();
    assert_eq!(again.keras_config(), m.keras_config());
    let names: Vec<&str> = again.layers().iter().map(|l| l.name()).collect();
    assert_eq!(names, ["c1", "bn1", "r1", "c2", "short", "bn2", "add", "r2", "gap", "out"]);
    assert_eq!(again.count_params(), m.count_params());
    // BatchNormalization's moving statistics are counted but not trained.
    assert_eq!(m.count_params() - m.trainable_count(), 2 * (3 + 3));
}
