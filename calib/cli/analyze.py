"""``calib analyze``: one table of one or many wafers' die files, yields, maps, a report."""

from __future__ import annotations

import dataclasses
import sys
from contextlib import contextmanager
from pathlib import Path

import click

from calib.cli.options import emit, json_option

SHOWN_ERRORS = 5  # per wafer, in the human summary (--json lists them all)


@contextmanager
def _progress(enabled: bool):
    """A ``progress(done, total)`` for reading die files: a bar on a terminal, else nothing."""
    if not (enabled and sys.stderr.isatty()):
        yield None
        return
    state: dict = {"bar": None, "done": 0}

    def update(done: int, total: int) -> None:
        if state["bar"] is None:
            state["bar"] = click.progressbar(length=total, label="die files", file=sys.stderr,
                                             show_pos=True)
            state["bar"].__enter__()
        state["bar"].update(done - state["done"])
        state["done"] = done

    try:
        yield update
    finally:
        if state["bar"] is not None:
            state["bar"].__exit__(None, None, None)


def _value(v, f) -> str:
    return "n/a" if v is None else f"{v / f.scale:.3g} {f.unit}".rstrip()


def _lines(s: dict) -> list[str]:
    from calib.analysis.wafer_report import MAIN_FIGURES

    out = []
    for w in s["wafers"]:
        head = (f"wafer {w['wafer']}: {w['dies']} dies, {w['files']} die files ({w['read']} "
                f"read, {w['reused']} from the cache"
                + (f", {w['removed']} removed" if w["removed"] else "") + f"), {w['errors']} "
                f"with an error; wafer index: {'yes' if w['index'] else 'none (no x, y, bin)'}")
        out.append(head)
        if w["bins"]:
            out.append("  yield: " + ", ".join(
                f"bin {b['bin']}{' ' + b['name'] if b['name'] else ''} {b['dies']} "
                f"({b['share']:.1%})" for b in w["bins"])
                + (f"; {w['no_bin']} without a bin" if w["no_bin"] else ""))
        for f in MAIN_FIGURES:
            st = w["figures"].get(f.column)
            if st and st["n"]:
                out.append(f"  {f.label}: median {_value(st['median'], f)}, IQR "
                           f"{_value(st['iqr'], f)} ({st['n']} dies)")
        errors = [e for e in s["errors"] if e["wafer"] == w["wafer"]]
        for e in errors[:SHOWN_ERRORS]:
            out.append(f"  die {e['die']}: {e['error']}")
        if len(errors) > SHOWN_ERRORS:
            out.append(f"  ... and {len(errors) - SHOWN_ERRORS} more (the table's error column)")
        if w["ignored"]:
            out.append(f"  ignored (not named die_<id>.h5): {', '.join(w['ignored'][:5])}"
                       + (f" and {len(w['ignored']) - 5} more" if len(w["ignored"]) > 5 else ""))
        if w["cache"].startswith("cache not written"):
            out.append(f"  {w['cache']}")
    r = s.get("report")
    if r:
        out += [f"  note: {n}" for n in r["notes"]]
        out.append(f"report: {r['folder']} ({len(r['plots'])} plots; table.parquet, table.csv, "
                   "summary.json)")
    return out


def _out_dir(out_dir: str | None, folders: list[str]) -> Path:
    from calib.analysis.wafer_table import AnalysisError

    if out_dir is not None:
        out = Path(out_dir)
        if not out_dir.strip() or (out.exists() and not out.is_dir()):
            raise AnalysisError(f"--out {out_dir!r} is not a folder")
        return out
    first = Path(folders[0]).resolve()
    out = first.parent / "analysis"
    return out if out not in {Path(f).resolve() for f in folders} else first.parent / \
        "analysis-report"


@click.command("analyze")
@click.argument("wafers", nargs=-1, required=True, metavar="RESULTS/WAFER...")
@click.option("--dask", "dask_spec", default=None, metavar="local|tcp://HOST:PORT",
              help="Read the die files on a Dask cluster: 'local' starts one on this "
                   "computer (127.0.0.1, 2 workers), tcp://HOST:PORT uses a running scheduler.")
@click.option("--out", "out_dir", default=None, metavar="DIR",
              help="Report folder (default: 'analysis' beside the first wafer folder).")
@click.option("--no-report", is_flag=True, help="Print the summary only: no plots, no files.")
@click.option("--rebuild", is_flag=True, help="Read every die file again (and rewrite the cache).")
@click.option("--no-cache", is_flag=True, help="Neither use nor write the wafers' caches.")
@json_option
def command(wafers, dask_spec, out_dir, no_report, rebuild, no_cache, as_json) -> None:
    """Summarise wafers from their die files: yields per bin, parametric figures, wafer maps."""
    from calib.analysis.wafer_table import AnalysisError, build_table, require_extra

    require_extra()  # one line before any work if pandas/pyarrow are missing
    if any(not w.strip() for w in wafers):
        raise AnalysisError("give a wafer folder (RESULTS/WAFER), not an empty name")
    out = None if no_report else _out_dir(out_dir, list(wafers))
    with _progress(not as_json) as progress:
        table = build_table(list(wafers), dask_spec, cache=not no_cache, rebuild=rebuild,
                            progress=progress)
    from calib.analysis.wafer_report import wafer_stats, write_report

    frame = table.frame
    stats = wafer_stats(frame, [w.wafer for w in table.wafers])
    merged = [{**dataclasses.asdict(w), **s, "ignored": list(w.ignored)}
              for w, s in zip(table.wafers, stats, strict=True)]
    errors = [{"wafer": r.wafer, "die": int(r.die), "error": r.error}
              for r in frame[frame["error"].notna()].itertuples()]
    summary = {"wafers": merged, "dies": int(len(frame)), "columns": list(frame.columns),
               "errors": errors, "report": None}
    if out is not None:
        summary["report"] = write_report(frame, out, stats)
    emit(summary, as_json, _lines)
