"""Numeric arguments of the public API: negative, zero, float, huge and None values either behave as in
Keras (``fit(epochs=-1)`` runs no epoch) or raise a Keras-worded ``ValueError``/``TypeError`` naming
the argument; never a conversion error from the Rust boundary (``OverflowError``), an internal error,
or a crash.
"""

import numpy as np
import pytest

import kandle
from kandle.layers import (AveragePooling2D, BatchNormalization, Concatenate, Conv2D, Dense, Dropout, Flatten, Input,
                           MaxPooling2D, ZeroPadding2D)
from kandle.models import Sequential

BAD = {"negative": -1, "zero": 0, "float": 2.5, "huge": 10 ** 30, "none": None}


@pytest.fixture(scope="module")
def model():
    m = Sequential([Input((4,)), Dense(3, activation="softmax")])
    m.compile(optimizer="sgd", loss="categorical_crossentropy")
    return m


def data():
    return np.random.default_rng(0).random((8, 4), dtype=np.float32), np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2, 0, 1]]


def outcome(call):
    """'ok', or the exception class name; only ValueError and TypeError are acceptable failures."""
    try:
        call()
        return "ok"
    except (ValueError, TypeError) as e:
        assert "internal" not in str(e), e
        return type(e).__name__


@pytest.mark.parametrize("value", BAD.values(), ids=BAD.keys())
@pytest.mark.parametrize("argument", ["batch_size", "epochs", "initial_epoch", "validation_split"])
def test_fit_arguments(model, argument, value):
    x, y = data()
    # A huge `epochs` would train for ever, as in Keras: stop after the first epoch.
    stop = kandle.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: setattr(model, "stop_training", True))
    result = outcome(lambda: model.fit(x, y, verbose=0, callbacks=[stop], **{argument: value}))
    if argument == "epochs" and isinstance(value, int) and value <= 0:
        assert result == "ok"  # Keras runs no epoch
    if argument == "batch_size" and value == 10 ** 30:
        assert result == "ok"  # one batch of everything, as in Keras
    if argument == "initial_epoch" and value == 10 ** 30:
        assert result == "ok"  # past `epochs`: nothing to run
    if value is None and argument in ("epochs", "initial_epoch", "validation_split"):
        assert result == "TypeError"


def test_negative_epochs_run_no_epoch(model):
    x, y = data()
    before = model.get_weights()
    history = model.fit(x, y, epochs=-1, verbose=0)
    assert history.history == {} or all(v == [] for v in history.history.values())
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


@pytest.mark.parametrize("value", BAD.values(), ids=BAD.keys())
@pytest.mark.parametrize("method", ["evaluate", "predict"])
def test_evaluate_and_predict_batch_size(model, method, value):
    x, y = data()
    args = (x, y) if method == "evaluate" else (x,)
    result = outcome(lambda: getattr(model, method)(*args, batch_size=value, verbose=0))
    assert result == ("ok" if value in (None, 10 ** 30) else "ValueError")


LAYERS = {
    "Dense.units": lambda v: Dense(v),
    "Conv2D.filters": lambda v: Conv2D(v, 3),
    "Conv2D.kernel_size": lambda v: Conv2D(2, v),
    "Conv2D.strides": lambda v: Conv2D(2, 3, strides=v),
    "MaxPooling2D.pool_size": lambda v: MaxPooling2D(v),
    "AveragePooling2D.strides": lambda v: AveragePooling2D(2, strides=v),
    "Dropout.rate": lambda v: Dropout(v),
    "BatchNormalization.epsilon": lambda v: BatchNormalization(epsilon=v),
    "BatchNormalization.momentum": lambda v: BatchNormalization(momentum=v),
    "BatchNormalization.axis": lambda v: BatchNormalization(axis=v),
    "ZeroPadding2D.padding": lambda v: ZeroPadding2D(v),
    "Concatenate.axis": lambda v: Concatenate(axis=v),
    "Input.shape": lambda v: Input((v, 3)),
    "SGD.learning_rate": lambda v: kandle.optimizers.SGD(learning_rate=v),
}


@pytest.mark.parametrize("value", BAD.values(), ids=BAD.keys())
@pytest.mark.parametrize("argument", LAYERS, ids=LAYERS.keys())
def test_layer_and_optimizer_arguments(argument, value):
    """Construction, and building on an input, accept or refuse each value with a Python exception."""
    def build():
        made = LAYERS[argument](value)
        if isinstance(made, kandle.layers.Layer) and not isinstance(made, Concatenate):
            image = not isinstance(made, Dense)
            Sequential([Input((6, 6, 2) if image else (4,)), made])
    outcome(build)


def test_huge_layers_are_refused_before_anything_is_allocated():
    with pytest.raises(ValueError, match="too large"):
        Sequential([Input((1000,)), Dense(10 ** 9)])
    with pytest.raises(ValueError, match="too large"):
        Sequential([Input((8, 8, 1)), ZeroPadding2D(10 ** 5), Flatten()])
