"""Where a job's results go when its die file cannot take them.

``DieStore.finish_run`` never lets results go undocumented: if the die file
cannot be updated (disk full, read-only, damaged, busy), the run's arrays and
summary are written to a NumPy ``.npz`` file instead, first beside the die file
(``die_12.h5.run-0003.fallback.npz``), then in the system's temporary folder
(``<wafer>.die_12.h5.run-0003.fallback.npz``), and the error says where.

Read one back with ``np.load(path)``: every array under its dataset name, plus
``__summary_json__`` (the run's summary) and ``__run_json__`` (die file, wafer,
die, run id, status, attributes, and why the die file did not take them), both
JSON text.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

SUMMARY_KEY = "__summary_json__"
RUN_KEY = "__run_json__"


def fallback_name(die_file: Path, run_id: str) -> str:
    return f"{die_file.name}.run-{run_id.split('_', 1)[0]}.fallback.npz"


def candidates(die_file: Path, wafer: str | None, run_id: str) -> list[Path]:
    name = fallback_name(die_file, run_id)
    safe_wafer = "".join(c if c.isalnum() or c in "-_." else "_" for c in (wafer or "wafer"))
    return [die_file.parent / name, Path(tempfile.gettempdir()) / f"{safe_wafer}.{name}"]


def keep_results(die_file: Path, wafer: str | None, die: int | None, run_id: str,
                 arrays: dict, summary: dict | None, status: str, attrs: dict,
                 reason: str) -> tuple[Path | None, str]:
    """Write the results to the first fallback place that takes them.

    Returns (path, "") or (None, why every place failed). Never raises an Exception.
    """
    try:
        payload = {str(k): np.asanyarray(v) for k, v in dict(arrays or {}).items()}
    except Exception as exc:  # the arrays themselves may be the problem
        payload = {}
        reason = f"{reason}; the arrays could not be kept: {exc}"
    run = {"die_file": str(die_file), "wafer": wafer, "die": die, "run": run_id,
           "status": status, "attrs": attrs, "reason": reason,
           "written": datetime.now(UTC).isoformat(timespec="seconds")}
    payload[SUMMARY_KEY] = np.array(json.dumps(summary or {}, default=repr))
    payload[RUN_KEY] = np.array(json.dumps(run, default=repr))
    failures = []
    for path in candidates(die_file, wafer, run_id):
        try:
            _write_npz(path, payload)
            return path, ""
        except Exception as exc:  # try the next place
            failures.append(f"{path}: {getattr(exc, 'strerror', None) or exc}")
    return None, "; ".join(failures)


def load_fallback(path: str | Path) -> tuple[dict[str, np.ndarray], dict, dict]:
    """(arrays, summary, run record) of a fallback file."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files if k not in (SUMMARY_KEY, RUN_KEY)}
        return arrays, json.loads(str(npz[SUMMARY_KEY])), json.loads(str(npz[RUN_KEY]))


def _write_npz(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise
