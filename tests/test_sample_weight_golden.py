"""``sample_weight`` and ``class_weight`` weigh the loss as Keras 3 does (the sum of weighted losses
over the batch size; `metrics=` unweighted), against tests/golden/sample_weight.npz from real Keras."""

from pathlib import Path

import numpy as np
import pytest

import kandle

import _sample_weight_cases as cases

GOLDEN = Path(__file__).parent / "golden" / "sample_weight.npz"


@pytest.fixture(scope="module")
def both():
    with np.load(GOLDEN) as f:
        keras = {k: f[k] for k in f.files if k != "meta"}
    return keras, cases.run(kandle)


@pytest.mark.parametrize("key", ["sw_loss", "sw_acc", "sw_weights", "sw_eval", "cw_loss", "cw_val_loss", "cw_weights",
                                 "sparse_loss", "sparse_weights", "tob"])
def test_matches_keras(both, key):
    keras, mine = both
    np.testing.assert_allclose(mine[key], keras[key], rtol=1e-4, atol=1e-5)


def test_weighted_metrics_match_keras(both):
    keras, mine = both
    alias = {"mean_squared_error": "mse"}  # kandle logs 'mse' under the tutorial's (Keras 2) name
    assert [alias.get(k, k) for k in str(mine["wm_keys"]).split()] == str(keras["wm_keys"]).split()
    for key in ("wm_history", "wm_eval_sw", "wm_eval_none", "wm_cw_history"):
        np.testing.assert_allclose(mine[key], keras[key], rtol=1e-4, atol=1e-5, err_msg=key)
    # Weighted and unweighted accuracy differ under sample weights, and agree without them.
    keys = str(mine["wm_keys"]).split()
    acc, wacc = keys.index("acc"), keys.index("weighted_acc")
    assert mine["wm_eval_sw"][acc] != mine["wm_eval_sw"][wacc]
    assert mine["wm_eval_none"][acc] == mine["wm_eval_none"][wacc]


def test_weights_change_the_result(both):
    _, mine = both
    x, y, _, _, weights = cases.data()
    m = kandle.Sequential([kandle.Input((6,)), kandle.layers.Dense(5, activation="relu"),
                           kandle.layers.Dense(3, activation="softmax")])
    m.set_weights(weights)
    m.compile(optimizer=kandle.optimizers.SGD(0.1), loss="categorical_crossentropy", metrics=["acc"])
    h = m.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    assert not np.allclose(h.history["loss"], mine["sw_loss"], rtol=1e-3)


@pytest.mark.parametrize("kwargs, message", [
    ({"sample_weight": np.ones(5)}, r"one weight per sample, shape \(40,\) or \(40, 1\); received shape \(5,\)"),
    ({"class_weight": {0: 1.0, 2: 1.0}}, "keys from 0 to one less than the number of classes"),
    ({"class_weight": {0: 1.0, 1: 2.0}}, "the targets hold class 2"),
    ({"class_weight": {0: 1.0, 1: 2.0, 2: 1.0}, "sample_weight": np.ones(40)}, "at the same time"),
])
def test_bad_weights_are_refused(kwargs, message):
    x, y, _, _, weights = cases.data()
    m = kandle.Sequential([kandle.Input((6,)), kandle.layers.Dense(3, activation="softmax")])
    m.compile(optimizer="sgd", loss="categorical_crossentropy")
    with pytest.raises(ValueError, match=message):
        m.fit(x, y, verbose=0, **kwargs)


def test_feed_batches_carry_weights():
    x, y, _, sw, weights = cases.data()

    def fresh():
        m = kandle.Sequential([kandle.Input((6,)), kandle.layers.Dense(5, activation="relu"),
                               kandle.layers.Dense(3, activation="softmax")])
        m.set_weights(weights)
        m.compile(optimizer=kandle.optimizers.SGD(0.1), loss="categorical_crossentropy")
        return m

    batches = [(x[i:i + 8], y[i:i + 8], sw[i:i + 8]) for i in range(0, 40, 8)]
    for kwargs, feed_batches, feed_kwargs in (
            ({"sample_weight": sw}, batches, {}),
            ({"class_weight": {0: 1, 1: 2, 2: 3}}, [b[:2] for b in batches], {"class_weight": {0: 1, 1: 2, 2: 3}})):
        arrays, feed = fresh(), fresh()
        arrays.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, **kwargs)
        feed.fit(feed_batches, epochs=1, verbose=0, **feed_kwargs)
        for a, b in zip(arrays.get_weights(), feed.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert feed.evaluate(batches, verbose=0) == pytest.approx(arrays.evaluate(x, y, sample_weight=sw, verbose=0))
    with pytest.raises(ValueError, match="cannot `class_weight` and `sample_weight` at the same time"):
        fresh().fit(batches, epochs=1, verbose=0, class_weight={0: 1, 1: 2, 2: 3})


def test_weighted_metrics_are_saved_and_exported(tmp_path):
    import json
    import zipfile

    x, y, _, sw, weights = cases.data()
    m = kandle.Sequential([kandle.Input((6,)), kandle.layers.Dense(5, activation="relu"),
                           kandle.layers.Dense(3, activation="softmax")])
    m.set_weights(weights)
    m.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["acc"],
              weighted_metrics=["acc", kandle.metrics.Precision(name="prec")])
    assert m.metrics_names == ["loss", "acc", "weighted_acc", "prec"]
    want = m.evaluate(x, y, sample_weight=sw, verbose=0, return_dict=True)
    m.save(tmp_path / "m.kandle")
    loaded = kandle.models.load_model(tmp_path / "m.kandle")
    assert loaded.evaluate(x, y, sample_weight=sw, verbose=0, return_dict=True) == want
    m.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as zf:
        compile_config = json.loads(zf.read("config.json"))["compile_config"]
    assert compile_config["metrics"] == ["acc"]
    assert compile_config["weighted_metrics"][0] == "acc" and compile_config["weighted_metrics"][1]["class_name"] == "Precision"
    back = kandle.models.load_model(tmp_path / "m.keras")
    assert back.metrics_names == ["loss", "acc", "weighted_acc", "prec"]
    with pytest.raises(ValueError, match="Python metrics in `weighted_metrics`"):
        m.compile(optimizer="sgd", loss="mse", weighted_metrics=[lambda t, p: kandle.ops.mean(p)])
