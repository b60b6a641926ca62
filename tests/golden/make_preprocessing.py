"""Golden outputs of Keras 3's preprocessing layers kandle has (Rescaling with numbers or per channel,
CenterCrop cropping or resizing to a larger target, RandomFlip at inference, Normalization adapted or given its statistics): writes tests/golden/preprocessing.npz. Run with the Keras venv of make_golden.py:

    /work/kerasenv/bin/python tests/golden/make_preprocessing.py
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402

import keras  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = {  # name: (class, kwargs)
    "rescale": ("Rescaling", {"scale": 1.0 / 255}),
    "rescale_offset": ("Rescaling", {"scale": 2.0, "offset": -1.0}),
    "crop_even": ("CenterCrop", {"height": 4, "width": 6}),
    "crop_odd": ("CenterCrop", {"height": 3, "width": 2}),
    "crop_same": ("CenterCrop", {"height": 7, "width": 8}),
    "flip_inference": ("RandomFlip", {"mode": "horizontal_and_vertical", "seed": 3}),
    "rescale_channels": ("Rescaling", {"scale": [1.0 / 255, 2.0 / 255], "offset": [0.0, -1.0]}),
    "rescale_channel_scale": ("Rescaling", {"scale": [0.5, -2.0]}),
    "crop_up": ("CenterCrop", {"height": 9, "width": 12}),
    "crop_up_width": ("CenterCrop", {"height": 5, "width": 10}),
}

x = np.random.default_rng(21).uniform(0, 255, (3, 7, 8, 2)).astype("float32")
out = {"x": x}
configs = {}
for name, (cls, kwargs) in CASES.items():
    layer = getattr(keras.layers, cls)(**kwargs)
    out[name] = np.asarray(layer(x, training=False))
    configs[name] = {"class_name": cls, "config": {k: v for k, v in layer.get_config().items() if k in kwargs}}
# Normalization: adapted on x (per channel, over rows and columns kept, over everything), or given
# its statistics (invert too). Each case: (kwargs, adapt?)
NORM = {
    "norm_channels": ({"axis": -1}, True),
    "norm_rows_cols": ({"axis": (1, 2)}, True),
    "norm_all": ({"axis": None}, True),
    "norm_given": ({"axis": -1, "mean": [100.0, 20.0], "variance": [400.0, 9.0]}, False),
    "norm_invert": ({"axis": -1, "mean": [1.0, -2.0], "variance": [4.0, 0.25], "invert": True}, False),
}
for name, (kwargs, adapt) in NORM.items():
    layer = keras.layers.Normalization(**kwargs)
    if adapt:
        layer.adapt(x)
    else:
        layer.build(x.shape)
    out[name] = np.asarray(layer(x))
    if adapt:
        out[name + "_weights"] = np.concatenate([np.ravel(w).astype("float64") for w in layer.get_weights()])
    configs[name] = {"class_name": "Normalization", "config": {k: (list(v) if isinstance(v, tuple) else v)
                                                                for k, v in kwargs.items()}, "adapt": adapt}
# Resizing: down and up, both interpolations.
for name, kwargs in {"resize_down": {"height": 4, "width": 5}, "resize_up": {"height": 9, "width": 13},
                     "resize_nearest_down": {"height": 3, "width": 5, "interpolation": "nearest"},
                     "resize_nearest_up": {"height": 10, "width": 11, "interpolation": "nearest"}}.items():
    out[name] = np.asarray(keras.layers.Resizing(**kwargs)(x))
    configs[name] = {"class_name": "Resizing", "config": kwargs}
out["configs"] = np.array(json.dumps(configs))
out["meta"] = np.array(json.dumps({"keras": keras.__version__, "numpy": np.__version__}))
np.savez(os.path.join(HERE, "preprocessing.npz"), **out)
print("wrote preprocessing.npz:", sorted(out))
