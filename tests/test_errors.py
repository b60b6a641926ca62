"""Bad input gets a clear Python exception naming what was expected and found; the model stays usable."""

import os
import signal
import threading
import time

import numpy as np
import pytest
from conftest import small_cnn, small_data

from kandle.layers import Activation, Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from kandle.models import Sequential
from kandle.optimizers import SGD


@pytest.fixture
def model_and_data():
    x, y, labels = small_data()
    return small_cnn(), x, y


def still_predicts(model, x):
    out = model.predict(x[:4])
    assert out.shape == (4, 3) and np.isfinite(out).all()


@pytest.mark.parametrize("bad_shape,found", [
    ((4, 8, 8), "(None, 8, 8)"),          # rank
    ((4, 9, 8, 2), "(None, 9, 8, 2)"),    # size
    ((4, 8, 8, 3), "(None, 8, 8, 3)"),    # channels
])
def test_incompatible_input_names_layer_expected_and_found(model_and_data, bad_shape, found):
    model, x, y = model_and_data
    for call in (lambda a: model.predict(a), lambda a: model.fit(a, y[:4], verbose=0),
                 lambda a: model.evaluate(a, y[:4], verbose=0)):
        with pytest.raises(ValueError) as e:
            call(np.zeros(bad_shape))
        msg = str(e.value)
        assert 'layer "conv2d"' in msg and "(None, 8, 8, 2)" in msg and found in msg
    still_predicts(model, x)


def test_targets_must_match_the_output(model_and_data):
    model, x, y = model_and_data
    with pytest.raises(ValueError, match=r"\(None, 3\).*\(None, 5\)"):
        model.fit(x, np.zeros((len(x), 5)), verbose=0)
    with pytest.raises(ValueError, match="x sizes: 48, y sizes: 47"):
        model.fit(x, y[:47], verbose=0)
    with pytest.raises(ValueError, match="outside the valid range"):
        small_cnn(loss="sparse_categorical_crossentropy").fit(x, np.full(len(x), 7), verbose=0)
    still_predicts(model, x)


def test_fit_and_evaluate_before_compile_raise_runtime_error():
    model = Sequential([Dense(2, input_shape=(3,))])
    x, y = np.zeros((4, 3)), np.zeros((4, 2))
    for call in (lambda: model.fit(x, y), lambda: model.evaluate(x, y), lambda: model.train_on_batch(x, y)):
        with pytest.raises(RuntimeError, match="You must compile your model before training/testing"):
            call()
    assert model.predict(x).shape == (4, 2)


@pytest.mark.parametrize("kwargs,match", [
    (dict(optimizer="ftrl", loss="mse"), "optimizer identifier: 'ftrl'"),
    (dict(optimizer="sgd", loss="hinge"), "loss identifier: 'hinge'"),
    (dict(optimizer="sgd", loss="mse", metrics=["f1"]), "Unknown metric function: 'f1'"),
])
def test_unknown_names_at_compile(kwargs, match):
    model = Sequential([Dense(2, input_shape=(3,))])
    with pytest.raises(ValueError, match=match):
        model.compile(**kwargs)


@pytest.mark.parametrize("make,match", [
    (lambda: Dense(0), "units"),
    (lambda: Dense(-3), "units"),
    (lambda: Conv2D(0, 3), "filters"),
    (lambda: Conv2D(4, 0), "kernel_size"),
    (lambda: Conv2D(4, 3, padding="full"), "padding"),
    (lambda: Dropout(1.0), "rate"),
    (lambda: Dropout(-0.1), "rate"),
    (lambda: Activation("swishy"), "swishy"),
    (lambda: Dense(3, activation="relux"), "relux"),
    (lambda: MaxPooling2D(pool_size=(0, 2)), "pool_size"),
    (lambda: SGD(learning_rate=-1), "learning_rate"),
])
def test_invalid_arguments_fail_at_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_kernel_or_pool_larger_than_input_fails_when_added():
    model = Sequential([Conv2D(2, (3, 3), input_shape=(4, 4, 1))])
    with pytest.raises(ValueError, match=r'"conv2d_1".*\(5, 5\).*\(None, 2, 2, 2\)'):
        model.add(Conv2D(2, (5, 5)))
    with pytest.raises(ValueError, match=r"pool_size \(3, 3\).*\(None, 2, 2, 2\)"):
        model.add(MaxPooling2D((3, 3)))
    assert len(model.layers) == 1
    model.add(MaxPooling2D((2, 2), padding="same"))
    assert model.output_shape == (None, 1, 1, 2)


def test_non_positive_batch_size(model_and_data):
    model, x, y = model_and_data
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="batch_size"):
            model.fit(x, y, batch_size=bad, verbose=0)
        with pytest.raises(ValueError, match="batch_size"):
            model.predict(x, batch_size=bad)


def test_object_and_string_arrays_are_type_errors(model_and_data):
    model, x, y = model_and_data
    with pytest.raises(TypeError, match="dtype"):
        model.predict(np.array([["a"] * 4] * 4))
    with pytest.raises(TypeError, match="dtype"):
        model.fit(x.astype(object), y, verbose=0)
    still_predicts(model, x)


def test_set_weights_with_wrong_count_or_shapes(model_and_data):
    model, x, _ = model_and_data
    before = model.get_weights()
    with pytest.raises(ValueError, match="expecting 6 weights"):
        model.set_weights(before[:-1])
    bad = [w.copy() for w in before]
    bad[-1] = np.zeros(4)
    with pytest.raises(ValueError, match=r"\(3,\)"):
        model.set_weights(bad)
    with pytest.raises(ValueError, match=r"expecting 2 weights"):
        model.layers[0].set_weights([before[0]])
    with pytest.raises(ValueError, match=r"\(3, 3, 2, 4\)"):
        model.layers[0].set_weights([np.zeros((3, 3, 2, 5)), before[1]])
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)  # nothing was half-written


def test_nan_inputs_report_nan_without_crashing(model_and_data):
    model, x, y = model_and_data
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    h = model.fit(bad, y, batch_size=48, epochs=1, verbose=0)
    assert np.isnan(h.history["loss"][0])


def test_ctrl_c_during_fit_stops_within_a_batch_and_keeps_history():
    x, y, _ = small_data(n=2000)
    model = small_cnn()
    model.fit(x[:64], y[:64], epochs=1, verbose=0)
    epoch_times = []

    def interrupt_later():
        while len(epoch_times) < 2:
            time.sleep(0.01)
        time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)
        sent.append(time.perf_counter())

    from kandle.callbacks import LambdaCallback
    sent = []
    timer = threading.Thread(target=interrupt_later)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=16, epochs=1000, verbose=0,
                  callbacks=[LambdaCallback(on_epoch_end=lambda e, l: epoch_times.append(time.perf_counter()))])
    raised = time.perf_counter()
    timer.join()
    assert raised - sent[0] < 1.0  # a batch of 16 takes milliseconds
    assert len(model.history.history["loss"]) >= 2
    assert len(model.history.history["loss"]) == len(epoch_times)
    still_predicts(model, x)
