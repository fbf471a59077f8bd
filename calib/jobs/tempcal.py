"""The temperature calibration job behind ``calib tempcal``: sweep the chuck over a die as
it is programmed, fit its temperature model, and keep the model as an artifact of the run.

The model is per cell, so it is measured on the states inference will use: run it after
the network is on the die (``calib infer``), and again after anything pulses the die.
:func:`load_temperature_model` gives a later job the newest model, and refuses one that
a later programming made stale, or one for another array.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from calib.jobs.artifacts import join_text, split_text
from calib.jobs.die import check_die_id, die_store, reach_die, wafer_name
from calib.jobs.run import recorded_run
from calib.store import DieStore, DieStoreError
from calib.store.schema import TEMPERATURE_PROGRESS
from instruments.errors import UserError
from protocols.tempcal import (
    LAWS,
    SweepParams,
    TempcalError,
    TemperatureModel,
    check_setpoints,
    fit_model,
    plan_visits,
    temperature_sweep,
)

JOB = "tempcal"
ARTIFACT = "temperature_model"
PULSING = ("write_verify", "variability", "train", "form")  # jobs that move conductances


class TempcalInputError(UserError, ValueError):
    """Bad set points or options, a bench without the roles a sweep needs, or a die with
    no usable temperature model."""


def parse_temps(text: str) -> tuple[float, ...]:
    """``"25,45,65,85"`` -> set points in degC, in the order given (the first is the
    reference unless ``--reference`` says otherwise)."""
    out: list[float] = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        try:
            value = float(part.removesuffix("C").removesuffix("c"))
        except ValueError:
            value = float("nan")
        if not math.isfinite(value):
            raise TempcalInputError(f"--temps {part!r}: give temperatures in degC, e.g. "
                                    "25,45,65,85")
        if value in out:
            raise TempcalInputError(f"--temps: {part} is given twice")
        out.append(value)
    return tuple(out)


@dataclass(frozen=True)
class TempcalOptions:
    """What a user may set: set points (degC), the law (``auto``, ``linear``, ``arrhenius``)
    and the sweep's knobs (:class:`protocols.tempcal.SweepParams`; seconds)."""

    temps_c: tuple[float, ...] = (25.0, 45.0, 65.0, 85.0)
    law: str = "auto"
    sweep: SweepParams = SweepParams()


def check_options(bench, options: TempcalOptions) -> tuple[float, ...]:
    """Everything checked before the first byte: roles, set points against the chip's
    limits, the law. Returns the set points."""
    for role in ("array", "thermal", "clock"):
        if getattr(bench, role, None) is None:
            raise TempcalInputError(f"a temperature sweep needs a {role} role; this bench "
                                    f"has none ([roles.{role}])")
    if options.law != "auto" and options.law not in LAWS:
        raise TempcalInputError(f"--law {options.law!r}: choose auto, {', '.join(LAWS)}")
    points = check_setpoints(options.temps_c, bench.datasheet.limits)
    reference = options.sweep.reference_c
    if reference is not None and reference not in points:
        raise TempcalInputError(f"--reference {reference:g} degC must be one of --temps "
                                f"{', '.join(f'{p:g}' for p in points)}")
    return points


def _pulsed(store: DieStore) -> bool:
    return any(r.protocol in PULSING or (r.protocol == "infer" and _programmed_in(store, r))
               for r in store.runs())


def _programmed_in(store: DieStore, run) -> bool:
    return "mapping" in store.read_run(run.run_id).get("artifacts", [])


def tempcal_die(bench, die: int, options: TempcalOptions = TempcalOptions(), *,
                results: str | Path = "calib-results", wafer: str | None = None,
                progress: Callable[[int, int, float], None] | None = None) -> dict[str, Any]:
    """Sweep the chuck over ``die``, fit its temperature model, record the run."""
    die = check_die_id(die, TempcalInputError)
    points = check_options(bench, options)
    store = die_store(results, wafer_name(bench, wafer), die)
    if not _pulsed(store):
        raise TempcalInputError(f"die {die} holds nothing programmed in {store.path}: the "
                                "model is per cell, measured on the states inference will "
                                f"use; program the die first (calib infer --die {die})")
    reference = points[0] if options.sweep.reference_c is None else options.sweep.reference_c
    visits = len(plan_visits(points, reference, options.sweep.plan))
    params = {"temps_c": list(points), "reference_c": reference, "law": options.law,
              "plan": options.sweep.plan, "settle_timeout_s": options.sweep.settle_timeout_s,
              "soak_s": options.sweep.soak_s, "reads": options.sweep.reads,
              "read_averages": options.sweep.read_averages, "visits": visits}
    reach_die(bench, die, TempcalInputError, store)  # the first bytes to the instruments
    start = bench.clock.now()
    with recorded_run(bench, store, JOB, params, die=die) as run:
        def visit(index: int, total: int, setpoint: float) -> None:
            if progress is not None:
                progress(index, total, setpoint)

        sweep = temperature_sweep(bench.thermal, bench.clock, bench.array, points,
                                  params=options.sweep, datasheet=bench.datasheet,
                                  progress=visit)
        rows = np.zeros(sweep.setpoints_c.size, TEMPERATURE_PROGRESS)
        rows["setpoint_c"], rows["measured_c"] = sweep.setpoints_c, sweep.chuck_c
        rows["settled_s"], rows["bench_time_s"] = sweep.settle_s, sweep.times_s - start
        run.append("progress", rows)
        model = fit_model(sweep, law=options.law)
        numbers, text = split_text(model.to_arrays())
        run.save_artifact(ARTIFACT, numbers, {**_plain(model.summary()), "text": text})
        s = sweep.summary()
        summary = {"die": die, "temps_c": list(points), "reference_c": reference,
                   "model": _plain(model.summary()),
                   "sweep": {k: s[k] for k in ("bench_time_s", "hot_time_s",
                                               "read_transactions", "cells_read",
                                               "mvm_transactions", "mvm_vectors",
                                               "reference_drift_ln_by_level_quartile")},
                   "visits": s["visits"], "file": str(store.path), "run": run.id}
        run.finish({"setpoint_c": sweep.setpoints_c, "conductance": sweep.reads_s,
                    "coefficients": model.cell_coeff}, summary)
    return summary


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    """JSON-friendly: NaN as None (the die file's meta is JSON)."""
    def one(v):
        if isinstance(v, dict):
            return {k: one(x) for k, x in v.items()}
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v
    return one(d)


@dataclass(frozen=True)
class StoredModel:
    """A temperature model as a die file holds it: the model and the run that fitted it."""

    model: TemperatureModel
    run_id: str


def load_temperature_model(store: DieStore, die: int, shape: tuple[int, int]) -> StoredModel:
    """The die's newest temperature model, or one line saying why there is none to use:
    never calibrated, a later run pulsed the die (the cells' states changed), or the model
    is for another array."""
    runs = store.runs()
    calibrated = [i for i, r in enumerate(runs) if r.protocol == JOB and r.status == "complete"]
    if not calibrated:
        raise TempcalInputError(f"die {die} has no temperature model: run calib tempcal "
                                f"--die {die} --temps 25,45,65,85 first")
    last = calibrated[-1]
    for r in runs[last + 1:]:
        if r.protocol in PULSING or (r.protocol == "infer" and _programmed_in(store, r)):
            raise TempcalInputError(
                f"the temperature model of die {die} ({runs[last].run_id}) is stale: "
                f"{r.run_id} ({r.protocol}) pulsed the die after it; run calib tempcal "
                f"--die {die} again")
    try:
        model = TemperatureModel.from_arrays(join_text(*store.load_artifact(
            ARTIFACT, runs[last].run_id)))
    except (DieStoreError, TempcalError) as exc:
        raise TempcalInputError(f"die {die}: the temperature model of "
                                f"{runs[last].run_id} cannot be read ({exc})") from None
    if model.shape != tuple(shape):
        raise TempcalInputError(f"the temperature model of die {die} is for a {model.shape[0]}"
                                f" x {model.shape[1]} array, the die's is {shape[0]} x "
                                f"{shape[1]}: run calib tempcal --die {die} again")
    return StoredModel(model, runs[last].run_id)
