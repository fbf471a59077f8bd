"""The programming job behind ``calib program``: targets, forming, write-verify, store.

Kept apart from the CLI so scripts (wafer sweeps) can call :func:`program_die`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import protocols
from calib.bench import Bench
from calib.store import DieStore, die_path
from protocols.response import PulseModel
from protocols.weights import WeightMapping, map_weights, place, weights_from_conductances
from sim_backend.resources import data_root

PATTERNS = ("checkerboard", "random", "gradient")


class ProgramInputError(ValueError):
    """The targets asked for cannot be programmed (file, shape, window)."""


@dataclass(frozen=True)
class Targets:
    values: np.ndarray  # siemens, array shape, NaN = leave alone
    source: str
    mapping: WeightMapping | None = None


def example_weights_path() -> Path:
    return data_root() / "examples" / "layer.npy"


def _load_npy(path: str | Path, what: str) -> np.ndarray:
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ProgramInputError(f"{what} file {path}: not found") from None
    except (OSError, ValueError) as exc:
        raise ProgramInputError(f"{what} file {path}: not a readable .npy array ({exc})") from None
    if not isinstance(data, np.ndarray) or data.ndim != 2:
        raise ProgramInputError(f"{what} file {path}: expected a 2-D array, got shape "
                                f"{getattr(data, 'shape', '?')}")
    if not np.issubdtype(data.dtype, np.number):
        raise ProgramInputError(f"{what} file {path}: expected numbers, got {data.dtype}")
    return data.astype(np.float64)


def make_targets(shape: tuple[int, int], g_min: float, g_max: float, *,
                 weights: str | Path | None = None, target: str | Path | None = None,
                 pattern: str | None = None, seed: int = 0) -> Targets:
    """Targets from exactly one source; the bundled example layer if none is given."""
    given = [x is not None for x in (weights, target, pattern)]
    if sum(given) > 1:
        raise ProgramInputError("give only one of --weights, --target, --pattern")
    rows, cols = shape
    span = g_max - g_min
    if pattern is not None:
        if pattern not in PATTERNS:
            raise ProgramInputError(f"unknown pattern {pattern!r}; choose {', '.join(PATTERNS)}")
        if pattern == "checkerboard":
            lo, hi = g_min + 0.2 * span, g_min + 0.8 * span
            values = np.where((np.add.outer(np.arange(rows), np.arange(cols)) % 2) == 0, lo, hi)
        elif pattern == "random":
            values = np.random.default_rng(seed).uniform(g_min, g_max, shape)
        else:
            values = np.broadcast_to(np.linspace(g_min, g_max, cols), shape).copy()
        return Targets(values, f"pattern:{pattern}")
    if target is not None:
        values = _load_npy(target, "target")
        _check_fits(values.shape, shape, "target")
        finite = values[np.isfinite(values)]
        if np.any(np.isinf(values)):
            raise ProgramInputError("target file holds infinity; use NaN for cells to skip")
        if finite.size and (finite.min() < g_min - 1e-12 or finite.max() > g_max + 1e-12):
            raise ProgramInputError(
                f"targets span {finite.min() * 1e6:.3g}-{finite.max() * 1e6:.3g} uS, outside the "
                f"chip window {g_min * 1e6:g}-{g_max * 1e6:g} uS (targets are in siemens)")
        return Targets(place(values, shape), f"target:{target}")
    path = weights if weights is not None else example_weights_path()
    w = _load_npy(path, "weights")
    if w.shape[0] > rows or 2 * w.shape[1] > cols:
        raise ProgramInputError(
            f"weights {w.shape[0]} x {w.shape[1]} need {w.shape[0]} x {2 * w.shape[1]} cells "
            f"(differential pairs); the array is {rows} x {cols}")
    if not np.all(np.isfinite(w)):
        raise ProgramInputError(f"weights file {path}: holds NaN or infinity")
    block, mapping = map_weights(w, g_min, g_max)
    source = f"weights:{path}" if weights is not None else "example:layer.npy"
    return Targets(place(block, shape), source, mapping)


def _check_fits(got, shape, what) -> None:
    if got[0] > shape[0] or got[1] > shape[1]:
        raise ProgramInputError(f"{what} shape {got[0]} x {got[1]} does not fit the array "
                                f"{shape[0]} x {shape[1]}")


def pulse_model_for(spec) -> PulseModel:
    """The chip type's nominal pulse response (its spec, like a datasheet).

    The protocol learns every cell's actual gain on top of this shape; it
    never sees the simulator's per-cell parameters.
    """
    r = spec.response
    lim = spec.limits
    return PulseModel(set_threshold=r.set_threshold, reset_threshold=r.reset_threshold,
                      set_reference=r.set_reference, reset_reference=r.reset_reference,
                      amplitude_exponent=r.amplitude_exponent, width_reference=r.reference_width,
                      width_exponent=r.width_exponent, v_max=lim.max_program_voltage,
                      w_max=lim.max_pulse_width)


def params_for(spec, tolerance: float = 1e-6, max_pulses: int | None = None,
               relax_wait_s: float | None = None,
               read_averages: int | None = None) -> protocols.WriteVerifyParams:
    """Write-verify parameters that suit a chip type.

    The nominal pulse model comes from the spec. Relaxing devices (RRAM) wait
    before each touch-up as long as the phase before it took, at least 3 s (the
    protocol's default). Drifting devices (PCM) wait a fixed quarter of the drift
    onset t0, so touch-ups finish before drift starts. Where RESET is abrupt
    (PCM), an overshoot costs a melt-quench and a fresh climb, an undershoot one
    more small SET: pulses aim at 85 % of the error, and a confirmation that
    would end in a RESET may take 16 reads. Where read noise is 1/f (PCM: about
    1 uS, which averaging on the instrument barely reduces), confirmations take
    up to 8 reads. ``relax_wait_s`` given: exactly that wait (0: no touch-up).
    """
    extra = {} if max_pulses is None else {"max_pulses": max_pulses}
    if spec.drift.model != "none":
        extra["relax_wait_s"] = 0.25 * spec.drift.t0
        extra["relax_wait_factor"] = 0.0
    if spec.response.reset_mode == "abrupt":
        extra["aim"] = 0.85
        extra["max_confirm_reads_reset"] = 16
    if spec.read_noise.model == "pcm_1f":
        extra["max_confirm_reads"] = 8
        extra.setdefault("max_confirm_reads_reset", 8)
    if relax_wait_s is not None:
        if relax_wait_s < 0:
            raise ProgramInputError("--relax-wait must be >= 0 seconds")
        extra["relax_wait_s"] = relax_wait_s
        extra["relax_wait_factor"] = 0.0
    if max_pulses is not None and max_pulses < 1:
        raise ProgramInputError("--max-pulses must be at least 1")
    if read_averages is not None:
        if not 1 <= read_averages <= 1024:
            raise ProgramInputError("--read-averages must be within 1..1024")
        extra["read_averages"] = read_averages
    return protocols.WriteVerifyParams(tolerance=tolerance, pulse_model=pulse_model_for(spec),
                                       **extra)


def wafer_name(bench: Bench, override: str | None = None) -> str:
    if override:
        return override
    if bench.simulation is not None:
        return f"sim-{bench.simulation.wafer.spec.name}-seed{bench.simulation.wafer.seed}"
    return "wafer"


def program_die(bench: Bench, die: int, targets: Targets, *, tolerance: float = 1e-6,
                max_pulses: int | None = None, relax_wait_s: float | None = None,
                read_averages: int | None = None, results: str | Path = "calib-results",
                wafer: str | None = None, form: bool | None = None,
                progress: Callable[[protocols.Progress], None] | None = None) -> dict:
    """Step to ``die``, form if needed, write-verify ``targets``, store the run."""
    if bench.array is None:
        raise ProgramInputError("this bench has no array controller ([roles.array])")
    if bench.prober is not None:
        bench.prober.goto(die)
    spec = bench.chip_spec
    if targets.values.shape != tuple(bench.array.shape):
        raise ProgramInputError(f"targets are {targets.values.shape}, the array is "
                                f"{tuple(bench.array.shape)}")
    store = DieStore(die_path(results, wafer_name(bench, wafer), die), wafer_name(bench, wafer),
                     die)
    identities = bench.identities()
    temperature = bench.thermal.temperature() if bench.thermal is not None else None
    if spec.forming.required and form is not False:
        _form_pristine(bench, store, identities, temperature)
    params = params_for(spec, tolerance, max_pulses, relax_wait_s, read_averages)
    run_params = {**asdict(params), "target_source": targets.source}
    if targets.mapping is not None:
        run_params["weight_mapping"] = asdict(targets.mapping)
    run = store.start_run("write_verify", run_params, identities, temperature, spec.name,
                          die=int(die))
    t0 = time.perf_counter()
    try:
        result = protocols.write_verify(bench.array, targets.values, clock=bench.clock,
                                        params=params, progress=progress)
    except BaseException as exc:
        store.fail_run(run, repr(exc), _status_for(exc))
        raise
    summary = {"die": int(die), **result.summary(), "file": str(store.path), "run": run}
    history = result.history
    arrays = {
        "target": result.target, "final": result.final, "pulses": result.pulses,
        "converged": result.converged, "unresponsive": result.unresponsive,
        "unreachable": result.unreachable, "exhausted": result.exhausted,
        "history": np.array(
            [(h.iteration, h.phase.encode(), h.active, h.pulsed, h.converged, h.transactions,
              h.bench_time_s) for h in history],
            dtype=[("iteration", "i4"), ("phase", "S10"), ("active", "i4"), ("pulsed", "i4"),
                   ("converged", "i4"), ("transactions", "i4"), ("bench_time_s", "f8")]),
    }
    if targets.mapping is not None:
        rows, outs = targets.mapping.shape
        final = np.nan_to_num(result.final, nan=targets.mapping.g_min)
        arrays["weights_target"] = weights_from_conductances(
            np.nan_to_num(result.target, nan=targets.mapping.g_min), targets.mapping)
        arrays["weights_achieved"] = weights_from_conductances(final, targets.mapping)
    store.finish_run(run, arrays, summary, bench_time_s=result.bench_time_s,
                     wall_time_s=time.perf_counter() - t0)
    return summary


def _form_pristine(bench: Bench, store: DieStore, identities: dict, temperature) -> int:
    """Form only the cells that read pristine, and record it as a run.

    Pristine means below the geometric mean of the spec's pristine conductance and
    the window's lower edge (0.1 uS for rram): formed cells, even fully RESET, read
    above it, so no formed cell ever gets a forming pulse.
    """
    spec = bench.chip_spec
    threshold = float(np.sqrt(max(spec.forming.pristine, 1e-12) * spec.window.g_min))
    g = bench.array.read()
    pristine = g < threshold
    count = int(pristine.sum())
    if count == 0:
        return 0
    run = store.start_run("form", {"voltage": spec.forming.voltage, "width": spec.forming.width,
                                   "pristine_below_s": threshold, "cells": count},
                          identities, temperature, spec.name)
    try:
        formed = bench.array.form(spec.forming.voltage, spec.forming.width, mask=pristine)
    except BaseException as exc:
        store.fail_run(run, repr(exc), _status_for(exc))
        raise
    store.finish_run(run, {"formed_mask": pristine}, {"cells_pristine": count,
                                                      "cells_formed": formed})
    return formed


def _status_for(exc: BaseException) -> str:
    return "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
