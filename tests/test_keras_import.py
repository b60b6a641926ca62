"""Importing Keras 3 files: ``load_model('model.keras')`` and ``load_weights('x.weights.h5')``.

``tests/golden/keras_model.keras`` was written by real Keras 3 (``tests/golden/make_keras_model.py``,
which also stored Keras's predictions and evaluation next to it). Specified here: kandle loads it
with the same layers, names and weights, predicts and evaluates as Keras did (within 1e-5, the
tolerance of the other golden tests), restores its compile configuration, and names what it cannot
import: an unsupported layer, a functional model, a damaged zip, weights of the wrong shapes.
Reading the weights needs h5py; the tests that read them are skipped without it.
"""

import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from kandle.models import load_model

GOLDEN = Path(__file__).resolve().parent / "golden"
KERAS_FILE = GOLDEN / "keras_model.keras"
try:
    import h5py  # noqa: F401
except ImportError:
    h5py = None
needs_h5py = pytest.mark.skipif(h5py is None, reason="reading Keras weights needs h5py")


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(GOLDEN / "keras_model.npz"))


def rewritten(tmp_path, edit_config=None, drop=()):
    """A copy of the golden .keras file with its config.json passed through `edit_config`."""
    out = tmp_path / "edited.keras"
    with zipfile.ZipFile(KERAS_FILE) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            if name in drop:
                continue
            data = src.read(name)
            if name == "config.json" and edit_config is not None:
                config = json.loads(data)
                edit_config(config)
                data = json.dumps(config).encode()
            dst.writestr(name, data)
    return out


def layer_specs(config):
    return [l for l in config["config"]["layers"] if l["class_name"] != "InputLayer"]


@needs_h5py
def test_golden_keras_file_predicts_as_keras(golden):
    model = load_model(KERAS_FILE)
    assert model.name == "golden_cnn"
    assert [type(l).__name__ for l in model.layers] == [
        "Conv2D", "Conv2D", "MaxPooling2D", "Dropout", "Flatten", "Dense", "Dense", "Activation"]
    assert model.layers[0].name == "conv_same"
    assert model.input_shape == (None, 12, 12, 3)
    np.testing.assert_allclose(model.predict(golden["x"], verbose=0), golden["y"], rtol=1e-5, atol=1e-5)
    assert model.metrics_names == ["loss", "accuracy"]
    assert type(model.optimizer).__name__ == "Adam"
    assert model.optimizer.learning_rate == pytest.approx(0.01)
    np.testing.assert_allclose(model.evaluate(golden["x"], golden["labels"], batch_size=8, verbose=0),
                               golden["eval"], rtol=1e-5, atol=1e-5)


@needs_h5py
def test_imported_model_trains_and_round_trips_through_kandle_format(tmp_path, golden):
    model = load_model(KERAS_FILE)
    model.fit(golden["x"], golden["labels"], epochs=1, verbose=0)
    model.save(tmp_path / "converted.kandle")
    again = load_model(tmp_path / "converted.kandle")
    np.testing.assert_array_equal(again.predict(golden["x"], verbose=0), model.predict(golden["x"], verbose=0))


@needs_h5py
def test_compile_false_loads_an_uncompiled_model(golden):
    model = load_model(KERAS_FILE, compile=False)
    assert model.optimizer is None
    np.testing.assert_allclose(model.predict(golden["x"], verbose=0), golden["y"], rtol=1e-5, atol=1e-5)


@needs_h5py
def test_keras_weights_files_load_into_a_kandle_model(tmp_path, golden):
    with zipfile.ZipFile(KERAS_FILE) as z:
        (tmp_path / "golden.weights.h5").write_bytes(z.read("model.weights.h5"))
    for source in (tmp_path / "golden.weights.h5", KERAS_FILE):
        model = load_model(KERAS_FILE, compile=False)
        model.set_weights([np.zeros_like(w) for w in model.get_weights()])
        model.load_weights(source)
        np.testing.assert_allclose(model.predict(golden["x"], verbose=0), golden["y"], rtol=1e-5, atol=1e-5)


@needs_h5py
def test_weights_that_do_not_fit_the_architecture_name_the_layer(tmp_path):
    def widen(config):
        layer_specs(config)[5]["config"]["units"] = 17

    with pytest.raises(ValueError, match=r"edited\.keras.*layer 'dense' \(Dense\).*\(72, 17\).*\(72, 16\)"):
        load_model(rewritten(tmp_path, widen))


def test_an_unsupported_layer_is_named(tmp_path):
    def swap(config):
        layer_specs(config)[3]["class_name"] = "GaussianNoise"

    with pytest.raises(ValueError, match=r"edited\.keras.*layer 'dropout' is a GaussianNoise.*supported: "):
        load_model(rewritten(tmp_path, swap))


def test_unsupported_settings_are_named(tmp_path):
    def channels_first(config):
        layer_specs(config)[0]["config"]["data_format"] = "channels_first"

    with pytest.raises(ValueError, match=r"edited\.keras.*conv_same.*channels_first"):
        load_model(rewritten(tmp_path, channels_first))

    def half(config):
        layer_specs(config)[1]["config"]["dtype"] = {"class_name": "DTypePolicy", "config": {"name": "float16"}}

    with pytest.raises(ValueError, match=r"edited\.keras.*conv2d.*float16"):
        load_model(rewritten(tmp_path, half))


def test_a_functional_config_without_its_graph_is_refused(tmp_path):
    # A Sequential's config relabelled: no inbound_nodes, input_layers or output_layers.
    def functional(config):
        config["class_name"] = "Functional"

    with pytest.raises(ValueError, match=r"edited\.keras.*functional config"):
        load_model(rewritten(tmp_path, functional))


def test_an_unknown_model_class_is_refused(tmp_path):
    def subclassed(config):
        config["class_name"] = "MyModel"

    with pytest.raises(ValueError, match=r"edited\.keras.*'MyModel'.*Sequential and functional models only"):
        load_model(rewritten(tmp_path, subclassed))


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.99])
def test_a_truncated_keras_file_is_refused(tmp_path, fraction):
    data = KERAS_FILE.read_bytes()
    path = tmp_path / "cut.keras"
    path.write_bytes(data[:int(len(data) * fraction)])
    with pytest.raises(ValueError, match=r"cut\.keras"):
        load_model(path)


def test_a_zip_without_weights_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"edited\.keras.*no model\.weights\.h5"):
        load_model(rewritten(tmp_path, drop={"model.weights.h5"}))


@needs_h5py
def test_an_unknown_compile_configuration_loads_uncompiled_with_a_warning(tmp_path, golden):
    def huber(config):
        config["compile_config"]["loss"] = "huber"

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_model(rewritten(tmp_path, huber))
    assert any("compile configuration could not be restored" in str(w.message) for w in caught)
    assert model.optimizer is None
    np.testing.assert_allclose(model.predict(golden["x"], verbose=0), golden["y"], rtol=1e-5, atol=1e-5)


def test_golden_file_is_small_and_really_from_keras():
    assert KERAS_FILE.stat().st_size + (GOLDEN / "keras_model.npz").stat().st_size < 200_000
    with zipfile.ZipFile(KERAS_FILE) as z:
        assert json.loads(z.read("metadata.json"))["keras_version"].startswith("3.")
    meta = json.loads(str(np.load(GOLDEN / "keras_model.npz")["meta"]))
    assert meta["keras"].startswith("3.")
