"""Simulator speed and memory: one pulse+read iteration on whole arrays.

Run: python benchmarks/bench_sim.py [--sizes 64 256 1024] [--iterations 20]

Each (preset, size) runs in a fresh subprocess so peak RSS belongs to it alone.
Prints seconds per iteration for a dense batch (every cell pulsed, mixed
SET/RESET) and a sparse one (10 % of cells, as late in write-verify), the
chip's own peak allocation (tracemalloc) and the process peak RSS.
Targets (issue 2): 1024x1024 iteration <= 50 ms; a 1024x1024 chip <= 200 MB.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc


def run_one(preset: str, size: int, iterations: int) -> dict:
    import numpy as np

    import sim_backend

    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tracemalloc.start()
    chip = sim_backend.SimChip(sim_backend.load_chip(preset, rows=size, cols=size), seed=1)
    chip.form()
    rng = np.random.default_rng(0)
    dense = (rng.choice([-1.0, 1.0], size=chip.shape) * rng.uniform(1.0, 2.0, chip.shape))
    sparse = np.where(rng.random(chip.shape) < 0.1, dense, 0.0)
    results = {}
    for name, volts in (("dense", dense.astype(np.float32)), ("sparse", sparse.astype(np.float32))):
        for _ in range(3):  # warm-up
            chip.pulse(volts)
            chip.read()
        times = []
        for _ in range(iterations):
            t0 = time.perf_counter()
            chip.pulse(volts)
            chip.read()
            times.append(time.perf_counter() - t0)
        results[name] = statistics.median(times)
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"preset": preset, "size": size, "dense_s": results["dense"],
            "sparse_s": results["sparse"], "traced_peak_mb": peak,
            "rss_peak_mb": rss, "rss_before_chip_mb": base_rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--presets", nargs="+", default=["rram", "pcm"])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child[0], int(args.child[1]), args.iterations)))
        return
    print(f"{'preset':6} {'size':>9} {'dense ms/iter':>14} {'sparse ms/iter':>15} "
          f"{'chip peak MB':>13} {'RSS peak MB':>12} {'RSS before MB':>14}")
    for preset in args.presets:
        for size in args.sizes:
            out = subprocess.run(
                [sys.executable, __file__, "--child", preset, str(size),
                 "--iterations", str(args.iterations)],
                check=True, capture_output=True, text=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{preset:6} {size:>4}x{size:<4} {r['dense_s'] * 1e3:>14.2f} "
                  f"{r['sparse_s'] * 1e3:>15.2f} {r['traced_peak_mb']:>13.1f} "
                  f"{r['rss_peak_mb']:>12.1f} {r['rss_before_chip_mb']:>14.1f}")
    print("targets: 1024x1024 dense iteration <= 50 ms; 1024x1024 chip <= 200 MB")


if __name__ == "__main__":
    main()
