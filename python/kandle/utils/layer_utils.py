"""``kandle.utils.layer_utils``: the model summary table, in the Keras 2 look the tutorials show."""


def _count(n):
    return f"{n:,}"


def print_summary(model, line_length=None, positions=None, print_fn=None):
    """Prints ``Layer (type) / Output Shape / Param #`` and the parameter totals."""
    line_length = line_length or 65
    positions = positions or [0.45, 0.85, 1.0]
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
        print_fn(line)

    print_fn(f'Model: "{model.name}"')
    print_fn("_" * line_length)
    row(["Layer (type)", "Output Shape", "Param #"])
    print_fn("=" * line_length)
    layers = model.layers
    for i, layer in enumerate(layers):
        row([f"{layer.name} ({layer._class_name})", str(layer.output_shape), layer.count_params()])
        print_fn("=" * line_length if i == len(layers) - 1 else "_" * line_length)
    if not layers:
        print_fn("=" * line_length)
    total = model.count_params()
    print_fn(f"Total params: {_count(total)}")
    print_fn(f"Trainable params: {_count(total)}")
    print_fn("Non-trainable params: 0")
    print_fn("_" * line_length)
