"""Networks on the chip: the bundled digits model on the simulated bench, scored on its
held-out test split (the labels), never on the protocol's own estimates.

Run: python benchmarks/bench_infer.py [--presets rram pcm] [--dies 12 20 30]
                                      [--ages 0,1h,1d,30d,1y]

Per preset and die, ``calib infer`` (calib.jobs.infer.infer_die) programs the model by
write-verify, calibrates every drift-compensation method right after programming, and
measures the test accuracy at each virtual age with each method (none, global, column,
reference). Printed: the float baseline; on-chip accuracy right after programming
(target: within 1.5 pt of float) and per-layer MVM error; the loss against the
right-after-programming accuracy at each age, per method, averaged over the dies (targets,
best method: pcm <= 0.5 pt at 1 d, <= 1 pt at 30 d, <= 2 pt at 1 y; rram <= 1 pt at
30 d); cost: calibration transactions per method, inference transactions and bench time
per pass of the test set, wall time. One test sample is 0.28 pt of accuracy.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from calib.jobs.infer import InferOptions, infer_die, parse_ages  # noqa: E402
from calib.wiring import open_bench  # noqa: E402
from protocols.inference import METHODS  # noqa: E402

TARGETS = {"pcm": {"1d": 0.5, "30d": 1.0, "1y": 2.0}, "rram": {"30d": 1.0}}


def one(preset: str, die: int, ages: tuple[float, ...], results: Path) -> dict:
    with open_bench(chip=preset) as b:
        t0 = time.perf_counter()
        s = infer_die(b, die, InferOptions(ages_s=ages, compensation=tuple(METHODS)),
                      results=results)
        s["wall_s"] = time.perf_counter() - t0
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["rram", "pcm"])
    ap.add_argument("--dies", nargs="+", type=int, default=[12, 20, 30])
    ap.add_argument("--ages", default="0,1h,1d,30d,1y")
    args = ap.parse_args()
    ages = parse_ages(args.ages)
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            runs = [one(preset, d, ages, Path(tmp) / preset) for d in args.dies]
            keys = list(runs[0]["accuracy"])
            first = keys[0]
            flt = runs[0]["float_accuracy"]
            now = np.array([r["accuracy"][first]["none"] for r in runs])
            err = np.array([r["layer_mvm_error"] for r in runs])
            print(f"{preset}: float {flt:.2%}; on chip right after programming "
                  f"{now.mean():.2%} +- {now.std():.2%} over dies {args.dies} (loss "
                  f"{(flt - now.mean()) * 100:.2f} pt, target <= 1.5); layer MVM error "
                  + ", ".join(f"{e:.1%}" for e in err.mean(axis=0)))
            print("  loss in pt against right after programming (mean over dies; "
                  "negative = better):")
            print("  age    " + "".join(f"{m:>11}" for m in METHODS) + "   target(best)")
            for age in keys:
                losses = {m: np.mean([(r["accuracy"][first][m] - r["accuracy"][age][m]) * 100
                                      for r in runs]) for m in METHODS}
                best = min(losses[m] for m in METHODS if m != "none")
                target = TARGETS.get(preset, {}).get(age)
                verdict = "" if target is None else (
                    f"   <= {target:g}: {'met' if best <= target else 'MISSED'} ({best:.2f})")
                print(f"  {age:<6} " + "".join(f"{losses[m]:>11.2f}" for m in METHODS)
                      + verdict)
            cal = {m: int(np.mean([r["calibration_transactions"][m] for r in runs]))
                   for m in METHODS}
            passes = len(keys) * len(METHODS)
            print(f"  cost per die: calibration transactions {cal} over {len(keys)} ages; "
                  f"{runs[0]['inference_transactions'] / passes:.0f} MVM transactions and "
                  f"{runs[0]['inference_bench_time_s'] / passes * 1e3:.1f} ms bench per "
                  f"pass of {runs[0]['samples']} samples; wall "
                  f"{np.mean([r['wall_s'] for r in runs]):.1f} s per die")


if __name__ == "__main__":
    main()
