"""``calib report``: plots and a text summary of a die file's runs."""

from __future__ import annotations

from pathlib import Path

import click

from calib.cli.options import emit, json_option


@click.command("report")
@click.argument("file", type=click.Path())
@click.option("--out", "out_dir", default=None, help="Output folder (default: beside FILE).")
@json_option
def command(file, out_dir, as_json) -> None:
    """PNG plots and a text summary of a die file's programming runs."""
    from calib.analysis.report import write_report

    if not file.strip():
        raise click.BadParameter("give a die file, not an empty name", param_hint="FILE")
    if out_dir is not None and (not out_dir.strip() or
                                (Path(out_dir).exists() and not Path(out_dir).is_dir())):
        raise click.BadParameter(f"{out_dir!r} is not a folder", param_hint="--out")
    out = write_report(file, out_dir)
    emit({k: v for k, v in out.items() if k != "text"} if as_json else out, as_json,
         lambda o: [*o["text"], *(f"plot: {p}" for p in o["plots"]), f"summary: {o['summary']}"])
