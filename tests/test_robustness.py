"""Robustness: random layer stacks and arguments never crash the interpreter (hypothesis), Ctrl-C in a
real child process leaves a usable model and a complete CSV log, and NaN losses stop TerminateOnNaN."""

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kandle.callbacks import TerminateOnNaN
from kandle.layers import Activation, Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D
from kandle.models import Sequential, load_model

ACTIVATIONS = ["relu", "softmax", "sigmoid", "tanh", "linear", "elu", "selu", "softplus", None]
CASES = {"tried": 0}


def _conv_layer(draw):
    return Conv2D(draw(st.integers(1, 4)), draw(st.sampled_from([1, 2, 3, (2, 3), (3, 1)])),
                  strides=draw(st.sampled_from([1, 2, (2, 1)])), padding=draw(st.sampled_from(["valid", "same"])),
                  activation=draw(st.sampled_from(ACTIVATIONS)), use_bias=draw(st.booleans()))


@st.composite
def stacks(draw):
    """A random Sequential over (h, w, c) images: conv/pool/dropout/activation blocks, then a dense head."""
    shape = (draw(st.integers(1, 9)), draw(st.integers(1, 9)), draw(st.integers(1, 3)))
    layers = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["conv", "pool", "dropout", "activation"]))
        if kind == "conv":
            layers.append(_conv_layer(draw))
        elif kind == "pool":
            layers.append(MaxPooling2D(draw(st.sampled_from([1, 2, 3, (2, 1)])),
                                       padding=draw(st.sampled_from(["valid", "same"]))))
        elif kind == "dropout":
            layers.append(Dropout(draw(st.floats(0.0, 0.9))))
        else:
            layers.append(Activation(draw(st.sampled_from(ACTIVATIONS[:-1]))))
    layers.append(Flatten())
    layers.append(Dense(draw(st.integers(1, 5)), activation=draw(st.sampled_from(ACTIVATIONS))))
    return shape, layers


def build(shape, layers):
    """The model, or the ValueError Keras would raise for a window larger than its input."""
    model = Sequential([Input(shape)])
    for layer in layers:
        model.add(layer)
    return model


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stacks(), st.integers(1, 5), st.sampled_from([np.float32, np.float64, np.uint8, np.int16]))
def test_random_valid_stacks_predict_finite_outputs_of_the_announced_shape(stack, n, dtype):
    shape, layers = stack
    CASES["tried"] += 1
    try:
        model = build(shape, layers)
    except ValueError as e:  # a window larger than its input: refused when added, as Keras does
        assert "larger than its input" in str(e)
        return
    x = (np.random.default_rng(0).random((n, *shape)) * 4).astype(dtype)
    out = model.predict(x, batch_size=2)
    assert out.shape == (n, *model.output_shape[1:]) and out.dtype == np.float32
    assert np.isfinite(out).all()
    model.compile("sgd", "mse")
    loss = model.train_on_batch(x, np.zeros(out.shape))
    assert np.isfinite(loss)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.kandle")
        model.save(path)
        np.testing.assert_array_equal(load_model(path).predict(x, batch_size=2), model.predict(x, batch_size=2))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=0, max_size=5), st.sampled_from(["f4", "U3", "O", "i8", "c8"]))
def test_random_invalid_inputs_raise_value_or_type_errors(bad_shape, dtype):
    CASES["tried"] += 1
    model = Sequential([Conv2D(2, 3, input_shape=(5, 5, 2)), Flatten(), Dense(3)])
    x = np.zeros(bad_shape, dtype=dtype) if dtype != "O" else np.empty(bad_shape, dtype=object)
    valid = list(bad_shape[1:]) == [5, 5, 2] and dtype in ("f4", "i8")
    if valid:
        assert model.predict(x).shape == (bad_shape[0], 3)
    else:
        with pytest.raises((ValueError, TypeError)):
            model.predict(x)


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(["Dense", "Conv2D", "Dropout", "MaxPooling2D"]),
       st.one_of(st.integers(-3, 3), st.floats(-2, 2), st.text(max_size=3), st.none(), st.tuples(st.integers(-1, 3))))
def test_random_arguments_are_accepted_or_refused_with_value_or_type_error(cls, value):
    CASES["tried"] += 1
    import kandle.layers as L

    try:
        {"Dense": lambda v: L.Dense(v), "Conv2D": lambda v: L.Conv2D(2, v), "Dropout": lambda v: L.Dropout(v),
         "MaxPooling2D": lambda v: L.MaxPooling2D(v)}[cls](value)
    except (ValueError, TypeError):
        pass


def test_report_cases_tried():
    print(f"\nhypothesis cases tried in this module: {CASES['tried']}")
    assert CASES["tried"] >= 100


CHILD = textwrap.dedent("""
    import sys, numpy as np
    from kandle.models import Sequential
    from kandle.layers import Dense
    from kandle.callbacks import CSVLogger, LambdaCallback
    log = sys.argv[1]
    model = Sequential([Dense(64, activation="relu", input_shape=(256,)), Dense(4, activation="softmax")])
    model.compile("sgd", "categorical_crossentropy", metrics=["acc"])
    x = np.random.rand(20000, 256); y = np.eye(4)[np.random.randint(0, 4, 20000)]
    def announce(epoch, logs):
        if epoch == 1:
            print("EPOCH1", flush=True)
    try:
        model.fit(x, y, batch_size=32, epochs=1000, verbose=0,
                  callbacks=[CSVLogger(log), LambdaCallback(on_epoch_end=announce)])
    except KeyboardInterrupt:
        print("INTERRUPTED", len(model.history.history["loss"]), model.predict(x[:3]).shape, flush=True)
""")


def test_sigint_during_fit_in_a_child_process(tmp_path):
    log = tmp_path / "log.csv"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(log)], stdout=subprocess.PIPE, text=True)
    for line in child.stdout:
        if line.startswith("EPOCH1"):
            break
    child.send_signal(signal.SIGINT)
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 0
    status = out.strip().split(" ", 2)
    assert status[0] == "INTERRUPTED" and status[2] == "(3, 4)"
    epochs = int(status[1])
    rows = log.read_text().strip().splitlines()
    assert rows[0].split(",")[0] == "epoch" and len(rows) == 1 + epochs  # complete: header + finished epochs


def test_terminate_on_nan_stops_training():
    model = Sequential([Dense(2, input_shape=(3,))])
    model.compile("sgd", "mse")
    x = np.ones((64, 3))
    x[5] = np.nan
    h = model.fit(x, np.zeros((64, 2)), batch_size=8, epochs=5, verbose=0, callbacks=[TerminateOnNaN()])
    assert len(h.history["loss"]) == 1 and np.isnan(h.history["loss"][0])


def test_a_second_concurrent_fit_is_refused_while_predict_stays_safe():
    model = Sequential([Dense(256, activation="relu", input_shape=(256,)), Dense(4, activation="softmax")])
    model.compile("sgd", "categorical_crossentropy")
    x, y = np.random.rand(4000, 256), np.eye(4)[np.random.randint(0, 4, 4000)]
    started, errors, predictions = threading.Event(), [], []
    from kandle.callbacks import LambdaCallback

    def train():
        model.fit(x, y, batch_size=32, epochs=20, verbose=0,
                  callbacks=[LambdaCallback(on_train_batch_end=lambda b, l: started.set())])

    t = threading.Thread(target=train)
    t.start()
    started.wait(10)
    try:
        model.fit(x, y, epochs=1, verbose=0)
    except RuntimeError as e:
        errors.append(str(e))
    predictions.append(model.predict(x[:8]))  # between training steps: consistent weights
    model.stop_training = True
    t.join()
    assert errors and "already being trained" in errors[0]
    assert predictions[0].shape == (8, 4) and np.isfinite(predictions[0]).all()
