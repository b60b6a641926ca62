"""Golden training outputs of Keras 3's geometric augmentation layers (RandomTranslation,
RandomRotation, RandomZoom, RandomCrop) with fixed draws: a factor ``(f, f)`` makes Keras's
uniform draw exactly ``f``, so the outputs are deterministic and compare element by element.
Writes tests/golden/augment.npz (arrays) and augment.json (the configs); read by the Rust test
src/layers/augment_tests.rs. Run with the Keras venv of make_golden.py:

    /work/kerasenv/bin/python tests/golden/make_augment.py
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402

import keras  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
MODES = ("reflect", "wrap", "constant", "nearest")
CASES = {}
for mode in MODES:
    for interp in ("bilinear", "nearest"):
        resampling = {"fill_mode": mode, "interpolation": interp, "fill_value": 0.25}
        CASES[f"translate_{mode}_{interp}"] = ("RandomTranslation", {"height_factor": [0.2, 0.2], "width_factor": [-0.3, -0.3], **resampling})
        CASES[f"rotate_{mode}_{interp}"] = ("RandomRotation", {"factor": [0.1, 0.1], **resampling})
        CASES[f"zoom_{mode}_{interp}"] = ("RandomZoom", {"height_factor": [0.5, 0.5], "width_factor": [-0.3, -0.3], **resampling})
    # Farther out: a shift by most of the image, a rotation past a right angle, a zoom-in on both axes.
    CASES[f"translate_far_{mode}"] = ("RandomTranslation", {"height_factor": [-0.9, -0.9], "width_factor": [1.0, 1.0], "fill_mode": mode})
    CASES[f"rotate_far_{mode}"] = ("RandomRotation", {"factor": [-0.3, -0.3], "fill_mode": mode})
    CASES[f"zoom_out_{mode}"] = ("RandomZoom", {"height_factor": [1.0, 1.0], "fill_mode": mode})
    CASES[f"zoom_in_{mode}"] = ("RandomZoom", {"height_factor": [-0.4, -0.4], "fill_mode": mode})
# Images smaller than the target: Keras crops from the central box and resizes.
CASES["crop_resize"] = ("RandomCrop", {"height": 9, "width": 6})

x = np.random.default_rng(22).uniform(0, 1, (2, 7, 9, 2)).astype("float32")
out = {"x": x}
configs = {}
for name, (cls, kwargs) in CASES.items():
    layer = getattr(keras.layers, cls)(**kwargs, seed=1)
    out[name] = np.asarray(layer(x, training=True))
    configs[name] = {"class_name": cls, "config": kwargs}
np.savez(os.path.join(HERE, "augment.npz"), **out)
with open(os.path.join(HERE, "augment.json"), "w") as f:
    json.dump({"keras": keras.__version__, "cases": configs}, f, indent=1, sort_keys=True)
print(f"wrote augment.npz and augment.json: {len(configs)} cases (Keras {keras.__version__})")
