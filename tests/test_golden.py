"""kandle against golden fixtures produced by REAL Keras (see tests/golden/make_golden.py).

What is specified here, case by case (the fixtures say the numbers):

* every layer kind's forward pass (Conv2D, MaxPooling2D, Dense, Flatten, Activation, Dropout at
  inference) equals Keras's for the same weights and inputs, within 1e-5;
* the tutorial CNN has Keras's per-layer parameter counts, output shapes and summary totals;
* ``evaluate`` gives Keras's loss and metric values (partial last batch included), within 1e-5;
* two epochs of ``fit`` with each optimizer end at Keras's weights (1e-4) and History (1e-4).

Which implementation is tested is chosen by the environment variable ``KANDLE_GOLDEN_IMPL``:

* ``kandle`` (default): ``import kandle`` -- the thing under test;
* ``keras``: ``import keras`` (Keras 3) -- only to check that these tests themselves are right,
  in the environment that made the fixtures:
  ``KANDLE_GOLDEN_IMPL=keras /work/venvs/keras/bin/python -m pytest -q tests/test_golden.py``

Both are used only through the Keras API that kandle mirrors; the one place where Keras 3 differs
(it dropped ``layer.output_shape``) is bridged by :func:`output_shape` below.

``TestFixtureSemantics`` checks the fixtures against plain-numpy reference formulas (TensorFlow's
'same' padding, max pooling that ignores its padding, the activation formulas); it uses no
implementation at all and documents the exact semantics kandle has to reproduce.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"
IMPL = os.environ.get("KANDLE_GOLDEN_IMPL", "kandle")

if IMPL == "keras":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import keras as K
elif IMPL == "kandle":
    import kandle as K
else:
    raise ValueError(f"KANDLE_GOLDEN_IMPL must be 'kandle' or 'keras', not {IMPL!r}")


def output_shape(layer):
    """The layer's output shape with ``None`` for the batch axis (Keras 2 / kandle:
    ``layer.output_shape``; Keras 3 removed that attribute, ``layer.output.shape`` is the same)."""
    if IMPL == "keras":
        return tuple(layer.output.shape)
    return tuple(layer.output_shape)


# ----------------------------------------------------------------------------------------------
# fixture access
# ----------------------------------------------------------------------------------------------

def load(name):
    with np.load(GOLDEN / name, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def case_names(fixture):
    return sorted(key[: -len("__spec")] for key in fixture
                  if key.endswith("__spec") and not key.startswith("model_"))


def spec_of(fixture, case):
    return json.loads(str(fixture[f"{case}__spec"][()]))


def weights_of(fixture, prefix):
    weights = []
    while f"{prefix}__w{len(weights)}" in fixture:
        weights.append(fixture[f"{prefix}__w{len(weights)}"])
    return weights


def as_tuples(value):
    """JSON turned the tuples we passed to Keras into lists; pass them back as tuples."""
    if isinstance(value, list):
        return tuple(as_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: as_tuples(v) for k, v in value.items()}
    return value


def make_layer(layer_spec):
    return getattr(K.layers, layer_spec["class_name"])(**as_tuples(layer_spec["config"]))


def make_model(layer_specs, input_shape):
    return K.models.Sequential([K.layers.Input(tuple(input_shape))] +
                               [make_layer(s) for s in layer_specs])


def assert_weights_close(got, want, rtol, atol):
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert np.shape(g) == w.shape, f"weight {i}"
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"weight {i}")


LAYERS = load("layers.npz")
TUTORIAL = load("tutorial_cnn.npz")
LOSSES = load("losses_metrics.npz")
TRAINING = load("training.npz")


# ----------------------------------------------------------------------------------------------
# a) layer forward passes
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", case_names(LAYERS))
def test_layer_forward_matches_keras(case):
    spec = spec_of(LAYERS, case)
    x, want = LAYERS[f"{case}__x"], LAYERS[f"{case}__y"]
    weights = weights_of(LAYERS, case)

    layer = make_layer(spec)
    model = K.models.Sequential([K.layers.Input(tuple(spec["input_shape"])), layer])

    # Same weights, same Keras layout (Conv2D kernel (kh, kw, in, out), Dense (in, out), bias).
    assert [np.shape(w) for w in layer.get_weights()] == [w.shape for w in weights]
    assert layer.count_params() == sum(w.size for w in weights)
    if weights:
        layer.set_weights(weights)
        assert_weights_close(layer.get_weights(), weights, rtol=0, atol=0)

    assert output_shape(layer) == (None,) + want.shape[1:]
    got = model.predict(x, batch_size=len(x), verbose=0)
    assert np.shape(got) == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# b) the tutorial CNN's architecture
# ----------------------------------------------------------------------------------------------

def tutorial_cnn():
    L = K.layers
    return K.models.Sequential([
        L.Input((32, 32, 3)),
        L.Conv2D(32, (3, 3), activation="relu"),
        L.Conv2D(64, (3, 3), activation="relu"),
        L.MaxPooling2D((2, 2)),
        L.Conv2D(128, (3, 3), activation="relu"),
        L.Conv2D(256, (3, 3), activation="relu"),
        L.Conv2D(512, (3, 3), activation="relu"),
        L.MaxPooling2D((2, 2)),
        L.Conv2D(1024, (3, 3), activation="relu"),
        L.MaxPooling2D((2, 2)),
        L.Flatten(),
        L.Dense(500, activation="relu"),
        L.Dropout(0.5),
        L.Dense(100, activation="softmax"),
    ])


def test_tutorial_cnn_layers_are_the_keras_classes():
    model = tutorial_cnn()
    want = json.loads(str(TUTORIAL["class_names"][()]))
    assert [type(layer).__name__ for layer in model.layers] == want


def test_tutorial_cnn_param_counts():
    model = tutorial_cnn()
    want = [int(n) for n in TUTORIAL["param_counts"]]
    assert want == [896, 18496, 0, 73856, 295168, 1180160, 0, 4719616, 0, 0, 512500, 0, 50100]
    assert [layer.count_params() for layer in model.layers] == want
    assert model.count_params() == int(TUTORIAL["total_params"]) == 6_850_792


def test_tutorial_cnn_output_shapes():
    model = tutorial_cnn()
    want = [tuple(s) for s in json.loads(str(TUTORIAL["output_shapes"][()]))]
    assert [output_shape(layer) for layer in model.layers] == want


def test_tutorial_cnn_summary_shows_counts(capsys):
    model = tutorial_cnn()
    model.summary()
    text = capsys.readouterr().out
    assert "Total params: 6,850,792" in text
    for layer, count in zip(model.layers, TUTORIAL["param_counts"]):
        count = int(count)
        # Keras 3 writes 18,496 in the table; Keras 2 wrote 18496. Either is fine.
        assert f"{count:,}" in text or str(count) in text, (layer.name, count)


# ----------------------------------------------------------------------------------------------
# c) losses and metrics through evaluate
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", case_names(LOSSES))
def test_evaluate_matches_keras(case):
    spec = spec_of(LOSSES, case)
    x, y = LOSSES[f"{case}__x"], LOSSES[f"{case}__y"]
    batch_size = spec["batch_size"]  # 10 samples in batches of 4: the last batch has 2

    model = make_model(spec["layers"], spec["input_shape"])
    model.set_weights(weights_of(LOSSES, case))
    model.compile(optimizer="sgd", loss=spec["loss"], metrics=list(spec["metrics"]))

    pred = model.predict(x, batch_size=batch_size, verbose=0)
    np.testing.assert_allclose(pred, LOSSES[f"{case}__pred"], rtol=1e-5, atol=1e-6)

    got = model.evaluate(x, y, batch_size=batch_size, verbose=0)
    want = LOSSES[f"{case}__eval"]
    names = spec["result_names"]  # ["loss", *metrics]
    assert len(got) == len(want) == len(names)
    for name, g, w in zip(names, got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=f"{case}: {name}")


# ----------------------------------------------------------------------------------------------
# d) training: two epochs of fit per optimizer, from the same initial weights
# ----------------------------------------------------------------------------------------------

def test_to_categorical_matches_the_training_targets():
    labels, want = TRAINING["model_cnn__labels"], TRAINING["model_cnn__y"]
    got = K.utils.to_categorical(labels, 3)
    np.testing.assert_array_equal(np.asarray(got, dtype=np.float32), want)


@pytest.mark.parametrize("case", case_names(TRAINING))
def test_fit_matches_keras(case):
    spec = spec_of(TRAINING, case)
    m = f"model_{spec['model']}"
    model_spec = spec_of(TRAINING, m)
    x, y = TRAINING[f"{m}__x"], TRAINING[f"{m}__y"]

    model = make_model(model_spec["layers"], model_spec["input_shape"])
    model.set_weights(weights_of(TRAINING, m))
    opt = spec["optimizer"]
    model.compile(optimizer=getattr(K.optimizers, opt["class_name"])(**opt["config"]),
                  loss=spec["loss"])
    history = model.fit(x, y, batch_size=spec["batch_size"], epochs=spec["epochs"],
                        shuffle=spec["shuffle"], verbose=0)

    want_loss = TRAINING[f"{case}__loss"]
    assert len(history.history["loss"]) == spec["epochs"]
    np.testing.assert_allclose(history.history["loss"], want_loss, rtol=1e-4, atol=1e-4)
    assert_weights_close(model.get_weights(), weights_of(TRAINING, case), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# The fixtures' semantics, in plain numpy (no implementation involved)
# ----------------------------------------------------------------------------------------------

def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def same_padding(size, kernel, stride):
    """TensorFlow 'same': output ceil(size/stride); the total padding is split with the odd pixel
    at the END (bottom/right)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def windows(x, kernel, strides, padding, fill):
    """Yield ((i, j), view) where view[n, oh, ow, c] = padded x at (oh*sh + i, ow*sw + j)."""
    (kh, kw), (sh, sw) = kernel, strides
    if padding == "same":
        x = np.pad(x, ((0, 0), same_padding(x.shape[1], kh, sh), same_padding(x.shape[2], kw, sw),
                       (0, 0)), constant_values=fill)
    oh, ow = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    for i in range(kh):
        for j in range(kw):
            yield (i, j), x[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw, :]


def activation_ref(name, x):
    if name in (None, "linear"):
        return x
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if name == "tanh":
        return np.tanh(x)
    if name == "softmax":  # over the last axis
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    if name == "elu":  # alpha = 1
        return np.where(x > 0, x, np.expm1(x))
    if name == "selu":
        alpha, scale = 1.6732632423543772, 1.0507009873554805
        return scale * np.where(x > 0, x, alpha * np.expm1(x))
    if name == "softplus":
        return np.logaddexp(0.0, x)
    raise KeyError(name)


def reference_forward(spec, x, weights):
    cfg = spec["config"]
    x = x.astype(np.float64)
    weights = [w.astype(np.float64) for w in weights]
    kind = spec["class_name"]
    if kind == "Conv2D":
        kernel = weights[0]
        out = 0.0
        for (i, j), view in windows(x, kernel.shape[:2], pair(cfg.get("strides", 1)),
                                    cfg.get("padding", "valid"), 0.0):
            out = out + view @ kernel[i, j]
        if cfg.get("use_bias", True):
            out = out + weights[1]
        return activation_ref(cfg.get("activation"), out)
    if kind == "MaxPooling2D":
        pool = pair(cfg.get("pool_size", 2))
        strides = pair(cfg["strides"]) if cfg.get("strides") is not None else pool
        views = [v for _, v in windows(x, pool, strides, cfg.get("padding", "valid"), -np.inf)]
        return np.max(views, axis=0)  # padded cells are -inf: they never win
    if kind == "Dense":
        out = x @ weights[0] + (weights[1] if cfg.get("use_bias", True) else 0.0)
        return activation_ref(cfg.get("activation"), out)
    if kind == "Flatten":
        return x.reshape(len(x), -1)  # channels_last, row-major
    if kind == "Activation":
        return activation_ref(cfg["activation"], x)
    if kind == "Dropout":
        return x  # inference
    raise KeyError(kind)


class TestFixtureSemantics:
    @pytest.mark.parametrize("case", case_names(LAYERS))
    def test_layer_fixture_follows_reference_formula(self, case):
        spec = spec_of(LAYERS, case)
        got = reference_forward(spec, LAYERS[f"{case}__x"], weights_of(LAYERS, case))
        np.testing.assert_allclose(got, LAYERS[f"{case}__y"], rtol=1e-5, atol=1e-5)

    def test_same_padding_puts_the_odd_pixel_at_the_end(self):
        assert same_padding(8, 3, 2) == (0, 1)
        assert same_padding(7, 3, 2) == (1, 1)
        assert same_padding(7, 2, 2) == (0, 1)
        assert same_padding(6, 4, 1) == (1, 2)

    @pytest.mark.parametrize("case", ["cce_extreme", "sparse_cce_extreme", "bce_extreme"])
    def test_crossentropy_on_softmax_or_sigmoid_output_is_taken_from_the_logits(self, case):
        """Keras 3 (TensorFlow backend) computes a model's crossentropy from the logits behind
        its final softmax/sigmoid, not from clipped probabilities: with a true-class probability
        of 0 the loss is large (~1e2), far above the clipping bound -log(1e-7) ~= 16.1."""
        spec = spec_of(LOSSES, case)
        x, y = LOSSES[f"{case}__x"].astype(np.float64), LOSSES[f"{case}__y"]
        kernel, bias = (w.astype(np.float64) for w in weights_of(LOSSES, case))
        logits = x @ kernel + bias
        if spec["loss"] == "binary_crossentropy":
            z, t = logits[:, 0], y[:, 0]
            per_sample = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
        else:
            onehot = np.eye(logits.shape[1])[y] if y.ndim == 1 else y
            log_p = logits - logits.max(1, keepdims=True)
            log_p = log_p - np.log(np.exp(log_p).sum(1, keepdims=True))
            per_sample = -(onehot * log_p).sum(1)
        loss = LOSSES[f"{case}__eval"][0]
        assert loss > -np.log(1e-7)
        np.testing.assert_allclose(loss, per_sample.mean(), rtol=1e-5)
