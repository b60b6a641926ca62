"""The mixed_bfloat16 policy: Keras 3's API (kandle.mixed_precision, kandle.config, a layer's dtype=),
its numbers (Conv2D/Dense products in bfloat16, float32 variables and outputs), training, and saving."""

import json
import warnings

import numpy as np
import pytest

import kandle
from kandle import layers, mixed_precision


@pytest.fixture(autouse=True)
def float32_after():
    yield
    mixed_precision.set_global_policy(None)


def cnn(dtype=None):
    return kandle.Sequential([
        layers.Input((12, 12, 3)),
        layers.Conv2D(16, 3, activation="relu", dtype=dtype),
        layers.MaxPooling2D(),
        layers.Conv2D(24, 3, padding="same", activation="relu", dtype=dtype),
        layers.Flatten(),
        layers.Dense(32, activation="relu", dtype=dtype),
        layers.Dense(5, activation="softmax", dtype=dtype),
    ])


def data(n=64, seed=0):
    """Five classes, each a fixed random pattern under noise."""
    patterns = np.random.default_rng(42).random((5, 12, 12, 3), dtype=np.float32)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, n)
    x = (0.6 * patterns[labels] + 0.4 * rng.random((n, 12, 12, 3), dtype=np.float32)).astype(np.float32)
    return x, np.eye(5, dtype=np.float32)[labels]


def test_the_policy_api_follows_keras():
    assert mixed_precision.global_policy().name == "float32"
    assert kandle.config.dtype_policy() == mixed_precision.DTypePolicy("float32")
    mixed_precision.set_global_policy("mixed_bfloat16")
    p = mixed_precision.global_policy()
    assert (p.name, p.compute_dtype, p.variable_dtype) == ("mixed_bfloat16", "bfloat16", "float32")
    assert repr(p) == '<DTypePolicy "mixed_bfloat16">' and p.get_config() == {"name": "mixed_bfloat16"}
    assert mixed_precision.DTypePolicy.from_config(p.get_config()) == p
    assert kandle.DTypePolicy is mixed_precision.Policy is mixed_precision.DTypePolicy
    kandle.config.set_dtype_policy("float32")
    assert kandle.config.dtype_policy().name == "float32"
    kandle.config.set_dtype_policy(mixed_precision.DTypePolicy("mixed_bfloat16"))
    assert mixed_precision.global_policy().compute_dtype == "bfloat16"


@pytest.mark.parametrize("name", ["mixed_float16", "float16", "bfloat16", "float64", "int8_from_float32", "nonsense"])
def test_policies_kandle_lacks_say_so(name):
    with pytest.raises(ValueError, match=rf"kandle does not implement the dtype policy '{name}' yet .*'mixed_bfloat16'"):
        mixed_precision.set_global_policy(name)
    with pytest.raises(ValueError, match=rf"Dense: kandle does not implement the dtype policy '{name}'"):
        layers.Dense(3, dtype=name)
    with pytest.raises(TypeError, match="Invalid dtype policy"):
        layers.Dense(3, dtype=3.5)


def test_layers_take_the_global_policy_at_construction_or_their_own():
    mixed_precision.set_global_policy("mixed_bfloat16")
    a = layers.Conv2D(4, 3)
    mixed_precision.set_global_policy("float32")
    b = layers.Conv2D(4, 3)
    c = layers.Dense(2, dtype="mixed_bfloat16")
    d = layers.Dense(2, dtype={"module": "keras", "class_name": "DTypePolicy", "config": {"name": "mixed_bfloat16"}})
    e = layers.MaxPooling2D(dtype=mixed_precision.DTypePolicy("mixed_bfloat16"))
    assert [l.compute_dtype for l in (a, b, c, d, e)] == ["bfloat16", "float32", "bfloat16", "bfloat16", "bfloat16"]
    assert all(l.dtype == l.variable_dtype == "float32" for l in (a, b, c, d, e))
    assert a.get_config()["dtype"] == "mixed_bfloat16" and e.get_config()["dtype"] == "mixed_bfloat16"
    assert "dtype" not in b.get_config()
    assert layers.Conv2D.from_config(a.get_config()).compute_dtype == "bfloat16"


def test_bfloat16_products_are_close_to_float32_but_not_the_same():
    kandle.utils.set_random_seed(3)
    f32 = cnn()
    bf16 = cnn("mixed_bfloat16")
    bf16.set_weights(f32.get_weights())
    x, _ = data()
    p32, p16 = f32.predict(x, verbose=0), bf16.predict(x, verbose=0)
    assert p16.dtype == np.float32 and all(w.dtype == np.float32 for w in bf16.get_weights())
    diff = np.abs(p16 - p32).max()
    # bfloat16 keeps 8 significant bits: differences of about 2^-9 of the values, never zero.
    assert 1e-6 < diff < 2e-2, diff
    np.testing.assert_allclose(p16.sum(axis=1), 1.0, rtol=1e-5)


def test_training_under_the_policy_learns_like_float32():
    x, y = data(256)
    xv, yv = data(128, seed=1)
    results = {}
    for policy in ("float32", "mixed_bfloat16"):
        mixed_precision.set_global_policy(policy)
        kandle.utils.set_random_seed(0)
        m = cnn()
        m.compile(optimizer=kandle.optimizers.Adam(3e-3), loss="categorical_crossentropy", metrics=["acc"])
        h = m.fit(x, y, epochs=6, batch_size=32, validation_data=(xv, yv), verbose=0)
        results[policy] = h.history
        assert all(isinstance(v, float) for v in h.history["loss"])
    f32, bf16 = results["float32"], results["mixed_bfloat16"]
    assert bf16["loss"][-1] < 0.8 * bf16["loss"][0], bf16["loss"]
    assert abs(bf16["val_acc"][-1] - f32["val_acc"][-1]) <= 0.1, (f32["val_acc"], bf16["val_acc"])
    assert bf16["loss"] != f32["loss"]  # the products did change precision


def test_the_policy_survives_saving_and_loading(tmp_path):
    mixed_precision.set_global_policy("mixed_bfloat16")
    m = cnn()
    mixed_precision.set_global_policy(None)
    x, _ = data(8)
    want = m.predict(x, verbose=0)
    for name in ("m.kandle", "m.keras"):
        m.save(tmp_path / name)
        back = kandle.models.load_model(tmp_path / name)
        assert [l.compute_dtype for l in back.layers] == ["bfloat16"] * len(m.layers), name
        np.testing.assert_array_equal(back.predict(x, verbose=0), want)
    with __import__("zipfile").ZipFile(tmp_path / "m.keras") as z:
        config = json.loads(z.read("config.json"))
    dtypes = [l["config"]["dtype"] for l in config["config"]["layers"] if l["class_name"] != "InputLayer"]
    assert all(d == {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "mixed_bfloat16"},
                     "registered_name": None} for d in dtypes), dtypes


def test_a_float32_model_stays_float32_when_loaded_under_the_mixed_policy(tmp_path):
    m = cnn()
    m.save(tmp_path / "f.kandle")
    mixed_precision.set_global_policy("mixed_bfloat16")
    back = kandle.models.load_model(tmp_path / "f.kandle")
    assert all(l.compute_dtype == "float32" for l in back.layers)
    x, _ = data(4)
    np.testing.assert_array_equal(back.predict(x, verbose=0), m.predict(x, verbose=0))


def test_the_kernel_is_named_and_a_cpu_without_bf16_units_is_told():
    name, native = kandle._kandle.bf16_kernel()
    assert name in ("AMX-BF16", "AVX512-BF16", "float32 GEMMs on bfloat16-rounded operands")
    assert native == (name != "float32 GEMMs on bfloat16-rounded operands")
    mixed_precision._SAID["kernel"] = False
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        mixed_precision.DTypePolicy("mixed_bfloat16")
        mixed_precision.DTypePolicy("mixed_bfloat16")
    said = [str(x.message) for x in w if "mixed_bfloat16 runs as" in str(x.message)]
    assert len(said) == (0 if native else 1)


def test_a_keras_mixed_bfloat16_file_loads_mixed_and_predicts_as_keras():
    """tests/golden/make_mixed.py: a model Keras 3 trained under mixed_bfloat16, its bf16 predictions
    and the same weights' float32 ones."""
    from pathlib import Path

    golden = Path(__file__).parent / "golden"
    g = np.load(golden / "mixed_bf16.npz")
    m = kandle.models.load_model(golden / "mixed_bf16.keras")
    assert [l.compute_dtype for l in m.layers] == ["bfloat16"] * 5
    p = m.predict(g["x"], verbose=0)
    # Keras also rounds each layer's output to bfloat16 (kandle keeps float32 between layers):
    # both sit within bfloat16's resolution of the float32 result, and of each other.
    keras_gap = np.abs(g["y"] - g["y32"]).max()
    assert 0 < keras_gap < 1e-2
    assert np.abs(p - g["y32"]).max() <= 2 * keras_gap
    assert np.abs(p - g["y"]).max() <= 2 * keras_gap
