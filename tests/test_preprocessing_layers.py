"""Rescaling, CenterCrop and RandomFlip: outputs against Keras 3 (tests/golden/preprocessing.npz),
RandomFlip's training draws (statistics, seeding), use inside a trained model, and bad arguments."""

import json
from pathlib import Path

import numpy as np
import pytest

import kandle
from kandle import layers, models

GOLDEN = Path(__file__).parent / "golden" / "preprocessing.npz"


def apply(layer, x):
    """The layer's inference output on `x`."""
    return models.Sequential([layers.Input(x.shape[1:]), layer]).predict(x, verbose=0)


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize("name", ["rescale", "rescale_offset", "crop_even", "crop_odd", "crop_same", "flip_inference",
                                  "rescale_channels", "rescale_channel_scale", "crop_up", "crop_up_width",
                                  "resize_down", "resize_up", "resize_nearest_down", "resize_nearest_up"])
def test_matches_keras(golden, name):
    spec = json.loads(str(golden["configs"]))[name]
    layer = getattr(layers, spec["class_name"])(**spec["config"])
    # Resizing's interpolation weights round differently from TensorFlow's in the last bit.
    rtol = 1e-5 if name.startswith("resize") else 1e-6
    np.testing.assert_allclose(apply(layer, golden["x"]), golden[name], rtol=rtol, atol=1e-5)


@pytest.mark.parametrize("name", ["norm_channels", "norm_rows_cols", "norm_all", "norm_given", "norm_invert"])
def test_normalization_matches_keras(golden, name):
    spec = json.loads(str(golden["configs"]))[name]
    layer = layers.Normalization(**spec["config"])
    if spec["adapt"]:
        layer.adapt(golden["x"])  # before the layer is in a model, as keras.io does
    out = apply(layer, golden["x"])
    np.testing.assert_allclose(out, golden[name], rtol=1e-5, atol=1e-5)
    if spec["adapt"]:
        mine = np.concatenate([np.ravel(w).astype("float64") for w in layer.get_weights()])
        np.testing.assert_allclose(mine, golden[name + "_weights"], rtol=1e-5)


def test_normalization_adapted_in_a_model_trains_saves_and_reloads(tmp_path):
    rng = np.random.default_rng(5)
    x = (rng.normal(size=(64, 4)) * [1, 10, 100, 1000] + [0, 5, -50, 500]).astype("float32")
    y = np.eye(2, dtype="float32")[rng.integers(0, 2, 64)]
    norm = layers.Normalization()
    model = models.Sequential([layers.Input((4,)), norm, layers.Dense(2, activation="softmax")])
    norm.adapt(x)  # after it is in the model
    np.testing.assert_allclose(model.layers[0].get_weights()[0], x.mean(0), rtol=1e-5)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    np.testing.assert_allclose(norm.get_weights()[1], x.var(0), rtol=1e-5)  # not trained
    model.save(tmp_path / "n.kandle")
    loaded = models.load_model(tmp_path / "n.kandle")
    assert type(loaded.layers[0]).__name__ == "Normalization"
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    with pytest.raises(ValueError, match="both must be set"):
        layers.Normalization(mean=[0.0])


def test_random_flip_flips_half_of_the_images_while_training_only():
    rng = np.random.default_rng(0)
    x = rng.random((512, 3, 4, 1), dtype=np.float32)
    for mode, lr, tb in (("horizontal", True, False), ("vertical", False, True), ("horizontal_and_vertical", True, True)):
        inp = layers.Input((3, 4, 1))
        flip = layers.RandomFlip(mode, seed=7)
        out = layers.Flatten()(flip(inp))
        model = models.Model(inp, layers.Dense(1, use_bias=False, kernel_initializer="zeros")(out))
        model.compile(optimizer=kandle.optimizers.SGD(1.0), loss="mse")
        # From a zero kernel, one SGD step (lr 1) on MSE against 1 moves the kernel by 2 mean(flipped x).
        model.fit(x, np.ones((512, 1), "float32"), batch_size=512, epochs=1, verbose=0, shuffle=False)
        kernel = model.get_weights()[0].reshape(3, 4) / 2.0  # = mean of the flipped images
        mean = x.reshape(512, 3, 4)
        options = [mean]
        if lr:
            options.append(mean[:, :, ::-1])
        if tb:
            options.append(mean[:, ::-1, :])
        if lr and tb:
            options.append(mean[:, ::-1, ::-1])
        expected = np.mean([o.mean(axis=0) for o in options], axis=0)
        np.testing.assert_allclose(kernel, expected, atol=0.02, err_msg=mode)
        assert not np.allclose(kernel, mean.mean(axis=0), atol=1e-3), f"{mode}: nothing was flipped"
        # At inference nothing is flipped.
        np.testing.assert_allclose(model.predict(x, verbose=0), x.reshape(512, -1) @ model.get_weights()[0], rtol=1e-5)


def test_random_contrast_scales_each_image_by_one_factor_in_range():
    rng = np.random.default_rng(4)
    x = rng.uniform(60, 200, (64, 5, 5, 2)).astype("float32")
    inp = layers.Input((5, 5, 2))
    out = layers.Flatten()(layers.RandomContrast((0.3, 0.5), seed=2)(inp))
    model = models.Model(inp, layers.Dense(1, use_bias=False, kernel_initializer="zeros")(out))
    model.compile(optimizer=kandle.optimizers.SGD(1.0), loss="mse")
    # One sample per batch: each step's kernel change is 2 * that image's augmented version (see above).
    seen = []
    for i in range(len(x)):
        model.set_weights([np.zeros((50, 1), "float32")])
        model.train_on_batch(x[i:i + 1], np.ones((1, 1), "float32"))
        seen.append(model.get_weights()[0].reshape(5, 5, 2) / 2.0)
    factors = []
    for image, augmented in zip(x, seen):
        mean = image.mean(axis=(0, 1))
        f = (augmented - mean) / (image - mean)
        assert np.allclose(f, f.mean(), rtol=1e-3, atol=1e-3)  # one factor for the whole image
        factors.append(f.mean())
    assert 0.7 - 1e-3 <= min(factors) and max(factors) <= 1.5 + 1e-3 and max(factors) - min(factors) > 0.4
    np.testing.assert_array_equal(apply(layers.RandomContrast(0.5), x), x)  # inference: unchanged
    clipped = models.Sequential([layers.Input((5, 5, 2)), layers.RandomContrast(0.9, value_range=(0, 255))])
    assert clipped.get_config()["layers"][0]["config"]["value_range"] == [0.0, 255.0]


def test_random_flip_is_seeded_and_saved(tmp_path):
    rng = np.random.default_rng(1)
    x, y = rng.random((64, 4, 4, 2), dtype=np.float32), np.eye(2, dtype=np.float32)[rng.integers(0, 2, 64)]

    assert_streams_resume(lambda: [layers.Input((4, 4, 2)), layers.RandomFlip(seed=11), layers.Flatten(),
                                   layers.Dense(2, activation="softmax")], x, y, 16, tmp_path / "m.kandle")


def assert_streams_resume(make_layers, x, y, batch_size, path):
    """Two epochs of a seeded model, straight and with a save/load between them, end on the same
    weights: the random layers' streams resume where they were. Returns the reloaded model."""
    def trained(path=None):
        kandle.utils.set_random_seed(3)
        m = models.Sequential(make_layers())
        m.compile(optimizer="sgd", loss="categorical_crossentropy")
        m.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
        if path:
            m.save(path)
            m = models.load_model(path)
        m.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
        return m

    for wa, wb in zip(trained().get_weights(), (b := trained(path)).get_weights()):
        np.testing.assert_array_equal(wa, wb)
    return b


def test_in_a_keras_io_style_model():
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 255, (40, 10, 10, 3)).astype("float32")
    y = rng.integers(0, 3, 40)
    inputs = kandle.Input((10, 10, 3))
    z = layers.RandomFlip("horizontal")(inputs)
    z = layers.Rescaling(1.0 / 255)(z)
    z = layers.CenterCrop(8, 8)(z)
    z = layers.Conv2D(4, 3, activation="relu")(z)
    z = layers.Flatten()(z)
    model = kandle.Model(inputs, layers.Dense(3, activation="softmax")(z))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["acc"])
    h = model.fit(x, y, epochs=3, batch_size=8, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]
    assert model.predict(x[:2], verbose=0).shape == (2, 3)


@pytest.mark.parametrize("make, message", [
    (lambda: layers.RandomFlip("diagonal"), "unknown mode argument"),
    (lambda: layers.Rescaling([[1.0, 2.0]]), "other than a number or a flat list"),
    (lambda: layers.CenterCrop(0, 3), "positive integer"),
    (lambda: layers.RandomContrast(1.5), "`factor` must be a number in"),
    (lambda: layers.RandomContrast(0.2, value_range=(1, 0)), "`value_range` must be a pair"),
])
def test_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_scale_per_channel_must_fit_the_channels():
    with pytest.raises(ValueError, match=r"a `scale` of 3 values does not broadcast against inputs of shape \(None, 4, 4, 2\)"):
        models.Sequential([layers.Input((4, 4, 2)), layers.Rescaling([1.0, 2.0, 3.0])])


def test_resizing_passes_gradients_and_refuses_what_it_lacks():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(16, 6, 6, 2)).astype("float32")
    y = np.eye(2, dtype="float32")[rng.integers(0, 2, 16)]
    conv = layers.Conv2D(3, 3, padding="same")
    model = models.Sequential([layers.Input((6, 6, 2)), conv, layers.Resizing(9, 4), layers.Flatten(),
                               layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    before = conv.get_weights()[0]
    model.fit(x, y, epochs=1, verbose=0)
    assert not np.allclose(before, conv.get_weights()[0])  # the gradient went through the resize
    assert model.layers[1].output_shape == (None, 9, 4, 3)
    with pytest.raises(ValueError, match="kandle does not implement Resizing\\(interpolation='bicubic'\\)"):
        layers.Resizing(4, 4, interpolation="bicubic")
    with pytest.raises(ValueError, match="crop_to_aspect_ratio"):
        layers.Resizing(4, 4, crop_to_aspect_ratio=True)
