"""Keras 3's preprocessing and augmentation layers that kandle has: Rescaling and CenterCrop (always
applied), RandomFlip and RandomContrast (while training only; seeded), Normalization and Resizing. They compute in the Rust core, in the training
step, like every other layer."""

import numpy as np

from kandle.layers.base import Layer


class Rescaling(Layer):
    """``x * scale + offset`` (``Rescaling(1.0 / 255)`` maps pixels to [0, 1]); each a number or one
    value per channel."""

    _class_name = "Rescaling"

    def __init__(self, scale, offset=0.0, **kwargs):
        def plain(v):  # NumPy arrays and tuples as the lists the config holds
            return np.asarray(v).tolist() if isinstance(v, (np.ndarray, tuple)) else v

        super().__init__(scale=plain(scale), offset=plain(offset), **kwargs)


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


class Normalization(Layer):
    """Keras 3's ``Normalization``: ``(x - mean) / max(sqrt(variance), 1e-7)`` over the kept ``axis``
    (``invert=True``: the inverse), with ``mean``/``variance`` given or learnt by ``adapt(data)``. Written
    with kandle.ops as a custom layer, so the core records and runs it like any other; its adapted
    statistics are the non-trainable weights ``mean``, ``variance`` and ``count``, as Keras keeps them."""

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, **kwargs):
        super().__init__(**kwargs)
        self._class_name = "Normalization"
        if axis is None:
            axis = ()
        self.axis = (axis,) if isinstance(axis, int) else tuple(int(a) for a in axis)
        if (mean is None) != (variance is None):
            raise ValueError("Normalization: when `mean` or `variance` is set, both must be set. "
                             f"Received: mean={mean} and variance={variance}")
        self.input_mean, self.input_variance, self.invert = mean, variance, bool(invert)
        self._pending = None

    def build(self, input_shape):
        ndim = len(input_shape)
        if any(a < -ndim or a >= ndim for a in self.axis):
            raise ValueError(f"All `axis` values must be in the range [-ndim, ndim). Received inputs with "
                             f"ndim={ndim}, while axis={self.axis}")
        self._keep = tuple(sorted(a % ndim for a in self.axis))
        if any(input_shape[d] is None for d in self._keep):
            raise ValueError(f"All `axis` values to be kept must have a known shape. Received axis={self.axis}, "
                             f"inputs.shape={tuple(input_shape)}")
        self._reduce = tuple(d for d in range(ndim) if d not in self._keep)
        self._broadcast = [input_shape[d] if d in self._keep else 1 for d in range(ndim)]
        shape = tuple(input_shape[d] for d in self._keep)
        if self.input_mean is None:
            self.adapt_mean = self.add_weight(name="mean", shape=shape, initializer="zeros", trainable=False)
            self.adapt_variance = self.add_weight(name="variance", shape=shape, initializer="ones", trainable=False)
            self.count = self.add_weight(name="count", shape=(), initializer="zeros", trainable=False)
        else:
            mean, variance = (np.asarray(v, np.float32) for v in (self.input_mean, self.input_variance))
            expanded = [1] * ndim
            for i in range(1, mean.ndim + 1):
                expanded[self._keep[-i]] = mean.shape[-i]
            self._const = [np.broadcast_to(v.reshape(expanded), self._broadcast).astype(np.float32)
                           for v in (mean, variance)]

    def call(self, inputs):
        from kandle import ops

        if self.input_mean is None:
            mean = ops.reshape(self.adapt_mean, self._broadcast)
            variance = ops.reshape(self.adapt_variance, self._broadcast)
        else:
            mean, variance = self._const
        scale = ops.maximum(ops.sqrt(variance), 1e-7)
        return ops.add(mean, ops.multiply(inputs, scale)) if self.invert else ops.divide(ops.subtract(inputs, mean), scale)

    def adapt(self, data, batch_size=None, steps=None):
        """Learns ``mean`` and ``variance`` (population) of ``data``: an array, or an iterable of
        batches (a dataset; ``(x, y)`` pairs give their ``x``)."""
        if self.input_mean is not None:
            raise ValueError("Normalization: adapt() is for a layer without `mean` and `variance`")
        if isinstance(data, np.ndarray) or np.isscalar(data) or isinstance(data, list):
            array = np.asarray(data, dtype=np.float64)
        else:
            batches = []
            for i, batch in enumerate(data):
                if steps is not None and i >= steps:
                    break
                batches.append(np.asarray(batch[0] if isinstance(batch, tuple) else batch, dtype=np.float64))
            array = np.concatenate(batches)
        if array.ndim == 1:
            array = array[:, None]
        from kandle.layers import custom
        custom.ensure_built(self, [(None, *array.shape[1:])])
        mean = array.mean(axis=self._reduce).astype(np.float32)
        variance = array.var(axis=self._reduce).astype(np.float32)
        # Keras 3 keeps `count` (for old files) at 0; adapt does not update it.
        self._pending = [mean, variance, np.zeros((), np.float32)]
        if self._model is not None:
            self.set_weights(self._pending)

    def _attach(self, core):
        super()._attach(core)
        if self._pending is not None:
            self.set_weights(self._pending)

    def get_config(self):
        config = super().get_config()
        config.update({"axis": list(self.axis), "invert": self.invert,
                       "mean": None if self.input_mean is None else np.asarray(self.input_mean).tolist(),
                       "variance": None if self.input_variance is None else np.asarray(self.input_variance).tolist()})
        return config


def _resize_matrix(n_in, n_out, interpolation):
    """``(n_out, n_in)`` weights of TensorFlow's resize along one axis (half-pixel centres, no
    antialiasing), so that resizing is two matrix products."""
    m = np.zeros((n_out, n_in), np.float64)
    scale = n_in / n_out
    for o in range(n_out):
        if interpolation == "nearest":
            m[o, min(int(np.floor((o + 0.5) * scale)), n_in - 1)] = 1.0
            continue
        src = (o + 0.5) * scale - 0.5
        f = np.floor(src)
        lerp = src - f
        lo, hi = int(np.clip(f, 0, n_in - 1)), int(np.clip(f + 1, 0, n_in - 1))
        m[o, lo] += 1.0 - lerp
        m[o, hi] += lerp
    return m.astype(np.float32)


class Resizing(Layer):
    """Keras 3's ``Resizing(height, width, interpolation='bilinear')`` ('bilinear' or 'nearest', as
    TensorFlow resizes: half-pixel centres, no antialiasing): two interpolation matrices applied with
    ``ops.einsum``, so it runs on the GEMM and passes gradients."""

    def __init__(self, height, width, interpolation="bilinear", crop_to_aspect_ratio=False, pad_to_aspect_ratio=False,
                 fill_mode="constant", fill_value=0.0, antialias=False, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self._class_name = "Resizing"
        for what, value in (("height", height), ("width", width)):
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"Resizing: `{what}` must be a positive integer, got {value!r}")
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"kandle does not implement Resizing(interpolation={interpolation!r}) yet "
                             "('bilinear' and 'nearest')")
        for what, value in (("crop_to_aspect_ratio", crop_to_aspect_ratio), ("pad_to_aspect_ratio", pad_to_aspect_ratio),
                            ("antialias", antialias)):
            if value:
                raise ValueError(f"kandle does not implement Resizing({what}=True) yet")
        if data_format not in (None, "channels_last"):
            raise ValueError(f"kandle does not implement Resizing(data_format={data_format!r}) yet")
        self.height, self.width, self.interpolation = int(height), int(width), interpolation

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"Resizing expects images of shape (batch, height, width, channels), got {input_shape}")
        self._rows = _resize_matrix(input_shape[1], self.height, self.interpolation)
        self._cols = _resize_matrix(input_shape[2], self.width, self.interpolation)

    def call(self, inputs):
        from kandle import ops

        y = ops.einsum("oh,bhwc->bowc", self._rows, inputs)
        return ops.einsum("pw,bowc->bopc", self._cols, y)

    def get_config(self):
        config = super().get_config()
        config.update({"height": self.height, "width": self.width, "interpolation": self.interpolation,
                       "crop_to_aspect_ratio": False, "pad_to_aspect_ratio": False, "antialias": False})
        return config
