"""Forming: the one irreversible step, for the cells that still read pristine.

Pristine means reading below the datasheet's ``forming.pristine_below``
(default g_min / 10). A formed cell RESET hard (the end of a variability map)
can read that low too, so the cells the die file records as formed are never
formed again — unless most of them read pristine, which says the die under the
probes is not the one the file describes (a fresh simulated die under the same
name): then the run records that and forms what reads pristine.

Forming voltage and width are the array controller's configured ones (the
datasheet's unless the bench config sets them), checked against the chip's limits
by the guard before anything is sent.
"""

from __future__ import annotations

import numpy as np

from calib.jobs.run import recorded_run
from calib.store import DieStore


def form_pristine(bench, store: DieStore) -> int:
    """Form the cells that read pristine and record it as a run; returns cells formed."""
    array = bench.array
    settings = array.configuration()
    voltage, width = settings.get("forming_voltage"), settings.get("forming_width")
    bench.guard.forming(voltage, width)  # before the first byte of this job
    threshold = bench.datasheet.pristine_below
    pristine = array.read() < threshold
    before = _formed_before(store, pristine.shape)
    skipped, fresh = 0, False
    if before is not None and before.any():
        again = pristine & before
        fresh = int(again.sum()) > 0.5 * int(before.sum())
        if not fresh:
            skipped = int(again.sum())
            pristine &= ~before
    count = int(pristine.sum())
    if count == 0:
        return 0
    params = {"voltage": voltage, "width": width, "pristine_below_s": threshold, "cells": count,
              "skipped_formed_before": skipped, "die_reads_unformed_again": fresh}
    with recorded_run(bench, store, "form", params) as run:
        formed = array.form(mask=pristine)
        run.finish({"formed_mask": pristine}, {"cells_pristine": count, "cells_formed": formed})
    return formed


def _formed_before(store: DieStore, shape: tuple[int, int]) -> np.ndarray | None:
    """Cells the die file's complete form runs formed (None: no such run)."""
    masks = [store.read_run(r.run_id).get("formed_mask") for r in store.runs()
             if r.protocol == "form" and r.status == "complete"]
    masks = [m for m in masks if m is not None and m.shape == shape]
    return np.logical_or.reduce(masks) if masks else None
