"""Saving and loading kandle models (``model.save`` / ``kandle.models.load_model`` / weights only).

What is specified here:

* a loaded model predicts bit for bit as the saved one, for every layer kind;
* ``fit`` after ``load_model`` gives exactly the losses and weights of the uninterrupted run, for
  every optimizer (their slots, step count and learning rate are saved) and with shuffling and
  dropout on (kandle's random generators are saved too), also across processes;
* ``save_weights`` / ``load_weights`` move weights alone, checked layer by layer;
* ``ModelCheckpoint`` writes files that load; ``overwrite=False`` asks first, as Keras does;
* the file is a plain safetensors file whose header says ``format: kandle`` and its version.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import _safetensors_io as st
import kandle
from kandle import optimizers
from kandle.callbacks import ModelCheckpoint
from kandle.layers import Activation, Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D
from kandle.models import Sequential, load_model

LAYER_CASES = {
    "conv_same": lambda: [Conv2D(4, (3, 3), padding="same", activation="relu")],
    "conv_valid_strided": lambda: [Conv2D(3, (2, 3), strides=(2, 1), use_bias=False, activation="tanh")],
    "maxpool": lambda: [MaxPooling2D((2, 2), padding="same")],
    "flatten": lambda: [Flatten()],
    "dense": lambda: [Flatten(), Dense(7, activation="elu", kernel_initializer="he_normal")],
    "dropout": lambda: [Dropout(0.4)],
    "dropout_seeded": lambda: [Dropout(0.3, seed=5)],
    "activation": lambda: [Activation("selu")],
}

OPTIMIZER_CASES = {
    "sgd": lambda: optimizers.SGD(0.05),
    "sgd_momentum": lambda: optimizers.SGD(0.05, momentum=0.9),
    "sgd_nesterov": lambda: optimizers.SGD(0.05, momentum=0.8, nesterov=True),
    "adam": lambda: optimizers.Adam(0.01),
    "rmsprop": lambda: optimizers.RMSprop(0.005),
    "rmsprop_centered_momentum": lambda: optimizers.RMSprop(0.005, momentum=0.5, centered=True),
    "adagrad": lambda: optimizers.Adagrad(0.05),
}


def data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 6, 6, 2), dtype=np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]
    return x, y


def cnn(optimizer="adam", extra=()):
    """A small CNN with every layer kind; `extra` layers go after the first convolution."""
    model = Sequential([Input((6, 6, 2)), Conv2D(4, (3, 3), activation="relu"), *extra, MaxPooling2D((2, 2)),
                        Flatten(), Dropout(0.25), Dense(8, activation="tanh"), Dense(3), Activation("softmax")])
    model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["acc", "mse"])
    return model


@pytest.mark.parametrize("case", sorted(LAYER_CASES))
def test_every_layer_round_trips_bit_for_bit(tmp_path, case):
    kandle.utils.set_random_seed(1)
    model = Sequential([Input((6, 6, 2)), *LAYER_CASES[case](), Flatten(), Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    x, y = data()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "m.kandle")
    loaded = load_model(tmp_path / "m.kandle")
    assert [type(l).__name__ for l in loaded.layers] == [type(l).__name__ for l in model.layers]
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("case", sorted(OPTIMIZER_CASES))
def test_fit_resumes_exactly_for_every_optimizer(tmp_path, case):
    kandle.utils.set_random_seed(3)
    x, y = data()
    model = cnn(OPTIMIZER_CASES[case]())
    model.fit(x, y, batch_size=5, epochs=2, verbose=0)  # shuffle=True, dropout on
    model.save(tmp_path / "m.kandle")
    uninterrupted = model.fit(x, y, batch_size=5, epochs=2, verbose=0).history

    loaded = load_model(tmp_path / "m.kandle")
    assert type(loaded.optimizer) is type(model.optimizer)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.optimizer.iterations == 10
    resumed = loaded.fit(x, y, batch_size=5, epochs=2, verbose=0).history
    assert resumed["loss"] == uninterrupted["loss"]
    assert resumed["acc"] == uninterrupted["acc"]
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_fit_resumes_exactly_in_a_new_process(tmp_path):
    """The saved run continues in-process; a second process loads the file and continues too."""
    common = textwrap.dedent("""
        import json, sys
        import numpy as np
        import kandle
        from kandle.layers import Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D
        from kandle.models import Sequential, load_model
        rng = np.random.default_rng(0)
        x = rng.random((30, 6, 6, 2), dtype=np.float32)
        y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 30)]
        path = sys.argv[1]
    """)
    first = common + textwrap.dedent("""
        kandle.utils.set_random_seed(11)
        m = Sequential([Input((6, 6, 2)), Conv2D(4, 3, activation="relu"), MaxPooling2D(), Flatten(),
                        Dropout(0.3), Dense(3, activation="softmax")])
        m.compile(optimizer="rmsprop", loss="categorical_crossentropy")
        m.fit(x, y, batch_size=4, epochs=2, verbose=0)
        m.save(path)
        print(json.dumps(m.fit(x, y, batch_size=4, epochs=3, verbose=0).history["loss"]))
    """)
    second = common + textwrap.dedent("""
        m = load_model(path)
        print(json.dumps(m.fit(x, y, batch_size=4, epochs=3, verbose=0).history["loss"]))
    """)
    path = str(tmp_path / "m.kandle")

    def run(code):
        out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    uninterrupted = run(first)
    assert run(second) == uninterrupted


def test_file_is_safetensors_with_kandle_header(tmp_path):
    model = cnn()
    x, y = data()
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.kandle")
    meta, tensors = st.read(tmp_path / "m.kandle")
    assert meta["format"] == "kandle" and meta["format_version"] == "2" and meta["content"] == "model"
    assert meta["checksum"].startswith("crc32:")
    config = json.loads(meta["model_config"])
    assert config == json.loads(model.to_json())
    compile_config = json.loads(meta["compile_config"])
    assert compile_config["loss"] == "categorical_crossentropy"
    assert compile_config["metrics"] == ["acc", "mean_squared_error"]
    assert compile_config["optimizer"]["class_name"] == "Adam"
    training = json.loads(meta["training_state"])
    assert training["iterations"] == 1 and training["slots_per_variable"] == 2
    conv = model.layers[0].name
    np.testing.assert_array_equal(tensors[f"layers/{conv}/kernel"], model.layers[0].get_weights()[0])  # Keras layout
    assert tensors[f"optimizer/{conv}/kernel/0"].shape == (3, 3, 2, 4)
    assert not any(name.startswith(".") for name in os.listdir(tmp_path)), "no temporary file left behind"


def test_any_extension_but_keras_holds_kandle_format_and_loads(tmp_path):
    model = cnn()
    x, _ = data()
    for name in ("m.kandle", "m.h5", "weights.01-0.52.hdf5", "noext", "m.keras"):
        model.save(tmp_path / name)
        kandle_format = (tmp_path / name).read_bytes()[:8] != b"PK\x03\x04\x14\x00\x00\x00"[:8]
        assert kandle_format == (name != "m.keras"), name  # .keras: a Keras 3 zip (tests/test_keras_export.py)
        np.testing.assert_array_equal(load_model(str(tmp_path / name)).predict(x, verbose=0), model.predict(x, verbose=0))


def test_learning_rate_changes_and_compile_options_survive(tmp_path):
    model = cnn(optimizers.SGD(0.1, momentum=0.5))
    model.optimizer.learning_rate = 0.0123  # as ReduceLROnPlateau does
    model.save(tmp_path / "m.kandle")
    loaded = load_model(tmp_path / "m.kandle")
    assert loaded.optimizer.learning_rate == 0.0123
    assert loaded.metrics_names == model.metrics_names
    x, y = data()
    assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)


def test_compile_false_and_uncompiled_models(tmp_path):
    model = cnn()
    model.save(tmp_path / "m.kandle")
    bare = load_model(tmp_path / "m.kandle", compile=False)
    with pytest.raises(RuntimeError, match="compile"):
        bare.evaluate(*data(), verbose=0)
    uncompiled = Sequential([Input((4,)), Dense(2)])
    uncompiled.save(tmp_path / "u.kandle")
    loaded = load_model(tmp_path / "u.kandle")
    assert loaded.optimizer is None
    np.testing.assert_array_equal(loaded.get_weights()[0], uncompiled.get_weights()[0])


def test_include_optimizer_false_restarts_the_optimizer(tmp_path):
    model = cnn()
    model.fit(*data(), epochs=1, verbose=0)
    model.save(tmp_path / "m.kandle", include_optimizer=False)
    meta, tensors = st.read(tmp_path / "m.kandle")
    assert not any(k.startswith("optimizer/") for k in tensors)
    loaded = load_model(tmp_path / "m.kandle")
    assert loaded.optimizer.iterations == 0 and loaded.metrics_names == model.metrics_names


def test_save_weights_and_load_weights(tmp_path):
    model = cnn()
    x, y = data()
    model.fit(x, y, epochs=1, verbose=0)
    model.save_weights(tmp_path / "w.kandle")
    meta, tensors = st.read(tmp_path / "w.kandle")
    assert meta["content"] == "weights" and "compile_config" not in meta
    model.save_weights(tmp_path / "w.weights.h5")  # Keras 3's suffix: Keras 3's HDF5 layout
    assert (tmp_path / "w.weights.h5").read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"
    for name in ("w.kandle", "w.weights.h5"):
        other = cnn()
        other.load_weights(tmp_path / name)
        np.testing.assert_array_equal(other.predict(x, verbose=0), model.predict(x, verbose=0))
        other.load_weights(tmp_path / name)  # idempotent
    model.save(tmp_path / "full.kandle")
    third = cnn()
    third.load_weights(tmp_path / "full.kandle")  # a full model file also serves its weights
    np.testing.assert_array_equal(third.predict(x, verbose=0), model.predict(x, verbose=0))
    with pytest.raises(ValueError, match=r"w\.weights\.h5.*load_weights"):
        load_model(tmp_path / "w.weights.h5")


def test_load_weights_names_the_mismatching_layer_and_changes_nothing(tmp_path):
    model = cnn()
    model.save_weights(tmp_path / "w.kandle")
    wider = Sequential([Input((6, 6, 2)), Conv2D(4, (3, 3), activation="relu"), MaxPooling2D((2, 2)), Flatten(),
                        Dropout(0.25), Dense(9, activation="tanh", name="wide"), Dense(3), Activation("softmax")])
    before = wider.get_weights()
    with pytest.raises(ValueError, match=r"w\.kandle.*layer \\?\"wide\\?\" \(Dense\).*\[16, 9\]"):
        wider.load_weights(tmp_path / "w.kandle")
    for a, b in zip(before, wider.get_weights()):
        np.testing.assert_array_equal(a, b)
    other = Sequential([Input((6, 6, 2)), Flatten(), Dense(3)])
    with pytest.raises(ValueError, match="7 layers, this model has 2"):
        other.load_weights(tmp_path / "w.kandle")
    swapped = Sequential([Input((6, 6, 2)), Conv2D(4, (3, 3)), MaxPooling2D((2, 2)), Flatten(), Activation("relu"),
                          Dense(8), Dense(3), Activation("softmax")])
    with pytest.raises(ValueError, match=r"is a Dropout where this model has layer \"activation"):
        swapped.load_weights(tmp_path / "w.kandle")
    with pytest.raises(ValueError, match="not built"):
        Sequential([Dense(3)]).load_weights(tmp_path / "w.kandle")


def test_unbuilt_model_cannot_be_saved(tmp_path):
    with pytest.raises(ValueError, match="not built"):
        Sequential([Dense(3)]).save(tmp_path / "m.kandle")
    assert not os.listdir(tmp_path)


def test_overwrite_false_asks_first(tmp_path, monkeypatch):
    model = cnn()
    path = tmp_path / "m.kandle"
    model.save(path)
    before = path.read_bytes()
    model.fit(*data(), epochs=1, verbose=0)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    model.save(path, overwrite=False)
    assert path.read_bytes() == before
    monkeypatch.setattr("builtins.input", lambda prompt: "y")
    model.save(path, overwrite=False)
    assert path.read_bytes() != before


def test_model_checkpoint_files_load(tmp_path):
    x, y = data()
    model = cnn()
    pattern = str(tmp_path / "ckpt.{epoch:02d}.kandle")
    model.fit(x, y, epochs=2, verbose=0, validation_split=0.25, callbacks=[
        ModelCheckpoint(pattern), ModelCheckpoint(str(tmp_path / "best.weights.h5"), save_weights_only=True,
                                                  save_best_only=True)])
    assert sorted(p for p in os.listdir(tmp_path)) == ["best.weights.h5", "ckpt.01.kandle", "ckpt.02.kandle"]
    last = load_model(tmp_path / "ckpt.02.kandle")
    np.testing.assert_array_equal(last.predict(x, verbose=0), model.predict(x, verbose=0))
    assert last.optimizer.iterations == model.optimizer.iterations


def test_a_run_resumed_from_its_checkpoint_continues_the_uninterrupted_history(tmp_path):
    """The Keras recipe: ModelCheckpoint every epoch; after a crash, load the last file and call
    fit(..., initial_epoch=k). The epochs after k repeat the uninterrupted run's numbers exactly."""
    x, y = data(40)
    kandle.utils.set_random_seed(8)
    model = cnn(optimizers.SGD(0.05, momentum=0.9))
    pattern = str(tmp_path / "epoch{epoch}.kandle")
    full = model.fit(x, y, batch_size=6, epochs=5, validation_split=0.2, verbose=0,
                     callbacks=[ModelCheckpoint(pattern)]).history
    resumed_model = load_model(tmp_path / "epoch3.kandle")
    resumed = resumed_model.fit(x, y, batch_size=6, epochs=5, initial_epoch=3, validation_split=0.2,
                                verbose=0).history
    for key in ("loss", "acc", "val_loss", "val_acc"):
        assert resumed[key] == full[key][3:], key


def test_saving_and_loading_release_the_model_for_other_threads(tmp_path):
    """Two threads saving and loading the same file at once never see a torn file."""
    import threading

    model = cnn()
    x, _ = data()
    path = tmp_path / "m.kandle"
    model.save(path)
    expected = model.predict(x, verbose=0)
    errors = []

    def saver():
        for _ in range(10):
            model.save(path)

    def loader():
        for _ in range(10):
            try:
                np.testing.assert_array_equal(load_model(path).predict(x, verbose=0), expected)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

    threads = [threading.Thread(target=saver), threading.Thread(target=loader)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors, errors[0]
