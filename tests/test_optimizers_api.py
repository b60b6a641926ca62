"""The optimizers' Python side: schedules as `learning_rate=` (read back at the step count, not
settable, saved and restored with the model), save/load of the new optimizers' state, `get`/configs,
and Keras's errors."""

import numpy as np
import pytest

from kandle import optimizers
from kandle.layers import Dense, Input
from kandle.models import Sequential, load_model
from kandle.optimizers import schedules
from kandle.utils import set_random_seed

RNG = np.random.default_rng(4)
X = RNG.random((40, 6)).astype("float32")
Y = RNG.random((40, 2)).astype("float32")


def _model(optimizer):
    set_random_seed(1)
    model = Sequential([Input((6,)), Dense(5, activation="tanh"), Dense(2)])
    model.compile(optimizer=optimizer, loss="mse")
    return model


@pytest.mark.parametrize("make", [
    lambda: optimizers.AdamW(learning_rate=schedules.CosineDecay(0.05, 20, warmup_target=0.1, warmup_steps=3),
                             clipnorm=0.5),
    lambda: optimizers.Nadam(0.01, global_clipnorm=0.3),
    lambda: optimizers.Adadelta(1.0, weight_decay=0.01),
    lambda: optimizers.Adamax(0.02, clipvalue=0.05),
    lambda: optimizers.Lion(learning_rate=schedules.PiecewiseConstantDecay([4], [0.01, 0.001])),
], ids=["adamw", "nadam", "adadelta", "adamax", "lion"])
def test_save_load_resumes_the_new_optimizers_exactly(tmp_path, make):
    model = _model(make())
    model.fit(X, Y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    model.save(tmp_path / "m.kandle")
    loaded = load_model(tmp_path / "m.kandle")
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    a = model.fit(X, Y, batch_size=8, epochs=2, shuffle=False, verbose=0).history["loss"]
    b = loaded.fit(X, Y, batch_size=8, epochs=2, shuffle=False, verbose=0).history["loss"]
    assert a == b
    for p, q in zip(model.get_weights(), loaded.get_weights()):
        assert np.array_equal(p, q)


def test_a_scheduled_learning_rate_is_read_at_the_step_count_and_not_settable():
    schedule = schedules.ExponentialDecay(0.1, decay_steps=5, decay_rate=0.5)
    opt = optimizers.SGD(learning_rate=schedule)
    assert opt.learning_rate == pytest.approx(0.1)
    model = _model(opt)
    model.fit(X, Y, batch_size=8, epochs=1, verbose=0)  # 5 steps
    assert opt.iterations == 5 and opt.learning_rate == pytest.approx(schedule(5)) == pytest.approx(0.05)
    with pytest.raises(TypeError, match="not settable"):
        opt.learning_rate = 0.3
    config = opt.get_config()
    assert config["learning_rate"]["class_name"] == "ExponentialDecay"
    again = optimizers.SGD.from_config(config)
    assert again.get_config() == config


def test_schedules_are_keras_objects():
    s = schedules.PiecewiseConstantDecay([2, 5], [0.1, 0.03, 0.01])
    assert [s(i) for i in (0, 2, 3, 6)] == pytest.approx([0.1, 0.1, 0.03, 0.01])
    assert s.get_config()["name"] == "PiecewiseConstant"
    assert schedules.deserialize(schedules.serialize(s)).get_config() == s.get_config()
    assert schedules.ExponentialDecay(0.1, 10, 0.5).initial_learning_rate == 0.1


@pytest.mark.parametrize("call, error, match", [
    (lambda: optimizers.SGD(clipnorm=1.0, clipvalue=1.0), ValueError, "Only one of"),
    (lambda: optimizers.Adam(global_clipnorm=-1.0), ValueError, "non-negative"),
    (lambda: optimizers.Lion(beta_1=0.0), ValueError, "beta_1"),
    (lambda: optimizers.AdamW(weight_decay=None), ValueError, "weight_decay"),
    (lambda: optimizers.SGD(decay=0.1), ValueError, "kandle does not implement the Keras 2 argument `decay`"),
    (lambda: optimizers.SGD(learning_rate=lambda: 0.1), ValueError, "callable learning_rate"),
    (lambda: schedules.ExponentialDecay(0.1, decay_steps=0, decay_rate=0.5), ValueError, "decay_steps"),
    (lambda: schedules.PiecewiseConstantDecay([1, 2], [0.1]), ValueError, "1 less"),
    (lambda: schedules.deserialize({"class_name": "CosineDecayRestarts", "config": {}}), ValueError,
     "kandle does not implement"),
    (lambda: type("Mine", (schedules.LearningRateSchedule,), {})(), NotImplementedError, "custom LearningRateSchedule"),
    (lambda: optimizers.get("ftrl"), ValueError, "Could not interpret optimizer identifier"),
])
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_get_by_name():
    for name in ("adamw", "nadam", "adadelta", "adamax", "lion"):
        assert optimizers.get(name).get_config()["name"].lower() == name
