"""The programming job behind ``calib program``: step to a die, form, write-verify, record.

Every option is checked before the first byte reaches an instrument, and
before forming (irreversible). Kept apart from the CLI so scripts and wafer
sweeps call :func:`program_die` directly.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

import protocols
from calib.jobs.die import check_die_id, die_store, reach_die, wafer_name
from calib.jobs.form import form_pristine
from calib.jobs.infer import AGE_UNITS, InferInputError, parse_ages
from calib.jobs.map import load_map
from calib.jobs.run import check_interrupt, recorded_run
from calib.jobs.targets import ProgramInputError, Targets
from calib.store import DieStore, DieStoreError
from protocols.placement import Placement, weights_from_placement
from protocols.profiles import write_verify_params
from protocols.variability.result import VariabilityMap
from protocols.weights import weights_from_conductances
from protocols.write_verify import HoldParams, WriteVerifyError


@dataclass(frozen=True)
class ProgramOptions:
    """What a user may set. Siemens and seconds; None = the datasheet's technology default."""

    tolerance: float = 1e-6  # half-width of the band, S
    max_pulses: int | None = None  # per cell
    relax_wait_s: float | None = None  # fixed wait before each touch-up (0: no touch-up)
    read_averages: int | None = None  # conversions per verify read, on the instrument
    form: bool | None = None  # None: form when the datasheet says the chip needs it
    hold_s: float | None = None  # aim for the band this long after programming (0/None: now)

    def params(self, datasheet) -> protocols.WriteVerifyParams:
        """The protocol's parameters; raises a one-line error naming a bad option."""
        tol = self.tolerance
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (
                math.isfinite(tol) and 0 < tol < 1e-3):
            raise ProgramInputError(f"--tolerance {tol!r} S is not a plausible band "
                                    "(siemens: 1 uS is 1e-6)")
        return write_verify_params(datasheet, tolerance=float(tol), max_pulses=self.max_pulses,
                                   relax_wait_s=self.relax_wait_s,
                                   read_averages=self.read_averages)

    def hold(self) -> HoldParams | None:
        """Hold mode's parameters (None: off); a one-line error for a bad ``hold_s``."""
        if not self.hold_s:
            return None
        try:
            return HoldParams(hold_s=self.hold_s)
        except WriteVerifyError:
            raise ProgramInputError(f"--hold {self.hold_s!r} s: give a finite hold time >= 0 "
                                    "(e.g. --hold 1h; 0: no hold)") from None


def parse_hold(text: str) -> float:
    """``calib program --hold 1h`` -> 3600.0 s; the units of ``calib infer --at``."""
    try:
        ages = parse_ages(text) if "," not in str(text) else ()
    except InferInputError:
        ages = ()
    if len(ages) != 1:
        raise ProgramInputError(f"--hold {text!r}: give one duration such as 0, 90s, 10min, "
                                "1h, 1d (units " + ", ".join(AGE_UNITS) + ")")
    return ages[0]


CHECKPOINT_WALL_S = 60.0  # a long run saves its per-cell state at least this often (wall)
CHECKPOINT_BENCH_S = 600.0  # ... and every this many seconds of bench time


class Checkpoints:
    """Saves a long run's per-cell state as the ``checkpoint`` artifact of its run, so
    an hour of bench work killed at 59 minutes leaves 59 minutes of it in the die file."""

    def __init__(self, run, progress=None, wall_s: float | None = None,
                 bench_s: float | None = None) -> None:
        self.run, self.progress = run, progress
        self.wall_s = CHECKPOINT_WALL_S if wall_s is None else wall_s
        self.bench_s = CHECKPOINT_BENCH_S if bench_s is None else bench_s
        self.last_wall, self.last_bench = time.monotonic(), 0.0
        self.saved = 0

    def __call__(self, p) -> None:
        check_interrupt()  # a safe point: a stop lost in a callback takes effect here
        if self.progress is not None:
            self.progress(p)
        now = time.monotonic()
        due = (now - self.last_wall >= self.wall_s
               or p.bench_time_s - self.last_bench >= self.bench_s)
        if not due or p.snapshot is None:
            return
        partial = p.snapshot()
        status = np.select([partial.converged, partial.unresponsive, partial.unreachable],
                           [1, 2, 3], 0).astype(np.int8)
        self.run.save_artifact("checkpoint", {
            "target": partial.target, "estimate": partial.final, "pulses": partial.pulses,
            "status": status}, {"iteration": p.iteration, "phase": p.phase,
                                "bench_time_s": p.bench_time_s, "settled": p.settled,
                                "status_codes": "0 pending, 1 converged, 2 unresponsive, "
                                                "3 unreachable"})
        self.last_wall, self.last_bench = time.monotonic(), p.bench_time_s
        self.saved += 1


def _formed_any(run) -> bool:
    """A forming run that may have formed a cell (a complete one that formed none did not
    change the die)."""
    if run.status != "complete":
        return True
    try:
        return int(json.loads(run.attrs.get("summary_json") or "{}").get("cells_formed", 1)) > 0
    except (TypeError, ValueError, AttributeError):
        return True


def latest_variability_map(store: DieStore) -> VariabilityMap:
    """The die's newest complete ``variability`` run as a map; a one-line error naming
    ``calib map`` when there is none, or when a forming run that formed cells (or may
    have: not complete) came after it."""
    runs = store.runs()
    die = store.die_id if store.die_id is not None else "N"
    maps = [i for i, r in enumerate(runs) if r.protocol == "variability"
            and r.status == "complete"]
    if not maps:
        raise ProgramInputError(f"die {die} has no variability map in {store.path}: run "
                                f"`calib map --die {die}` first (or use --placement naive)")
    newest = runs[maps[-1]]
    forms = [i for i, r in enumerate(runs) if r.protocol == "form" and _formed_any(r)]
    if forms and forms[-1] > maps[-1]:
        raise ProgramInputError(
            f"die {die}: the newest variability map ({newest.run_id}) is older than the "
            f"last forming ({runs[forms[-1]].run_id}): map the die again with "
            f"`calib map --die {die}`")
    vmap = load_map(store, newest.run_id)
    return replace(vmap, extra={**vmap.extra, "run": newest.run_id})


def run_placement(data: dict) -> Placement | None:
    """The placement a ``write_verify`` run used (from ``read_run``), None for naive runs:
    ``weights_from_placement(g, run_placement(data))`` reads its weights back."""
    placed = (data.get("params") or {}).get("placement")
    return Placement.from_dict(placed) if placed else None


def die_variability_map(bench, die: int, *, results: str | Path = "calib-results",
                        wafer: str | None = None) -> VariabilityMap:
    """:func:`latest_variability_map` of ``die``'s file (nothing is sent to the bench)."""
    return latest_variability_map(die_store(results, wafer_name(bench, wafer), int(die)))


def program_die(bench, die: int, targets: Targets, options: ProgramOptions = ProgramOptions(),
                *, results: str | Path = "calib-results", wafer: str | None = None,
                progress: Callable[[protocols.Progress], None] | None = None) -> dict:
    """Step to ``die``, form if needed, write-verify ``targets``, record the run."""
    if bench.array is None:
        raise ProgramInputError("this bench has no array controller ([roles.array])")
    die = check_die_id(die, ProgramInputError)
    sheet = bench.datasheet
    params = options.params(sheet)
    hold = options.hold()
    if targets.values.shape != sheet.shape:
        raise ProgramInputError(f"targets are {targets.values.shape}, the chip is "
                                f"{sheet.shape} (datasheet {sheet.name})")
    store = die_store(results, wafer_name(bench, wafer), die)
    reach_die(bench, die, ProgramInputError, store)  # the first bytes to the instruments
    if sheet.forming.required and options.form is not False:
        form_pristine(bench, store)
    placed = targets.placement
    run_params = {**asdict(params), "target_source": targets.source}
    if hold is not None:
        run_params["hold"] = asdict(hold)
    if targets.mapping is not None:
        run_params["weight_mapping"] = asdict(targets.mapping)
    if placed is not None:
        run_params["placement"] = {**placed.to_dict(), "map_run": targets.map_run}
    with recorded_run(bench, store, "write_verify", run_params, die=int(die)) as run:
        result = protocols.write_verify(bench.array, targets.values, clock=bench.clock,
                                        params=params, progress=Checkpoints(run, progress),
                                        hold=hold)
        summary = {"die": int(die), **result.summary(), "file": str(store.path),
                   "run": run.id}
        if placed is not None:
            summary["placement"] = _save_placement(run, targets)
        summary.update(_save_learned_state(run, result))
        run.finish(_arrays(result, targets), summary, bench_time_s=result.bench_time_s)
    return summary


def _save_learned_state(run, result) -> dict:
    """The response model, read-noise fit and (hold mode) relaxation law as artifacts for
    later jobs on this die.

    Nice to have, never at the cost of the results: if they cannot be stored (a full
    disk: the response model is ~50 bytes per cell), the run still records its results
    and its summary says why the artifacts are missing.
    """
    try:
        run.save_artifact("response_model", result.response.to_arrays())
        run.save_artifact("read_noise", result.read_noise.to_arrays())
        if result.relaxation is not None:
            run.save_artifact("relaxation", result.relaxation.to_arrays())
    except DieStoreError as exc:
        return {"artifacts_error": str(exc)}
    return {"artifacts": ["response_model", "read_noise"]
            + (["relaxation"] if result.relaxation is not None else [])}


def _save_placement(run, targets: Targets) -> dict:
    """The placement's maps as the run's ``placement`` artifact (``row_map``, ``col_map``;
    meta: window, scale, expected errors); the summary's ``placement`` entry."""
    placed = targets.placement
    entry = {"method": placed.method, "map_run": targets.map_run,
             "expected_weight_error": placed.expected_error,
             "expected_weight_error_naive": placed.expected_error_naive,
             "faulty_cells_used": placed.faulty_cells_used,
             "window_s": [placed.g_min, placed.g_max]}
    try:
        run.save_artifact("placement", placed.to_arrays(),
                          {**placed.meta(), "map_run": targets.map_run})
    except DieStoreError as exc:  # the params hold the maps too
        entry["artifact_error"] = str(exc)
    return entry


def _arrays(result, targets: Targets) -> dict[str, np.ndarray]:
    arrays = {
        "target": result.target, "final": result.final, "pulses": result.pulses,
        "converged": result.converged, "unresponsive": result.unresponsive,
        "unreachable": result.unreachable, "exhausted": result.exhausted,
        "history": np.array(
            [(h.iteration, h.phase.encode(), h.active, h.pulsed, h.converged, h.transactions,
              h.bench_time_s) for h in result.history],
            dtype=[("iteration", "i4"), ("phase", "S10"), ("active", "i4"), ("pulsed", "i4"),
                   ("converged", "i4"), ("transactions", "i4"), ("bench_time_s", "f8")]),
    }
    if targets.placement is not None:
        p, g0 = targets.placement, targets.placement.g_min
        arrays["weights_target"] = weights_from_placement(np.nan_to_num(result.target, nan=g0), p)
        arrays["weights_achieved"] = weights_from_placement(np.nan_to_num(result.final, nan=g0),
                                                            p)
    elif targets.mapping is not None:
        m = targets.mapping
        arrays["weights_target"] = weights_from_conductances(
            np.nan_to_num(result.target, nan=m.g_min), m)
        arrays["weights_achieved"] = weights_from_conductances(
            np.nan_to_num(result.final, nan=m.g_min), m)
    return arrays
