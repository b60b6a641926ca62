"""kandle's functional graphs against golden fixtures produced by REAL Keras 3.15 (TensorFlow
backend; see ``tests/golden/make_golden_graph.py`` and ``tests/golden/graph/README.md``).

What is specified here, case by case (the fixtures say the numbers):

* every single layer of ``layers.json`` (merge layers, BatchNormalization, ZeroPadding2D,
  AveragePooling2D, MaxPooling2D, the global poolings, strided Conv2D), built from its Keras 3
  ``get_config()`` with ``kandle.layers.deserialize``, gives Keras's inference output for the same
  weights and inputs, within 1e-5; BatchNormalization's training call is checked through
  ``train_on_batch`` (see :func:`test_batchnorm_training_step_matches_keras`);
* the three small functional graphs (fan-out + Add, two Conv2D branches + Concatenate, two inputs)
  have Keras's layer order, names, classes, output shapes, parameter counts and "Connected to"
  column, predict as Keras does (1e-5), and two epochs of SGD(momentum) end at Keras's weights and
  History (1e-4); Keras's own ``model.to_json()`` of them rebuilds them too;
* the mini ResNet (the deeplearning.ai "Residual Networks" assignment's ``convolutional_block`` and
  ``identity_block``): its 31 layers and 2,901 / 2,757 / 144 parameters, its predictions with
  Keras's initial weights, two epochs with SGD(momentum) and with Adam (loss and accuracy per epoch,
  all weights including the moving statistics, within 1e-3 relative -- except the Conv2D biases
  that feed a BatchNormalization, whose gradient is exactly zero, see
  :func:`biases_before_batchnorm`), its outputs with the ``deterministic.py`` weights (inference:
  output, Flatten features, per-block statistics; training mode: output and Flatten features), and
  Keras's ``mini_resnet.keras`` file loaded by ``kandle.models.load_model``;
* the assignment's ResNet50 at 64x64x3 / 6 classes: 177 layers in Keras's order, 23,600,006 /
  23,546,886 / 53,120 parameters, and its outputs with the ``deterministic.py`` weights (inference,
  "hash" and "sine" weights, output and Flatten features, within 1e-4; training mode, "hash").

A layer's or model's training-mode output (``layer(x, training=True)`` in Keras) has no direct
kandle API; it is observed through ``train_on_batch``: with ``SGD(learning_rate=0.0)`` and loss
``"mse"``, one ``train_on_batch(x, y)`` runs the model once in training mode (batch statistics,
moving statistics updated once, as Keras's training call does) and changes no trainable weight, and
the loss it returns is ``mean((f_train(x) - y)**2)``. With ``y`` = Keras's training-mode output
that gives the root mean square of the difference, and ``max|f_train(x) - y| <= sqrt(loss *
y.size)``; see :func:`assert_training_mode_close` for what is asserted. The per-block statistics
in training mode (``*_train_block_stats``) cannot be observed that way and are not checked.

Nothing here needs TensorFlow or Keras: the deterministic weights are regenerated with the
NumPy-only ``tests/golden/deterministic.py``.
"""

import functools
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import kandle
from kandle.layers import Add, Concatenate, Conv2D, Dense, GlobalAveragePooling2D, Input
from kandle.models import Model

GOLDEN = Path(__file__).resolve().parent / "golden"
GRAPH = GOLDEN / "graph"
sys.path.insert(0, str(GOLDEN))
import deterministic  # noqa: E402

FORWARD = dict(rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# fixture access
# ----------------------------------------------------------------------------------------------

def load_npz(name):
    with np.load(GRAPH / name, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def load_json(name):
    with open(GRAPH / name, encoding="utf-8") as f:
        return json.load(f)


def stored(arrays, prefix, stem="w"):
    """``prefix + stem + 0``, ``... 1``, ... as a list (weights in ``get_weights()`` order, or inputs)."""
    out = []
    while f"{prefix}{stem}{len(out)}" in arrays:
        out.append(arrays[f"{prefix}{stem}{len(out)}"])
    return out


def weights_meta(spec):
    return [(w["kind"], tuple(w["shape"])) for w in spec["weights"]]


LAYERS, LAYERS_NPZ = load_json("layers.json"), load_npz("layers.npz")
GRAPHS, GRAPHS_NPZ = load_json("graphs.json"), load_npz("graphs.npz")
MINI, MINI_NPZ = load_json("mini_resnet.json"), load_npz("mini_resnet.npz")
R50, R50_NPZ = load_json("resnet50.json"), load_npz("resnet50.npz")
BN_CASES = [case for case, spec in LAYERS.items() if spec["has_train"]]


# ----------------------------------------------------------------------------------------------
# comparisons
# ----------------------------------------------------------------------------------------------

def feed(xs):
    return xs if len(xs) > 1 else xs[0]


def inbound_names(model, layer):
    """The fixture's ``connected_to`` (names only) from kandle's ``name[node][tensor]`` strings."""
    return [re.sub(r"\[\d+\]\[\d+\]$", "", s) for s in model._connected_to(layer)]


def layer_rows(model):
    """``[name, class_name, output_shape, param_count, connected_to]`` per ``model.layers``."""
    return [[layer.name, layer._class_name, list(layer.output_shape), int(layer.count_params()),
             inbound_names(model, layer)] for layer in model.layers]


def assert_same_layer_table(model, want_rows):
    got = layer_rows(model)
    assert [r[0] for r in got] == [r[0] for r in want_rows], "layer names / order"
    for g, w in zip(got, want_rows):
        assert g == w, f"layer {w[0]}: got {g}, Keras {w}"
    assert len(got) == len(want_rows)


def assert_same_params(model, want):
    total, trainable = int(model.count_params()), int(model._core.trainable_count())
    assert {"total": total, "trainable": trainable, "non_trainable": total - trainable} == want
    assert sum(int(np.size(w)) for w in model.trainable_weights) == want["trainable"]
    assert sum(int(np.size(w)) for w in model.non_trainable_weights) == want["non_trainable"]


def assert_same_weight_layout(model, spec):
    """Same number, order and shapes of ``get_weights()`` entries as Keras, and the same split
    into trainable and non-trainable variables."""
    got = [tuple(np.shape(w)) for w in model.get_weights()]
    assert got == [tuple(w["shape"]) for w in spec["weights"]]
    want_tr = [tuple(w["shape"]) for w in spec["weights"] if w["trainable"]]
    want_nt = [tuple(w["shape"]) for w in spec["weights"] if not w["trainable"]]
    assert [tuple(np.shape(w)) for w in model.trainable_weights] == want_tr
    assert [tuple(np.shape(w)) for w in model.non_trainable_weights] == want_nt


def assert_weights_close(got, want, rtol, atol, what=""):
    assert len(got) == len(want), what
    for i, (g, w) in enumerate(zip(got, want)):
        assert np.shape(g) == w.shape, f"{what} weight {i}"
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"{what} weight {i}")


def training_mode_error(model, x, want):
    """The root mean square of ``f_train(x) - want`` through one ``train_on_batch`` with a zero
    learning rate and loss mse (see the module docstring), and the bound it gives on the largest
    difference, ``sqrt(loss * want.size)``. Changes the model's moving statistics."""
    model.compile(optimizer=kandle.optimizers.SGD(learning_rate=0.0), loss="mse")
    loss = model.train_on_batch(x, want)
    loss = float(loss[0] if isinstance(loss, (list, tuple)) else loss)
    assert loss >= 0.0
    return float(np.sqrt(loss)), float(np.sqrt(loss * want.size))


def assert_training_mode_close(model, x, want, rtol, atol, what):
    """``|f_train - want| <= atol + rtol * |want|`` elementwise implies (triangle inequality in the
    root-mean-square norm) ``rms(f_train - want) <= atol + rtol * rms(want)``: that necessary
    condition is what the mse loss lets us assert. The largest difference is only bounded by
    ``sqrt(loss * size)``, which is ``sqrt(size)`` times looser; it is shown in the message."""
    rms, max_bound = training_mode_error(model, x, want)
    allowed = atol + rtol * float(np.sqrt(np.mean(np.square(want, dtype=np.float64))))
    assert rms <= allowed, (f"{what}: training-mode output differs from Keras's: rms {rms:.3g} > {allowed:.3g} "
                            f"(max difference <= {max_bound:.3g})")
    return rms, max_bound


def block_stats(a):
    a = np.asarray(a, dtype=np.float32)
    return np.array([a.mean(), a.std(), a.min(), a.max()], dtype=np.float32)


def single_output(model, layer_name):
    """A model from ``model``'s input to one of its layers' output (kandle models have one output;
    the layers, so their current weights, come along). kandle models do not share weights: from
    then on the layers' get/set_weights reach the new model, while ``model.predict`` keeps using
    ``model``'s own copy, so the tests set ``model``'s weights before building one, never after."""
    return Model(model.inputs[0], model.get_layer(layer_name).output)


# ----------------------------------------------------------------------------------------------
# 1) single layers, built from their Keras 3 config
# ----------------------------------------------------------------------------------------------

def one_layer_model(case):
    spec = LAYERS[case]
    layer = kandle.layers.deserialize({"class_name": spec["class_name"], "config": spec["config"]})
    inputs = [Input(tuple(s)) for s in spec["input_shapes"]]
    model = Model(feed(inputs), layer(feed(inputs)))
    return model, layer


@pytest.mark.parametrize("case", list(LAYERS))
def test_layer_from_keras_config_matches_keras(case):
    spec = LAYERS[case]
    xs = stored(LAYERS_NPZ, f"{case}/", "x")
    want = LAYERS_NPZ[f"{case}/y"]
    weights = stored(LAYERS_NPZ, f"{case}/")
    assert len(xs) == spec["n_inputs"] and len(weights) == len(spec["weights"])

    model, layer = one_layer_model(case)
    assert layer._class_name == spec["class_name"]
    assert layer.name == spec["config"]["name"]
    assert [np.shape(w) for w in layer.get_weights()] == [w.shape for w in weights]
    assert layer.count_params() == sum(w.size for w in weights)
    if weights:
        layer.set_weights(weights)
        assert_weights_close(layer.get_weights(), weights, rtol=0, atol=0)
    assert tuple(layer.output_shape) == (None,) + want.shape[1:]

    got = model.predict(feed(xs), batch_size=len(xs[0]), verbose=0)
    assert np.shape(got) == want.shape
    np.testing.assert_allclose(got, want, **FORWARD)


@pytest.mark.parametrize("case", BN_CASES)
def test_batchnorm_training_step_matches_keras(case):
    """One training step (batch statistics, moving statistics updated once) as Keras's
    ``layer(x, training=True)``: ``train_on_batch`` with SGD(learning_rate=0.0) and loss mse."""
    spec = LAYERS[case]
    x = LAYERS_NPZ[f"{case}/x0"]
    y, y_train = LAYERS_NPZ[f"{case}/y"], LAYERS_NPZ[f"{case}/y_train"]
    before = stored(LAYERS_NPZ, f"{case}/")
    after = stored(LAYERS_NPZ, f"{case}/", "w_after_train")
    # The check below can tell training mode from inference: the two outputs differ by far more.
    assert np.abs(y - y_train).max() > 1e-2

    model, layer = one_layer_model(case)
    names = spec["weights"]
    assert names == [n for n in ("gamma", "beta", "moving_mean", "moving_variance") if n in names]
    assert len(layer.trainable_weights) == sum(n in ("gamma", "beta") for n in names)
    assert len(layer.non_trainable_weights) == 2
    layer.set_weights(before)

    _, max_bound = assert_training_mode_close(model, x, y_train, what=case, **FORWARD)
    # One layer, 3 x 7 x 6 x 4 values at most: even the bound on the largest difference is tight.
    assert max_bound <= 1e-5, f"{case}: max |y_train difference| <= {max_bound:.3g}"
    # gamma/beta untouched (learning rate 0), moving mean/variance updated once, as Keras did.
    assert_weights_close(layer.get_weights(), after, rtol=1e-5, atol=1e-6, what=case)


# ----------------------------------------------------------------------------------------------
# 2) three small functional graphs
# ----------------------------------------------------------------------------------------------

def graph_fanout():
    x = Input((5,), name="x")
    h = Dense(6, activation="relu", name="d1")(x)
    a = Dense(4, name="d2")(h)
    b = Dense(4, name="d3")(h)
    s = Add(name="add")([a, b])
    out = Dense(3, activation="softmax", name="out")(s)
    return Model(x, out, name="fanout")


def graph_conv_concat():
    x = Input((8, 7, 3), name="img")
    a = Conv2D(4, (3, 3), padding="same", activation="relu", name="conv_a")(x)
    b = Conv2D(3, (1, 1), activation="tanh", name="conv_b")(x)
    c = Concatenate(name="concat")([a, b])
    g = GlobalAveragePooling2D(name="gap")(c)
    out = Dense(3, activation="softmax", name="out")(g)
    return Model(x, out, name="conv_concat")


def graph_two_inputs():
    ia = Input((8,), name="in_a")
    ib = Input((5,), name="in_b")
    a = Dense(4, activation="relu", name="da")(ia)
    b = Dense(3, activation="relu", name="db")(ib)
    c = Concatenate(name="concat")([a, b])
    out = Dense(2, activation="softmax", name="out")(c)
    return Model([ia, ib], out, name="two_inputs")


GRAPH_BUILDERS = {"fanout": graph_fanout, "conv_concat": graph_conv_concat, "two_inputs": graph_two_inputs}
assert set(GRAPH_BUILDERS) == set(GRAPHS)


def check_graph_structure(model, spec):
    assert model.name == spec["model_name"]
    assert [t._keras_history[0].name for t in model.inputs] == spec["input_names"]
    assert_same_layer_table(model, spec["layers"])
    assert {layer.name: model._connected_to(layer) for layer in model.layers} == spec["connected_to_full"]
    assert_same_params(model, spec["params"])
    assert_same_weight_layout(model, spec)


@pytest.mark.parametrize("graph", list(GRAPHS))
def test_graph_structure_matches_keras(graph):
    check_graph_structure(GRAPH_BUILDERS[graph](), GRAPHS[graph])


@pytest.mark.parametrize("graph", list(GRAPHS))
def test_graph_predict_matches_keras(graph):
    spec = GRAPHS[graph]
    weights = stored(GRAPHS_NPZ, f"{graph}/")
    # The fixture's weights are deterministic.fill(..., scheme="hash"): NumPy regenerates them.
    assert_weights_close(deterministic.fill(weights_meta(spec), scheme="hash"), weights, rtol=0, atol=0)
    xs = stored(GRAPHS_NPZ, f"{graph}/", "x")
    assert len(xs) == spec["n_inputs"]

    model = GRAPH_BUILDERS[graph]()
    model.set_weights(weights)
    got = model.predict(feed(xs), batch_size=len(xs[0]), verbose=0)
    np.testing.assert_allclose(got, GRAPHS_NPZ[f"{graph}/pred"], **FORWARD)


@pytest.mark.parametrize("graph", list(GRAPHS))
def test_graph_fit_matches_keras(graph):
    spec, fit = GRAPHS[graph], GRAPHS[graph]["fit"]
    xs = stored(GRAPHS_NPZ, f"{graph}/", "x")
    y = GRAPHS_NPZ[f"{graph}/y"]
    assert len(y) == fit["n_samples"]

    model = GRAPH_BUILDERS[graph]()
    model.set_weights(stored(GRAPHS_NPZ, f"{graph}/"))
    opt = fit["optimizer"]
    model.compile(optimizer=getattr(kandle.optimizers, opt["class_name"])(**opt["config"]), loss=fit["loss"])
    history = model.fit(feed(xs), y, epochs=fit["epochs"], batch_size=fit["batch_size"], shuffle=fit["shuffle"],
                        verbose=0)

    want_loss = GRAPHS_NPZ[f"{graph}/loss"]
    np.testing.assert_allclose(want_loss, spec["history"]["loss"], rtol=1e-7)
    assert len(history.history["loss"]) == fit["epochs"]
    np.testing.assert_allclose(history.history["loss"], want_loss, rtol=1e-4, atol=1e-4)
    assert_weights_close(model.get_weights(), stored(GRAPHS_NPZ, f"{graph}/after/"), rtol=1e-4, atol=1e-5,
                         what=graph)
    got = model.predict(feed(xs), batch_size=len(xs[0]), verbose=0)
    np.testing.assert_allclose(got, GRAPHS_NPZ[f"{graph}/pred_after"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("graph", list(GRAPHS))
def test_graph_from_keras_json_matches_keras(graph):
    """Keras 3's ``model.to_json()`` (functional config, ``compile_config`` included) rebuilds the
    same graph in kandle, which then predicts as Keras."""
    spec = GRAPHS[graph]
    model = kandle.models.model_from_json(json.dumps(spec["model_config"]))
    check_graph_structure(model, spec)
    model.set_weights(stored(GRAPHS_NPZ, f"{graph}/"))
    xs = stored(GRAPHS_NPZ, f"{graph}/", "x")
    got = model.predict(feed(xs), batch_size=len(xs[0]), verbose=0)
    np.testing.assert_allclose(got, GRAPHS_NPZ[f"{graph}/pred"], **FORWARD)


# ----------------------------------------------------------------------------------------------
# 3) the Residual Networks assignment, shared with the generator (tests/golden/resnet_assignment.py)
# ----------------------------------------------------------------------------------------------

import resnet_assignment  # noqa: E402

_assignment = resnet_assignment.build(kandle)
identity_block, convolutional_block = _assignment.identity_block, _assignment.convolutional_block
ResNet50, MiniResNet = _assignment.ResNet50, _assignment.MiniResNet


def fresh(build, **kwargs):
    """Built as the generator did: after ``clear_session()``, so the automatic names (activation_3,
    add_1, ...) count from zero."""
    kandle.backend.clear_session()
    return build(**kwargs)


def block_output_names(model):
    """The Activation closing each residual block (the one right after an Add), in order."""
    return [layer.name for layer in model.layers
            if layer._class_name == "Activation" and inbound_names(model, layer)
            and model.get_layer(inbound_names(model, layer)[0])._class_name == "Add"]


def check_resnet_structure(model, spec):
    assert model.name == spec["model_name"]
    assert len(model.layers) == spec["n_layers"]
    assert_same_layer_table(model, spec["layers"])
    assert_same_params(model, spec["params"])
    assert_same_weight_layout(model, spec)
    assert block_output_names(model) == spec["block_output_layers"]
    assert [l.name for l in model.layers if l._class_name == "Flatten"] == [spec["flatten_layer"]]


# -- mini ResNet ------------------------------------------------------------------------------

MINI_TRAIN = dict(rtol=1e-3, atol=1e-5)


def test_mini_resnet_structure_matches_keras():
    assert MINI["n_layers"] == 31
    assert MINI["params"] == {"total": 2901, "trainable": 2757, "non_trainable": 144}
    check_resnet_structure(fresh(MiniResNet), MINI)


def test_mini_resnet_predict_matches_keras():
    model = fresh(MiniResNet)
    model.set_weights(stored(MINI_NPZ, ""))
    got = model.predict(MINI_NPZ["x"], batch_size=len(MINI_NPZ["x"]), verbose=0)
    np.testing.assert_allclose(got, MINI_NPZ["pred"], **FORWARD)


def biases_before_batchnorm(spec):
    """``path``s of the Conv2D biases whose layer feeds BatchNormalization layers only.

    BatchNormalization in training mode subtracts the batch mean of each channel, so the loss does
    not depend on such a bias at all: its gradient is exactly zero, and what either implementation
    computes for it is float32 rounding noise (|g| ~ 1e-7 here). SGD turns that noise into moves of
    ~1e-8, harmless; Adam normalizes it (``m / sqrt(v)`` is of order 1 whatever the scale of g), so
    each step moves the bias by ~``learning_rate`` in a direction set by the noise: Keras's final
    values of these biases (and, through the batch means, a ~1e-5 share of the moving means) are
    not reproducible by any other implementation, not even by TensorFlow with another summation
    order. They are compared by their size instead."""
    rows = spec["layers"]
    consumers = {}
    for _, cls, _, _, inbound in rows:
        for src in inbound:
            consumers.setdefault(src, []).append(cls)
    return {f"{name}/bias" for name, cls, *_ in rows
            if cls == "Conv2D" and consumers.get(name)
            and all(c == "BatchNormalization" for c in consumers[name])}


@pytest.mark.parametrize("opt", list(MINI["fit"]["optimizers"]))
def test_mini_resnet_fit_matches_keras(opt):
    """Two epochs from Keras's initial weights: loss per epoch (1e-3 relative), accuracy (the same
    count of right answers), all weights (1e-3 relative; moving means 1e-3 of their tensor's
    largest value, see :func:`biases_before_batchnorm`), and the predictions after training."""
    fit, cfg = MINI["fit"], MINI["fit"]["optimizers"][opt]
    x, y = MINI_NPZ["x"], MINI_NPZ["y"]
    np.testing.assert_array_equal(np.eye(MINI["n_classes"], dtype=np.float32)[MINI_NPZ["labels"]], y)

    model = fresh(MiniResNet)
    model.set_weights(stored(MINI_NPZ, ""))
    model.compile(optimizer=getattr(kandle.optimizers, cfg["class_name"])(**cfg["config"]), loss=fit["loss"],
                  metrics=list(fit["metrics"]))
    history = model.fit(x, y, epochs=fit["epochs"], batch_size=fit["batch_size"], shuffle=fit["shuffle"],
                        verbose=0)

    assert len(history.history["loss"]) == fit["epochs"]
    np.testing.assert_allclose(MINI_NPZ[f"{opt}/loss"], MINI["history"][opt]["loss"], rtol=1e-7)
    np.testing.assert_allclose(history.history["loss"], MINI_NPZ[f"{opt}/loss"], rtol=1e-3)
    # accuracy is k/24: the same k per epoch
    np.testing.assert_allclose(history.history["accuracy"], MINI_NPZ[f"{opt}/accuracy"], rtol=0, atol=1e-6)

    got, want = model.get_weights(), stored(MINI_NPZ, f"{opt}/")
    assert len(got) == len(want) == len(MINI["weights"])
    noise = biases_before_batchnorm(MINI)
    assert len(noise) == 8  # every Conv2D of the model feeds a BatchNormalization
    n_steps = fit["epochs"] * -(-MINI["n_samples"] // fit["batch_size"])
    bound = 2.0 * n_steps * cfg["config"]["learning_rate"]
    for i, (g, w, meta) in enumerate(zip(got, want, MINI["weights"])):
        what = f"{opt} weight {i} ({meta['path']})"
        assert np.shape(g) == w.shape, what
        if meta["path"] in noise:
            assert np.abs(w).max() <= bound, f"{what}: Keras's value is not of the expected size"
            assert np.abs(g).max() <= bound, what
        elif meta["kind"] == "moving_mean":
            np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-3 * np.abs(w).max(), err_msg=what)
        else:
            np.testing.assert_allclose(g, w, err_msg=what, **MINI_TRAIN)
    pred = model.predict(x, batch_size=len(x), verbose=0)
    np.testing.assert_allclose(pred, MINI_NPZ[f"{opt}/pred"], **MINI_TRAIN)


SCHEMES = {"det": "sine", "hash": "hash"}


@pytest.mark.parametrize("prefix", list(SCHEMES))
def test_mini_resnet_deterministic_weights_inference_matches_keras(prefix):
    x = MINI_NPZ["x"]
    np.testing.assert_array_equal(x, deterministic.inputs((MINI["n_samples"], *MINI["input_shape"]),
                                                          seed=MINI["x_seed"]))
    model = fresh(MiniResNet)
    model.set_weights(deterministic.fill(weights_meta(MINI), scheme=SCHEMES[prefix]))
    got = model.predict(x, batch_size=len(x), verbose=0)
    np.testing.assert_allclose(got, MINI_NPZ[f"{prefix}_pred"], **FORWARD)

    features = single_output(model, MINI["flatten_layer"]).predict(x, batch_size=len(x), verbose=0)
    np.testing.assert_allclose(features, MINI_NPZ[f"{prefix}_features"], **FORWARD)
    stats = np.array([block_stats(single_output(model, name).predict(x, batch_size=len(x), verbose=0))
                      for name in MINI["block_output_layers"]])
    np.testing.assert_allclose(stats, MINI_NPZ[f"{prefix}_block_stats"], **FORWARD)


@pytest.mark.parametrize("prefix", list(SCHEMES))
def test_mini_resnet_deterministic_weights_training_mode_matches_keras(prefix):
    """``model(x, training=True)`` (batch statistics) as Keras, for the output and the Flatten
    features, through ``train_on_batch`` (module docstring)."""
    x = MINI_NPZ["x"]
    weights = deterministic.fill(weights_meta(MINI), scheme=SCHEMES[prefix])
    for what, key in (("output", f"{prefix}_train"), ("features", f"{prefix}_train_features")):
        model = fresh(MiniResNet)
        model.set_weights(weights)
        if what == "features":
            model = single_output(model, MINI["flatten_layer"])
        assert_training_mode_close(model, x, MINI_NPZ[key], what=f"{prefix} {what}", **FORWARD)


def test_mini_resnet_keras_file_loads_and_predicts_as_keras():
    model = kandle.models.load_model(str(GRAPH / "mini_resnet.keras"))
    check_resnet_structure(model, MINI)
    assert_weights_close(model.get_weights(), stored(MINI_NPZ, ""), rtol=0, atol=0, what="mini_resnet.keras")
    got = model.predict(MINI_NPZ["x"], batch_size=len(MINI_NPZ["x"]), verbose=0)
    np.testing.assert_allclose(got, MINI_NPZ["pred"], **FORWARD)


# -- ResNet50 -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def resnet50():
    return fresh(ResNet50, input_shape=tuple(R50["input_shape"]), classes=R50["classes"])


def test_resnet50_structure_matches_keras(resnet50):
    assert R50["n_layers"] == 177
    assert R50["params"] == {"total": 23_600_006, "trainable": 23_546_886, "non_trainable": 53_120}
    check_resnet_structure(resnet50, R50)


R50_TOL = dict(rtol=1e-4, atol=1e-4)


@functools.lru_cache(maxsize=None)
def resnet50_weights(scheme):
    """deterministic.fill for the 320 ResNet50 weights (~3 s for "hash"), made once per scheme."""
    return tuple(deterministic.fill(weights_meta(R50), scheme=scheme))


@pytest.mark.parametrize("prefix", ["hash", "det"])
def test_resnet50_deterministic_weights_inference_matches_keras(prefix):
    """Inference with the deterministic.py weights: the softmax output (and the Flatten features,
    2 x 2048 values up to ~6) as Keras's. ``det`` (scheme "sine") is the weaker check: its rank-2
    kernels make the output nearly independent of the input (README). A model of its own: the
    features model takes its layers over."""
    x = R50_NPZ["x"]
    np.testing.assert_array_equal(x, deterministic.inputs((2, *R50["input_shape"]), seed=R50["x_seed"]))
    resnet50 = fresh(ResNet50, input_shape=tuple(R50["input_shape"]), classes=R50["classes"])
    resnet50.set_weights(resnet50_weights(SCHEMES[prefix]))
    got = resnet50.predict(x, batch_size=len(x), verbose=0)
    np.testing.assert_allclose(got, R50_NPZ[f"{prefix}_pred"], **R50_TOL)
    features = single_output(resnet50, R50["flatten_layer"]).predict(x, batch_size=len(x), verbose=0)
    np.testing.assert_allclose(features, R50_NPZ[f"{prefix}_features"], **R50_TOL)


def test_resnet50_hash_weights_training_mode_matches_keras(resnet50):
    """``model(x, training=True)`` (batch statistics over 2 samples) as Keras, through
    ``train_on_batch`` (module docstring)."""
    resnet50.set_weights(resnet50_weights("hash"))
    assert_training_mode_close(resnet50, R50_NPZ["x"], R50_NPZ["hash_train"], what="ResNet50 hash", **R50_TOL)
