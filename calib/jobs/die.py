"""Reaching a die, the same way for every job: its die file, the array against the datasheet,
the prober at the die.

All of it checked in this order: the die id and the die file's path before any byte,
then the array controller's size against the datasheet (a query), and only then the
prober moves. Forming, where a job wants it, follows (:mod:`calib.jobs.form`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from calib.store import DieStore, DieStoreError, die_path


def wafer_name(bench, override: str | None = None) -> str:
    return override or bench.wafer_name or "wafer"


def check_die_id(die, error: type[Exception]) -> int:
    if isinstance(die, bool) or not isinstance(die, (int, np.integer)) or die < 0:
        raise error(f"--die {die!r}: expected a die id, a whole number >= 0")
    return int(die)


def die_store(results: str | Path, wafer: str, die: int) -> DieStore:
    """The die's store, its path checked without creating anything: the folder is made
    on the first write, after the die was reached."""
    store = DieStore(die_path(results, wafer, die), wafer, die)
    folder = store.path.parent
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise DieStoreError(f"cannot write results under {folder}: {existing} is "
                            f"{'not a folder' if not existing.is_dir() else 'not writable'}")
    return store


def reach_die(bench, die: int, error: type[Exception], store: DieStore | None = None) -> None:
    """The first bytes of a job: the array's size against the datasheet, then the prober
    steps to ``die`` and makes contact.

    A sweep that has stepped to the die and checked contact sets ``bench.at_die``; its
    jobs then work on the die where it is (one touchdown per die, not one per step).
    With the die's ``store``, a simulated wafer is first bound to that wafer's results
    folder (``Bench.bind_results``), so the die is the one earlier jobs left there.
    """
    sheet = bench.datasheet
    shape = tuple(bench.array.shape)
    if shape != sheet.shape:
        raise error(f"the array controller reports {shape[0]} x {shape[1]} cells, the "
                    f"datasheet {sheet.source} {sheet.shape[0]} x {sheet.shape[1]}: check "
                    "the bench config's datasheet")
    if store is not None and hasattr(bench, "bind_results"):
        bench.bind_results(store.path.parent, die)
    if bench.prober is not None and getattr(bench, "at_die", None) != die:
        bench.prober.goto(die)  # (a wafer sweep has contacted and checked the die already)
