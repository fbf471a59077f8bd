"""Fault-aware placement and the simulator twin, scored against the simulator's ground truth.

Run: python benchmarks/bench_placement.py [--twin-seeds 5] [--skip-measured]

1. Placement. A 48 x 24 layer (seeded normal weights) on a 64 x 64 rram die
   with 5 % stuck cells (a chip TOML ``base = "rram"``, ``[faults]
   stuck_fraction = 0.05``, on a wafer without gradients so the die has exactly
   that share), programmed by write-verify through ``calib.jobs.program_die``
   with the naive placement and with the fault-aware one, on identical fresh
   dies. Scored: ||W_eff - W|| / ||W|| with W_eff from the TRUE conductances
   (``bench.simulation.chip.truth().g``). The fault-aware rows use a
   VariabilityMap built from the simulator's truth (bounds, stuck masks, rates:
   an upper bound on what a map can tell) and, when
   ``protocols.variability.map.map_variability`` exists, a map measured on the die.
   Issue 10 target: fault-aware <= 0.5 x naive.
2. Twin. Die 12 of the default wafer (rram preset) is formed and mapped (truth,
   and measured if available); ``calib.twin.write_twin`` writes its twin; the
   same write-verify run (uniform random targets over the window) on die 12 and
   on the twin (several seeds, a wafer without gradients). Target: pulses per
   cell and unresponsive count within 10 % of die 12's.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import protocols  # noqa: E402
from calib.jobs import ProgramOptions, make_targets, program_die  # noqa: E402
from calib.twin import write_twin  # noqa: E402
from calib.wiring.bench import Bench  # noqa: E402
from calib.wiring.config import default_config  # noqa: E402
from protocols.placement import weights_from_placement  # noqa: E402
from protocols.profiles import write_verify_params  # noqa: E402
from protocols.variability.result import Fault, ReadNoiseLaw, VariabilityMap  # noqa: E402
from protocols.weights import weights_from_conductances  # noqa: E402

US = 1e-6
FLAT_WAFER = """[wafer]
name = "flat"
diameter = "200 mm"
die_width = "10 mm"
die_height = "10 mm"
edge_exclusion = "5 mm"
[gradient]
g_max_edge_drop = 0.0
stuck_edge_gain = 0.0
[defects]
dead_fraction = 0.0
"""


def flat_chip(preset: str, name: str, overrides: str, tmp: Path) -> tuple[str, str]:
    """(chip, wafer) files of a benchmark case: ``preset`` with the TOML ``overrides``
    (``base = preset``), on a wafer without gradients, so the die has exactly what the
    case sets (the default wafer's edge would multiply a stuck share)."""
    chip = tmp / f"{preset}-{name}.toml"
    chip.write_text(f'base = "{preset}"\n\n{overrides}')
    wafer = tmp / "flat.toml"
    wafer.write_text(FLAT_WAFER)
    return str(chip), str(wafer)


def open_sim(chip: str, wafer: str = "default", seed: int = 7) -> Bench:
    cfg = default_config("rram", seed=seed)
    sim = dataclasses.replace(cfg.simulation, chip=chip, wafer=wafer)
    return Bench(dataclasses.replace(cfg, simulation=sim))


def truth_map(bench) -> VariabilityMap:
    """What a perfect map of the contacted die would say (bounds, faults, rates)."""
    chip = bench.simulation.chip
    t, spec, w = chip.truth(), chip.spec, bench.datasheet.window
    fault = np.full(t.g.shape, int(Fault.HEALTHY), np.uint8)
    fault[(t.g_max < w.g_max) | (t.g_min > w.g_min)] = Fault.NARROW
    fault[~t.formed] = Fault.UNFORMED
    fault[t.stuck] = Fault.STUCK_LOW
    fault[t.stuck_high] = Fault.STUCK_HIGH
    fixed = t.stuck | ~t.formed
    g_min, g_max = np.where(fixed, t.g, t.g_min), np.where(fixed, t.g, t.g_max)
    nan = np.full(t.g.shape, np.nan)
    ok = fault == Fault.HEALTHY
    usable = (float(np.quantile(t.g_min[ok], 0.99)), float(np.quantile(t.g_max[ok], 0.01)))
    return VariabilityMap(
        g_min=g_min, g_max=g_max, g_min_c2c=nan, g_max_c2c=nan, set_threshold=nan,
        reset_threshold=nan, set_rate=1 - np.exp(-t.set_rate),
        reset_rate=1 - np.exp(-t.reset_rate), fault=fault,
        read_noise=ReadNoiseLaw(spec.read_noise.absolute, spec.read_noise.relative),
        usable_window=usable, pulses_per_cell=0.0, transactions=0, bench_time_s=0.0,
        wall_time_s=0.0, cycles=0, extra={"run": "truth"})


def measured_map(bench):
    """A map measured by the mapping protocol, if it exists yet (None otherwise)."""
    try:
        mod = importlib.import_module("protocols.variability.map")
    except ImportError:
        return None
    fn = getattr(mod, "map_variability", None)
    if fn is None:
        return None
    from protocols.profiles import variability_params

    vmap = fn(bench.array, clock=bench.clock, params=variability_params(bench.datasheet))
    return dataclasses.replace(vmap, extra={**vmap.extra, "run": "measured"})


# -- 1. placement -----------------------------------------------------------------------------

def program_layer(chip: str, wafer: str, w_file: Path, results: Path, placement: str,
                  source: str, die: int = 12) -> dict:
    with open_sim(chip, wafer) as bench:
        bench.prober.goto(die)
        bench.array.form()
        sheet = bench.datasheet
        vmap = None
        if placement == "fault-aware":
            vmap = truth_map(bench) if source == "truth" else measured_map(bench)
            if vmap is None:
                return {}
        targets = make_targets(sheet.shape, sheet.window.g_min, sheet.window.g_max,
                               weights=w_file, placement=placement, vmap=vmap)
        summary = program_die(bench, die, targets, ProgramOptions(form=False),
                              results=results / f"{placement}-{source}")
        g = bench.simulation.chip.truth().g
        w = np.load(w_file)
        if targets.placement is not None:
            w_eff = weights_from_placement(g, targets.placement)
            expected = targets.placement.expected_error
        else:
            w_eff = weights_from_conductances(g, targets.mapping)
            expected = float("nan")
        return {"error": float(np.linalg.norm(w_eff - w) / np.linalg.norm(w)),
                "expected": expected, "in_band": summary["in_band_fraction"],
                "pulses": summary["pulses_mean"],
                "unresponsive": summary["unresponsive_cells"],
                "faulty_used": (targets.placement.faulty_cells_used if targets.placement
                                else None), "wall_s": summary["wall_time_s"]}


def bench_placement(tmp: Path, skip_measured: bool) -> None:
    chip = tmp / "rram-stuck5.toml"
    chip.write_text('base = "rram"\n[faults]\nstuck_fraction = 0.05\n')
    wafer = tmp / "flat.toml"
    wafer.write_text(FLAT_WAFER)
    w = np.random.default_rng(10).normal(size=(48, 24))
    w_file = tmp / "layer48x24.npy"
    np.save(w_file, w)
    with open_sim(str(chip), str(wafer)) as bench:
        bench.prober.goto(12)
        stuck = bench.simulation.chip.truth().stuck
    print(f"\n## Placement: 48 x 24 layer (normal, seed 10) on a 64 x 64 rram die, "
          f"{stuck.mean():.2%} stuck (truth), write-verify +-1 uS; W_eff from true conductances")
    rows = [("naive", "-", program_layer(str(chip), str(wafer), w_file, tmp, "naive", "-"))]
    rows.append(("fault-aware", "truth map (upper bound)",
                 program_layer(str(chip), str(wafer), w_file, tmp, "fault-aware", "truth")))
    if not skip_measured:
        r = program_layer(str(chip), str(wafer), w_file, tmp, "fault-aware", "measured")
        rows.append(("fault-aware", "measured map" if r else
                     "measured map: protocols.variability.map.map_variability not available", r))
    print(f"| {'placement':<11} | {'map':<24} | {'rel. error':>10} | {'expected':>8} | "
          f"{'x naive':>7} | {'faulty used':>11} | {'in band':>7} | {'pulses':>6} | "
          f"{'unresp.':>7} | {'wall s':>6} |")
    print("|" + "|".join("-" * n for n in (13, 26, 12, 10, 9, 13, 9, 8, 9, 8)) + "|")
    naive = rows[0][2]["error"]
    for name, source, r in rows:
        if not r:
            print(f"| {name:<11} | {source} |")
            continue
        fu = "-" if r["faulty_used"] is None else str(r["faulty_used"])
        ex = "-" if not np.isfinite(r["expected"]) else f"{r['expected']:.4f}"
        print(f"| {name:<11} | {source:<24} | {r['error']:>10.4f} | {ex:>8} | "
              f"{r['error'] / naive:>7.3f} | {fu:>11} | {r['in_band']:>7.2%} | "
              f"{r['pulses']:>6.2f} | {r['unresponsive']:>7d} | {r['wall_s']:>6.2f} |")
    best = rows[1][2]["error"] / naive
    print(f"target fault-aware <= 0.5 x naive (truth map): {best:.3f} x -> "
          f"{'met' if best <= 0.5 else 'NOT met'}")


# -- 2. twin ----------------------------------------------------------------------------------

def write_verify_run(bench, die: int, seed: int = 3) -> dict:
    bench.prober.goto(die)
    sheet = bench.datasheet
    bench.array.form()
    target = np.random.default_rng(seed).uniform(sheet.window.g_min, sheet.window.g_max,
                                                 sheet.shape)
    result = protocols.write_verify(bench.array, target, clock=bench.clock,
                                    params=write_verify_params(sheet))
    s = result.summary()
    return {"pulses": s["pulses_mean"], "unresponsive": s["unresponsive_cells"],
            "in_band": s["in_band_fraction"],
            "stuck": int(bench.simulation.chip.truth().stuck.sum())}


def bench_twin(tmp: Path, seeds: int, skip_measured: bool) -> None:
    wafer = tmp / "flat.toml"
    wafer.write_text(FLAT_WAFER)
    with open_sim("rram") as bench:
        bench.prober.goto(12)
        bench.array.form()
        maps = [("truth map", truth_map(bench))]
        if not skip_measured:
            m = measured_map(bench)
            maps.append(("measured map", m))
    with open_sim("rram") as bench:
        die = write_verify_run(bench, 12)
    print("\n## Twin: write-verify (uniform random targets 1-40 uS, +-1 uS) on die 12 of the "
          "default wafer (rram) and on its twin (flat wafer, die 12, bench seeds 100..)")
    print(f"| {'run':<32} | {'pulses/cell':>11} | {'x die':>6} | {'unresponsive':>12} | "
          f"{'x die':>6} | {'in band':>7} | {'stuck (truth)':>13} |")
    print("|" + "|".join("-" * n for n in (34, 13, 8, 14, 8, 9, 15)) + "|")
    print(f"| {'die 12 itself':<32} | {die['pulses']:>11.3f} | {1:>6.3f} | "
          f"{die['unresponsive']:>12d} | {1:>6.3f} | {die['in_band']:>7.2%} | "
          f"{die['stuck']:>13d} |")
    for label, vmap in maps:
        if vmap is None:
            print(f"| twin from {label:<22} | protocols.variability.map.map_variability not "
                  "available |")
            continue
        path = write_twin(vmap, bench.datasheet, tmp / f"twin-{label.split()[0]}.toml")
        runs = []
        for k in range(seeds):
            with open_sim(str(path), str(wafer), seed=100 + k) as twin:
                runs.append(write_verify_run(twin, 12))
        for k, r in enumerate(runs):
            name = f"twin ({label}), seed {100 + k}"
            print(f"| {name:<32} | {r['pulses']:>11.3f} | "
                  f"{r['pulses'] / die['pulses']:>6.3f} | {r['unresponsive']:>12d} | "
                  f"{r['unresponsive'] / max(die['unresponsive'], 1):>6.3f} | "
                  f"{r['in_band']:>7.2%} | {r['stuck']:>13d} |")
        p = float(np.mean([r["pulses"] for r in runs]))
        u = float(np.mean([r["unresponsive"] for r in runs]))
        rp, ru = p / die["pulses"], u / max(die["unresponsive"], 1)
        name = f"twin ({label}), mean of {seeds}"
        print(f"| {name:<32} | {p:>11.3f} | {rp:>6.3f} | {u:>12.1f} | "
              f"{ru:>6.3f} | {np.mean([r['in_band'] for r in runs]):>7.2%} | "
              f"{np.mean([r['stuck'] for r in runs]):>13.1f} |")
        ok = abs(rp - 1) <= 0.1 and abs(ru - 1) <= 0.1
        print(f"target within 10 % ({label}, mean over seeds): pulses {rp - 1:+.1%}, "
              f"unresponsive {ru - 1:+.1%} -> {'met' if ok else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--twin-seeds", type=int, default=5)
    parser.add_argument("--skip-measured", action="store_true",
                        help="only the truth-derived maps")
    args = parser.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        bench_placement(Path(tmp), args.skip_measured)
        bench_twin(Path(tmp), args.twin_seeds, args.skip_measured)
    print(f"\nwall time {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
