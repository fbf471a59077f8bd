"""The temperature sweep: the chuck to each set point, settle, soak, measure, back home.

What is measured at each visit, and why:

- **Whole-array reads** (``reads``, one transaction each): every cell's
  conductance at this temperature, through its column's read-out chain. Per
  cell, because the temperature coefficient depends on the state and spreads
  from device to device; several times, because separate reads draw their noise
  anew (PCM's 1/f noise hardly averages within one read) and their scatter is
  the read noise the fit weights by.
- **One MVM transaction** of all-zero inputs and of a few fixed calibration
  vectors. The column read-out adds an offset that moves with temperature, to
  reads and MVM alike: uncorrected it looks like a large change of the column's
  low cells (0.4 uS at 85 degC against a 1 uS cell). Many zero inputs give the MVM
  offsets to a few 1e-4 of the range; the fit ties the reads' offsets to them.
  The calibration vectors (half the rows on, as dense as typical inputs) show
  what MVM does that reads do not: IR drop on the lines grows with the
  conductances, and an MVM path may have a gain of its own.

Drift: the die ages fastest while hot (relaxation and drift are thermally
activated), so hot set points are visited hottest first and, with the
``interleaved`` plan, each is followed by a reference visit; a hot read is compared
with the reference read that follows it, minutes later, rather than with one taken
before the hottest stint aged every cell. Every set point is checked against the
chip's limits before the first command (the chuck's driver checks again).
"""

from __future__ import annotations

import time

import numpy as np

from instruments.safety import SafetyGuard
from protocols.tempcal.params import ChuckNotSettled, SweepParams, TempcalError
from protocols.tempcal.result import TemperatureSweep

MIN_RANGE_A, MAX_RANGE_A = 1e-6, 0.1
CLIPPED = 0.99  # a current at this share of the range or beyond may be clipped
RANGE_MARGIN = 2.5  # the calibration vectors' range over their largest current at the first visit


def settle(thermal, clock, setpoint_c: float, timeout_s: float, poll_s: float) -> float:
    """Wait (clock role) until the chuck reports settled; the seconds waited.

    Raises :class:`ChuckNotSettled` (set point, last reading, timeout) when it has
    not settled after ``timeout_s``.
    """
    start = clock.now()
    while not thermal.settled():
        waited = clock.now() - start
        if waited >= timeout_s:
            raise ChuckNotSettled(setpoint_c, float(thermal.temperature()), timeout_s)
        clock.wait(min(poll_s, timeout_s - waited))
    return float(clock.now() - start)


def plan_visits(setpoints_c, reference_c: float, plan: str) -> list[tuple[float, bool]]:
    """(set point, is reference) in visiting order: reference first and last, the
    others hottest first, the reference after each of them when ``interleaved``."""
    others = sorted({float(s) for s in setpoints_c if float(s) != reference_c}, reverse=True)
    visits = [(reference_c, True)]
    for s in others:
        visits.append((s, False))
        if plan == "interleaved":
            visits.append((reference_c, True))
    if not visits[-1][1]:
        visits.append((reference_c, True))
    return visits


def check_setpoints(setpoints_c, limits) -> tuple[float, ...]:
    """Every set point within the chip's temperature limits, or the guard's error."""
    guard = SafetyGuard(limits)
    points = tuple(guard.temperature(s) for s in np.atleast_1d(np.asarray(setpoints_c,
                                                                           dtype=object)))
    if len(points) < 2:
        raise TempcalError("a temperature sweep needs at least two set points (the "
                           f"reference and one more), got {len(points)}")
    return points


def _volts(array, datasheet, params: SweepParams) -> float:
    volts = params.mvm_volts
    if volts is None:
        volts = getattr(array, "read_voltage", None)
    if volts is None and datasheet is not None:
        volts = datasheet.window.read_voltage
    limit = float(array.limits.max_read_voltage)
    volts = 0.5 * limit if volts is None else float(volts)
    if volts > limit:
        raise TempcalError(f"mvm_volts {volts:g} V exceeds the chip's read limit {limit:g} V")
    return volts


def calibration_vectors(rows: int, count: int, volts: float) -> np.ndarray:
    """``count`` fixed inputs (count, rows), each row on at ``volts`` with probability 1/2:
    inputs as dense as typical ones, so their IR drop is too. Seeded: the same every visit."""
    rng = np.random.default_rng(12)
    return (rng.random((count, rows)) < 0.5) * float(volts)


class _Sweep:
    """One sweep: the instruments, the plan, the counters and what each visit measured."""

    def __init__(self, thermal, clock, array, params: SweepParams, volts: float, progress):
        self.thermal, self.clock, self.array, self.params = thermal, clock, array, params
        self.volts, self.progress = volts, progress
        self.drive = calibration_vectors(array.shape[0], params.calibration_vectors, volts)
        self.range_a = params.mvm_range_a
        self.settable = getattr(array, "set_mvm_range", None) is not None
        self.reads = self.cells = self.mvm_calls = self.vectors = 0
        self.visits: list[dict] = []

    def visit(self, setpoint: float, reference: bool, index: int, total: int) -> None:
        p, start = self.params, self.clock.now()
        if self.progress is not None:
            self.progress(index, total, setpoint)
        self.thermal.set_temperature(setpoint)
        waited = settle(self.thermal, self.clock, setpoint, p.settle_timeout_s, p.poll_s)
        if p.soak_s:
            self.clock.wait(p.soak_s)
        before = float(self.thermal.temperature())
        reads = np.stack([np.asarray(self.array.read(averages=p.read_averages), np.float64)
                          for _ in range(p.reads)])
        self.reads += p.reads
        self.cells += reads.size
        mean = reads.mean(axis=0)
        sem = reads.std(axis=0, ddof=1) / np.sqrt(p.reads) if p.reads > 1 else np.zeros_like(mean)
        chain = self.mvm(mean)
        after = float(self.thermal.temperature())
        self.visits.append(dict(setpoint=setpoint, reference=reference, reads=mean,
                                sem=sem, chuck=0.5 * (before + after),
                                time=float(self.clock.now()), settle=waited,
                                dwell=float(self.clock.now() - start), **chain))

    def mvm_range(self, reads: np.ndarray) -> float | None:
        """The column range for every visit's vectors (set where settable), A: from the
        first visit's reads, with room for the hot visits' currents."""
        if not self.settable:
            return None
        if self.range_a is None:
            peak = float(np.max(self.drive @ np.nan_to_num(reads)))
            self.range_a = float(np.clip(RANGE_MARGIN * peak, MIN_RANGE_A, MAX_RANGE_A))
        self.array.set_mvm_range(self.range_a)
        return self.range_a

    def mvm(self, reads: np.ndarray) -> dict[str, np.ndarray]:
        """One MVM transaction: the zero inputs, then the calibration vectors repeated."""
        p, rows = self.params, self.array.shape[0]
        range_a = self.mvm_range(reads)
        x = np.vstack([np.zeros((p.zero_vectors, rows)), np.tile(self.drive, (p.mvm_repeats, 1))])
        currents = np.asarray(self.array.mvm(x), dtype=np.float64)
        self.mvm_calls += 1
        self.vectors += x.shape[0]
        zero = currents[:p.zero_vectors]
        cal = currents[p.zero_vectors:].reshape(p.mvm_repeats, self.drive.shape[0], -1)
        offset = zero.mean(axis=0)
        noise = zero.std(axis=0, ddof=1) if zero.shape[0] > 1 else np.zeros(zero.shape[1])
        limit = CLIPPED * (range_a if range_a is not None else np.inf)
        clipped = np.any(np.abs(cal) >= limit, axis=0)
        scale = 1.0 if range_a is None else range_a
        return {"offset": offset / scale, "noise": noise / scale,
                "cal": np.where(clipped, np.nan, cal.mean(axis=0) - offset)}


def temperature_sweep(thermal, clock, array, setpoints_c=(25.0, 45.0, 65.0, 85.0), *,
                      params: SweepParams | None = None, datasheet=None,
                      progress=None) -> TemperatureSweep:
    """Measure the die at each set point of the chuck (ThermalController role).

    ``setpoints_c``: degC, the reference (``params.reference_c``, default the first)
    among them. Every set point is checked against the chip's limits
    (``datasheet.limits``, else ``array.limits``) before the first command. The
    sweep ends at the first set point. ``progress(visit, visits, setpoint_c)`` is
    called before each visit. Returns a :class:`TemperatureSweep`; fit a model with
    :func:`protocols.tempcal.fit_model`.
    """
    params = params or SweepParams()
    limits = datasheet.limits if datasheet is not None else array.limits
    points = check_setpoints(setpoints_c, limits)
    reference = points[0] if params.reference_c is None else float(params.reference_c)
    if reference not in points:
        raise TempcalError(f"reference_c {reference:g} degC must be one of the set points "
                           f"{', '.join(f'{p:g}' for p in points)}")
    plan = plan_visits(points, reference, params.plan)
    sweep = _Sweep(thermal, clock, array, params, _volts(array, datasheet, params), progress)
    start, wall = clock.now(), time.perf_counter()
    for i, (setpoint, is_ref) in enumerate(plan):
        sweep.visit(setpoint, is_ref, i, len(plan))
    return _result(sweep, reference, float(clock.now() - start), time.perf_counter() - wall)


def _paired(reference: np.ndarray) -> np.ndarray:
    """For each visit, the next reference visit (itself for a reference visit)."""
    idx = np.arange(reference.size)
    refs = idx[reference]
    nxt = refs[np.minimum(np.searchsorted(refs, idx), refs.size - 1)]
    return np.where(reference, idx, nxt)


def _result(sweep: _Sweep, reference_c: float, bench_s: float, wall_s: float):
    v = sweep.visits

    def stack(key, dtype=np.float64):
        return np.array([visit[key] for visit in v], dtype=dtype)

    is_ref = stack("reference", bool)
    return TemperatureSweep(
        setpoints_c=stack("setpoint"), chuck_c=stack("chuck"), times_s=stack("time"),
        reference=is_ref, paired=_paired(is_ref), reads_s=stack("reads"),
        read_sem_s=stack("sem", np.float32), mvm_offset=stack("offset"),
        mvm_noise=stack("noise"), calibration_a=stack("cal"), calibration_v=sweep.drive,
        dwell_s=stack("dwell"), settle_s=stack("settle"), reference_c=reference_c,
        mvm_range_a=np.nan if sweep.range_a is None or not sweep.settable else sweep.range_a,
        mvm_volts=sweep.volts, zero_vectors=sweep.params.zero_vectors,
        reads=sweep.params.reads,
        read_averages=sweep.params.read_averages,
        bench_time_s=bench_s, wall_time_s=wall_s, read_transactions=sweep.reads,
        cells_read=sweep.cells, mvm_transactions=sweep.mvm_calls, mvm_vectors=sweep.vectors)
