"""``kandle.utils.vis_utils``: ``model_to_dot`` and ``plot_model``, drawing a model's layer graph
with pydot and Graphviz, in the Keras 2 style the 2018 tutorials show (one record node per layer,
``name: ClassName`` and, with ``show_shapes``, the input and output shapes).

Both are optional dependencies: ``model_to_dot`` needs the ``pydot`` package, and rendering (what
``plot_model`` and ``model_to_dot(...).create(...)`` do) also needs Graphviz's ``dot`` program. When
one is missing an ``ImportError`` says what to install: ``pip install pydot``, and Graphviz from
https://graphviz.org/download/ (``apt-get install graphviz``, ``brew install graphviz``,
``conda install graphviz``, ...).
"""

import os

__all__ = ["model_to_dot", "plot_model", "check_pydot", "check_graphviz"]

_PYDOT_MISSING = "You must install pydot (`pip install pydot`) for `{}` to work."
_GRAPHVIZ_MISSING = ("You must install Graphviz (its `dot` program must be on the PATH; see "
                     "https://graphviz.org/download/, e.g. `apt-get install graphviz` or `brew install "
                     "graphviz`) for `{}` to work.")


def _pydot():
    try:
        import pydot
    except ImportError:
        return None
    return pydot


def check_pydot():
    """True if pydot can be imported."""
    return _pydot() is not None


def check_graphviz():
    """True if pydot is installed and can run Graphviz's ``dot`` program."""
    pydot = _pydot()
    if pydot is None:
        return False
    try:
        # Attempt to create an image of a blank graph to check the pydot/graphviz installation.
        pydot.Dot.create(pydot.Dot())
        return True
    except Exception:  # FileNotFoundError/OSError (no `dot`), pydot's own errors across versions
        return False


def _require_pydot(caller):
    pydot = _pydot()
    if pydot is None:
        raise ImportError(_PYDOT_MISSING.format(caller))
    return pydot


def _shape_label(fn):
    try:
        return str(fn())
    except (AttributeError, ValueError, RuntimeError):
        return "multiple"


def _layers_for_plot(model):
    """``(node_id, name, class_name, input_shape, output_shape, activation)`` for each node, the
    input first (Keras 2 draws a Sequential's implicit ``<first layer>_input: InputLayer``; a
    functional model lists its InputLayers itself)."""
    layers = list(getattr(model, "layers", []))
    if not layers:
        raise ValueError(f"Model {getattr(model, 'name', model)!r} has no layers to plot.")
    rows = []
    if getattr(model, "built", False) and getattr(model, "_functional", None) is None:
        shape = _shape_label(lambda: model.input_shape)
        rows.append((f"{id(model)}_input", f"{layers[0].name}_input", "InputLayer", shape, shape, None))
    for layer in layers:
        class_name = getattr(layer, "_class_name", None) or type(layer).__name__
        config = layer.get_config() if hasattr(layer, "get_config") else {}
        rows.append((str(id(layer)), layer.name, class_name,
                     _shape_label(lambda: layer.input_shape) if layer.built else "?",
                     _shape_label(lambda: layer.output_shape) if layer.built else "?",
                     config.get("activation")))
    return rows


def model_to_dot(model, show_shapes=False, show_layer_names=True, rankdir="TB", expand_nested=False,
                 dpi=96, subgraph=False, show_dtype=False, show_layer_activations=False,
                 show_trainable=False, **kwargs):
    """Converts a kandle model to a ``pydot.Dot`` graph (needs pydot; not Graphviz, until rendered).

    Args:
        model: a kandle ``Sequential`` (a chain) or functional ``Model`` (its graph).
        show_shapes: add each layer's input and output shapes.
        show_layer_names: label nodes ``name: ClassName`` (else ``ClassName``).
        rankdir: Graphviz direction, ``"TB"`` (top to bottom) or ``"LR"`` (left to right).
        expand_nested: accepted for Keras compatibility; kandle models have no nested models.
        dpi: the graph's resolution.
        subgraph: return a ``pydot.Cluster`` instead of a ``pydot.Dot``.
        show_dtype: add each layer's dtype (always float32 in kandle).
        show_layer_activations: add the activation of layers that have one.
        show_trainable: add whether each layer is trainable (always in kandle).

    Render it as Keras tutorials do: ``SVG(model_to_dot(model).create(prog='dot', format='svg'))``.
    """
    pydot = _require_pydot("model_to_dot")
    if subgraph:
        dot = pydot.Cluster(style="dashed", graph_name=getattr(model, "name", "model"))
        dot.set("label", getattr(model, "name", "model"))
        dot.set("labeljust", "l")
    else:
        dot = pydot.Dot()
        dot.set("rankdir", rankdir)
        dot.set("concentrate", True)
        dot.set("dpi", dpi)
        dot.set_node_defaults(shape="record")

    functional = getattr(model, "_functional", None) is not None
    ids = {layer.name: str(id(layer)) for layer in model.layers}
    previous = None
    for node_id, name, class_name, in_shape, out_shape, activation in _layers_for_plot(model):
        label = f"{name}: {class_name}" if show_layer_names else class_name
        if show_layer_activations and activation is not None:
            label += f"\n|{{activation:|{activation}}}"
        if show_dtype:
            label += "\n|{dtype:|float32}"
        if show_trainable:
            label += "\n|{trainable:|True}"
        if show_shapes:
            label = f"{label}\n|{{input:|output:}}|{{{{{in_shape}}}|{{{out_shape}}}}}"
        dot.add_node(pydot.Node(node_id, label=label))
        if functional:  # an edge from every tensor a layer reads ("Connected to": name[node][tensor])
            for source in model._connected_to(model.get_layer(name)):
                dot.add_edge(pydot.Edge(ids[source.split("[")[0]], node_id))
        elif previous is not None:
            dot.add_edge(pydot.Edge(previous, node_id))
        previous = node_id
    return dot


def plot_model(model, to_file="model.png", show_shapes=False, show_layer_names=True, rankdir="TB",
               expand_nested=False, dpi=96, show_dtype=False, show_layer_activations=False,
               show_trainable=False, **kwargs):
    """Draws the model's graph to ``to_file`` (png, svg, pdf, jpg, ... from the extension).

    Needs pydot and Graphviz (an ``ImportError`` says which is missing and how to install it).
    Returns an ``IPython.display.Image`` of the file when IPython is installed and the file is not a
    PDF or SVG, so that ``plot_model(model)`` as a notebook cell's last line shows the picture.
    """
    _require_pydot("plot_model")
    if not check_graphviz():
        raise ImportError(_GRAPHVIZ_MISSING.format("plot_model"))
    dot = model_to_dot(model, show_shapes=show_shapes, show_layer_names=show_layer_names, rankdir=rankdir,
                       expand_nested=expand_nested, dpi=dpi, show_dtype=show_dtype,
                       show_layer_activations=show_layer_activations, show_trainable=show_trainable)
    to_file = os.fspath(to_file)
    _, extension = os.path.splitext(to_file)
    extension = extension[1:].lower() if extension else "png"
    folder = os.path.dirname(to_file)
    if folder:
        os.makedirs(folder, exist_ok=True)
    dot.write(to_file, format=extension)
    if extension not in ("pdf", "svg"):
        try:
            from IPython import display
        except ImportError:
            return None
        return display.Image(filename=to_file)
    return None
