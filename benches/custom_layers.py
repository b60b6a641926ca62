#!/usr/bin/env python3
"""Custom-layer benchmark: what a Python custom layer (kandle.layers.Layer + kandle.ops) costs.

Measures, interleaved in one process (round r runs every contender of a case for a few steps, the
order rotating each round, so drifts of the machine hit all of them alike), medians of per-step wall
times after warm-up:

1. ``cnn_train_b32``: the tutorial CNN of benches/bench.py (Conv2D/MaxPooling2D stack, Flatten,
   Dense(500, relu), Dropout(0.5), Dense(100, softmax); 32x32x3 inputs, SGD(0.01),
   categorical_crossentropy), ``train_on_batch`` at batch 32, in kandle with the built-in Dense
   hidden layer against the same model whose hidden Dense(500, relu) is a custom
   ``CustomDense(kandle.layers.Layer)`` computing ``ops.relu(ops.matmul(x, self.w) + self.b)``
   (same shapes, same initial weights). Target: custom / built-in <= 1.5x.
2. ``antirectifier_train_b128``: keras.io's antirectifier MLP recipe, Input(784) -> Dense(256) ->
   Antirectifier -> Dense(256) -> Antirectifier -> Dropout(0.1) -> Dense(10, softmax),
   RMSprop(0.001), sparse_categorical_crossentropy, ``train_on_batch`` at batch 128, kandle against
   Keras 3 (TensorFlow backend) running the same code in the same process.
3. ``antirectifier_predict_b256``: the same MLP, ``predict`` at batch 256, kandle against Keras.
4. ``plain_mlp_train_b128`` (reference): the same MLP without its two Antirectifier layers, so
   built-in layers only, ``train_on_batch`` at batch 128, kandle against Keras: what the custom
   layers themselves add in case 2.

Random data of the right shapes (no dataset files). Nothing is written unless ``--out`` is given.

Run from the repository root, in an environment with kandle (``pip install .``), keras and
tensorflow installed:

    TF_CPP_MIN_LOG_LEVEL=3 /work/kerasenv/bin/python benches/custom_layers.py --out /tmp/custom_layers.md
"""

import argparse
import datetime
import importlib
import os
import platform
import shlex
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench.py's models
IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = 100
SETTLE_SECONDS = 0.5  # let the previous contender's thread pools go idle before the next one runs


# ---------------------------------------------------------------------------------------------
# Models, written once against the Keras 3 API (lib is kandle or keras)
# ---------------------------------------------------------------------------------------------

def custom_layer_classes(lib):
    layers, ops = lib.layers, lib.ops

    class CustomDense(layers.Layer):
        """Dense(units, activation='relu') written with ops."""

        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units

        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform",
                                     trainable=True, name="kernel")
            self.b = self.add_weight(shape=(self.units,), initializer="zeros", trainable=True, name="bias")

        def call(self, x):
            return ops.relu(ops.matmul(x, self.w) + self.b)

    class Antirectifier(layers.Layer):
        """keras.io's antirectifier recipe."""

        def __init__(self, initializer="he_normal", **kwargs):
            super().__init__(**kwargs)
            self.initializer = lib.initializers.get(initializer)

        def build(self, input_shape):
            output_dim = input_shape[-1]
            self.kernel = self.add_weight(shape=(output_dim * 2, output_dim), initializer=self.initializer,
                                          name="kernel", trainable=True)

        def call(self, inputs):
            inputs -= ops.mean(inputs, axis=-1, keepdims=True)
            pos = ops.relu(inputs)
            neg = ops.relu(-inputs)
            concatenated = ops.concatenate([pos, neg], axis=-1)
            return ops.matmul(concatenated, self.kernel)

    return CustomDense, Antirectifier


def tutorial_cnn(lib, custom_head):
    """bench.py's tutorial CNN, its hidden Dense(500, relu) written as CustomDense when ``custom_head``."""
    import bench

    L = lib.layers
    CustomDense, _ = custom_layer_classes(lib)
    body = []
    for cls, args, kwargs in bench.TUTORIAL_CNN:
        if custom_head and cls == "Dense" and args == (500,):
            body.append(CustomDense(500))
        else:
            body.append(getattr(L, cls)(*args, **kwargs))
    model = lib.models.Sequential([L.Input(IMAGE_SHAPE), *body])
    model.compile(optimizer=lib.optimizers.SGD(learning_rate=0.01), loss="categorical_crossentropy")
    return model


def antirectifier_mlp(lib, antirectifier=True):
    """keras.io's recipe; without its Antirectifier layers (``antirectifier=False``) it is the
    reference case ``plain_mlp_train_b128``, the same MLP of built-in layers only."""
    L = lib.layers
    _, Antirectifier = custom_layer_classes(lib)
    anti = (lambda: [Antirectifier()]) if antirectifier else (lambda: [])
    model = lib.models.Sequential([
        lib.Input(shape=(784,)),
        L.Dense(256),
        *anti(),
        L.Dense(256),
        *anti(),
        L.Dropout(0.1),
        L.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=lib.optimizers.RMSprop(learning_rate=0.001),
                  loss="sparse_categorical_crossentropy")
    return model


# ---------------------------------------------------------------------------------------------
# Contenders: a name and a step function each
# ---------------------------------------------------------------------------------------------

def cnn_contenders(kandle, batch=32):
    rng = np.random.default_rng(0)
    x = rng.random((batch,) + IMAGE_SHAPE, dtype=np.float32)
    y = np.eye(NUM_CLASSES, dtype=np.float32)[rng.integers(0, NUM_CLASSES, batch)]
    builtin = tutorial_cnn(kandle, custom_head=False)
    custom = tutorial_cnn(kandle, custom_head=True)
    # Same starting point (and a check that the custom layer computes what Dense does).
    custom.set_weights(builtin.get_weights())
    a = builtin.predict(x, verbose=0)
    b = custom.predict(x, verbose=0)
    check = float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
    return ([("kandle built-in Dense", lambda: builtin.train_on_batch(x, y)),
             ("kandle CustomDense", lambda: custom.train_on_batch(x, y))],
            f"custom vs built-in forward, same weights: max |diff| = {check:.2e}")


def antirectifier_contenders(kandle, keras, what, batch, antirectifier=True):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(batch, 784)).astype(np.float32)
    y = rng.integers(0, 10, batch).astype(np.int64)
    km = antirectifier_mlp(kandle, antirectifier)
    tm = antirectifier_mlp(keras, antirectifier)
    km.predict(x[:2], verbose=0)
    tm.predict(x[:2], verbose=0)
    # Same starting weights in both libraries (and a check that they compute the same thing).
    km.set_weights(tm.get_weights())
    check = float(np.max(np.abs(np.asarray(km.predict(x, verbose=0)) - tm.predict(x, verbose=0))))
    note = f"kandle vs Keras forward, same weights: max |diff| = {check:.2e}"
    if what == "train":
        return [("kandle", lambda: km.train_on_batch(x, y)), ("keras", lambda: tm.train_on_batch(x, y))], note
    return ([("kandle", lambda: km.predict(x, batch_size=batch, verbose=0)),
             ("keras", lambda: tm.predict(x, batch_size=batch, verbose=0))], note)


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------

def run_case(name, contenders, rounds, steps, warmup):
    for label, step in contenders:
        t0 = time.perf_counter()
        for _ in range(warmup):
            step()
        print(f"   {label}: {warmup} warm-up steps in {time.perf_counter() - t0:.1f} s", flush=True)
    times = {label: [] for label, _ in contenders}
    for r in range(rounds):
        k = r % len(contenders)
        for label, step in contenders[k:] + contenders[:k]:
            time.sleep(SETTLE_SECONDS)
            for _ in range(steps):
                t0 = time.perf_counter()
                step()
                times[label].append(time.perf_counter() - t0)
        print(f"   round {r + 1}/{rounds}: " + ", ".join(
            f"{label} {statistics.median(t[-steps:]) * 1e3:.2f} ms" for label, t in times.items()), flush=True)
    return {label: {"median": statistics.median(t), "min": min(t), "n": len(t)} for label, t in times.items()}


def machine_info():
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return cpu


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=15, help="interleaved rounds per case")
    p.add_argument("--steps-scale", type=float, default=1.0, help="multiply every case's steps per round")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--cases", default="cnn_train_b32,antirectifier_train_b128,antirectifier_predict_b256,"
                                      "plain_mlp_train_b128")
    p.add_argument("--out", default=None, help="also write the report (markdown) here; default: stdout only")
    args = p.parse_args(argv)
    command = "TF_CPP_MIN_LOG_LEVEL=3 " + shlex.quote(sys.executable) + " benches/custom_layers.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))

    import kandle
    import keras
    import tensorflow as tf
    kandle_native = importlib.import_module("kandle._kandle")

    load_start = os.getloadavg()
    # case -> (contender factory, steps per round, description, ratio label)
    cases = {
        "cnn_train_b32": (lambda: cnn_contenders(kandle), 2,
                          "tutorial CNN, train_on_batch, batch 32: kandle built-in Dense(500, relu) head vs "
                          "CustomDense(500) (ops.relu(ops.matmul(x, w) + b))", "custom / built-in"),
        "antirectifier_train_b128": (lambda: antirectifier_contenders(kandle, keras, "train", 128), 10,
                                     "antirectifier MLP, train_on_batch, batch 128: kandle vs Keras",
                                     "kandle / keras"),
        "antirectifier_predict_b256": (lambda: antirectifier_contenders(kandle, keras, "predict", 256), 10,
                                       "antirectifier MLP, predict, batch 256: kandle vs Keras", "kandle / keras"),
        "plain_mlp_train_b128": (lambda: antirectifier_contenders(kandle, keras, "train", 128, antirectifier=False), 10,
                                 "reference: the same MLP without its two Antirectifier layers (built-in layers "
                                 "only), train_on_batch, batch 128: kandle vs Keras", "kandle / keras"),
    }
    selected = [c.strip() for c in args.cases.split(",") if c.strip()]
    for c in selected:
        if c not in cases:
            p.error(f"unknown case {c!r} (one of {', '.join(cases)})")

    results, notes = {}, {}
    t_all = time.perf_counter()
    for case in selected:
        factory, steps, desc, _ = cases[case]
        steps = max(1, round(steps * args.steps_scale))
        print(f"== {case}: {desc} ({args.rounds} rounds x {steps} steps)", flush=True)
        contenders, notes[case] = factory()
        print(f"   {notes[case]}", flush=True)
        results[case] = run_case(case, contenders, args.rounds, steps, args.warmup)
    elapsed = time.perf_counter() - t_all
    load_end = os.getloadavg()

    lines = ["# Custom layers: kandle built-in vs custom, kandle vs Keras", "",
             "Medians of per-step wall times (ms) in one process, contenders interleaved round by round; "
             "min in parentheses.", "",
             "| case | contender A | A median (ms) | contender B | B median (ms) | ratio | n |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: |"]
    for case in selected:
        (la, ra), (lb, rb) = results[case].items()
        ratio_label = cases[case][3]
        ratio = rb["median"] / ra["median"] if ratio_label == "custom / built-in" else ra["median"] / rb["median"]
        lines.append(f"| {case} | {la} | {ra['median'] * 1e3:.2f} ({ra['min'] * 1e3:.2f}) | {lb} | "
                     f"{rb['median'] * 1e3:.2f} ({rb['min'] * 1e3:.2f}) | {ratio_label} = {ratio:.2f}x | "
                     f"{ra['n']} / {rb['n']} |")
    lines += ["", "Cases:", ""]
    for case in selected:
        lines.append(f"- `{case}`: {cases[case][2]}; {notes[case]}")
    lines += [
        "",
        f"Warm-up {args.warmup} steps per contender; {args.rounds} rounds; {SETTLE_SECONDS} s pause before each "
        f"contender's turn. Antirectifier MLP: RMSprop(0.001), sparse_categorical_crossentropy, Dropout(0.1), "
        f"Dense(10, softmax). Total timing run {elapsed:.0f} s.",
        "",
        "## Machine",
        "",
        f"- CPU: {machine_info()}; {os.cpu_count()} cores "
        f"({len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'} usable)",
        f"- load average (1/5/15 min) at start: {'/'.join(f'{v:.2f}' for v in load_start)}; "
        f"at end: {'/'.join(f'{v:.2f}' for v in load_end)}",
        f"- threads: kandle._kandle.num_threads() = {kandle_native.num_threads()}; "
        f"tf.config.threading intra_op = {tf.config.threading.get_intra_op_parallelism_threads()}, "
        f"inter_op = {tf.config.threading.get_inter_op_parallelism_threads()} (0 = TensorFlow's default)",
        f"- versions: python {platform.python_version()}, numpy {np.__version__}, "
        f"kandle {getattr(kandle, '__version__', '?')}, keras {keras.__version__}, tensorflow {tf.__version__}",
        f"- date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        "",
        "## Command",
        "",
        "```",
        command,
        "```",
        "",
    ]
    report = "\n".join(lines)
    print()
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
