"""``calib map``: the variability map of a die, stored in its die file."""

from __future__ import annotations

import click

from calib.cli.options import (
    bench_option,
    die_option,
    emit,
    json_option,
    progress_bar,
    results_option,
    wafer_option,
)
from calib.jobs.map import MapOptions, load_map, map_die
from calib.wiring import open_bench
from protocols.variability import ReadNoiseLaw

US = 1e-6


def _lines(s: dict) -> list[str]:
    f = s["faults"]
    lo, hi = s["usable_window_s"]
    noise = s["read_noise"]
    d2d = s.get("d2d", {})
    c2c = s.get("c2c", {})

    def us(v):
        return "n/a" if v is None else f"{v / US:.3g}"

    out = [f"die {s['die']}: {s['cells']} cells, yield {s['yield']:.2%} healthy "
           f"({f['stuck_low']} stuck-low, {f['stuck_high']} stuck-high, {f['unformed']} "
           f"unformed, {f['narrow']} narrow, {f['unresponsive']} unresponsive)",
           f"usable window {us(lo)} - {us(hi)} uS (reached by 99 % of healthy cells); "
           f"read noise {ReadNoiseLaw.from_summary(noise).describe()}"]
    if "g_max" in d2d and "g_min" in d2d:
        out.append(f"g_max median {d2d['g_max']['median'] / US:.3g} uS (D2D log-std "
                   f"{d2d['g_max'].get('log_std', float('nan')):.2f}), g_min median "
                   f"{d2d['g_min']['median'] / US:.3g} uS; C2C median g_max "
                   f"{us(c2c.get('g_max_c2c_median_s'))} uS, g_min "
                   f"{us(c2c.get('g_min_c2c_median_s'))} uS")
    out += [f"{s['cycles']} cycles, {s['pulses_per_cell']:.1f} pulses per cell, "
            f"{s['transactions']} transactions; bench time {s['bench_time_s']:.2f} s, wall "
            f"{s['wall_time_s']:.2f} s",
            f"stored {s['run']} in {s['file']}"]
    if s.get("twin"):
        out.append(f"simulator twin: {s['twin']} (calib sim --chip {s['twin']})")
    return out


@click.command("map")
@die_option()
@click.option("--cycles", type=click.IntRange(1, 1000), default=None,
              help="Full SET/RESET cycles (default 5; --quick 2).")
@click.option("--quick", is_flag=True, help="A quick map: 2 cycles (C2C figures are rough).")
@click.option("--max-pulses", type=click.IntRange(1, 100000), default=None,
              help="Endurance budget, pulses per cell (default 200); refused before any "
                   "pulse if the cycles need more.")
@bench_option
@results_option
@wafer_option
@click.option("--no-form", is_flag=True, help="Skip forming even if the chip needs it.")
@click.option("--twin", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Also write a simulator chip TOML that reproduces the measured die.")
@json_option
def command(die_id, cycles, quick, max_pulses, bench_file, results, wafer, no_form, twin,
            as_json) -> None:
    """Map a die's variability (windows, thresholds, rates, faults) and store it."""
    options = MapOptions(cycles=cycles, quick=quick, max_pulses_per_cell=max_pulses,
                         form=False if no_form else None)
    with open_bench(bench_file) as b:
        params = options.params(b.datasheet)  # every option checked before any byte
        total = params.worst_case_pulses() * 2
        with progress_bar(total, f"die {die_id}", not as_json) as progress:
            summary = map_die(b, die_id, options, results=results, wafer=wafer,
                              progress=progress)
        if twin is not None:
            from calib.store import DieStore
            from calib.twin import write_twin

            vmap = load_map(DieStore(summary["file"]), summary["run"])
            summary["twin"] = str(write_twin(vmap, b.datasheet, twin))
    emit(summary, as_json, _lines)
