#!/usr/bin/env python3
"""One epoch of the tutorial's `fit` on CIFAR-100, kandle vs Keras: wall time and peak memory.

What the tutorial does, as its notebook does it: images scaled with `x / 255` (float64 arrays, as the
article leaves them), one-hot labels, the tutorial CNN compiled with SGD, categorical cross-entropy
and `metrics=['acc', 'mse']`, then `fit(epochs=1, batch_size=32, validation_data=(x_test, y_test),
shuffle=True, verbose=1)` with the progress bar printed (to /dev/null). Each fit runs in a fresh
worker process; rounds alternate the implementations. Reported per implementation: the fit's wall
time (median over rounds), the process's peak RSS (VmHWM), and its RSS just before `fit` (data
loaded, model built), so that the growth during `fit` can be compared too.

Usage (from the repository root, kandle installed in this interpreter; Keras from
/work/venvs/keras, see `python benches/bench.py --setup`):

    python benches/fit_epoch.py                          # full data, 1 round, writes benches/FIT_EPOCH.md
    python benches/fit_epoch.py --train 5000 --test 1000 --rounds 2 --out /tmp/F.md   # quicker
"""

import argparse
import datetime
import json
import os
import pickle
import statistics
import subprocess
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from bench import KERAS_VENV, TUTORIAL_CNN, machine_info  # noqa: E402

DATA_CANDIDATES = [
    os.path.join(ROOT, "..", "shared", "datasets", "cifar-100-python.tar.gz"),
    os.path.expanduser("~/.kandle/datasets/cifar-100-python.tar.gz"),
    os.path.expanduser("~/.keras/datasets/cifar-100-python.tar.gz"),
]


def rss_mib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def load_cifar100(path, train, test):
    """The official archive's pickles -> NHWC uint8 images and fine labels (the same in both workers,
    so neither library's loader is part of the measurement)."""
    import numpy as np

    def part(tar, name, n):
        d = pickle.load(tar.extractfile(f"cifar-100-python/{name}"), encoding="bytes")
        x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)[:n]
        return np.ascontiguousarray(x), np.asarray(d[b"fine_labels"], dtype=np.int64)[:n]

    with tarfile.open(path) as tar:
        return part(tar, "train", train), part(tar, "test", test)


def worker(impl, args):
    import numpy as np
    if impl == "keras":
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        import keras as K
    else:
        import kandle as K
    (x_train, y_train), (x_test, y_test) = load_cifar100(args.data, args.train, args.test)
    # The tutorial's preprocessing: float64 images in [0, 1], one-hot float32 labels.
    x_train, x_test = x_train / 255, x_test / 255
    y_train = np.eye(100, dtype=np.float32)[y_train]
    y_test = np.eye(100, dtype=np.float32)[y_test]
    model = K.models.Sequential([K.layers.Input((32, 32, 3))] +
                                [getattr(K.layers, c)(*a, **kw) for c, a, kw in TUTORIAL_CNN])
    model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["acc", "mse"])
    before = rss_mib("VmRSS")
    real_stdout = sys.stdout
    with open(os.devnull, "w") as devnull:
        sys.stdout = devnull
        t0 = time.perf_counter()
        history = model.fit(x_train, y_train, batch_size=32, epochs=1, shuffle=True, verbose=1,
                            validation_data=(x_test, y_test))
        seconds = time.perf_counter() - t0
        sys.stdout = real_stdout
    val_acc = history.history.get("val_acc", history.history.get("val_accuracy", [float("nan")]))[-1]
    print(json.dumps({"seconds": seconds, "peak_rss_mib": rss_mib("VmHWM"), "rss_before_fit_mib": before,
                      "val_acc": float(val_acc), "x_dtype": str(x_train.dtype)}), flush=True)


def run_worker(impl, python, args, log):
    cmd = [python, os.path.abspath(__file__), "--worker", impl, "--data", args.data,
           "--train", str(args.train), "--test", str(args.test)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=ROOT)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"{impl} worker failed (exit {out.returncode}); see its log")
    return json.loads(lines[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--data", default=next((d for d in DATA_CANDIDATES if os.path.exists(d)), DATA_CANDIDATES[0]))
    p.add_argument("--train", type=int, default=50000)
    p.add_argument("--test", type=int, default=10000)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--keras-python", default=os.path.join(KERAS_VENV, "bin", "python"))
    p.add_argument("--out", default=os.path.join(HERE, "FIT_EPOCH.md"))
    p.add_argument("--log-dir", default=os.path.join(ROOT, "target", "bench-logs"))
    args = p.parse_args()
    if args.worker:
        return worker(args.worker, args)

    os.makedirs(args.log_dir, exist_ok=True)
    pythons = {"kandle": sys.executable, "keras": args.keras_python}
    results = {impl: [] for impl in pythons}
    for r in range(args.rounds):
        order = list(pythons) if r % 2 == 0 else list(pythons)[::-1]
        for impl in order:
            with open(os.path.join(args.log_dir, f"fit_epoch.{impl}.log"), "a") as log:
                res = run_worker(impl, pythons[impl], args, log)
            results[impl].append(res)
            print(f"round {r + 1}/{args.rounds} {impl}: fit {res['seconds']:.1f} s, peak RSS "
                  f"{res['peak_rss_mib']:.0f} MiB (before fit {res['rss_before_fit_mib']:.0f} MiB), "
                  f"val_acc {res['val_acc']:.4f}", flush=True)

    def med(impl, key):
        return statistics.median(r[key] for r in results[impl])

    k, t = "kandle", "keras"
    growth = {i: med(i, "peak_rss_mib") - med(i, "rss_before_fit_mib") for i in pythons}
    command = "python benches/fit_epoch.py" + "".join(
        f" --{name} {getattr(args, name)}" for name, default in (("train", 50000), ("test", 10000), ("rounds", 1))
        if getattr(args, name) != default)
    info = machine_info()
    lines = [
        "# One epoch of the tutorial's fit: kandle vs Keras",
        "",
        f"The tutorial CNN on {args.train:,} CIFAR-100 training images with validation on {args.test:,}: "
        "`fit(epochs=1, batch_size=32, shuffle=True, verbose=1, validation_data=...)` on the tutorial's "
        "float64 arrays (`x / 255`), SGD, categorical cross-entropy, `metrics=['acc', 'mse']`, progress "
        f"bar printed to /dev/null. Fresh worker process per fit; medians over {args.rounds} round(s), "
        "rounds alternating the order. See benches/fit_epoch.py.",
        "",
        "| | kandle | keras | kandle/keras |",
        "| --- | ---: | ---: | ---: |",
        f"| fit wall time | {med(k, 'seconds'):.1f} s | {med(t, 'seconds'):.1f} s | "
        f"{med(k, 'seconds') / med(t, 'seconds'):.2f}× |",
        f"| peak RSS (whole process) | {med(k, 'peak_rss_mib'):.0f} MiB | {med(t, 'peak_rss_mib'):.0f} MiB | "
        f"{med(k, 'peak_rss_mib') / med(t, 'peak_rss_mib'):.2f}× |",
        f"| RSS before fit (data + model) | {med(k, 'rss_before_fit_mib'):.0f} MiB | "
        f"{med(t, 'rss_before_fit_mib'):.0f} MiB | |",
        f"| growth during fit (peak - before) | {growth[k]:.0f} MiB | {growth[t]:.0f} MiB | "
        f"{growth[k] / growth[t]:.2f}× |",
        f"| val_acc after the epoch | {med(k, 'val_acc'):.4f} | {med(t, 'val_acc'):.4f} | |",
        "",
        "Per round (fit seconds, kandle / keras): " + "; ".join(
            f"{r + 1}: {results[k][r]['seconds']:.1f} / {results[t][r]['seconds']:.1f}" for r in range(args.rounds)) + ".",
        "",
        f"Machine: {info['cpu']}, {info['usable_cores']} cores, {info['memory']}; "
        f"{datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}.",
        "",
        "Command:",
        "",
        "```",
        command,
        "```",
        "",
    ]
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
