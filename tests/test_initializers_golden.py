"""Keras 3's initializers, against real Keras (tests/golden/initializers.npz): kandle draws from its own
generators, so the random ones are compared by the statistics of a (200, 150) draw (mean, standard
deviation, bounds), the deterministic ones value for value, Orthogonal by its Gram matrix; configs as
Keras's; seeded ones repeat their values; layers take them by object, name and config."""

import json

import numpy as np
import pytest

from test_golden import K, case_names, load, spec_of

FIXTURE = load("initializers.npz")
CASES = case_names(FIXTURE)
SHAPE = (200, 150)


@pytest.mark.parametrize("case", CASES)
def test_initializer_matches_keras(case):
    spec = spec_of(FIXTURE, case)
    init = getattr(K.initializers, spec["class_name"])(**spec["config"])
    values = np.asarray(init(shape=SHAPE), dtype=np.float64)
    assert values.shape == SHAPE
    mean, std, lo, hi = FIXTURE[f"{case}__stats"]
    if f"{case}__values" in FIXTURE:
        np.testing.assert_array_equal(values, FIXTURE[f"{case}__values"])
        return
    if f"{case}__gram" in FIXTURE:
        np.testing.assert_allclose(values.T @ values, FIXTURE[f"{case}__gram"], atol=1e-4)
        return
    # 30,000 draws: the mean within 4 standard errors, the spread within 3%, the bounds as Keras's.
    assert abs(values.mean() - mean) < 4 * std / np.sqrt(values.size) + 1e-7
    assert values.std() == pytest.approx(std, rel=0.03)
    span = hi - lo
    untruncated = spec["class_name"] == "RandomNormal" or spec["config"].get("distribution") == "untruncated_normal"
    if not untruncated:  # bounded draws: the same bounds (an untruncated normal's extremes are random)
        assert values.min() >= lo - 0.02 * span and values.max() <= hi + 0.02 * span
    if spec["class_name"] in ("RandomUniform", "GlorotUniform", "HeUniform", "LecunUniform"):
        assert values.min() == pytest.approx(lo, abs=0.01 * span) and values.max() == pytest.approx(hi, abs=0.01 * span)
    if K.__name__ == "kandle":
        assert init.get_config() == spec["keras_config"]


@pytest.mark.skipif(K.__name__ != "kandle", reason="kandle's seeding")
def test_seeded_initializers_repeat_and_layers_take_them():
    a = K.initializers.GlorotNormal(seed=42)(shape=(2, 2))
    assert a.dtype == np.float32 and np.array_equal(a, K.initializers.GlorotNormal(seed=42)(shape=(2, 2)))
    assert not np.array_equal(K.initializers.GlorotNormal()(shape=(4, 4)), K.initializers.GlorotNormal()(shape=(4, 4)))
    for init in (K.initializers.TruncatedNormal(stddev=0.1, seed=3), "truncated_normal", "orthogonal",
                 {"class_name": "VarianceScaling", "config": {"scale": 2.0, "mode": "fan_avg", "seed": 1}}):
        layer = K.layers.Dense(4, kernel_initializer=init)
        model = K.models.Sequential([K.layers.Input((3,)), layer])
        assert model.get_weights()[0].shape == (3, 4)
    seeded = K.models.Sequential([K.layers.Input((3,)), K.layers.Dense(4, kernel_initializer=K.initializers.HeUniform(seed=7))])
    assert np.array_equal(seeded.get_weights()[0], K.initializers.HeUniform(seed=7)(shape=(3, 4)))


@pytest.mark.skipif(K.__name__ != "kandle", reason="kandle's errors")
@pytest.mark.parametrize("call, match", [
    (lambda: K.initializers.VarianceScaling(mode="fan_sideways"), "mode"),
    (lambda: K.initializers.VarianceScaling(scale=-1.0), "scale"),
    (lambda: K.initializers.RandomNormal(stddev=-1.0), "stddev"),
    (lambda: K.initializers.Identity()(shape=(2, 2, 2)), "2D"),
    (lambda: K.initializers.Orthogonal()(shape=(5,)), "two-dimensional"),
    (lambda: K.initializers.get("xavier_magic"), "Could not interpret initializer"),
])
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
