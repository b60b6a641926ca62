"""``kandle.models``: Sequential (the functional ``Model`` is not implemented yet)."""

from kandle.models.sequential import Sequential
from kandle.saving import load_model, save_model


def model_from_json(json_string):
    import json

    spec = json.loads(json_string)
    if spec.get("class_name") != "Sequential":
        raise ValueError(f"Unknown model class: {spec.get('class_name')!r}; kandle supports Sequential")
    return Sequential.from_config(spec["config"])
