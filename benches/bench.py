#!/usr/bin/env python3
"""Interleaved CPU benchmark: kandle vs Keras (TensorFlow CPU) vs PyTorch CPU (optional).

Each implementation runs in its own worker process (this same file, ``--worker IMPL``), driven by
this parent through JSON lines on stdin/stdout. For every case a fresh worker per implementation
builds the model and warms up; then rounds alternate between implementations (round r: kandle does
N steps, then keras N steps, then torch N steps; the order rotates each round), so slow drifts of
the machine (heat, other load) hit every implementation alike. Workers time every step themselves
(``time.perf_counter``) and report their peak RSS (``VmHWM``) for the case.

Usage (from the repository root, in the environment where kandle is installed, ``pip install .``):

    python benches/bench.py --setup          # once: makes /work/venvs/keras (+ torch with --torch)
    python benches/bench.py                  # all implementations found; writes BENCHMARKS.md
    python benches/bench.py --impl keras --out /tmp/B.md --rounds 2   # one side only, quick

kandle runs in the interpreter that runs this script; Keras in ``--keras-python``
(default /work/venvs/keras/bin/python); PyTorch in ``--torch-python`` (default
/work/venvs/torch/bin/python), and only if that interpreter can import torch.
See benches/README.md.
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
KERAS_VENV = "/work/venvs/keras"
TORCH_VENV = "/work/venvs/torch"

# ---------------------------------------------------------------------------------------------
# What is measured. Layer lists are (class name, positional args, keyword args) in Keras terms.
# ---------------------------------------------------------------------------------------------

IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = 100

# The tutorial CNN (6,850,792 parameters).
TUTORIAL_CNN = [
    ("Conv2D", (32, (3, 3)), {"activation": "relu"}),
    ("Conv2D", (64, (3, 3)), {"activation": "relu"}),
    ("MaxPooling2D", ((2, 2),), {}),
    ("Conv2D", (128, (3, 3)), {"activation": "relu"}),
    ("Conv2D", (256, (3, 3)), {"activation": "relu"}),
    ("Conv2D", (512, (3, 3)), {"activation": "relu"}),
    ("MaxPooling2D", ((2, 2),), {}),
    ("Conv2D", (1024, (3, 3)), {"activation": "relu"}),
    ("MaxPooling2D", ((2, 2),), {}),
    ("Flatten", (), {}),
    ("Dense", (500,), {"activation": "relu"}),
    ("Dropout", (0.5,), {}),
    ("Dense", (NUM_CLASSES,), {"activation": "softmax"}),
]

# The chapter-1 dense network, as in notebooks/01_simple_nn.ipynb.
CHAPTER1_DENSE_NET = [
    ("Flatten", (), {}),
    ("Dense", (1000,), {"activation": "relu"}),
    ("Dense", (500,), {"activation": "relu"}),
    ("Dense", (NUM_CLASSES,), {"activation": "softmax"}),
]



def resnet50(K, classes=NUM_CLASSES):
    """The deeplearning.ai assignment's ResNet50 (notebooks/03_resnet.ipynb) for 32x32 inputs, in
    the Keras functional API that kandle and Keras share; the final 2x2 average pooling pads
    ('same'), as the notebook's port does, since stage 5 ends on a 1x1 map at 32x32."""
    L = K.layers

    def block(x, f, filters, stage, name, s=None):
        f1, f2, f3 = filters
        shortcut = x
        conv, bn = f"res{stage}{name}_branch", f"bn{stage}{name}_branch"
        x = L.Conv2D(f1, (1, 1), strides=(s or 1, s or 1), name=conv + "2a")(x)
        x = L.BatchNormalization(axis=3, name=bn + "2a")(x)
        x = L.Activation("relu")(x)
        x = L.Conv2D(f2, (f, f), padding="same", name=conv + "2b")(x)
        x = L.BatchNormalization(axis=3, name=bn + "2b")(x)
        x = L.Activation("relu")(x)
        x = L.Conv2D(f3, (1, 1), name=conv + "2c")(x)
        x = L.BatchNormalization(axis=3, name=bn + "2c")(x)
        if s is not None:
            shortcut = L.Conv2D(f3, (1, 1), strides=(s, s), name=conv + "1")(shortcut)
            shortcut = L.BatchNormalization(axis=3, name=bn + "1")(shortcut)
        return L.Activation("relu")(L.Add()([x, shortcut]))

    inputs = L.Input(IMAGE_SHAPE)
    x = L.ZeroPadding2D((3, 3))(inputs)
    x = L.Conv2D(64, (7, 7), strides=(2, 2), name="conv1")(x)
    x = L.BatchNormalization(axis=3, name="bn_conv1")(x)
    x = L.Activation("relu")(x)
    x = L.MaxPooling2D((3, 3), strides=(2, 2))(x)
    for stage, filters, blocks, s in ((2, [64, 64, 256], 3, 1), (3, [128, 128, 512], 4, 2),
                                      (4, [256, 256, 1024], 6, 2), (5, [512, 512, 2048], 3, 2)):
        x = block(x, 3, filters, stage, "a", s=s)
        for name in "bcdef"[:blocks - 1]:
            x = block(x, 3, filters, stage, name)
    x = L.AveragePooling2D((2, 2), padding="same", name="avg_pool")(x)
    x = L.Flatten()(x)
    x = L.Dense(classes, activation="softmax", name=f"fc{classes}")(x)
    return K.models.Model(inputs, x, name="ResNet50")


OPTIMIZER = ("SGD", {"learning_rate": 0.01})
LOSS = "categorical_crossentropy"

# case name -> (model, what, batch size, steps per round, description)
CASES = {
    "cnn_train_b32": (TUTORIAL_CNN, "train", 32, 3, "tutorial CNN, train_on_batch, batch 32"),
    "cnn_predict_b256": (TUTORIAL_CNN, "predict", 256, 2, "tutorial CNN, predict, batch 256"),
    "cnn_predict_1": (TUTORIAL_CNN, "predict", 1, 20, "tutorial CNN, predict, one image"),
    "dense_train_b32": (CHAPTER1_DENSE_NET, "train", 32, 10,
                        "chapter-1 dense net, train_on_batch, batch 32"),
    "resnet_train_b32": (resnet50, "train", 32, 2, "ResNet50 (32x32x3, 100 classes), train_on_batch, batch 32"),
    "resnet_predict_b256": (resnet50, "predict", 256, 1, "ResNet50, predict, batch 256"),
    "cnn_train_b32_bf16": (TUTORIAL_CNN, "train", 32, 3,
                           "tutorial CNN, train_on_batch, batch 32, mixed_bfloat16 (PyTorch: CPU autocast to bfloat16)"),
    "cnn_predict_b256_bf16": (TUTORIAL_CNN, "predict", 256, 2, "tutorial CNN, predict, batch 256, mixed_bfloat16"),
}
# Cases run under a dtype policy: kandle's and Keras's mixed_precision.set_global_policy before the
# model is built, PyTorch's torch.autocast("cpu", dtype=torch.bfloat16) around the forward pass.
POLICIES = {"cnn_train_b32_bf16": "mixed_bfloat16", "cnn_predict_b256_bf16": "mixed_bfloat16"}
WARMUP_STEPS = 3
SETTLE_SECONDS = 1.0
# kandle_base: kandle as built in another environment (``--base-python``), for before/after runs.
IMPLS = ("kandle", "keras", "torch", "kandle_base")


# ---------------------------------------------------------------------------------------------
# Worker side
# ---------------------------------------------------------------------------------------------

def peak_rss_mib():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_data(batch, classes=NUM_CLASSES):
    import numpy as np
    rng = np.random.default_rng(0)
    x = rng.random((batch,) + IMAGE_SHAPE, dtype=np.float32)
    labels = rng.integers(0, classes, batch)
    y = np.eye(classes, dtype=np.float32)[labels]
    return x, y, labels


class KerasAPIRunner:
    """kandle and Keras: the same code, through the Keras API both provide."""

    def __init__(self, module, layer_list, what, batch):
        K = self.K = module
        if callable(layer_list):
            self.model = layer_list(K)
        else:
            layers = [K.layers.Input(IMAGE_SHAPE)]
            layers += [getattr(K.layers, cls)(*args, **kwargs) for cls, args, kwargs in layer_list]
            self.model = K.models.Sequential(layers)
        opt_cls, opt_cfg = OPTIMIZER
        self.model.compile(optimizer=getattr(K.optimizers, opt_cls)(**opt_cfg), loss=LOSS)
        self.what, self.batch = what, batch
        self.x, self.y, _ = make_data(batch)

    def step(self):
        if self.what == "train":
            self.model.train_on_batch(self.x, self.y)
        else:
            self.model.predict(self.x, batch_size=self.batch, verbose=0)


def torch_resnet50(nn, classes=NUM_CLASSES):
    """`resnet50` in PyTorch, layer for layer: Keras's 'valid' convolutions, 'same' 3x3 ones,
    BatchNormalization with Keras's epsilon and momentum, the stem's zero padding and the final
    'same' 2x2 average pooling (ceil mode, averaging only inside the image)."""

    def bn(c):
        return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)

    class Block(nn.Module):
        def __init__(self, c_in, f, filters, s=None):
            super().__init__()
            f1, f2, f3 = filters
            self.main = nn.Sequential(nn.Conv2d(c_in, f1, 1, stride=s or 1), bn(f1), nn.ReLU(),
                                      nn.Conv2d(f1, f2, f, padding=f // 2), bn(f2), nn.ReLU(),
                                      nn.Conv2d(f2, f3, 1), bn(f3))
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, f3, 1, stride=s), bn(f3)) if s is not None else None

        def forward(self, x):
            return nn.functional.relu(self.main(x) + (x if self.shortcut is None else self.shortcut(x)))

    mods, c = [nn.ZeroPad2d(3), nn.Conv2d(IMAGE_SHAPE[2], 64, 7, stride=2), bn(64), nn.ReLU(), nn.MaxPool2d(3, 2)], 64
    for filters, blocks, s in (([64, 64, 256], 3, 1), ([128, 128, 512], 4, 2), ([256, 256, 1024], 6, 2),
                               ([512, 512, 2048], 3, 2)):
        mods.append(Block(c, 3, filters, s=s))
        mods += [Block(filters[2], 3, filters) for _ in range(blocks - 1)]
        c = filters[2]
    mods += [nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False), nn.Flatten(), nn.Linear(c, classes)]
    return nn.Sequential(*mods)


class TorchRunner:
    def __init__(self, layer_list, what, batch, autocast=False):
        import torch
        from torch import nn
        self.torch = torch
        self.autocast = autocast
        if layer_list is resnet50:
            self.setup(torch_resnet50(nn), what, batch)
            return
        mods, channels, spatial, flat = [], IMAGE_SHAPE[2], IMAGE_SHAPE[:2], None
        last_softmax = False
        for cls, args, kwargs in layer_list:
            act = kwargs.get("activation")
            if cls == "Conv2D":
                filters, (kh, kw) = args
                mods.append(nn.Conv2d(channels, filters, (kh, kw)))
                channels, spatial = filters, (spatial[0] - kh + 1, spatial[1] - kw + 1)
            elif cls == "MaxPooling2D":
                (ph, pw), = args
                mods.append(nn.MaxPool2d((ph, pw)))
                spatial = (spatial[0] // ph, spatial[1] // pw)
            elif cls == "Flatten":
                mods.append(nn.Flatten())
                flat = channels * spatial[0] * spatial[1]
            elif cls == "Dense":
                mods.append(nn.Linear(flat, args[0]))
                flat = args[0]
            elif cls == "Dropout":
                mods.append(nn.Dropout(args[0]))
            else:
                raise KeyError(cls)
            if act == "relu":
                mods.append(nn.ReLU())
            last_softmax = act == "softmax"  # folded into cross_entropy / applied in predict
        assert last_softmax
        self.setup(nn.Sequential(*mods), what, batch)

    def setup(self, model, what, batch):
        torch = self.torch
        self.model = model
        opt_cls, opt_cfg = OPTIMIZER
        assert opt_cls == "SGD"
        self.opt = torch.optim.SGD(self.model.parameters(), lr=opt_cfg["learning_rate"])
        x, _, labels = make_data(batch)
        self.x = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()  # NCHW
        self.labels = torch.from_numpy(labels)
        self.what = what

    def step(self):
        torch = self.torch
        if self.what == "train":
            self.model.train()
            self.opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
                logits = self.model(self.x)
            loss = torch.nn.functional.cross_entropy(logits.float(), self.labels)
            loss.backward()
            self.opt.step()
            loss.item()
        else:
            self.model.eval()
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
                torch.softmax(self.model(self.x).float(), dim=-1).numpy()


def worker_versions(impl):
    import numpy as np
    v = {"python": platform.python_version(), "numpy": np.__version__}
    if impl in ("kandle", "kandle_base"):
        import kandle
        v["kandle"] = getattr(kandle, "__version__", "?")
    elif impl == "keras":
        import keras
        import tensorflow as tf
        v["keras"], v["tensorflow"] = keras.__version__, tf.__version__
    else:
        import torch
        v["torch"] = torch.__version__
        v["torch_threads"] = torch.get_num_threads()
    return v


def worker_main(impl):
    # The protocol owns the real stdout; anything else printed (by us or by native code) goes to
    # stderr so it cannot corrupt the JSON lines.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    if impl == "keras":
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        import keras as module
    elif impl in ("kandle", "kandle_base"):
        import kandle as module
    else:
        module = None

    runner = None
    for line in sys.stdin:
        msg = json.loads(line)
        cmd = msg["cmd"]
        try:
            if cmd == "info":
                reply = {"versions": worker_versions(impl)}
            elif cmd == "setup":
                layer_list, what, batch, _, _ = CASES[msg["case"]]
                policy = POLICIES.get(msg["case"])
                if impl == "torch":
                    runner = TorchRunner(layer_list, what, batch, autocast=policy is not None)
                else:
                    if policy:
                        module.mixed_precision.set_global_policy(policy)
                    runner = KerasAPIRunner(module, layer_list, what, batch)
                for _ in range(msg.get("warmup", WARMUP_STEPS)):
                    runner.step()
                reply = {"ok": True}
            elif cmd == "run":
                times = []
                for _ in range(msg["steps"]):
                    t0 = time.perf_counter()
                    runner.step()
                    times.append(time.perf_counter() - t0)
                reply = {"times": times}
            elif cmd == "rss":
                reply = {"peak_rss_mib": peak_rss_mib()}
            elif cmd == "quit":
                proto.write(json.dumps({"ok": True}) + "\n")
                return 0
            else:
                reply = {"error": f"unknown command {cmd!r}"}
        except Exception as e:  # report, let the parent decide
            import traceback
            traceback.print_exc()
            reply = {"error": f"{type(e).__name__}: {e}"}
        proto.write(json.dumps(reply) + "\n")
    return 0


# ---------------------------------------------------------------------------------------------
# Parent side
# ---------------------------------------------------------------------------------------------

class Worker:
    def __init__(self, impl, python, log):
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        env.setdefault("CUDA_VISIBLE_DEVICES", "")
        self.impl = impl
        self.proc = subprocess.Popen(
            [python, os.path.abspath(__file__), "--worker", impl],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1,
            env=env, cwd=ROOT)

    def ask(self, **msg):
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.impl} worker died (see its log)")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"{self.impl}: {reply['error']}")
        return reply

    def close(self):
        try:
            self.ask(cmd="quit")
        except Exception:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def can_import(python, module):
    if not os.path.exists(python):
        return False
    r = subprocess.run([python, "-c", f"import {module}"], capture_output=True,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    return r.returncode == 0


def machine_info():
    model = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": model, "cores": os.cpu_count(), "usable_cores": usable, "memory": mem,
            "os": platform.platform()}


def fmt_time(seconds):
    if seconds is None:
        return "—"
    if seconds >= 1.0:
        return f"{seconds:.3f} s"
    return f"{seconds * 1e3:.2f} ms"


def fmt_ratio(a, b):
    return "—" if a is None or b is None else f"{a / b:.2f}×"


def run_benchmark(args, impls):
    pythons = {"kandle": sys.executable, "keras": args.keras_python, "torch": args.torch_python,
               "kandle_base": args.base_python}
    results, versions = {}, {}
    os.makedirs(args.log_dir, exist_ok=True)
    all_impls = impls
    for case in args.cases:
        model, _, _, default_steps, desc = CASES[case]
        impls = list(all_impls)
        steps = max(1, round(default_steps * args.steps_scale))
        print(f"== {case}: {desc} ({args.rounds} rounds x {steps} steps)", flush=True)
        workers = {}
        try:
            for impl in list(impls):
                log = open(os.path.join(args.log_dir, f"{case}.{impl}.log"), "w")
                w = workers[impl] = Worker(impl, pythons[impl], log)
                versions.setdefault(impl, w.ask(cmd="info")["versions"])
                t0 = time.perf_counter()
                try:
                    w.ask(cmd="setup", case=case, warmup=args.warmup)
                except RuntimeError as e:
                    if impl != "kandle_base":
                        raise
                    # An older build may lack what the case needs (the functional API, a layer).
                    print(f"   kandle_base: cannot run this case ({e}); measured without it", flush=True)
                    workers.pop(impl).close()
                    impls = [i for i in impls if i != impl]
                    continue
                print(f"   {impl}: built + {args.warmup} warm-up steps in "
                      f"{time.perf_counter() - t0:.1f} s", flush=True)
            times = {impl: [] for impl in impls}
            for r in range(args.rounds):
                order = impls[r % len(impls):] + impls[:r % len(impls)]
                for impl in order:
                    # Let the previous worker's thread pools (TensorFlow's and OpenMP's spin-wait
                    # after a step) go idle, so they do not take cores from the next one.
                    time.sleep(SETTLE_SECONDS)
                    times[impl] += workers[impl].ask(cmd="run", steps=steps)["times"]
                print(f"   round {r + 1}/{args.rounds}: " + ", ".join(
                    f"{i} {fmt_time(statistics.median(times[i][-steps:]))}" for i in impls),
                    flush=True)
            results[case] = {impl: {"median": statistics.median(times[impl]),
                                    "min": min(times[impl]), "n": len(times[impl]),
                                    "peak_rss_mib": workers[impl].ask(cmd="rss")["peak_rss_mib"]}
                             for impl in impls}
        finally:
            for w in workers.values():
                w.close()
    return results, versions


def write_report(path, args, impls, results, versions):
    info = machine_info()
    lines = [
        "# Benchmarks",
        "",
        "kandle vs Keras (TensorFlow, CPU)" + (" vs PyTorch (CPU)" if "torch" in impls else "") +
        ". Medians of per-step wall times, measured inside each implementation's own worker "
        "process; rounds interleave the implementations (see benches/README.md). "
        "Ratios below 1 mean kandle is faster.",
        "",
        "| case | kandle | keras | torch | kandle/keras | kandle/torch | peak RSS (MiB) "
        "kandle / keras / torch |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for case, res in results.items():
        med = {i: res[i]["median"] if i in res else None for i in IMPLS}
        rss = " / ".join(f"{res[i]['peak_rss_mib']:.0f}" if i in res else "—" for i in IMPLS[:3])
        lines.append(f"| {case} | {fmt_time(med['kandle'])} | {fmt_time(med['keras'])} | "
                     f"{fmt_time(med['torch'])} | {fmt_ratio(med['kandle'], med['keras'])} | "
                     f"{fmt_ratio(med['kandle'], med['torch'])} | {rss} |")
    if "cnn_train_b32_bf16" in results and "cnn_train_b32" in results:
        bf, f32 = results["cnn_train_b32_bf16"], results["cnn_train_b32"]
        if "keras" in f32:
            lines += ["", "mixed_bfloat16 against float32 (issue 13's target: kandle's bf16 step <= 0.3x Keras's float32 "
                      "step): kandle bf16 / Keras float32 = "
                      f"{fmt_ratio(bf['kandle']['median'], f32['keras']['median'])}; kandle bf16 / kandle float32 = "
                      f"{fmt_ratio(bf['kandle']['median'], f32['kandle']['median'])}" +
                      (f"; Keras bf16 / Keras float32 = {fmt_ratio(bf['keras']['median'], f32['keras']['median'])}"
                       if "keras" in bf else "") + "."]
    if "kandle_base" in impls:
        lines += ["", f"Before/after: kandle against the build in `{args.base_python}` (kandle_base), "
                  "in the same interleaved rounds.", "",
                  "| case | kandle | kandle_base | kandle/kandle_base |", "| --- | ---: | ---: | ---: |"]
        for case, res in results.items():
            if "kandle_base" in res:
                a, b = res["kandle"]["median"], res["kandle_base"]["median"]
                lines.append(f"| {case} | {fmt_time(a)} | {fmt_time(b)} | {fmt_ratio(a, b)} |")
    lines += ["", "Cases:", ""]
    for case in results:
        n = ", ".join(f"{i} n={results[case][i]['n']}" for i in impls if i in results[case])
        lines.append(f"- `{case}`: {CASES[case][4]} ({n} timed steps)")
    lines += [
        "",
        f"Optimizer {OPTIMIZER[0]}({', '.join(f'{k}={v}' for k, v in OPTIMIZER[1].items())}), "
        f"loss {LOSS}, random float32 inputs of shape {IMAGE_SHAPE}, {NUM_CLASSES} classes; "
        f"{args.warmup} warm-up steps per worker before timing. The chapter-1 dense net is "
        "notebooks/01_simple_nn.ipynb's (`CHAPTER1_DENSE_NET` in benches/bench.py).",
        "",
        "## Machine",
        "",
        f"- CPU: {info['cpu']}",
        f"- cores: {info['cores']} ({info['usable_cores']} usable by this process)",
        f"- memory: {info['memory']}",
        f"- OS: {info['os']}",
        f"- date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        "",
        "## Versions",
        "",
    ]
    for impl in impls:
        lines.append(f"- {impl}: " + ", ".join(f"{k} {v}" for k, v in versions[impl].items()))
    lines += ["", "## Command", "", "```", args.command, "```", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


# ---------------------------------------------------------------------------------------------
# --setup
# ---------------------------------------------------------------------------------------------

def setup(with_torch):
    def venv(path, packages):
        python = os.path.join(path, "bin", "python")
        module = "tensorflow" if "tensorflow-cpu" in packages else "torch"
        if can_import(python, module):
            print(f"{path}: ready")
            return
        print(f"{path}: creating ({' '.join(packages)})", flush=True)
        subprocess.run([sys.executable, "-m", "venv", path], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", *packages], check=True)
    venv(KERAS_VENV, ["tensorflow-cpu", "keras", "numpy"])
    if with_torch:
        # The package index has only the CUDA build of torch for Linux x86-64 (large); it runs
        # on CPU all the same, and the workers hide any GPU (CUDA_VISIBLE_DEVICES="").
        venv(TORCH_VENV, ["torch", "numpy"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--setup", action="store_true",
                   help=f"create {KERAS_VENV} (tensorflow-cpu, keras) if missing, then exit")
    p.add_argument("--torch", action="store_true",
                   help=f"with --setup: also create {TORCH_VENV} (torch)")
    p.add_argument("--impl", default=None,
                   help="comma-separated subset of kandle,keras,torch "
                        "(default: kandle, keras, and torch when its interpreter imports it)")
    p.add_argument("--cases", default=",".join(CASES),
                   help="comma-separated subset of " + ",".join(CASES))
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps-scale", type=float, default=1.0,
                   help="multiply every case's steps per round by this")
    p.add_argument("--warmup", type=int, default=WARMUP_STEPS)
    p.add_argument("--keras-python", default=os.path.join(KERAS_VENV, "bin", "python"))
    p.add_argument("--torch-python", default=os.path.join(TORCH_VENV, "bin", "python"))
    p.add_argument("--base-python", default=None,
                   help="an interpreter with another kandle build, measured as kandle_base (before/after)")
    p.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    p.add_argument("--log-dir", default=os.path.join(ROOT, "target", "bench-logs"),
                   help="workers' stderr goes here, one file per case and implementation")
    p.add_argument("--worker", choices=IMPLS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        return worker_main(args.worker)
    if args.setup:
        setup(args.torch)
        return 0

    args.command = "python benches/bench.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    for c in args.cases:
        if c not in CASES:
            p.error(f"unknown case {c!r}")
    if args.impl:
        impls = [i.strip() for i in args.impl.split(",") if i.strip()]
        for i in impls:
            if i not in IMPLS:
                p.error(f"unknown implementation {i!r}")
    else:
        impls = ["kandle", "keras"]
        if can_import(args.torch_python, "torch"):
            impls.append("torch")
    if args.base_python and "kandle_base" not in impls:
        impls.append("kandle_base")
    checks = {"kandle": (sys.executable, "kandle.models"), "keras": (args.keras_python, "keras"),
              "torch": (args.torch_python, "torch"), "kandle_base": (args.base_python or "", "kandle.models")}
    for impl in impls:
        python, module = checks[impl]
        if not can_import(python, module):
            hint = {"kandle": "pip install . in this environment",
                    "keras": "python benches/bench.py --setup",
                    "torch": "python benches/bench.py --setup --torch",
                    "kandle_base": "pip install another kandle build there and pass --base-python"}[impl]
            p.error(f"{impl}: {python} cannot import {module} ({hint}, or leave {impl} out "
                    "with --impl)")

    results, versions = run_benchmark(args, impls)
    write_report(args.out, args, impls, results, versions)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
