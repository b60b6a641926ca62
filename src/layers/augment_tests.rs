//! Tests of the geometric augmentation layers: training outputs against Keras 3
//! (tests/golden/augment.npz, from tests/golden/make_augment.py: transforms with a fixed draw, as a
//! factor `(f, f)` gives), finite differences, and what the random draws cover.

use super::*;
use crate::gradcheck::{check_layer, layer, normal, var};
use candle_core::{DType, Device};

fn golden() -> (Vec<(String, Tensor)>, Value) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let arrays = Tensor::read_npz(dir.join("augment.npz")).expect("tests/golden/augment.npz");
    let configs = std::fs::read_to_string(dir.join("augment.json")).expect("tests/golden/augment.json");
    (arrays, serde_json::from_str(&configs).unwrap())
}

fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1().unwrap()
}

#[test]
fn training_outputs_match_keras() {
    let (arrays, configs) = golden();
    let get = |name: &str| arrays.iter().find(|(n, _)| n == name).map(|(_, t)| t.clone()).unwrap_or_else(|| panic!("{name}"));
    let x = get("x");
    let cases = configs["cases"].as_object().unwrap();
    assert!(cases.len() >= 20, "{} cases", cases.len());
    for (name, case) in cases {
        let class = case["class_name"].as_str().unwrap();
        let mut config = case["config"].clone();
        config["name"] = json!(name);
        let l = crate::layers::build(class, &config, &[x.dims()[1..].to_vec()], DType::F32).unwrap();
        let (y, _) = l.forward_train(std::slice::from_ref(&x), true).unwrap();
        let want = get(name);
        assert_eq!(y.dims(), want.dims(), "{name}");
        let (y, want) = (values(&y), values(&want));
        let worst = y.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(worst < 2e-5, "{name} ({class} {config}): off by {worst}");
    }
}

/// With a fixed draw each training pass is one linear map of the input, so finite differences
/// check the backward pass in every fill mode and interpolation.
#[test]
fn gradients_match_finite_differences() {
    let x = var(normal(2 * 5 * 6 * 2, 3), &[2, 5, 6, 2]);
    for mode in ["reflect", "wrap", "constant", "nearest"] {
        for interpolation in ["bilinear", "nearest"] {
            let common = json!({"fill_mode": mode, "interpolation": interpolation, "fill_value": 0.7});
            let with = |mut v: Value| {
                v.as_object_mut().unwrap().extend(common.as_object().unwrap().clone());
                v
            };
            let cases = [
                ("RandomTranslation", with(json!({"name": "t", "height_factor": [0.3, 0.3], "width_factor": [-0.45, -0.45]}))),
                ("RandomRotation", with(json!({"name": "r", "factor": [0.07, 0.07]}))),
                ("RandomZoom", with(json!({"name": "z", "height_factor": [0.4, 0.4], "width_factor": [-0.3, -0.3]}))),
            ];
            for (class, config) in cases {
                check_layer(&format!("{class} {mode} {interpolation}"), layer(class, config, &[5, 6, 2], 1).as_ref(), &x);
            }
        }
    }
    // RandomCrop of images smaller than the target: a fixed crop and resize.
    check_layer("RandomCrop resize", layer("RandomCrop", json!({"name": "c", "height": 7, "width": 4}), &[5, 6, 2], 1).as_ref(), &x);
}

fn batch(n: usize, h: usize, w: usize, c: usize) -> Tensor {
    Tensor::from_vec((0..n * h * w * c).map(|i| i as f64).collect::<Vec<_>>(), (n, h, w, c), &Device::Cpu).unwrap()
}

/// Every image moves by its own draw, inside the factor's range; inference is the identity; a
/// seed fixes the draws.
#[test]
fn draws_differ_per_image_stay_in_range_and_follow_the_seed() {
    // One bright pixel in the middle of a 1x21 row; translated by up to 0.2 * 21 = 4.2 pixels.
    let mut v = vec![0.0; 21];
    v[10] = 1.0;
    let x = Tensor::from_vec(v.repeat(200), (200, 1, 21, 1), &Device::Cpu).unwrap();
    let config = json!({"name": "t", "height_factor": 0.0, "width_factor": 0.2, "fill_mode": "constant", "interpolation": "nearest", "seed": 5});
    let l = layer("RandomTranslation", config.clone(), &[1, 21, 1], 0);
    let (y, _) = l.forward_train(std::slice::from_ref(&x), true).unwrap();
    let rows = y.squeeze(3).unwrap().squeeze(1).unwrap().to_vec2::<f64>().unwrap();
    let shifts: Vec<i64> = rows.iter().map(|r| r.iter().position(|&p| p == 1.0).unwrap() as i64 - 10).collect();
    assert!(shifts.iter().all(|s| s.abs() <= 4), "{shifts:?}");
    for s in -4..=4 {
        assert!(shifts.contains(&s), "shift {s} never drawn in 200 images");
    }
    let again = layer("RandomTranslation", config, &[1, 21, 1], 0).forward_train(std::slice::from_ref(&x), true).unwrap().0;
    assert_eq!(values(&again), values(&y));
    assert_eq!(values(&l.forward(std::slice::from_ref(&x)).unwrap()), values(&x));
}

/// RandomCrop while training: one window per batch, anywhere in the image, and its backward pass
/// puts the gradient back in that window.
#[test]
fn random_crop_takes_one_window_per_batch_anywhere_in_the_image() {
    let l = layer("RandomCrop", json!({"name": "c", "height": 3, "width": 2, "seed": 1}), &[5, 6, 1], 0);
    let x = batch(2, 5, 6, 1);
    let mut corners = std::collections::HashSet::new();
    for _ in 0..200 {
        let (y, extra) = l.forward_train(std::slice::from_ref(&x), true).unwrap();
        let first = values(&y);
        let (top, left) = ((first[0] as usize) / 6, (first[0] as usize) % 6);
        for i in 0..2 {
            for r in 0..3 {
                for c in 0..2 {
                    assert_eq!(first[i * 6 + r * 2 + c], (i * 30 + (top + r) * 6 + left + c) as f64);
                }
            }
        }
        corners.insert((top, left));
        let saved = Saved { inputs: vec![x.clone()], output: y.clone(), activated: true, extra };
        let back = l.backward(&saved, &y, &[true]).unwrap().inputs.remove(0).unwrap();
        assert_eq!(values(&back).iter().sum::<f64>(), first.iter().sum::<f64>());
    }
    assert_eq!(corners.len(), 3 * 5, "every corner of a 3x2 window in 5x6 is drawn: {corners:?}");
    // At inference: the largest central window of the target's 3:2 aspect ratio (all 5 rows, 3
    // of the 6 columns from column 1), resized to 3x2.
    let inference = l.forward(std::slice::from_ref(&x)).unwrap();
    let window = x.narrow(1, 0, 5).unwrap().narrow(2, 1, 3).unwrap().contiguous().unwrap();
    let want = resample(&window, &[resize_taps((5, 3), (3, 2))], 0.0).unwrap();
    assert_eq!(inference.dims(), [2, 3, 2, 1]);
    assert_eq!(values(&inference), values(&want));
}

#[test]
fn bad_arguments_are_keras_errors() {
    let err = |class: &str, config: Value| crate::layers::validate(class, &config).unwrap_err().to_string();
    assert!(err("RandomTranslation", json!({"height_factor": 1.5, "width_factor": 0.1})).contains("in the range [-1.0, 1.0]. Received: height_factor=1.5"));
    assert!(err("RandomZoom", json!({"height_factor": [-1.0, 0.2]})).contains("(-1.0, 1.0]"));
    assert!(err("RandomRotation", json!({"factor": 0.1, "fill_mode": "mirror"})).contains("Unknown `fill_mode` \"mirror\""));
    assert!(err("RandomRotation", json!({"factor": 0.1, "interpolation": "bicubic"})).contains("Unknown `interpolation`"));
    assert!(err("RandomTranslation", json!({"height_factor": 0.1})).contains("missing required argument `width_factor`"));
    assert!(err("RandomCrop", json!({"height": 0, "width": 3})).contains("positive integer"));
    let shape = crate::layers::output_shape("RandomRotation", &json!({"name": "r", "factor": 0.1}), &[vec![4, 4]]);
    assert!(shape.unwrap_err().to_string().contains("expected ndim=4"));
}
