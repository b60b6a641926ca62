"""Generate ``tests/golden/mixed_bf16.keras`` and ``mixed_bf16.npz`` with REAL Keras 3 under
``mixed_bfloat16`` (tests/test_mixed_precision.py reads them).

Runs only where Keras 3 and TensorFlow are installed (the committed files: keras 3.15.1,
tensorflow-cpu 2.21.0, numpy 2.4.6, Python 3.11), from the repository root:

    /work/kerasenv/bin/python tests/golden/make_mixed.py

* ``mixed_bf16.keras``: a small CNN (Conv2D, MaxPooling2D, Flatten, Dense x2) built under the global
  policy ``mixed_bfloat16``, trained one epoch (so the file holds trained weights and Adam's state).
* ``mixed_bf16.npz``: ``x``, ``y`` (Keras's bfloat16 ``predict``, as float32), ``y32`` (the same
  weights in a float32 model), ``meta``.
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import keras  # noqa: E402
from keras import layers  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def build():
    return keras.Sequential([layers.Input((10, 10, 3)), layers.Conv2D(6, 3, activation="relu"), layers.MaxPooling2D(),
                             layers.Flatten(), layers.Dense(16, activation="relu"), layers.Dense(4, activation="softmax")])


def main():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((16, 10, 10, 3), dtype=np.float32)
    labels = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 16)]
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    m = build()
    m.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["acc"])
    m.fit(x, labels, epochs=1, batch_size=8, verbose=0)
    m.save(os.path.join(HERE, "mixed_bf16.keras"))
    y = np.asarray(m.predict(x, verbose=0), dtype=np.float32)
    keras.mixed_precision.set_global_policy("float32")
    m32 = build()
    m32.set_weights(m.get_weights())
    y32 = np.asarray(m32.predict(x, verbose=0), dtype=np.float32)
    meta = {"keras": keras.__version__, "numpy": np.__version__}
    np.savez(os.path.join(HERE, "mixed_bf16.npz"), x=x, y=y, y32=y32, meta=json.dumps(meta))
    print("bf16 vs float32 predictions in Keras:", float(np.abs(y - y32).max()))


if __name__ == "__main__":
    main()
