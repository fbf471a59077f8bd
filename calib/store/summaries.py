"""The runs and summaries of a die file, read once and read-only (for offline analysis).

``DieStore.runs()`` opens and checks a file for every call; a table of 10,000 dies
needs every file opened once. :func:`read_summaries` reads the file's bytes once,
makes exactly the checks every ``DieStore`` open makes (seal, HDF5, structure,
header: ``DieStore._open``), then reads only run attributes, never a dataset. No
lock is taken: like every reader, it sees the file before or after a change.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calib.store import image, schema
from calib.store.diefile import DieStore, _sorted_runs
from calib.store.errors import DieStoreError

__all__ = ["DieSummaries", "RunSummary", "read_summaries", "seal_digest"]


@dataclass(frozen=True)
class RunSummary:
    """One run as the analysis sees it: identity, status and its decoded summary."""

    run_id: str
    protocol: str
    status: str
    started: str
    ended: str | None
    summary: dict[str, Any]  # {} for a run that holds none (running, failed)


@dataclass(frozen=True)
class DieSummaries:
    """What :func:`read_summaries` found in one die file."""

    path: Path
    wafer: str
    die: int
    format_version: int
    seal: str | None  # the header's SHA-256 of the file body (hex); None: version 1, no seal
    size_bytes: int  # of the bytes read (fstat of the open file)
    mtime_ns: int
    inode: int
    runs: tuple[RunSummary, ...]  # oldest first

    def latest(self) -> dict[str, RunSummary]:
        """The newest (highest-numbered) complete run of each job, by job name."""
        return {r.protocol: r for r in self.runs if r.status == "complete"}


def seal_digest(header: bytes) -> str | None:
    """The SHA-256 (hex) a sealed file's header records; None for an unsealed file."""
    if not image.is_sealed(header):
        return None
    for line in header[:image.USERBLOCK].split(b"\n"):
        key, _, value = line.partition(b" ")
        if key == b"sha256":
            return value.strip(b"\0 ").decode("ascii", "replace")
    return None


def _read(path: Path) -> tuple[bytes, os.stat_result]:
    """The file's bytes and the stat of the very file read (it may be replaced meanwhile).

    OSError as the system raised it (the caller tells a missing file from damage).
    """
    with open(path, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise DieStoreError(f"{path}: not a die file (not a regular file)")
        return fh.read(), st


def read_summaries(path: str | Path, wafer: str | None = None,
                   die_id: int | None = None) -> DieSummaries:
    """Runs and summaries of the die file ``path``, checked like every DieStore open.

    ``wafer``, ``die_id``: the die the caller means; a file whose header names
    another is refused. DieStoreError for a damaged or foreign file (one line,
    naming it); OSError if it cannot be read at all.
    """
    store = DieStore(path, wafer, die_id, check=False)  # no I/O: its checks, used once below
    data, st = _read(store.path)
    _, f, version = store._open(data)
    runs = []
    with f, store._guard("reading"):
        group = f["runs"]
        newest: dict[str, str] = {}
        for run_id in _sorted_runs(group):
            attrs = group[run_id].attrs
            protocol, status = schema.text(attrs["protocol"]), schema.text(attrs["status"])
            if status == "complete":
                newest[protocol] = run_id
            ended = schema.text(attrs.get("ended"))
            runs.append([run_id, protocol, status, schema.text(attrs["started"]), ended])
        for entry in runs:  # decode only what the analysis uses: the newest complete per job
            summary: dict[str, Any] = {}
            if newest.get(entry[1]) == entry[0]:
                raw = group[entry[0]].attrs.get("summary_json", "{}")
                try:
                    summary = json.loads(schema.text(raw) or "{}")
                except ValueError:
                    raise DieStoreError(f"{store.path}: damaged die file: run {entry[0]!r} "
                                        "attribute 'summary_json' is not JSON") from None
                if not isinstance(summary, dict):
                    raise DieStoreError(f"{store.path}: damaged die file: run {entry[0]!r} "
                                        "summary is not a JSON object")
            entry.append(summary)
    return DieSummaries(store.path, store.wafer or "", int(store.die_id), version,
                        seal_digest(data[:image.USERBLOCK]), st.st_size, st.st_mtime_ns,
                        st.st_ino, tuple(RunSummary(*entry) for entry in runs))
