"""Writing Keras 3 files: ``model.save('x.keras')`` writes the zip Keras 3 writes (``metadata.json``,
``config.json``, ``model.weights.h5``), which ``keras.models.load_model`` opens; ``save_weights('x.weights.h5')``
writes that HDF5 layout alone. The inverse of :mod:`kandle.saving.keras_import`.

The config is kandle's own (Keras's names and keys) with what Keras 3's deserializer also needs: the
``module`` of every object, an ``InputLayer`` first in a Sequential, each layer's ``build_config``, and
the compile configuration. Weights go to ``layers/<snake_case(class)[_n]>/vars/<i>`` in layer order;
the optimizer's variables (iterations, learning rate, then each trained weight's slots) to
``optimizer/vars`` for SGD, Adam and AdamW (whose slots kandle keeps in Keras's order); with other
optimizers Keras starts the optimizer's state anew. Files are written to a temporary name, synced
and renamed.
"""

import datetime
import io
import json
import os
import tempfile
import zipfile

import numpy as np

from kandle import backend

def _policy(name):
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": name}, "registered_name": None}


_DTYPE = _policy("float32")


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError("Writing a Keras 3 file (.keras, .weights.h5) needs h5py: pip install h5py") from None
    return h5py


def _keras_object(module, spec):
    """``{"class_name", "config"}`` as Keras 3 serializes it, nested initializers included."""
    config = {k: (_keras_object("keras.initializers", v) if k.endswith("_initializer") and isinstance(v, dict) else v)
              for k, v in (spec.get("config") or {}).items()}
    return {"module": module, "class_name": spec["class_name"], "config": config, "registered_name": None}


def _layer_spec(spec, input_shapes):
    out = dict(spec)
    out.update(_keras_object("keras.layers", spec))
    if spec["class_name"] != "InputLayer":
        policy = out["config"].get("dtype")
        out["config"]["dtype"] = policy if isinstance(policy, dict) else _policy(policy or "float32")
        shapes = [[None] + list(s) for s in input_shapes]
        out["build_config"] = {"input_shape": shapes[0] if len(shapes) == 1 else shapes}
    return out


def _identifier(module, value):
    """A loss or metric as compile_config holds it: a name, or a serialized object."""
    if isinstance(value, str) and value.startswith("{"):
        return _keras_object(module, json.loads(value))
    return value


def keras_config(model):
    """The ``config.json`` object Keras 3 would write for `model` (with its compile configuration)."""
    from kandle.layers import custom

    written = [layer for layer in model.layers if custom.is_custom(layer)]
    if written:
        names = ", ".join(f'"{layer.name}" ({layer._class_name})' for layer in written)
        raise ValueError(f"kandle does not write layers recorded from kandle.ops (custom layers, Lambda, Normalization, "
                         f"ops between layers) to .keras files yet: {names}. Save with kandle's format instead "
                         "(model.save('model.kandle')), which keeps them.")
    core = model._core
    info = {name: core.layer_info(name) for name in core.layer_names()}
    config = model.get_config()
    shapes = {name: i[2] for name, i in info.items()}
    if model._class_name() == "Sequential":
        (input_shape,) = core.input_shapes()
        first = {"class_name": "InputLayer", "config": {"batch_shape": [None] + list(input_shape), "dtype": "float32",
                                                         "sparse": False, "ragged": False, "name": "input_layer",
                                                         "optional": False}}
        layers = [_layer_spec(first, [])] + [_layer_spec(s, shapes[s["config"]["name"]]) for s in config["layers"]]
        inner = {"name": config["name"], "trainable": True, "dtype": _DTYPE, "layers": layers,
                 "build_input_shape": [None] + list(input_shape)}
        out = {"module": "keras", "class_name": "Sequential", "config": inner, "registered_name": None,
               "build_config": {"input_shape": [None] + list(input_shape)}}
    else:
        inner = dict(config)
        inner["layers"] = [_layer_spec(s, shapes.get(s["name"], [])) for s in config["layers"]]
        out = {"module": "keras.src.models.functional", "class_name": "Functional", "config": inner,
               "registered_name": "Functional", "build_config": {"input_shape": None}}
    if model._compiled is not None:
        opt, loss, metrics = model._compiled
        if loss is None:  # a Python loss: Keras saves a registered function by name
            from kandle.saving.object_registration import get_registered_name
            loss = get_registered_name(model.loss) if isinstance(model.loss, type) or hasattr(model.loss, "call") \
                else getattr(model.loss, "__name__", "custom_loss")
        serialized = opt._serialize()
        from kandle.metrics import split_weighted

        entries = list(zip(metrics, getattr(model, "_metric_objects", None) or metrics))
        plain_ids, weighted_ids = split_weighted([m for m, _ in entries])
        plain = [(m, obj) for m, obj in entries if m is None or m in plain_ids]
        out["compile_config"] = {
            "optimizer": _keras_object("keras.optimizers", serialized),
            "loss": _identifier("keras.losses", loss), "loss_weights": None,
            "metrics": [_identifier("keras.metrics", m) if m is not None else
                        getattr(obj, "name", None) or getattr(obj, "__name__", "custom_metric")
                        for m, obj in plain] or None,
            "weighted_metrics": [_identifier("keras.metrics", m if isinstance(m, str) else json.dumps(m))
                                 for m in weighted_ids] or None,
            "run_eagerly": False, "steps_per_execution": 1, "jit_compile": False}
    return out


# Optimizers whose kandle slots per weight are Keras 3's optimizer variables in Keras's order (checked by
# tests/golden/make_keras_export.py); for the others no optimizer state is written and Keras starts it anew.
_KERAS_SLOT_ORDER = {"SGD", "Adam", "AdamW"}


def _write_weights(model, f, include_optimizer):
    layers_group = f.create_group("layers")
    counts = {}
    for layer in model.layers:
        key = backend.snake_case(layer._class_name)
        n = counts.get(key, -1) + 1
        counts[key] = n
        group = layers_group.create_group(key if n == 0 else f"{key}_{n}").create_group("vars")
        group.attrs["name"] = layer.name
        for i, w in enumerate(layer.get_weights()):
            group.create_dataset(str(i), data=np.asarray(w, dtype=np.float32))
    f.create_group("vars").attrs["name"] = model.name
    if not include_optimizer or model._compiled is None:
        return
    opt = model._compiled[0]
    serialized = opt._serialize()
    if serialized["class_name"] not in _KERAS_SLOT_ORDER:
        return
    group = f.create_group("optimizer").create_group("vars")
    group.attrs["name"] = str(serialized["config"].get("name", serialized["class_name"])).lower()
    group.create_dataset("0", data=np.int64(model._core.iterations))
    lr = model._core.learning_rate
    group.create_dataset("1", data=np.float32(lr if lr is not None else serialized["config"].get("learning_rate", 0.0)))
    for index, slot in enumerate(_keras_slot_order(model._core.optimizer_slots()), start=2):
        group.create_dataset(str(index), data=np.asarray(slot, dtype=np.float32))


def _keras_slot_order(slots):
    """Keras's order of the optimizer's variables: each weight's slots in turn, except Adam's
    amsgrad maxima (a third slot per weight), which Keras keeps after all the others."""
    if slots and all(len(s) == 3 for s in slots):  # Adam/AdamW with amsgrad: SGD has 0-1, Adam 2
        return [x for s in slots for x in s[:2]] + [s[2] for s in slots]
    return [x for s in slots for x in s]


def _atomic(path, data):
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as a plain open() would create it (mkstemp makes it private)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _weights_bytes(model, include_optimizer):
    h5py = _h5py()
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        _write_weights(model, f, include_optimizer)
    return buffer.getvalue()


def save_model(model, path, include_optimizer=True):
    """`model` as a Keras 3 ``.keras`` zip at `path` (atomically)."""
    from kandle import __version__

    metadata = {"keras_version": "3.15.1", "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
                "kandle_version": __version__}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("metadata.json", json.dumps(metadata))
        zf.writestr("config.json", json.dumps(keras_config(model)))
        zf.writestr("model.weights.h5", _weights_bytes(model, include_optimizer))
    _atomic(path, buffer.getvalue())


def save_weights(model, path):
    """The weights of `model` in Keras 3's ``.weights.h5`` layout at `path` (atomically)."""
    _atomic(path, _weights_bytes(model, include_optimizer=False))
