"""Issue 12's optimizers against real Keras (tests/golden/optimizers.npz, written by
tests/golden/make_golden.py): AdamW, Nadam, Adadelta, Adamax, Lion; `weight_decay`, `clipnorm`,
`clipvalue`, `global_clipnorm`; learning-rate schedules as `learning_rate=`, and the schedules' values
step by step. Two epochs of fit from the same initial weights must end within 1e-4 of Keras's weights
and losses. ``KANDLE_GOLDEN_IMPL=keras`` runs the same checks on Keras itself.
"""

import json

import numpy as np
import pytest

from test_golden import K, assert_weights_close, case_names, load, make_model, spec_of, weights_of

OPTIMIZERS = load("optimizers.npz")
CASES = [c for c in case_names(OPTIMIZERS) if not c.startswith("schedule_")]
SCHEDULES = sorted(k[len("schedule_"):-len("__spec")] for k in OPTIMIZERS if k.startswith("schedule_") and k.endswith("__spec"))


def _optimizer(spec):
    opt = spec["optimizer"]
    config = dict(opt["config"])
    if isinstance(config["learning_rate"], dict):
        config["learning_rate"] = K.optimizers.schedules.deserialize(config["learning_rate"])
    return getattr(K.optimizers, opt["class_name"])(**config)


@pytest.mark.parametrize("case", CASES)
def test_fit_matches_keras(case):
    spec = spec_of(OPTIMIZERS, case)
    m = f"model_{spec['model']}"
    model_spec = spec_of(OPTIMIZERS, m)
    model = make_model(model_spec["layers"], model_spec["input_shape"])
    model.set_weights(weights_of(OPTIMIZERS, m))
    optimizer = _optimizer(spec)
    model.compile(optimizer=optimizer, loss=spec["loss"])
    history = model.fit(OPTIMIZERS[f"{m}__x"], OPTIMIZERS[f"{m}__y"], batch_size=spec["batch_size"],
                        epochs=spec["epochs"], shuffle=spec["shuffle"], verbose=0)
    np.testing.assert_allclose(history.history["loss"], OPTIMIZERS[f"{case}__loss"], rtol=1e-4, atol=1e-4)
    assert_weights_close(model.get_weights(), weights_of(OPTIMIZERS, case), rtol=1e-4, atol=1e-5)
    assert int(np.asarray(optimizer.iterations)) == spec["iterations"]


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedule_values_match_keras(name):
    schedule = K.optimizers.schedules.deserialize(json.loads(str(OPTIMIZERS[f"schedule_{name}__spec"][()])))
    got = [float(schedule(step)) for step in range(12)]
    np.testing.assert_allclose(got, OPTIMIZERS[f"schedule_{name}__values"], rtol=1e-6, atol=1e-9)


def test_the_optimizers_exist_with_keras_defaults():
    defaults = {"AdamW": {"learning_rate": 0.001, "weight_decay": 0.004, "beta_1": 0.9, "beta_2": 0.999},
                "Nadam": {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999},
                "Adadelta": {"learning_rate": 0.001, "rho": 0.95},
                "Adamax": {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999},
                "Lion": {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.99}}
    for name, want in defaults.items():
        config = getattr(K.optimizers, name)().get_config()
        for key, value in want.items():
            assert np.isclose(config[key], value), (name, key)
