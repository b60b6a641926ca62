"""Custom layers, subclassed models and ops in a functional model, written once against the Keras 3
API and run by real Keras (tests/golden/make_custom_layers.py writes the golden file) and by kandle
(tests/test_custom_layers_golden.py). Each case starts from the same seeded weights and data, so the
two libraries must agree on the forward pass, the gradients (the weights after two epochs of SGD) and
the losses.
"""

import numpy as np


def _cases(lib):
    layers, ops = lib.layers, lib.ops

    class Antirectifier(layers.Layer):
        """keras.io's antirectifier recipe."""

        def __init__(self, initializer="he_normal", **kwargs):
            super().__init__(**kwargs)
            self.initializer = lib.initializers.get(initializer)

        def build(self, input_shape):
            output_dim = input_shape[-1]
            self.kernel = self.add_weight(shape=(output_dim * 2, output_dim), initializer=self.initializer,
                                          name="kernel", trainable=True)

        def call(self, inputs):
            inputs -= ops.mean(inputs, axis=-1, keepdims=True)
            pos = ops.relu(inputs)
            neg = ops.relu(-inputs)
            concatenated = ops.concatenate([pos, neg], axis=-1)
            return ops.matmul(concatenated, self.kernel)

    class Linear(layers.Layer):
        """The guide's Linear layer: a Dense written with ops.matmul and a bias."""

        def __init__(self, units=32, **kwargs):
            super().__init__(**kwargs)
            self.units = units

        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="random_normal", trainable=True,
                                     name="w")
            self.b = self.add_weight(shape=(self.units,), initializer="zeros", trainable=True, name="b")

        def call(self, inputs):
            return ops.matmul(inputs, self.w) + self.b

    class MLPBlock(layers.Layer):
        """Nested custom layers (the guide's MLPBlock), a training-dependent branch and a frozen
        weight."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.linear_1 = Linear(12)
            self.linear_2 = Linear(6)

        def build(self, input_shape):
            self.scale = self.add_weight(shape=(6,), initializer="ones", trainable=False, name="scale")

        def call(self, inputs, training=None):
            x = ops.gelu(self.linear_1(inputs))
            x = self.linear_2(x) * self.scale
            if training:
                x = x * 0.9
            return ops.tanh(x)

    class Gram(layers.Layer):
        """Custom conv and pooling with ops on images: conv, a max pool, an einsum."""

        def build(self, input_shape):
            self.k = self.add_weight(shape=(3, 3, input_shape[-1], 4), initializer="glorot_uniform", name="k")

        def call(self, x):
            y = ops.conv(x, self.k, strides=1, padding="same")
            y = ops.max_pool(ops.sigmoid(y), pool_size=2, padding="valid")
            g = ops.einsum("bhwc,bhwd->bcd", y, y) / 16.0
            return ops.reshape(g, (-1, 16))

    class MLP(lib.Model):
        """A subclassed model: built-in and custom layers with ops between them."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = layers.Dense(10)
            self.block = MLPBlock()
            self.head = layers.Dense(3, activation="softmax")

        def call(self, inputs):
            x = ops.relu(self.dense(inputs))
            x = ops.concatenate([x, self.block(x) * 2.0], axis=-1)
            return self.head(x)

    class MLPWithTraining(lib.Model):
        """A subclassed model that passes `training` on: the block branches on it in fit."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = layers.Dense(10)
            self.block = MLPBlock()
            self.head = layers.Dense(3, activation="softmax")

        def call(self, inputs, training=None):
            return self.head(self.block(ops.relu(self.dense(inputs)), training=training))

    def clipped_xent(y_true, y_pred):
        """A loss function written with ops (per-sample values, which Keras averages)."""
        p = ops.clip(y_pred, 1e-6, 1.0)
        return -ops.sum(y_true * ops.log(p), axis=-1) + 0.1 * ops.mean(ops.square(y_pred), axis=-1)

    class Huber(lib.losses.Loss):
        """A Loss subclass with its own option and a where()."""

        def __init__(self, delta=0.5, **kwargs):
            super().__init__(**kwargs)
            self.delta = delta

        def call(self, y_true, y_pred):
            e = ops.abs(y_true - y_pred)
            return ops.where(e < self.delta, 0.5 * e * e, self.delta * (e - 0.5 * self.delta))

    class CategoricalTruePositives(lib.metrics.Metric):
        """The guide's stateful metric (one-hot targets here)."""

        def __init__(self, name="categorical_true_positives", **kwargs):
            super().__init__(name=name, **kwargs)
            self.true_positives = self.add_variable(shape=(), name="ctp", initializer="zeros")
            # zeros: Keras keeps a non-zero initializer only until the first reset (kandle resets from the start)
            self.seen = self.add_variable(shape=(3,), name="seen", initializer="zeros")

        def update_state(self, y_true, y_pred, sample_weight=None):
            hits = ops.cast(ops.argmax(y_true, axis=1) == ops.argmax(y_pred, axis=1), "float32")
            self.true_positives.assign_add(ops.sum(hits))
            self.seen.assign_add(ops.sum(y_true, axis=0))

        def result(self):
            return self.true_positives / ops.sum(self.seen) + ops.max(self.seen) * 0.001

    def mean_top(y_true, y_pred):
        """A metric function: its per-sample values averaged over the epoch."""
        return ops.max(y_pred, axis=-1) - ops.sum(y_true * y_pred, axis=-1)

    def loss_function():
        inp = lib.Input(shape=(8,))
        out = layers.Dense(3, activation="softmax")(Linear(6)(inp))
        return lib.Model(inp, out), (8,), clipped_xent, [CategoricalTruePositives(), mean_top]

    def loss_subclass():
        return lib.Sequential([lib.Input(shape=(8,)), layers.Dense(6, activation="tanh"), layers.Dense(3)]), (8,), Huber()

    def block_functional():
        inp = lib.Input(shape=(8,))
        out = layers.Dense(3, activation="softmax")(MLPBlock()(layers.Dense(10)(inp)))
        return lib.Model(inp, out), (8,)

    def antirectifier():
        return lib.Sequential([lib.Input(shape=(8,)), layers.Dense(16), Antirectifier(), layers.Dense(3),
                               layers.Activation("softmax")]), (8,)

    def linear_functional():
        inp = lib.Input(shape=(8,))
        h = Linear(10)(inp)
        h = ops.sqrt(ops.square(h) + 1.0) - ops.abs(h) * 0.5 + ops.maximum(h, 0.1)
        h = ops.where(h > 1.0, h, ops.exp(h - 1.0))
        h = ops.reshape(ops.transpose(ops.reshape(h, (-1, 2, 5)), (0, 2, 1)), (-1, 10))
        out = layers.Dense(3, activation="softmax")(h)
        return lib.Model(inp, out), (8,)

    def subclassed():
        return MLP(), (8,)

    def subclassed_training():
        return MLPWithTraining(), (8,)

    def gram_cnn():
        return lib.Sequential([lib.Input(shape=(8, 8, 3)), Gram(), layers.Dense(3, activation="softmax")]), (8, 8, 3)

    return {"antirectifier": antirectifier, "linear_functional": linear_functional, "subclassed": subclassed,
            "gram_cnn": gram_cnn, "block_functional": block_functional, "subclassed_training": subclassed_training,
            "loss_function": loss_function, "loss_subclass": loss_subclass}


NAMES = ["antirectifier", "linear_functional", "subclassed", "gram_cnn", "block_functional", "subclassed_training",
         "loss_function", "loss_subclass"]


def run(lib, names=NAMES):
    """For each case: predictions before training, losses of two SGD epochs, predictions and weights
    after them."""
    out = {}
    cases = _cases(lib)
    for i, name in enumerate(names):
        model, shape, *extra = cases[name]()
        loss, metrics = (extra + [None, None])[:2]
        rng = np.random.default_rng(100 + i)
        x = rng.normal(size=(48, *shape)).astype("float32")
        y = np.eye(3, dtype="float32")[rng.integers(0, 3, 48)]
        model.predict(x[:2], verbose=0)  # builds every kind of model (a subclassed one by tracing call)
        weights = [rng.normal(scale=0.4, size=w.shape).astype("float32") for w in model.get_weights()]
        model.set_weights(weights)
        out[f"{name}/shapes"] = np.array([str([list(w.shape) for w in weights])])
        out[f"{name}/predict0"] = np.asarray(model.predict(x, verbose=0), dtype="float32")
        model.compile(optimizer=lib.optimizers.SGD(learning_rate=0.1), loss=loss or "categorical_crossentropy",
                      metrics=metrics)
        history = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        out[f"{name}/loss"] = np.asarray(history.history["loss"], dtype="float64")
        for key in sorted(history.history):
            if key != "loss":
                out[f"{name}/metric_{key}"] = np.asarray(history.history[key], dtype="float64")
        out[f"{name}/predict2"] = np.asarray(model.predict(x, verbose=0), dtype="float32")
        for j, w in enumerate(model.get_weights()):
            out[f"{name}/w{j}"] = np.asarray(w, dtype="float32")
    return out
