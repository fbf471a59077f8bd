"""One HDF5 file per die, holding every run made on it (layout: docs/die-file.md).

Every change is made under the die file's exclusive lock (:mod:`calib.store.lock`)
on a copy in memory that then atomically replaces the file
(:mod:`calib.store.image`), so an exception, Ctrl-C or a killed process at any
moment leaves the runs already in the file intact, and two processes on one
die file take turns instead of losing each other's runs. A run is written as
``running`` before any work starts; if the process dies, it stays visibly not
complete. What a job may write is declared in :mod:`calib.store.schema`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import re
import socket
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from calib import __version__
from calib.store import fallback, image, schema
from calib.store.errors import DieFileBusy, DieStoreError
from calib.store.lock import DEFAULT_TIMEOUT_S, DieLock
from calib.store.schema import ARTIFACTS, FORMAT, FORMAT_VERSION, STATUSES

__all__ = ["DieStore", "RunInfo", "die_path"]


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    protocol: str
    status: str
    started: str
    ended: str | None
    attrs: dict[str, Any]


def die_path(results_dir: str | Path, wafer: str, die_id: int) -> Path:
    """``<results_dir>/<wafer>/die_<id>.h5``; DieStoreError for a wafer name that would
    leave ``results_dir`` or a die id that is not a whole number >= 0."""
    return Path(results_dir) / check_wafer(wafer) / f"die_{check_die(die_id)}.h5"


def check_wafer(wafer: Any) -> str:
    """``wafer`` if it is a plain folder name (no path separators, not ``.``/``..``)."""
    if not isinstance(wafer, str) or not wafer.strip():
        raise DieStoreError(f"wafer name {wafer!r}: give a non-empty name")
    bad = [sep for sep in ("/", "\\", os.sep, os.altsep) if sep and sep in wafer]
    if bad or wafer in (".", "..") or "\0" in wafer or os.path.isabs(wafer) or len(wafer) > 200:
        raise DieStoreError(f"wafer name {wafer!r}: must be a plain folder name inside the results "
                            "folder (no path separators, not '.' or '..', at most 200 characters)")
    return wafer


def check_die(die_id: Any) -> int:
    """``die_id`` as an int if it is a whole number >= 0 (int, numpy integer, digits)."""
    number: Any = None
    if isinstance(die_id, bool):
        number = None
    elif isinstance(die_id, int | np.integer):
        number = int(die_id)
    elif isinstance(die_id, float | np.floating) and math.isfinite(die_id) and \
            float(die_id).is_integer():
        number = int(die_id)
    elif isinstance(die_id, str) and die_id.strip().isdigit():
        number = int(die_id.strip())
    if number is None or number < 0:
        raise DieStoreError(f"die id {die_id!r}: must be a whole number >= 0")
    return number


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _dumps(value: Any, what: str) -> str:
    try:
        return json.dumps(_jsonable(value))
    except (TypeError, ValueError) as exc:
        raise DieStoreError(f"{what} cannot be stored as JSON: {exc}") from None


def _attr(value: Any) -> Any:
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _reason(exc: BaseException) -> str:
    """One line on why: the OS's words for an OSError, HDF5's own message if it has one."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc)
    found = re.search(r"error message = '([^']*)'", text)
    if found:
        return found.group(1)
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def _sorted_runs(runs: h5py.Group) -> list[str]:
    return sorted(runs, key=lambda name: (schema.run_number(name) or 0, name))


class DieStore:
    """The results file of one die.

    ``wafer`` and ``die_id`` name the die the caller means; an existing file whose
    header names another wafer or die is refused. Left out, they are read from
    the file. ``lock_timeout_s``: how long a change waits for another process's
    lock before raising :class:`DieFileBusy`.
    """

    def __init__(self, path: str | Path, wafer: str | None = None,
                 die_id: int | None = None, *, lock_timeout_s: float = DEFAULT_TIMEOUT_S,
                 check: bool = True) -> None:
        """``check``: read the file's seal, structure and header now (``False`` only to
        :meth:`reseal` a file edited outside aimc-calib)."""
        self.path = Path(path)
        if wafer is not None and not isinstance(wafer, str):
            raise DieStoreError(f"wafer name {wafer!r}: give a string")
        self.wafer = wafer
        self.die_id = None if die_id is None else check_die(die_id)
        self._lock = DieLock(self.path, lock_timeout_s)
        self._kept: dict[str, Path] = {}  # run -> fallback file of results not stored
        if check and self._exists():
            with self._reading():
                pass

    @property
    def lock_path(self) -> Path:
        return self._lock.path

    @property
    def lock_timeout_s(self) -> float:
        return self._lock.timeout_s

    @lock_timeout_s.setter
    def lock_timeout_s(self, seconds: float) -> None:
        self._lock.timeout_s = float(seconds)

    # -- opening ---------------------------------------------------------------------------
    def _exists(self) -> bool:
        try:
            return self.path.exists()
        except OSError as exc:
            raise DieStoreError(f"cannot read {self.path}: {_reason(exc)}") from None

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Any failure of the HDF5 library while reading becomes one DieStoreError."""
        try:
            yield
        except DieStoreError:
            raise
        except Exception as exc:
            raise DieStoreError(f"{self.path}: damaged die file ({what}: {_reason(exc)})") from None

    def _open(self, data: bytes, mode: str = "r") -> tuple[io.BytesIO, h5py.File, int]:
        """Open a file image checked: seal, HDF5, structure, header; (buffer, file, version)."""
        sealed = image.verify(data, self.path)
        buf = io.BytesIO(data)
        try:
            f = h5py.File(buf, mode)
        except Exception as exc:
            raise DieStoreError(f"{self.path}: not a readable HDF5 file ({_reason(exc)})") from None
        try:
            with self._guard("structure"):
                version = schema.check_structure(f, self.path)
                if version >= 2 and not sealed:
                    raise DieStoreError(f"{self.path}: damaged die file: format version "
                                        f"{version} without its header (first 512 bytes); "
                                        "DieStore(path, check=False).reseal() accepts an "
                                        "intended edit")
                self._check_header(f)
        except BaseException:
            f.close()
            raise
        return buf, f, version

    def _check_header(self, f: h5py.File) -> None:
        wafer = schema.text(f.attrs.get("wafer")) or ""
        die = int(f.attrs.get("die", -1))
        wrong_wafer = self.wafer is not None and wafer and wafer != self.wafer
        wrong_die = self.die_id is not None and die >= 0 and die != self.die_id
        if wrong_wafer or wrong_die:
            raise DieStoreError(
                f"{self.path} holds wafer {wafer!r} die {die}, not wafer "
                f"{self.wafer if self.wafer is not None else wafer!r} die "
                f"{self.die_id if self.die_id is not None else die}: refusing to mix the results "
                "of two dies")
        if self.wafer is None:
            self.wafer = wafer
        if self.die_id is None:
            self.die_id = die

    @contextmanager
    def _reading(self) -> Iterator[h5py.File]:
        data = image.read_image(self.path)
        if data is None:
            raise DieStoreError(f"{self.path}: no such die file")
        _, f, _ = self._open(data)
        with f, self._guard("reading"):
            yield f

    # -- reading ---------------------------------------------------------------------------
    def runs(self) -> list[RunInfo]:
        """Every run in the file, oldest first ([] if there is no file yet)."""
        if not self._exists():
            return []
        out = []
        with self._reading() as f:
            for run_id in _sorted_runs(f["runs"]):
                attrs = {k: _attr(v) for k, v in f["runs"][run_id].attrs.items()}
                out.append(RunInfo(run_id, attrs["protocol"], attrs["status"], attrs["started"],
                                   attrs.get("ended"), attrs))
        return out

    def read_run(self, run_id: str) -> dict[str, Any]:
        """Attributes and datasets of one run; ``*_json`` attributes decoded under their
        name without the suffix; ``artifacts``: the names of its artifacts."""
        with self._reading() as f:
            g = self._group(f, run_id)
            out: dict[str, Any] = {k: _attr(v) for k, v in g.attrs.items()}
            for key in [k for k in out if k.endswith("_json")]:
                out[key[:-5]] = self._loads(out.pop(key), f"run {run_id!r} attribute {key!r}")
            out["artifacts"] = []
            for name, obj in g.items():
                if isinstance(obj, h5py.Dataset):
                    out[name] = obj[()]
                elif name == ARTIFACTS and isinstance(obj, h5py.Group):
                    out["artifacts"] = sorted(obj)
        return out

    def load_artifact(self, name: str, run_id: str | None = None, *,
                      protocol: str | None = None) -> tuple[dict[str, Any], dict]:
        """(arrays, meta) of artifact ``name``: from run ``run_id``, or else the newest
        (highest-numbered) complete run that has one (of job ``protocol``, if given)."""
        with self._reading() as f:
            runs = f["runs"]
            if run_id is not None:
                self._group(f, run_id)
                candidates = [run_id]
            else:
                candidates = [r for r in reversed(_sorted_runs(runs))
                              if schema.text(runs[r].attrs["status"]) == "complete"
                              and (protocol is None
                                   or schema.text(runs[r].attrs["protocol"]) == protocol)]
            for rid in candidates:
                group = runs[rid].get(ARTIFACTS)
                art = group.get(name) if isinstance(group, h5py.Group) else None
                if not isinstance(art, h5py.Group):
                    continue
                arrays = {k: ds[()] for k, ds in art.items() if isinstance(ds, h5py.Dataset)}
                meta = self._loads(_attr(art.attrs.get("meta_json", "{}")),
                                   f"artifact {rid}/{name} meta")
                return arrays, meta
        if run_id is not None:
            raise DieStoreError(f"{self.path}: run {run_id!r} has no artifact {name!r}")
        of = f" of job {protocol!r}" if protocol else ""
        raise DieStoreError(f"{self.path}: no complete run{of} holds an artifact {name!r}")

    def _loads(self, text: Any, what: str) -> Any:
        try:
            return json.loads(text)
        except (TypeError, ValueError):
            raise DieStoreError(f"{self.path}: damaged die file: {what} is not JSON") from None

    def _group(self, f: h5py.File, run_id: str) -> h5py.Group:
        named = isinstance(run_id, str) and schema.RUN_NAME.match(run_id) is not None
        g = f["runs"].get(run_id) if named else None
        if not isinstance(g, h5py.Group):
            raise DieStoreError(f"{self.path}: no run {run_id!r}")
        return g

    # -- writing ---------------------------------------------------------------------------
    def _update(self, change: Callable[[h5py.File], None], *, what: str | None = None) -> None:
        """Apply ``change(h5file)`` to a copy, then atomically replace the file.

        Under the lock: stale temporary copies are removed, the file is read and
        checked (a version-1 file is upgraded to version 2), ``change`` runs on
        an in-memory copy, and the sealed result replaces the file. An exception
        from ``change`` leaves the file as it was and propagates; with ``what``
        given, a failure of the HDF5 library in ``change`` becomes a DieStoreError.
        Any OSError of the disk becomes "cannot write <file>: <reason>".
        """
        with self._lock:
            image.clean_temp_files(self.path)
            data = image.read_image(self.path)
            if data is None:
                buf = io.BytesIO()
                f = h5py.File(buf, "w", userblock_size=image.USERBLOCK)
                self._init_root(f)
            else:
                buf, f, version = self._open(data, "r+")
                if version < FORMAT_VERSION or not image.is_sealed(data):
                    buf, f = self._repack(f)
            with f:
                if what is None:
                    change(f)
                else:
                    try:
                        change(f)
                    except DieStoreError:
                        raise
                    except Exception as exc:
                        raise DieStoreError(f"cannot {what} in {self.path}: "
                                            f"{_reason(exc)}") from None
                f.attrs["format_version"] = FORMAT_VERSION
            sealed = image.seal(buf.getbuffer())
            try:
                image.write_image(self.path, sealed)
            except OSError as exc:
                raise DieStoreError(f"cannot write {self.path}: {_reason(exc)}") from None

    def _init_root(self, f: h5py.File) -> None:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["wafer"] = self.wafer or ""
        f.attrs["die"] = -1 if self.die_id is None else int(self.die_id)
        f.attrs["created"] = _now()
        f.attrs["last_run_number"] = 0
        f.create_group("runs")

    def _repack(self, src: h5py.File) -> tuple[io.BytesIO, h5py.File]:
        """A fresh version-2 image (with its user block) holding everything of ``src``."""
        buf = io.BytesIO()
        with src, self._guard("upgrading to format version 2"):
            dst = h5py.File(buf, "w", userblock_size=image.USERBLOCK)
            try:
                for key in src.attrs:
                    dst.attrs[key] = src.attrs[key]
                for name in src:
                    src.copy(src[name], dst, name)
                if "last_run_number" not in dst.attrs:
                    dst.attrs["last_run_number"] = max(
                        (schema.run_number(r) or 0 for r in dst["runs"]), default=0)
                dst.attrs["format_version"] = FORMAT_VERSION
            except BaseException:
                dst.close()
                raise
        return buf, dst

    def reseal(self) -> None:
        """Accept the file as it is now (after an intended edit outside aimc-calib).

        Checks its structure and writes a new header; a damaged file stays refused.
        """
        with self._lock:
            data = image.read_image(self.path)
            if data is None:
                raise DieStoreError(f"{self.path}: no such die file")
            try:
                src = h5py.File(io.BytesIO(data), "r")
            except Exception as exc:
                raise DieStoreError(f"{self.path}: not a readable HDF5 file "
                                    f"({_reason(exc)})") from None
            with self._guard("structure"):
                try:
                    schema.check_structure(src, self.path)
                    self._check_header(src)
                except BaseException:
                    src.close()
                    raise
            buf, dst = self._repack(src)
            dst.close()
            try:
                image.write_image(self.path, image.seal(buf.getbuffer()))
            except OSError as exc:
                raise DieStoreError(f"cannot write {self.path}: {_reason(exc)}") from None

    def start_run(self, protocol: str, params: dict, instruments: dict | None = None,
                  temperature_c: float | None = None, chip: str | None = None, *,
                  configuration: dict | None = None, datasheet: dict | None = None,
                  **attrs: Any) -> str:
        """Record a new run of job ``protocol`` as ``running``; returns its id (NNNN_<job>).

        ``instruments``: role -> identity; ``configuration``: role -> settings;
        ``datasheet``: the chip datasheet used (both stored as JSON attributes).
        Extra keyword arguments become attributes of the run.
        """
        schema.job(protocol)
        self._check_attrs(attrs)
        values = {
            "params_json": _dumps(params or {}, "params"),
            "instruments_json": _dumps(instruments or {}, "instruments"),
            "configuration_json": _dumps(configuration or {}, "configuration"),
            "datasheet_json": _dumps(datasheet or {}, "datasheet"),
        }
        temperature = np.nan if temperature_c is None else float(temperature_c)
        holder: dict[str, str] = {}

        def change(f: h5py.File) -> None:
            runs = f["runs"]
            number = 1 + max(int(f.attrs.get("last_run_number", 0)),
                             max((schema.run_number(r) or 0 for r in runs), default=0))
            f.attrs["last_run_number"] = number
            run_id = f"{number:04d}_{protocol}"
            g = runs.create_group(run_id)
            g.attrs["protocol"] = protocol
            g.attrs["status"] = "running"
            g.attrs["started"] = _now()
            g.attrs["toolkit_version"] = __version__
            g.attrs["host"] = socket.gethostname()
            g.attrs["pid"] = os.getpid()
            g.attrs["temperature_c"] = temperature
            g.attrs["chip"] = chip or ""
            for key, value in values.items():
                g.attrs[key] = value
            for key, value in attrs.items():
                g.attrs[key] = value
            holder["id"] = run_id

        self._update(change, what=f"start a {protocol} run")
        return holder["id"]

    def finish_run(self, run_id: str, arrays: dict[str, np.ndarray],
                   summary: dict | None = None, status: str = "complete",
                   **attrs: Any) -> None:
        """Store a run's arrays and summary and mark it ``status`` (complete).

        If the die file cannot take them, the arrays and summary are written to a
        fallback file (:mod:`calib.store.fallback`) and the DieStoreError says where;
        the run is then marked failed in the die file if that still works.
        """
        try:
            if status not in STATUSES:
                raise DieStoreError(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
            self._check_attrs(attrs)
            summary_json = _dumps(summary or {}, "summary")

            def change(f: h5py.File) -> None:
                g = self._group(f, run_id)
                checked = schema.check_arrays(schema.text(g.attrs["protocol"]), arrays)
                job = schema.job(schema.text(g.attrs["protocol"]))
                for name, values in checked.items():
                    if name in g:
                        del g[name]
                    if job.dataset(name).appendable:
                        _create_appendable(g, name, values)
                    else:
                        _create(g, name, values)
                g.attrs["summary_json"] = summary_json
                for key, value in attrs.items():
                    g.attrs[key] = value
                g.attrs["ended"] = _now()
                g.attrs["status"] = status

            self._update(change, what=f"finish run {run_id}")
        except BaseException as exc:
            self._results_not_stored(run_id, arrays, summary, status, attrs, exc)
            raise

    def _results_not_stored(self, run_id: str, arrays, summary, status: str, attrs: dict,
                            exc: BaseException) -> None:
        """Keep the results of a run the die file did not take; raise saying where."""
        reason = str(exc) if isinstance(exc, DieStoreError) else _reason(exc)
        kept, why = fallback.keep_results(self.path, self.wafer, self.die_id, str(run_id),
                                          arrays, summary, status, attrs, reason)
        note = f"results kept in {kept}" if kept else f"results could not be kept ({why})"
        if kept is not None:
            self._kept[str(run_id)] = kept
        if not isinstance(exc, Exception):  # Ctrl-C: stays what it is
            exc.add_note(note)
            return
        marked = ""
        if kept is not None and not isinstance(exc, DieFileBusy):
            try:
                self._mark_unstored(run_id, reason, kept)
                marked = "; the run is marked failed in the die file"
            except Exception:
                pass  # the die file may take nothing at all
        message = str(exc) if isinstance(exc, DieStoreError) else \
            f"cannot finish run {run_id} in {self.path}: {reason}"
        cls = type(exc) if isinstance(exc, DieStoreError) else DieStoreError
        raise cls(f"{message}; {note}{marked}") from exc

    def _mark_unstored(self, run_id: str, reason: str, kept: Path) -> None:
        def change(f: h5py.File) -> None:
            g = self._group(f, run_id)
            g.attrs["status"] = "failed"
            g.attrs["error"] = f"results not stored in the die file ({reason}); kept in {kept}"
            g.attrs["fallback"] = str(kept)
            g.attrs["ended"] = _now()

        self._update(change, what=f"mark run {run_id} failed")

    def fail_run(self, run_id: str, error: str, status: str = "failed") -> None:
        """Mark a run failed (or interrupted) with ``error``.

        After a ``finish_run`` whose results went to a fallback file, the record
        points there too, and an error of this call says where they are.
        """
        if status not in STATUSES:
            raise DieStoreError(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
        kept = self._kept.get(str(run_id))
        error = str(error)
        if kept is not None and str(kept) not in error:
            error = f"{error} (results kept in {kept})"

        def change(f: h5py.File) -> None:
            g = self._group(f, run_id)
            g.attrs["status"] = status
            g.attrs["error"] = error
            g.attrs["ended"] = _now()
            if kept is not None:
                g.attrs["fallback"] = str(kept)

        try:
            self._update(change, what=f"record the failure of run {run_id}")
        except DieStoreError as exc:
            if kept is None or str(kept) in str(exc):
                raise
            raise type(exc)(f"{exc}; results of run {run_id} kept in {kept}") from None

    def append(self, run_id: str, name: str, rows: Any) -> int:
        """Append ``rows`` (a structured or plain array; axis 0 = rows) to the time series
        ``name`` of a run; returns its length. ``name`` must be declared appendable.

        Each call rewrites the die file (atomic replace, like every change): append
        in batches (every few seconds or iterations), not row by row.
        """
        holder: dict[str, int] = {}

        def change(f: h5py.File) -> None:
            g = self._group(f, run_id)
            new = schema.check_rows(schema.text(g.attrs["protocol"]), name, rows)
            ds = g.get(name)
            if ds is None:
                ds = _create_appendable(g, name, new)
            else:
                if not isinstance(ds, h5py.Dataset) or ds.shape[1:] != new.shape[1:] or \
                        ds.dtype.names != new.dtype.names:
                    raise DieStoreError(
                        f"{self.path}: run {run_id} {name!r} holds rows of shape "
                        f"{getattr(ds, 'shape', ())[1:]} {getattr(ds, 'dtype', '')}, "
                        f"cannot append {new.shape[1:]} {new.dtype}")
                if ds.maxshape[0] is not None:  # written whole by an older toolkit
                    old = ds[()]
                    del g[name]
                    ds = _create_appendable(g, name, old)
                start = ds.shape[0]
                if len(new):
                    ds.resize(start + len(new), axis=0)
                    ds[start:] = new
            holder["n"] = int(ds.shape[0])

        self._update(change, what=f"append to {name!r} of run {run_id}")
        return holder["n"]

    def save_artifact(self, run_id: str, name: str, arrays: Mapping[str, Any],
                      meta: dict | None = None) -> None:
        """Store learned state (a response model, a read-noise fit) under
        ``/runs/<run_id>/artifacts/<name>``: each array (or number) a dataset, ``meta``
        JSON. Saving the same name again replaces it."""
        _check_name(name, "artifact name")
        if not isinstance(arrays, Mapping):
            raise DieStoreError(f"artifact {name!r}: arrays must be a dict of name -> array")
        data = {}
        for key, value in arrays.items():
            _check_name(key, f"artifact {name!r}: array name")
            arr = np.asarray(value)
            if arr.dtype.kind not in "biufcSV" or arr.dtype.hasobject:
                raise DieStoreError(f"artifact {name!r}: array {key!r} holds {arr.dtype}; store "
                                    "numbers (text goes in meta)")
            data[key] = arr
        meta_json = _dumps(meta or {}, f"artifact {name!r} meta")

        def change(f: h5py.File) -> None:
            g = self._group(f, run_id)
            group = g.get(ARTIFACTS)
            if group is None:
                group = g.create_group(ARTIFACTS)
            elif not isinstance(group, h5py.Group):
                raise DieStoreError(f"{self.path}: run {run_id} {ARTIFACTS!r} is not a group")
            if name in group:
                del group[name]
            art = group.create_group(name)
            art.attrs["saved"] = _now()
            art.attrs["meta_json"] = meta_json
            for key, arr in data.items():
                _create(art, key, arr)

        self._update(change, what=f"save artifact {name!r} of run {run_id}")

    def _check_attrs(self, attrs: dict) -> None:
        taken = sorted(set(attrs) & schema.RESERVED_RUN_ATTRS)
        if taken:
            raise DieStoreError(f"run attribute(s) {', '.join(taken)} are kept by the store")


def _check_name(name: Any, what: str) -> None:
    if not isinstance(name, str) or not schema.NAME.match(name):
        raise DieStoreError(f"{what} {name!r}: use letters, digits, '_', '-', '.' "
                            "(at most 100, not starting with '.', '-' or '_')")


def _create(g: h5py.Group, name: str, values: np.ndarray) -> h5py.Dataset:
    if values.ndim == 0 or values.size == 0:
        return g.create_dataset(name, data=values)
    return g.create_dataset(name, data=values, compression="gzip", compression_opts=4)


def _create_appendable(g: h5py.Group, name: str, values: np.ndarray) -> h5py.Dataset:
    """Resizable along axis 0, chunked, uncompressed: a growing chunk is rewritten in place
    (a compressed one would take new space in the file at every append)."""
    values = values.reshape(1) if values.ndim == 0 else values
    row_bytes = values.dtype.itemsize * int(np.prod(values.shape[1:], dtype=np.int64))
    chunk_rows = max(1, min(4096, 16384 // max(row_bytes, 1)))
    return g.create_dataset(name, data=values, maxshape=(None, *values.shape[1:]),
                            chunks=(chunk_rows, *values.shape[1:]))
