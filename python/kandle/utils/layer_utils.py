"""``kandle.utils.layer_utils``: the model summary table. Sequential models print in the Keras 2 look
the tutorials show; functional models add Keras's "Connected to" column."""


def _count(n):
    return f"{n:,}"


def print_summary(model, line_length=None, positions=None, print_fn=None):
    """Prints ``Layer (type) / Output Shape / Param # [/ Connected to]`` and the parameter totals."""
    functional = getattr(model, "_functional", None) is not None
    line_length = line_length or (98 if functional else 65)
    positions = positions or ([0.33, 0.55, 0.67, 1.0] if functional else [0.45, 0.85, 1.0])
    if positions[-1] <= 1:
        positions = [int(line_length * p) for p in positions]
    print_fn = print_fn or print

    def row(fields):
        line = ""
        for i, field in enumerate(fields):
            if i > 0:
                line = line[:-1] + " "
            line += str(field)
            line = line[: positions[i]]
            line += " " * (positions[i] - len(line))
        print_fn(line.rstrip())

    print_fn(f'Model: "{model.name}"')
    print_fn("_" * line_length)
    row(["Layer (type)", "Output Shape", "Param #"] + (["Connected to"] if functional else []))
    print_fn("=" * line_length)
    layers = model.layers
    for i, layer in enumerate(layers):
        fields = [f"{layer.name} ({layer._class_name})", str(layer.output_shape), layer.count_params()]
        if functional:
            connected = model._connected_to(layer)
            row(fields + [connected[0] if connected else ""])
            for more in connected[1:]:
                row(["", "", "", more])
        else:
            row(fields)
        print_fn("=" * line_length if i == len(layers) - 1 else "_" * line_length)
    if not layers:
        print_fn("=" * line_length)
    total = model.count_params()
    trainable = model._core.trainable_count()
    print_fn(f"Total params: {_count(total)}")
    print_fn(f"Trainable params: {_count(trainable)}")
    print_fn(f"Non-trainable params: {_count(total - trainable)}")
    print_fn("_" * line_length)
