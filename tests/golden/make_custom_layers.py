"""Golden numbers for custom layers, subclassed models and ops in models from REAL Keras 3: writes
tests/golden/custom_layers.npz.

Run with the Keras virtual environment of make_golden.py, from the repository root:

    /work/kerasenv/bin/python tests/golden/make_custom_layers.py

The cases are in tests/_custom_layer_cases.py (keras.io's antirectifier, the guide's Linear layer in a
functional model with ops between layers, a subclassed model with a nested custom block that branches
on `training` and holds a frozen weight, and a custom conv/pool/einsum layer).
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402

import keras  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import _custom_layer_cases as cases  # noqa: E402

out = cases.run(keras)
out["meta"] = np.array(json.dumps({"keras": keras.__version__, "numpy": np.__version__}))
np.savez(os.path.join(HERE, "custom_layers.npz"), **out)
print("wrote custom_layers.npz:", sorted(out))
