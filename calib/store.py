"""One HDF5 file per die, holding every run made on it (layout: docs/die-file.md).

Every change is made on a copy of the file that then atomically replaces it
(``os.replace``), so an exception, Ctrl-C or a killed process at any moment
leaves the runs already in the file intact. A run is written as ``running``
before any work starts; if the process dies, it stays visibly not complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from calib import __version__

FORMAT = "aimc-calib die file"
FORMAT_VERSION = 1
STATUSES = ("running", "complete", "failed", "interrupted")


class DieStoreError(ValueError):
    """A die file cannot be read or written as one (wrong file, unknown run)."""


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    protocol: str
    status: str
    started: str
    ended: str | None
    attrs: dict[str, Any]


def die_path(results_dir: str | Path, wafer: str, die_id: int) -> Path:
    return Path(results_dir) / wafer / f"die_{int(die_id)}.h5"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


class DieStore:
    """The results file of one die."""

    def __init__(self, path: str | Path, wafer: str | None = None,
                 die_id: int | None = None) -> None:
        self.path = Path(path)
        self.wafer = wafer
        self.die_id = die_id
        if self.path.exists():
            self._check()

    # -- reading -------------------------------------------------------------------
    def _open_read(self) -> h5py.File:
        try:
            return h5py.File(self.path, "r")
        except (OSError, ValueError) as exc:
            raise DieStoreError(f"{self.path}: not a readable HDF5 file ({exc})") from None

    def _check(self) -> None:
        with self._open_read() as f:
            if f.attrs.get("format") != FORMAT:
                raise DieStoreError(f"{self.path}: not an aimc-calib die file")
            version = int(f.attrs.get("format_version", 0))
            if version > FORMAT_VERSION:
                raise DieStoreError(f"{self.path}: format version {version} is newer than "
                                    f"this toolkit reads ({FORMAT_VERSION}); upgrade aimc-calib")
            if self.wafer is None:
                self.wafer = str(f.attrs.get("wafer", ""))
            if self.die_id is None:
                self.die_id = int(f.attrs.get("die", -1))

    def runs(self) -> list[RunInfo]:
        if not self.path.exists():
            return []
        out = []
        with self._open_read() as f:
            for run_id in sorted(f.get("runs", {})):
                g = f["runs"][run_id]
                attrs = {k: _attr(v) for k, v in g.attrs.items()}
                out.append(RunInfo(run_id, attrs.get("protocol", ""), attrs.get("status", ""),
                                   attrs.get("started", ""), attrs.get("ended"), attrs))
        return out

    def read_run(self, run_id: str) -> dict[str, Any]:
        """Attributes and arrays of one run (JSON attributes decoded)."""
        with self._open_read() as f:
            if run_id not in f.get("runs", {}):
                raise DieStoreError(f"{self.path}: no run {run_id!r}")
            g = f["runs"][run_id]
            out: dict[str, Any] = {k: _attr(v) for k, v in g.attrs.items()}
            for key in list(out):
                if key.endswith("_json"):
                    out[key[:-5]] = json.loads(out.pop(key))
            for name, ds in g.items():
                out[name] = ds[()]
        return out

    # -- writing ---------------------------------------------------------------------
    def _update(self, change) -> None:
        """Apply ``change(h5file)`` to a copy, then atomically replace the file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                        dir=self.path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            if self.path.exists():
                shutil.copyfile(self.path, tmp)
                mode = "a"
            else:
                mode = "w"
            with h5py.File(tmp, mode) as f:
                if mode == "w":
                    f.attrs["format"] = FORMAT
                    f.attrs["format_version"] = FORMAT_VERSION
                    f.attrs["wafer"] = self.wafer or ""
                    f.attrs["die"] = -1 if self.die_id is None else int(self.die_id)
                    f.attrs["created"] = _now()
                    f.create_group("runs")
                change(f)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def start_run(self, protocol: str, params: dict, instruments: dict | None = None,
                  temperature_c: float | None = None, chip: str | None = None,
                  **attrs: Any) -> str:
        """Record a new run as ``running``; returns its id."""
        holder: dict[str, str] = {}

        def change(f):
            runs = f["runs"]
            run_id = f"{len(runs) + 1:04d}_{protocol}"
            g = runs.create_group(run_id)
            g.attrs["protocol"] = protocol
            g.attrs["status"] = "running"
            g.attrs["started"] = _now()
            g.attrs["toolkit_version"] = __version__
            g.attrs["params_json"] = json.dumps(_jsonable(params))
            g.attrs["instruments_json"] = json.dumps(_jsonable(instruments or {}))
            g.attrs["temperature_c"] = np.nan if temperature_c is None else temperature_c
            g.attrs["chip"] = chip or ""
            for key, value in attrs.items():
                g.attrs[key] = value
            holder["id"] = run_id

        self._update(change)
        return holder["id"]

    def finish_run(self, run_id: str, arrays: dict[str, np.ndarray],
                   summary: dict | None = None, status: str = "complete",
                   **attrs: Any) -> None:
        """Store a run's arrays and mark it complete."""

        def change(f):
            g = self._group(f, run_id)
            for name, values in arrays.items():
                if name in g:
                    del g[name]
                g.create_dataset(name, data=values, compression="gzip", compression_opts=4)
            g.attrs["summary_json"] = json.dumps(_jsonable(summary or {}))
            for key, value in attrs.items():
                g.attrs[key] = value
            g.attrs["ended"] = _now()
            g.attrs["status"] = status

        self._update(change)

    def fail_run(self, run_id: str, error: str, status: str = "failed") -> None:
        if status not in STATUSES:
            raise DieStoreError(f"unknown status {status!r}")

        def change(f):
            g = self._group(f, run_id)
            g.attrs["status"] = status
            g.attrs["error"] = error
            g.attrs["ended"] = _now()

        self._update(change)

    def _group(self, f, run_id: str):
        if run_id not in f["runs"]:
            raise DieStoreError(f"{self.path}: no run {run_id!r}")
        return f["runs"][run_id]


def _attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value
