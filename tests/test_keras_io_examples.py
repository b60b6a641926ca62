"""keras.io examples and guides run with their imports changed only (``import kandle as keras``,
``from kandle import layers, ops``), on small data: scikit-learn's digits instead of MNIST, a few
epochs. Each asserts what the example shows (it learns, shapes, saved configs round-trip)."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

import kandle as keras
from kandle import layers, ops


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    x = (d.images / 16.0).astype("float32")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    return x[order], d.target[order].astype("int64")


def test_mnist_convnet(digits):
    """examples/vision/mnist_convnet.py (images upsampled 8x8 -> 24x24 for its two conv/pool blocks)."""
    x, y = digits
    x = np.kron(x, np.ones((3, 3), np.float32))[..., None]
    num_classes, input_shape = 10, (24, 24, 1)
    x_train, x_test, y_train, y_test = x[:1400], x[1400:], y[:1400], y[1400:]
    y_train = keras.utils.to_categorical(y_train, num_classes)
    y_test = keras.utils.to_categorical(y_test, num_classes)
    model = keras.Sequential([
        keras.Input(shape=input_shape),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(num_classes, activation="softmax"),
    ])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=128, epochs=6, validation_split=0.1, verbose=0)
    score = model.evaluate(x_test, y_test, verbose=0)
    assert score[1] > 0.85, score


def test_training_guide_custom_losses_metrics_weights(digits):
    """guides/training_with_built_in_methods: its model, a custom loss function, a Loss subclass, the
    CategoricalTruePositives metric, class_weight and sample_weight, EarlyStopping."""
    x, y = digits
    x = x.reshape(-1, 64)

    def get_uncompiled_model():
        inputs = keras.Input(shape=(64,), name="digits")
        x = layers.Dense(64, activation="relu", name="dense_1")(inputs)
        x = layers.Dense(64, activation="relu", name="dense_2")(x)
        outputs = layers.Dense(10, activation="softmax", name="predictions")(x)
        return keras.Model(inputs=inputs, outputs=outputs)

    def custom_mean_squared_error(y_true, y_pred):
        return ops.mean(ops.square(y_true - y_pred), axis=-1)

    class CustomMSE(keras.losses.Loss):
        def __init__(self, regularization_factor=0.1, name="custom_mse"):
            super().__init__(name=name)
            self.regularization_factor = regularization_factor

        def call(self, y_true, y_pred):
            mse = ops.mean(ops.square(y_true - y_pred), axis=-1)
            reg = ops.mean(ops.square(0.5 - y_pred), axis=-1)
            return mse + reg * self.regularization_factor

    class CategoricalTruePositives(keras.metrics.Metric):
        def __init__(self, name="categorical_true_positives", **kwargs):
            super().__init__(name=name, **kwargs)
            self.true_positives = self.add_variable(shape=(), name="ctp", initializer="zeros")

        def update_state(self, y_true, y_pred, sample_weight=None):
            y_pred = ops.reshape(ops.argmax(y_pred, axis=1), (-1, 1))
            values = ops.cast(y_true, "int32") == ops.cast(y_pred, "int32")
            values = ops.cast(values, "float32")
            if sample_weight is not None:
                sample_weight = ops.cast(sample_weight, "float32")
                values = ops.multiply(values, sample_weight)
            self.true_positives.assign_add(ops.sum(values))

        def result(self):
            return self.true_positives

        def reset_state(self):
            self.true_positives.assign(0)

    y_one_hot = ops.one_hot(y, num_classes=10)
    for loss in (custom_mean_squared_error, CustomMSE()):
        model = get_uncompiled_model()
        model.compile(optimizer=keras.optimizers.Adam(), loss=loss)
        history = model.fit(x, y_one_hot, batch_size=64, epochs=3, verbose=0)
        assert history.history["loss"][-1] < history.history["loss"][0]

    model = get_uncompiled_model()
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(), metrics=[CategoricalTruePositives()])
    history = model.fit(x[:1500], y[:1500].reshape(-1, 1), batch_size=64, epochs=3, verbose=0)
    positives = history.history["categorical_true_positives"]
    assert positives[-1] > 1000 and positives[-1] >= positives[0]
    p = model.predict(x[:1500], verbose=0)
    _, tp = model.evaluate(x[:1500], y[:1500].reshape(-1, 1), verbose=0)
    assert tp == (p.argmax(1) == y[:1500]).sum()

    class_weight = {i: 1.0 for i in range(10)}
    class_weight[5] = 2.0
    model = get_uncompiled_model()
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy", metrics=["sparse_categorical_accuracy"])
    model.fit(x, y, class_weight=class_weight, batch_size=64, epochs=2, verbose=0)
    sample_weight = np.ones(shape=(len(y),))
    sample_weight[y == 5] = 2.0
    callbacks = [keras.callbacks.EarlyStopping(monitor="val_loss", min_delta=1e-2, patience=2, verbose=0)]
    history = model.fit(x, y, sample_weight=sample_weight, batch_size=64, epochs=20, validation_split=0.2,
                        callbacks=callbacks, verbose=0)
    assert 2 <= len(history.history["loss"]) <= 20
    assert model.evaluate(x, y, verbose=0)[1] > 0.9


def test_subclassing_guide(digits):
    """guides/making_new_layers_and_models_via_subclassing: Linear (weights in __init__, and in build),
    eager calls, non-trainable weights, recursive composition, get_config/from_config, a Model subclass."""
    class Linear(layers.Layer):
        def __init__(self, units=32, input_dim=32):
            super().__init__()
            self.w = self.add_weight(shape=(input_dim, units), initializer="random_normal", trainable=True)
            self.b = self.add_weight(shape=(units,), initializer="zeros", trainable=True)

        def call(self, inputs):
            return ops.matmul(inputs, self.w) + self.b

    x = ops.ones((2, 2))
    linear_layer = Linear(4, 2)
    y = linear_layer(x)
    assert y.shape == (2, 4)

    class LazyLinear(layers.Layer):
        def __init__(self, units=32, **kwargs):
            super().__init__(**kwargs)
            self.units = units

        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="random_normal", trainable=True)
            self.b = self.add_weight(shape=(self.units,), initializer="random_normal", trainable=True)

        def call(self, inputs):
            return ops.matmul(inputs, self.w) + self.b

        def get_config(self):
            config = super().get_config()
            config.update({"units": self.units})
            return config

    layer = LazyLinear(64)
    config = layer.get_config()
    new_layer = LazyLinear.from_config(config)
    assert new_layer.units == 64 and config["units"] == 64

    class MLPBlock(layers.Layer):
        def __init__(self):
            super().__init__()
            self.linear_1 = LazyLinear(32)
            self.linear_2 = LazyLinear(32)
            self.linear_3 = LazyLinear(1)

        def call(self, inputs):
            x = self.linear_1(inputs)
            x = ops.relu(x)
            x = self.linear_2(x)
            x = ops.relu(x)
            return self.linear_3(x)

    mlp = MLPBlock()
    y = mlp(ops.ones(shape=(3, 64)))  # The first call to the `mlp` will create the weights
    assert y.shape == (3, 1)
    assert len(mlp.weights) == 6 and len(mlp.trainable_weights) == 6

    class Classifier(keras.Model):
        def __init__(self, num_classes=10):
            super().__init__()
            self.block_1 = LazyLinear(64)
            self.block_2 = LazyLinear(num_classes)

        def call(self, inputs):
            x = self.block_1(inputs)
            x = ops.relu(x)
            return ops.softmax(self.block_2(x))

    images, labels = digits
    model = Classifier()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(images.reshape(-1, 64), labels, batch_size=32, epochs=5, verbose=0)
    assert model.evaluate(images.reshape(-1, 64), labels, verbose=0)[1] > 0.9


def test_antirectifier_recipe(digits):
    """examples/keras_recipes/antirectifier.py (digits as its 784-pixel MNIST: 64 pixels)."""
    class Antirectifier(layers.Layer):
        def __init__(self, initializer="he_normal", **kwargs):
            super().__init__(**kwargs)
            self.initializer = keras.initializers.get(initializer)

        def build(self, input_shape):
            output_dim = input_shape[-1]
            self.kernel = self.add_weight(shape=(output_dim * 2, output_dim), initializer=self.initializer,
                                          name="kernel", trainable=True)

        def call(self, inputs):
            inputs -= ops.mean(inputs, axis=-1, keepdims=True)
            pos = ops.relu(inputs)
            neg = ops.relu(-inputs)
            concatenated = ops.concatenate([pos, neg], axis=-1)
            mixed = ops.matmul(concatenated, self.kernel)
            return mixed

        def get_config(self):
            base_config = super().get_config()
            config = {"initializer": keras.initializers.serialize(self.initializer)}
            return dict(list(base_config.items()) + list(config.items()))

    x, y = digits
    x = x.reshape(-1, 64)
    model = keras.Sequential([
        keras.Input(shape=(64,)), layers.Dense(256), Antirectifier(), layers.Dense(256), Antirectifier(),
        layers.Dropout(0.5), layers.Dense(10),
    ])
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  optimizer=keras.optimizers.RMSprop(), metrics=[keras.metrics.SparseCategoricalAccuracy()])
    history = model.fit(x[:1500], y[:1500], batch_size=128, epochs=6, validation_split=0.15, verbose=0)
    assert history.history["val_sparse_categorical_accuracy"][-1] > 0.85
    assert model.evaluate(x[1500:], y[1500:], verbose=0)[1] > 0.85


def test_sequential_pop():
    model = keras.Sequential([keras.Input(shape=(4,)), layers.Dense(3), layers.Dense(2), layers.Dense(1)])
    w = model.layers[1].get_weights()[0]
    last = model.pop()
    assert last.output_shape == (None, 1) and len(model.layers) == 2 and model.output_shape == (None, 2)
    np.testing.assert_array_equal(model.layers[1].get_weights()[0], w)
    model.add(layers.Dense(5))
    assert model.predict(np.ones((2, 4), np.float32), verbose=0).shape == (2, 5)
