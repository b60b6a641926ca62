"""The Python face of a layer: Keras's constructor arguments, names, weight accessors and the
symbolic call that records a graph node.

A layer's config is checked by the Rust core at construction (so ``Dense(0)`` fails at once), its
output shape on a symbolic call is the core's too, and its weights live in the Rust model it was
built in; this class only keeps the config, its calls and that link (the model core and the
layer's name).
"""

import json

import numpy as np

from kandle import _kandle, backend, mixed_precision
from kandle.layers import custom


def _identifier(value, kind):
    """Accepts a Keras name, a kandle function/object with a name, or a serialized config."""
    if value is None or isinstance(value, (str, dict)):
        return value
    if hasattr(value, "get_config") and hasattr(value, "_keras_class_name"):
        return {"class_name": value._keras_class_name, "config": value.get_config()}
    name = getattr(value, "__name__", None)
    if isinstance(name, str):
        return name
    raise TypeError(f"Could not interpret {kind} identifier: {value!r}")


def _unsupported(layer, **args):
    for key, value in args.items():
        if value is not None:
            raise ValueError(f"{layer}: `{key}` is not supported by kandle yet (got {value!r})")


class Layer:
    """Base class; subclasses set ``_class_name`` and pass their Keras arguments to ``__init__``."""

    _class_name = None

    def __init__(self, name=None, input_shape=None, batch_input_shape=None, input_dim=None,
                 trainable=True, dtype=None, **config):
        if custom.is_custom(self):
            if type(self).call is Layer.call:
                raise NotImplementedError(f"{type(self).__name__}: a Layer subclass must define call()")
            custom.init(self, name, trainable, dtype, config)
            self._input_shape_arg = None
            if input_dim is not None:
                input_shape = (input_dim,)
            if batch_input_shape is not None:
                input_shape = tuple(batch_input_shape)[1:]
            if input_shape is not None:
                self._input_shape_arg = _shape(input_shape, self._class_name)
            self._model = None
            self._inbound_nodes = []
            return
        if type(self).call is not Layer.call:
            raise NotImplementedError(f"{type(self).__name__}: kandle does not implement overriding call() of a "
                                      f"built-in layer ({self._class_name}) yet; subclass kandle.layers.Layer")
        try:
            policy = mixed_precision.resolve(dtype)
        except ValueError as e:
            raise ValueError(f"{self._class_name}: {e}") from None
        if not isinstance(trainable, bool):
            raise TypeError(f"{self._class_name}: `trainable` must be True or False, got {trainable!r}")
        self.name = name or backend.unique_name(backend.snake_case(self._class_name))
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"{self._class_name}: `name` must be a non-empty string, got {name!r}")
        config["name"] = self.name
        config["trainable"] = trainable
        if policy.name != "float32":
            config["dtype"] = policy.name
        self._config = json.loads(_kandle.validate_layer(self._class_name, json.dumps(config)))
        self._dtype_policy = policy
        if input_dim is not None:
            input_shape = (input_dim,)
        if batch_input_shape is not None:
            input_shape = tuple(batch_input_shape)[1:]
        self._input_shape_arg = None if input_shape is None else _shape(input_shape, self._class_name)
        self._model = None
        self._inbound_nodes = []

    # -- symbolic calls ---------------------------------------------------------------------------
    def __call__(self, inputs, *args, training=None, mask=None, **kwargs):
        from kandle.layers.input_layer import KerasTensor, Node
        from kandle.ops._graph import SymbolicTensor

        if args or kwargs:
            raise TypeError(f"Layer \"{self.name}\": unexpected call arguments {args or ''} {sorted(kwargs) or ''}")
        tensors = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if tensors and all(isinstance(t, SymbolicTensor) for t in tensors):
            if not custom.is_custom(self):
                raise NotImplementedError(
                    f"Layer \"{self.name}\" ({self._class_name}) was called inside another layer's call(): kandle "
                    "does not implement built-in layers inside custom layers yet. Write it with kandle.ops (a Dense is "
                    "ops.matmul(x, kernel) + bias), or call it in a functional or subclassed Model instead.")
            return custom.call_inline(self, inputs, training)
        if custom.is_custom(self) and tensors and not any(isinstance(t, (KerasTensor, SymbolicTensor)) for t in tensors):
            return custom.call_eager(self, inputs, training)
        if not tensors or not all(isinstance(t, KerasTensor) for t in tensors):
            raise TypeError(
                f"Layer \"{self.name}\" was called on {type(inputs).__name__}: kandle does not implement calling "
                "a layer on arrays yet (eager execution). Call it on kandle.Input(...) tensors to build a "
                "functional Model, then use model.predict(x)."
            )
        shapes = [list(t.shape[1:]) for t in tensors]
        dtypes = [getattr(t, "dtype", "float32") for t in tensors]
        out = _kandle.layer_output_shape(self._class_name, json.dumps(self._core_config(shapes, dtypes, training)),
                                         shapes)
        node_index = len(self._inbound_nodes)
        output = KerasTensor((None, *out), dtype=getattr(self, "_output_dtype", "float32"),
                             history=(self, node_index, 0), name=f"{self.name}_{node_index}")
        self._inbound_nodes.append(Node(self, inputs if isinstance(inputs, (list, tuple)) else inputs, output))
        return output

    def _core_config(self, input_shapes, dtypes=None, training=None):
        """The config the core builds this layer from: a custom layer's recorded graph for these
        per-sample input shapes (in the mode a call names), else the checked Keras config."""
        return custom.record(self, input_shapes, dtypes, training) if custom.is_custom(self) else self._config

    # -- writing layers (Keras's subclassing API) ---------------------------------------------
    def build(self, input_shape):
        """Creates the weights (``add_weight``) once the input shape is known; a custom layer overrides it."""

    def call(self, inputs, *args, **kwargs):
        """The layer's computation in ``kandle.ops``; a custom layer overrides it."""
        raise NotImplementedError

    def add_weight(self, shape=None, initializer=None, dtype=None, trainable=True, autocast=True, regularizer=None,
                   constraint=None, aggregation="none", overwrite_with_gradient=False, name=None):
        if not custom.is_custom(self):
            raise NotImplementedError("add_weight is for custom layers (subclasses of kandle.layers.Layer)")
        return custom.add_weight(self, shape, initializer, dtype, trainable, autocast, regularizer, constraint,
                                 aggregation, overwrite_with_gradient, name)

    def add_loss(self, loss):
        raise NotImplementedError(f"Layer \"{self.name}\": kandle does not implement add_loss yet (losses added by "
                                  "layers); compute the term in a loss function passed to compile()")

    @property
    def losses(self):
        return []

    # -- link to the compiled model ---------------------------------------------------------
    def _attach(self, core):
        self._model = core
        if custom.is_custom(self):
            custom.adopt_standalone_values(self)

    @property
    def built(self):
        return self._model is not None or bool(self.__dict__.get("_built_flag"))

    @built.setter
    def built(self, value):
        self.__dict__["_built_flag"] = bool(value)

    def _info(self):
        if self._model is None:
            raise ValueError(
                f"Layer \"{self.name}\" is not built yet: add it to a model with a known input shape "
                "(input_shape=... on the first layer, or call the model on data)."
            )
        return self._model.layer_info(self.name)

    # -- Keras API ------------------------------------------------------------------------------
    @property
    def trainable(self):
        return self._config.get("trainable", True)

    @trainable.setter
    def trainable(self, value):
        if not isinstance(value, bool):
            raise TypeError(f"Layer \"{self.name}\": `trainable` must be True or False, got {value!r}")
        self._config["trainable"] = value
        if self._model is not None:
            self._model.set_trainable(self.name, value)

    @property
    def input_shape(self):
        shapes = [(None, *s) for s in self._info()[2]]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self):
        return (None, *self._info()[3])

    def compute_output_shape(self, input_shape):
        return self.output_shape if self.built else None

    def count_params(self):
        if self._model is None:
            raise ValueError(
                f"You tried to call `count_params` on layer \"{self.name}\", but the layer isn't built. "
                "You can build it manually via: `layer.build(batch_input_shape)`."
            )
        return self._info()[4]

    def get_weights(self):
        if self._model is None and custom.is_custom(self):  # a custom layer on its own (eager calls)
            return [v.numpy() for v in custom.all_variables(self)]
        return [] if self._model is None else self._model.layer_get_weights(self.name)

    def set_weights(self, weights):
        current = self.get_weights()
        weights = list(weights)
        if len(weights) != len(current):
            raise ValueError(
                f"You called `set_weights(weights)` on layer \"{self.name}\" with a weight list of length "
                f"{len(weights)}, but the layer was expecting {len(current)} weights."
            )
        arrays = [_float32(w, f"{self.name} weight {i}") for i, w in enumerate(weights)]
        for i, (new, old) in enumerate(zip(arrays, current)):
            if new.shape != old.shape:
                raise ValueError(
                    f"Layer \"{self.name}\" weight shape {old.shape} is not compatible with provided weight "
                    f"shape {new.shape} (weight {i})."
                )
        if arrays:
            self._model.layer_set_weights(self.name, arrays)

    @property
    def weights(self):
        return self.get_weights()

    def _split(self):
        """``(trainable, non-trainable)`` variables: all non-trainable once the layer is frozen."""
        weights = self.get_weights()
        if custom.is_custom(self):
            flags = [v.trainable and self.trainable for v in custom.all_variables(self)]
            return ([w for w, t in zip(weights, flags) if t], [w for w, t in zip(weights, flags) if not t])
        if self._model is None:
            return [], []
        n_trainable, _ = self._model.layer_weight_counts(self.name)
        if not self.trainable:
            return [], weights
        return weights[:n_trainable], weights[n_trainable:]

    @property
    def trainable_weights(self):
        return self._split()[0]

    @property
    def non_trainable_weights(self):
        return self._split()[1]

    @property
    def input(self):
        return self._node(0).input_tensors[0] if len(self._node(0).input_tensors) == 1 else self._node(0).input_tensors

    @property
    def output(self):
        return self._node(0).output

    def _node(self, i):
        if not self._inbound_nodes:
            raise AttributeError(f"Layer \"{self.name}\" has never been called and thus has no defined input/output.")
        return self._inbound_nodes[i]

    @property
    def dtype_policy(self):
        return getattr(self, "_dtype_policy", None) or mixed_precision.DTypePolicy("float32")

    @property
    def compute_dtype(self):
        return self.dtype_policy.compute_dtype

    @property
    def variable_dtype(self):
        return self.dtype_policy.variable_dtype

    @property
    def dtype(self):
        """The dtype of the layer's variables (Keras 3's meaning)."""
        return self.dtype_policy.variable_dtype

    def get_config(self):
        if custom.is_custom(self):
            return {"name": self.name, "trainable": self.trainable, "dtype": "float32"}
        return dict(self._config)

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("data_format", "dilation_rate", "noise_shape", "module", "registered_name"):
            config.pop(key, None)
        # kandle's configs leave float32 out: a config without a dtype is float32, whatever the
        # global policy at load time.
        config.setdefault("dtype", "float32")
        return cls(**config)

    def __repr__(self):
        return f"<{self._class_name} name={self.name}, built={self.built}>"


def _shape(shape, who):
    if isinstance(shape, int):
        shape = (shape,)
    try:
        shape = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise ValueError(f"{who}: input shape must be a tuple of positive integers, got {shape!r}") from None
    if not shape or any(d <= 0 for d in shape):
        raise ValueError(f"{who}: input shape must be a tuple of positive integers, got {shape!r}")
    return shape


def _float32(w, what):
    a = np.asarray(w)
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{what}: expected an array of numbers, got dtype {a.dtype}")
    return np.require(a, dtype=np.float32, requirements="C")  # (ascontiguousarray would make a scalar 1-d)
