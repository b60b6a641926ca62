"""The sample_weight / class_weight cases, run alike by tests/golden/make_sample_weight.py (real
Keras 3) and tests/test_sample_weight_golden.py (kandle): `run(keras_module)` returns their numbers."""

import numpy as np


def data():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((40, 6)).astype("float32")
    labels = rng.integers(0, 3, 40)
    y = np.eye(3, dtype="float32")[labels]
    sw = rng.uniform(0.0, 2.0, 40).astype("float32")
    w0 = (rng.standard_normal((6, 5)) * 0.5).astype("float32")
    w1 = (rng.standard_normal((5, 3)) * 0.5).astype("float32")
    return x, y, labels, sw, [w0, np.zeros(5, "float32"), w1, np.full(3, 0.1, "float32")]


def run(keras):
    x, y, labels, sw, weights = data()

    def model(loss="categorical_crossentropy"):
        m = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
        m.set_weights(weights)
        m.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss, metrics=["acc"])
        return m

    out = {}
    m = model()
    h = m.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, sample_weight=sw)
    out["sw_loss"], out["sw_acc"] = np.array(h.history["loss"]), np.array(h.history["acc"])
    out["sw_weights"] = np.concatenate([w.ravel() for w in m.get_weights()])
    out["sw_eval"] = np.array(m.evaluate(x, y, sample_weight=sw, batch_size=16, verbose=0))
    m = model()
    h = m.fit(x[:32], y[:32], batch_size=8, epochs=2, shuffle=False, verbose=0, class_weight={0: 1.0, 1: 3.0, 2: 0.5},
              validation_data=(x[32:], y[32:], sw[32:]))
    out["cw_loss"], out["cw_val_loss"] = np.array(h.history["loss"]), np.array(h.history["val_loss"])
    out["cw_weights"] = np.concatenate([w.ravel() for w in m.get_weights()])
    m = model("sparse_categorical_crossentropy")
    h = m.fit(x, labels, batch_size=10, epochs=1, shuffle=False, verbose=0, class_weight={0: 2.0, 1: 1.0, 2: 0.0})
    out["sparse_loss"] = np.array(h.history["loss"])
    out["sparse_weights"] = np.concatenate([w.ravel() for w in m.get_weights()])
    out["tob"] = np.array(model().train_on_batch(x[:8], y[:8], sample_weight=sw[:8]))
    # weighted_metrics: the same metrics weighted by sample_weight / class_weight (Keras names a taken
    # name weighted_<name>); fit, then evaluate with and without weights.
    m = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, activation="relu"),
                          keras.layers.Dense(3, activation="softmax")])
    m.set_weights(weights)
    m.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy", metrics=["acc"],
              weighted_metrics=["acc", "mse", keras.metrics.Precision(name="prec"),
                                keras.metrics.AUC(num_thresholds=20, name="auc20")])
    h = m.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, sample_weight=sw)
    keys = sorted(h.history)
    out["wm_keys"] = np.array(" ".join(keys))
    out["wm_history"] = np.array([h.history[k] for k in keys], dtype=np.float64)
    for name, kwargs in (("sw", {"sample_weight": sw}), ("none", {})):
        e = m.evaluate(x, y, batch_size=16, verbose=0, return_dict=True, **kwargs)
        out[f"wm_eval_{name}"] = np.array([e[k] for k in keys if not k.startswith("val_")], dtype=np.float64)
    h = m.fit(x[:32], y[:32], batch_size=8, epochs=1, shuffle=False, verbose=0, class_weight={0: 1.0, 1: 3.0, 2: 0.5})
    out["wm_cw_history"] = np.array([h.history[k] for k in keys], dtype=np.float64)
    return out
