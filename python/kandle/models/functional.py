"""The functional graph as Python records it: Keras 3's ``map_graph`` (layer order and the calls a
model uses) and the functional config handed to the core (``layers`` with ``inbound_nodes``,
``input_layers``, ``output_layers``); ``Model`` in ``kandle.models.model`` uses them."""

from kandle.layers.input_layer import InputLayer


def _node_args(node):
    """The input references of one ``inbound_nodes`` entry: ``[name, node]`` or a list of them."""
    def ref(t):
        if isinstance(t, dict):
            return tuple(t["config"]["keras_history"][:2])
        return tuple(t[:2])

    if isinstance(node, dict):
        arg = node["args"][0]
        return [ref(t) for t in arg] if isinstance(arg, list) else ref(arg)
    refs = [ref(t) for t in node]
    return refs if len(refs) > 1 else refs[0]


def _node_index(nodes, layer, index):
    """A layer call's index among the model's own calls of that layer (Keras re-indexes them so)."""
    if isinstance(layer, InputLayer):
        return 0
    calls = nodes.get(id(layer), [])
    node = layer._inbound_nodes[index]
    return calls.index(node) if node in calls else index


def _map_graph(inputs, outputs):
    """Keras 3's ``map_graph``: the operations (InputLayers included) in decreasing depth, ties in the
    order the walk from the outputs first met them; and each layer's calls that the model uses, in
    call order. A tensor the inputs do not reach is "Graph disconnected"."""
    input_ids = {id(t) for t in inputs}
    finished, in_progress, order, op_index = set(), set(), [], {}

    def visit(tensor):
        layer, node_index, _ = tensor._keras_history
        node = layer._inbound_nodes[node_index]
        if id(node) in finished:
            return
        if id(node) in in_progress:
            raise ValueError(f"The graph has a cycle through layer \"{layer.name}\"")
        op_index.setdefault(id(layer), len(op_index))
        in_progress.add(id(node))
        if id(tensor) not in input_ids:
            if isinstance(layer, InputLayer):
                raise ValueError(
                    f"Graph disconnected: cannot obtain value for tensor {tensor} at layer \"{layer.name}\". "
                    f"The following previous layers were accessed without issue: {[o.name for o in seen]}")
            for t in node.input_tensors:
                visit(t)
        finished.add(id(node))
        in_progress.discard(id(node))
        order.append(node)
        seen.append(layer)

    seen = []
    for t in outputs:
        visit(t)
    node_depth, op_depth, ops = {}, {}, {}
    for node in reversed(order):
        depth = node_depth.setdefault(id(node), 0)
        depth = max(depth, op_depth.get(id(node.layer), 0))
        op_depth[id(node.layer)] = depth
        ops[id(node.layer)] = node.layer
        node_depth[id(node)] = depth
        for t in node.input_tensors:
            parent = t._keras_history[0]._inbound_nodes[t._keras_history[1]]
            node_depth[id(parent)] = max(depth + 1, node_depth.get(id(parent), 0))
    for t in inputs:
        layer = t._keras_history[0]
        if id(layer) not in op_depth:
            op_depth[id(layer)] = 0
            op_index[id(layer)] = -1
            ops[id(layer)] = layer
    operations = sorted(ops.values(), key=lambda op: (-op_depth[id(op)], op_index[id(op)]))
    used = {id(n) for n in order}
    calls = {id(op): [n for n in op._inbound_nodes if id(n) in used] for op in operations}
    return operations, calls


def _functional_config(name, inputs, output, operations, calls):
    """Keras 3's functional config of the recorded graph (what the core builds from)."""
    def tensor(t):
        layer, index, tensor_index = t._keras_history
        return {"class_name": "__keras_tensor__", "config": {
            "shape": list(t.shape), "dtype": "float32",
            "keras_history": [layer.name, _node_index(calls, layer, index), tensor_index]}}

    layers = []
    for op in operations:
        if isinstance(op, InputLayer):
            layers.append({"class_name": "InputLayer", "name": op.name, "config": op.get_config(), "inbound_nodes": []})
            continue
        inbound = []
        for node in calls[id(op)]:
            args = [tensor(t) for t in node.args] if isinstance(node.args, (list, tuple)) else tensor(node.args)
            inbound.append({"args": [args], "kwargs": {}})
        recorded = getattr(op, "_recorded", None)
        config = recorded[1] if recorded else op.get_config()
        layers.append({"class_name": op._class_name, "name": op.name, "config": config, "inbound_nodes": inbound})
    names = [op.name for op in operations]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"The name \"{duplicates[0]}\" is used {names.count(duplicates[0])} times in the model. "
                         "All operation names should be unique.")
    out_layer, out_index, out_tensor = output._keras_history
    return {"class_name": "Functional", "config": {
        "name": name, "trainable": True, "layers": layers,
        "input_layers": [[t._keras_history[0].name, 0, 0] for t in inputs],
        "output_layers": [[out_layer.name, _node_index(calls, out_layer, out_index), out_tensor]]}}
