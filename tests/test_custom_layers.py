"""Custom layers, subclassed models and Python losses beyond the golden cases: weights and their
Variables, freezing, shared layers, saving and loading (custom_objects, register_keras_serializable),
and the errors a call that kandle cannot record raises."""

import numpy as np
import pytest

import kandle
from kandle import layers, ops


class Linear(layers.Layer):
    def __init__(self, units=4, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="random_normal", name="w")
        self.b = self.add_weight(shape=(self.units,), initializer="zeros", name="b")
        self.count = self.add_weight(shape=(), initializer="ones", trainable=False, name="count")

    def call(self, inputs):
        return ops.matmul(inputs, self.w) + self.b * self.count

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def data(n=32, d=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    return x, np.eye(classes, dtype="float32")[rng.integers(0, classes, n)]


def model_with(layer, d=6):
    inp = kandle.Input(shape=(d,))
    out = layers.Dense(3, activation="softmax")(layer(inp))
    m = kandle.Model(inp, out)
    m.compile(optimizer="sgd", loss="categorical_crossentropy")
    return m


def test_weights_variables_and_trainable_split():
    lin = Linear(5)
    m = model_with(lin)
    assert lin.built and lin.output_shape == (None, 5)
    assert [w.shape for w in lin.get_weights()] == [(6, 5), (5,), ()]
    assert [w.shape for w in lin.trainable_weights] == [(6, 5), (5,)]
    assert [w.shape for w in lin.non_trainable_weights] == [()]
    assert lin.count_params() == 6 * 5 + 5 + 1
    np.testing.assert_array_equal(lin.w.numpy(), lin.get_weights()[0])
    lin.b.assign(np.full(5, 0.25))
    np.testing.assert_array_equal(lin.get_weights()[1], np.full(5, 0.25, np.float32))
    x, y = data()
    before = lin.get_weights()
    m.fit(x, y, epochs=1, verbose=0)
    after = lin.get_weights()
    assert not np.allclose(before[0], after[0]) and not np.allclose(before[1], after[1])
    np.testing.assert_array_equal(before[2], after[2])  # not trainable


def test_frozen_custom_layer_does_not_train():
    lin = Linear(5)
    m = model_with(lin)
    lin.trainable = False
    m.compile(optimizer="sgd", loss="categorical_crossentropy")
    x, y = data()
    before = lin.get_weights()
    head_before = m.layers[-1].get_weights()
    m.fit(x, y, epochs=1, verbose=0)
    for a, b in zip(before, lin.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(head_before[0], m.layers[-1].get_weights()[0])
    assert lin.trainable_weights == [] and len(lin.non_trainable_weights) == 3


def test_shared_custom_layer_sums_gradients_of_both_calls():
    lin = Linear(4)
    a, b = kandle.Input(shape=(6,)), kandle.Input(shape=(6,))
    out = layers.Dense(3, activation="softmax")(layers.Concatenate()([lin(a), lin(b)]))
    m = kandle.Model([a, b], out)
    m.compile(optimizer="sgd", loss="categorical_crossentropy")
    x, y = data()
    p = m.predict([x, x], verbose=0)
    assert p.shape == (32, 3)
    m.fit([x, x[::-1].copy()], y, epochs=1, verbose=0)
    assert np.isfinite(m.predict([x, x], verbose=0)).all()


def test_second_input_signature_is_refused():
    lin = Linear(4)
    lin(kandle.Input(shape=(6,)))
    with pytest.raises(ValueError, match="records one input signature"):
        lin(kandle.Input(shape=(7,)))


def test_save_and_load_needs_the_class(tmp_path):
    lin = Linear(5, name="lin")
    m = model_with(lin)
    x, y = data()
    m.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "m.kandle"
    m.save(path)
    with pytest.raises(TypeError, match="Could not locate class 'Linear'"):
        kandle.models.load_model(path)
    loaded = kandle.models.load_model(path, custom_objects={"Linear": Linear})
    assert isinstance(loaded.get_layer("lin"), Linear) and loaded.get_layer("lin").units == 5
    np.testing.assert_allclose(loaded.predict(x, verbose=0), m.predict(x, verbose=0), rtol=1e-6)
    np.testing.assert_array_equal(loaded.get_layer("lin").w.numpy(), lin.w.numpy())
    # Training continues from the saved state (optimizer included) as the original would.
    loaded.fit(x, y, epochs=1, verbose=0, shuffle=False)
    m.fit(x, y, epochs=1, verbose=0, shuffle=False)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), m.predict(x, verbose=0), rtol=1e-5)


def test_registered_class_loads_and_sequential_round_trip(tmp_path):
    @kandle.saving.register_keras_serializable(package="Tests")
    class Scale(layers.Layer):
        def build(self, input_shape):
            self.s = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="s")

        def call(self, x):
            return x * self.s

    m = kandle.Sequential([kandle.Input(shape=(6,)), Scale(name="scale"), layers.Dense(3, activation="softmax")])
    m.compile(optimizer="adam", loss="categorical_crossentropy")
    x, y = data()
    m.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "s.kandle"
    m.save(path)
    loaded = kandle.models.load_model(path)
    assert type(loaded.layers[0]).__name__ == "Scale"
    np.testing.assert_array_equal(loaded.layers[0].s.numpy(), m.layers[0].s.numpy())
    np.testing.assert_allclose(loaded.predict(x, verbose=0), m.predict(x, verbose=0), rtol=1e-6)
    assert kandle.saving.get_registered_name(Scale) == "Tests>Scale"


def test_python_loss_survives_saving(tmp_path):
    def halved_mse(y_true, y_pred):
        return 0.5 * ops.mean(ops.square(y_true - y_pred), axis=-1)

    m = kandle.Sequential([kandle.Input(shape=(6,)), layers.Dense(3)])
    m.compile(optimizer="sgd", loss=halved_mse)
    x, y = data()
    m.fit(x, y, epochs=1, verbose=0)
    expected = 0.5 * np.mean((m.predict(x, verbose=0) - y) ** 2)
    assert m.evaluate(x, y, verbose=0) == pytest.approx(expected, rel=1e-5)
    m.save(tmp_path / "l.kandle")
    loaded = kandle.models.load_model(tmp_path / "l.kandle")
    assert loaded.evaluate(x, y, verbose=0) == pytest.approx(expected, rel=1e-5)
    with kandle.saving.custom_object_scope({"halved_mse": halved_mse}):
        assert kandle.models.load_model(tmp_path / "l.kandle").loss is halved_mse


class Branchy(layers.Layer):
    def call(self, x):
        if ops.sum(x) > 0:
            return x
        return -x


class NumpyInside(layers.Layer):
    def call(self, x):
        return np.tanh(x)


class BuiltinInside(layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = layers.Dense(3)

    def call(self, x):
        return self.dense(x)


class BadShapes(layers.Layer):
    def call(self, x):
        return ops.matmul(x, np.ones((5, 2), np.float32))


class ComputeSum(layers.Layer):
    """The guide's stateful layer: it updates a weight in call()."""

    def build(self, input_shape):
        self.total = self.add_weight(shape=(input_shape[-1],), initializer="zeros", trainable=False, name="total")

    def call(self, x):
        self.total.assign_add(ops.sum(x, axis=0))
        return x


class AddsLoss(layers.Layer):
    def call(self, x):
        self.add_loss(ops.sum(x))
        return x


class LosesBatch(layers.Layer):
    def call(self, x):
        return ops.mean(x, axis=0)


@pytest.mark.parametrize("cls, error, pattern", [
    (Branchy, TypeError, r"Python `if`.*ops\.where"),
    (NumpyInside, TypeError, r"NumPy call.*kandle\.ops"),
    (BuiltinInside, NotImplementedError, r"built-in layers inside custom layers"),
    (BadShapes, ValueError, r"Layer \"bad_shapes.*ops\.matmul.*\(None, 6\).*\(5, 2\)"),
    (LosesBatch, ValueError, r"first axis is the batch axis"),
    (ComputeSum, NotImplementedError, r"assign_add\(\) inside a layer's call\(\)"),
    (AddsLoss, NotImplementedError, r"add_loss"),
])
def test_calls_kandle_cannot_record_say_why(cls, error, pattern):
    with pytest.raises(error, match=pattern):
        cls()(kandle.Input(shape=(6,)))


def test_layer_without_call_and_overridden_builtin_call_are_refused():
    class NoCall(layers.Layer):
        pass

    with pytest.raises(NotImplementedError, match="must define call"):
        NoCall()

    class MyDense(layers.Dense):
        def call(self, x):
            return x

    with pytest.raises(NotImplementedError, match="overriding call\\(\\) of a built-in layer"):
        MyDense(3)


def test_subclassed_model_traces_on_first_data_and_summarizes(capsys):
    class Tiny(kandle.Model):
        def __init__(self):
            super().__init__()
            self.lin = Linear(4)
            self.out = layers.Dense(3, activation="softmax")

        def call(self, x):
            return self.out(ops.relu(self.lin(x)))

    m = Tiny()
    assert m.name.startswith("tiny") and not m.built
    with pytest.raises(ValueError, match="not yet been built"):
        m.summary()
    m.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["acc"])
    x, y = data()
    history = m.fit(x, y, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and m.built
    m.summary()
    text = capsys.readouterr().out
    assert "linear" in text and "Linear" in text and "relu (OpLayer)" in text
    assert m.predict(x[:5], verbose=0).shape == (5, 3)


def test_ops_on_keras_tensors_save_and_reload(tmp_path):
    inp = kandle.Input(shape=(6,))
    h = layers.Dense(4)(inp)
    h = ops.concatenate([ops.relu(h), ops.square(h) * 0.5], axis=-1)
    out = layers.Dense(3, activation="softmax")(h + 1.0)
    m = kandle.Model(inp, out)
    m.compile(optimizer="sgd", loss="categorical_crossentropy")
    x, y = data()
    m.fit(x, y, epochs=1, verbose=0)
    m.save(tmp_path / "f.kandle")
    loaded = kandle.models.load_model(tmp_path / "f.kandle")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), m.predict(x, verbose=0), rtol=1e-6)
    # relu, square, multiply, concatenate, add: one OpLayer each
    assert [type(l).__name__ for l in loaded.layers].count("OpLayer") == 5


def test_scalars_stay_scalars():
    assert ops.add(np.float32(1.0), 2.0).shape == ()
    assert ops.multiply(3, 2).dtype == np.int64 and ops.multiply(3, 2) == 6
    from kandle.ops._graph import _Graph
    g = _Graph("t")
    y = g.input((None, 3)) * 2.0
    assert g.consts[0]["shape"] == [] and y.shape == (None, 3)


def test_custom_metric_by_hand_and_in_fit():
    class Hits(kandle.metrics.Metric):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.hits = self.add_variable(shape=(), name="hits")
            self.total = self.add_variable(shape=(), name="total")

        def update_state(self, y_true, y_pred, sample_weight=None):
            same = ops.cast(ops.argmax(y_true, axis=-1) == ops.argmax(y_pred, axis=-1), "float32")
            self.hits.assign_add(ops.sum(same))
            self.total.assign_add(ops.sum(ops.ones_like(same)))

        def result(self):
            return self.hits / self.total

    x, y = data(n=40)
    m = kandle.Sequential([kandle.Input(shape=(6,)), layers.Dense(3, activation="softmax")])
    m.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["acc", Hits(name="hits")])
    _, acc, hits = m.evaluate(x, y, verbose=0)
    assert hits == pytest.approx(acc)
    h = Hits()
    p = m.predict(x, verbose=0)
    h.update_state(y[:25], p[:25])
    h.update_state(y[25:], p[25:])
    assert float(h.result()) == pytest.approx(np.mean(p.argmax(1) == y.argmax(1)))
    h.reset_state()
    assert float(h.hits.numpy()) == 0.0

    class Reads(Hits):
        def update_state(self, y_true, y_pred, sample_weight=None):
            self.hits.assign_add(self.hits + 1.0)

    with pytest.raises(ValueError, match="only adds to their variables"):
        m.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=[Reads()])


def test_lambda_layer_trains_saves_and_reloads_without_its_function(tmp_path):
    m = kandle.Sequential([kandle.Input(shape=(6,)), layers.Dense(4),
                           layers.Lambda(lambda t: ops.tanh(t) * 2.0 + ops.mean(t, axis=-1, keepdims=True)),
                           layers.Dense(3, activation="softmax")])
    m.compile(optimizer="sgd", loss="categorical_crossentropy")
    x, y = data()
    m.fit(x, y, epochs=1, verbose=0)
    h = x @ m.layers[0].get_weights()[0] + m.layers[0].get_weights()[1]
    h = np.tanh(h) * 2.0 + h.mean(-1, keepdims=True)
    w, b = m.layers[2].get_weights()
    logits = h @ w + b
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(m.predict(x, verbose=0), expected / expected.sum(-1, keepdims=True), rtol=1e-4, atol=1e-6)
    m.save(tmp_path / "lam.kandle")
    loaded = kandle.models.load_model(tmp_path / "lam.kandle")
    assert type(loaded.layers[1]).__name__ == "Lambda"
    np.testing.assert_allclose(loaded.predict(x, verbose=0), m.predict(x, verbose=0), rtol=1e-6)


def test_keras_file_export_refuses_recorded_layers(tmp_path):
    m = model_with(Linear(4))
    with pytest.raises(ValueError, match="does not write layers recorded from kandle.ops"):
        m.save(tmp_path / "m.keras")
    assert not (tmp_path / "m.keras").exists()


def test_the_guides_eager_calls_then_a_model_keeps_the_weights():
    class GuideLinear(layers.Layer):
        """The subclassing guide's first Linear: weights made in __init__."""

        def __init__(self, units=32, input_dim=32):
            super().__init__()
            self.w = self.add_weight(shape=(input_dim, units), initializer="random_normal", trainable=True)
            self.b = self.add_weight(shape=(units,), initializer="zeros", trainable=True)

        def call(self, inputs):
            return ops.matmul(inputs, self.w) + self.b

    x = ops.ones((2, 2))
    linear = GuideLinear(4, 2)
    y = linear(x)
    assert y.shape == (2, 4) and y.dtype == np.float32
    np.testing.assert_allclose(y, np.ones((2, 2)) @ linear.w.numpy() + linear.b.numpy(), rtol=1e-6)
    linear.b.assign(np.full(4, 0.5))
    w_before = linear.w.numpy()
    m = kandle.Sequential([kandle.Input(shape=(2,)), linear])
    np.testing.assert_array_equal(linear.w.numpy(), w_before)  # the model took the eager weights
    np.testing.assert_allclose(m.predict(np.ones((3, 2), np.float32), verbose=0),
                               np.ones((3, 2)) @ w_before + 0.5, rtol=1e-6)


@pytest.mark.parametrize("a, b, axes", [((3, 4, 5), (4, 5, 2), 2), ((3, 4), (4, 6), 1), ((2, 3, 4), (4, 3), ([1, 2], [1, 0])),
                                        ((5, 2), (3, 5), (0, 1))])
def test_tensordot_matches_numpy(a, b, axes):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=a).astype("float32"), rng.normal(size=b).astype("float32")
    np.testing.assert_allclose(ops.tensordot(x, y, axes), np.tensordot(x, y, axes), rtol=1e-4, atol=1e-5)
