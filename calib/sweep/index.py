"""The wafer index: each die's state in a sweep, so a sweep that dies resumes where it
stopped, and nothing is done twice.

One JSON file per wafer (``<results>/<wafer>/wafer-index.json``, docs/sweep.md), plain
to read with any tool. It is written the way die files are: the new text to a temporary
file beside it, ``fsync``, ``os.replace`` — so ``kill -9``, a power cut or a full disk
at any instant leaves either the previous index or the new one, never a torn one. A
sweep holds the index's lock (the die files' flock, :mod:`calib.store.lock`) from start
to end, so two sweeps of one wafer cannot interleave; readers need no lock.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from calib.store.errors import DieFileBusy
from calib.store.image import write_image
from calib.store.lock import DieLock
from instruments.errors import UserError

FORMAT = "aimc-calib wafer index"
VERSION = 1
INDEX_NAME = "wafer-index.json"
STATES = ("pending", "running", "done", "failed")


class WaferIndexError(UserError, ValueError):
    """The index is missing, damaged, belongs to another wafer or recipe, or is in use."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def write_atomic(path: Path, text: str) -> None:
    """``text`` to ``path`` the way die files are written (:func:`calib.store.image.
    write_image`: temporary file, fsync, rename; the old file survives any failure)."""
    write_image(path, text.encode("utf-8"))


def read_index(folder: str | Path) -> dict[str, Any] | None:
    """The index of a wafer folder (None if the folder has none). Raises on a damaged or
    foreign file."""
    path = Path(folder) / INDEX_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise WaferIndexError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise WaferIndexError(f"{path}: not a wafer index (not valid JSON); it was not "
                              "written by calib sweep, or was edited") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise WaferIndexError(f"{path}: not a wafer index of this toolkit")
    if doc.get("version") != VERSION:
        raise WaferIndexError(f"{path}: wafer index version {doc.get('version')!r}; this "
                              f"toolkit reads version {VERSION}")
    if not isinstance(doc.get("dies"), dict):
        raise WaferIndexError(f"{path}: damaged wafer index (no dies table)")
    return doc


class WaferIndex:
    """The index of one wafer folder, held open (and locked) by one sweep."""

    def __init__(self, folder: str | Path, wafer: str) -> None:
        self.folder = Path(folder)
        self.wafer = wafer
        self.path = self.folder / INDEX_NAME
        self._lock = DieLock(self.path, timeout_s=0.0)
        self.doc: dict[str, Any] = {}
        self.route: list[int] = []  # this sweep's dies, in order

    # -- lifetime ---------------------------------------------------------------------
    def open(self, recipe, sites, redo: bool = False) -> WaferIndex:
        """Lock the index, load it (or start one) and check it is this wafer's and this
        recipe's; ``redo``: start every selected die afresh."""
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.__enter__()
        except DieFileBusy:
            raise WaferIndexError(f"wafer {self.wafer} is being swept by another process "
                                  f"(lock {self._lock.path}); wait for it or stop it") from None
        try:
            self._load(recipe, sites, redo)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        try:
            self._lock.__exit__(None, None, None)
        except Exception:  # noqa: BLE001 - closing an unheld lock is harmless
            pass

    def __enter__(self) -> WaferIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _load(self, recipe, sites, redo: bool) -> None:
        doc = read_index(self.folder)
        if doc is None:
            doc = {"format": FORMAT, "version": VERSION, "wafer": self.wafer,
                   "created": _now(), "recipe": None, "dies": {}}
        if doc.get("wafer") != self.wafer:
            raise WaferIndexError(f"{self.path}: this results folder holds wafer "
                                  f"{doc.get('wafer')!r}, the bench is on {self.wafer!r}; "
                                  "give another --results or --wafer")
        previous = doc.get("recipe") or {}
        if previous and previous.get("digest") != recipe.digest and not redo:
            raise WaferIndexError(
                f"wafer {self.wafer} was swept with recipe {previous.get('name')!r} "
                f"({previous.get('source')}), which differs from {recipe.source}: resume "
                "with that recipe, re-run the dies with --redo, or use another --results")
        doc["recipe"] = {"name": recipe.name, "source": recipe.source, "digest": recipe.digest,
                         "bins": {str(k): list(v) for k, v in recipe.bins().items()}}
        dies = doc["dies"]
        for order, site in enumerate(sites):
            entry = dies.get(str(site.id))
            if entry is None or redo:
                dies[str(site.id)] = {"x": site.x, "y": site.y, "state": "pending",
                                      "bin": None, "bin_name": None, "passed": None,
                                      "attempts": (entry or {}).get("attempts", 0),
                                      "steps": {}, "figures": {}, "message": "",
                                      "order": order}
            else:
                entry["order"] = order
        self.route = [s.id for s in sites]
        earlier = [i for i in doc.get("route", []) if i not in set(self.route)]
        doc["route"] = self.route + earlier  # the wafer's record keeps every die swept
        self.doc = doc
        self.save()

    # -- per die --------------------------------------------------------------------------
    def die(self, die_id: int) -> dict[str, Any]:
        return self.doc["dies"][str(die_id)]

    def update(self, die_id: int, **fields: Any) -> None:
        self.die(die_id).update(fields)
        self.save()

    def step_done(self, die_id: int, name: str, record: dict[str, Any]) -> None:
        entry = self.die(die_id)
        entry["steps"][name] = record
        entry["figures"].update({f"{name}.{k}": v for k, v in record.get("figures", {}).items()})
        self.save()

    def save(self) -> None:
        self.doc["updated"] = _now()
        write_atomic(self.path, json.dumps(self.doc, indent=1, sort_keys=True))

    # -- views ----------------------------------------------------------------------------
    def pending(self) -> list[int]:
        """Dies of the route not done, in route order (a die left running was
        interrupted: it is first again)."""
        return [i for i in self.route if self.die(i)["state"] in ("pending", "running")]

    def rows(self) -> list[dict[str, Any]]:
        """The wafer summary: one row per die ever swept, this sweep's route first."""
        out = []
        for die_id in self.doc.get("route", []):
            e = self.die(die_id)
            out.append({"die": die_id, "x": e["x"], "y": e["y"], "state": e["state"],
                        "bin": e["bin"], "bin_name": e["bin_name"], "passed": e["passed"],
                        "soft_bin": e.get("soft_bin", e["bin"]),
                        "bench_time_s": e.get("bench_time_s"), "message": e["message"],
                        **e["figures"]})
        return out
