"""Write-verify benchmark, scored against the simulator's ground truth.

Run: python benchmarks/bench_program.py [--presets rram pcm] [--sizes 64 256 1024]

For each preset and array size, programs die 12 with uniform random targets
over the chip window, twice on identical fresh dies: with the toolkit's loop
and with the oracle (the same loop given each cell's true response parameters
and noise-free verify reads; see benchmarks/oracle.py). Prints, over
responsive cells (not stuck, target within the cell's true bounds): truth
in-band fraction right after programming and after 1 h of virtual time, RMS
error, pulses per cell (mean, median, p99), the mean-pulse ratio to the
oracle, transactions per iteration, bench time per cell (total, and without
the relaxation waits) and wall time.
Issue 4 targets (rram, +-1 uS): >= 99.5 % in band; pulses <= 1.3x oracle;
<= 3 transactions per iteration; <= 2 ms bench time per cell; 1024x1024 in <= 60 s wall.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import protocols  # noqa: E402
from benchmarks.oracle import OracleResponse, TruthArray  # noqa: E402
from calib import open_bench  # noqa: E402
from instruments.datasheet import load_datasheet  # noqa: E402
from protocols.profiles import write_verify_params  # noqa: E402

US = 1e-6


def one_run(preset: str, size: int, oracle: bool, seed: int = 7, die: int = 12) -> dict:
    with open_bench(chip=preset, rows=size, cols=size, seed=seed) as bench:
        bench.prober.goto(die)
        sheet = getattr(bench, "datasheet", None) or load_datasheet(preset).with_geometry(
            size, size)
        if sheet.forming.required:
            bench.array.form()
        w = sheet.window
        target = np.random.default_rng(size).uniform(w.g_min, w.g_max, bench.array.shape)
        params = write_verify_params(sheet)
        array, response = bench.array, None
        if oracle:
            lim = bench.array.limits
            array = TruthArray(bench.array, bench.simulation)
            response = OracleResponse(bench.simulation, lim.max_program_voltage,
                                      lim.max_pulse_width)
        result = protocols.write_verify(array, target, clock=bench.clock, params=params,
                                        response=response)
        truth = bench.simulation.chip.truth()
        ok = ~truth.stuck & (target >= truth.g_min) & (target <= truth.g_max)
        err = truth.g - target
        in_band = float((np.abs(err) <= params.tolerance)[ok].mean())
        rms = float(np.sqrt(np.mean(err[ok] ** 2)))
        bench.clock.wait(3600.0)
        later = bench.simulation.chip.truth()
        in_band_1h = float((np.abs(later.g - target) <= params.tolerance)[ok].mean())
        pulses = result.pulses[ok]
        return {
            "in_band": in_band, "in_band_1h": in_band_1h, "rms_us": rms / US,
            "p_mean": float(pulses.mean()), "p_median": float(np.median(pulses)),
            "p99": float(np.percentile(pulses, 99)),
            "tx_per_iter": result.transactions / max(1, result.iterations),
            "bench_ms_cell": 1e3 * result.bench_time_s / result.cells,
            "active_ms_cell": 1e3 * (result.bench_time_s - result.relax_wait_time_s) / result.cells,
            "wall_s": result.wall_time_s, "iterations": result.iterations,
            "unresponsive": int(result.unresponsive.sum()), "stuck": int(truth.stuck.sum()),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["rram", "pcm"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024])
    args = parser.parse_args()
    head = (f"{'preset':6} {'size':>9} {'loop':6} {'in-band':>8} {'1 h':>7} {'RMS uS':>7} "
            f"{'pulses mean/med/p99':>20} {'ratio':>6} {'tx/it':>6} {'ms/cell':>8} "
            f"{'active':>7} {'wall s':>7} {'iter':>5} {'unresp/stuck':>13}")
    print(head)
    for preset in args.presets:
        for size in args.sizes:
            oracle = one_run(preset, size, oracle=True)
            ours = one_run(preset, size, oracle=False)
            for name, r in (("ours", ours), ("oracle", oracle)):
                ratio = ours["p_mean"] / oracle["p_mean"] if name == "ours" else 1.0
                print(f"{preset:6} {size:>4}x{size:<4} {name:6} {r['in_band']:>8.2%} "
                      f"{r['in_band_1h']:>7.1%} {r['rms_us']:>7.3f} "
                      f"{r['p_mean']:>8.2f}/{r['p_median']:>4.0f}/{r['p99']:>4.0f} "
                      f"{ratio:>6.2f} {r['tx_per_iter']:>6.2f} {r['bench_ms_cell']:>8.3f} "
                      f"{r['active_ms_cell']:>7.3f} {r['wall_s']:>7.2f} {r['iterations']:>5d} "
                      f"{r['unresponsive']:>6d}/{r['stuck']:<6d}")
            sys.stdout.flush()
    print("in-band and pulses over responsive cells, truth-scored; ms/cell = bench time "
          "(virtual clock) per cell, 'active' without the relaxation waits")


if __name__ == "__main__":
    main()
