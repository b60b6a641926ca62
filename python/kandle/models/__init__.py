"""``kandle.models``: ``Model`` (functional), ``Sequential``, and loading/saving."""

from kandle.models.model import Model
from kandle.models.sequential import Sequential
from kandle.saving import load_model, save_model


def model_from_json(json_string, custom_objects=None):
    import json

    spec = json.loads(json_string)
    return model_from_config(spec)


def model_from_config(spec, custom_objects=None):
    cls = {"Sequential": Sequential, "Functional": Model, "Model": Model}.get(spec.get("class_name"))
    if cls is None:
        raise ValueError(f"Unknown model class: {spec.get('class_name')!r}; kandle supports Sequential and "
                         "functional models")
    return cls.from_config(spec["config"])
