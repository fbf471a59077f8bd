"""Temperature compensation of on-chip inference, 25 to 85 degC, scored on the digits test set.

Run: python benchmarks/bench_tempcal.py [--presets rram pcm] [--die 12] [--runs 5]

Per preset: form die 12 (RRAM), program the digits model with 256 reference cells,
calibrate drift compensation right after programming (``column``), sweep the chuck
(25 / 45 / 65 / 85 degC, interleaved with 25 degC), fit the temperature model, measure
the drift gains at 25 degC, then run the test set at 25, 55 (not a calibration point),
85 and 25 degC again. At each temperature: the die's true temperature (the simulator's
truth), the chuck's reading and the reference cells' estimate; the accuracy (mean of
``--runs`` passes; one test image is 0.28 pt) and layer MVM errors raw, with the
``column`` and the ``tile`` temperature correction (at the chuck's reading and at the
reference cells' estimate), each alone and stacked before the drift gains. Target:
compensated within 0.5 pt of 25 degC at 55 and 85 degC. Also printed: the sweep's
bench time, time hot, reads and MVM vectors, and the model's summary.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from calib.wiring import open_bench  # noqa: E402
from protocols.inference import (  # noqa: E402
    InferenceParams,
    ModelDataError,
    compensation,  # noqa: E402
    digits_split,
    digits_test_set,
    load_digits_model,
    program_network,
    run_network,
)
from protocols.tempcal import (  # noqa: E402
    estimate_temperature,
    fit_model,
    layer_inputs,
    settle,
    temperature_sweep,
)

NET = load_digits_model()
X, Y = digits_test_set()


def statistics_batch() -> tuple[np.ndarray, str]:
    """Inputs for the tile correction's second moments: training images, not the test set."""
    try:
        return digits_split()["x_train"][:256], "training split"
    except ModelDataError:
        return X[:256], "test set (scikit-learn missing)"


def passes(b, mapping, runs: int, **kw):
    rs = [run_network(b.array, NET, mapping, X, Y, clock=b.clock, **kw) for _ in range(runs)]
    return (100 * float(np.mean([r.accuracy for r in rs])),
            np.mean([r.layer_errors for r in rs], axis=0), rs[0])


def go_to(b, celsius: float) -> None:
    b.thermal.set_temperature(celsius)
    settle(b.thermal, b.clock, celsius, 1800.0, 5.0)
    b.clock.wait(120.0)  # the die lags the chuck


def corrected(b, mapping, model, temp_c, method, inputs, ranges_25, drift, runs):
    """(accuracy, layer errors) with the temperature correction, alone and before drift."""
    probe = model.correction(temp_c, mapping, method=method, layer_inputs=inputs)
    margin = probe.range_margin(1.5)  # the currents the targets predict, scaled
    ranges = tuple(r * margin / 1.5 for r in ranges_25)
    fix = model.correction(temp_c, mapping, method=method, layer_inputs=inputs,
                           mvm_range_a=ranges)
    params = InferenceParams(range_margin=margin)
    alone = passes(b, mapping, runs, corrections=(fix,), params=params)
    stacked = passes(b, mapping, runs, corrections=(fix, drift), params=params)
    return alone[:2], stacked[:2], margin


def row(label, acc_err, base):
    acc, err = acc_err
    return f"{label:<28} {acc:6.2f} ({acc - base:+5.2f})  layer err " + \
        ", ".join(f"{e:5.1%}" for e in err)


def temperatures(b, model, mapping):
    truth = b.simulation.chip.truth().temperature
    chuck = b.thermal.temperature()
    refs = estimate_temperature(b.array, model, mapping)
    drifted = estimate_temperature(b.array, model, mapping, drift=True)
    print(f"  die {truth:.2f} degC (truth); chuck {chuck:.2f} ({chuck - truth:+.2f}); "
          f"reference cells {refs.temperature_c:.2f} +- {refs.uncertainty_c:.2f} "
          f"({refs.temperature_c - truth:+.2f}); with a common drift fitted "
          f"{drifted.temperature_c:.2f} ({drifted.temperature_c - truth:+.2f})")
    return chuck, refs.temperature_c


def one(preset: str, die: int, runs: int) -> None:
    inputs_x, source = statistics_batch()
    inputs = layer_inputs(NET, inputs_x)
    with open_bench(chip=preset) as b:
        b.prober.goto(die)
        if b.datasheet.forming.required:
            b.array.form()
        mapping, _ = program_network(b.array, NET, b.datasheet, b.clock, reference_cells=256)
        drift_cal = compensation.calibrate(b.array, mapping, "column", clock=b.clock)
        t0 = time.perf_counter()
        sweep = temperature_sweep(b.thermal, b.clock, b.array, (25.0, 45.0, 65.0, 85.0),
                                  datasheet=b.datasheet)
        model = fit_model(sweep)
        s = sweep.summary()
        print(f"{preset} die {die}: sweep {s['bench_time_s']:.0f} s bench ({s['hot_time_s']:.0f} s "
              f"above 25 degC), {s['read_transactions']} reads ({s['cells_read']} cells x "
              f"{s['read_averages']} conversions), {s['mvm_transactions']} MVM transactions "
              f"({s['mvm_vectors']} vectors); wall {time.perf_counter() - t0:.1f} s with the fit; "
              f"drift over the sweep (ln G by level quartile) "
              f"{s['reference_drift_ln_by_level_quartile']}")
        print(f"  model: {model.summary()}")
        print(f"  tile statistics from the {source}; accuracy mean of {runs} passes")
        drift, _ = compensation.correction(b.array, mapping, drift_cal, clock=b.clock)
        base = passes(b, mapping, runs)
        base_d = passes(b, mapping, runs, corrections=(drift,))
        ranges_25 = base[2].mvm_ranges_a
        print("25 degC")
        temperatures(b, model, mapping)
        print("  " + row("raw", base[:2], base[0]))
        print("  " + row("drift gains", base_d[:2], base_d[0]))
        for temp in (55.0, 85.0):
            go_to(b, temp)
            print(f"{temp:g} degC")
            chuck, refs = temperatures(b, model, mapping)
            print("  " + row("raw", passes(b, mapping, runs)[:2], base[0]))
            print("  " + row("drift gains", passes(b, mapping, runs, corrections=(drift,))[:2],
                             base_d[0]))
            for method, label, t in (("column", "column @ chuck", chuck),
                                     ("tile", "tile @ chuck", chuck),
                                     ("tile", "tile @ reference cells", refs)):
                alone, stacked, margin = corrected(b, mapping, model, t, method, inputs,
                                                   ranges_25, drift, runs)
                print("  " + row(label, alone, base[0]) + f"   range margin {margin:.2f}")
                print("  " + row(label + " + drift", stacked, base_d[0]))
        go_to(b, 25.0)
        print("25 degC again")
        print("  " + row("raw", passes(b, mapping, runs)[:2], base[0]))
        print("  " + row("drift gains", passes(b, mapping, runs, corrections=(drift,))[:2],
                         base_d[0]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["rram", "pcm"])
    ap.add_argument("--die", type=int, default=12)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    for preset in args.presets:
        one(preset, args.die, args.runs)


if __name__ == "__main__":
    main()
