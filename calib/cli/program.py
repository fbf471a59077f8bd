"""``calib program``: write-verify a die and record the run in its die file."""

from __future__ import annotations

import math

import click
import numpy as np

from calib.cli.options import (
    bench_option,
    die_option,
    emit,
    json_option,
    progress_bar,
    results_option,
    wafer_option,
)
from calib.jobs import PATTERNS, ProgramOptions, make_targets, program_die
from calib.jobs.program import die_variability_map, parse_hold
from calib.jobs.targets import PLACEMENTS
from calib.wiring import open_bench


def _lines(s: dict) -> list[str]:
    out = [f"die {s['die']}: {s['cells']} cells, {s['in_band_fraction']:.2%} in "
           f"+-{s['tolerance'] * 1e6:g} uS ({s['unresponsive_cells']} unresponsive, "
           f"{s['unreachable_cells']} unreachable)",
           f"pulses per cell mean {s['pulses_mean']:.2f}, p99 {s['pulses_p99']:.0f}; "
           f"{s['iterations']} iterations, {s['transactions']} transactions; bench time "
           f"{s['bench_time_s']:.2f} s, wall {s['wall_time_s']:.2f} s",
           f"stored {s['run']} in {s['file']}"]
    if s.get("hold_s"):
        out.insert(2, f"hold {s['hold_s']:g} s: {s['in_band_now_fraction']:.2%} in band now, "
                      f"{s['in_band_hold_predicted'] or 0:.2%} predicted at the hold time "
                      f"({s['hold_rounds']} wait / re-read rounds, "
                      f"{s['relax_wait_time_s']:.0f} s of waiting)")
    if "placement" in s:
        p = s["placement"]
        out.insert(2, f"fault-aware placement from {p['map_run']}: {p['faulty_cells_used']} "
                      f"faulty cells used, expected weight error "
                      f"{p['expected_weight_error']:.2%} "
                      f"(naive {p['expected_weight_error_naive']:.2%})")
    return out


@click.command("program")
@die_option()
@click.option("--weights", type=click.Path(dir_okay=False), default=None,
              help="Weights .npy (inputs x outputs), mapped to differential pairs.")
@click.option("--target", type=click.Path(dir_okay=False), default=None,
              help="Target conductances .npy in siemens (NaN = leave alone).")
@click.option("--pattern", type=click.Choice(PATTERNS), default=None, help="A test pattern.")
@click.option("--placement", type=click.Choice(PLACEMENTS), default="naive", show_default=True,
              help="Where the weights go: naive (top-left, pairs interleaved) or fault-aware "
                   "(around the faults of the die's newest `calib map`).")
@click.option("--tolerance", type=float, default=1e-6, show_default=True,
              help="Band half-width, siemens.")
@click.option("--max-pulses", type=click.IntRange(1, 10000), default=None,
              help="Pulse budget per cell.")
@click.option("--relax-wait", type=click.FloatRange(0, 86400), default=None,
              help="Fixed seconds to let cells relax before each touch-up (0: no "
                   "touch-up; default: as long as the phase before took, at least 3 s; PCM 5).")
@click.option("--hold", default=None, metavar="DURATION",
              help="Aim for the band this long after programming ends (e.g. 1h, 30min, 1d; "
                   "0: now): re-reads after waits learn the die's relaxation, and cells "
                   "predicted to relax out are programmed again.")
@click.option("--read-averages", type=click.IntRange(1, 1024), default=None,
              help="Conversions the instrument averages per verify read (default 8; 1 for "
                   "boards without read averaging).")
@bench_option
@results_option
@wafer_option
@click.option("--no-form", is_flag=True, help="Skip forming even if the chip needs it.")
@json_option
def command(die_id, weights, target, pattern, placement, tolerance, max_pulses, relax_wait,
            hold, read_averages, bench_file, results, wafer, no_form, as_json) -> None:
    """Program a die by write-verify and store the run (default: the example layer)."""
    if relax_wait is not None and not math.isfinite(relax_wait):
        raise click.BadParameter("must be a finite number of seconds", param_hint="--relax-wait")
    hold_s = None if hold is None else parse_hold(hold)
    options = ProgramOptions(tolerance=tolerance, max_pulses=max_pulses, relax_wait_s=relax_wait,
                             read_averages=read_averages, form=False if no_form else None,
                             hold_s=hold_s)
    with open_bench(bench_file) as b:
        sheet = b.datasheet
        options.params(sheet)  # every option checked before any instrument is opened
        options.hold()
        w = sheet.window
        vmap = None
        if placement == "fault-aware" and target is None and pattern is None:
            vmap = die_variability_map(b, die_id, results=results, wafer=wafer)
        targets = make_targets(sheet.shape, w.g_min, w.g_max, weights=weights, target=target,
                               pattern=pattern, seed=die_id, placement=placement, vmap=vmap)
        total = int(np.isfinite(targets.values).sum())
        with progress_bar(total, f"die {die_id}", not as_json) as progress:
            summary = program_die(b, die_id, targets, options, results=results, wafer=wafer,
                                  progress=progress)
    emit({**summary, "tolerance": tolerance}, as_json, _lines)
    if summary["unresponsive_cells"] > summary["cells"] / 2:
        click.echo("note: most cells never moved: a dead die, cells not formed (--no-form?), "
                   "or no probe contact", err=True)
