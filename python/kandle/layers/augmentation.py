"""Keras 3's geometric augmentation layers: RandomTranslation, RandomRotation, RandomZoom (one
transform drawn per image while training, the identity at inference) and RandomCrop (one random
window per batch while training; at inference the central window of the target's aspect ratio,
resized). They run in the Rust core's training step (src/layers/augment.rs); these classes only
carry the Keras signatures."""

from kandle.layers.base import Layer


def _pair(factor):
    return list(factor) if isinstance(factor, tuple) else factor


def _channels_last(cls, data_format):
    if data_format not in (None, "channels_last"):
        raise ValueError(f"{cls}: data_format={data_format!r} is not supported; kandle is channels_last")


class RandomTranslation(Layer):
    """While training, each image shifted by a fraction of its height and width drawn from
    ``height_factor`` and ``width_factor`` (a number f for ``[-f, f]``, or a pair); the uncovered part
    filled as ``fill_mode`` says ('reflect', 'wrap', 'constant' with ``fill_value``, 'nearest')."""

    _class_name = "RandomTranslation"

    def __init__(self, height_factor, width_factor, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, data_format=None, **kwargs):
        _channels_last("RandomTranslation", data_format)
        super().__init__(height_factor=_pair(height_factor), width_factor=_pair(width_factor), fill_mode=fill_mode,
                         interpolation=interpolation, seed=seed, fill_value=fill_value, **kwargs)


class RandomRotation(Layer):
    """While training, each image rotated about its centre by a fraction of a full turn drawn from
    ``factor`` (a number f for ``[-f, f]``, or a pair; positive is counter-clockwise)."""

    _class_name = "RandomRotation"

    def __init__(self, factor, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0,
                 data_format=None, **kwargs):
        _channels_last("RandomRotation", data_format)
        super().__init__(factor=_pair(factor), fill_mode=fill_mode, interpolation=interpolation, seed=seed,
                         fill_value=fill_value, **kwargs)


class RandomZoom(Layer):
    """While training, each image zoomed about its centre by ``1 + f``, f drawn from ``height_factor``
    (and ``width_factor``, else the same draw for both axes); positive values zoom out."""

    _class_name = "RandomZoom"

    def __init__(self, height_factor, width_factor=None, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, data_format=None, **kwargs):
        _channels_last("RandomZoom", data_format)
        super().__init__(height_factor=_pair(height_factor), width_factor=_pair(width_factor), fill_mode=fill_mode,
                         interpolation=interpolation, seed=seed, fill_value=fill_value, **kwargs)


class RandomCrop(Layer):
    """While training, one random ``height x width`` window of the batch; at inference (and for
    images not larger than the target) the largest central window of the target's aspect ratio,
    resized to it."""

    _class_name = "RandomCrop"

    def __init__(self, height, width, seed=None, data_format=None, **kwargs):
        _channels_last("RandomCrop", data_format)
        super().__init__(height=height, width=width, seed=seed, **kwargs)
