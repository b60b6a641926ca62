"""Owns ``kandle.utils.image_dataset_from_directory`` (Keras 3's signature and file order): images
in class folders become a :class:`~kandle.utils.PyDataset` of ``(images, labels)`` batches that
``fit``/``evaluate``/``predict`` read. Images are decoded and resized by Pillow, the images of a
batch in parallel threads (Pillow releases the GIL while it decodes)."""

import concurrent.futures
import math
import os

import numpy as np

from kandle.utils.py_dataset import PyDataset

ALLOWED_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
_COLOR_MODES = {"rgb": ("RGB", 3), "rgba": ("RGBA", 4), "grayscale": ("L", 1)}
_INTERPOLATIONS = {"bilinear": "BILINEAR", "nearest": "NEAREST", "bicubic": "BICUBIC", "lanczos3": "LANCZOS",
                   "lanczos5": "LANCZOS", "area": "BOX", "gaussian": "BILINEAR", "mitchellcubic": "BICUBIC"}
_pool = None


def _threads():
    global _pool
    if _pool is None:
        _pool = concurrent.futures.ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
    return _pool


def _index(directory, labels, class_names, follow_links):
    """(file paths, labels, class names) in Keras's order: classes sorted, files sorted per class."""
    if labels not in ("inferred", None):
        if not isinstance(labels, (list, tuple, np.ndarray)):
            raise ValueError(f'`labels` argument should be a list/tuple of integer labels, of the same size as the '
                             f'number of image files in the target directory, "inferred" or None. Received: labels={labels!r}')
    subdirs = sorted(d for d in os.listdir(directory) if os.path.isdir(os.path.join(directory, d)))
    if labels == "inferred":
        if class_names is not None:
            if not set(class_names) <= set(subdirs):
                raise ValueError(f"The `class_names` passed did not match the names of the subdirectories of the target "
                                 f"directory. Expected: {subdirs} (or a subset of it), but received: "
                                 f"class_names={list(class_names)}")
            subdirs = list(class_names)  # the order given
        folders = [(os.path.join(directory, d), i) for i, d in enumerate(subdirs)]
        names = subdirs
    else:
        folders, names = [(directory, None)], list(class_names) if class_names else []
    paths, found = [], []
    for folder, label in folders:
        for root, _, files in sorted(os.walk(folder, followlinks=follow_links)):
            for f in sorted(files):
                if f.lower().endswith(ALLOWED_FORMATS):
                    paths.append(os.path.join(root, f))
                    found.append(label)
    if labels not in ("inferred", None):
        if len(labels) != len(paths):
            raise ValueError(f"Expected the lengths of `labels` to match the number of files in the target directory. "
                             f"len(labels) is {len(labels)} while we found {len(paths)} files in directory {directory}.")
        found = list(labels)
    return paths, found, names


class ImageDataset(PyDataset):
    """Batches of decoded images (float32, 0-255, ``(batch, height, width, channels)``) and labels.

    Attributes, as Keras's dataset has them: ``class_names``, ``file_paths``. ``take(n)``, ``cache()``,
    ``prefetch(n)``, ``map(fn)`` and iteration work as on a tf.data dataset of NumPy batches.
    """

    def __init__(self, paths, labels, class_names, label_mode, color_mode, batch_size, image_size, shuffle, seed,
                 interpolation, crop_to_aspect_ratio, pad_to_aspect_ratio, fn=None, workers=1):
        super().__init__(workers=workers)
        self.file_paths, self._labels, self.class_names = list(paths), labels, class_names
        self._label_mode, self._color_mode, self._batch_size = label_mode, color_mode, batch_size
        self._image_size, self._shuffle, self._interpolation = tuple(image_size), shuffle, interpolation
        self._crop, self._pad, self._fn = crop_to_aspect_ratio, pad_to_aspect_ratio, fn
        self._rng = np.random.default_rng(seed)
        self._order = np.arange(len(self.file_paths))
        if shuffle:
            self._rng.shuffle(self._order)

    def __len__(self):
        return math.ceil(len(self.file_paths) / self._batch_size)

    def _load(self, path):
        from PIL import Image

        mode, _ = _COLOR_MODES[self._color_mode]
        height, width = self._image_size
        with Image.open(path) as img:
            img = img.convert(mode)
            if self._crop or self._pad:
                img = _to_aspect(img, width / height, crop=self._crop)
            img = img.resize((width, height), getattr(Image.Resampling, _INTERPOLATIONS[self._interpolation]))
            array = np.asarray(img, dtype=np.float32)
        return array[..., None] if array.ndim == 2 else array

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of a dataset of {len(self)} batches")
        picks = self._order[index * self._batch_size:(index + 1) * self._batch_size]
        images = np.stack(list(_threads().map(self._load, [self.file_paths[i] for i in picks])))
        if self._label_mode is None:
            batch = images
        else:
            labels = np.asarray([self._labels[i] for i in picks])
            if self._label_mode == "categorical":
                labels = np.eye(len(self.class_names), dtype=np.float32)[labels]
            elif self._label_mode == "binary":
                labels = labels.astype(np.float32).reshape(-1, 1)
            else:
                labels = labels.astype(np.int32)
            batch = (images, labels)
        return batch if self._fn is None else (self._fn(*batch) if isinstance(batch, tuple) else self._fn(batch))

    def on_epoch_end(self):
        if self._shuffle:  # a new order each epoch, as a shuffled tf.data pipeline
            self._rng.shuffle(self._order)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def take(self, count):
        """The first `count` batches, as a list."""
        return [self[i] for i in range(min(int(count), len(self)))]

    def cache(self, filename=""):
        return self

    def prefetch(self, buffer_size=None):
        return self

    def map(self, fn, num_parallel_calls=None):
        """A dataset whose batches are ``fn(images, labels)`` (NumPy in, NumPy out)."""
        prior = self._fn
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__)
        other._order = self._order.copy()
        other._fn = fn if prior is None else (lambda *b: fn(*_as_tuple(prior(*b))))
        return other


def _as_tuple(batch):
    return batch if isinstance(batch, tuple) else (batch,)


def _to_aspect(img, aspect, crop):
    """The centred largest crop (or the smallest zero padding) of `img` with width/height `aspect`."""
    from PIL import Image

    w, h = img.size
    if crop:
        cw, ch = (round(h * aspect), h) if w / h > aspect else (w, round(w / aspect))
        left, top = (w - cw) // 2, (h - ch) // 2
        return img.crop((left, top, left + cw, top + ch))
    pw, ph = (w, round(w / aspect)) if w / h > aspect else (round(h * aspect), h)
    canvas = Image.new(img.mode, (pw, ph))
    canvas.paste(img, ((pw - w) // 2, (ph - h) // 2))
    return canvas


def image_dataset_from_directory(directory, labels="inferred", label_mode="int", class_names=None, color_mode="rgb",
                                 batch_size=32, image_size=(256, 256), shuffle=True, seed=None, validation_split=None,
                                 subset=None, interpolation="bilinear", follow_links=False, crop_to_aspect_ratio=False,
                                 pad_to_aspect_ratio=False, data_format=None, verbose=True):
    """Keras 3's ``image_dataset_from_directory``: images in ``directory/<class>/...`` as batches of
    ``(images, labels)`` (or images alone with ``labels=None``); ``subset='both'`` returns
    ``(training, validation)``."""
    if label_mode not in ("int", "categorical", "binary", None):
        raise ValueError(f'`label_mode` argument must be one of "int", "categorical", "binary", or None. '
                         f"Received: label_mode={label_mode}")
    if color_mode not in _COLOR_MODES:
        raise ValueError(f'`color_mode` must be one of {{"rgb", "rgba", "grayscale"}}. Received: color_mode={color_mode}')
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"`interpolation` must be one of {sorted(_INTERPOLATIONS)}. Received: {interpolation!r}")
    if crop_to_aspect_ratio and pad_to_aspect_ratio:
        raise ValueError("Only one of `crop_to_aspect_ratio` and `pad_to_aspect_ratio` can be set to `True`.")
    if data_format not in (None, "channels_last"):
        raise ValueError("kandle does not implement image_dataset_from_directory(data_format='channels_first') yet")
    if labels is None:
        label_mode = None
    if validation_split is not None and not 0 < validation_split < 1:
        raise ValueError(f"`validation_split` must be between 0 and 1, received: {validation_split}")
    if (validation_split is None) != (subset is None):
        raise ValueError("If `subset` is set, `validation_split` must be set, and inversely.")
    if subset not in (None, "training", "validation", "both"):
        raise ValueError(f'`subset` must be either "training", "validation" or "both", received: {subset}')
    if validation_split and shuffle and seed is None:
        raise ValueError("If using `validation_split` and shuffling the data, you must provide a `seed` argument, to "
                         "make sure that there is no overlap between the training and validation subset.")
    if not os.path.isdir(directory):
        raise ValueError(f"Could not find directory {directory}")
    image_size = tuple(int(v) for v in image_size)
    if len(image_size) != 2 or min(image_size) < 1:
        raise ValueError(f"`image_size` must be (height, width) with positive sizes, received: {image_size}")
    if seed is None:
        seed = int(np.random.randint(1e6))
    paths, found, names = _index(directory, labels, class_names, follow_links)
    if label_mode == "binary" and len(names) != 2:
        raise ValueError(f'When passing `label_mode="binary"`, there must be exactly 2 class_names. Received: '
                         f"class_names={names}")
    if shuffle:  # Keras shuffles the file list with the seed before any split
        order = np.random.RandomState(seed).permutation(len(paths))
        paths, found = [paths[i] for i in order], [found[i] for i in order]
    if verbose:
        print(f"Found {len(paths)} files" + (f" belonging to {len(names)} classes." if labels == "inferred" else "."))
    if not paths:
        raise ValueError(f"No images found in directory {directory}. Allowed formats: {ALLOWED_FORMATS}")

    def make(part_paths, part_labels):
        return ImageDataset(part_paths, part_labels, names, label_mode, color_mode, int(batch_size), image_size,
                            shuffle, seed, interpolation, crop_to_aspect_ratio, pad_to_aspect_ratio)

    if not validation_split:
        return make(paths, found)
    n_val = int(validation_split * len(paths))
    train = (paths[:len(paths) - n_val], found[:len(paths) - n_val])
    val = (paths[len(paths) - n_val:], found[len(paths) - n_val:])
    if verbose:
        if subset in ("training", "both"):
            print(f"Using {len(train[0])} files for training.")
        if subset in ("validation", "both"):
            print(f"Using {len(val[0])} files for validation.")
    if subset == "training":
        return make(*train)
    if subset == "validation":
        return make(*val)
    return make(*train), make(*val)
