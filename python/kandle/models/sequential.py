"""``Sequential``: a ``Model`` whose graph is a chain, built by ``add``.

The training API is ``Model``'s; what is Sequential's own is the building: the core's chain grows by
one layer per ``add`` once the input shape is known (``input_shape=`` on the first layer, an
``Input``, or the first data the model sees).
"""

import json

from kandle import _kandle, backend
from kandle.layers import Layer, deserialize, serialize
from kandle.layers.input_layer import InputLayer, KerasTensor
from kandle.models.model import Model


class Sequential(Model):
    def __init__(self, layers=None, name=None, trainable=True):
        self._init_state(name or backend.unique_name("sequential"))
        self._input_shape = None
        for layer in layers or []:
            self.add(layer)

    # -- building ---------------------------------------------------------------------------
    def add(self, layer):
        if isinstance(layer, (KerasTensor, InputLayer)):
            if self._layers or self._input_shape is not None:
                raise ValueError("An Input can only be the first element of a Sequential model")
            self._input_shape = tuple(layer.shape[1:]) if isinstance(layer, KerasTensor) else layer.shape
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"The added layer must be an instance of kandle.layers.Layer, got {layer!r}")
        if not self._layers and self._input_shape is None and layer._input_shape_arg is not None:
            self._input_shape = layer._input_shape_arg
        self._layers.append(layer)
        if self._core is not None or self._input_shape is not None:
            try:
                self._add_to_core(layer)
            except Exception:
                self._layers.pop()
                raise

    def _ensure_core(self, input_shapes=None):
        if self._core is not None:
            return self._core
        input_shape = None if not input_shapes else input_shapes[0]
        if self._input_shape is None:
            if input_shape is None:
                raise ValueError(
                    f"Model \"{self.name}\" has no input shape yet: pass input_shape=... to its first layer, "
                    "start it with kandle.layers.Input(shape), or call fit/predict on data first")
            self._input_shape = tuple(int(d) for d in input_shape)
        self._core = _kandle.ModelCore(self.name, list(self._input_shape))
        for layer in list(self._layers):
            self._add_to_core(layer)
        if self._compiled is not None:
            self._apply_compile()
        return self._core

    def _add_to_core(self, layer):
        core = self._core if self._core is not None else self._ensure_core()
        if layer._model is core:
            return
        previous = layer._model
        core.add(layer._class_name, json.dumps(layer._core_config([core.output_shape()])))
        if previous is not None:
            weights = previous.layer_get_weights(layer.name)
            if weights:
                core.layer_set_weights(layer.name, weights)
        layer._attach(core)

    def build(self, input_shape=None):
        self._ensure_core(None if input_shape is None else [tuple(input_shape)[1:]])

    @property
    def built(self):
        return self._core is not None

    def pop(self, rebuild=True):
        """Removes the last layer (Keras 3): the model is rebuilt from the others, which keep their
        weights; its compile configuration stays (the optimizer starts anew)."""
        if not self._layers:
            raise TypeError("There are no layers in the model.")
        layer = self._layers.pop()
        old, self._core = self._core, None
        if old is not None and rebuild and (self._layers or self._input_shape is not None):
            self._ensure_core()
        return layer

    # -- configuration ----------------------------------------------------------------------
    def get_config(self):
        config = {"name": self.name, "layers": [serialize(layer) for layer in self._layers]}
        if self._input_shape is not None:
            config["input_shape"] = list(self._input_shape)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        model = cls(name=config.get("name"))
        layer_configs = list(config["layers"])
        if config.get("input_shape"):
            model._input_shape = tuple(config["input_shape"])
        elif layer_configs and layer_configs[0].get("class_name") == "InputLayer":
            first = layer_configs.pop(0)["config"]
            model._input_shape = tuple((first.get("batch_shape") or first.get("batch_input_shape"))[1:])
        for layer_config in layer_configs:
            model.add(deserialize(layer_config))
        return model

    def _class_name(self):
        return "Sequential"

    def _connected_to(self, layer):
        return []

    def __call__(self, x, training=None, mask=None):
        if training:
            raise ValueError("Calling a model with training=True is not supported; use fit or train_on_batch")
        return self.predict_on_batch(x)
