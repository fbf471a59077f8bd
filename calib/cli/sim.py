"""``calib sim``: look at a die of the simulated wafer; ``calib sim serve``: serve the bench.

With the bench wiring, the only module of ``calib`` that imports ``sim_backend``.
"""

from __future__ import annotations

import json
import sys
import threading
from contextlib import contextmanager

import click
import numpy as np

import sim_backend
from calib.cli.options import json_option
from sim_backend.server import ServerError
from sim_backend.state import StateError

SIM_ERRORS = (sim_backend.ChipSpecError, sim_backend.WaferSpecError, sim_backend.ChipInputError,
              ServerError, StateError)
chip_option = click.option("--chip", "chip_name", default="rram", show_default=True,
                           help="Chip preset (rram, pcm) or a simulator chip TOML file.")
seed_option = click.option("--seed", default=7, show_default=True,
                           type=click.IntRange(0, 2**32 - 1), help="Wafer seed.")


@contextmanager
def _one_line():
    try:
        yield
    except SIM_ERRORS as exc:
        raise click.ClickException(str(exc)) from None


def _ascii_map(g: np.ndarray, lo: float, hi: float, width: int = 32) -> list[str]:
    """A coarse picture of a conductance map, one character per block."""
    shades = " .:-=+*#%@"
    rows, cols = g.shape
    step = max(1, int(np.ceil(max(rows, cols) / width)))
    out = []
    for r in range(0, rows, step):
        line = ""
        for c in range(0, cols, step):
            level = (np.nanmean(g[r:r + step, c:c + step]) - lo) / (hi - lo)
            line += shades[int(np.clip(level, 0, 0.999) * len(shades))]
        out.append(line)
    return out


def _summary(chip_name, die_id, seed, rows, cols) -> tuple[dict, np.ndarray]:
    spec = sim_backend.load_chip(chip_name, rows=rows, cols=cols)
    wafer = sim_backend.SimWafer(spec, seed=seed)
    info = wafer.info(die_id)
    chip = wafer.die(die_id)
    formed = chip.form()
    g = chip.read()
    w = spec.window
    summary = {
        "chip": spec.name, "technology": spec.technology, "rows": spec.chip.rows,
        "cols": spec.chip.cols, "wafer": wafer.spec.name, "wafer_seed": seed, "die": info.id,
        "die_x": info.x, "die_y": info.y, "die_radius": round(info.radius, 4),
        "dead": info.dead, "dies_on_wafer": len(wafer.dies), "cells_formed": formed,
        "g_mean_us": float(np.mean(g) * 1e6), "g_median_us": float(np.median(g) * 1e6),
        "g_std_us": float(np.std(g) * 1e6),
        "read_in_window_fraction": float(np.mean((g >= w.g_min) & (g <= w.g_max))),
        "window_us": [w.g_min * 1e6, w.g_max * 1e6], "virtual_time_s": chip.clock.now,
    }
    return summary, g


@click.group("sim", invoke_without_command=True)
@chip_option
@click.option("--die", "die_id", default=12, show_default=True, type=click.IntRange(min=0),
              help="Die id.")
@seed_option
@click.option("--rows", type=click.IntRange(1, 8192), default=None, help="Override array rows.")
@click.option("--cols", type=click.IntRange(1, 8192), default=None,
              help="Override array columns.")
@json_option
@click.pass_context
def command(ctx, chip_name, die_id, seed, rows, cols, as_json) -> None:
    """Show one die of the embedded simulated wafer: form it, read it, summarise.

    Subcommand ``serve`` runs the simulated instruments as loopback TCP servers.
    """
    if ctx.invoked_subcommand is not None:
        return
    with _one_line():
        s, g = _summary(chip_name, die_id, seed, rows, cols)
    if as_json:
        click.echo(json.dumps(s))
        return
    lo, hi = s["window_us"]
    click.echo(f"{s['chip']} ({s['technology']}) {s['rows']}x{s['cols']}, wafer {s['wafer']} "
               f"seed {seed}: die {s['die']} at column {s['die_x']}, row {s['die_y']} "
               f"(r = {s['die_radius']:.2f}){' DEAD' if s['dead'] else ''}")
    click.echo(f"formed {s['cells_formed']} cells; read: mean {s['g_mean_us']:.2f} uS, "
               f"median {s['g_median_us']:.2f} uS, std {s['g_std_us']:.2f} uS, "
               f"{s['read_in_window_fraction']:.1%} inside the {lo:g}-{hi:g} uS window")
    click.echo(f"conductance map ({lo:g} uS ' ' ... '@' {hi:g} uS):")
    for line in _ascii_map(g, lo * 1e-6, hi * 1e-6):
        click.echo("  " + line)


@command.command("serve")
@chip_option
@seed_option
@click.option("--port-base", type=click.IntRange(1024, 65535 - 16), default=None,
              help="First port (instruments take consecutive ports); default: free ports.")
@click.option("--json", "as_json", is_flag=True,
              help="First line: one JSON object mapping instrument to resource string.")
@click.option("--state", "state_dir", type=click.Path(file_okay=False), default=None,
              metavar="DIR", help="Remember the wafer in DIR across runs (made if need be; "
                                  "held by this server alone). Default: forget at exit.")
def serve(chip_name: str, seed: int, port_base: int | None, as_json: bool,
          state_dir: str | None) -> None:
    """Serve the simulated bench on 127.0.0.1 until interrupted (Ctrl-C, SIGTERM)."""
    from sim_backend.bench import SimBench

    with _one_line():
        bench = SimBench(chip_name, seed=seed, state=state_dir)
        ports = None
        if port_base is not None:
            ports = {role: port_base + k for k, role in enumerate(bench.emulators)}
        try:
            servers = bench.serve(ports=ports)
        except BaseException:
            bench.close()
            raise
    resources = servers.resources
    if as_json:
        click.echo(json.dumps(resources))
    else:
        for role, resource in resources.items():
            click.echo(f"{role} {resource}")
    sys.stdout.flush()
    from calib.jobs.run import signals_interrupt

    try:
        with signals_interrupt():
            threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        servers.stop()
        with _one_line():
            bench.close()  # the wafer's changed dies saved, its state folder let go of
