"""``calib``: the bench command line.

Every command runs against the embedded simulated bench unless told
otherwise, prints a short human summary, and takes ``--json``.
"""

from __future__ import annotations

import json
import sys

import click
import numpy as np

import sim_backend
from calib import __version__


class _Group(click.Group):
    """Turn the toolkit's own errors into one-line messages, not tracebacks."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (sim_backend.ChipSpecError, sim_backend.WaferSpecError,
                sim_backend.ChipInputError) as exc:
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


@main.command()
@click.option("--chip", "chip_name", default="rram", show_default=True,
              help="Chip preset (rram, pcm) or a chip TOML file.")
@click.option("--die", "die_id", default=12, show_default=True, type=int, help="Die id.")
@click.option("--seed", default=7, show_default=True, type=int, help="Wafer seed.")
@click.option("--rows", type=int, default=None, help="Override array rows.")
@click.option("--cols", type=int, default=None, help="Override array columns.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def sim(chip_name: str, die_id: int, seed: int, rows: int | None, cols: int | None,
        as_json: bool) -> None:
    """Show one die of the embedded simulated wafer: form it, read it, summarise."""
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
