"""Options and output shared by every command: one place, so they read the same everywhere."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import click

from calib.store import DieStoreError, check_wafer


def _not_blank(what: str):
    """A callback refusing an empty or blank value (``--results ""`` from an unset variable)."""
    def check(ctx, param, value):  # noqa: ARG001 - click's callback signature
        if value is not None and not str(value).strip():
            raise click.BadParameter(f"give {what}, not an empty name")
        return value
    return check


def _wafer(ctx, param, value):  # noqa: ARG001 - click's callback signature
    """A wafer name is a plain folder name inside the results folder."""
    if value is None:
        return None
    try:
        return check_wafer(value)
    except DieStoreError as exc:
        raise click.BadParameter(str(exc)) from None


bench_option = click.option(
    "--bench", "bench_file", default=None, metavar="FILE", callback=_not_blank("a bench config"),
    help="Bench config TOML (default: the embedded simulated bench).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
results_option = click.option(
    "--results", default="calib-results", show_default=True, metavar="DIR",
    callback=_not_blank("a results folder"),
    help="Results folder (<results>/<wafer>/die_<id>.h5).")
wafer_option = click.option("--wafer", default=None, callback=_wafer,
                            help="Wafer name for the results folder (default: the bench's).")


def die_option(required: bool = True, default: int | None = None):
    # with an explicit default=None, click (8.5) skips the required check: pass it only if set
    extra = {} if default is None else {"default": default}
    return click.option("--die", "die_id", type=click.IntRange(min=0), required=required,
                        help="Die id on the wafer map.", **extra)


def emit(summary: dict[str, Any], as_json: bool, lines: Callable[[dict], list[str]]) -> None:
    """The command's result: one JSON object, or a few human lines."""
    if as_json:
        click.echo(json.dumps(summary))
        return
    for line in lines(summary):
        click.echo(line)


@contextmanager
def progress_bar(total: int, label: str, enabled: bool):
    """A progress callback for protocols: a bar on a terminal's stderr, else nothing."""
    show = enabled and sys.stderr.isatty()
    if not show:
        yield lambda p: None
        return
    done = {"n": 0}
    with click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True) as bar:
        def update(p) -> None:
            settled = getattr(p, "settled", 0)
            bar.update(max(0, settled - done["n"]))
            done["n"] = max(done["n"], settled)

        yield update
