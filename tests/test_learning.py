"""kandle learns real data: a small CNN on scikit-learn's bundled digits (8x8 images, 10 classes)."""

import numpy as np
from sklearn.datasets import load_digits

from kandle.layers import Conv2D, Dense, Flatten, MaxPooling2D
from kandle.models import Sequential
from kandle.optimizers import Adam
from kandle.utils import set_random_seed, to_categorical


def test_small_cnn_reaches_90_percent_validation_accuracy_on_digits():
    set_random_seed(0)
    digits = load_digits()
    x = (digits.images / 16.0)[..., None]          # (1797, 8, 8, 1), float64 as sklearn gives it
    y = to_categorical(digits.target, 10)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    model = Sequential([
        Conv2D(16, (3, 3), activation="relu", padding="same", input_shape=(8, 8, 1)),
        MaxPooling2D((2, 2)),
        Conv2D(32, (3, 3), activation="relu"),
        Flatten(),
        Dense(64, activation="relu"),
        Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=Adam(learning_rate=0.003), loss="categorical_crossentropy", metrics=["acc"])
    history = model.fit(x, y, batch_size=32, epochs=8, validation_split=0.2, verbose=0)
    assert history.history["val_acc"][-1] >= 0.9
    predicted = model.predict(x[-300:]).argmax(axis=1)
    assert (predicted == y[-300:].argmax(axis=1)).mean() >= 0.9
