"""Offline-analysis benchmark: the wafer table of many die files, serial, cached and on Dask.

Run: python benchmarks/bench_analyze.py [--dies 10000] [--cells 32] [--dir DIR] [--workers N]

Generates ``--dies`` synthetic die files with the real DieStore API (each a
``variability`` run and a ``write_verify`` run with per-cell arrays of
``--cells`` x ``--cells`` and summaries shaped like the real jobs'), on a round
wafer with a radial gradient (g_max median falls 15 % to the edge, the stuck
fraction rises 1 % -> 4 %, write-verify needs more pulses at the edge), and a
wafer index with positions and bins; generation runs in parallel
(multiprocessing) and is timed apart. ``--dir`` keeps the files for the next run
(a folder already holding them is reused, not regenerated).

Then times ``build_table``: serial with every file read (``rebuild``), the
cached re-run (no die file read), a re-run after touching 1 % of the files,
and on a local Dask cluster (2 workers, 1 thread each, on 127.0.0.1; the
cluster's start is timed apart); checks the tables are equal; prints the
per-file cost of the fast read path against opening each file with DieStore.
Target (issue 11): 10,000 files <= 60 s on 2 cores, serial and Dask. The die
files were just written, so they are in the page cache: a cold disk adds its
read time (the seal check reads every byte of every file).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from calib.store import DieStore, die_path  # noqa: E402

US = 1e-6
WAFER = "bench-w1"
Q = ("q01", "q05", "q25", "q75", "q95", "q99")


def layout(n: int) -> list[tuple[int, int, int, float]]:
    """(die id, x, y, normalised radius) of ``n`` dies on a round wafer, raster order."""
    side = math.ceil(math.sqrt(4 * n / math.pi)) + 2
    while True:
        c = (side - 1) / 2
        cells = [(x, y, math.hypot(x - c, y - c)) for y in range(side) for x in range(side)]
        inside = sorted(cells, key=lambda t: t[2])[:n]
        if len(inside) == n:
            break
        side += 2
    far = max(t[2] for t in inside) or 1.0
    placed = sorted(inside, key=lambda t: (t[1], t[0]))
    return [(i + 1, x, y, r / far) for i, (x, y, r) in enumerate(placed)]


def _stats(v: np.ndarray) -> dict:
    q = np.percentile(v, [1, 5, 25, 75, 95, 99])
    return {"median": float(np.median(v)), "std": float(v.std()),
            **{k: float(x) for k, x in zip(Q, q, strict=True)},
            "log_std": float(np.log(np.abs(v) + 1e-30).std())}


def die_data(die: int, radius: float, cells: int, seed: int = 7):
    """Arrays and summaries of one die: a variability map and a write-verify run."""
    rng = np.random.default_rng([seed, die])
    shape = (cells, cells)
    n = cells * cells
    g_max = 80 * US * (1 - 0.15 * radius ** 2) * rng.lognormal(0, 0.28, shape)
    g_min = 0.5 * US * rng.lognormal(0, 0.7, shape)
    stuck_share = 0.01 * (1 + 3 * radius ** 2)
    fault = np.zeros(shape, np.uint8)
    bad = rng.random(shape) < stuck_share
    fault[bad] = rng.choice([1, 2, 3, 5], size=int(bad.sum()), p=[0.5, 0.3, 0.1, 0.1])
    fault[(~bad) & (rng.random(shape) < 0.003)] = 4
    set_thr = rng.normal(0.95, 0.12, shape)
    reset_thr = rng.normal(1.6, 0.15, shape)
    set_rate = rng.lognormal(np.log(0.095), 0.37, shape)
    reset_rate = rng.lognormal(np.log(0.059), 0.35, shape)
    c2c_max, c2c_min = g_max * rng.lognormal(np.log(0.01), 0.5, shape), g_min * 0.8
    counts = {name: int((fault == k).sum()) for k, name in enumerate(
        ("healthy", "stuck_low", "stuck_high", "unformed", "narrow", "unresponsive"))}
    healthy = fault == 0
    noise_b = 0.01 * (1 + 0.3 * radius) * rng.lognormal(0, 0.05)
    variability = {
        "arrays": {"g_min": g_min, "g_max": g_max, "g_min_c2c": c2c_min, "g_max_c2c": c2c_max,
                   "set_threshold": set_thr, "reset_threshold": reset_thr,
                   "set_rate": set_rate, "reset_rate": reset_rate, "fault": fault,
                   "read_noise_points": np.column_stack([
                       np.geomspace(1 * US, 100 * US, 12),
                       2e-8 + noise_b * np.geomspace(1 * US, 100 * US, 12),
                       np.full(12, n / 12)])},
        "summary": {
            "die": die, "cells": n, "yield": counts["healthy"] / n, "faults": counts,
            "usable_window_s": [float(np.percentile(g_min[healthy], 99)),
                                float(np.percentile(g_max[healthy], 1))],
            "read_noise": {"a_s": 2e-8, "b": noise_b, "c": 1.0},
            "d2d": {name: _stats(v[healthy]) for name, v in (
                ("g_min", g_min), ("g_max", g_max), ("set_threshold", set_thr),
                ("reset_threshold", reset_thr), ("set_rate", set_rate),
                ("reset_rate", reset_rate))},
            "c2c": {"g_max_c2c_median_s": float(np.median(c2c_max)),
                    "g_min_c2c_median_s": float(np.median(c2c_min))},
            "cycles": 5, "pulses_per_cell": 137.0, "pulses_per_cell_max": 150,
            "transactions": 250, "bench_time_s": 1.9, "wall_time_s": 0.4,
            "final_state": "reset", "slow_cells": 0}}
    pulses = rng.poisson(6 + 3 * radius ** 2, shape)
    target = rng.uniform(5 * US, 60 * US, shape)
    converged = (rng.random(shape) > 0.004 + 0.02 * radius ** 2) & (fault == 0) | (fault == 4)
    final = np.where(converged, target + rng.normal(0, 0.3 * US, shape), g_max)
    write_verify = {
        "arrays": {"target": target, "final": final, "pulses": pulses, "converged": converged,
                   "unresponsive": fault == 5, "unreachable": ~converged & (fault != 5),
                   "exhausted": np.zeros(shape, bool)},
        "summary": {
            "die": die, "cells": n, "in_band_fraction": float(converged.mean()),
            "unresponsive_cells": int((fault == 5).sum()),
            "unreachable_cells": int((~converged & (fault != 5)).sum()),
            "exhausted_cells": 0, "pulses_mean": float(pulses.mean()),
            "pulses_median": float(np.median(pulses)),
            "pulses_p99": float(np.percentile(pulses, 99)), "iterations": 14,
            "transactions": 40, "bench_time_s": 0.8, "relax_wait_time_s": 0.1,
            "wall_time_s": 0.2, "artifacts": ["response_model", "read_noise"]}}
    return variability, write_verify


def write_die(args: tuple) -> tuple[int, str, float, float]:
    """Write one die file through DieStore; (die, bin name, in-band, stuck fraction)."""
    results, die, radius, cells = args
    store = DieStore(die_path(results, WAFER, die), WAFER, die)
    ids = {"array": "AIMC,SIM-ARRAY,0,1.0"}
    variability, write_verify = die_data(die, radius, cells)
    for job, part, params in (("variability", variability, {"cycles": 5}),
                              ("write_verify", write_verify, {"tolerance": 1e-6})):
        run = store.start_run(job, params, ids, 25.0, "rram", die=die)
        store.finish_run(run, part["arrays"], {**part["summary"], "run": run,
                                               "file": str(store.path)})
    s = variability["summary"]
    stuck = sum(s["faults"][k] for k in ("stuck_low", "stuck_high", "unformed",
                                         "unresponsive")) / s["cells"]
    in_band = write_verify["summary"]["in_band_fraction"]
    name = "stuck" if stuck >= 0.03 else "good" if in_band >= 0.97 else "program"
    return die, name, in_band, stuck


def generate(results: Path, n: int, cells: int, workers: int) -> tuple[float, int]:
    """Write the die files and the wafer index; (seconds, bytes on disk)."""
    import json

    (results / WAFER).mkdir(parents=True, exist_ok=True)
    dies = layout(n)
    t0 = time.perf_counter()
    jobs = [(str(results), die, r, cells) for die, _, _, r in dies]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        bins = {d: name for d, name, _, _ in pool.imap_unordered(write_die, jobs, chunksize=50)}
    codes = {"good": 1, "program": 2, "stuck": 3}
    index = {"format": "aimc-calib wafer index", "version": 1, "wafer": WAFER,
             "dies": {str(d): {"x": x, "y": y, "state": "done", "bin": codes[bins[d]],
                               "bin_name": bins[d]} for d, x, y, _ in dies}}
    (results / WAFER / "wafer-index.json").write_text(json.dumps(index))
    seconds = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in (results / WAFER).glob("die_*.h5"))
    return seconds, size


def per_file_costs(folder: Path, sample: int = 300) -> tuple[float, float]:
    """ms per file: the fast read path vs DieStore (constructor check + runs())."""
    from calib.store.summaries import read_summaries

    files = sorted(folder.glob("die_*.h5"))[:sample]
    t0 = time.perf_counter()
    for p in files:
        read_summaries(p)
    fast = (time.perf_counter() - t0) / len(files) * 1e3
    t0 = time.perf_counter()
    for p in files:
        store = DieStore(p)
        for run in store.runs():
            run.attrs.get("summary_json")
    slow = (time.perf_counter() - t0) / len(files) * 1e3
    return fast, slow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dies", type=int, default=10000)
    parser.add_argument("--cells", type=int, default=32, help="array side (cells x cells)")
    parser.add_argument("--dir", default=None, help="keep the results folder here (reused)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2,
                        help="processes generating the files")
    args = parser.parse_args()

    import pandas as pd

    from calib.analysis.wafer_table import build_table, dask_client

    tmp = None if args.dir else tempfile.TemporaryDirectory()
    results = Path(args.dir or tmp.name)
    folder = results / WAFER
    have = len(list(folder.glob("die_*.h5"))) if folder.exists() else 0
    if have == args.dies and (folder / "wafer-index.json").exists():
        print(f"reusing {have} die files in {folder}")
    else:
        seconds, size = generate(results, args.dies, args.cells, args.workers)
        print(f"generated {args.dies} die files ({args.cells}x{args.cells} cells, "
              f"{size / args.dies / 1e3:.0f} kB each, {size / 1e9:.2f} GB) with DieStore in "
              f"{seconds:.1f} s ({args.workers} processes)")
    print(f"{'step':34} {'files read':>10} {'seconds':>8} {'files/s':>8}")

    def line(step: str, read: int, seconds: float) -> None:
        rate = f"{read / seconds:8.0f}" if read else f"{'-':>8}"
        print(f"{step:34} {read:>10} {seconds:>8.2f} {rate}")
        sys.stdout.flush()

    t0 = time.perf_counter()
    serial = build_table(folder, rebuild=True)
    line("serial, every file (rebuild)", serial.wafers[0].read, time.perf_counter() - t0)
    t0 = time.perf_counter()
    cached = build_table(folder)
    line("cached re-run", cached.wafers[0].read, time.perf_counter() - t0)
    touched = sorted(folder.glob("die_*.h5"))[::100]
    for p in touched:
        os.utime(p)
    t0 = time.perf_counter()
    again = build_table(folder)
    line(f"after touching {len(touched)} files", again.wafers[0].read, time.perf_counter() - t0)
    t0 = time.perf_counter()
    client, close = dask_client("local")
    start = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        distributed = build_table(folder, client, cache=False)
        line("dask local, 2 workers, no cache", distributed.wafers[0].read,
             time.perf_counter() - t0)
    finally:
        close()
    print(f"{'dask cluster start (apart)':34} {'':>10} {start:>8.2f}")
    for other in (cached, again, distributed):
        pd.testing.assert_frame_equal(serial.frame, other.frame)
    fast, slow = per_file_costs(folder)
    frame = serial.frame
    errors = int(frame["error"].notna().sum())
    print(f"tables equal (serial, cached, touched, dask): yes; {len(frame)} rows, "
          f"{len(frame.columns)} columns, {errors} errors")
    print(f"per file: fast read path {fast:.2f} ms, DieStore(path).runs() {slow:.2f} ms")
    inner = frame["radius"] < 0.3
    outer = frame["radius"] > 0.8
    g = frame["variability.d2d.g_max.median"]
    print(f"radial gradient recovered: g_max median {g[inner].median() / US:.1f} uS (r < 0.3) -> "
          f"{g[outer].median() / US:.1f} uS (r > 0.8); stuck fraction "
          f"{frame.loc[inner, 'variability.stuck_fraction'].median():.2%} -> "
          f"{frame.loc[outer, 'variability.stuck_fraction'].median():.2%}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
