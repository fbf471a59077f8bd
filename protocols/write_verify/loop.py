"""The write-verify loop, array-parallel, in named phases.

* **program**: iterations until every targeted cell is settled. Each one reads
  every cell still in play in one transaction and pulses all that need it in
  one more, through the array role's flat cell lists:

  - *verify*: read; judge probed cells; learn from the last batch's steps;
  - *confirm*: a cell that read inside the band is re-read, unpulsed, until the
    mean of its reads is clearly accepted or clearly out;
  - *judge*: active cells near the band go to confirmation, stalled ones are
    classified (probe, unreachable), those over budget are exhausted;
  - *pilot*: while the response model has learned nothing, the first batch goes
    to a random few cells whose steps teach it the population's response;
  - *pulse*: polarity from the sign of the error, amplitude and width from the
    response model; probes get one opposite-polarity pulse.
* **touch-up**: after a relaxation wait (clock role), re-read the converged
  cells and program again those that left the band.
* **hold** (``hold_s`` > 0, instead of touch-up): rounds of wait and re-read that
  fit the die's relaxation law (``hold.py``), predict each cell's chance of being
  in band ``hold_s`` after programming ends, and program again, aimed at the
  value the law expects at the hold time, those unlikely to be; until the
  predicted in-band stops improving.

Uses only the ArrayController and Clock roles: no instrument, file or print.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from protocols.write_verify.hold import HoldParams, RelaxationFit, RelaxationLaw, log_age
from protocols.write_verify.params import WriteVerifyError, WriteVerifyParams
from protocols.write_verify.read_noise import ReadNoise
from protocols.write_verify.response import (
    CHUNK,
    RESET,
    SET,
    AdaptiveResponse,
    PulseModel,
    ResponseModel,
)
from protocols.write_verify.result import IterationRecord, Progress, WriteVerifyResult
from protocols.write_verify.status import IN_PLAY, SETTLED, CellStatus

IDLE, ACTIVE, CONVERGED = CellStatus.IDLE, CellStatus.ACTIVE, CellStatus.CONVERGED
UNRESPONSIVE, UNREACHABLE = CellStatus.UNRESPONSIVE, CellStatus.UNREACHABLE
EXHAUSTED, CONFIRM, PROBE = CellStatus.EXHAUSTED, CellStatus.CONFIRM, CellStatus.PROBE
# per-cell conductances are stored as float32 (7 digits: 1e-13 S on a 1e-6 S band), and
# gathered to float64 wherever they are computed with
G_DTYPE = np.float32


def write_verify(
    array,
    target_siemens: np.ndarray,
    tolerance: float | None = None,
    clock=None,
    params: WriteVerifyParams | None = None,
    progress: Callable[[Progress], None] | None = None,
    response: ResponseModel | None = None,
    read_noise: ReadNoise | None = None,
    relaxation: RelaxationLaw | None = None,
    hold: HoldParams | None = None,
    **overrides,
) -> WriteVerifyResult:
    """Program ``target_siemens`` (NaN = leave alone) onto ``array``.

    ``tolerance`` (S) and any field of :class:`WriteVerifyParams` may be given
    as keywords. ``clock`` (Clock role) is needed for the relaxation wait and
    for bench time; without one, no wait happens and bench time is 0.
    ``response``: the per-cell response model to start from (None: a fresh
    :class:`AdaptiveResponse`; a previous result's ``response`` to carry on
    what it learned, no pilot then; the benchmarks' oracle). ``read_noise``:
    likewise the read-noise fit. Both are updated in place and returned in the
    result. ``hold_s`` (seconds; a :class:`HoldParams` field, like every
    ``hold_<name>`` keyword, or ``hold=``): aim for the band that long after
    programming ends (see ``hold.py``); ``relaxation``: a law learned before on
    this die (a result's ``relaxation``), so the first pass is aimed already.
    """
    hold = _hold_params(hold, overrides)
    params = _with_overrides(params or WriteVerifyParams(), tolerance, overrides)
    shape = tuple(array.shape)
    flat_t = _checked_target(target_siemens, shape)
    n = flat_t.size
    model = _pulse_model_for(array, params)
    if response is None:
        response = AdaptiveResponse(n, model, initial_gain=params.initial_gain,
                                    noise=params.verify_noise)
    elif getattr(response, "size", n) != n:
        raise WriteVerifyError(f"the response model covers {response.size} cells, the array "
                               f"has {n}")
    if hold.on and clock is None:
        raise WriteVerifyError("hold_s needs a clock (the Clock role) to wait and re-read")
    loop = _Loop(array, clock, params, response, flat_t, np.isfinite(flat_t), shape, progress,
                 read_noise, relaxation, hold)
    loop.program()
    if hold.on:
        loop.hold()
    else:
        loop.touch_up()
    return loop.result()


def _with_overrides(params: WriteVerifyParams, tolerance: float | None,
                    overrides: dict) -> WriteVerifyParams:
    if tolerance is not None:
        overrides["tolerance"] = tolerance
    if not overrides:
        return params
    try:
        return replace(params, **overrides)
    except TypeError as exc:
        raise WriteVerifyError(str(exc)) from None


def _hold_params(hold: HoldParams | None, overrides: dict) -> HoldParams:
    """``hold`` with the ``hold_s`` / ``hold_<name>`` keywords taken out of ``overrides``."""
    names = {"hold_s": "hold_s", **{f"hold_{f}": f for f in HoldParams.__dataclass_fields__
                                    if f != "hold_s"}}
    mine = {names[k]: overrides.pop(k) for k in list(overrides) if k in names}
    hold = hold or HoldParams()
    return replace(hold, **mine) if mine else hold


def _checked_target(target_siemens: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The targets, flat; finite and non-negative, or NaN (skip), at least one."""
    target = np.asarray(target_siemens, dtype=np.float64)
    if target.shape != shape:
        raise WriteVerifyError(f"target has shape {target.shape}, the array is {shape}")
    if np.any(np.isinf(target)) or np.any(target[np.isfinite(target)] < 0):
        raise WriteVerifyError("targets must be finite, non-negative conductances (NaN = skip)")
    flat_t = target.ravel()
    if not np.isfinite(flat_t).any():
        raise WriteVerifyError("no cell has a target (all NaN)")
    return flat_t


def _pulse_model_for(array, params: WriteVerifyParams) -> PulseModel:
    """Cap the pulse model at the controller's limits, and start it at the shortest
    pulse the controller can make (an SMU's pulse mode may not go below tens of us:
    the per-cell rates learned then absorb the longer reference width)."""
    model = params.pulse_model
    shortest = getattr(array, "min_pulse_width_s", None)
    if shortest is not None and shortest > model.width_reference:
        model = replace(model, width_reference=float(shortest))
    limits = getattr(array, "limits", None)
    if limits is None:
        return model
    model = replace(model, v_max=min(model.v_max, limits.max_program_voltage),
                    w_max=min(model.w_max, limits.max_pulse_width))
    if model.width_reference > model.w_max:
        raise WriteVerifyError(f"the array's shortest pulse ({model.width_reference:g} s) is "
                               f"longer than the chip allows ({model.w_max:g} s): this "
                               "controller cannot program this chip")
    return model


SATURATE = 100  # stalls and rejects stop counting this far above their threshold


def _counter_dtype(most: int) -> type:
    """The narrowest unsigned type holding counts up to ``most``."""
    return np.uint8 if most < 255 else np.uint16 if most < 65535 else np.int64


def _bump(count: np.ndarray, threshold: int) -> np.ndarray:
    """``count`` + 1, saturating ``SATURATE`` above ``threshold`` (where only whether
    it reached the threshold still matters)."""
    return np.minimum(count, threshold + SATURATE - 1) + 1


class _Loop:
    """The state of one run: per-cell arrays over the flat array, and the phases."""

    def __init__(self, array, clock, params, response, flat_t, targeted, shape, progress,
                 read_noise: ReadNoise | None = None, relaxation: RelaxationLaw | None = None,
                 hold: HoldParams | None = None):
        self.array, self.clock, self.p = array, clock, params
        self.h = hold or HoldParams()
        self.response = response
        # (which cells are targeted is kept in status: IDLE is exactly the untargeted)
        self.t, self.shape, self.n_targeted = flat_t, shape, int(np.count_nonzero(targeted))
        self.progress = progress
        self.accept = params.tolerance * params.accept_fraction  # fixed acceptance half-width
        self.move_eps = params.move_fraction * params.tolerance  # "moved", S
        n = flat_t.size
        self.status = np.where(targeted, np.int8(ACTIVE), np.int8(IDLE))
        self.g = np.full(n, np.nan, G_DTYPE)  # best verify estimate
        # counters in the narrowest type their bounds allow: pulses reach max_pulses (+1, a
        # probe); stalls and rejects only matter up to stall_pulses and doubt_rounds, so
        # they saturate at SATURATE (above both) when those are small
        self.pulses = np.zeros(n, _counter_dtype(params.max_pulses + 1))
        self.stalls = np.zeros(n, _counter_dtype(params.stall_pulses + SATURATE))
        self.max_move = np.zeros(n, G_DTYPE)  # largest move in the pulsed direction, S
        # the cells probed by the last batch and their reads before it (probes are few,
        # and judged at the next verify: no per-cell array)
        self.probed = (np.empty(0, np.intp), np.empty(0, G_DTYPE))
        # unpulsed reads of a confirming cell so far (their mean is self.g)
        reads_max = max(params.max_confirm_reads, params.max_confirm_reads_reset, 2)
        self.n_reads = np.zeros(n, np.int8 if reads_max < 100 else np.int16)
        # confirmations that ended in a pulse
        self.rejects = np.zeros(n, _counter_dtype(params.doubt_rounds + SATURATE))
        self.noise = ReadNoise() if read_noise is None else read_noise
        # the previous unpulsed read of a confirming cell
        self.g_last = np.full(n, np.nan, G_DTYPE)
        self.history: list[IterationRecord] = []
        self.iterations = 0
        self.waited = 0.0  # bench seconds spent in relaxation waits
        self.tx0 = array.transactions
        self.t0_bench = self.bench_now()
        self.phase_start = self.t0_bench
        self.t0_wall = time.perf_counter()
        self.pending = None  # (idx, polarity, volts, width, g_before) of the last batch
        # Pilot: if the response model has learned nothing yet, the first batch goes to
        # a random few cells; the law fitted from their steps aims everyone else's.
        self.pilot_pending = bool(response.needs_pilot())
        # hold mode: the loop aims at self.t, the caller's targets stay in self.goal;
        # per cell the bench time (since t0_bench) of the last pulse and of the last look
        self.goal, self.law, self.hold_predicted, self.hold_rounds = flat_t, relaxation, None, 0
        self.must_pulse = None  # hold mode: cells re-opened for a pulse, not a re-read
        # variance (S^2) of what accepted cells did between acceptance and re-read beyond
        # read noise, learned at each touch-up re-read (0 until one)
        self.change_var = 0.0
        self.late = False  # past the phase's deadline (see run)
        if self.h.on:
            self.must_pulse = np.zeros(n, bool)
            self.t = flat_t.copy()
            self.t_pulse = np.zeros(n, np.float32)
            self.t_seen = np.zeros(n, np.float32)
            if relaxation is not None:
                self._aim(np.flatnonzero(targeted), relaxation)

    def bench_now(self) -> float:
        return self.clock.now() if self.clock is not None else 0.0

    def _bench_time(self) -> float:
        return self.bench_now() - self.t0_bench

    # -- the phases -------------------------------------------------------------------
    def program(self) -> None:
        """Program phase: iterate until every targeted cell is settled."""
        self.phase_start = self.bench_now()
        self.run("program")

    def touch_up(self) -> None:
        """Touch-up phase: after each relaxation wait, re-read the converged cells and
        program again those that relaxed out of the band. ``touchup_rounds`` rounds, and
        more (up to ``touchup_rounds_max``) while a round re-opens at least
        ``touchup_more_share`` of the cells it re-read: a die that relaxes strongly gets
        the rounds it needs, one that holds stops early."""
        p = self.p
        rounds, share = 0, 0.0
        while rounds < p.touchup_rounds or (0 < rounds < p.touchup_rounds_max
                                            and share >= p.touchup_more_share):
            rounds += 1
            wait = max(p.relax_wait_s, p.relax_wait_factor * (self.bench_now() - self.phase_start))
            if self.clock is None or wait <= 0:
                break
            self.clock.wait(wait)
            self.waited += wait
            share = self.reopen_drifted()
            if not share:
                break
            self.phase_start = self.bench_now()
            self.run("touch-up")

    def run(self, phase: str) -> None:
        """Iterations of verify, confirm, judge and pulse until no cell is in play.

        With ``deadline_factor``: once ``deadline_share`` of the cells in play at the
        start are settled, at the phase's k-th iteration, the cells still in play after
        ``deadline_factor`` x k iterations are settled on what their reads say
        (:attr:`late`): a confirming cell is accepted on a mean within the band on
        ``deadline_confidence`` (after >= 2 reads), and every other is given up
        (exhausted) instead of pulsed. The last iterations of a run are otherwise a few
        dozen cells of a million whose landings keep missing the band by a fraction."""
        p = self.p
        started, deadline, it0, self.late = 0, None, self.iterations, False
        while self.iterations < p.max_iterations:
            idx = np.flatnonzero(np.isin(self.status, IN_PLAY))
            if idx.size == 0:
                break
            if p.deadline_factor is not None:
                if started == 0:
                    started = idx.size
                elif deadline is None and idx.size <= (1 - p.deadline_share) * started:
                    deadline = int(np.ceil(p.deadline_factor * (self.iterations - it0)))
                self.late = deadline is not None and (self.iterations - it0) >= deadline
            idx, g = self._verify(idx)
            confirming = self.status[idx] == CONFIRM
            self._confirm(idx[confirming], g[confirming])
            self._judge(idx[~confirming], g[~confirming])
            out_of_budget = (self.status[idx] == ACTIVE) & (
                (self.pulses[idx] >= p.max_pulses) | self.late)
            self.status[idx[out_of_budget]] = EXHAUSTED
            # the batch's cells, and nothing batch-sized kept beside them while it is sent
            active = int(idx.size)
            todo, probes = idx[self.status[idx] == ACTIVE], idx[self.status[idx] == PROBE]
            del idx, g, confirming, out_of_budget
            pulsed = self._pulse(todo, probes)
            del todo, probes
            self.iterations += 1
            self._record(phase, active, pulsed)
        self.pending = None

    # -- verify -----------------------------------------------------------------------
    def _read(self, idx: np.ndarray) -> np.ndarray:
        """Verify reads of cells ``idx``: the mean of ``reads_per_verify`` reads, one
        transaction each; a read of every cell goes as one whole-array read."""
        whole = idx.size == self.t.size  # then idx lists every cell, in order
        reads = []
        for _ in range(self.p.reads_per_verify):
            if whole:
                reads.append(np.asarray(self.array.read(averages=self.p.read_averages),
                                        np.float64).ravel())
            else:
                reads.append(self.array.read_cells(idx, averages=self.p.read_averages))
        if len(reads) == 1:  # no stacked copy of a whole-array read
            return np.asarray(reads[0], np.float64)
        return np.mean(reads, axis=0)

    def _verify(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Read the cells in play; judge the probed ones and learn from the last batch.
        Returns the cells left (probes are done) and their reads."""
        g = self._read(idx)
        probing = self.status[idx] == PROBE
        if np.any(probing):
            self._judge_probe(idx[probing], g[probing])
            keep = ~probing
            idx, g = idx[keep], g[keep]
        # a confirming cell's estimate is the mean of its reads, updated in _confirm
        fresh = self.status[idx] != CONFIRM
        self.g[idx[fresh]] = g[fresh]
        del fresh
        if self.pending is not None:
            self._learn()
        return idx, g

    def _learn(self) -> None:
        """Tell the response model what the last batch did; count stalls at full drive."""
        idx, polarity, volts, width, g_before = self.pending
        self.pending = None
        g_after = self.g[idx]  # every pulsed cell stayed active, so it was just re-read
        moved = (g_after - g_before) * np.where(polarity == SET, 1.0, -1.0)
        ok = np.isfinite(moved)
        if ok.all():  # (no filtered copies of batch-sized arrays)
            self.response.observe(idx, polarity, volts, width, moved, g_before)
            self.max_move[idx] = np.maximum(self.max_move[idx], moved)
        else:
            self.response.observe(idx[ok], polarity[ok], volts[ok], width[ok], moved[ok],
                                  g_before[ok])
            self.max_move[idx[ok]] = np.maximum(self.max_move[idx[ok]], moved[ok])
        strongest = self.response.at_max_drive(volts, width, polarity)
        # a real move stands clear of read noise, which grows with conductance
        clear = np.maximum(np.maximum(self.move_eps, 0.03 * np.abs(g_after)),
                           self._move_noise(g_after, 3.0))
        stalled = strongest & (moved < clear)
        self.stalls[idx] = np.where(stalled, _bump(self.stalls[idx], self.p.stall_pulses),
                                    np.where(moved >= clear, 0, self.stalls[idx]))

    def _judge_probe(self, idx: np.ndarray, g: np.ndarray) -> None:
        """A probed cell that moved the other way responds: it is saturated, not stuck."""
        self.g[idx] = g
        g_probe = self._probe_reads(idx)
        moved = np.abs(g - g_probe)
        needed = np.maximum(np.maximum(4 * self.p.move_fraction * self.p.tolerance,
                                       0.15 * np.abs(g_probe)),
                            self._move_noise(g_probe, 5.0))
        responds = moved >= needed
        self.status[idx[responds]] = UNREACHABLE
        self.status[idx[~responds]] = UNRESPONSIVE

    def _probe_reads(self, idx: np.ndarray) -> np.ndarray:
        """The reads of cells ``idx`` before their probe pulse (NaN: not probed)."""
        cells, g = self.probed
        if cells.size == 0:
            return np.full(idx.size, np.nan)
        pos = np.minimum(np.searchsorted(cells, idx), cells.size - 1)
        return np.where(cells[pos] == idx, g[pos].astype(np.float64), np.nan)

    # -- confirm ----------------------------------------------------------------------
    def _confirm(self, idx: np.ndarray, g: np.ndarray) -> None:
        """Sequential verify: a cell that read inside the band is re-read (in the same
        transaction as the active cells), not pulsed, until the mean of its reads is
        clearly in the acceptance zone or clearly out of the band."""
        p = self.p
        previous = self.g[idx].astype(np.float64)  # the mean of the reads so far
        self.noise.add(previous, g - self.g_last[idx])  # unpulsed re-reads: read noise
        n_before = self.n_reads[idx].astype(np.float64)
        self.n_reads[idx] += 1
        n_reads = self.n_reads[idx].astype(np.int16)  # (sqrt of int8 would be float16)
        self.g_last[idx] = g
        mean = (previous * n_before + g) / (n_before + 1)
        self.g[idx] = mean
        err = np.abs(mean - self.t[idx])
        accepted = ((err <= self._accept_zone(mean, n_reads, self.accept, self.rejects[idx]))
                    & (n_reads >= 2))
        # a confirmation that would end in a RESET may take more reads, where a RESET
        # costs more than reads do (PCM: it melts the cell back to the bottom)
        budget = np.where(mean > self.t[idx], p.max_confirm_reads_reset, p.max_confirm_reads)
        spent = n_reads >= budget
        if p.budget_confidence is not None and np.any(spent & ~accepted):
            # the reads are spent: a pulse would land anywhere in the landing scatter,
            # so a mean still inside the band on budget_confidence is kept
            last = spent & ~accepted
            sigma = self.noise.sigma(mean[last])
            if sigma is not None:
                zone = p.tolerance - p.budget_confidence * sigma / np.sqrt(n_reads[last])
                kept = np.zeros(idx.size, bool)
                kept[last] = err[last] <= zone
                accepted |= kept
        if self.late:  # past the deadline: settled on the reads so far
            sigma = self.noise.sigma(mean)
            if sigma is not None:
                zone = p.tolerance - p.deadline_confidence * sigma / np.sqrt(n_reads)
                accepted |= (err <= zone) & (n_reads >= 2)
            spent |= n_reads >= 2
        out = ~accepted & ((err > self._doubt_zone(mean, n_reads)) | spent)
        self.status[idx[accepted]] = CONVERGED
        self.status[idx[out]] = ACTIVE
        self.rejects[idx[out]] = _bump(self.rejects[idx[out]], p.doubt_rounds)

    def _accept_zone(self, g: np.ndarray, n_reads: np.ndarray, fixed: float,
                     rejects: np.ndarray | None = None) -> np.ndarray:
        """Per-cell acceptance half-width: confident the truth is within tolerance. The
        confidence asked of a cell falls by ``accept_relax`` with each confirmation of it
        that ended in a pulse (``rejects``), down to ``accept_confidence_min``: a cell
        whose pulses keep landing near the band's edge, where the reads cannot settle it
        in a confirmation, is not pulsed and re-read for the rest of the run."""
        p = self.p
        sigma = self.noise.sigma(g) if p.accept_confidence > 0 else None
        if sigma is None:
            zone = np.full(g.shape, fixed)
        else:
            z = p.accept_confidence
            if rejects is not None and p.accept_relax < 1:
                late = np.maximum(rejects.astype(np.float64) - p.doubt_rounds, 0.0)
                z = np.maximum(min(z, p.accept_confidence_min), z * p.accept_relax ** late)
            # the uncertainty of the mean, and of what the cell will still do by the
            # next look (learned at the last re-read, x change_weight)
            spread = np.sqrt(sigma ** 2 / n_reads + p.change_weight * self.change_var)
            zone = p.tolerance - z * spread
            zone = np.clip(zone, p.accept_min_fraction * p.tolerance,
                           p.accept_max_fraction * p.tolerance)
        if self.h.on and self.h.accept_fraction < 1:
            zone = np.minimum(zone, self.h.accept_fraction * p.tolerance)
        return zone

    def _doubt_zone(self, g: np.ndarray, n_reads: np.ndarray) -> np.ndarray:
        """Half-width beyond which a mean of ``n_reads`` is confidently out of the band."""
        p = self.p
        sigma = self.noise.sigma(g) if p.doubt_confidence > 0 else None
        if sigma is None:
            return np.full(g.shape, p.tolerance)
        return p.tolerance + p.doubt_confidence * sigma / np.sqrt(n_reads)

    # -- judge ------------------------------------------------------------------------
    def _judge(self, idx: np.ndarray, g: np.ndarray) -> None:
        """Active cells near the band go to confirmation (or, without it, converge);
        the others stay active unless they stalled (see :meth:`_classify`)."""
        p = self.p
        err = g - self.t[idx]
        if p.confirm:
            # a read just outside the band may be noise: confirm it before pulsing,
            # until the cell has failed doubt_rounds confirmations; after that only
            # the acceptance zone earns another
            zone = np.where(self.rejects[idx] >= p.doubt_rounds, self.accept,
                            self._doubt_zone(g, np.ones(idx.size)))
            done = np.abs(err) <= zone
            if self.must_pulse is not None:  # hold: its trajectory was judged, not its read
                done &= ~self.must_pulse[idx]
            self.status[idx[done]] = CONFIRM
            self.g_last[idx[done]] = g[done]
            # the read that sent a cell to confirmation was chosen for lying near the
            # band: counted, it would pull every mean inward (truly-out cells accepted);
            # the mean is of the reads after it
            self.n_reads[idx[done]] = 0
        else:
            done = np.abs(err) <= self.accept
            self.status[idx[done]] = CONVERGED
        self._classify(idx[~done])

    def _classify(self, idx: np.ndarray) -> None:
        """Cells stalled at the strongest drive: probe those that never moved, report the
        others unreachable (they moved, then saturated)."""
        stuck = idx[self.stalls[idx] >= self.p.stall_pulses]
        if stuck.size == 0:
            return
        # "moved" must stand clear of read noise, which grows with conductance
        needed = np.maximum(np.maximum(4 * self.move_eps, 0.15 * np.abs(self.g[stuck])),
                            self._move_noise(self.g[stuck], 5.0))
        never_moved = self.max_move[stuck] < needed
        self.status[stuck[never_moved]] = PROBE
        self.status[stuck[~never_moved]] = UNREACHABLE

    def _move_noise(self, g: np.ndarray, z: float) -> np.ndarray:
        """z sigmas of the difference of two reads (0 until read noise is learned): a
        move smaller than that may be noise (PCM reads scatter by ~1 uS)."""
        sigma = self.noise.sigma(g)
        return np.zeros(np.shape(g)) if sigma is None else z * np.sqrt(2.0) * sigma

    # -- pilot ------------------------------------------------------------------------
    def _pilot(self, todo: np.ndarray) -> np.ndarray:
        """A random share of the cells, drawn per polarity so that each polarity's law
        has enough steps to be fitted however the targets split; at most
        ``pilot_max_cells`` of each (the fit wants a number of steps, not a share of the
        array, and a pilot cell, aimed before any law, costs about a pulse more)."""
        self.pilot_pending = False
        rng = np.random.default_rng(self.p.seed)
        going_up = self.g[todo] < self.t[todo]
        chosen = []
        for cells in (todo[going_up], todo[~going_up]):
            k = max(self.p.pilot_min_cells, int(round(self.p.pilot_fraction * cells.size)))
            if self.p.pilot_max_cells is not None:
                k = min(k, max(self.p.pilot_min_cells, self.p.pilot_max_cells))
            chosen.append(cells if k >= cells.size else rng.choice(cells, size=k, replace=False))
        return np.sort(np.concatenate(chosen))

    def _pilot_spread(self, wanted: np.ndarray) -> np.ndarray:
        """A designed experiment: the pilot's drives spread over a 9x range, so the
        population law is fitted over the whole curve, not one corner of it."""
        rng = np.random.default_rng(self.p.seed + 1)
        return wanted * np.exp(rng.uniform(-np.log(3.0), np.log(3.0), wanted.size))

    # -- pulse ------------------------------------------------------------------------
    def _pulse(self, todo: np.ndarray, probes: np.ndarray) -> int:
        """One batch: every active cell ``todo`` (the pilot's only, first) toward its
        target, and each probe the other way. Returns the number of cells pulsed."""
        p = self.p
        pilot = self.pilot_pending and todo.size > 0
        if pilot:
            todo = self._pilot(todo)
        self.probed = (probes, self.g[probes])  # (idx is sorted, so probes are)
        if not (todo.size or probes.size):
            self.pending = None
            return 0
        e = self.g[todo] - self.t[todo]
        polarity = np.where(e < 0, np.int8(SET), np.int8(RESET))
        wanted = np.abs(e) * p.aim
        if p.overshoot_cost > 1:
            wanted -= self._shortfall(todo, polarity, wanted)
        if pilot:
            wanted = self._pilot_spread(wanted)
        if probes.size:  # probes go the other way, asking for a clearly visible move
            e_p = self.g[probes] - self.t[probes]
            polarity = np.concatenate([polarity,
                                       np.where(e_p < 0, np.int8(RESET), np.int8(SET))])
            wanted = np.concatenate([wanted, np.maximum(
                4 * p.move_fraction * p.tolerance, 0.3 * np.abs(self.g[probes]))])
            todo = np.concatenate([todo, probes])
        del e
        volts, width = self.response.pulse_for(todo, polarity, wanted, self.g[todo])
        del wanted
        if p.escalate_pulses is not None:
            volts, width = self._escalate(todo, polarity, volts, width)
        if width.size and np.all(width == width[0]):  # one width: no array of it kept
            width = np.broadcast_to(width[:1], width.shape)
        self._send(todo, polarity, volts, width)
        self.pulses[todo] += 1
        if self.must_pulse is not None:
            self.must_pulse[todo] = False
        normal = self.status[todo] == ACTIVE
        if probes.size:
            todo, polarity, volts, width = (todo[normal], polarity[normal], volts[normal],
                                            width[normal])
        self.pending = (todo, polarity, volts, width, self.g[todo])
        return int(normal.size)

    def _escalate(self, todo: np.ndarray, polarity: np.ndarray, volts: np.ndarray,
                  width: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The strongest pulse for cells (not probes) that have had ``escalate_pulses``
        pulses without ever moving clearly (as :meth:`_classify` counts it) and still
        read within one band of zero, where a RESET cannot show a move either: a
        stuck-low cell whose target lies just outside its band gets small SETs whose
        expected move is lost in the read noise, so its drive never climbs to where the
        stall classifier runs. Three such pulses without a move classify it."""
        model = getattr(self.response, "model", None)
        if model is None:
            return volts, width
        g = self.g[todo].astype(np.float64)
        needed = np.maximum(np.maximum(4 * self.move_eps, 0.15 * np.abs(g)),
                            self._move_noise(g, 5.0))
        late = ((self.status[todo] == ACTIVE) & (self.pulses[todo] >= self.p.escalate_pulses)
                & (self.max_move[todo] < needed) & (np.abs(g) <= self.p.tolerance))
        if not np.any(late):
            return volts, width
        volts = np.array(volts, np.float64)
        width = np.array(width, np.float64)
        volts[late] = model.v_max
        width[late] = model.width_cap(polarity[late])
        return volts, width

    def _shortfall(self, todo: np.ndarray, polarity: np.ndarray,
                   wanted: np.ndarray) -> np.ndarray:
        """How far short of the target a SET aims (S) where overshooting costs
        ``overshoot_cost`` times more than undershooting (PCM: a RESET and a climb).
        With the landing ~ N(target + mu, s^2) (s^2: the steps' learned scatter and the
        read noise of the estimate), the expected cost P(over) C + P(under) is least at
        mu = -s^2 ln C / (2 tolerance); never more than half the planned move."""
        step = getattr(self.response, "step_scatter", None)
        up = polarity == SET
        out = np.zeros(wanted.shape)
        if step is None or not np.any(up):
            return out
        g = self.g[todo[up]].astype(np.float64)
        scatter = step(SET, g)
        if scatter is None:
            return out
        s2 = scatter ** 2 + self._read_var(g, 1)
        mu = s2 * np.log(self.p.overshoot_cost) / (2 * self.p.tolerance)
        out[up] = np.minimum(mu, 0.5 * wanted[up])
        return out

    def _send(self, cells: np.ndarray, polarity: np.ndarray, volts: np.ndarray,
              width: np.ndarray) -> None:
        """One pulse transaction on ``cells``, listed in row-major order; one width for
        all when every cell's is the same."""
        if volts.dtype != np.float64 or not (volts.flags.writeable and volts.flags.owndata):
            volts = np.array(volts, np.float64)  # a model's own array is not ours to sign
        reset = polarity != SET
        np.negative(volts, out=volts, where=reset)  # signed, in place (undone below)
        uniform = bool(np.all(width == width[0]))
        try:
            if np.all(cells[1:] > cells[:-1]):  # already in order (no probes): no copies
                self.array.pulse_cells(cells, volts, float(width[0]) if uniform else width)
            else:
                order = np.argsort(cells, kind="stable")
                self.array.pulse_cells(cells[order], volts[order],
                                       float(width[0]) if uniform else width[order])
        finally:
            np.negative(volts, out=volts, where=reset)
        if self.h.on:  # a pulse restarts the cell's relaxation
            self.t_pulse[cells] = self.t_seen[cells] = self._bench_time()

    def _record(self, phase: str, active: int, pulsed: int) -> None:
        converged = int(np.count_nonzero(self.status == CONVERGED))
        self.history.append(IterationRecord(
            iteration=self.iterations, phase=phase, active=active, pulsed=pulsed,
            converged=converged, transactions=self.array.transactions - self.tx0,
            bench_time_s=self._bench_time()))
        if self.progress is not None:
            settled = int(np.count_nonzero(np.isin(self.status, SETTLED)))
            self.progress(Progress(phase, self.iterations, pulsed, converged,
                                   self.n_targeted, settled, self._bench_time(),
                                   snapshot=self.result))

    # -- touch-up ---------------------------------------------------------------------
    def reopen_drifted(self) -> float:
        """Re-read converged cells (mean of two reads, combined with what was known of
        them: :meth:`_combine`); those out of the acceptance zone go on confirming.
        Returns the share of the re-read cells re-opened (0: none). Per cell in blocks
        of ``CHUNK`` (a million-cell re-read makes no million-cell temporaries beyond
        the reads)."""
        idx = np.flatnonzero(self.status == CONVERGED)
        if idx.size == 0:
            return 0.0
        first, second = self._read(idx), self._read(idx)
        self.noise.add(first, second - first)  # two reads of unpulsed cells: read noise
        first += second
        first *= 0.5  # the re-read: the mean of the two, in place
        stats = self._change_stats(idx, first)
        reopened = 0
        for start in range(0, idx.size, CHUNK):
            b = slice(start, start + CHUNK)
            cells = idx[b]
            g, n_eff = self._combine(cells, first[b], stats)
            self.g[cells] = g
            zone = self._accept_zone(g, n_eff, self.p.tolerance * self.p.accept_fraction,
                                     self.rejects[cells])
            again = (np.abs(g - self.t[cells]) > zone) & (self.pulses[cells] < self.p.max_pulses)
            # the re-opened cells carry on confirming from the evidence so far: a cell
            # that is out goes on to a pulse after a read or two, one that is in is not
            # disturbed
            self.status[cells[again]] = CONFIRM
            self.g_last[cells[again]] = second[b][again]
            self.stalls[cells[again]] = 0
            reopened += int(np.count_nonzero(again))
        return reopened / idx.size

    def _change_stats(self, idx: np.ndarray, new: np.ndarray) -> tuple[float, float] | None:
        """What accepted cells ``idx`` did between their estimate and the re-read ``new``,
        beyond read noise: the population's shift (the median change) and the change's
        variance (S^2; also kept as ``change_var``). None: not learned (read noise not
        known yet, too few cells, or ``reread_weight`` 0)."""
        if self.noise.fit is None or self.p.reread_weight <= 0 or idx.size < 32:
            return None
        change = (new - self.g[idx]).astype(np.float32)  # (compact: a median, one pass)
        shift = float(np.median(change))
        total, count = 0.0, 0
        for start in range(0, idx.size, CHUNK):
            b = slice(start, start + CHUNK)
            n_old = np.maximum(self.n_reads[idx[b]].astype(np.float64), 1.0)
            var_read = np.maximum(self.noise.sigma(new[b]), 1e-12) ** 2
            # E[(change - shift)^2] = read noise of both means + the cells' own change
            total += float(np.sum((change[b].astype(np.float64) - shift) ** 2
                                  - var_read * (0.5 + 1.0 / n_old)))
            count += n_old.size
        del change
        self.change_var = max(0.0, total / count)
        return shift, self.change_var

    def _combine(self, idx: np.ndarray, new: np.ndarray,
                 stats: tuple[float, float] | None = ...) -> tuple[np.ndarray, np.ndarray]:
        """Estimates of accepted cells from a two-read re-read ``new`` and what was known
        before (their estimate, the mean of ``n_reads`` reads), and the number of reads
        each is worth (stored in ``n_reads``). What the cells did meanwhile (relaxation;
        nothing on PCM before its drift sets in) comes from :meth:`_change_stats`
        (``stats``; by default learned from these cells). The old estimate, shifted,
        counts in inverse proportion to its variance (read noise of its mean plus that
        change), so cells that do not move keep their reads and cells that do are
        judged on the new ones."""
        p = self.p
        if stats is ...:
            stats = self._change_stats(idx, new)
        if stats is None:
            return new, np.full(idx.size, 2.0)
        shift, change_var = stats
        n_old = np.maximum(self.n_reads[idx].astype(np.float64), 1.0)
        var_read = np.maximum(self.noise.sigma(new), 1e-12) ** 2
        w_old = p.reread_weight / (var_read / n_old + change_var)
        w_new = 2.0 / var_read
        g = ((self.g[idx].astype(np.float64) + shift) * w_old + new * w_new) / (w_old + w_new)
        reads_max = max(p.max_confirm_reads, p.max_confirm_reads_reset)
        n_eff = np.clip(var_read * (w_old + w_new), 2.0, reads_max)
        # the cell's reads so far, as many as its estimate is worth (counts the next one)
        self.n_reads[idx] = np.floor(n_eff).astype(self.n_reads.dtype)
        return g, n_eff

    # -- hold -------------------------------------------------------------------------
    def hold(self) -> None:
        """Rounds of: wait, re-read the accepted cells, fit the relaxation law to every
        re-read so far, predict each cell's chance of being in band ``hold_s`` after
        now, and program again (aimed at the value expected then) those below
        ``touch_probability``. Stops, always just after a re-read, when the predicted
        in-band gains less than ``min_gain`` or nothing is left to do."""
        p, h = self.p, self.h
        fit = RelaxationFit(p.seed)
        wait = h.wait_s(p.relax_wait_s)
        best = -1.0
        for round_ in range(h.rounds):
            if not np.any(self.status == CONVERGED):
                break  # nothing accepted (a dead die): nothing to watch relax
            self.clock.wait(wait)
            self.waited += wait
            self._look(fit)
            self.hold_rounds = round_ + 1
            law = fit.law() or self.law
            if law is None:
                continue  # one look cannot fit a spread that grows with ln t
            self.law = law
            cells, prob = self._hold_probability()
            self.hold_predicted = float(prob.sum() / max(1, cells.size))
            if self.hold_predicted < best + h.min_gain or round_ == h.rounds - 1:
                break
            best = self.hold_predicted
            again = cells[(prob < h.touch_probability) & (self.status[cells] == CONVERGED)
                          & (self.pulses[cells] < p.max_pulses)]
            if again.size == 0 or self.iterations >= p.max_iterations:
                break
            self._aim(again, law, wait)
            self.status[again] = ACTIVE
            self.stalls[again] = 0
            self.must_pulse[again] = True
            self.phase_start = self.bench_now()
            self.run("hold")

    def _aim(self, idx: np.ndarray, law: RelaxationLaw, wait: float = 0.0) -> None:
        """Targets of cells about to be programmed: the caller's, less the shift the law
        expects from right after the pulse to the hold time (at least one more wait)."""
        g = self.goal[idx]
        self.t[idx] = g - law.shift(g, log_age(0.0), log_age(self.h.hold_s + wait))

    def _look(self, fit: RelaxationFit) -> None:
        """Re-read the accepted cells (mean of two reads); each re-read, against the cell's
        previous estimate and age, is a sample of the relaxation law."""
        idx = np.flatnonzero(self.status == CONVERGED)
        first, second = self._read(idx), self._read(idx)
        self.noise.add(first, second - first)
        g = 0.5 * (first + second)
        now = self._bench_time()
        var = self._read_var(self.g[idx], self.n_reads[idx]) + self._read_var(g, 2)
        fit.add(log_age(self.t_seen[idx] - self.t_pulse[idx]),
                log_age(now - self.t_pulse[idx]), self.g[idx], g, var)
        self.g[idx] = g
        self.t_seen[idx] = now
        self.n_reads[idx] = 2

    def _read_var(self, g: np.ndarray, n_reads) -> np.ndarray:
        """Variance of the mean of ``n_reads`` verify reads at ``g`` (0 until learned)."""
        sigma = self.noise.sigma(g)
        return np.zeros(np.shape(g)) if sigma is None else sigma ** 2 / np.maximum(n_reads, 1)

    def _hold_probability(self) -> tuple[np.ndarray, np.ndarray]:
        """Cells that can reach their targets (accepted or out of budget) and the chance,
        by the law, that each is in band ``hold_s`` after now."""
        cells = np.flatnonzero((self.status == CONVERGED) | (self.status == EXHAUSTED))
        now = self._bench_time()
        age_now = self.t_seen[cells] - self.t_pulse[cells]
        age_use = now + self.h.hold_s - self.t_pulse[cells]
        g = self.g[cells]
        prob = self.law.in_band(g, self.goal[cells], self.p.tolerance, log_age(age_now),
                                log_age(age_use), self._read_var(g, self.n_reads[cells]))
        return cells, np.nan_to_num(prob)

    # -- the result -------------------------------------------------------------------
    def result(self) -> WriteVerifyResult:
        final = np.where(self.status != IDLE, self.g.astype(np.float64), np.nan)
        status = self.status.reshape(self.shape)
        return WriteVerifyResult(
            target=self.goal.copy().reshape(self.shape), final=final.reshape(self.shape),
            pulses=self.pulses.astype(np.int32).reshape(self.shape),
            converged=status == CONVERGED, unresponsive=status == UNRESPONSIVE,
            unreachable=status == UNREACHABLE,
            exhausted=(status == EXHAUSTED) | (status == ACTIVE),
            iterations=self.iterations, history=tuple(self.history),
            transactions=self.array.transactions - self.tx0,
            bench_time_s=self._bench_time(), wall_time_s=time.perf_counter() - self.t0_wall,
            params=self.p, relax_wait_time_s=self.waited,
            response=self.response, read_noise=self.noise,
            hold_s=float(self.h.hold_s), in_band_hold_predicted=self.hold_predicted,
            relaxation=self.law if self.h.on else None, hold_rounds=self.hold_rounds,
            hold=self.h if self.h.on else None,
        )
