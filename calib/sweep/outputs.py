"""What a sweep leaves beside its wafer index: the wafer summary table (CSV and JSON, one
row per die), the STDF V4 file and a PNG bin map. All rewritten atomically after the
sweep, so a reader never sees half a table; the index stays the record they come from.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from calib.sweep.index import write_atomic

SUMMARY_CSV = "wafer-summary.csv"
SUMMARY_JSON = "wafer-summary.json"
STDF_NAME = "wafer.stdf"
BIN_MAP = "wafer-bins.png"
FIXED = ("die", "x", "y", "state", "bin", "bin_name", "passed", "soft_bin", "bench_time_s",
         "message")


def columns(rows: list[dict]) -> list[str]:
    extra = sorted({k for r in rows for k in r} - set(FIXED))
    return [*FIXED, *extra]


def write_summary(folder: Path, rows: list[dict]) -> dict[str, str]:
    cols = columns(rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in cols})
    write_atomic(folder / SUMMARY_CSV, buf.getvalue())
    write_atomic(folder / SUMMARY_JSON, json.dumps({"columns": cols, "rows": rows}, indent=1))
    return {"summary_csv": str(folder / SUMMARY_CSV), "summary_json": str(folder / SUMMARY_JSON)}


def write_wafer_files(folder: Path, rows: list[dict], recipe, doc: dict) -> dict[str, str]:
    """STDF and the bin map; a missing optional extra is noted, not fatal."""
    out: dict[str, str] = {}
    from calib.sweep.figures import unit_of
    from calib.sweep.stdf import StdfError, write_stdf

    figures = sorted({k for r in rows for k in r} - set(FIXED))
    meta = {"lot": doc.get("wafer", "lot"), "wafer": doc.get("wafer", "wafer"),
            "part_type": recipe.name, "job": recipe.name,
            "units": {k: unit_of(k) for k in figures}}
    try:
        out["stdf"] = str(write_stdf(folder / STDF_NAME, rows, recipe.bins(), meta))
    except StdfError as exc:
        out["stdf_skipped"] = str(exc)
    try:
        from calib.analysis.wafermap import wafer_map_png

        placed = [r for r in rows if r.get("x") is not None and r.get("bin") is not None]
        if placed:
            out["bin_map"] = str(wafer_map_png(folder / BIN_MAP, placed, "bin",
                                               title=f"{doc.get('wafer')}: bins"))
    except ImportError as exc:
        out["bin_map_skipped"] = f"no bin map: {exc}"
    return out
