//! What a saved model must be once loaded: the same predictions bit for bit, the same next training
//! steps, and a clear error (naming the file) for anything that is not a file kandle wrote.

use super::container::{self, HostTensor};
use super::*;
use serde_json::json;
use std::path::PathBuf;

/// A fresh folder per test (tests run in parallel).
fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kandle-saving-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every layer kind, a seeded Dropout (its own generator is saved too), Adam.
fn model() -> Model {
    let mut m = Model::new("net", &[6, 6, 2]).unwrap();
    m.add("Conv2D", &json!({"name": "c", "filters": 3, "kernel_size": 3, "padding": "same", "activation": "relu"})).unwrap();
    m.add("MaxPooling2D", &json!({"name": "p"})).unwrap();
    m.add("Flatten", &json!({"name": "f"})).unwrap();
    m.add("Dropout", &json!({"name": "d", "rate": 0.3, "seed": 7})).unwrap();
    m.add("Dense", &json!({"name": "h", "units": 5, "activation": "tanh"})).unwrap();
    m.add("Dense", &json!({"name": "o", "units": 4})).unwrap();
    m.add("Activation", &json!({"name": "a", "activation": "softmax"})).unwrap();
    let opt = Optimizer::from_json(&json!({"class_name": "Adam", "config": {"learning_rate": 0.01}})).unwrap();
    m.compile(opt, Loss::CategoricalCrossentropy, &["acc".into(), "mse".into()]).unwrap();
    m
}

fn data(seed: u32) -> (Tensor, Tensor) {
    let x: Vec<f32> = (0..8 * 72).map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 1000.0).collect();
    let y: Vec<f32> = (0..8 * 4).map(|i| if (i / 4 + seed as usize) % 4 == i % 4 { 1.0 } else { 0.0 }).collect();
    (Tensor::from_vec(x, (8, 6, 6, 2), &Device::Cpu).unwrap(), Tensor::from_vec(y, (8, 4), &Device::Cpu).unwrap())
}

/// The error message of a load that must fail.
fn load_err(path: &Path, compile: bool) -> String {
    match load_model(path, compile) {
        Ok(_) => panic!("loading {} should have failed", path.display()),
        Err(e) => e.to_string(),
    }
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()
}

fn steps(m: &mut Model, from: u32, n: u32) -> Vec<u64> {
    (from..from + n).map(|s| {
        let (x, y) = data(s);
        m.train_step(std::slice::from_ref(&x), &y, None).unwrap()[0].to_bits()
    }).collect()
}

#[test]
fn a_loaded_model_predicts_bit_for_bit_and_resumes_training_identically() {
    let path = tmp("resume").join("m.kandle");
    let mut m = model();
    steps(&mut m, 0, 3);
    save_model(&m, &path, true).unwrap();
    let (x, _) = data(99);
    let before = bits(&m.predict_batch(std::slice::from_ref(&x)).unwrap());
    let uninterrupted = steps(&mut m, 3, 3);

    let mut loaded = load_model(&path, true).unwrap();
    assert_eq!(bits(&loaded.predict_batch(std::slice::from_ref(&x)).unwrap()), before);
    assert_eq!(loaded.metrics_names(), ["loss", "acc", "mean_squared_error"]);
    assert_eq!(loaded.compiled().unwrap().optimizer.iterations, 3);
    assert_eq!(steps(&mut loaded, 3, 3), uninterrupted);
    for (a, b) in m.weights().iter().zip(loaded.weights()) {
        assert_eq!(bits(a.as_tensor()), bits(b.as_tensor()));
    }
}

#[test]
fn weights_files_load_into_a_model_of_the_same_architecture() {
    let path = tmp("weights").join("w.kandle");
    let mut m = model();
    steps(&mut m, 0, 1);
    save_weights(&m, &path).unwrap();
    let mut other = model();
    load_weights(&mut other, &path).unwrap();
    let (x, _) = data(5);
    assert_eq!(bits(&other.predict_batch(std::slice::from_ref(&x)).unwrap()), bits(&m.predict_batch(std::slice::from_ref(&x)).unwrap()));
    let e = load_err(&path, true);
    assert!(e.contains("load_weights"), "{e}");

    let mut smaller = Model::new("s", &[6, 6, 2]).unwrap();
    smaller.add("Flatten", &json!({"name": "f"})).unwrap();
    let e = load_weights(&mut smaller, &path).unwrap_err().to_string();
    assert!(e.contains("7 layers") && e.contains("w.kandle"), "{e}");
}

/// Rewrites a saved file through `edit` (re-encoded, so its checksum is valid again).
fn edited(path: &Path, edit: impl FnOnce(&mut container::Contents)) -> PathBuf {
    let mut c = container::read(path).unwrap();
    edit(&mut c);
    let out = path.with_extension("edited");
    container::write(&out, &c).unwrap();
    out
}

#[test]
fn inconsistent_files_are_refused_with_the_reason() {
    let path = tmp("inconsistent").join("m.kandle");
    let mut m = model();
    steps(&mut m, 0, 1);
    save_model(&m, &path, true).unwrap();
    let unknown = edited(&path, |c| {
        let s = c.meta["model_config"].replace("\"MaxPooling2D\"", "\"SpatialPyramid\"");
        c.meta.insert("model_config".into(), s);
    });
    let e = load_err(&unknown, true);
    assert!(e.contains("SpatialPyramid") && e.contains("m.edited"), "{e}");

    let reshaped = edited(&path, |c| {
        c.tensors.insert("layers/h/kernel".into(), HostTensor { shape: vec![5, 27], data: vec![0.0; 135] });
    });
    let e = load_err(&reshaped, true);
    assert!(e.contains("layer \"h\" (Dense)") && e.contains("[5, 27]"), "{e}");

    let extra = edited(&path, |c| {
        c.tensors.insert("layers/p/kernel".into(), HostTensor { shape: vec![1], data: vec![0.0] });
    });
    assert!(load_err(&extra, true).contains("layers/p/kernel"));

    let bad_slots = edited(&path, |c| {
        c.tensors.remove("optimizer/c/kernel/1");
    });
    let e = load_err(&bad_slots, true);
    assert!(e.contains("optimizer slot 'optimizer/c/kernel/1'"), "{e}");
    let fewer_slots = edited(&path, |c| {
        let t = c.meta["training_state"].replace("\"slots_per_variable\":2", "\"slots_per_variable\":1");
        c.meta.insert("training_state".into(), t);
        c.tensors.retain(|k, _| !(k.starts_with("optimizer/") && k.ends_with("/1")));
    });
    let e = load_err(&fewer_slots, true);
    assert!(e.contains("1 slot(s) per variable, the optimizer keeps 2"), "{e}");
    assert!(load_model(&bad_slots, false).is_ok(), "without compile the optimizer state is not read");
}

#[test]
fn a_modified_byte_is_caught_by_the_checksum() {
    let path = tmp("checksum").join("m.kandle");
    let mut m = model();
    steps(&mut m, 0, 1);
    save_model(&m, &path, true).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x40; // inside the last tensor's data
    std::fs::write(&path, &bytes).unwrap();
    let e = load_err(&path, true);
    assert!(e.contains("checksum mismatch") && e.contains("m.kandle"), "{e}");
}

#[test]
fn missing_files_and_unwritable_paths_are_reported() {
    let dir = tmp("paths");
    let e = load_err(&dir.join("nope.kandle"), true);
    assert!(e.contains("file not found") && e.contains("nope.kandle"), "{e}");
    assert!(matches!(save_model(&model(), &dir.join("no/such/dir/m.kandle"), true), Err(Error::Io(_))));
}
