"""Data-parallel speed on this machine: the tutorial CNN's `fit` (batch 32, synthetic CIFAR-shaped
data) as 1 process x T threads against P processes x T/P threads under ``mpiexec -n P``, in
interleaved rounds; images per second (median), and the time each step spends in the collectives.

    python benches/distributed.py [--rounds 5] [--images 1024] [--processes 2]

Writes nothing: it prints a Markdown table (README "Training on several machines" quotes it).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def worker(images, epochs):
    import numpy as np

    import kandle
    from bench import IMAGE_SHAPE, NUM_CLASSES, TUTORIAL_CNN
    from kandle import callbacks, distribution, layers, models
    from kandle.distribution import distribution_lib

    parallel = os.environ.get("DP") == "1"
    if parallel:
        distribution.initialize()
        distribution.set_distribution(distribution.DataParallel())
    spent = [0.0]
    original = distribution_lib._Group._wait

    def timed(self, request, what, buffer):
        start = time.perf_counter()
        try:
            return original(self, request, what, buffer)
        finally:
            spent[0] += time.perf_counter() - start

    distribution_lib._Group._wait = timed
    kandle.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((images,) + IMAGE_SHAPE, dtype=np.float32)
    y = np.eye(NUM_CLASSES, dtype=np.float32)[rng.integers(0, NUM_CLASSES, images)]
    model = models.Sequential([layers.Input(IMAGE_SHAPE)] + [getattr(layers, c)(*a, **k) for c, a, k in TUTORIAL_CNN])
    model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["acc"])
    times, waits = [], []

    class Clock(callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start, spent[0] = time.perf_counter(), 0.0

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)
            waits.append(spent[0])

    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0, shuffle=True, callbacks=[Clock()])
    group = distribution_lib._world()
    if group is None or group.rank == 0:
        # The first epoch warms up (allocations, thread pool): the later ones are the figure.
        print(json.dumps({"seconds": times[1:], "collective_seconds": waits[1:], "threads": kandle._kandle.num_threads(),
                          "parameters": model.count_params()}), flush=True)


def run(config, images, epochs, processes, threads):
    env = dict(os.environ)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", str(images), str(epochs)]
    if config == "dp":
        env["DP"], env["RAYON_NUM_THREADS"] = "1", str(max(1, threads // processes))
        mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
        cmd = [mpiexec, "-n", str(processes)] + cmd
    else:
        env["RAYON_NUM_THREADS"] = str(threads)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        return worker(int(sys.argv[2]), int(sys.argv[3]))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--images", type=int, default=1024)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = p.parse_args()
    results = {"one": [], "dp": []}
    for r in range(args.rounds):
        for config in ("one", "dp"):
            res = run(config, args.images, args.epochs, args.processes, args.threads)
            results[config].append(res)
            rate = args.images / statistics.median(res["seconds"])
            print(f"round {r + 1} {config}: {rate:.1f} images/s, collectives {statistics.median(res['collective_seconds']):.2f} s/epoch",
                  file=sys.stderr, flush=True)
    steps = -(-args.images // 32)
    rows = []
    for config, label in (("one", f"1 process x {args.threads} threads"),
                          ("dp", f"{args.processes} processes x {max(1, args.threads // args.processes)} thread(s)")):
        epoch = statistics.median(s for res in results[config] for s in res["seconds"])
        wait = statistics.median(s for res in results[config] for s in res["collective_seconds"])
        rows.append((label, args.images / epoch, 1000 * epoch / steps, 1000 * wait / steps))
    params = results["one"][0]["parameters"]
    print(f"Tutorial CNN ({params:,} parameters, {4 * params / 1e6:.1f} MB of gradients), batch 32, "
          f"{args.images} images, median of {args.rounds} rounds x {args.epochs - 1} epochs:\n")
    print("| configuration | images/s | ms per step | of which collectives (ms) |")
    print("|---|---|---|---|")
    for label, rate, step, wait in rows:
        print(f"| {label} | {rate:.1f} | {step:.0f} | {wait:.1f} |")
    print(f"\nratio (processes / threads, images/s): {rows[1][1] / rows[0][1]:.2f}")


if __name__ == "__main__":
    main()
