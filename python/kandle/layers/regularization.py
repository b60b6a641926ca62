"""Dropout."""

from kandle.layers.base import Layer


class Dropout(Layer):
    _class_name = "Dropout"

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        if noise_shape is not None:
            raise ValueError(f"Dropout: `noise_shape` is not supported yet (got {noise_shape!r})")
        super().__init__(rate=rate, seed=seed, **kwargs)
