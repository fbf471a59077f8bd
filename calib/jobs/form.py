"""Forming: the one irreversible step, for the cells that still read pristine.

Pristine means reading below the datasheet's ``forming.pristine_below``
(default g_min / 10): formed cells, even fully RESET, read above it, so no
formed cell ever gets a forming pulse. Forming voltage and width are the array
controller's configured ones (the datasheet's unless the bench config sets
them), checked against the chip's limits by the guard before anything is sent.
"""

from __future__ import annotations

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
    count = int(pristine.sum())
    if count == 0:
        return 0
    params = {"voltage": voltage, "width": width, "pristine_below_s": threshold, "cells": count}
    with recorded_run(bench, store, "form", params) as run:
        formed = array.form(mask=pristine)
        run.finish({"formed_mask": pristine}, {"cells_pristine": count, "cells_formed": formed})
    return formed
