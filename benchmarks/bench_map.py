"""Variability-map benchmark, scored against the simulator's ground truth.

Run: python benchmarks/bench_map.py [--presets rram pcm] [--sizes 64 256] [--big]

For each preset and size, maps three dies with the default (thorough) map:
die 12 of the default wafer (edge region: the wafer raises its stuck share 2.5x,
so ~2.5 %), die 121 (the wafer centre: the preset's 1 %), and die 121 of a chip
TOML ``base = "<preset>"`` with ``[faults] stuck_fraction = 0.05`` (5 %). Scored
with ``SimBench.chip.truth()``, never the protocol's own reads:

* faults: precision and recall of "stuck" (fault stuck-low, stuck-high, unformed or
  unresponsive vs truth.stuck), of stuck-low (stuck-low or unformed: the
  simulator's stuck cells are never formed) vs stuck & ~stuck_high, and of stuck-high
  vs truth.stuck_high;
* windows, over cells that move (healthy or narrow) and are not truly stuck: median
  |g_max / truth.g_max - 1| and median |g_min - truth.g_min| (uS);
* D2D: log-std of g_max and of the rates (as -ln(1 - share), i.e. per unit drive,
  the truth's units) over the same cells, as measured / truth; Pearson
  correlation of those rates with truth.set_rate / reset_rate (PCM RESET is a
  melt-quench whatever the rate: n/a);
* read noise: the simulator's, measured empirically here, not from the spec: after
  the map, every cell is pulsed through the simulator API to a random state and,
  1 ms later (about the age the map's own noise reads see: PCM's 1/f noise grows
  with the time since programming), read 16 times (averages 1, ADC on); per
  log-bin of truth.g, the rms spread against the map's law a + b G; the largest
  |relative deviation| over the bins inside the window (rram 1-40 uS, pcm
  0.5-25 uS) is printed;
* cost: transactions, mean and max pulses per cell, bench time (virtual clock),
  wall time of the map.
Targets (issue 10): precision/recall >= 0.99; g_max <= 3 %; g_min <= 0.1 uS (rram);
D2D within 10 %; rate correlation >= 0.9; read noise within 15 %; <= 300
transactions on 64x64, about independent of size; <= 200 pulses per cell;
1024x1024 in <= 120 s wall. ``--big`` adds rram 1024x1024 (die 12 only).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from calib.wiring.bench import Bench  # noqa: E402
from calib.wiring.config import default_config  # noqa: E402
from protocols.profiles import variability_params  # noqa: E402
from protocols.variability import Fault, map_variability  # noqa: E402

US = 1e-6
AGE_S = 1e-3  # s from programming to the repeat reads
WINDOW_NOISE = {"rram": (1e-6, 40e-6), "pcm": (0.5e-6, 25e-6)}


def _pr(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    tp = np.count_nonzero(pred & truth)
    precision = tp / max(np.count_nonzero(pred), 1) if np.any(pred) else float("nan")
    recall = tp / max(np.count_nonzero(truth), 1) if np.any(truth) else float("nan")
    return precision, recall


def _bench(preset: str, chip: str, size: int, seed: int = 7) -> Bench:
    config = default_config(preset, seed=seed, rows=size, cols=size)
    config = dataclasses.replace(config, simulation=dataclasses.replace(config.simulation,
                                                                        chip=chip))
    return Bench(config)


def sim_read_noise(chip, law, window) -> tuple[float, float]:
    """Largest and median |law / empirical - 1| over log-bins of G inside ``window``."""
    tr = chip.truth()
    rng = np.random.default_rng(1)
    r = chip.spec.response
    volts = rng.uniform(r.set_threshold, 2 * r.set_reference, chip.shape)
    chip.pulse(-np.full(chip.shape, chip.spec.limits.max_program_voltage),
               chip.spec.limits.max_pulse_width)
    chip.pulse(volts, r.reference_width)
    chip.advance(AGE_S)  # read at about the age the map's noise reads see (PCM 1/f grows)
    g = chip.truth().g
    reads = np.array([chip.read(averages=1) for _ in range(16)])
    sigma = reads.std(0, ddof=1)
    ok = ~tr.stuck
    edges = np.geomspace(window[0], window[1], 11)
    devs = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = ok & (g >= lo) & (g < hi)
        if np.count_nonzero(sel) < 20:
            continue
        empirical = np.sqrt(np.mean(sigma[sel] ** 2))
        model = law.sigma(np.array([np.sqrt(lo * hi)]))[0]
        devs.append(abs(model / empirical - 1))
    return (max(devs), float(np.median(devs))) if devs else (float("nan"), float("nan"))


def one(preset: str, size: int, die: int, chip: str, label: str) -> dict:
    with _bench(preset, chip, size) as bench:
        bench.prober.goto(die)
        if bench.datasheet.forming.required:
            bench.array.form()
        params = variability_params(bench.datasheet)
        t0 = time.perf_counter()
        m = map_variability(bench.array, clock=bench.clock, params=params)
        wall = time.perf_counter() - t0
        sim = bench.simulation.chip
        tr = sim.truth()
        f = m.fault
        stuck_pred = np.isin(f, [Fault.STUCK_LOW, Fault.STUCK_HIGH, Fault.UNFORMED,
                                 Fault.UNRESPONSIVE])
        low_pred = np.isin(f, [Fault.STUCK_LOW, Fault.UNFORMED])
        out = {"preset": preset, "size": size, "case": label,
               "stuck_share": float(tr.stuck.mean())}
        out["stuck"] = _pr(stuck_pred, tr.stuck)
        out["low"] = _pr(low_pred, tr.stuck & ~tr.stuck_high)
        out["high"] = _pr(f == Fault.STUCK_HIGH, tr.stuck_high)
        sel = np.isin(f, [Fault.HEALTHY, Fault.NARROW]) & ~tr.stuck
        out["gmax_rel"] = float(np.median(np.abs(m.g_max[sel] / tr.g_max[sel] - 1)))
        out["gmin_abs_us"] = float(np.median(np.abs(m.g_min[sel] - tr.g_min[sel]))) / US
        out["d2d_gmax"] = float(np.log(m.g_max[sel]).std() / np.log(tr.g_max[sel]).std())
        for name, truth in (("set", tr.set_rate), ("reset", tr.reset_rate)):
            share = getattr(m, f"{name}_rate")
            rate = -np.log1p(-np.clip(share, 0, 1 - 1e-9))
            ok = sel & np.isfinite(rate) & (rate > 0)
            if preset == "pcm" and name == "reset":
                out[f"{name}_corr"] = out[f"d2d_{name}"] = float("nan")
                continue
            out[f"{name}_corr"] = float(np.corrcoef(rate[ok], truth[ok])[0, 1])
            out[f"d2d_{name}"] = float(np.log(rate[ok]).std() / np.log(truth[ok]).std())
        out["noise_max"], out["noise_med"] = sim_read_noise(sim, m.read_noise,
                                                            WINDOW_NOISE[preset])
        out.update(tx=m.transactions, ppc=m.pulses_per_cell,
                   ppc_max=m.extra["pulses_per_cell_max"], bench_s=m.bench_time_s, wall_s=wall)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["rram", "pcm"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--big", action="store_true", help="add rram 1024x1024 (die 12)")
    args = parser.parse_args()
    head = (f"{'preset':6} {'size':>9} {'case':9} {'stuck':>6} {'stuck P/R':>11} "
            f"{'low P/R':>11} {'high P/R':>11} {'gmax':>6} {'gmin uS':>7} {'D2D gmax':>8} "
            f"{'set r/D2D':>10} {'reset r/D2D':>11} {'noise max/med':>13} {'tx':>4} "
            f"{'pulses':>9} {'bench s':>7} {'wall s':>6}")
    print(head)
    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        for preset in args.presets:
            five = Path(tmp) / f"{preset}-stuck5.toml"
            five.write_text(f'base = "{preset}"\n\n[faults]\nstuck_fraction = 0.05\n')
            for size in args.sizes:
                runs += [(preset, size, 12, preset, "die12"), (preset, size, 121, preset, "die121"),
                         (preset, size, 121, str(five), "5%-121")]
        if args.big:
            runs.append(("rram", 1024, 12, "rram", "die12"))
        for preset, size, die, chip, label in runs:
            r = one(preset, size, die, chip, label)

            def pr(t):
                return f"{t[0]:.3f}/{t[1]:.3f}"

            print(f"{preset:6} {size:>4}x{size:<4} {label:9} {r['stuck_share']:>6.2%} "
                  f"{pr(r['stuck']):>11} {pr(r['low']):>11} {pr(r['high']):>11} "
                  f"{r['gmax_rel']:>6.2%} {r['gmin_abs_us']:>7.3f} {r['d2d_gmax']:>8.3f} "
                  f"{r['set_corr']:>4.2f}/{r['d2d_set']:<5.2f} "
                  f"{r['reset_corr']:>5.2f}/{r['d2d_reset']:<5.2f} "
                  f"{r['noise_max']:>6.1%}/{r['noise_med']:<6.1%} {r['tx']:>4d} "
                  f"{r['ppc']:>5.1f}/{r['ppc_max']:<3d} {r['bench_s']:>7.2f} "
                  f"{r['wall_s']:>6.1f}")
            sys.stdout.flush()
    print("P/R: precision/recall vs truth; gmax: median relative error; gmin: median absolute "
          "error; D2D: measured/truth log-std; r: Pearson with truth rates; noise: |law/"
          "simulator - 1| over G bins in the window (simulator measured by repeat reads); "
          "pulses: mean/max per cell")


if __name__ == "__main__":
    main()
