#!/usr/bin/env python3
"""Before/after on a noisy machine: one bench.py case, run in fresh processes of two kandle builds
in turn (this interpreter's and ``--base-python``'s), several times; prints the minimum, first
quartile and median step time of each run. On a shared VM whose speed swings 2x within a minute the
minimum over many steps is the figure that moves least; compare minima across alternating runs.

    python benches/ab_steps.py --base-python /work/venvs/kandle-base/bin/python --case cnn_train_b32
"""

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def worker(case, steps):
    sys.path.insert(0, HERE)
    import bench
    import kandle

    model, what, batch, _, _ = bench.CASES[case]
    runner = bench.KerasAPIRunner(kandle, model, what, batch)
    for _ in range(2):
        runner.step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        runner.step()
        times.append(time.perf_counter() - t0)
    times.sort()
    print(f"min {times[0] * 1e3:.1f} ms  p25 {times[len(times) // 4] * 1e3:.1f}  "
          f"median {times[len(times) // 2] * 1e3:.1f}", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base-python", required=True)
    p.add_argument("--case", default="cnn_train_b32")
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args.case, args.steps)
    for r in range(args.repeats):
        for label, python in (("kandle", sys.executable), ("kandle_base", args.base_python)):
            out = subprocess.run([python, __file__, "--worker", "--case", args.case, "--steps", str(args.steps),
                                  "--base-python", args.base_python], capture_output=True, text=True, check=True)
            print(f"{args.case} run {r + 1} {label:12s} {out.stdout.strip()}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
