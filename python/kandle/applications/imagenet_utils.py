"""``kandle.applications.imagenet_utils``: Keras's ImageNet input preprocessing and prediction
decoding.

``decode_predictions`` needs the ImageNet class index (``imagenet_class_index.json``, 1000 entries of
``[wordnet_id, name]``), which is not shipped with kandle: on first use it is fetched with
``kandle.utils.get_file`` from the URL Keras uses (``CLASS_INDEX_PATH``), checked against Keras's
md5 (``CLASS_INDEX_HASH``) and cached in ``$KANDLE_HOME/models`` (default ``~/.kandle/models``). A copy
that Keras already downloaded (``~/.keras/models/imagenet_class_index.json``, or under
``$KERAS_HOME``) is used instead when it is there and its hash matches, so a machine that ran Keras
needs no network. Offline, put the file in either folder.
"""

import json
import os

import numpy as np

from kandle import backend
from kandle.utils import data_utils

__all__ = ["preprocess_input", "decode_predictions", "CLASS_INDEX_PATH", "CLASS_INDEX_HASH"]

CLASS_INDEX = None  # the loaded class index, {"0": ["n01440764", "tench"], ...}; set on first use
CLASS_INDEX_PATH = "https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json"
CLASS_INDEX_HASH = "c2c37ea517e94d9795004a39431a14cb"  # md5, as in Keras
_CLASS_INDEX_FNAME = "imagenet_class_index.json"

_MODES = ("caffe", "tf", "torch")


def preprocess_input(x, data_format=None, mode="caffe"):
    """Preprocesses a batch (or a single image) of RGB values in 0..255 for an ImageNet model.

    Modes, as in Keras:
        ``"caffe"`` (default): RGB to BGR, then each channel minus the ImageNet mean
            (103.939, 116.779, 123.68 in BGR order), no scaling.
        ``"tf"``: scaled to -1..1 (``x / 127.5 - 1``).
        ``"torch"``: scaled to 0..1, then each channel minus the mean (0.485, 0.456, 0.406) and divided
            by the standard deviation (0.229, 0.224, 0.225).

    ``data_format`` defaults to ``kandle.backend.image_data_format()``.

    As in Keras, a floating-point numpy array is processed in place (the result shares its memory);
    pass ``np.copy(x)`` to keep the input. Integer arrays and other array-likes are converted to a new
    float32 array first.
    """
    if mode not in _MODES:
        raise ValueError(f"Expected mode to be one of `caffe`, `tf` or `torch`. Received: mode={mode}")
    data_format = data_format or backend.image_data_format()
    if data_format not in ("channels_first", "channels_last"):
        raise ValueError(f"Expected data_format to be one of `channels_first` or `channels_last`. "
                         f"Received: data_format={data_format}")
    if not isinstance(x, np.ndarray):
        x = np.array(x, dtype=backend.floatx())
    elif not issubclass(x.dtype.type, np.floating):
        x = x.astype(backend.floatx(), copy=False)
    if x.ndim < 3:
        raise ValueError(f"preprocess_input expects an image (rank 3) or a batch of images (rank 4). "
                         f"Received an array with shape {x.shape}")

    if mode == "tf":
        x /= 127.5
        x -= 1.0
        return x
    if mode == "torch":
        x /= 255.0
        mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    else:
        if data_format == "channels_first":  # 'RGB'->'BGR'
            x = x[::-1, ...] if x.ndim == 3 else x[:, ::-1, ...]
        else:
            x = x[..., ::-1]
        mean, std = (103.939, 116.779, 123.68), None

    for c in range(3):
        if data_format == "channels_first":
            channel = (c, slice(None), slice(None)) if x.ndim == 3 else (slice(None), c, slice(None), slice(None))
        else:
            channel = (Ellipsis, c)
        x[channel] -= mean[c]
        if std is not None:
            x[channel] /= std[c]
    return x


def _class_index_file():
    """Keras's cached copy when present and intact, else kandle's cache (downloading if needed)."""
    keras_copy = os.path.join(data_utils.keras_home(), "models", _CLASS_INDEX_FNAME)
    if os.path.isfile(keras_copy) and data_utils.validate_file(keras_copy, CLASS_INDEX_HASH):
        return keras_copy
    try:
        return data_utils.get_file(_CLASS_INDEX_FNAME, CLASS_INDEX_PATH, cache_subdir="models",
                                   file_hash=CLASS_INDEX_HASH)
    except data_utils.DownloadError as e:
        own = os.path.join(data_utils.kandle_home(), "models", _CLASS_INDEX_FNAME)
        raise data_utils.DownloadError(
            f"{e}\ndecode_predictions needs the ImageNet class index, which is not cached and could not "
            f"be downloaded. Put {_CLASS_INDEX_FNAME} (from {CLASS_INDEX_PATH}) at {own} or {keras_copy}."
        ) from e


def decode_predictions(preds, top=5):
    """Decodes ImageNet predictions into class names.

    Args:
        preds: array of shape ``(samples, 1000)``: a model's ImageNet class scores.
        top: how many of the highest-scoring classes to return per sample.

    Returns:
        One list per sample of ``(class_id, class_name, score)`` tuples, highest score first,
        e.g. ``[('n02504458', 'African_elephant', 0.92), ...]``.
    """
    global CLASS_INDEX
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] != 1000:
        raise ValueError("`decode_predictions` expects a batch of predictions (i.e. a 2D array of shape "
                         f"(samples, 1000)). Received array with shape: {preds.shape}")
    if CLASS_INDEX is None:
        with open(_class_index_file(), encoding="utf-8") as f:
            CLASS_INDEX = json.load(f)
    results = []
    for pred in preds:
        top_indices = pred.argsort()[-top:][::-1]
        result = [tuple(CLASS_INDEX[str(i)]) + (pred[i],) for i in top_indices]
        result.sort(key=lambda r: r[2], reverse=True)
        results.append(result)
    return results
