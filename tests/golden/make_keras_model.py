"""Generate ``tests/golden/keras_model.keras`` and ``keras_model.npz`` with REAL Keras 3.

This script runs only where Keras 3 and TensorFlow are installed -- NOT in kandle's own
environment. The committed files were produced with:

    tensorflow-cpu 2.21.0, keras 3.15.1 (TensorFlow backend), h5py 3.14.0, numpy 2.4.6, Python 3.11

in the virtual environment described in ``make_golden.py``. Regenerate (from the repository root) with:

    /work/venvs/keras/bin/python tests/golden/make_keras_model.py

What it writes (``tests/test_keras_import.py`` reads them):

* ``keras_model.keras`` -- ``model.save()`` of a small compiled Sequential CNN using every layer kind
  kandle imports (InputLayer, Conv2D 'same' and 'valid' with strides, MaxPooling2D, Dropout, Flatten,
  Dense with and without activation, Activation), trained for one epoch so that its weights are not
  the initial ones and the file carries optimizer state.
* ``keras_model.npz`` -- ``x`` (float32 inputs), ``y`` (``model.predict(x)``, inference mode),
  ``eval`` (float64 ``[loss, accuracy]`` of ``model.evaluate(x, labels)``), ``labels`` (one-hot
  targets) and ``meta`` (JSON with the versions).

Everything is seeded, but the zip's timestamps differ run to run, so the .keras bytes are not
reproducible; its contents are.
"""

import io
import json
import os
import sys
import zipfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402

import keras  # noqa: E402
from keras import layers  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def build():
    keras.utils.set_random_seed(2024)
    model = keras.Sequential(name="golden_cnn", layers=[
        keras.Input((12, 12, 3)),
        layers.Conv2D(6, (3, 3), padding="same", activation="relu", name="conv_same"),
        layers.Conv2D(8, (3, 3), strides=(2, 2), padding="valid", activation="tanh"),
        layers.MaxPooling2D((2, 2), padding="same"),
        layers.Dropout(0.25),
        layers.Flatten(),
        layers.Dense(16, activation="elu"),
        layers.Dense(5),
        layers.Activation("softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def main():
    model = build()
    rng = np.random.default_rng(7)
    x = rng.random((32, 12, 12, 3), dtype=np.float32)
    labels = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 32)]
    model.fit(x, labels, batch_size=8, epochs=1, shuffle=False, verbose=0)
    path = os.path.join(HERE, "keras_model.keras")
    model.save(path)
    y = model.predict(x, verbose=0)
    ev = np.asarray(model.evaluate(x, labels, batch_size=8, verbose=0), dtype=np.float64)
    meta = {"keras": keras.__version__, "numpy": np.__version__, "python": sys.version.split()[0],
            "backend": keras.backend.backend()}
    try:
        import tensorflow as tf

        meta["tensorflow"] = tf.__version__
    except ImportError:
        pass
    buf = io.BytesIO()
    np.savez(buf, x=x, y=y, eval=ev, labels=labels, meta=np.array(json.dumps(meta)))
    # Fixed timestamps: the .npz is reproducible byte for byte.
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as src, \
            zipfile.ZipFile(os.path.join(HERE, "keras_model.npz"), "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            out = zipfile.ZipInfo(info.filename, date_time=(2020, 1, 1, 0, 0, 0))
            out.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(out, src.read(info.filename))
    for name in ("keras_model.keras", "keras_model.npz"):
        print(name, os.path.getsize(os.path.join(HERE, name)), "bytes")


if __name__ == "__main__":
    main()
