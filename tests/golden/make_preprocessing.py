"""Golden outputs of Keras 3's preprocessing layers kandle has (Rescaling, CenterCrop, RandomFlip at
inference): writes tests/golden/preprocessing.npz. Run with the Keras venv of make_golden.py:

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
}

x = np.random.default_rng(21).uniform(0, 255, (3, 7, 8, 2)).astype("float32")
out = {"x": x}
configs = {}
for name, (cls, kwargs) in CASES.items():
    layer = getattr(keras.layers, cls)(**kwargs)
    out[name] = np.asarray(layer(x, training=False))
    configs[name] = {"class_name": cls, "config": {k: v for k, v in layer.get_config().items() if k in kwargs}}
out["configs"] = np.array(json.dumps(configs))
out["meta"] = np.array(json.dumps({"keras": keras.__version__, "numpy": np.__version__}))
np.savez(os.path.join(HERE, "preprocessing.npz"), **out)
print("wrote preprocessing.npz:", sorted(out))
