"""Generate the functional-graph golden fixtures (``tests/golden/graph/``) from REAL Keras 3.

This script runs only where Keras 3 and TensorFlow are installed -- NOT in kandle's own
environment. The committed fixtures were produced with:

    tensorflow-cpu 2.21.0, keras 3.15.1 (TensorFlow backend), h5py 3.14.0, numpy 2.4.6, Python 3.11

in a virtual environment outside the repository, made with

    python3 -m venv /work/kerasenv
    /work/kerasenv/bin/pip install tensorflow-cpu keras numpy h5py

Regenerate (from the repository root) with exactly:

    /work/kerasenv/bin/python tests/golden/make_golden_graph.py

Everything is seeded (``np.random.default_rng`` / ``deterministic.py`` for data and weights,
``keras.utils.set_random_seed(0)`` and TensorFlow op determinism for Keras, oneDNN off) and the .npz
files are written with fixed zip timestamps, so a rerun with the same versions reproduces the .npz
and .json files byte for byte (``--check`` verifies that without touching the committed files).
``mini_resnet.keras`` is not checked: its ``model.weights.h5`` is reproduced byte for byte, but its
``metadata.json`` holds the save date and its ``config.json`` the ``shared_object_id`` (a Python
``id()``) of the shared dtype policy.

All arrays are float32 (history losses float64, labels int64), channels_last. npz keys use ``/``
as separator (``np.load(f)["add_2/x0"]``); every npz also has a ``meta`` key (JSON of the versions).

Files (the exact JSON schemas are documented in ``tests/golden/graph/README.md``):

* ``layers.npz`` / ``layers.json`` -- single layers called eagerly: merge layers (Add, Subtract,
  Multiply, Average, Maximum, Minimum, Concatenate), BatchNormalization (inference and one training
  call), ZeroPadding2D, AveragePooling2D, MaxPooling2D, GlobalMax/AveragePooling2D, strided Conv2D.
* ``graphs.npz`` / ``graphs.json`` -- three small functional models (fan-out + Add, two Conv2D
  branches + Concatenate, two inputs), their predictions, and two epochs of SGD(momentum) training.
* ``mini_resnet.npz`` / ``mini_resnet.json`` / ``mini_resnet.keras`` -- a small ResNet made of the
  deeplearning.ai "Residual Networks" assignment's ``convolutional_block`` and ``identity_block``:
  initial weights, predictions, training with SGD(momentum) and Adam, predictions with the
  ``deterministic.py`` weights; the ``.keras`` file is the freshly built model (initial weights).
* ``resnet50.npz`` / ``resnet50.json`` -- the assignment's full ResNet50 (64x64x3, 6 classes):
  its layer table and parameter counts, and its outputs (inference and ``training=True``) with the
  ``deterministic.py`` weights (the 94 MB of weights are NOT stored: regenerate them with
  ``deterministic.fill``).
"""

import io
import json
import os
import sys
import zipfile

os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
# Plain Eigen kernels: oneDNN picks kernels (and summation orders) by CPU, fixtures should not.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402
from keras import layers  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import deterministic  # noqa: E402

tf.get_logger().setLevel("ERROR")

OUTNAMES = ("layers.npz", "layers.json", "graphs.npz", "graphs.json", "mini_resnet.npz",
            "mini_resnet.json", "resnet50.npz", "resnet50.json")


def _h5py_version():
    try:
        import h5py
        return h5py.__version__
    except ImportError:
        return None


META = {
    "keras": keras.__version__,
    "tensorflow": tf.__version__,
    "numpy": np.__version__,
    "h5py": _h5py_version(),
    "backend": keras.backend.backend(),
    "python": sys.version.split()[0],
    "generator": "tests/golden/make_golden_graph.py",
}


def setup_determinism():
    keras.utils.set_random_seed(0)
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:
        pass


def f32(a):
    return np.asarray(keras.ops.convert_to_numpy(a) if not isinstance(a, np.ndarray) else a,
                      dtype=np.float32)


def save_npz(path, arrays):
    """Like np.savez_compressed, but with fixed zip timestamps so reruns are byte-identical."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            arr = np.asarray(arrays[key])
            assert arr.dtype != object, key
            buf = io.BytesIO()
            np.lib.format.write_array(buf, arr, allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def _jsonable(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serializable: {type(o)}")


def save_json(path, obj, indent=1):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=indent, sort_keys=False, default=_jsonable, ensure_ascii=True)
        f.write("\n")


def shape_list(shape):
    return [None if d is None else int(d) for d in shape]


# --------------------------------------------------------------------------------------------
# model introspection shared by graphs / mini_resnet / resnet50
# --------------------------------------------------------------------------------------------

def relevant_nodes(model):
    nodes = set()
    for v in model._nodes_by_depth.values():
        nodes.update(id(n) for n in v)
    return nodes


def connected_to(model, layer, full=False):
    """Inbound layer names in the order of the call's input tensors (as the summary's
    ``Connected to`` column, without the ``[node][tensor]`` suffix unless ``full``)."""
    rel = relevant_nodes(model)
    out = []
    for node in layer._inbound_nodes:
        if id(node) not in rel:
            continue
        for t in node.input_tensors:
            h = t._keras_history
            out.append(f"{h.operation.name}[{h.node_index}][{h.tensor_index}]" if full
                       else h.operation.name)
    return out


def layer_table(model):
    """``[name, class_name, output_shape, param_count, connected_to]`` per ``model.layers``."""
    rows = []
    for layer in model.layers:
        out = layer.output
        shape = shape_list(out.shape) if not isinstance(out, (list, tuple)) else \
            [shape_list(o.shape) for o in out]
        rows.append([layer.name, type(layer).__name__, shape, int(layer.count_params()),
                     connected_to(model, layer)])
    return rows


def param_counts(model):
    tr = int(sum(int(np.prod(v.shape)) for v in model.trainable_weights))
    nt = int(sum(int(np.prod(v.shape)) for v in model.non_trainable_weights))
    total = int(model.count_params())
    assert tr + nt == total, (tr, nt, total)
    return {"total": total, "trainable": tr, "non_trainable": nt}


def weight_info(model):
    """Per ``model.get_weights()`` entry: ``{"path", "name", "shape", "trainable", "kind"}``."""
    ws = model.weights
    gw = model.get_weights()
    assert len(ws) == len(gw)
    info = []
    for v, a in zip(ws, gw):
        assert tuple(v.shape) == a.shape
        info.append({"path": v.path, "name": v.name, "shape": list(a.shape),
                     "trainable": bool(v.trainable), "kind": deterministic.kind_of(v.name)})
    return info


def det_weights(model, scheme="sine"):
    return deterministic.fill([(deterministic.kind_of(v.name), tuple(v.shape))
                               for v in model.weights], scheme=scheme)


def summary_text(model):
    """``model.summary()`` as Keras prints it (default line length; rich would crop the table to
    its console width, 80 columns when not on a terminal, so the width is raised for the call)."""
    lines = []
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "250"
    try:
        model.summary(print_fn=lambda s, *a, **k: lines.append(s))
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old
    return "\n".join(line.rstrip() for line in "\n".join(lines).split("\n")).strip("\n")


def put_weights(out, prefix, weights, stem="w"):
    for i, w in enumerate(weights):
        out[f"{prefix}{stem}{i}"] = f32(w)


# --------------------------------------------------------------------------------------------
# 1) layers.npz / layers.json
# --------------------------------------------------------------------------------------------

S = (7, 6, 4)  # default per-sample input shape


def layer_cases():
    """(case, class name, constructor kwargs, per-sample input shapes)."""
    c = [
        ("add_2", "Add", {}, [S, S]),
        ("add_3", "Add", {}, [S, S, S]),
        ("subtract", "Subtract", {}, [S, S]),
        ("multiply", "Multiply", {}, [S, S]),
        ("multiply_3", "Multiply", {}, [(5,), (5,), (5,)]),
        ("average", "Average", {}, [S, S]),
        ("average_3", "Average", {}, [S, S, S]),
        ("maximum", "Maximum", {}, [S, S]),
        ("minimum", "Minimum", {}, [S, S]),
        ("concat_last", "Concatenate", {"axis": -1}, [(7, 6, 4), (7, 6, 5)]),
        ("concat_last_3", "Concatenate", {}, [(7, 6, 4), (7, 6, 1), (7, 6, 3)]),
        ("concat_axis1", "Concatenate", {"axis": 1}, [(7, 6, 4), (3, 6, 4)]),
        ("concat_axis2", "Concatenate", {"axis": 2}, [(7, 6, 4), (7, 2, 4)]),
        ("concat_2d", "Concatenate", {"axis": -1}, [(4,), (6,)]),
        # BatchNormalization: y (training=False), then y_train (training=True, updates stats).
        ("bn_default", "BatchNormalization", {}, [S]),
        ("bn_axis3_m09_e1e-3", "BatchNormalization",
         {"axis": 3, "momentum": 0.9, "epsilon": 1e-3}, [(7, 6, 5)]),
        ("bn_center_false", "BatchNormalization", {"center": False}, [S]),
        ("bn_scale_false", "BatchNormalization", {"scale": False}, [S]),
        ("bn_2d", "BatchNormalization", {}, [(5,)]),
        ("zeropad_1", "ZeroPadding2D", {"padding": 1}, [S]),
        ("zeropad_2_1", "ZeroPadding2D", {"padding": (2, 1)}, [S]),
        ("zeropad_12_30", "ZeroPadding2D", {"padding": ((1, 2), (3, 0))}, [S]),
        ("zeropad_3", "ZeroPadding2D", {"padding": (3, 3)}, [(5, 5, 3)]),
        ("avgpool_2_valid", "AveragePooling2D", {"pool_size": (2, 2)}, [S]),
        ("avgpool_3_s2_valid", "AveragePooling2D",
         {"pool_size": (3, 3), "strides": (2, 2), "padding": "valid"}, [S]),
        ("avgpool_3_s2_same", "AveragePooling2D",
         {"pool_size": (3, 3), "strides": (2, 2), "padding": "same"}, [S]),
        ("avgpool_2_same_odd", "AveragePooling2D",
         {"pool_size": (2, 2), "padding": "same"}, [(7, 7, 4)]),
        ("avgpool_3_s1_same", "AveragePooling2D",
         {"pool_size": (3, 3), "strides": (1, 1), "padding": "same"}, [(5, 4, 2)]),
        ("maxpool_3_s2_valid", "MaxPooling2D",
         {"pool_size": (3, 3), "strides": (2, 2)}, [S]),
        ("maxpool_3_s2_same", "MaxPooling2D",
         {"pool_size": (3, 3), "strides": (2, 2), "padding": "same"}, [S]),
        ("maxpool_3_s2_valid_16", "MaxPooling2D",
         {"pool_size": (3, 3), "strides": (2, 2)}, [(16, 16, 3)]),
        ("gmp", "GlobalMaxPooling2D", {}, [S]),
        ("gmp_keepdims", "GlobalMaxPooling2D", {"keepdims": True}, [S]),
        ("gap", "GlobalAveragePooling2D", {}, [S]),
        ("gap_keepdims", "GlobalAveragePooling2D", {"keepdims": True}, [S]),
        ("conv_3x3_s2_valid", "Conv2D",
         {"filters": 5, "kernel_size": (3, 3), "strides": (2, 2), "padding": "valid"}, [S]),
        ("conv_3x3_s2_same", "Conv2D",
         {"filters": 5, "kernel_size": (3, 3), "strides": (2, 2), "padding": "same"}, [S]),
        ("conv_1x1", "Conv2D", {"filters": 3, "kernel_size": (1, 1)}, [S]),
        ("conv_1x1_s2", "Conv2D",
         {"filters": 3, "kernel_size": (1, 1), "strides": (2, 2)}, [S]),
        ("conv_7x7_s2_valid", "Conv2D",
         {"filters": 4, "kernel_size": (7, 7), "strides": (2, 2), "padding": "valid"},
         [(13, 13, 3)]),
    ]
    return c


def layer_weight_values(rng, layer):
    vals = []
    for v in layer.weights:
        shape = tuple(v.shape)
        if v.name == "kernel":
            a = rng.normal(0.0, 0.5, shape)
        elif v.name == "bias" or v.name == "beta":
            a = rng.normal(0.0, 0.3, shape)
        elif v.name == "gamma":
            a = 1.0 + rng.normal(0.0, 0.3, shape)
        elif v.name == "moving_mean":
            a = rng.normal(0.0, 0.5, shape)
        elif v.name == "moving_variance":
            a = rng.uniform(0.5, 2.0, shape)
        else:
            raise ValueError(v.path)
        vals.append(f32(a))
    return vals


def make_layers():
    rng = np.random.default_rng(11)
    arrays = {"meta": np.array(json.dumps(META))}
    spec = {}
    checks = {}
    for case, class_name, kwargs, shapes in layer_cases():
        layer = getattr(layers, class_name)(**kwargs)
        xs = [f32(rng.normal(0.0, 1.0, (3,) + tuple(s))) for s in shapes]
        arg = xs if len(xs) > 1 else xs[0]
        layer(arg, training=False)  # builds
        w = layer_weight_values(rng, layer)
        if w:
            layer.set_weights(w)
        y = f32(layer(arg, training=False))
        for i, x in enumerate(xs):
            arrays[f"{case}/x{i}"] = x
        put_weights(arrays, f"{case}/", w)
        arrays[f"{case}/y"] = y
        entry = {"class_name": class_name, "config": layer.get_config(),
                 "input_shapes": [list(s) for s in shapes], "n_inputs": len(xs),
                 "weights": [v.name for v in layer.weights], "has_train": False}
        if class_name == "BatchNormalization":
            y_train = f32(layer(arg, training=True))
            after = [f32(a) for a in layer.get_weights()]
            arrays[f"{case}/y_train"] = y_train
            put_weights(arrays, f"{case}/", after, stem="w_after_train")
            entry["has_train"] = True
            checks[case] = check_bn(layer, xs[0], w, y, y_train, after)
        if case == "avgpool_3_s2_same":
            checks[case] = check_avgpool_same(xs[0], y, 3, 2)
        if case == "avgpool_2_same_odd":
            checks[case] = check_avgpool_same(xs[0], y, 2, 2)
        if case in checks:
            entry["numpy_check"] = checks[case]
        spec[case] = entry
    return arrays, spec, checks


def check_bn(layer, x, w, y, y_train, after):
    """NumPy re-derivation of BatchNormalization, to document (and assert) what Keras does."""
    cfg = layer.get_config()
    axis = cfg["axis"]
    axis = axis[0] if isinstance(axis, (list, tuple)) else axis
    axis = axis % x.ndim
    red = tuple(a for a in range(x.ndim) if a != axis)
    names = [v.name for v in layer.weights]
    d = dict(zip(names, [wi.astype(np.float64) for wi in w]))
    c = x.shape[axis]
    gamma = d.get("gamma", np.ones(c))
    beta = d.get("beta", np.zeros(c))
    eps, mom = cfg["epsilon"], cfg["momentum"]
    bshape = [1] * x.ndim
    bshape[axis] = c
    r = lambda a: a.reshape(bshape)  # noqa: E731
    xd = x.astype(np.float64)
    ref = (xd - r(d["moving_mean"])) / np.sqrt(r(d["moving_variance"]) + eps) * r(gamma) + r(beta)
    mean = xd.mean(axis=red)
    var = xd.var(axis=red)  # biased
    ref_t = (xd - r(mean)) / np.sqrt(r(var) + eps) * r(gamma) + r(beta)
    mm = d["moving_mean"] * mom + mean * (1 - mom)
    mv_biased = d["moving_variance"] * mom + var * (1 - mom)
    n = int(np.prod([x.shape[a] for a in red]))
    mv_unbiased = d["moving_variance"] * mom + var * n / (n - 1) * (1 - mom)
    a = dict(zip(names, after))
    res = {
        "inference_max_err": float(np.abs(ref - y).max()),
        "train_max_err_biased_batch_var": float(np.abs(ref_t - y_train).max()),
        "moving_mean_max_err": float(np.abs(mm - a["moving_mean"]).max()),
        "moving_var_max_err_biased": float(np.abs(mv_biased - a["moving_variance"]).max()),
        "moving_var_max_err_unbiased": float(np.abs(mv_unbiased - a["moving_variance"]).max()),
    }
    assert res["inference_max_err"] < 1e-5 and res["train_max_err_biased_batch_var"] < 1e-4, res
    assert res["moving_mean_max_err"] < 1e-6, res
    return res


def check_avgpool_same(x, y, pool, stride):
    """TF 'same' average pooling: is the divisor the number of VALID (non-padding) cells?"""
    n, h, w, c = x.shape
    oh, ow = -(-h // stride), -(-w // stride)
    ph = max((oh - 1) * stride + pool - h, 0)
    pw = max((ow - 1) * stride + pool - w, 0)
    top, left = ph // 2, pw // 2
    excl = np.zeros((n, oh, ow, c))
    incl = np.zeros((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * stride - top, j * stride - left
            rs = slice(max(r0, 0), min(r0 + pool, h))
            cs = slice(max(c0, 0), min(c0 + pool, w))
            win = x[:, rs, cs, :].astype(np.float64)
            excl[:, i, j] = win.mean(axis=(1, 2))
            incl[:, i, j] = win.sum(axis=(1, 2)) / (pool * pool)
    res = {"pad_top_bottom": [top, ph - top], "pad_left_right": [left, pw - left],
           "max_err_excluding_padding": float(np.abs(excl - y).max()),
           "max_err_including_padding": float(np.abs(incl - y).max())}
    return res


# --------------------------------------------------------------------------------------------
# 2) graphs.npz / graphs.json
# --------------------------------------------------------------------------------------------

def graph_fanout():
    x = keras.Input((5,), name="x")
    h = layers.Dense(6, activation="relu", name="d1")(x)
    a = layers.Dense(4, name="d2")(h)
    b = layers.Dense(4, name="d3")(h)
    s = layers.Add(name="add")([a, b])
    out = layers.Dense(3, activation="softmax", name="out")(s)
    return keras.Model(x, out, name="fanout"), 3


def graph_conv_concat():
    x = keras.Input((8, 7, 3), name="img")
    a = layers.Conv2D(4, (3, 3), padding="same", activation="relu", name="conv_a")(x)
    b = layers.Conv2D(3, (1, 1), activation="tanh", name="conv_b")(x)
    c = layers.Concatenate(name="concat")([a, b])
    g = layers.GlobalAveragePooling2D(name="gap")(c)
    out = layers.Dense(3, activation="softmax", name="out")(g)
    return keras.Model(x, out, name="conv_concat"), 3


def graph_two_inputs():
    ia = keras.Input((8,), name="in_a")
    ib = keras.Input((5,), name="in_b")
    a = layers.Dense(4, activation="relu", name="da")(ia)
    b = layers.Dense(3, activation="relu", name="db")(ib)
    c = layers.Concatenate(name="concat")([a, b])
    out = layers.Dense(2, activation="softmax", name="out")(c)
    return keras.Model([ia, ib], out, name="two_inputs"), 2


GRAPH_FIT = {"optimizer": {"class_name": "SGD", "config": {"learning_rate": 0.05, "momentum": 0.9}},
             "loss": "categorical_crossentropy", "epochs": 2, "batch_size": 4, "shuffle": False,
             "n_samples": 12}


def make_graphs():
    arrays = {"meta": np.array(json.dumps(META))}
    spec = {}
    for gi, (gname, build) in enumerate((("fanout", graph_fanout),
                                         ("conv_concat", graph_conv_concat),
                                         ("two_inputs", graph_two_inputs))):
        keras.backend.clear_session()
        model, n_classes = build()
        n = GRAPH_FIT["n_samples"]
        xs = []
        for k, inp in enumerate(model.inputs):
            base = deterministic.inputs((n,) + tuple(inp.shape[1:]), seed=100 + 10 * gi + k)
            xs.append(f32(2.0 * base - 1.0))  # in [-1, 1)
        labels = np.random.default_rng(200 + gi).integers(0, n_classes, n).astype(np.int64)
        y = f32(np.eye(n_classes)[labels])
        w0 = det_weights(model, "hash")  # full-rank kernels (the "sine" ones have rank 2)
        model.set_weights(w0)
        summary = summary_text(model)  # before compile: no "Optimizer params" line
        feed = xs if len(xs) > 1 else xs[0]
        pred = f32(model.predict(feed, batch_size=n, verbose=0))
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05, momentum=0.9),
                      loss="categorical_crossentropy")
        hist = model.fit(feed, y, epochs=2, batch_size=4, shuffle=False, verbose=0)
        after = model.get_weights()
        pred_after = f32(model.predict(feed, batch_size=n, verbose=0))
        for k, x in enumerate(xs):
            arrays[f"{gname}/x{k}"] = x
        arrays[f"{gname}/y"] = y
        arrays[f"{gname}/labels"] = labels
        put_weights(arrays, f"{gname}/", w0)
        arrays[f"{gname}/pred"] = pred
        put_weights(arrays, f"{gname}/after/", after)
        arrays[f"{gname}/loss"] = np.array(hist.history["loss"], dtype=np.float64)
        arrays[f"{gname}/pred_after"] = pred_after
        spec[gname] = {
            "model_name": model.name,
            "model_config": json.loads(model.to_json()),
            "input_names": [t._keras_history.operation.name for t in model.inputs],
            "layers": layer_table(model),
            "connected_to_full": {l.name: connected_to(model, l, full=True) for l in model.layers},
            "params": param_counts(model),
            "weights": weight_info(model),
            "n_inputs": len(xs),
            "fit": GRAPH_FIT,
            "history": {k: [float(v) for v in vals] for k, vals in hist.history.items()},
            "summary": summary,
            "weights_scheme": "deterministic.fill(..., scheme='hash')",
        }
    return arrays, spec


# --------------------------------------------------------------------------------------------
# 3) the deeplearning.ai "Residual Networks" assignment's blocks (tests/golden/resnet_assignment.py)
# --------------------------------------------------------------------------------------------

import resnet_assignment  # noqa: E402

_assignment = resnet_assignment.build(keras)
identity_block, convolutional_block = _assignment.identity_block, _assignment.convolutional_block
ResNet50, MiniResNet = _assignment.ResNet50, _assignment.MiniResNet


def block_outputs(model):
    """Names of the layers ending each residual block (the Activation after each Add), in order."""
    names = []
    for layer in model.layers:
        if isinstance(layer, layers.Activation):
            inb = connected_to(model, layer)
            if inb and isinstance(model.get_layer(inb[0]), layers.Add):
                names.append(layer.name)
    return names


def stats_model(model, names):
    """A model giving (block outputs..., flatten output, final output)."""
    flat = [l for l in model.layers if isinstance(l, layers.Flatten)][-1]
    outs = [model.get_layer(n).output for n in names] + [flat.output, model.output]
    return keras.Model(model.input, outs), flat.name


def det_outputs(model, x, scheme="sine"):
    """Outputs with the deterministic.py weights (``scheme``; keys ``det_*`` for "sine", ``hash_*``
    for "hash"): inference (``*_pred``), ``training=True`` (``*_train``), the Flatten features in
    both modes (``*_features``, ``*_train_features``), and [mean, std, min, max] of each residual
    block's output (``*_block_stats``, ``*_train_block_stats``)."""
    p = {"sine": "det", "hash": "hash"}[scheme]
    model.set_weights(det_weights(model, scheme))
    names = block_outputs(model)
    sm, flat_name = stats_model(model, names)
    inf = [f32(o) for o in sm(x, training=False)]
    pred = f32(model.predict(x, batch_size=len(x), verbose=0))
    assert np.allclose(pred, inf[-1], rtol=1e-5, atol=1e-6)
    trn = [f32(o) for o in sm(x, training=True)]
    stats = np.array([[b.mean(), b.std(), b.min(), b.max()] for b in inf[:-2]], dtype=np.float32)
    stats_t = np.array([[b.mean(), b.std(), b.min(), b.max()] for b in trn[:-2]], dtype=np.float32)
    return {
        f"{p}_pred": inf[-1], f"{p}_train": trn[-1],
        f"{p}_features": inf[-2], f"{p}_train_features": trn[-2],
        f"{p}_block_stats": stats, f"{p}_train_block_stats": stats_t,
    }, names, flat_name


def make_mini_resnet(keras_path):
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    model = MiniResNet()
    model.save(keras_path)  # freshly built: initial weights, not compiled
    arrays = {"meta": np.array(json.dumps(META))}
    n, n_classes = 24, 5
    x = deterministic.inputs((n, 32, 32, 3), seed=1)
    labels = np.random.default_rng(5).permutation(np.arange(n) % n_classes).astype(np.int64)
    y = f32(np.eye(n_classes)[labels])
    init = [f32(w) for w in model.get_weights()]
    summary = summary_text(model)  # before compile: no "Optimizer params" line
    arrays["x"] = x
    arrays["y"] = y
    arrays["labels"] = labels
    put_weights(arrays, "", init)
    arrays["pred"] = f32(model.predict(x, batch_size=n, verbose=0))
    opts = {
        "sgd_momentum": ("SGD", {"learning_rate": 0.01, "momentum": 0.9}),
        "adam": ("Adam", {"learning_rate": 0.001}),
    }
    histories = {}
    for oname, (cls, cfg) in opts.items():
        model.set_weights(init)
        model.compile(optimizer=getattr(keras.optimizers, cls)(**cfg),
                      loss="categorical_crossentropy", metrics=["accuracy"])
        hist = model.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
        put_weights(arrays, f"{oname}/", model.get_weights())
        arrays[f"{oname}/loss"] = np.array(hist.history["loss"], dtype=np.float64)
        arrays[f"{oname}/accuracy"] = np.array(hist.history["accuracy"], dtype=np.float64)
        arrays[f"{oname}/pred"] = f32(model.predict(x, batch_size=n, verbose=0))
        histories[oname] = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    model.set_weights(init)
    det, block_names, flat_name = det_outputs(model, x, "sine")
    arrays.update(det)
    det, _, _ = det_outputs(model, x, "hash")
    arrays.update(det)
    spec = {
        "meta": META,
        "model_name": model.name,
        "model_config": json.loads(model.to_json()),
        "layers": layer_table(model),
        "n_layers": len(model.layers),
        "params": param_counts(model),
        "weights": weight_info(model),
        "summary": summary,
        "input_shape": [32, 32, 3],
        "n_samples": n,
        "n_classes": n_classes,
        "fit": {"loss": "categorical_crossentropy", "metrics": ["accuracy"], "epochs": 2,
                "batch_size": 8, "shuffle": False,
                "optimizers": {k: {"class_name": c, "config": cfg} for k, (c, cfg) in opts.items()}},
        "history": histories,
        "x_seed": 1,
        "block_output_layers": block_names,
        "flatten_layer": flat_name,
    }
    return arrays, spec


def make_resnet50():
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    model = ResNet50(input_shape=(64, 64, 3), classes=6)
    x = deterministic.inputs((2, 64, 64, 3), seed=0)
    arrays = {"meta": np.array(json.dumps(META)), "x": x}
    summary = summary_text(model)
    det, block_names, flat_name = det_outputs(model, x, "sine")
    arrays.update(det)
    det, _, _ = det_outputs(model, x, "hash")
    arrays.update(det)
    spec = {
        "meta": META,
        "model_name": model.name,
        "model_config": json.loads(model.to_json()),
        "layers": layer_table(model),
        "n_layers": len(model.layers),
        "params": param_counts(model),
        "weights": weight_info(model),
        "summary": summary,
        "input_shape": [64, 64, 3],
        "classes": 6,
        "x_seed": 0,
        "block_output_layers": block_names,
        "flatten_layer": flat_name,
    }
    return arrays, spec


def generate(outdir):
    setup_determinism()
    gdir = os.path.join(outdir, "graph")
    os.makedirs(gdir, exist_ok=True)
    written = []

    keras.backend.clear_session()
    arrays, spec, checks = make_layers()
    save_npz(os.path.join(gdir, "layers.npz"), arrays)
    save_json(os.path.join(gdir, "layers.json"), spec)
    written += ["layers.npz", "layers.json"]
    print("layer checks:", json.dumps(checks, indent=1))

    arrays, spec = make_graphs()
    save_npz(os.path.join(gdir, "graphs.npz"), arrays)
    save_json(os.path.join(gdir, "graphs.json"), spec)
    written += ["graphs.npz", "graphs.json"]

    arrays, spec = make_mini_resnet(os.path.join(gdir, "mini_resnet.keras"))
    save_npz(os.path.join(gdir, "mini_resnet.npz"), arrays)
    save_json(os.path.join(gdir, "mini_resnet.json"), spec)
    written += ["mini_resnet.npz", "mini_resnet.json", "mini_resnet.keras"]

    arrays, spec = make_resnet50()
    save_npz(os.path.join(gdir, "resnet50.npz"), arrays)
    save_json(os.path.join(gdir, "resnet50.json"), spec, indent=None)
    written += ["resnet50.npz", "resnet50.json"]
    print(f"ResNet50: {spec['n_layers']} layers, params {spec['params']}")

    for f in written:
        p = os.path.join(gdir, f)
        print(f"wrote {p} ({os.path.getsize(p)} bytes)")


def main(argv):
    if "--check" in argv:
        import filecmp
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            generate(tmp)
            bad = [f for f in OUTNAMES
                   if not filecmp.cmp(os.path.join(tmp, "graph", f),
                                      os.path.join(HERE, "graph", f), shallow=False)]
        print("differ: " + ", ".join(bad) if bad else "all fixtures reproduced exactly")
        return 1 if bad else 0
    generate(HERE)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
