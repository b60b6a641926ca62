"""Generate the golden reference fixtures (``tests/golden/*.npz``) from REAL Keras.

This script runs only where Keras 3 and TensorFlow are installed -- NOT in kandle's own
environment. The committed fixtures were produced with:

    tensorflow-cpu 2.21.0, keras 3.15.1 (TensorFlow backend), numpy 2.4.6, Python 3.11

in a virtual environment outside the repository, made with

    python3 -m venv /work/venvs/keras
    /work/venvs/keras/bin/pip install tensorflow-cpu keras numpy pytest

Regenerate (from the repository root) with exactly:

    /work/venvs/keras/bin/python tests/golden/make_golden.py

Everything is seeded (``np.random.default_rng`` for data and weights, ``keras.utils.set_random_seed``
and TensorFlow op determinism for Keras), and the .npz files are written with fixed zip timestamps,
so a rerun with the same versions reproduces the files byte for byte (``--check`` verifies that
without touching the committed files).

Files and key scheme (``tests/test_golden.py`` reads them; every file also has a ``meta`` key: JSON
with the versions that produced it):

* ``layers.npz`` -- one case per layer configuration. For case ``<c>``:
    ``<c>__spec``  0-d unicode array, JSON ``{"class_name", "config", "input_shape"}``: the layer is
                   ``getattr(layers, class_name)(**config)`` (config = the constructor arguments as
                   passed; tuples appear as lists), its input shape excludes the batch axis.
    ``<c>__x``     input batch (float32, channels_last).
    ``<c>__w0``, ``<c>__w1``, ...  the layer's weights in Keras layout (Conv2D kernel
                   ``(kh, kw, in, out)``, Dense kernel ``(in, out)``, then bias).
    ``<c>__y``     ``Sequential([Input(input_shape), layer]).predict(x)`` (inference mode).
* ``tutorial_cnn.npz`` -- the tutorial CNN on (32, 32, 3) inputs, weights NOT stored:
    ``class_names`` and ``layer_names`` (JSON lists), ``param_counts`` (int64 per layer),
    ``total_params`` (int64),
    ``output_shapes`` (JSON list of lists, ``null`` for the batch axis), ``summary`` (the text of
    ``model.summary()``, for reference only).
* ``losses_metrics.npz`` -- one case per compiled model. For case ``<c>``:
    ``<c>__spec``  JSON ``{"layers": [{"class_name", "config"}...], "input_shape", "loss",
                   "metrics", "batch_size", "result_names"}``; ``result_names`` name the entries
                   of ``<c>__eval``: ``["loss", *metrics]`` (the keys of
                   ``evaluate(..., return_dict=True)``, which Keras 3 returns sorted by name).
    ``<c>__x``, ``<c>__y``  data (``y`` is int64 class indices for the sparse case).
    ``<c>__w0``, ...  the model's weights (``model.get_weights()`` order).
    ``<c>__pred``  ``model.predict(x)``.
    ``<c>__eval``  float64, ``model.evaluate(x, y, batch_size=..)`` as a list: ``[loss, *metrics]``.
* ``training.npz`` -- models trained from fixed initial weights.
    ``model_<m>__spec``  JSON ``{"layers": [...], "input_shape"}``; ``model_<m>__x``, ``model_<m>__y``
                   the training data; ``model_<m>__labels`` the integer labels behind a one-hot ``y``
                   (``y == to_categorical(labels, n)``) where there are any; ``model_<m>__w0``, ...
                   the initial weights (stored once per model).
    ``<c>__spec``  JSON ``{"model": <m>, "optimizer": {"class_name", "config"}, "loss", "metrics",
                   "batch_size", "epochs", "shuffle"}``.
    ``<c>__w0``, ...  weights after ``fit``; ``<c>__loss`` float64 History ``loss`` per epoch;
    ``<c>__history``  JSON of the whole ``History.history`` dict.
"""

import io
import json
import os
import sys
import zipfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
# Plain Eigen kernels: oneDNN picks kernels (and summation orders) by CPU, fixtures should not.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402
from keras import layers  # noqa: E402

tf.get_logger().setLevel("ERROR")  # silence tf.function retracing warnings (one model per case)

HERE = os.path.dirname(os.path.abspath(__file__))
META = json.dumps({
    "keras": keras.__version__,
    "tensorflow": tf.__version__,
    "numpy": np.__version__,
    "backend": keras.backend.backend(),
    "python": sys.version.split()[0],
    "generator": "tests/golden/make_golden.py",
})


def setup_determinism():
    keras.utils.set_random_seed(0)
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # older TF: TF_DETERMINISTIC_OPS above does the same
        pass


def jstr(obj):
    """A JSON document stored as a 0-d unicode array (np.load gives it back with ``str(a[()])``)."""
    return np.array(json.dumps(obj))


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


def f32(a):
    return np.asarray(a, dtype=np.float32)


# --------------------------------------------------------------------------------------------
# a) layers.npz
# --------------------------------------------------------------------------------------------

def layer_cases():
    """(case name, class name, config, input shape) -- the layer zoo."""
    c = []
    # Conv2D: padding valid/same x strides 1/2 on even (8x8) and odd (7x7) inputs.
    for size in (8, 7):
        for padding in ("valid", "same"):
            for stride in (1, 2):
                c.append((f"conv_k3_s{stride}_{padding}_{size}x{size}", "Conv2D",
                          dict(filters=3, kernel_size=(3, 3), strides=(stride, stride),
                               padding=padding), (size, size, 2)))
    # Even kernel with 'same' and stride 2 on an odd input: TF pads asymmetrically (more at the end).
    for padding in ("valid", "same"):
        c.append((f"conv_k2_s2_{padding}_7x7", "Conv2D",
                  dict(filters=2, kernel_size=(2, 2), strides=(2, 2), padding=padding), (7, 7, 3)))
        c.append((f"conv_k4_s1_{padding}_6x6", "Conv2D",
                  dict(filters=2, kernel_size=(4, 4), strides=(1, 1), padding=padding), (6, 6, 1)))
    # Non-square kernel and stride, on a non-square input.
    for padding in ("valid", "same"):
        c.append((f"conv_k32_s21_{padding}_7x6", "Conv2D",
                  dict(filters=4, kernel_size=(3, 2), strides=(2, 1), padding=padding), (7, 6, 2)))
    # Integer kernel_size / strides (Keras accepts an int for both axes).
    c.append(("conv_int_k3_s2_same_9x9", "Conv2D",
              dict(filters=2, kernel_size=3, strides=2, padding="same"), (9, 9, 2)))
    c.append(("conv_1x1", "Conv2D", dict(filters=5, kernel_size=(1, 1)), (4, 4, 3)))
    c.append(("conv_nobias", "Conv2D",
              dict(filters=3, kernel_size=(3, 3), use_bias=False), (6, 6, 2)))
    c.append(("conv_nobias_relu_same", "Conv2D",
              dict(filters=3, kernel_size=(3, 3), padding="same", use_bias=False,
                   activation="relu"), (5, 5, 2)))
    for act in ("relu", "sigmoid", "tanh", "softmax"):
        c.append((f"conv_{act}", "Conv2D",
                  dict(filters=4, kernel_size=(3, 3), activation=act), (6, 6, 2)))

    # MaxPooling2D: pool 2/3 x strides None/1/2 x padding valid/same on odd inputs.
    for size in (5, 7):
        for pool in (2, 3):
            for stride in (None, 1, 2):
                for padding in ("valid", "same"):
                    cfg = dict(pool_size=(pool, pool), padding=padding)
                    if stride is not None:
                        cfg["strides"] = (stride, stride)
                    s = "none" if stride is None else str(stride)
                    c.append((f"pool_p{pool}_s{s}_{padding}_{size}x{size}", "MaxPooling2D",
                              cfg, (size, size, 2)))
    for padding in ("valid", "same"):
        c.append((f"pool_p2_snone_{padding}_8x8", "MaxPooling2D",
                  dict(pool_size=(2, 2), padding=padding), (8, 8, 3)))
        c.append((f"pool_p32_s21_{padding}_7x6", "MaxPooling2D",
                  dict(pool_size=(3, 2), strides=(2, 1), padding=padding), (7, 6, 2)))
    c.append(("pool_default_6x6", "MaxPooling2D", dict(), (6, 6, 2)))
    c.append(("pool_int_p3_s2_same_7x7", "MaxPooling2D",
              dict(pool_size=3, strides=2, padding="same"), (7, 7, 2)))
    # All-negative input with 'same' padding: the padded border must not act as a 0.
    c.append(("pool_p3_s2_same_allneg_5x5", "MaxPooling2D",
              dict(pool_size=(3, 3), strides=(2, 2), padding="same"), (5, 5, 2)))

    # Dense.
    c.append(("dense", "Dense", dict(units=4), (6,)))
    c.append(("dense_nobias", "Dense", dict(units=4, use_bias=False), (6,)))
    for act in ("relu", "softmax", "sigmoid", "tanh"):
        c.append((f"dense_{act}", "Dense", dict(units=5, activation=act), (7,)))

    # Flatten: channels-last order (row-major over (h, w, c)).
    c.append(("flatten_3x4x2", "Flatten", dict(), (3, 4, 2)))
    c.append(("flatten_2x3", "Flatten", dict(), (2, 3)))

    # Activation: every supported activation, on inputs spanning negative/positive and exactly 0.
    for act in ("relu", "softmax", "sigmoid", "tanh", "linear", "elu", "selu", "softplus"):
        c.append((f"act_{act}", "Activation", dict(activation=act), (13,)))
        c.append((f"act_{act}_4d", "Activation", dict(activation=act), (2, 3, 4)))

    # Dropout at inference: identity.
    c.append(("dropout_inference", "Dropout", dict(rate=0.5), (10,)))
    c.append(("dropout_inference_4d", "Dropout", dict(rate=0.25), (3, 3, 2)))
    return c


def layer_input(rng, name, shape):
    batch = 3
    if name.startswith("act_") and shape == (13,):
        rows = [
            np.linspace(-3.0, 3.0, 13),  # step 0.5, includes 0 exactly
            [-30.0, -10.0, -2.5, -1.0, -1e-3, -0.0, 0.0, 1e-3, 0.5, 1.0, 2.5, 10.0, 30.0],
            rng.normal(0.0, 2.0, 13),
        ]
        return f32(rows)
    x = rng.normal(0.0, 1.0, (batch,) + tuple(shape))
    if "allneg" in name:
        x = -np.abs(x) - 0.5
    if name.startswith("act_"):
        x = 3.0 * x
        x.flat[0] = 0.0
    return f32(x)


def make_layers(rng):
    out = {"meta": np.array(META)}
    for name, class_name, config, shape in layer_cases():
        layer = getattr(layers, class_name)(**config)
        model = keras.Sequential([keras.Input(shape), layer])
        weights = []
        for w in layer.get_weights():
            scale = 0.5 if w.ndim > 1 else 0.3
            weights.append(f32(rng.normal(0.0, scale, w.shape)))
        if weights:
            layer.set_weights(weights)
        x = layer_input(rng, name, shape)
        y = model.predict(x, batch_size=len(x), verbose=0)
        out[f"{name}__spec"] = jstr({"class_name": class_name, "config": config,
                                     "input_shape": list(shape)})
        out[f"{name}__x"] = x
        for i, w in enumerate(weights):
            out[f"{name}__w{i}"] = w
        out[f"{name}__y"] = f32(y)
    return out


# --------------------------------------------------------------------------------------------
# b) tutorial_cnn.npz
# --------------------------------------------------------------------------------------------

def make_tutorial():
    model = keras.Sequential(name="tutorial_cnn", layers=[
        keras.Input((32, 32, 3)),
        layers.Conv2D(32, (3, 3), activation="relu"),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(128, (3, 3), activation="relu"),
        layers.Conv2D(256, (3, 3), activation="relu"),
        layers.Conv2D(512, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(1024, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Flatten(),
        layers.Dense(500, activation="relu"),
        layers.Dropout(0.5),
        layers.Dense(100, activation="softmax"),
    ])
    lines = []
    model.summary(print_fn=lambda s, *a, **k: lines.append(s))
    summary = "\n".join(lines)
    counts = [layer.count_params() for layer in model.layers]
    shapes = [list(layer.output.shape) for layer in model.layers]
    assert model.count_params() == 6_850_792, model.count_params()
    return {
        "meta": np.array(META),
        "class_names": jstr([type(layer).__name__ for layer in model.layers]),
        "layer_names": jstr([layer.name for layer in model.layers]),
        "param_counts": np.array(counts, dtype=np.int64),
        "total_params": np.array(model.count_params(), dtype=np.int64),
        "output_shapes": jstr(shapes),
        "summary": np.array(summary),
    }


# --------------------------------------------------------------------------------------------
# c) losses_metrics.npz
# --------------------------------------------------------------------------------------------

CAT_METRICS = ["accuracy", "mse", "mae", "categorical_accuracy", "top_k_categorical_accuracy"]


def loss_cases():
    """(case name, layers, loss, metrics, target kind, weight scale)."""
    # 7 classes (not 5) so top_k_categorical_accuracy (k=5) is not trivially 1.
    softmax7 = [{"class_name": "Dense", "config": {"units": 7, "activation": "softmax"}}]
    binary = [{"class_name": "Dense", "config": {"units": 1, "activation": "sigmoid"}}]
    linear3 = [{"class_name": "Dense", "config": {"units": 3}}]
    sparse_metrics = ["accuracy", "sparse_categorical_accuracy"]
    return [
        ("cce", softmax7, "categorical_crossentropy", CAT_METRICS, "onehot", 0.5),
        # Large weights: some true-class probabilities are ~0 (exactly 0 in float32), which shows
        # whether the loss is taken from the logits or from clipped probabilities.
        ("cce_extreme", softmax7, "categorical_crossentropy", CAT_METRICS, "onehot", 40.0),
        ("sparse_cce", softmax7, "sparse_categorical_crossentropy", sparse_metrics, "sparse", 0.5),
        ("sparse_cce_extreme", softmax7, "sparse_categorical_crossentropy", sparse_metrics,
         "sparse", 40.0),
        ("bce", binary, "binary_crossentropy", ["accuracy"], "binary", 0.5),
        ("bce_extreme", binary, "binary_crossentropy", ["accuracy"], "binary", 40.0),
        ("mse_cat", softmax7, "mean_squared_error", CAT_METRICS, "onehot", 0.5),
        ("mse_reg", linear3, "mean_squared_error", ["mse", "mae"], "regression", 0.5),
        ("mae_reg", linear3, "mean_absolute_error", ["mse", "mae"], "regression", 0.5),
    ]


def loss_targets(rng, kind, pred):
    """Targets for 10 samples: the first 6 agree with the model's prediction, the last 4 are the
    least likely class (or the flipped binary label), so accuracies are neither 0 nor 1 and, with
    large weights, the true class has probability ~0."""
    n = len(pred)
    if kind == "regression":
        return f32(rng.normal(0.0, 1.0, pred.shape))
    if kind == "binary":
        y = (pred[:, 0] > 0.5).astype(np.float32)
        y[6:] = 1.0 - y[6:]
        return f32(y[:, None])
    labels = np.where(np.arange(n) < 6, pred.argmax(-1), pred.argmin(-1)).astype(np.int64)
    if kind == "sparse":
        return labels
    return f32(np.eye(pred.shape[-1])[labels])


def build_model(layer_specs, input_shape):
    return keras.Sequential([keras.Input(tuple(input_shape))] +
                            [getattr(layers, s["class_name"])(**s["config"]) for s in layer_specs])


def make_losses(rng):
    out = {"meta": np.array(META)}
    batch_size = 4  # 10 samples -> batches of 4, 4, 2
    x = f32(rng.normal(0.0, 1.0, (10, 8)))
    for name, layer_specs, loss, metrics, kind, scale in loss_cases():
        model = build_model(layer_specs, x.shape[1:])
        weights = [f32(rng.normal(0.0, scale, w.shape)) for w in model.get_weights()]
        model.set_weights(weights)
        model.compile(optimizer="sgd", loss=loss, metrics=list(metrics))
        pred = model.predict(x, batch_size=batch_size, verbose=0)
        y = loss_targets(rng, kind, pred)
        as_list = model.evaluate(x, y, batch_size=batch_size, verbose=0)
        as_dict = model.evaluate(x, y, batch_size=batch_size, verbose=0, return_dict=True)
        names = ["loss"] + list(metrics)  # evaluate's list order; the dict's keys come sorted
        assert [as_dict[k] for k in names] == list(as_list), (as_dict, as_list)
        out[f"{name}__spec"] = jstr({
            "layers": layer_specs, "input_shape": list(x.shape[1:]), "loss": loss,
            "metrics": list(metrics), "batch_size": batch_size, "result_names": names,
        })
        out[f"{name}__x"] = x
        out[f"{name}__y"] = y
        for i, w in enumerate(weights):
            out[f"{name}__w{i}"] = w
        out[f"{name}__pred"] = f32(pred)
        out[f"{name}__eval"] = np.array(as_list, dtype=np.float64)
    return out


# --------------------------------------------------------------------------------------------
# d) training.npz
# --------------------------------------------------------------------------------------------

CNN_LAYERS = [
    {"class_name": "Conv2D", "config": {"filters": 4, "kernel_size": [3, 3], "activation": "relu"}},
    {"class_name": "MaxPooling2D", "config": {"pool_size": [2, 2]}},
    {"class_name": "Flatten", "config": {}},
    {"class_name": "Dense", "config": {"units": 3, "activation": "softmax"}},
]
MLP_LAYERS = [
    {"class_name": "Dense", "config": {"units": 8, "activation": "relu"}},
    {"class_name": "Dense", "config": {"units": 2}},
]

TRAIN_CASES = [
    # name, model, optimizer class, optimizer config, loss, batch size
    ("sgd", "cnn", "SGD", {"learning_rate": 0.1}, "categorical_crossentropy", 8),
    ("sgd_nesterov", "cnn", "SGD", {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True},
     "categorical_crossentropy", 8),
    ("sgd_momentum", "cnn", "SGD", {"learning_rate": 0.05, "momentum": 0.9},
     "categorical_crossentropy", 8),
    ("adam", "cnn", "Adam", {"learning_rate": 0.01}, "categorical_crossentropy", 8),
    ("rmsprop", "cnn", "RMSprop", {"learning_rate": 0.01}, "categorical_crossentropy", 8),
    ("adagrad", "cnn", "Adagrad", {"learning_rate": 0.1}, "categorical_crossentropy", 8),
    # 24 samples in batches of 10: the last batch of each epoch is partial (4 samples).
    ("mlp_adam_mse", "mlp", "Adam", {"learning_rate": 0.01}, "mean_squared_error", 10),
]


def make_training(rng):
    out = {"meta": np.array(META)}
    n = 24
    x_cnn = f32(rng.normal(0.0, 1.0, (n, 8, 8, 2)))
    labels = rng.integers(0, 3, n).astype(np.int64)
    y_cnn = f32(keras.utils.to_categorical(labels, 3))
    x_mlp = f32(rng.normal(0.0, 1.0, (n, 6)))
    y_mlp = f32(np.stack([x_mlp[:, 0] - 0.5 * x_mlp[:, 1], np.tanh(x_mlp[:, 2] * x_mlp[:, 3])], 1))
    data = {"cnn": (CNN_LAYERS, x_cnn, y_cnn, labels), "mlp": (MLP_LAYERS, x_mlp, y_mlp, None)}

    init = {}
    for m, (specs, x, y, lab) in data.items():
        model = build_model(specs, x.shape[1:])  # Keras's own initializers, seeded
        init[m] = [f32(w) for w in model.get_weights()]
        out[f"model_{m}__spec"] = jstr({"layers": specs, "input_shape": list(x.shape[1:])})
        out[f"model_{m}__x"] = x
        out[f"model_{m}__y"] = y
        if lab is not None:
            out[f"model_{m}__labels"] = lab
        for i, w in enumerate(init[m]):
            out[f"model_{m}__w{i}"] = w

    for name, m, opt_class, opt_config, loss, batch_size in TRAIN_CASES:
        specs, x, y, _ = data[m]
        model = build_model(specs, x.shape[1:])
        model.set_weights(init[m])
        optimizer = getattr(keras.optimizers, opt_class)(**opt_config)
        model.compile(optimizer=optimizer, loss=loss)
        hist = model.fit(x, y, batch_size=batch_size, epochs=2, shuffle=False, verbose=0)
        history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
        out[f"{name}__spec"] = jstr({
            "model": m, "optimizer": {"class_name": opt_class, "config": opt_config},
            "loss": loss, "metrics": [], "batch_size": batch_size, "epochs": 2, "shuffle": False,
        })
        for i, w in enumerate(model.get_weights()):
            out[f"{name}__w{i}"] = f32(w)
        out[f"{name}__loss"] = np.array(history["loss"], dtype=np.float64)
        out[f"{name}__history"] = jstr(history)
    return out


S = keras.optimizers.schedules
SCHEDULES = {
    "exponential": S.ExponentialDecay(0.1, decay_steps=3, decay_rate=0.5),
    "exponential_staircase": S.ExponentialDecay(0.1, decay_steps=3, decay_rate=0.5, staircase=True),
    "inverse_time": S.InverseTimeDecay(0.05, decay_steps=2, decay_rate=0.7, staircase=True),
    "piecewise": S.PiecewiseConstantDecay([2, 5], [0.1, 0.03, 0.01]),
    "cosine": S.CosineDecay(0.08, decay_steps=5, alpha=0.1),
    "cosine_warmup": S.CosineDecay(0.0, decay_steps=4, warmup_target=0.1, warmup_steps=3),
    "polynomial": S.PolynomialDecay(0.1, decay_steps=4, end_learning_rate=0.01, power=2.0),
}

# Issue 12's optimizers, clipping, weight decay and schedules, on the training cases' models and data.
OPTIMIZER_CASES = [
    ("adamw", "cnn", "AdamW", {"learning_rate": 0.01}),
    ("adamw_wd", "mlp", "AdamW", {"learning_rate": 0.01, "weight_decay": 0.1}),
    ("nadam", "cnn", "Nadam", {"learning_rate": 0.01}),
    ("adadelta", "cnn", "Adadelta", {"learning_rate": 1.0}),
    ("adamax", "cnn", "Adamax", {"learning_rate": 0.02}),
    ("lion", "cnn", "Lion", {"learning_rate": 0.003}),
    ("sgd_weight_decay", "cnn", "SGD", {"learning_rate": 0.1, "weight_decay": 0.05}),
    ("adam_clipnorm", "cnn", "Adam", {"learning_rate": 0.01, "clipnorm": 0.05}),
    ("adam_amsgrad", "cnn", "Adam", {"learning_rate": 0.01, "amsgrad": True}),
    ("adamw_amsgrad", "mlp", "AdamW", {"learning_rate": 0.01, "amsgrad": True}),
    ("sgd_clipvalue", "cnn", "SGD", {"learning_rate": 0.1, "clipvalue": 0.01}),
    ("sgd_momentum_global_clipnorm", "cnn", "SGD", {"learning_rate": 0.1, "momentum": 0.9, "global_clipnorm": 0.1}),
    ("rmsprop_global_clipnorm", "mlp", "RMSprop", {"learning_rate": 0.01, "global_clipnorm": 0.5}),
    ("sgd_exponential", "cnn", "SGD", {"learning_rate": "exponential"}),
    ("adam_piecewise", "cnn", "Adam", {"learning_rate": "piecewise"}),
    ("sgd_cosine_warmup", "cnn", "SGD", {"learning_rate": "cosine_warmup"}),
    ("sgd_inverse_time", "mlp", "SGD", {"learning_rate": "inverse_time"}),
]


def make_optimizers(rng):
    out = {"meta": np.array(META)}
    for name, schedule in SCHEDULES.items():
        out[f"schedule_{name}__spec"] = jstr(keras.optimizers.schedules.serialize(schedule))
        out[f"schedule_{name}__values"] = np.array([float(schedule(step)) for step in range(12)], dtype=np.float64)
    training = make_training(rng)  # the same models, data and initial weights as training.npz
    for key in [k for k in training if k.startswith("model_")]:
        out[key] = training[key]
    for name, m, opt_class, opt_config, in OPTIMIZER_CASES:
        specs = json.loads(str(training[f"model_{m}__spec"]))
        x, y = training[f"model_{m}__x"], training[f"model_{m}__y"]
        init = [training[f"model_{m}__w{i}"] for i in range(len([k for k in training if k.startswith(f"model_{m}__w")]))]
        config = dict(opt_config)
        if isinstance(config["learning_rate"], str):
            config["learning_rate"] = keras.optimizers.schedules.serialize(SCHEDULES[config["learning_rate"]])
            optimizer = getattr(keras.optimizers, opt_class)(
                **dict(config, learning_rate=SCHEDULES[opt_config["learning_rate"]]))
        else:
            optimizer = getattr(keras.optimizers, opt_class)(**config)
        model = build_model(specs["layers"], specs["input_shape"])
        model.set_weights(init)
        loss = "categorical_crossentropy" if m == "cnn" else "mean_squared_error"
        batch_size = 8 if m == "cnn" else 10
        model.compile(optimizer=optimizer, loss=loss)
        hist = model.fit(x, y, batch_size=batch_size, epochs=2, shuffle=False, verbose=0)
        out[f"{name}__spec"] = jstr({
            "model": m, "optimizer": {"class_name": opt_class, "config": config},
            "loss": loss, "metrics": [], "batch_size": batch_size, "epochs": 2, "shuffle": False,
            "iterations": int(optimizer.iterations.numpy()),
        })
        for i, w in enumerate(model.get_weights()):
            out[f"{name}__w{i}"] = f32(w)
        out[f"{name}__loss"] = np.array([float(v) for v in hist.history["loss"]], dtype=np.float64)
    return out


# Loss objects with options (issue 12): trained two epochs from the training cases' initial weights
# (models given a linear last layer where the loss takes logits), and evaluated directly.
LOGIT_LAYERS = {
    "cnn_logits": CNN_LAYERS[:-1] + [{"class_name": "Dense", "config": {"units": 3}}],
    "mlp": MLP_LAYERS,
}
LOSS_OBJECT_CASES = [
    # name, model, loss class, loss config, targets
    ("cce_from_logits", "cnn_logits", "CategoricalCrossentropy", {"from_logits": True}, "onehot"),
    ("cce_label_smoothing", "cnn", "CategoricalCrossentropy", {"label_smoothing": 0.2}, "onehot"),
    ("cce_logits_smoothing_sum", "cnn_logits", "CategoricalCrossentropy",
     {"from_logits": True, "label_smoothing": 0.1, "reduction": "sum"}, "onehot"),
    ("scce_from_logits", "cnn_logits", "SparseCategoricalCrossentropy", {"from_logits": True}, "labels"),
    ("bce_from_logits", "mlp", "BinaryCrossentropy", {"from_logits": True}, "binary"),
    ("bce_from_logits_smoothing", "mlp", "BinaryCrossentropy", {"from_logits": True, "label_smoothing": 0.2},
     "binary"),
    ("mse_sum", "mlp", "MeanSquaredError", {"reduction": "sum"}, "regression"),
]


def make_loss_objects(rng):
    out = {"meta": np.array(META)}
    training = make_training(rng)  # the same data and initial weights as training.npz
    for key in [k for k in training if k.startswith("model_")]:
        out[key] = training[key]
    x_cnn, y_cnn = training["model_cnn__x"], training["model_cnn__y"]
    x_mlp, y_mlp = training["model_mlp__x"], training["model_mlp__y"]
    targets = {"onehot": (x_cnn, y_cnn), "labels": (x_cnn, f32(training["model_cnn__labels"])),
               "binary": (x_mlp, f32(y_mlp > 0)), "regression": (x_mlp, y_mlp)}
    for name, m, cls, config, kind in LOSS_OBJECT_CASES:
        x, y = targets[kind]
        base = "cnn" if m.startswith("cnn") else "mlp"
        specs = LOGIT_LAYERS.get(m, CNN_LAYERS)
        model = build_model(specs, x.shape[1:])
        init = [training[f"model_{base}__w{i}"] for i in range(len(model.get_weights()))]
        model.set_weights(init)
        loss = getattr(keras.losses, cls)(**config)
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss=loss)
        hist = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        out[f"{name}__spec"] = jstr({"layers": specs, "input_shape": list(x.shape[1:]), "base": base,
                                     "loss": keras.losses.serialize(loss), "targets": kind})
        out[f"{name}__y"] = f32(y)
        for i, w in enumerate(model.get_weights()):
            out[f"{name}__w{i}"] = f32(w)
        out[f"{name}__loss"] = np.array([float(v) for v in hist.history["loss"]], dtype=np.float64)
        # The loss object called directly on the untrained model's outputs.
        model.set_weights(init)
        pred = f32(model.predict(x, verbose=0))
        out[f"{name}__pred"] = pred
        out[f"{name}__value"] = np.array(float(loss(y, pred)), dtype=np.float64)
    return out


# Metric objects (issue 12): on their own over three batches, and inside compile (evaluate and fit).
METRIC_OBJECTS = [
    ("accuracy", "Accuracy", {}, "labels_as_values"),
    ("binary_accuracy", "BinaryAccuracy", {"threshold": 0.6}, "binary"),
    ("categorical_accuracy", "CategoricalAccuracy", {}, "onehot"),
    ("sparse_categorical_accuracy", "SparseCategoricalAccuracy", {}, "sparse"),
    ("top_k", "TopKCategoricalAccuracy", {"k": 2}, "onehot"),
    ("mse", "MeanSquaredError", {}, "regression"),
    ("mae", "MeanAbsoluteError", {}, "regression"),
    ("precision", "Precision", {}, "binary"),
    ("precision_threshold", "Precision", {"thresholds": 0.3}, "binary"),
    ("recall", "Recall", {}, "binary"),
    ("auc", "AUC", {}, "binary"),
    ("auc_coarse", "AUC", {"num_thresholds": 7}, "binary"),
    ("auc_onehot", "AUC", {}, "onehot"),
    ("precision_top_k", "Precision", {"top_k": 2}, "onehot"),
    ("recall_top_k", "Recall", {"top_k": 1}, "onehot"),
    ("precision_class_id", "Precision", {"class_id": 1}, "binary"),
    ("recall_class_id_top_k", "Recall", {"class_id": 2, "top_k": 2}, "onehot"),
    ("precision_top_k_threshold", "Precision", {"top_k": 2, "thresholds": 0.3}, "onehot"),
    ("auc_pr", "AUC", {"curve": "PR"}, "binary"),
    ("auc_pr_minoring", "AUC", {"curve": "PR", "summation_method": "minoring", "num_thresholds": 11}, "binary"),
    ("auc_majoring", "AUC", {"summation_method": "majoring", "num_thresholds": 9}, "binary"),
    ("auc_thresholds", "AUC", {"thresholds": [0.2, 0.5, 0.7]}, "binary"),
    ("auc_pr_onehot", "AUC", {"curve": "PR"}, "onehot"),
]


def _metric_batch(rng, kind):
    n = 6
    if kind == "binary":
        return f32(rng.integers(0, 2, (n, 3))), f32(rng.random((n, 3)))
    if kind in ("onehot", "sparse"):
        labels = rng.integers(0, 4, n)
        probs = f32(rng.dirichlet(np.ones(4), n))
        return (f32(labels) if kind == "sparse" else f32(np.eye(4)[labels])), probs
    if kind == "labels_as_values":
        y = f32(rng.integers(0, 3, (n, 1)))
        return y, f32(np.where(rng.random((n, 1)) < 0.5, y, rng.integers(0, 3, (n, 1))))
    return f32(rng.normal(0, 1, (n, 2))), f32(rng.normal(0, 1, (n, 2)))


# Metric objects on their own with sample weights (update_state(y, p, sample_weight)).
WEIGHTED_METRIC_OBJECTS = [
    ("weighted_categorical_accuracy", "CategoricalAccuracy", {}, "onehot"),
    ("weighted_top_k", "TopKCategoricalAccuracy", {"k": 2}, "onehot"),
    ("weighted_mse", "MeanSquaredError", {}, "regression"),
    ("weighted_precision", "Precision", {}, "binary"),
    ("weighted_recall_top_k", "Recall", {"top_k": 2}, "onehot"),
    ("weighted_auc", "AUC", {"num_thresholds": 11}, "binary"),
    ("weighted_auc_pr", "AUC", {"curve": "PR"}, "binary"),
]


def make_metrics(rng):
    out = {"meta": np.array(META)}
    cases = [(c, False) for c in METRIC_OBJECTS] + [(c, True) for c in WEIGHTED_METRIC_OBJECTS]
    for (name, cls, config, kind), weighted in cases:
        metric = getattr(keras.metrics, cls)(**config)
        results = []
        for b in range(3):
            y, p = _metric_batch(rng, kind)
            out[f"{name}__y{b}"], out[f"{name}__p{b}"] = y, p
            if weighted:
                w = f32(rng.uniform(0.0, 2.0, len(y)))
                out[f"{name}__w{b}"] = w
                metric.update_state(y, p, sample_weight=w)
            else:
                metric.update_state(y, p)
            results.append(float(metric.result()))
        out[f"{name}__spec"] = jstr({"class_name": cls, "config": config, "log_name": metric.name})
        out[f"{name}__results"] = np.array(results, dtype=np.float64)
    # Inside compile: the training cases' CNN, its data and initial weights.
    training = make_training(rng)
    x, y = training["model_cnn__x"], training["model_cnn__y"]
    specs = json.loads(str(training["model_cnn__spec"]))
    init = [training[f"model_cnn__w{i}"] for i in range(4)]
    objects = [keras.metrics.CategoricalAccuracy(), keras.metrics.AUC(), keras.metrics.Precision(name="prec"),
               keras.metrics.Recall(thresholds=0.4), keras.metrics.TopKCategoricalAccuracy(k=2), "mse"]
    model = build_model(specs["layers"], specs["input_shape"])
    model.set_weights(init)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy", metrics=objects)
    evaluated = model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history
    out["compiled__spec"] = jstr({
        "metrics": [m if isinstance(m, str) else {"class_name": type(m).__name__, "config": {
            k: v for k, v in m.get_config().items() if k in ("name", "k", "thresholds", "num_thresholds")}}
            for m in objects],
        "evaluate": {k: float(v) for k, v in evaluated.items()},
        "history": {k: [float(v) for v in vals] for k, vals in history.items()},
    })
    for key in ("model_cnn__x", "model_cnn__y", "model_cnn__spec") + tuple(f"model_cnn__w{i}" for i in range(4)):
        out[key] = training[key]
    return out


# Initializers (issue 12): Keras's values cannot be reproduced (other generators), so the fixture holds
# their statistics over a (200, 150) draw, and the deterministic ones' values.
INITIALIZER_CASES = [
    ("zeros", "Zeros", {}), ("ones", "Ones", {}), ("constant", "Constant", {"value": 0.3}),
    ("identity", "Identity", {"gain": 2.0}),
    ("random_uniform", "RandomUniform", {"minval": -0.2, "maxval": 0.6, "seed": 1}),
    ("random_normal", "RandomNormal", {"mean": 0.1, "stddev": 0.3, "seed": 1}),
    ("truncated_normal", "TruncatedNormal", {"mean": -0.1, "stddev": 0.2, "seed": 1}),
    ("glorot_uniform", "GlorotUniform", {"seed": 1}), ("glorot_normal", "GlorotNormal", {"seed": 1}),
    ("he_uniform", "HeUniform", {"seed": 1}), ("he_normal", "HeNormal", {"seed": 1}),
    ("lecun_uniform", "LecunUniform", {"seed": 1}), ("lecun_normal", "LecunNormal", {"seed": 1}),
    ("variance_scaling", "VarianceScaling", {"scale": 3.0, "mode": "fan_out", "distribution": "untruncated_normal",
                                             "seed": 1}),
    ("orthogonal", "Orthogonal", {"gain": 1.5, "seed": 1}),
]


def make_initializers(rng):
    out = {"meta": np.array(META)}
    shape = (200, 150)
    for name, cls, config in INITIALIZER_CASES:
        init = getattr(keras.initializers, cls)(**config)
        values = np.asarray(init(shape=shape), dtype=np.float64)
        out[f"{name}__spec"] = jstr({"class_name": cls, "config": config, "keras_config": init.get_config()})
        out[f"{name}__stats"] = np.array([values.mean(), values.std(), values.min(), values.max()])
        if cls in ("Zeros", "Ones", "Constant", "Identity"):
            out[f"{name}__values"] = f32(values)
        if cls == "Orthogonal":
            out[f"{name}__gram"] = f32(values.T @ values)
    return out


def generate(outdir):
    setup_determinism()
    files = {
        "layers.npz": lambda: make_layers(np.random.default_rng(1)),
        "tutorial_cnn.npz": make_tutorial,
        "losses_metrics.npz": lambda: make_losses(np.random.default_rng(2)),
        "training.npz": lambda: make_training(np.random.default_rng(3)),
        "optimizers.npz": lambda: make_optimizers(np.random.default_rng(3)),
        "loss_objects.npz": lambda: make_loss_objects(np.random.default_rng(3)),
        "metrics.npz": lambda: make_metrics(np.random.default_rng(5)),
        "initializers.npz": lambda: make_initializers(np.random.default_rng(6)),
    }
    for fname, make in files.items():
        keras.backend.clear_session()  # layer names (conv2d, conv2d_1, ...) restart per file
        path = os.path.join(outdir, fname)
        save_npz(path, make())
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def main(argv):
    if "--check" in argv:
        # Regenerate into a temporary folder and compare with the committed files, byte for byte.
        import filecmp
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            generate(tmp)
            bad = [f for f in ("layers.npz", "tutorial_cnn.npz", "losses_metrics.npz",
                               "training.npz", "optimizers.npz", "loss_objects.npz", "metrics.npz",
                               "initializers.npz")
                   if not filecmp.cmp(os.path.join(tmp, f), os.path.join(HERE, f), shallow=False)]
        print("differ: " + ", ".join(bad) if bad else "all fixtures reproduced exactly")
        return 1 if bad else 0
    generate(HERE)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
