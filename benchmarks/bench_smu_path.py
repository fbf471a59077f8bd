"""Programming through an SMU and a switch matrix, cell by cell, against the array controller.

Run: python benchmarks/bench_smu_path.py [--size 8]

Labs without an array controller program small arrays through an SMU (a
Keithley 2450, a 2636B channel or a B2902A channel) and a Keithley 707B
matrix: every cell is a relay operation and a few SMU points, so it is slow on
a real bench too. This programs die 12 (uniform random targets, +-1 uS,
forming included) through each SMU with ``calib.jobs.program_die`` on the
simulated station, and through the reference array controller, and prints
truth-scored in-band (responsive cells: not stuck, target within the cell's
true bounds), pulses per cell, transactions, bench time (the latency model's
virtual time: what the run would take on a bench) and wall time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from calib.jobs import ProgramOptions, Targets, program_die  # noqa: E402
from calib.wiring.bench import Bench  # noqa: E402
from calib.wiring.config import config_from_dict, default_config  # noqa: E402

SMUS = {"keithley2450": {}, "keithley2600b": {"channel": "a"},
        "keysight-b2900": {"channel": 1}}


def smu_config(smu: str, size: int):
    return config_from_dict({
        "chip": {"datasheet": "rram"},
        "simulation": {"rows": size, "cols": size},
        "roles": {"array": {"driver": "smu-switch-array", "word_lines": size,
                            "bit_lines": size},
                  "smu": {"driver": smu, **SMUS[smu]}, "switch": {"driver": "keithley707b"},
                  "prober": {"driver": "sentio"}, "thermal": {"driver": "sentio"},
                  "clock": {"driver": "virtual-clock"}}})


def one(config, size: int, results: Path) -> dict:
    bench = Bench(config)
    try:
        w = bench.datasheet.window
        target = np.random.default_rng(size).uniform(w.g_min, w.g_max, (size, size))
        t0 = time.perf_counter()
        s = program_die(bench, 12, Targets(target, "benchmark:uniform"), ProgramOptions(),
                        results=results)
        wall = time.perf_counter() - t0
        truth = bench.simulation.chip.truth()
    finally:
        bench.close()
    ok = ~truth.stuck & (target >= truth.g_min) & (target <= truth.g_max)
    return {"in_band": float((np.abs(truth.g - target) <= 1e-6)[ok].mean()),
            "pulses": s["pulses_mean"], "tx": s["transactions"], "bench_s": s["bench_time_s"],
            "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8)
    args = parser.parse_args()
    n = args.size
    rows = {"reference-array": one(default_config(rows=n, cols=n), n,
                                   Path(tempfile.mkdtemp()))}
    for smu in SMUS:
        rows[f"{smu}+707b"] = one(smu_config(smu, n), n, Path(tempfile.mkdtemp()))
    ref = rows["reference-array"]
    print(f"{'array path':22} {'size':>5} {'in-band':>8} {'pulses':>7} {'tx':>7} "
          f"{'bench s':>9} {'x ref':>7} {'wall s':>7}")
    for name, r in rows.items():
        print(f"{name:22} {n:>2}x{n:<2} {r['in_band']:>8.2%} {r['pulses']:>7.2f} {r['tx']:>7d} "
              f"{r['bench_s']:>9.2f} {r['bench_s'] / ref['bench_s']:>7.1f} {r['wall_s']:>7.2f}")
    print("in-band over responsive cells of die 12, truth-scored, +-1 uS; bench s = the "
          "latency model's time on a real bench (relays, SMU points, transfers)")


if __name__ == "__main__":
    main()
