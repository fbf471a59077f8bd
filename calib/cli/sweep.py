"""``calib sweep RECIPE``: a whole wafer, die by die, resumable after any stop."""

from __future__ import annotations

import sys

import click

from calib.cli.options import bench_option, emit, json_option, results_option, wafer_option
from calib.sweep import SweepProgress, load_recipe, run
from calib.wiring import open_bench


def _lines(s: dict) -> list[str]:
    bins = ", ".join(f"bin {b}: {n}" for b, n in s["bins"].items()) or "none"
    out = [f"wafer {s['wafer']}, recipe {s['recipe']}: {s['done']} of {s['dies']} dies done "
           f"({s['visited']} this run, {s['pending']} not done), {s['passed']} passing"
           + (f" (yield {s['yield']:.1%})" if s["yield"] is not None else ""),
           f"bins: {bins}",
           f"bench time {s['bench_time_s']:.1f} s, wall {s['wall_time_s']:.1f} s; index and "
           f"summary in {s['folder']}"]
    for key in ("stdf_skipped", "bin_map_skipped"):
        if key in s["outputs"]:
            out.append(f"note: {s['outputs'][key]}")
    if s["stopped"]:
        out.append(f"stopped: {s['stopped']}")
    return out


@click.command("sweep")
@click.argument("recipe", metavar="RECIPE")
@bench_option
@results_option
@wafer_option
@click.option("--redo", is_flag=True,
              help="Re-run the recipe's dies even if the wafer index has them done.")
@json_option
def command(recipe, bench_file, results, wafer, redo, as_json) -> None:
    """Sweep a wafer with RECIPE (a recipe TOML, or a bundled one: quick-map,
    map-and-program, user-step). Resumes at the first die not done."""
    plan = load_recipe(recipe)  # checked whole before any instrument is opened
    tty = sys.stderr.isatty()

    def progress(p: SweepProgress) -> None:
        if p.event in ("done", "paused", "retry") and (not as_json or tty):
            click.echo(p.line(), err=as_json)

    with open_bench(bench_file) as b:
        result = run(b, plan, results=results, wafer=wafer, redo=redo, progress=progress)
    summary = result.summary()
    if as_json:  # the wafer summary table too: one row per die, every step's figures
        summary["rows"] = result.rows
    emit(summary, as_json, _lines)
    if result.stopped:
        sys.exit(1)
