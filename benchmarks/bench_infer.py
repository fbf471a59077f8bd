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
per pass of the test set, wall time. One test sample is 0.28 pt of accuracy; each
accuracy is the mean of ``--passes`` passes of the test set (5 by default), as read
noise flips a few borderline samples from pass to pass.

Temperature (``--temps 55,85``; ``--no-temperature`` skips it), on fresh dies: ``calib
infer`` programs the model, ``calib tempcal`` (calib.jobs.tempcal.tempcal_die) sweeps the
chuck 25 / 45 / 65 / 85 degC and fits the die's model, then ``calib infer --temperature T
--compensation none,temperature`` at each T measures the test set at 25 degC (home, with
the drift gains the temperature compensation stacks) and at T, uncompensated and
compensated; just before, a plain ``calib infer`` measures it at 25 degC uncompensated.
Printed per preset, mean over the dies: accuracy at 25 degC (raw, and with the drift
gains), the drop at T uncompensated (against raw at 25) and compensated (against 25 with
the drift gains; target: compensated within 0.5 pt of 25 degC at 55 and
85 degC; each accuracy the mean of ``--passes`` passes, 5 by default), the die
temperature the reference cells gave against the simulator's truth, the tempcal run's
bench time and reads, and the bench time per inference pass.
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
from calib.jobs.tempcal import tempcal_die  # noqa: E402
from calib.wiring import open_bench  # noqa: E402
from protocols.inference import METHODS  # noqa: E402
from protocols.tempcal import settle  # noqa: E402

TARGETS = {"pcm": {"1d": 0.5, "30d": 1.0, "1y": 2.0}, "rram": {"30d": 1.0}}


def one(preset: str, die: int, ages: tuple[float, ...], results: Path, passes: int) -> dict:
    with open_bench(chip=preset) as b:
        t0 = time.perf_counter()
        s = infer_die(b, die, InferOptions(ages_s=ages, compensation=tuple(METHODS),
                                           passes=passes), results=results)
        s["wall_s"] = time.perf_counter() - t0
    return s


def heated(preset: str, die: int, temps: list[float], results: Path, passes: int) -> dict:
    """Program, calibrate the temperature model, infer at each temperature; truth beside."""
    out = {"temps": {}}
    with open_bench(chip=preset) as b:
        t0 = time.perf_counter()
        infer_die(b, die, InferOptions(), results=results)
        cal = tempcal_die(b, die, results=results)
        out["tempcal"] = cal["sweep"] | {"wall_s": time.perf_counter() - t0}
        for t in temps:
            settle(b.thermal, b.clock, 25.0, 1800.0, 5.0)  # the last job set the chuck home
            b.clock.wait(120.0)  # and the die lags it
            cold = infer_die(b, die, InferOptions(passes=passes), results=results)
            truth: list[float] = []

            def hot(p, seen=truth):  # the die's true temperature while each pass ran
                seen.append(b.simulation.chip.truth().temperature)

            s = infer_die(b, die, InferOptions(compensation=("none", "temperature"),
                                               temperature_c=t, passes=passes),
                          results=results, progress=hot)
            row = s["temperature"]["ages"][0]
            acc = s["accuracy"]["0s"]
            out["temps"][t] = {"home": row["home_accuracy"], "none": acc["none"],
                               "cold": cold["accuracy"]["0s"]["none"],
                               "temperature": acc["temperature"],
                               "die_c": row["die_c"]["temperature_c"],
                               "chuck_c": row["chuck_c"], "truth_c": float(np.mean(truth)),
                               "bench_per_pass_s": s["inference_bench_time_s"] / 2 / passes}
    return out


def temperature_table(preset: str, dies: list[int], temps: list[float], tmp: Path,
                      passes: int) -> None:
    runs = [heated(preset, d, temps, tmp / f"{preset}-heated", passes) for d in dies]
    cal = runs[0]["tempcal"]
    print(f"{preset} temperature (dies {dies}, mean of {passes} passes each; tempcal: "
          f"{cal['bench_time_s']:.0f} s bench, "
          f"{cal['hot_time_s']:.0f} s hot, {cal['read_transactions']} reads, "
          f"{cal['mvm_transactions']} MVM transactions, wall "
          f"{np.mean([r['tempcal']['wall_s'] for r in runs]):.1f} s per die with programming)")
    print("  T degC   25 degC raw / +drift   uncomp (drop)   temperature (drop)   target    "
          "die estimate - truth   chuck - truth")
    for t in temps:
        rows = [r["temps"][t] for r in runs]
        home = 100 * np.mean([r["home"] for r in rows])
        raw = 100 * np.mean([r["none"] for r in rows])
        cold = 100 * np.mean([r["cold"] for r in rows])
        comp = 100 * np.mean([r["temperature"] for r in rows])
        est = np.array([r["die_c"] - r["truth_c"] for r in rows])
        chuck = np.array([r["chuck_c"] - r["truth_c"] for r in rows])
        worst = min(100 * (r["temperature"] - r["home"]) for r in rows)
        verdict = "met" if comp >= home - 0.5 else "MISSED"
        print(f"  {t:>6g}   {cold:6.2f} / {home:6.2f}        {raw:6.2f} ({raw - cold:+5.2f})   "
              f"{comp:6.2f} ({comp - home:+5.2f}) worst die {worst:+5.2f}   >= -0.5 {verdict}   "
              f"{est.mean():+5.2f} (max {np.abs(est).max():.2f})   {chuck.mean():+5.2f}")
    print(f"  bench per inference pass at T: "
          f"{runs[0]['temps'][temps[-1]]['bench_per_pass_s'] * 1e3:.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["rram", "pcm"])
    ap.add_argument("--dies", nargs="+", type=int, default=[12, 20, 30])
    ap.add_argument("--ages", default="0,1h,1d,30d,1y")
    ap.add_argument("--temps", default="55,85")
    ap.add_argument("--no-temperature", action="store_true")
    ap.add_argument("--passes", type=int, default=5,
                    help="test-set passes per age, method and temperature (their mean)")
    ap.add_argument("--no-drift", action="store_true")
    args = ap.parse_args()
    ages = parse_ages(args.ages)
    temps = [float(t) for t in args.temps.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            if not args.no_temperature:
                temperature_table(preset, args.dies, temps, Path(tmp), args.passes)
            if args.no_drift:
                continue
            runs = [one(preset, d, ages, Path(tmp) / preset, args.passes) for d in args.dies]
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
            passes = len(keys) * len(METHODS) * args.passes
            print(f"  cost per die: calibration transactions {cal} over {len(keys)} ages; "
                  f"{runs[0]['inference_transactions'] / passes:.0f} MVM transactions and "
                  f"{runs[0]['inference_bench_time_s'] / passes * 1e3:.1f} ms bench per "
                  f"pass of {runs[0]['samples']} samples; wall "
                  f"{np.mean([r['wall_s'] for r in runs]):.1f} s per die")
            prog = [r["programming"] for r in runs]
            print(f"  programming (write-verify, weights and {prog[0]['reference_cells']} "
                  f"reference cells): {np.mean([p['pulses'] / p['cells'] for p in prog]):.2f} "
                  f"pulses per cell, {np.mean([p['in_band_fraction'] for p in prog]):.2%} in "
                  f"band, {np.mean([p['bench_time_s'] for p in prog]):.2f} s bench; "
                  "calibration and compensation pulse nothing")


if __name__ == "__main__":
    main()
