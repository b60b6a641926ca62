"""Keras 3's preprocessing and augmentation layers that kandle has: Rescaling and CenterCrop (always
applied), RandomFlip (while training only; seeded). They compute in the Rust core, in the training
step, like every other layer."""

from kandle.layers.base import Layer


class Rescaling(Layer):
    """``x * scale + offset`` (``Rescaling(1.0 / 255)`` maps pixels to [0, 1])."""

    _class_name = "Rescaling"

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(scale=scale, offset=offset, **kwargs)


class CenterCrop(Layer):
    """The central ``height x width`` of each image (the extra row or column cut at the bottom/right)."""

    _class_name = "CenterCrop"

    def __init__(self, height, width, data_format=None, **kwargs):
        if data_format not in (None, "channels_last"):
            raise ValueError(f"CenterCrop: data_format={data_format!r} is not supported; kandle is channels_last")
        super().__init__(height=height, width=width, **kwargs)


class RandomFlip(Layer):
    """While training, each image flipped left-right and/or top-bottom (``mode``), each with
    probability 1/2; the identity at inference."""

    _class_name = "RandomFlip"

    def __init__(self, mode="horizontal_and_vertical", seed=None, data_format=None, **kwargs):
        if data_format not in (None, "channels_last"):
            raise ValueError(f"RandomFlip: data_format={data_format!r} is not supported; kandle is channels_last")
        super().__init__(mode=mode, seed=seed, **kwargs)


class RandomContrast(Layer):
    """While training, each image's contrast scaled by a factor drawn from ``[1 - lower, 1 + upper]``
    (``factor`` is a number for both or a pair): ``clip((x - mean) * f + mean, value_range)``, the
    mean per image and channel; the identity at inference."""

    _class_name = "RandomContrast"

    def __init__(self, factor, value_range=(0, 255), seed=None, **kwargs):
        factor = list(factor) if isinstance(factor, tuple) else factor
        super().__init__(factor=factor, value_range=list(value_range), seed=seed, **kwargs)
