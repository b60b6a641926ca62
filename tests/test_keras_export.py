"""Writing Keras 3 files: ``model.save('x.keras')`` is a zip that real Keras opens and that predicts,
and trains on, as kandle does (checked against tests/golden/export_*.npz, made by
tests/golden/make_keras_export.py with Keras 3.15.1 loading the committed export_*.keras files)."""

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

import kandle
from kandle.models import load_model

import _keras_export_models as models

GOLDEN = Path(__file__).parent / "golden"
NAMES = ["seq", "fun"]


@pytest.fixture(scope="module")
def trained():
    return models.build_all(kandle)


def golden(name):
    with np.load(GOLDEN / f"export_{name}.npz") as f:
        return {k: f[k] for k in f.files}


def contents(path):
    import h5py

    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
        config = json.loads(zf.read("config.json"))
        data = {}
        with h5py.File(io.BytesIO(zf.read("model.weights.h5")), "r") as f:
            f.visititems(lambda key, obj: data.__setitem__(key, np.asarray(obj)) if hasattr(obj, "shape") else None)
    return config, data


@pytest.mark.parametrize("name", NAMES)
def test_the_file_is_the_one_keras_loaded(trained, tmp_path, name):
    path = tmp_path / f"{name}.keras"
    trained[name].save(path)
    config, data = contents(path)
    keras_config, keras_data = contents(GOLDEN / f"export_{name}.keras")
    assert config == keras_config
    assert sorted(data) == sorted(keras_data)
    for key in data:
        np.testing.assert_allclose(data[key], keras_data[key], rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("name", NAMES)
def test_keras_predicts_and_trains_on_as_kandle(trained, name):
    g = golden(name)
    model = trained[name]
    np.testing.assert_allclose(model.predict(g["x"], verbose=0), g["keras_pred"], rtol=1e-5, atol=1e-6)
    assert model.optimizer.iterations == int(g["keras_iterations"])
    # One more step in Keras on the loaded file needed the exported optimizer state (Adam's moments,
    # SGD's momentum, the step count): kandle's next step lands on the same weights.
    model.train_on_batch(g["x"][:8], g["y"][:8])
    steps = [g[f"keras_step_{i}"] for i in range(len(model.get_weights()))]
    for i, (mine, theirs) in enumerate(zip(model.get_weights(), steps)):
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-5, err_msg=f"{name}: weight {i}")


@pytest.mark.parametrize("name", NAMES)
def test_kandle_reads_its_keras_files_back(name):
    g = golden(name)
    model = load_model(GOLDEN / f"export_{name}.keras")
    np.testing.assert_allclose(model.predict(g["x"], verbose=0), g["keras_pred"], rtol=1e-5, atol=1e-6)
    assert model.metrics_names[0] == "loss"
    # The optimizer's state comes back too: the next step is the one Keras took from the same file.
    assert model.optimizer.iterations == int(g["keras_iterations"])
    model.train_on_batch(g["x"][:8], g["y"][:8])
    for i, w in enumerate(model.get_weights()):
        np.testing.assert_allclose(w, g[f"keras_step_{i}"], rtol=1e-4, atol=1e-5, err_msg=f"{name}: weight {i}")


def test_weights_h5_is_keras_layout_and_loads_back(trained, tmp_path):
    model = trained["seq"]
    model.save_weights(tmp_path / "w.weights.h5")
    import h5py

    with h5py.File(tmp_path / "w.weights.h5", "r") as f:
        assert sorted(f["layers"]) == ["activation", "batch_normalization", "conv2d", "conv2d_1", "dense", "dense_1",
                                       "flatten", "max_pooling2d"]
        assert f["layers/batch_normalization/vars"].attrs["name"] == model.layers[1].name
        assert "optimizer" not in f
    other = models.sequential(kandle)
    other.load_weights(tmp_path / "w.weights.h5")
    x, _ = models.data()
    np.testing.assert_array_equal(other.predict(x, verbose=0), model.predict(x, verbose=0))


def test_a_failed_write_keeps_the_old_file(trained, tmp_path, monkeypatch):
    path = tmp_path / "m.keras"
    trained["seq"].save(path)
    before = path.read_bytes()
    from kandle.saving import keras_export

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(keras_export, "_weights_bytes", broken)
    with pytest.raises(OSError, match="disk full"):
        trained["seq"].save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.keras"]
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)
