"""The kandle models behind the .keras export golden files: built, compiled and trained the same
way by ``tests/golden/make_keras_export.py`` (which has real Keras open what kandle wrote) and by
``tests/test_keras_export.py``."""

import numpy as np


def data(n=24, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 8, 8, 3)).astype("float32")
    y = np.eye(4, dtype="float32")[rng.integers(0, 4, n)]
    return x, y


def sequential(kandle):
    L = kandle.layers
    return kandle.models.Sequential([
        L.Input((8, 8, 3)), L.Conv2D(6, (3, 3), padding="same", activation="relu"), L.BatchNormalization(),
        L.MaxPooling2D((2, 2)), L.Conv2D(8, (2, 2), strides=(2, 2)), L.Activation("tanh"), L.Flatten(),
        L.Dense(10, activation="relu"), L.Dense(4, activation="softmax")], name="seq")


def functional(kandle):
    L = kandle.layers
    inp = L.Input((8, 8, 3))
    x = L.ZeroPadding2D((1, 1))(inp)
    x = L.Conv2D(4, (3, 3), name="conv_a")(x)
    x = L.BatchNormalization(axis=3, name="bn_a")(x)
    x = L.Activation("relu")(x)
    shortcut = L.Conv2D(4, (1, 1), name="conv_s")(inp)
    x = L.Add()([x, shortcut])
    x = L.AveragePooling2D((2, 2))(x)
    x = L.Flatten()(x)
    out = L.Dense(4, activation="softmax", name="fc")(x)
    return kandle.models.Model(inp, out, name="fun")


def build_all(kandle):
    """{name: trained model}: Adam with string loss and metric; SGD with momentum, a loss object and a
    metric object."""
    x, y = data()
    kandle.backend.clear_session()  # the automatic layer names the golden files hold
    kandle.utils.set_random_seed(5)
    seq = sequential(kandle)
    seq.compile(optimizer=kandle.optimizers.Adam(0.01), loss="categorical_crossentropy", metrics=["acc"])
    seq.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    fun = functional(kandle)
    fun.compile(optimizer=kandle.optimizers.SGD(0.05, momentum=0.9),
                loss=kandle.losses.CategoricalCrossentropy(label_smoothing=0.1),
                metrics=[kandle.metrics.CategoricalAccuracy()])
    fun.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    return {"seq": seq, "fun": fun}
