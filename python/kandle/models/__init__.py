"""``kandle.models``: ``Model`` (functional), ``Sequential``, and loading/saving."""

from kandle.models.model import Model
from kandle.models.sequential import Sequential
from kandle.saving import load_model, save_model


def model_from_json(json_string, custom_objects=None):
    import json

    spec = json.loads(json_string)
    return model_from_config(spec)


def clone_model(model, input_tensors=None, clone_function=None, call_function=None, recursive=False, **kwargs):
    """A new model of the same architecture (layer names and configs kept) with newly drawn weights, as
    Keras's ``clone_model``; it shares nothing with `model`."""
    for key, value in (("input_tensors", input_tensors), ("clone_function", clone_function),
                       ("call_function", call_function)):
        if value is not None:
            raise ValueError(f"kandle does not implement clone_model({key}=...) yet")
    return model_from_config({"class_name": "Sequential" if isinstance(model, Sequential) else "Functional",
                              "config": model.get_config()})


def model_from_config(spec, custom_objects=None):
    cls = {"Sequential": Sequential, "Functional": Model, "Model": Model}.get(spec.get("class_name"))
    if cls is None:
        raise ValueError(f"Unknown model class: {spec.get('class_name')!r}; kandle supports Sequential and "
                         "functional models")
    return cls.from_config(spec["config"])


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    raise AttributeError(f"kandle does not implement keras.models.{name} yet")
