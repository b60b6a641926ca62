"""Metric objects against real Keras (tests/golden/metrics.npz, written by tests/golden/make_golden.py):
each used on its own over three batches (its result after each), and a set of them inside compile
(evaluate, and two epochs of fit: History keys and values). ``KANDLE_GOLDEN_IMPL=keras`` checks Keras."""

import re

import numpy as np
import pytest

from test_golden import K, case_names, load, make_model, spec_of, weights_of

FIXTURE = load("metrics.npz")
CASES = [c for c in case_names(FIXTURE) if c != "compiled"]


@pytest.mark.parametrize("case", CASES)
def test_standalone_metric_matches_keras(case):
    spec = spec_of(FIXTURE, case)
    metric = getattr(K.metrics, spec["class_name"])(**spec["config"])
    if K.__name__ == "kandle":  # Keras's name without the counter a session adds (auc_3 -> auc)
        assert metric.name == re.sub(r"_\d+$", "", spec["log_name"])
    got = []
    for b in range(3):
        metric.update_state(FIXTURE[f"{case}__y{b}"], FIXTURE[f"{case}__p{b}"], sample_weight=FIXTURE.get(f"{case}__w{b}"))
        got.append(float(metric.result()))
    np.testing.assert_allclose(got, FIXTURE[f"{case}__results"], rtol=1e-5, atol=1e-6)
    metric.reset_state()
    metric.update_state(FIXTURE[f"{case}__y0"], FIXTURE[f"{case}__p0"], sample_weight=FIXTURE.get(f"{case}__w0"))
    assert float(metric.result()) == pytest.approx(FIXTURE[f"{case}__results"][0], rel=1e-5, abs=1e-6)


def _compiled_model():
    spec = spec_of(FIXTURE, "compiled")
    model_spec = spec_of(FIXTURE, "model_cnn")
    model = make_model(model_spec["layers"], model_spec["input_shape"])
    model.set_weights(weights_of(FIXTURE, "model_cnn"))
    metrics = [m if isinstance(m, str) else getattr(K.metrics, m["class_name"])(**m["config"]) for m in spec["metrics"]]
    model.compile(optimizer=K.optimizers.SGD(0.1), loss="categorical_crossentropy", metrics=metrics)
    return spec, model


def test_metric_objects_in_compile_match_keras():
    spec, model = _compiled_model()
    x, y = FIXTURE["model_cnn__x"], FIXTURE["model_cnn__y"]
    evaluated = model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    want = spec["evaluate"]
    aliases = {"mse": "mean_squared_error"}
    got = {aliases.get(k, k): v for k, v in evaluated.items()}
    want = {aliases.get(k, k): v for k, v in want.items()}
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
    history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history
    for key, values in spec["history"].items():
        np.testing.assert_allclose(history[key], values, rtol=1e-3, atol=1e-4, err_msg=key)


@pytest.mark.skipif(K.__name__ != "kandle", reason="kandle's file format and errors")
def test_metric_objects_survive_save_and_load(tmp_path):
    _, model = _compiled_model()
    x, y = FIXTURE["model_cnn__x"], FIXTURE["model_cnn__y"]
    model.save(tmp_path / "m.kandle")
    loaded = K.models.load_model(tmp_path / "m.kandle")
    assert loaded.evaluate(x, y, verbose=0, return_dict=True) == model.evaluate(x, y, verbose=0, return_dict=True)


@pytest.mark.skipif(K.__name__ != "kandle", reason="kandle's errors")
@pytest.mark.parametrize("call, error, match", [
    (lambda: K.metrics.AUC(curve="PRGAIN"), ValueError, "kandle does not implement AUC"),
    (lambda: K.metrics.AUC(multi_label=True), ValueError, "multi_label"),
    (lambda: K.metrics.AUC(summation_method="trapezoid"), ValueError, "Invalid AUC summation method"),
    (lambda: K.metrics.Precision(thresholds=[0.2, 0.5]), ValueError, "thresholds"),
    (lambda: K.metrics.Recall(top_k=0), ValueError, "top_k"),
    (lambda: K.metrics.Precision(class_id=5).update_state(np.eye(3), np.eye(3)), ValueError, "class_id=5 is out of range"),
    (lambda: K.metrics.SparseCategoricalAccuracy().update_state(np.zeros((2, 3)), np.zeros((2, 3))), ValueError,
     "does not fit"),
    (lambda: K.metrics.Precision().update_state(np.eye(3), np.eye(3), sample_weight=[1.0, 2.0]), ValueError,
     "sample_weight of shape"),
    (lambda: K.models.Sequential([K.layers.Input((2,)), K.layers.Dense(1)]).compile(
        loss="mse", metrics=[lambda y_true, y_pred: 0.5]), TypeError, "must compute its values with kandle.ops"),
])
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.skipif(K.__name__ != "kandle", reason="kandle's functions")
def test_mean_and_metric_functions():
    m = K.metrics.Mean()
    m.update_state([1.0, 2.0])
    m.update_state(6.0)
    assert float(m.result()) == pytest.approx(3.0)
    m.reset_state()
    m.update_state([1.0, 2.0, 6.0], sample_weight=[3.0, 1.0, 0.0])
    m.update_state(4.0, sample_weight=2.0)
    assert float(m.result()) == pytest.approx(np.average([1, 2, 6, 4], weights=[3, 1, 0, 2]))
    got = K.metrics.categorical_accuracy(np.eye(3)[[0, 1]], np.array([[0.8, 0.1, 0.1], [0.8, 0.1, 0.1]]))
    assert got.tolist() == [1.0, 0.0]
