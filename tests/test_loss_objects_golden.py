"""Loss objects with Keras's options (`from_logits`, `label_smoothing`, `reduction`) against real Keras
(tests/golden/loss_objects.npz, written by tests/golden/make_golden.py): two epochs of SGD from the
same initial weights end within 1e-4 of Keras's weights and losses, the object called directly gives
Keras's value, and the loss survives save/load. ``KANDLE_GOLDEN_IMPL=keras`` checks Keras itself."""

import numpy as np
import pytest

from test_golden import K, assert_weights_close, case_names, load, make_model, spec_of, weights_of

FIXTURE = load("loss_objects.npz")
CASES = case_names(FIXTURE)


def _case(case):
    spec = spec_of(FIXTURE, case)
    model = make_model(spec["layers"], spec["input_shape"])
    model.set_weights(weights_of(FIXTURE, f"model_{spec['base']}"))
    x = FIXTURE[f"model_{spec['base']}__x"]
    return spec, model, x, FIXTURE[f"{case}__y"]


@pytest.mark.parametrize("case", CASES)
def test_fit_with_the_loss_object_matches_keras(case):
    spec, model, x, y = _case(case)
    model.compile(optimizer=K.optimizers.SGD(0.05), loss=K.losses.deserialize(spec["loss"]))
    history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(history.history["loss"], FIXTURE[f"{case}__loss"], rtol=1e-4, atol=1e-4)
    assert_weights_close(model.get_weights(), weights_of(FIXTURE, case), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", CASES)
def test_the_loss_object_called_directly_matches_keras(case):
    spec, _, _, y = _case(case)
    loss = K.losses.deserialize(spec["loss"])
    assert float(loss(y, FIXTURE[f"{case}__pred"])) == pytest.approx(float(FIXTURE[f"{case}__value"]), rel=1e-5)


@pytest.mark.skipif(K.__name__ != "kandle", reason="kandle's own file format")
@pytest.mark.parametrize("case", ["cce_logits_smoothing_sum", "bce_from_logits"])
def test_the_loss_options_survive_save_and_load(case, tmp_path):
    spec, model, x, y = _case(case)
    model.compile(optimizer="sgd", loss=K.losses.deserialize(spec["loss"]))
    model.save(tmp_path / "m.kandle")
    loaded = K.models.load_model(tmp_path / "m.kandle")
    assert loaded.loss.get_config() == model.loss.get_config()
    assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)


@pytest.mark.skipif(K.__name__ != "kandle", reason="kandle's errors")
@pytest.mark.parametrize("call, error, match", [
    (lambda: K.losses.SparseCategoricalCrossentropy(ignore_class=0), ValueError, "ignore_class"),
    (lambda: K.losses.CategoricalCrossentropy(label_smoothing=2.0), ValueError, "label_smoothing"),
    (lambda: K.losses.MeanSquaredError(reduction="none"), ValueError, "kandle does not implement the loss reduction"),
    (lambda: K.losses.CategoricalCrossentropy(axis=1), ValueError, "axis"),
    (lambda: K.models.Sequential([K.layers.Input((2,)), K.layers.Dense(1)]).compile(
        loss=lambda y_true, y_pred: 1.0), TypeError, "must compute its result from y_true and y_pred with kandle.ops"),
])
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
