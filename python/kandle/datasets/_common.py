"""Owns what the dataset loaders share: finding an archive (explicit path, kandle's cache, Keras's
cache, else a verified download), telling the official file from a structurally valid stand-in,
reading tar members in memory, and unpickling them safely.
"""

import dataclasses
import gzip
import hashlib
import io
import os
import pickle
import tarfile
import warnings
import zlib

import numpy as np

from kandle.utils import data_utils

# Refuse archives that inflate past this: the largest real one (CIFAR-100) is 186 MB uncompressed.
MAX_UNCOMPRESSED_BYTES = 1 << 30


class DatasetFormatError(ValueError):
    """A dataset file is truncated, corrupt, or not laid out like the official one."""


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """A pickle asked for something other than numpy arrays: refused, nothing was executed.

    Both an ``UnpicklingError`` (what Keras raises) and a ``ValueError`` (like every other bad file).
    """


@dataclasses.dataclass(frozen=True)
class DatasetSource:
    """Where a dataset file comes from and how to recognise the official one."""

    fname: str  # file name in kandle's cache, and the name to give to the user
    origin: str  # official URL
    sha256: str  # official sha256; md5 is informative only (the one the dataset's home page lists)
    md5: str = ""
    keras_names: tuple = ()  # names the file has had in Keras's cache across Keras versions


@dataclasses.dataclass
class LocatedFile:
    """An archive read into memory: its path, bytes, and whether it is byte-identical to the official."""

    path: str
    data: bytes
    official: bool
    sha256: str


def kandle_cache_path(source):
    return os.path.join(data_utils.kandle_home(), "datasets", source.fname)


def keras_cache_paths(source):
    folder = os.path.join(data_utils.keras_home(), "datasets")
    return [os.path.join(folder, name) for name in source.keras_names]


def _read(path, source):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise OSError(f"Could not read the {source.fname} dataset file {path}: {e}") from e
    digest = hashlib.sha256(data).hexdigest()
    return LocatedFile(path, data, digest == source.sha256, digest)


def locate(source, path=None):
    """Return the dataset file as a ``LocatedFile``, downloading it only if no copy exists.

    Order: ``path`` if given; kandle's cache; Keras's cache (read-only, so a machine that ran Keras
    reuses its download); else the official URL into kandle's cache, checked against the official
    sha256. Hashing the bytes already in memory costs ~0.2 s for CIFAR-100, so no verification cache.
    """
    if path is not None:
        path = os.path.expanduser(os.fspath(path))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No {source.fname} dataset file at {path}.")
        return _read(path, source)
    own = kandle_cache_path(source)
    for candidate in [own] + keras_cache_paths(source):
        if os.path.isfile(candidate):
            return _read(candidate, source)
    try:
        data_utils.download(source.origin, own, file_hash=source.sha256)
    except data_utils.DownloadError as e:
        keras_paths = " or ".join(keras_cache_paths(source)[:1] or ["(none)"])
        raise data_utils.DownloadError(
            f"{e}\nThe {source.fname} dataset is not cached and could not be downloaded. Put the file "
            f"(from {source.origin}) at {own} (kandle's cache; $KANDLE_HOME/datasets if KANDLE_HOME is "
            f"set) or at {keras_paths} (Keras's cache), or pass its location as load_data(path=...)."
        ) from e
    return _read(own, source)


def warn_unofficial(located, source, summary):
    """Warn that a stand-in file is in use: the data may differ from what Keras users get."""
    warnings.warn(
        f"{located.path} is not the official {source.fname} (sha256 {located.sha256}, official "
        f"{source.sha256}); it was validated structurally ({summary}) and loaded.",
        UserWarning, stacklevel=3)


def _gunzip(data, path):
    """Inflate a (possibly multi-member) gzip stream, bounded so a bomb can't exhaust memory."""
    parts, total = [], 0
    while data:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        part = inflater.decompress(data, MAX_UNCOMPRESSED_BYTES - total + 1)
        total += len(part)
        if total > MAX_UNCOMPRESSED_BYTES:
            raise DatasetFormatError(f"{path} inflates past {MAX_UNCOMPRESSED_BYTES} bytes; refusing it.")
        if not inflater.eof:
            raise DatasetFormatError(f"{path} is truncated: the gzip stream ends early.")
        parts.append(part)
        data = inflater.unused_data.lstrip(b"\0")
    return b"".join(parts)


def read_tar_members(located, names):
    """Map each wanted member name to its bytes, without extracting anything to disk."""
    data, path = located.data, located.path
    try:
        if data[:2] == b"\x1f\x8b":
            data = _gunzip(data, path)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            out = {}
            for name in names:
                try:
                    info = archive.getmember(name)
                except KeyError:
                    raise DatasetFormatError(f"{path} has no member {name!r}; it is not a complete "
                                             f"copy of the dataset archive.") from None
                if not info.isfile():
                    raise DatasetFormatError(f"{path}: member {name!r} is not a regular file.")
                out[name] = archive.extractfile(info).read()
                if len(out[name]) != info.size:
                    raise DatasetFormatError(f"{path} is truncated inside member {name!r}.")
            return out
    except (tarfile.TarError, zlib.error, gzip.BadGzipFile, EOFError) as e:
        raise DatasetFormatError(f"{path} is not a readable tar archive ({type(e).__name__}: {e}); "
                                 f"delete it and download the dataset again.") from e


def _numpy_reconstruct():
    """numpy's array-rebuilding function, fetched from numpy itself rather than by its module path
    (``numpy.core`` in numpy 1, ``numpy._core`` in numpy 2, which warns when touched)."""
    return np.zeros(1).__reduce__()[0]


# Exactly what rebuilding a numpy array needs; every other global (os.system, builtins.eval, ...)
# is refused before it is looked up, so a tampered pickle cannot run code.
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for the CIFAR batches: plain containers plus numpy arrays, nothing else."""

    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"Refusing to load `{module}.{name}` from a dataset pickle; the "
                                    f"file may be corrupted or malicious.") from None


def load_pickle(raw, where):
    """Unpickle ``raw`` (Python 2 pickles, so bytes keys) with ``RestrictedUnpickler``."""
    try:
        return RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{where}: {e}") from None
    except Exception as e:  # truncated stream, garbage bytes: all mean a bad file
        raise DatasetFormatError(f"{where} is not a valid pickle ({type(e).__name__}: {e}).") from e


def cifar_batch(raw, where, label_keys, num_classes):
    """Validate one CIFAR batch dict and return (images (N, 32, 32, 3) uint8, {key: labels array})."""
    batch = load_pickle(raw, where)
    if not isinstance(batch, dict):
        raise DatasetFormatError(f"{where} holds a {type(batch).__name__}, not a CIFAR batch dict.")
    images = batch.get(b"data")
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2 \
            or images.shape[1] != 3072:
        desc = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
        raise DatasetFormatError(f"{where}: b'data' must be uint8 (N, 3072), got {desc}.")
    n = images.shape[0]
    labels = {}
    for key in label_keys:
        values = batch.get(key.encode())
        if not isinstance(values, (list, np.ndarray)) or len(values) != n:
            raise DatasetFormatError(f"{where}: {key} must be a list of {n} labels.")
        try:
            arr = np.asarray(values, dtype=np.int64)
        except (TypeError, ValueError, OverflowError) as e:
            raise DatasetFormatError(f"{where}: {key} holds non-integer labels ({e}).") from None
        if arr.ndim != 1 or (n and (arr.min() < 0 or arr.max() >= num_classes[key])):
            raise DatasetFormatError(f"{where}: {key} must be integers in [0, {num_classes[key]}).")
        labels[key] = arr
    # Stored channel-major (R plane, G plane, B plane); Keras returns channels-last. Contiguous, so
    # the result can be handed to the core without another copy.
    images = np.ascontiguousarray(images.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, labels


def check_label_names(raw, where, expected):
    """Validate a CIFAR meta pickle: each key holds the expected number of class names."""
    meta = load_pickle(raw, where)
    if not isinstance(meta, dict):
        raise DatasetFormatError(f"{where} holds a {type(meta).__name__}, not a dict of label names.")
    for key, count in expected.items():
        names = meta.get(key.encode())
        if not isinstance(names, list) or len(names) != count:
            raise DatasetFormatError(f"{where}: {key} must list {count} class names.")
