"""Subclassed models (``class MyModel(kandle.Model)`` with ``call``): traced once on symbolic inputs
when the first data arrives; the graph the call records (layer calls and kandle.ops) is the model's
functional graph from then on, trained in Rust."""

import inspect

from kandle.layers import custom
from kandle.layers.input_layer import Input, KerasTensor


def trace(model, input_shapes):
    """Runs ``model.call`` on symbolic inputs of these per-sample shapes and builds the model from it.
    Without a ``training`` argument Keras 3 calls the model's layers with training=None in fit too,
    so its custom layers record that one mode."""
    inputs = [Input(shape=tuple(int(d) for d in s)) for s in input_shapes]
    takes_training = "training" in inspect.signature(model.call).parameters
    if not takes_training:
        custom._untrained_context.append(True)
    try:
        outputs = model.call(inputs[0] if len(inputs) == 1 else inputs)
    finally:
        if not takes_training:
            custom._untrained_context.pop()
    items = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    if not items or not all(isinstance(t, KerasTensor) for t in items):
        raise TypeError(f"Model \"{model.name}\": call() must return the result of layer calls or kandle.ops on its "
                        f"inputs, got {type(outputs).__name__}")
    model._build_functional(inputs[0] if len(inputs) == 1 else inputs, outputs)
    if model._compiled is not None:
        model._apply_compile()
