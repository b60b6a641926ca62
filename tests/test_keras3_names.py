"""Keras 3's names that keras.io code reaches for: ``kandle.config``, ``kandle.utils.load_img`` /
``img_to_array`` / ``PyDataset``, ``kandle.models.clone_model``, and the error for a name kandle lacks
("kandle does not implement keras.X yet", never a bare AttributeError)."""

import numpy as np
import pytest

import kandle as keras


def test_config():
    assert keras.config.floatx() == "float32" and keras.config.image_data_format() == "channels_last"
    assert keras.config.epsilon() == pytest.approx(1e-7)
    assert isinstance(keras.config.backend(), str)
    with pytest.raises(ValueError, match="kandle does not implement set_epsilon"):
        keras.config.set_epsilon(1e-3)


@pytest.mark.parametrize("expr", ["keras.ops.fft", "keras.utils.text_dataset_from_directory", "keras.callbacks.SwapEMAWeights",
                                  "keras.optimizers.Ftrl", "keras.metrics.F1Score", "keras.losses.Hinge",
                                  "keras.saving.serialize_keras_object", "keras.mixed_precision.LossScaleOptimizer",
                                  "keras.layers.RandomShear", "keras.initializers.STFT",
                                  "keras.optimizers.schedules.CosineDecayRestarts", "keras.distribution.ModelParallel"])
def test_missing_names_say_so(expr):
    with pytest.raises(AttributeError, match=r"kandle does not implement (keras\.|the Keras layer)"):
        eval(expr)
    assert not hasattr(keras.layers, "__wrapped__")  # dunder probes stay plain AttributeErrors


def test_image_utilities_at_their_keras3_paths(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    pil.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3)).save(tmp_path / "x.png")
    img = keras.utils.load_img(tmp_path / "x.png", target_size=(2, 2))
    arr = keras.utils.img_to_array(img)
    assert arr.shape == (2, 2, 3) and arr.dtype == np.float32
    assert keras.utils.PyDataset is keras.utils.Sequence


def test_clone_model_has_the_architecture_and_new_weights():
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(keras.layers.Dense(5)(inp)))
    clone = keras.models.clone_model(model)
    assert [l.name for l in clone.layers] == [l.name for l in model.layers]
    assert clone.get_config() == model.get_config()
    assert any(not np.array_equal(a, b) for a, b in zip(model.get_weights(), clone.get_weights()))
    seq = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    assert isinstance(keras.models.clone_model(seq), keras.Sequential)
    with pytest.raises(ValueError, match="kandle does not implement clone_model"):
        keras.models.clone_model(model, clone_function=lambda layer: layer)
