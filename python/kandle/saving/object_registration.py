"""Keras 3's custom-object registry: ``register_keras_serializable``, ``custom_object_scope`` and the
``custom_objects=`` of ``load_model``, through which a saved model finds the user's own layer classes
(kandle never imports or executes code named by a file)."""

import threading

_GLOBAL = {}
_scopes = threading.local()


def register_keras_serializable(package="Custom", name=None):
    """Registers a class under ``"package>name"`` (the class name by default), as Keras does."""
    def decorator(cls):
        key = f"{package}>{name or cls.__name__}"
        if key in _GLOBAL and _GLOBAL[key] is not cls:
            raise ValueError(f"{key} has already been registered to {_GLOBAL[key]}")
        _GLOBAL[key] = cls
        cls._registered_name = key
        return cls
    return decorator


def get_custom_objects():
    """The global registry (Keras: ``keras.saving.get_custom_objects()``)."""
    return _GLOBAL


class CustomObjectScope:
    """``with custom_object_scope({"MyLayer": MyLayer}):`` makes those names known to deserialization."""

    def __init__(self, custom_objects=None):
        self.custom_objects = dict(custom_objects or {})

    def __enter__(self):
        stack = getattr(_scopes, "stack", None)
        if stack is None:
            stack = _scopes.stack = []
        stack.append(self.custom_objects)
        return self

    def __exit__(self, *exc):
        _scopes.stack.pop()
        return False


custom_object_scope = CustomObjectScope


def get_registered_object(name, custom_objects=None, registered_name=None):
    """The class for a config's ``class_name`` (or ``registered_name``): from ``custom_objects``, the
    active scopes, then the global registry; None when nothing has it."""
    for table in [custom_objects or {}, *reversed(getattr(_scopes, "stack", None) or [])]:
        for key in (registered_name, name):
            if key and key in table:
                return table[key]
    for key in (registered_name, name):
        if key and key in _GLOBAL:
            return _GLOBAL[key]
    matches = [cls for key, cls in _GLOBAL.items() if key.split(">", 1)[-1] == name]
    return matches[0] if len(matches) == 1 else None


def get_registered_name(obj):
    cls = obj if isinstance(obj, type) else type(obj)
    return getattr(cls, "_registered_name", None) or cls.__name__
