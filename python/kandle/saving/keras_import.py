"""Reading Keras 3 files: a ``.keras`` zip (``config.json`` + ``model.weights.h5``) becomes a kandle
``Sequential`` or functional ``Model`` with the same layers, calls and weights, and a ``.weights.h5``
file loads into a built model.

Layer configs are mapped to kandle's layers of the same Keras names (an unsupported layer is named in
the error); weights are read with h5py (needed only here) from ``layers/<group>/vars/<i>``, where Keras
names the group after the layer's class in snake case, numbered in order (``dense``, ``dense_1``, ...).
The compile configuration is applied when kandle knows it, and the optimizer's state (iterations,
learning rate, slots) for SGD, Adam and AdamW.
"""

import io
import json
import warnings
import zipfile
import zlib

import numpy as np

from kandle import backend, layers, losses, mixed_precision, optimizers

# Keys of Keras 3 configs that kandle's constructors do not take (the dtype policy is checked apart).
_LAYER_ONLY_KERAS = {"quantization_config", "lora_rank", "lora_alpha", "lora_enabled", "synchronized"}
_OPTIMIZER_ONLY_KERAS = {"is_legacy_optimizer", "jit_compile"}


def _fail(path, what):
    return ValueError(f"Could not load '{path}': {what}")


def _h5py(path):
    try:
        import h5py
    except ImportError:
        raise ImportError(f"Reading the Keras weights in '{path}' needs h5py: pip install h5py") from None
    return h5py


def _read_zip(path):
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if "config.json" not in names:
                raise _fail(path, "a zip file without config.json, so not a Keras 3 .keras model")
            config = json.loads(zf.read("config.json").decode("utf-8"))
            weights = zf.read("model.weights.h5") if "model.weights.h5" in names else None
    except ValueError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, UnicodeDecodeError, KeyError) as e:
        raise _fail(path, f"a damaged or truncated .keras zip ({type(e).__name__}: {e})") from None
    if not isinstance(config, dict):
        raise _fail(path, "its config.json is not a JSON object")
    return config, weights


def _dtype_ok(layer_name, dtype, path):
    """The layer's dtype policy is one kandle has (float32 where the file gives none)."""
    try:
        return mixed_precision.resolve(dtype if dtype is not None else "float32").name
    except (TypeError, ValueError) as e:
        raise _fail(path, f"layer '{layer_name}': {e}") from None


def _input_shape(cfg, path):
    for layer in cfg.get("layers", []):
        if layer.get("class_name") == "InputLayer":
            c = layer.get("config", {})
            shape = c.get("batch_shape") or c.get("batch_input_shape")
            if shape:
                return tuple(shape[1:])
    shape = cfg.get("build_input_shape")
    if not shape:
        first = (cfg.get("layers") or [{}])[0]
        shape = (first.get("build_config") or {}).get("input_shape") or first.get("config", {}).get("batch_input_shape")
    if not shape:
        raise _fail(path, "the model's input shape is not recorded (was it built before saving?)")
    return tuple(shape[1:])


def _layer(spec, path):
    """A kandle layer from a Keras layer spec ``{"class_name", "config", ...}``."""
    class_name, config = spec.get("class_name"), dict(spec.get("config") or {})
    name = config.get("name", class_name)
    cls = layers._BY_NAME.get(class_name) or {"MaxPool2D": layers.MaxPooling2D,
                                              "Convolution2D": layers.Conv2D}.get(class_name)
    if cls is None:
        raise _fail(path, f"layer '{name}' is a {class_name}, which kandle does not support "
                          f"(supported: {', '.join(sorted(layers._BY_NAME))})")
    config["dtype"] = _dtype_ok(name, config.get("dtype"), path)
    if isinstance(spec.get("name"), str):
        config["name"] = spec["name"]
    if isinstance(config.get("activation"), dict):  # a serialized function: {"config": "relu", ...}
        config["activation"] = config["activation"].get("config")
    for key in _LAYER_ONLY_KERAS:
        config.pop(key, None)
    try:
        return cls(**config)
    except (TypeError, ValueError) as e:
        raise _fail(path, f"layer '{name}' ({class_name}): {e}") from None


def _functional(config, path):
    """A functional model: its layers mapped as for a Sequential, then their calls replayed."""
    from kandle.layers.input_layer import InputLayer
    from kandle.models.model import Model

    def make(spec):
        if spec.get("class_name") == "InputLayer":
            return InputLayer.from_config(spec.get("config") or {})
        return _layer(spec, path)

    try:
        return Model._from_config(config.get("config") or {}, make)
    except ValueError as e:
        raise e if str(e).startswith("Could not load") else _fail(path, str(e)) from None
    except (KeyError, TypeError, IndexError) as e:
        raise _fail(path, f"its functional config is incomplete or malformed ({type(e).__name__}: {e})") from None


def _sequential(config, path):
    from kandle.models.sequential import Sequential

    if config.get("class_name") == "Functional":
        return _functional(config, path)
    if config.get("class_name") != "Sequential":
        raise _fail(path, f"its model is a {config.get('class_name')!r}; kandle loads Sequential and functional "
                          "models only")
    cfg = config.get("config") or {}
    model = Sequential(name=cfg.get("name"))
    model.add(layers.Input(_input_shape(cfg, path)))
    for spec in cfg.get("layers", []):
        if spec.get("class_name") != "InputLayer":
            try:
                model.add(_layer(spec, path))
            except ValueError as e:
                raise e if str(e).startswith("Could not load") else _fail(path, str(e)) from None
    return model


def _set_h5_weights(model, f, path):
    """Keras 3's layout: ``layers/<snake_case(class)[_n]>/vars/<i>``, in the order of the layers."""
    group = f.get("layers")
    if group is None:
        raise _fail(path, "its weights file has no 'layers' group (a Keras 2 HDF5 file? re-save it with Keras 3)")
    counts, pending = {}, []
    for layer in model.layers:
        key = backend.snake_case(layer._class_name)
        n = counts.get(key, -1) + 1
        counts[key] = n
        key = key if n == 0 else f"{key}_{n}"
        vars_group = group.get(f"{key}/vars")
        stored = [] if vars_group is None else [np.asarray(vars_group[str(i)]) for i in range(len(vars_group))]
        expected = [w.shape for w in layer.get_weights()]
        if [s.shape for s in stored] != expected:
            raise _fail(path, f"layer '{layer.name}' ({layer._class_name}) expects weights of shapes {expected}, "
                              f"the file has {[s.shape for s in stored]} under layers/{key}")
        pending.append((layer, stored))
    for layer, stored in pending:
        layer.set_weights(stored)


def _load_h5(model, source, path):
    h5py = _h5py(path)
    try:
        with h5py.File(source, "r") as f:
            _set_h5_weights(model, f, path)
    except OSError as e:
        raise _fail(path, f"its weights are not a readable HDF5 file ({e})") from None


def _name(identifier, what):
    """A loss or metric name from a Keras 3 serialized identifier."""
    if isinstance(identifier, str):
        return identifier
    if isinstance(identifier, dict):
        cfg = identifier.get("config") or {}
        if what == "loss":
            if identifier.get("class_name") in losses._CLASSES:
                return losses.name_of(losses.deserialize(identifier))
        if what == "metric":  # a metric object kandle has: rebuilt with its configuration
            from kandle import metrics as metrics_module
            cls = getattr(metrics_module, str(identifier.get("class_name")), None)
            if isinstance(cls, type) and issubclass(cls, metrics_module.Metric) and isinstance(cfg, dict):
                try:
                    return cls(**cfg)
                except (TypeError, ValueError):
                    pass  # by its name below
        if isinstance(cfg, dict) and isinstance(cfg.get("name"), str):
            return cfg["name"]
        if isinstance(cfg, str):
            return cfg
    raise ValueError(f"unsupported {what} {identifier!r}")


def _compile(model, compile_config, path):
    if not compile_config:
        return
    try:
        opt = compile_config["optimizer"]
        if isinstance(opt, dict):
            opt = {"class_name": opt.get("class_name"),
                   "config": {k: v for k, v in (opt.get("config") or {}).items() if k not in _OPTIMIZER_ONLY_KERAS}}
        def flat(key):
            out = []
            for m in compile_config.get(key) or []:
                out.extend(m if isinstance(m, list) else [m])
            return [_name(m, "metric") for m in out if m is not None]

        model.compile(optimizer=optimizers.get(opt), loss=_name(compile_config["loss"], "loss"),
                      metrics=flat("metrics"), weighted_metrics=flat("weighted_metrics") or None)
    except (KeyError, TypeError, ValueError) as e:
        warnings.warn(f"'{path}': its compile configuration could not be restored ({e}); the model is loaded "
                      "uncompiled: call model.compile(...) before training it", stacklevel=3)


def _load_optimizer(model, weights, path):
    """The optimizer's state from ``optimizer/vars`` (iterations, learning rate, then each trained
    weight's slots: Keras's order for SGD, Adam and AdamW, as kandle's); skipped with a warning, as
    Keras does, when it does not fit this optimizer."""
    from kandle.saving.keras_export import _KERAS_SLOT_ORDER

    opt = model._compiled[0] if model._compiled else None
    if opt is None or weights is None or opt._serialize()["class_name"] not in _KERAS_SLOT_ORDER:
        return
    h5py = _h5py(path)
    with h5py.File(io.BytesIO(weights), "r") as f:
        group = f.get("optimizer/vars")
        if group is None or len(group) < 2:
            return
        values = [np.asarray(group[str(i)]) for i in range(len(group))]
    trained = model.trainable_weights
    rest = values[2:]
    per = len(rest) // len(trained) if trained else 0
    if per * len(trained) != len(rest):
        warnings.warn(f"'{path}': skipping the optimizer's state ({len(rest)} variables for {len(trained)} trained "
                      "weights); training restarts it", stacklevel=3)
        return
    rest = [np.require(v, dtype=np.float32, requirements="C") for v in rest]
    n = len(trained)
    if per == 3:  # Adam's amsgrad maxima come after every weight's (momentum, velocity)
        slots = [[rest[2 * i], rest[2 * i + 1], rest[2 * n + i]] for i in range(n)]
    else:
        slots = [rest[i * per:(i + 1) * per] for i in range(n)]
    try:
        model._core.set_optimizer_state(slots if per else [], int(values[0]))
    except ValueError as e:
        warnings.warn(f"'{path}': skipping the optimizer's state ({e}); training restarts it", stacklevel=3)
        return
    model._core.learning_rate = float(values[1])


def load_model(path, kind, compile=True):
    if kind == "hdf5" and str(path).endswith(".weights.h5"):
        raise _fail(path, "a weights file (Keras 3's .weights.h5) holds no model: build the model and call "
                          "model.load_weights() on it")
    if kind == "hdf5":
        raise _fail(path, "a Keras 2 HDF5 (.h5) model, which kandle does not read; re-save it with Keras 3 as .keras")
    config, weights = _read_zip(path)
    model = _sequential(config, path)
    if weights is not None:
        _load_h5(model, io.BytesIO(weights), path)
    elif model.get_weights():
        raise _fail(path, "the zip holds no model.weights.h5")
    if compile:
        _compile(model, config.get("compile_config"), path)
        _load_optimizer(model, weights, path)
    return model


def load_weights(model, path, kind):
    """Keras 3 weights (``.weights.h5``, or those inside a ``.keras`` zip) into a built kandle model."""
    if getattr(model, "_core", None) is None:
        raise ValueError(f"Model \"{model.name}\" is not built yet: build it before load_weights")
    if kind == "zip":
        _, weights = _read_zip(path)
        if weights is None:
            raise _fail(path, "the zip holds no model.weights.h5")
        return _load_h5(model, io.BytesIO(weights), path)
    _load_h5(model, path, path)
