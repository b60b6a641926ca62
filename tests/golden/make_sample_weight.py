"""Golden numbers for sample_weight / class_weight from REAL Keras 3: writes tests/golden/sample_weight.npz.

Run with the Keras virtual environment of make_golden.py, from the repository root:

    /work/kerasenv/bin/python tests/golden/make_sample_weight.py

The cases are in tests/_sample_weight_cases.py (fit with sample_weight, with class_weight and weighted
validation_data, sparse labels with both, evaluate and train_on_batch with sample_weight).
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
import _sample_weight_cases as cases  # noqa: E402

out = cases.run(keras)
out["meta"] = np.array(json.dumps({"keras": keras.__version__, "numpy": np.__version__}))
np.savez(os.path.join(HERE, "sample_weight.npz"), **out)
print("wrote sample_weight.npz:", sorted(out))
