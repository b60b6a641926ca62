"""RandomTranslation, RandomRotation, RandomZoom and RandomCrop from Python: active in fit only (read
back through one SGD step), seeded and saved, inside a keras.io-style model, RandomCrop's inference
against Resizing, and bad arguments. Their outputs against Keras 3 and their gradients are checked
in Rust (src/layers/augment_tests.rs, golden file tests/golden/augment.npz)."""

import numpy as np
import pytest

import kandle
from kandle import layers, models
from test_preprocessing_layers import assert_streams_resume


def augmented_in_fit(layer, x):
    """What `layer` makes of the single image `x[0]` inside `fit`: from a zero kernel, one SGD step
    (learning rate 1) on MSE against 1 moves a bias-free Dense's kernel by twice its input."""
    inp = layers.Input(x.shape[1:])
    out = layers.Flatten()(layer(inp))
    model = models.Model(inp, layers.Dense(1, use_bias=False, kernel_initializer="zeros")(out))
    model.compile(optimizer=kandle.optimizers.SGD(1.0), loss="mse")
    model.train_on_batch(x[:1], np.ones((1, 1), "float32"))
    return model.get_weights()[0].reshape(model.layers[1].output_shape[1:]) / 2.0, model


def test_translation_by_a_fixed_whole_pixel_shift_in_fit_and_identity_in_predict():
    x = np.random.default_rng(0).random((1, 4, 5, 1), dtype=np.float32)
    # height 0.25 * 4 = 1 row down, width -0.4 * 5 = 2 columns left; constant fill 0.5.
    layer = layers.RandomTranslation((0.25, 0.25), (-0.4, -0.4), fill_mode="constant", fill_value=0.5)
    seen, model = augmented_in_fit(layer, x)
    want = np.full((4, 5, 1), 0.5, np.float32)
    want[1:, :3] = x[0, :3, 2:]
    np.testing.assert_allclose(seen, want, atol=1e-6)
    ident = models.Model(model.inputs, model.layers[1].output)
    np.testing.assert_array_equal(ident.predict(x, verbose=0), x)


def test_rotation_by_a_half_turn_reverses_rows_and_columns():
    x = np.random.default_rng(1).random((1, 5, 7, 2), dtype=np.float32)
    seen, _ = augmented_in_fit(layers.RandomRotation((0.5, 0.5), interpolation="nearest"), x)
    np.testing.assert_allclose(seen, x[0, ::-1, ::-1], atol=1e-6)


def test_zoom_draws_one_factor_per_image_within_range():
    # A 1x41 ramp zoomed about its centre by 1 + f: the slope of the output is 1 + f.
    ramp = np.arange(41, dtype=np.float32)[None, None, :, None]
    slopes = []
    layer = layers.RandomZoom(0.0, (-0.3, 0.2), seed=3, fill_mode="nearest")
    inp = layers.Input((1, 41, 1))
    model = models.Model(inp, layers.Flatten()(layer(inp)))
    model = models.Model(inp, layers.Dense(1, use_bias=False, kernel_initializer="zeros")(model.outputs[0]))
    model.compile(optimizer=kandle.optimizers.SGD(1.0), loss="mse")
    for _ in range(40):
        model.set_weights([np.zeros((41, 1), "float32")])
        model.train_on_batch(ramp, np.ones((1, 1), "float32"))
        row = model.get_weights()[0][:, 0] / 2.0
        slopes.append(row[21] - row[20])
    assert min(slopes) >= 0.7 - 1e-4 and max(slopes) <= 1.2 + 1e-4, (min(slopes), max(slopes))
    assert max(slopes) - min(slopes) > 0.3  # the draws spread over the range


def test_random_crop_predicts_the_resized_image_and_crops_a_window_in_fit():
    x = np.random.default_rng(2).random((3, 8, 8, 2), dtype=np.float32)
    crop = models.Sequential([layers.Input((8, 8, 2)), layers.RandomCrop(6, 6, seed=4)])
    resize = models.Sequential([layers.Input((8, 8, 2)), layers.Resizing(6, 6)])
    np.testing.assert_allclose(crop.predict(x, verbose=0), resize.predict(x, verbose=0), atol=1e-6)
    assert crop.output_shape == (None, 6, 6, 2)
    seen, _ = augmented_in_fit(layers.RandomCrop(6, 6, seed=5), x)
    windows = [x[0, t:t + 6, l:l + 6] for t in range(3) for l in range(3)]
    assert min(np.abs(seen - w).max() for w in windows) < 1e-6


def test_seeded_saved_and_resumed(tmp_path):
    rng = np.random.default_rng(3)
    x, y = rng.random((32, 8, 8, 1), dtype=np.float32), np.eye(2, dtype=np.float32)[rng.integers(0, 2, 32)]

    b = assert_streams_resume(lambda: [layers.Input((8, 8, 1)), layers.RandomRotation(0.2, seed=1),
                                       layers.RandomTranslation(0.1, 0.2, seed=2), layers.RandomZoom(0.2, seed=3),
                                       layers.RandomCrop(6, 6, seed=4), layers.Flatten(),
                                       layers.Dense(2, activation="softmax")], x, y, 8, tmp_path / "m.kandle")
    assert [type(l).__name__ for l in b.layers[:4]] == ["RandomRotation", "RandomTranslation", "RandomZoom", "RandomCrop"]
    assert b.layers[1].get_config()["width_factor"] == 0.2 and b.layers[0].get_config()["fill_mode"] == "reflect"


def test_keras_io_augmentation_block_trains():
    # keras.io's image_classification_from_scratch augmentation, on small data.
    data_augmentation_layers = [layers.RandomFlip("horizontal"), layers.RandomRotation(0.1)]

    def data_augmentation(images):
        for layer in data_augmentation_layers:
            images = layer(images)
        return images

    rng = np.random.default_rng(4)
    x, y = rng.uniform(0, 255, (32, 12, 12, 3)).astype("float32"), rng.integers(0, 2, 32)
    inputs = kandle.Input((12, 12, 3))
    z = data_augmentation(inputs)
    z = layers.RandomZoom(0.1)(layers.RandomTranslation(0.1, 0.1)(z))
    z = layers.Rescaling(1.0 / 255)(z)
    z = layers.Conv2D(4, 3, activation="relu")(z)
    z = layers.GlobalAveragePooling2D()(z)
    model = kandle.Model(inputs, layers.Dense(1, activation="sigmoid")(z))
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["acc"])
    h = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert len(h.history["loss"]) == 2 and np.isfinite(h.history["loss"]).all()
    assert model.predict(x[:2], verbose=0).shape == (2, 1)


@pytest.mark.parametrize("make, message", [
    (lambda: layers.RandomTranslation(1.5, 0.1), r"in the range \[-1.0, 1.0\]. Received: height_factor=1.5"),
    (lambda: layers.RandomZoom((-1.0, 0.3)), r"\(-1.0, 1.0\]"),
    (lambda: layers.RandomRotation(0.1, fill_mode="mirror"), "Unknown `fill_mode`"),
    (lambda: layers.RandomRotation(0.1, interpolation="bicubic"), "Unknown `interpolation`"),
    (lambda: layers.RandomCrop(0, 3), "positive integer"),
    (lambda: layers.RandomZoom(0.1, data_format="channels_first"), "channels_last"),
])
def test_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_not_an_image_says_so():
    with pytest.raises(ValueError, match="RandomRotation|expected ndim=4"):
        models.Sequential([layers.Input((4,)), layers.RandomRotation(0.1)])
