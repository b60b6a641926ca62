"""``kandle.preprocessing.image``: loading, converting and saving images the Keras way.

``load_img``, ``img_to_array``, ``array_to_img`` and ``save_img`` behave as in Keras (2.2's arguments
plus Keras 3's ``keep_aspect_ratio``). They need Pillow, which is imported on first use so that
``import kandle.preprocessing.image`` works without it; a call without Pillow raises an ``ImportError``
that says what to install (``pip install Pillow``, or kandle's ``notebook`` extra).

Arrays are float32 by default (``kandle.backend.floatx()``) and channels-last unless
``data_format='channels_first'`` is passed; these helpers only move axes, so both layouts work here
even though kandle's layers compute channels-last only.
"""

import io
import os
import pathlib
import warnings

import numpy as np

from kandle import backend

__all__ = ["load_img", "img_to_array", "array_to_img", "save_img"]

_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "hamming", "box", "lanczos")


def _pil_image():
    """The ``PIL.Image`` module, or an ImportError naming the package to install."""
    try:
        from PIL import Image
    except ImportError as e:
        raise ImportError(
            "Could not import PIL.Image: kandle.preprocessing.image needs Pillow. "
            "Install it with `pip install Pillow` (or install kandle with its notebook extra: "
            "`pip install \"kandle[notebook]\"`)."
        ) from e
    return Image


def _resample(Image, interpolation):
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"Invalid interpolation method {interpolation!r}. Supported methods are "
                         f"{', '.join(repr(m) for m in _INTERPOLATIONS)}.")
    resampling = getattr(Image, "Resampling", Image)  # Pillow >= 9.1 moved the constants
    return getattr(resampling, interpolation.upper())


def _data_format(data_format):
    data_format = data_format or backend.image_data_format()
    if data_format not in ("channels_first", "channels_last"):
        raise ValueError(f"Unknown data_format: {data_format!r}. Expected 'channels_first' or 'channels_last'.")
    return data_format


def load_img(path, grayscale=False, color_mode="rgb", target_size=None, interpolation="nearest",
             keep_aspect_ratio=False):
    """Loads an image into a PIL ``Image``.

    Args:
        path: a path (``str``, ``bytes`` or ``pathlib.Path``) or an ``io.BytesIO`` holding the file.
        grayscale: Keras 2.2's argument, deprecated there too: ``True`` means ``color_mode="grayscale"``.
        color_mode: ``"rgb"``, ``"rgba"`` or ``"grayscale"``; the image is converted to it.
        target_size: ``None`` (keep the size) or ``(height, width)``.
        interpolation: resampling when resizing: ``"nearest"``, ``"bilinear"``, ``"bicubic"``,
            ``"hamming"``, ``"box"`` or ``"lanczos"``.
        keep_aspect_ratio: crop the largest centred box of the target's aspect ratio before resizing,
            instead of stretching.

    Returns:
        A ``PIL.Image.Image``.
    """
    if grayscale:
        warnings.warn('grayscale is deprecated. Please use color_mode = "grayscale"', stacklevel=2)
        color_mode = "grayscale"
    if color_mode not in ("grayscale", "rgb", "rgba"):
        raise ValueError(f'color_mode must be "grayscale", "rgb", or "rgba". Received: color_mode={color_mode!r}')
    Image = _pil_image()
    if isinstance(path, io.BytesIO):
        img = Image.open(path)
    elif isinstance(path, (str, bytes, os.PathLike)):
        if isinstance(path, pathlib.Path):
            path = str(path.resolve())
        with open(path, "rb") as f:  # read fully, so the file is closed when this returns
            img = Image.open(io.BytesIO(f.read()))
    else:
        raise TypeError(f"path should be path-like or io.BytesIO, not {type(path)}")

    if color_mode == "grayscale":
        # 'I;16' and 'I' are kept as they are: converting would clip 16/32-bit values to 8 bits.
        if img.mode not in ("L", "I;16", "I"):
            img = img.convert("L")
    elif color_mode == "rgba":
        if img.mode != "RGBA":
            img = img.convert("RGBA")
    elif img.mode != "RGB":
        img = img.convert("RGB")

    if target_size is not None:
        height, width = (int(d) for d in target_size)
        if img.size != (width, height):
            resample = _resample(Image, interpolation)
            if keep_aspect_ratio:
                src_w, src_h = img.size
                crop_h = min(src_h, (src_w * height) // width)
                crop_w = min(src_w, (src_h * width) // height)
                left, top = (src_w - crop_w) // 2, (src_h - crop_h) // 2
                img = img.resize((width, height), resample, box=(left, top, left + crop_w, top + crop_h))
            else:
                img = img.resize((width, height), resample)
    return img


def img_to_array(img, data_format=None, dtype=None):
    """Converts a PIL image (or anything ``np.asarray`` takes) to a 3D numpy array.

    Returns ``(height, width, channels)`` for channels-last (the default) or ``(channels, height,
    width)`` for channels-first; a single-channel image gets a channel axis of size 1. ``dtype``
    defaults to ``kandle.backend.floatx()`` (float32).
    """
    data_format = _data_format(data_format)
    x = np.asarray(img, dtype=dtype or backend.floatx())
    if x.ndim == 3:
        if data_format == "channels_first":
            x = x.transpose(2, 0, 1)
    elif x.ndim == 2:
        x = x.reshape((1, *x.shape) if data_format == "channels_first" else (*x.shape, 1))
    else:
        raise ValueError(f"Unsupported image shape: {x.shape}")
    return x


def array_to_img(x, data_format=None, scale=True, dtype=None):
    """Converts a 3D numpy array to a PIL image.

    With ``scale=True`` (the default) the values are shifted and stretched to 0..255 first (min to 0,
    max to 255), as Keras does. 3 channels give an RGB image, 4 RGBA, 1 grayscale ('L', or 32-bit 'I'
    when unscaled values exceed 255).
    """
    Image = _pil_image()
    data_format = _data_format(data_format)
    x = np.array(x, dtype=dtype or backend.floatx())  # a copy: scaling below must not touch the input
    if x.ndim != 3:
        raise ValueError(f"Expected image array to have rank 3 (single image). Got array with shape: {x.shape}")
    if data_format == "channels_first":
        x = x.transpose(1, 2, 0)
    if scale:
        x = x - np.min(x)
        x_max = np.max(x)
        if x_max != 0:
            x /= x_max
        x *= 255
    channels = x.shape[2]
    if channels == 4:
        return Image.fromarray(x.astype("uint8"), "RGBA")
    if channels == 3:
        return Image.fromarray(x.astype("uint8"), "RGB")
    if channels == 1:
        if np.max(x) > 255:
            return Image.fromarray(x[:, :, 0].astype("int32"), "I")
        return Image.fromarray(x[:, :, 0].astype("uint8"), "L")
    raise ValueError(f"Unsupported channel number: {channels}")


def save_img(path, x, data_format=None, file_format=None, scale=True, **kwargs):
    """Saves an image stored as a numpy array to ``path`` (a path or a file object).

    ``file_format`` defaults to what the file name's extension says; ``"jpg"`` means JPEG. An RGBA
    image saved as JPEG is converted to RGB, with a warning. Extra keyword arguments go to
    ``PIL.Image.Image.save``.
    """
    img = array_to_img(x, data_format=data_format, scale=scale)
    if file_format is None and isinstance(path, (str, os.PathLike)):
        file_format = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or None
    if file_format is not None and file_format.lower() == "jpg":
        file_format = "jpeg"
    if img.mode == "RGBA" and file_format is not None and file_format.lower() == "jpeg":
        warnings.warn("The JPG format does not support RGBA images, converting to RGB.", stacklevel=2)
        img = img.convert("RGB")
    img.save(path, format=file_format, **kwargs)
