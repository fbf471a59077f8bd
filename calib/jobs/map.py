"""The variability-map job behind ``calib map``: step to a die, form, map, record.

Every option is checked before the first byte reaches an instrument. The map is
stored as a ``variability`` run (datasets: ``VariabilityMap.arrays()``, the binned
read-noise points, a progress series; the die summary as the run's summary), so
scripts read it with plain h5py and later jobs load it with :func:`load_map`
(the die file's newest complete ``variability`` run).
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calib.jobs.die import check_die_id, die_store, reach_die, wafer_name
from calib.jobs.form import form_pristine
from calib.jobs.run import check_interrupt, recorded_run
from calib.store import DieStore, DieStoreError
from instruments.errors import UserError
from protocols.profiles import variability_params
from protocols.variability import (
    PER_CELL,
    MapProgress,
    ReadNoiseLaw,
    VariabilityError,
    VariabilityMap,
    VariabilityParams,
    map_variability,
)

JOB = "variability"


class MapInputError(UserError, ValueError):
    """A map that cannot be run as asked (options, an unformed die with --no-form)."""


@dataclass(frozen=True)
class MapOptions:
    """What a user may set; None = the datasheet's technology default."""

    cycles: int | None = None  # full SET/RESET cycles (default 5, quick 2)
    quick: bool = False
    max_pulses_per_cell: int | None = None  # the endurance budget (default 200)
    form: bool | None = None  # None: form when the datasheet says the chip needs it

    def params(self, datasheet) -> VariabilityParams:
        """The protocol's parameters; a one-line error naming a bad option."""
        for name, value, low in (("--cycles", self.cycles, 1),
                                 ("--max-pulses", self.max_pulses_per_cell, 1)):
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, numbers.Integral) or value < low):
                raise MapInputError(f"{name} {value!r}: expected a whole number >= {low}")
        try:
            params = variability_params(datasheet, quick=self.quick, cycles=self.cycles,
                                        max_pulses_per_cell=self.max_pulses_per_cell)
            params.check_budget()
            return params
        except VariabilityError as exc:
            raise MapInputError(str(exc)) from None


class _Progress:
    """Forwards the protocol's progress, takes interrupts at each step, and appends one
    row to the run's progress series when a phase ends."""

    def __init__(self, run, progress) -> None:
        self.run, self.progress = run, progress
        self.phase, self.last, self.t0 = None, None, time.perf_counter()

    def __call__(self, p: MapProgress) -> None:
        check_interrupt()
        if self.progress is not None:
            self.progress(p)
        if self.phase is not None and p.phase != self.phase and self.last is not None:
            self.flush()
        self.phase, self.last = p.phase, p

    def flush(self) -> None:
        p = self.last
        if p is None:
            return
        self.run.append("progress", np.array(
            [(p.step, p.step, p.total, p.bench_time_s, time.perf_counter() - self.t0)],
            dtype=[("step", "i4"), ("done", "i4"), ("total", "i4"), ("bench_time_s", "f8"),
                   ("wall_time_s", "f8")]))


def map_die(bench, die: int, options: MapOptions = MapOptions(), *,
            results: str | Path = "calib-results", wafer: str | None = None,
            progress: Callable[[MapProgress], None] | None = None) -> dict:
    """Step to ``die``, form if needed, map its variability, record the run; returns the
    die summary (with ``file`` and ``run``)."""
    if bench.array is None:
        raise MapInputError("this bench has no array controller ([roles.array])")
    die = check_die_id(die, MapInputError)
    sheet = bench.datasheet
    params = options.params(sheet)  # the budget too: refused before any byte
    store = die_store(results, wafer_name(bench, wafer), die)
    reach_die(bench, die, MapInputError, store)
    if sheet.forming.required:
        if options.form is False:
            pristine = int(np.count_nonzero(bench.array.read() < sheet.pristine_below))
            if pristine > bench.array.shape[0] * bench.array.shape[1] / 2:
                raise MapInputError(
                    f"die {die}: {pristine} cells read pristine (below "
                    f"{sheet.pristine_below * 1e6:g} uS): the die is not formed; map it "
                    "without --no-form (forming first)")
        else:
            form_pristine(bench, store)
    run_params = {**params.as_dict(), "quick": options.quick}
    with recorded_run(bench, store, JOB, run_params, die=int(die)) as run:
        hook = _Progress(run, progress)
        vmap = map_variability(bench.array, clock=bench.clock, params=params, progress=hook)
        hook.flush()
        summary = vmap.summary()
        points = summary.pop("read_noise_points", None) or {}
        summary = {"die": int(die), **_jsonable(summary), "file": str(store.path),
                   "run": run.id}
        arrays = vmap.arrays()
        arrays["read_noise_points"] = np.array(
            [points.get("g_s", []), points.get("sigma_s", []), points.get("cells", [])],
            np.float64).T.reshape(-1, 3)
        run.finish(arrays, summary, bench_time_s=vmap.bench_time_s)
    return summary


def load_map(store: DieStore, run_id: str | None = None) -> VariabilityMap:
    """The die's map: run ``run_id``, or the newest complete ``variability`` run.

    DieStoreError naming ``calib map`` when there is none.
    """
    if run_id is None:
        runs = [r for r in store.runs() if r.protocol == JOB and r.status == "complete"]
        if not runs:
            raise DieStoreError(f"{store.path}: no complete variability map of this die; "
                                "run `calib map --die N` first")
        run_id = runs[-1].run_id
    data = store.read_run(run_id)
    s = data.get("summary", {})
    noise = s.get("read_noise", {})
    missing = [name for name in (*PER_CELL, "fault") if name not in data]
    if missing:
        raise DieStoreError(f"{store.path}: run {run_id} is not a complete map (no "
                            f"{', '.join(missing)})")
    extra = {k: v for k, v in s.items() if k not in (
        "cells", "yield", "faults", "usable_window_s", "read_noise", "d2d", "cycles",
        "pulses_per_cell", "transactions", "bench_time_s", "wall_time_s")}
    return VariabilityMap(
        **{name: np.asarray(data[name], np.float64) for name in PER_CELL},
        fault=np.asarray(data["fault"], np.uint8),
        read_noise=ReadNoiseLaw.from_summary(noise),
        usable_window=tuple(s.get("usable_window_s", (np.nan, np.nan))),
        pulses_per_cell=float(s.get("pulses_per_cell", np.nan)),
        transactions=int(s.get("transactions", 0)), bench_time_s=float(s.get("bench_time_s", 0)),
        wall_time_s=float(s.get("wall_time_s", 0)), cycles=int(s.get("cycles", 0)), extra=extra)


def _jsonable(value):
    """NaN and infinities as None, numpy scalars as Python numbers (strict JSON)."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
