"""Layers that users write: a subclass of ``kandle.layers.Layer`` with ``build``/``add_weight``/``call``.

``call`` runs once per input signature on symbolic tensors (once with ``training=True`` and once with
``training=False`` when it takes ``training``); what it records, with the weights ``add_weight``
declared, is the layer's config for the Rust core, which builds the weights, runs the graph and
differentiates it. Custom layers used inside another's ``call`` are recorded into it (their weights
become the outer layer's). Nothing here computes.
"""

import inspect
import json

from kandle import initializers as initializers_module
from kandle.ops._graph import SymbolicTensor, Variable, _Graph, recording

_KEYS = ("_kandle_graph", "_kandle_train_graph", "_kandle_weights", "_kandle_class")


def is_custom(layer):
    """A user's subclass (or an op layer): no registry class name of its own."""
    return type(layer)._class_name is None


def init(layer, name, trainable, dtype, kwargs):
    from kandle import backend

    for key in _KEYS:
        kwargs.pop(key, None)
    for key in ("input_shape", "batch_input_shape", "input_dim", "autocast", "batch_size"):
        kwargs.pop(key, None)
    if kwargs:
        raise TypeError(f"Layer {type(layer).__name__}: unrecognized keyword arguments passed to Layer.__init__: "
                        f"{sorted(kwargs)}")
    if dtype not in (None, "float32") and not isinstance(dtype, dict):
        raise ValueError(f"{type(layer).__name__}: only dtype='float32' is supported, got {dtype!r}")
    layer._class_name = type(layer).__name__
    layer.name = name or backend.unique_name(backend.snake_case(layer._class_name))
    layer._config = {"name": layer.name, "trainable": bool(trainable), "dtype": "float32"}
    layer._variables = []
    layer._recorded = None
    layer._owner = None
    layer.built = False


def add_weight(layer, shape=None, initializer=None, dtype=None, trainable=True, autocast=True, regularizer=None,
               constraint=None, aggregation="none", overwrite_with_gradient=False, name=None):
    if regularizer is not None or constraint is not None:
        raise ValueError(f"Layer \"{layer.name}\": kandle does not implement weight regularizers or constraints in "
                         "add_weight yet")
    if dtype not in (None, "float32"):
        raise ValueError(f"Layer \"{layer.name}\": add_weight supports dtype='float32' only, got {dtype!r}")
    shape = () if shape is None else tuple(int(d) for d in shape)
    if any(d <= 0 for d in shape):
        raise ValueError(f"Layer \"{layer.name}\": add_weight needs a shape of positive integers, got {shape}")
    if initializer is None:
        initializer = "glorot_uniform"
    init_config = initializers_module.serialize(initializers_module.get(initializer))
    name = name or f"variable_{len(layer._variables)}"
    v = Variable(layer, len(layer._variables), shape, name, bool(trainable), init_config)
    layer._variables.append(v)
    return v


def sublayers(layer):
    """The custom layers held by ``layer``'s attributes (and lists/tuples/dicts of them), in order."""
    from kandle.layers.base import Layer

    out = []

    def visit(value):
        if isinstance(value, Layer) and value is not layer and not any(value is o for o in out):
            out.append(value)
        elif isinstance(value, (list, tuple)):
            for v in value:
                visit(v)
        elif isinstance(value, dict):
            for v in value.values():
                visit(v)

    for key, value in vars(layer).items():
        if not key.startswith("_kandle") and key not in ("_owner", "_model", "_inbound_nodes"):
            visit(value)
    return out


def all_variables(layer):
    """Keras's ``weights`` order: the layer's own trainable weights, its own non-trainable ones, then
    each sublayer's (recursively)."""
    out = [v for v in layer._variables if v.trainable] + [v for v in layer._variables if not v.trainable]
    for sub in sublayers(layer):
        if is_custom(sub):
            out.extend(all_variables(sub))
    return out


def ensure_built(layer, shapes):
    """``build(input_shape)`` once, with Keras's batch shape(s)."""
    if not layer.built:
        batch = [tuple(s) for s in shapes]
        layer.build(batch[0] if len(batch) == 1 else batch)
        layer.built = True


def _takes_training(layer):
    try:
        return "training" in inspect.signature(layer.call).parameters
    except (TypeError, ValueError):
        return False


def _run_call(layer, inputs, training):
    kwargs = {"training": training} if _takes_training(layer) else {}
    out = layer.call(inputs, **kwargs)
    if isinstance(out, (list, tuple)):
        raise ValueError(f"Layer \"{layer.name}\": `call` returned {len(out)} tensors; kandle does not implement "
                         "layers with several outputs yet")
    return out


# Inside the trace of a subclassed model whose call() takes no `training`: Keras 3 then calls the
# model's layers with training=None in fit too, so a custom layer records that one mode.
_untrained_context = []


def _inputs(graph, input_shapes, dtypes):
    """The call's symbolic inputs in ``graph``: one tensor, or a list for several."""
    xs = [graph.input((None, *s), d) for s, d in zip(input_shapes, dtypes)]
    return xs[0] if len(xs) == 1 else xs


def record(layer, input_shapes, dtypes=None, training=None):
    """The config the core builds this layer from, for calls on these per-sample input shapes (and
    dtypes: float32 unless given). ``training`` given at the call fixes the mode of both graphs, as
    an explicit ``layer(x, training=False)`` does in Keras."""
    dtypes = list(dtypes or ["float32"] * len(input_shapes))
    key = json.dumps([[list(s) for s in input_shapes], dtypes])
    if layer._recorded is not None and layer._recorded[0] == key:
        return layer._recorded[1]
    if layer._recorded is not None:
        raise ValueError(f"Layer \"{layer.name}\" was first called on inputs of shape "
                         f"{json.loads(layer._recorded[0])[0]}, now on {list(map(list, input_shapes))}: kandle records one "
                         "input signature per custom layer")
    ensure_built(layer, [(None, *s) for s in input_shapes])
    if any(is_custom(sub) and not sub.built for sub in sublayers(layer)):
        # Sublayers build on their first call: a dry run makes their weights, so that the graph
        # lists every weight in Keras's order (the layer's own, then each sublayer's).
        dry = _Graph(f"Layer \"{layer.name}\"")
        dry.training = False
        with recording(dry):
            _run_call(layer, _inputs(dry, input_shapes, dtypes), False)
    variables = all_variables(layer)
    graphs = []
    if training is not None or _untrained_context:
        modes = (training,)
    else:
        modes = (False, True) if _takes_training(layer) else (False,)
    for training in modes:
        g = _Graph(f"Layer \"{layer.name}\"")
        g.training = training
        for v in variables:
            g.weight(v)
        with recording(g):
            out = _run_call(layer, _inputs(g, input_shapes, dtypes), training)
        if isinstance(out, Variable):
            out = g.weight(out)
        if not isinstance(out, SymbolicTensor) or out._graph is not g:
            raise TypeError(f"Layer \"{layer.name}\": `call` must return a tensor computed from its inputs with "
                            f"kandle.ops, got {type(out).__name__}")
        graphs.append(g.to_json(out))
        if training is not True:
            infer_dtype = out.dtype
    infer = graphs[0]
    train = graphs[1] if len(graphs) > 1 and graphs[1] != graphs[0] else None
    for v in variables:
        v._owner = layer
    weights = [{"name": v.name if v._layer is layer else f"{v._layer.name}/{v.name}", "shape": list(v.shape),
                "trainable": v.trainable, "initializer": v.initializer} for v in variables]
    config = dict(layer.get_config())
    try:
        json.dumps(config)
    except TypeError as e:
        raise TypeError(f"Layer \"{layer.name}\": get_config() must return JSON-serializable values ({e})") from None
    config.update({"name": layer.name, "trainable": layer.trainable, "_kandle_class": layer._class_name,
                   "_kandle_graph": infer, "_kandle_train_graph": train, "_kandle_weights": weights})
    layer._recorded = (key, config)
    layer._output_dtype = infer_dtype
    return config


def call_inline(layer, inputs, training=None):
    """A custom layer called inside another's ``call``: its ops go into the outer recording (in the
    outer call's mode unless the call names one)."""
    from kandle.ops._graph import active

    tensors = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    ensure_built(layer, [t.shape for t in tensors])
    graph = active() or tensors[0]._graph
    if training is None:
        training = getattr(graph, "training", None)
    out = _run_call(layer, inputs, training)
    return graph.weight(out) if isinstance(out, Variable) else out


def call_eager(layer, inputs, training=None):
    """A custom layer called on arrays (Keras's eager call): built for their shape, its ``call`` run
    with kandle.ops computing at once; its weights are the layer's own until it joins a model."""
    import numpy as np

    arrays = [np.asarray(t, dtype=np.float32) for t in (inputs if isinstance(inputs, (list, tuple)) else [inputs])]
    ensure_built(layer, [a.shape for a in arrays])
    kwargs = {"training": bool(training)} if _takes_training(layer) else {}
    out = layer.call(arrays if isinstance(inputs, (list, tuple)) else arrays[0], **kwargs)
    return np.asarray(out, dtype=np.float32)


def adopt_standalone_values(layer):
    """A layer that computed eagerly before joining a model brings those weights into it."""
    variables = all_variables(layer)
    if variables and any(v._standalone is not None for v in variables):
        current = layer._model.layer_get_weights(layer.name)
        layer._model.layer_set_weights(layer.name, [
            (v._standalone if v._standalone is not None else w).astype("float32") for v, w in zip(variables, current)])
        for v in variables:
            v._standalone = None
