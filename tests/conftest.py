"""Shared fixtures: small models and data built the Keras way."""

import numpy as np
import pytest

from kandle import backend
from kandle.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from kandle.models import Sequential
from kandle.utils import set_random_seed, to_categorical


@pytest.fixture(autouse=True)
def _fresh_session():
    backend.clear_session()
    yield


def small_cnn(classes=3, input_shape=(8, 8, 2), optimizer="sgd", loss="categorical_crossentropy",
              metrics=("acc",)):
    model = Sequential([
        Conv2D(4, (3, 3), activation="relu", input_shape=input_shape),
        MaxPooling2D((2, 2)),
        Flatten(),
        Dense(8, activation="relu"),
        Dropout(0.25),
        Dense(classes, activation="softmax"),
    ])
    model.compile(optimizer=optimizer, loss=loss, metrics=list(metrics))
    return model


def small_data(n=48, classes=3, input_shape=(8, 8, 2), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, *input_shape)).astype(np.float32)
    labels = rng.integers(0, classes, n)
    return x, to_categorical(labels, classes), labels


@pytest.fixture
def cnn():
    set_random_seed(1)
    return small_cnn()


@pytest.fixture
def data():
    return small_data()


def pytest_terminal_summary(terminalreporter):
    """Reports how many property-based cases the robustness tests tried (hypothesis)."""
    import sys

    module = sys.modules.get("test_robustness")
    if module is not None and module.CASES["tried"]:
        terminalreporter.write_line(f"hypothesis: {module.CASES['tried']} random cases tried, no crash")
