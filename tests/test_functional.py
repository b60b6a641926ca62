"""The functional API beyond the golden fixtures: save/load round trips bit for bit (BatchNormalization
statistics, a Dropout stream, two inputs, a shared layer), resumed training, freezing, Keras's errors,
and the Keras 3 top-level names."""

import numpy as np
import pytest

import kandle
from kandle.layers import (Activation, Add, BatchNormalization, Concatenate, Conv2D, Dense, Dropout, Flatten,
                           GlobalAveragePooling2D, Input, MaxPooling2D, ZeroPadding2D)
from kandle.models import Model, Sequential, load_model


def residual():
    kandle.utils.set_random_seed(1)
    x_in = Input((12, 12, 3), name="image")
    side = Input((4,), name="side")
    x = ZeroPadding2D(1)(x_in)
    x = Conv2D(8, 3, name="stem")(x)
    shortcut = x
    x = Activation("relu")(BatchNormalization(axis=3, name="bn")(Conv2D(8, 3, padding="same")(x)))
    x = Activation("relu")(Add()([x, shortcut]))
    x = GlobalAveragePooling2D()(MaxPooling2D()(x))
    shared = Dense(6, activation="tanh", name="shared")
    h = Concatenate()([shared(Dense(6)(x)), shared(Dense(6)(side))])
    out = Dense(5, activation="softmax")(Dropout(0.3)(h))
    model = Model([x_in, side], out, name="res")
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["acc"])
    return model


def data(seed=0, n=24):
    rng = np.random.default_rng(seed)
    return ([rng.random((n, 12, 12, 3), dtype=np.float32), rng.random((n, 4), dtype=np.float32)],
            np.eye(5, dtype=np.float32)[rng.integers(0, 5, n)])


def test_a_functional_model_round_trips_bit_for_bit_and_resumes_training(tmp_path):
    model = residual()
    x, y = data()
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    model.save(tmp_path / "res.kandle")
    loaded = load_model(tmp_path / "res.kandle")
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)  # moving statistics included
    after_loaded = loaded.fit(x, y, epochs=2, batch_size=8, verbose=0).history["loss"]
    after_original = model.fit(x, y, epochs=2, batch_size=8, verbose=0).history["loss"]
    assert after_loaded == after_original


def test_data_as_a_dict_by_input_name():
    model = residual()
    x, y = data()
    np.testing.assert_array_equal(model.predict({"side": x[1], "image": x[0]}, verbose=0),
                                  model.predict(x, verbose=0))
    with pytest.raises(ValueError, match="side"):
        model.predict({"image": x[0]})


def test_weights_and_counts_split_into_trainable_and_not():
    model = residual()
    bn = model.get_layer("bn")
    assert len(bn.trainable_weights) == 2 and len(bn.non_trainable_weights) == 2
    non_trainable = model.count_params() - model._core.trainable_count()
    assert non_trainable == 16  # bn's moving mean and variance
    bn.trainable = False
    assert len(bn.trainable_weights) == 0 and len(bn.non_trainable_weights) == 4
    assert model.count_params() - model._core.trainable_count() == 16 + 16


def test_a_frozen_layer_does_not_train():
    model = residual()
    x, y = data()
    stem = model.get_layer("stem")
    stem.trainable = False
    before = stem.get_weights()
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    for a, b in zip(before, stem.get_weights()):
        np.testing.assert_array_equal(a, b)
    stem.trainable = True
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert not np.array_equal(before[0], stem.get_weights()[0])


def test_keras_errors():
    a, b = Input((4,)), Input((5,))
    with pytest.raises(ValueError, match=r"add_x.*\(None, 4\) and \(None, 5\)"):
        Add(name="add_x")([a, b])
    c = Input((4,))
    with pytest.raises(ValueError, match="Graph disconnected"):
        Model(a, Dense(2)(c))
    d1 = Dense(3, name="twin")
    d2 = Dense(3, name="twin")
    with pytest.raises(ValueError, match="twin"):
        Model(a, d2(d1(a)))
    with pytest.raises(TypeError, match="kandle does not implement calling a layer on arrays yet"):
        Dense(2)(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="several outputs"):
        Model(a, [Dense(2)(a), Dense(3)(a)])
    with pytest.raises(AttributeError, match="kandle does not implement the Keras layer 'LayerNormalization' yet"):
        kandle.layers.LayerNormalization


def test_a_model_called_on_a_tensor_replays_its_layers():
    inner_in = Input((4,))
    inner = Model(inner_in, Dense(3, name="inner_dense")(inner_in))
    outer_in = Input((4,))
    outer = Model(outer_in, Dense(2, activation="softmax")(inner(outer_in)))
    assert "inner_dense" in [l.name for l in outer.layers]
    np.testing.assert_array_equal(outer.get_layer("inner_dense").get_weights()[0], inner.get_weights()[0])


def test_keras3_top_level_names():
    assert kandle.Model is Model and kandle.Sequential is Sequential
    x = kandle.Input((3,))
    model = kandle.Model(x, kandle.layers.Dense(2)(x))
    assert model.output_shape == (None, 2)
    seq = kandle.Sequential([kandle.Input((3,)), Dense(2), Flatten()])
    assert seq.output_shape == (None, 2)
