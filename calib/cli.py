"""``calib``: the bench command line.

Every command runs against the embedded simulated bench unless told
otherwise, prints a short human summary, and takes ``--json``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading

import click
import numpy as np

import sim_backend
from calib import __version__
from calib.bench import open_bench
from calib.bench_config import BenchConfigError
from calib.programming import PATTERNS, ProgramInputError
from calib.store import DieStoreError
from instruments import InstrumentError
from protocols.weights import WeightMappingError
from protocols.write_verify import WriteVerifyError
from sim_backend.server import ServerError

USER_ERRORS = (sim_backend.ChipSpecError, sim_backend.WaferSpecError,
               sim_backend.ChipInputError, BenchConfigError, InstrumentError, ServerError,
               ProgramInputError, DieStoreError, WriteVerifyError, WeightMappingError)


class _Group(click.Group):
    """Turn the toolkit's own errors into one-line messages, not tracebacks."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="calib")
def main() -> None:
    """Calibrate and train analog in-memory-computing test chips."""


def _ascii_map(g: np.ndarray, lo: float, hi: float, width: int = 32) -> list[str]:
    """A coarse picture of a conductance map, one character per block."""
    shades = " .:-=+*#%@"
    rows, cols = g.shape
    step = max(1, int(np.ceil(max(rows, cols) / width)))
    out = []
    for r in range(0, rows, step):
        line = ""
        for c in range(0, cols, step):
            block = g[r:r + step, c:c + step]
            level = (np.nanmean(block) - lo) / (hi - lo)
            line += shades[int(np.clip(level, 0, 0.999) * len(shades))]
        out.append(line)
    return out


@main.group(cls=_Group, invoke_without_command=True)
@click.option("--chip", "chip_name", default="rram", show_default=True,
              help="Chip preset (rram, pcm) or a chip TOML file.")
@click.option("--die", "die_id", default=12, show_default=True, type=int, help="Die id.")
@click.option("--seed", default=7, show_default=True, type=int, help="Wafer seed.")
@click.option("--rows", type=int, default=None, help="Override array rows.")
@click.option("--cols", type=int, default=None, help="Override array columns.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def sim(ctx, chip_name: str, die_id: int, seed: int, rows: int | None, cols: int | None,
        as_json: bool) -> None:
    """Show one die of the embedded simulated wafer: form it, read it, summarise.

    Subcommand ``serve`` runs the simulated instruments as loopback TCP servers.
    """
    if ctx.invoked_subcommand is not None:
        return
    spec = sim_backend.load_chip(chip_name, rows=rows, cols=cols)
    wafer = sim_backend.SimWafer(spec, seed=seed)
    info = wafer.info(die_id)
    chip = wafer.die(die_id)
    formed = chip.form()
    g = chip.read()
    w = spec.window
    in_window = float(np.mean((g >= w.g_min) & (g <= w.g_max)))
    summary = {
        "chip": spec.name, "technology": spec.technology, "rows": spec.chip.rows,
        "cols": spec.chip.cols, "wafer": wafer.spec.name, "wafer_seed": seed, "die": info.id,
        "die_x": info.x, "die_y": info.y, "die_radius": round(info.radius, 4),
        "dead": info.dead, "dies_on_wafer": len(wafer.dies), "cells_formed": formed,
        "g_mean_us": float(np.mean(g) * 1e6), "g_median_us": float(np.median(g) * 1e6),
        "g_std_us": float(np.std(g) * 1e6), "read_in_window_fraction": in_window,
        "window_us": [w.g_min * 1e6, w.g_max * 1e6], "virtual_time_s": chip.clock.now,
    }
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(f"{spec.name} ({spec.technology}) {spec.chip.rows}x{spec.chip.cols}, "
               f"wafer {wafer.spec.name} seed {seed}: die {info.id} at column {info.x}, "
               f"row {info.y} (r = {info.radius:.2f}){' DEAD' if info.dead else ''}")
    click.echo(f"formed {formed} cells; read: mean {summary['g_mean_us']:.2f} uS, "
               f"median {summary['g_median_us']:.2f} uS, std {summary['g_std_us']:.2f} uS, "
               f"{in_window:.1%} inside the {w.g_min * 1e6:g}-{w.g_max * 1e6:g} uS window")
    click.echo(f"conductance map ({w.g_min * 1e6:g} uS ' ' ... '@' {w.g_max * 1e6:g} uS):")
    for line in _ascii_map(g, w.g_min, w.g_max):
        click.echo("  " + line)


@sim.command("serve")
@click.option("--chip", "chip_name", default="rram", show_default=True,
              help="Chip preset or chip TOML file.")
@click.option("--seed", default=7, show_default=True, type=int, help="Wafer seed.")
@click.option("--port-base", type=int, default=None,
              help="First port (roles take consecutive ports); default: free ports.")
@click.option("--json", "as_json", is_flag=True,
              help="First line: one JSON object mapping role to resource string.")
def sim_serve(chip_name: str, seed: int, port_base: int | None, as_json: bool) -> None:
    """Serve the simulated bench on 127.0.0.1 until interrupted (Ctrl-C)."""
    from sim_backend.bench import SimBench

    bench = SimBench(chip_name, seed=seed)
    ports = None
    if port_base is not None:
        ports = {role: port_base + k for k, role in enumerate(bench.emulators)}
    servers = bench.serve(ports=ports)
    resources = servers.resources
    if as_json:
        click.echo(json.dumps(resources))
    else:
        for role, resource in resources.items():
            click.echo(f"{role} {resource}")
    sys.stdout.flush()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        servers.stop()


@main.command()
@click.option("--die", "die_id", type=int, required=True, help="Die id on the wafer map.")
@click.option("--weights", type=click.Path(dir_okay=False), default=None,
              help="Weights .npy (inputs x outputs), mapped to differential pairs.")
@click.option("--target", type=click.Path(dir_okay=False), default=None,
              help="Target conductances .npy in siemens (NaN = leave alone).")
@click.option("--pattern", type=click.Choice(PATTERNS), default=None, help="A test pattern.")
@click.option("--tolerance", type=float, default=1e-6, show_default=True,
              help="Band half-width, siemens.")
@click.option("--max-pulses", type=int, default=None, help="Pulse budget per cell.")
@click.option("--relax-wait", type=float, default=None,
              help="Fixed seconds to let cells relax before each touch-up (0: no "
                   "touch-up; default: as long as the phase before took, at least 3 s; PCM 5).")
@click.option("--read-averages", type=int, default=None,
              help="Conversions the instrument averages per verify read (default 8; 1 for "
                   "boards without read averaging).")
@click.option("--bench", "bench_file", default=None,
              help="Bench config TOML (default: the embedded simulated bench).")
@click.option("--results", default="calib-results", show_default=True,
              help="Results directory (<results>/<wafer>/die_<id>.h5).")
@click.option("--wafer", default=None, help="Wafer name for the results folder.")
@click.option("--no-form", is_flag=True, help="Skip forming even if the chip needs it.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def program(die_id, weights, target, pattern, tolerance, max_pulses, relax_wait, read_averages,
            bench_file, results, wafer, no_form, as_json) -> None:
    """Program a die by write-verify and store the run (default: the example layer)."""
    from calib.programming import make_targets, program_die

    if not 0 < tolerance < 1e-3:
        raise click.ClickException(f"--tolerance {tolerance!r} S is not a plausible band "
                                   "(siemens: 1 uS is 1e-6)")
    with open_bench(bench_file) as b:
        w = b.chip_spec.window
        targets = make_targets(tuple(b.array.shape), w.g_min, w.g_max, weights=weights,
                               target=target, pattern=pattern, seed=die_id)
        total = int(np.isfinite(targets.values).sum())
        show_bar = not as_json and sys.stderr.isatty()
        bar = click.progressbar(length=total, label=f"die {die_id}", file=sys.stderr,
                                show_pos=True) if show_bar else None
        done = {"n": 0}

        def progress(p) -> None:
            if bar is not None:
                bar.update(max(0, p.settled - done["n"]))
                done["n"] = max(done["n"], p.settled)

        try:
            if bar is not None:
                bar.__enter__()
            summary = program_die(b, die_id, targets, tolerance=tolerance,
                                  max_pulses=max_pulses, relax_wait_s=relax_wait,
                                  read_averages=read_averages, results=results, wafer=wafer,
                                  form=False if no_form else None, progress=progress)
        finally:
            if bar is not None:
                bar.__exit__(None, None, None)
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(f"die {summary['die']}: {summary['cells']} cells, "
               f"{summary['in_band_fraction']:.2%} in +-{tolerance * 1e6:g} uS "
               f"({summary['unresponsive_cells']} unresponsive, "
               f"{summary['unreachable_cells']} unreachable)")
    click.echo(f"pulses per cell mean {summary['pulses_mean']:.2f}, p99 "
               f"{summary['pulses_p99']:.0f}; {summary['iterations']} iterations, "
               f"{summary['transactions']} transactions; bench time "
               f"{summary['bench_time_s']:.2f} s, wall {summary['wall_time_s']:.2f} s")
    click.echo(f"stored {summary['run']} in {summary['file']}")
    if summary["unresponsive_cells"] > summary["cells"] / 2:
        click.echo("note: most cells never moved: a dead die, cells not formed (--no-form?), "
                   "or no probe contact", err=True)


@main.command()
@click.argument("file", type=click.Path())
@click.option("--out", "out_dir", default=None, help="Output folder (default: beside FILE).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def report(file, out_dir, as_json) -> None:
    """PNG plots and a text summary of a die file's programming runs."""
    from calib.report import write_report

    out = write_report(file, out_dir)
    if as_json:
        click.echo(json.dumps({k: v for k, v in out.items() if k != "text"}))
        return
    for line in out["text"]:
        click.echo(line)
    for png in out["plots"]:
        click.echo(f"plot: {png}")
    click.echo(f"summary: {out['summary']}")


@main.group(cls=_Group)
def bench() -> None:
    """Bench wiring: check that every instrument answers."""


@bench.command("check")
@click.option("--bench", "bench_file", default=None,
              help="Bench config TOML (default: the embedded simulated bench).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_check(bench_file: str | None, as_json: bool) -> None:
    """Open every instrument, print its identity and status."""
    with open_bench(bench_file) as b:
        report = {"bench": b.config.source, "chip": b.chip_spec.name,
                  "simulated": b.simulation is not None, "roles": {}}
        failed = False
        for role, driver in b.roles().items():
            entry = {"driver": None, "identity": None, "status": "absent"}
            if driver is not None:
                entry["driver"] = type(driver).__name__
                try:
                    entry["identity"] = driver.identity()
                    check = getattr(driver, "check", None)
                    if check is not None:
                        check()
                    entry["status"] = "ok"
                except InstrumentError as exc:
                    entry["status"] = f"error: {exc}"
                    failed = True
            report["roles"][role] = entry
        report["limits"] = dataclasses.asdict(b.limits)
    if as_json:
        click.echo(json.dumps(report))
    else:
        click.echo(f"bench {report['bench']} (chip {report['chip']}"
                   f"{', simulated' if report['simulated'] else ''})")
        for role, entry in report["roles"].items():
            click.echo(f"  {role:8} {entry['status']:6} {entry['driver'] or '-':26} "
                       f"{entry['identity'] or ''}")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
