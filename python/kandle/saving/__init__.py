"""``kandle.saving``: ``save_model`` / ``load_model`` and the weights-only pair.

Separation of concerns: kandle's own files (one safetensors file: architecture, weights, compile
configuration, optimizer and random-generator state) are written and read by the Rust core
(``src/saving/``), atomically and with a checksum; this module picks the reader by the file's first
bytes, never by its extension, and wraps a loaded core in a ``Sequential``. Keras 3 ``.keras`` zips
and ``.weights.h5`` files are read by :mod:`kandle.saving.keras_import`. Nothing here unpickles or
executes anything from a file.
"""

import json
import os

from kandle import _kandle

_ZIP = b"PK\x03\x04"
_HDF5 = b"\x89HDF\r\n\x1a\n"


def _path(filepath):
    try:
        return os.fspath(filepath)
    except TypeError:
        raise TypeError(f"filepath must be a str or a path-like object, got {filepath!r}") from None


def _sniff(path):
    """'zip', 'hdf5' or 'kandle' (anything else: the core says what is wrong with it)."""
    if os.path.isdir(path):
        raise ValueError(f"Could not load '{path}': it is a directory (a TensorFlow SavedModel?); kandle "
                         "loads kandle model files and Keras 3 .keras files")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except FileNotFoundError:
        raise ValueError(f"Could not load '{path}': file not found") from None
    if head.startswith(_ZIP):
        return "zip"
    if head == _HDF5:
        return "hdf5"
    return "kandle"


def ask_to_proceed_with_overwrite(filepath):
    """Keras's prompt for ``overwrite=False`` on an existing file; True to go on."""
    while True:
        answer = input(f"[WARNING] {filepath} already exists - overwrite? [y/n]").strip().lower()
        if answer in ("y", "n"):
            break
        print('Enter "y" (overwrite) or "n" (cancel).')
    if answer == "n":
        return False
    print("[TIP] Next time specify overwrite=True!")
    return True


def _core_of(model, what):
    if getattr(model, "_core", None) is None:
        raise ValueError(f"Model \"{model.name}\" is not built yet, so it has no weights to {what}: give its first "
                         "layer input_shape=..., or call fit/predict on data first")
    return model._core


def _may_write(path, overwrite):
    return overwrite or not os.path.exists(path) or ask_to_proceed_with_overwrite(path)


def save_model(model, filepath, overwrite=True, include_optimizer=True, **kwargs):
    """Writes ``model`` to one file, atomically (a crash leaves the old file): a name ending in
    ``.keras`` gets a Keras 3 zip that Keras opens (:mod:`kandle.saving.keras_export`); any other name
    (``.kandle`` by convention, ``.h5`` as the 2018 tutorial writes) gets kandle's format, which also
    keeps the random streams and every optimizer's state."""
    path = _path(filepath)
    if _may_write(path, overwrite):
        core = _core_of(model, "save")
        if path.endswith(".keras"):
            from kandle.saving import keras_export

            return keras_export.save_model(model, path, bool(include_optimizer))
        _kandle.save_model(core, path, bool(include_optimizer))


def save_weights(model, filepath, overwrite=True, **kwargs):
    """The weights alone: Keras 3's HDF5 layout for a name ending in ``.weights.h5``, kandle's
    format otherwise."""
    path = _path(filepath)
    if _may_write(path, overwrite):
        core = _core_of(model, "save")
        if path.endswith(".weights.h5"):
            from kandle.saving import keras_export

            return keras_export.save_weights(model, path)
        _kandle.save_weights(core, path)


def load_weights(model, filepath, skip_mismatch=False, by_name=False, **kwargs):
    """Weights from a kandle model or weights file, or from a Keras 3 ``.weights.h5``/``.keras`` file,
    into a built model of the same architecture (checked layer by layer before anything is written)."""
    if skip_mismatch or by_name:
        raise ValueError("load_weights: skip_mismatch and by_name are not supported; weights load layer by layer")
    path = _path(filepath)
    kind = _sniff(path)
    if kind != "kandle":
        from kandle.saving import keras_import

        return keras_import.load_weights(model, path, kind)
    _kandle.load_weights(_core_of(model, "load"), path)


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """A model from a kandle file or a Keras 3 ``.keras`` zip, told apart by their first bytes.

    With ``compile=True`` a kandle file also restores the optimizer state and kandle's random
    generators, so ``fit`` continues exactly as the run that saved it would have. A corrupted,
    truncated or foreign file, or one from a newer kandle, raises ``ValueError`` naming the file.
    """
    from kandle.saving.object_registration import custom_object_scope

    path = _path(filepath)
    kind = _sniff(path)
    with custom_object_scope(custom_objects):
        if kind != "kandle":
            from kandle.saving import keras_import

            return keras_import.load_model(path, kind, compile=compile)
        core, config, compile_config = _kandle.load_model(path, compile=bool(compile))
        return _wrap(core, json.loads(config), None if compile_config is None else json.loads(compile_config))


def _wrap(core, config, compile_config):
    """The Python model around a core the Rust side built (layers attached by name)."""
    from kandle import losses, optimizers
    from kandle.layers import custom, deserialize
    from kandle.models import Model, Sequential

    if config["class_name"] == "Sequential":
        cfg = config["config"]
        model = Sequential(name=cfg["name"])
        model._input_shape = tuple(cfg["input_shape"])
        model._core = core
        for layer_config in cfg["layers"]:
            layer = deserialize(layer_config)
            if custom.is_custom(layer):  # its weights' Variables, as the saved graph declared them
                custom.record(layer, core.layer_info(layer.name)[2])
            layer._attach(core)
            model._layers.append(layer)
    else:
        model = Model.from_config(config["config"])
        model._use_core(core)
    if compile_config is not None:
        opt = optimizers.get(compile_config["optimizer"])
        loss, metrics = compile_config["loss"], list(compile_config["metrics"])
        model._compiled = (opt, losses.name_of(loss), [m if isinstance(m, str) else json.dumps(m) for m in metrics])
        if isinstance(loss, dict) and loss.get("class_name") == "kandle>GraphLoss":
            # A Python loss: the recorded graph trains as saved; the function itself, when the user
            # makes it known, is model.loss again.
            from kandle.saving.object_registration import get_registered_object
            name = loss["config"].get("name")
            model.optimizer, model.loss = opt, get_registered_object(name) or name
        else:
            model.optimizer, model.loss = opt, loss if isinstance(loss, str) else losses.deserialize(loss)
        opt._bind(model._core)
    return model


from kandle.saving.object_registration import (CustomObjectScope, custom_object_scope,  # noqa: E402
                                               get_custom_objects, get_registered_name, get_registered_object,
                                               register_keras_serializable)


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    raise AttributeError(f"kandle does not implement keras.saving.{name} yet")
