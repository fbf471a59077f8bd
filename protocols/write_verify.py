"""Write-verify programming of a target conductance matrix, array-parallel.

Each iteration reads every unconverged cell in one transaction and pulses all
of them in one more. Per cell: polarity from the sign of the error, amplitude
and width from what that cell has shown so far (a learned gain; step-up of
amplitude, then width, when it does not move; smaller steps near the target),
a tolerance band and a pulse budget. Cells that do not respond (stuck or
unformed) or saturate short of their target (unreachable) stop consuming
pulses and are reported separately. After convergence the loop lets the
cells relax (clock role), re-reads, and touches up those that left the band.

Uses only the ArrayController and Clock roles: no instrument, file or print.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from protocols.read_noise import ReadNoise
from protocols.response import RESET, SET, AdaptiveResponse, PulseModel, ResponseModel

# Per-cell status codes. CONFIRM: read in the band once, re-read (unpulsed) before
# it counts as converged, so one lucky noisy read cannot end a cell's programming.
# PROBE: stalled without ever moving; one opposite-polarity pulse tells a cell saturated
# at its bound (it moves: unreachable) from a stuck one (it does not: unresponsive).
IDLE, ACTIVE, CONVERGED, UNRESPONSIVE, UNREACHABLE, EXHAUSTED, CONFIRM, PROBE = range(8)
STATUS_NAMES = ("idle", "active", "converged", "unresponsive", "unreachable", "exhausted",
                "confirm", "probe")


class WriteVerifyError(ValueError):
    """Bad input to write-verify (shape, NaN-only targets, parameters)."""


@dataclass(frozen=True)
class WriteVerifyParams:
    """Knobs of the loop. Siemens, volts, seconds."""

    tolerance: float = 1e-6  # half-width of the band around each target, S
    accept_fraction: float = 0.8  # verify reads must be within this share of the band
    read_averages: int = 8  # conversions the instrument averages per verify read (one transaction)
    reads_per_verify: int = 1  # separate verify reads averaged per iteration (one transaction each)
    confirm: bool = True  # accept on the mean of >= 2 unpulsed reads (sequential verify)
    max_confirm_reads: int = 4  # reads of an in-band-looking cell before it is pulsed again
    max_confirm_reads_reset: int = 4  # the same when that pulse would be a RESET
    # accept when |mean - target| <= tolerance - z * sigma_read(G) / sqrt(n), with
    # sigma_read(G) = a + b G fitted online from repeat reads (0: fixed accept_fraction)
    accept_confidence: float = 1.3
    accept_max_fraction: float = 0.95
    # a read within tolerance + z * sigma_read / sqrt(n) is confirmed by more reads
    # before a pulse, so noise does not trigger one (worst: an abrupt RESET)
    doubt_confidence: float = 1.0
    doubt_rounds: int = 3  # failed confirmations after which a cell gets no more doubt
    max_pulses: int = 60  # per cell, touch-ups included
    max_iterations: int = 400
    stall_pulses: int = 3  # pulses at the strongest drive without moving -> classify
    move_fraction: float = 0.5  # "moved" means more than this share of the band
    aim: float = 1.0  # fraction of the error each pulse aims to remove
    # wait before re-reading for touch-up: as long as the phase before it took on the
    # bench clock (x relax_wait_factor), so the last cells programmed relax about as long
    # as the first had, and at least relax_wait_s (both 0: no touch-up)
    relax_wait_s: float = 3.0
    relax_wait_factor: float = 1.0
    touchup_rounds: int = 2
    initial_gain: float = 2e-6  # S per unit drive before anything is learned
    pilot_fraction: float = 0.05  # first pulses go to this share of cells to learn the law
    pilot_min_cells: int = 64
    seed: int = 0  # chooses the pilot cells
    verify_noise: float = 0.4e-6  # S; how much a single step's reading can mislead
    pulse_model: PulseModel = field(default_factory=PulseModel)

    def __post_init__(self) -> None:
        checks = {
            "tolerance": self.tolerance > 0,
            "accept_fraction": 0 < self.accept_fraction <= 1,
            "reads_per_verify": self.reads_per_verify >= 1,
            "read_averages": isinstance(self.read_averages, (int, np.integer))
            and self.read_averages >= 1,
            "max_pulses": self.max_pulses >= 1,
            "max_iterations": self.max_iterations >= 1,
            "stall_pulses": self.stall_pulses >= 1,
            "max_confirm_reads": self.max_confirm_reads >= 2,
            "max_confirm_reads_reset": self.max_confirm_reads_reset >= 2,
            "doubt_rounds": self.doubt_rounds >= 0,
            "aim": 0 < self.aim <= 1.5,
            "relax_wait_s": self.relax_wait_s >= 0,
            "relax_wait_factor": self.relax_wait_factor >= 0,
            "touchup_rounds": self.touchup_rounds >= 0,
            "initial_gain": self.initial_gain > 0,
            "pilot_fraction": 0 < self.pilot_fraction <= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise WriteVerifyError(f"{name}: invalid value {getattr(self, name)!r}")


@dataclass(frozen=True)
class IterationRecord:
    """One iteration: what was active and sent, and what it cost."""

    iteration: int
    phase: str  # "program" or "touch-up"
    active: int  # cells read and (if not converged) pulsed
    pulsed: int
    converged: int  # cells in the band after this iteration's verify
    transactions: int  # cumulative
    bench_time_s: float  # cumulative, on the clock role (virtual on the simulator)


@dataclass(frozen=True)
class Progress:
    phase: str
    iteration: int
    active: int  # cells pulsed this iteration
    converged: int
    total: int  # targeted cells
    settled: int = 0  # converged or classified (unresponsive, unreachable, exhausted)


@dataclass(frozen=True)
class WriteVerifyResult:
    """Outcome of a write-verify run. Conductances in siemens; NaN = not targeted."""

    target: np.ndarray
    final: np.ndarray  # best verify estimate of every targeted cell (mean of confirm reads)
    pulses: np.ndarray  # per cell
    converged: np.ndarray  # bool: accepted (verify reads within the acceptance band)
    unresponsive: np.ndarray  # bool: never moved (stuck, unformed)
    unreachable: np.ndarray  # bool: moved, but saturated short of the target
    exhausted: np.ndarray  # bool: pulse budget spent without converging
    iterations: int
    history: tuple[IterationRecord, ...]
    transactions: int
    bench_time_s: float  # on the clock role, relaxation waits included
    wall_time_s: float
    params: WriteVerifyParams
    relax_wait_time_s: float = 0.0  # of bench_time_s, spent waiting for relaxation

    @property
    def targeted(self) -> np.ndarray:
        return np.isfinite(self.target)

    @property
    def cells(self) -> int:
        return int(self.targeted.sum())

    @property
    def in_band_fraction(self) -> float:
        """Share of targeted cells whose last verify read is in the band (self-reported)."""
        return float(self.converged.sum() / max(1, self.cells))

    def pulse_stats(self) -> dict[str, float]:
        p = self.pulses[self.targeted]
        if p.size == 0:
            return {"mean": 0.0, "median": 0.0, "p99": 0.0}
        return {"mean": float(p.mean()), "median": float(np.median(p)),
                "p99": float(np.percentile(p, 99))}

    def summary(self) -> dict:
        stats = self.pulse_stats()
        return {
            "cells": self.cells, "in_band_fraction": self.in_band_fraction,
            "unresponsive_cells": int(self.unresponsive.sum()),
            "unreachable_cells": int(self.unreachable.sum()),
            "exhausted_cells": int(self.exhausted.sum()),
            "pulses_mean": stats["mean"], "pulses_median": stats["median"],
            "pulses_p99": stats["p99"], "iterations": self.iterations,
            "transactions": self.transactions, "bench_time_s": self.bench_time_s,
            "relax_wait_time_s": self.relax_wait_time_s, "wall_time_s": self.wall_time_s,
        }


def _pulse_model_for(array, params: WriteVerifyParams) -> PulseModel:
    """Cap the pulse model at the controller's limits."""
    model = params.pulse_model
    limits = getattr(array, "limits", None)
    if limits is None:
        return model
    return replace(model, v_max=min(model.v_max, limits.max_program_voltage),
                   w_max=min(model.w_max, limits.max_pulse_width))


def write_verify(
    array,
    target_siemens: np.ndarray,
    tolerance: float | None = None,
    clock=None,
    params: WriteVerifyParams | None = None,
    progress: Callable[[Progress], None] | None = None,
    response: ResponseModel | None = None,
    **overrides,
) -> WriteVerifyResult:
    """Program ``target_siemens`` (NaN = leave alone) onto ``array``.

    ``tolerance`` (S) and any field of :class:`WriteVerifyParams` may be given
    as keywords. ``clock`` (Clock role) is needed for the relaxation wait and
    for bench time; without one, no wait happens and bench time is 0.
    ``response`` replaces the learned per-cell model (benchmarks' oracle).
    """
    params = params or WriteVerifyParams()
    if tolerance is not None:
        overrides["tolerance"] = tolerance
    if overrides:
        try:
            params = replace(params, **overrides)
        except TypeError as exc:
            raise WriteVerifyError(str(exc)) from None
    target = np.asarray(target_siemens, dtype=np.float64)
    shape = tuple(array.shape)
    if target.shape != shape:
        raise WriteVerifyError(f"target has shape {target.shape}, the array is {shape}")
    if np.any(np.isinf(target)) or np.any(target[np.isfinite(target)] < 0):
        raise WriteVerifyError("targets must be finite, non-negative conductances (NaN = skip)")
    flat_t = target.ravel()
    targeted = np.isfinite(flat_t)
    if not targeted.any():
        raise WriteVerifyError("no cell has a target (all NaN)")
    n = flat_t.size
    model = _pulse_model_for(array, params)
    if response is None:
        response = AdaptiveResponse(n, model, initial_gain=params.initial_gain,
                                    noise=params.verify_noise)


    loop = _Loop(array, clock, params, response, flat_t, targeted, shape, progress)
    started = loop.bench_now()
    loop.run("program")
    for _ in range(params.touchup_rounds):
        wait = max(params.relax_wait_s, params.relax_wait_factor * (loop.bench_now() - started))
        if clock is None or wait <= 0:
            break
        clock.wait(wait)
        loop.waited += wait
        if not loop.reopen_drifted():
            break
        started = loop.bench_now()
        loop.run("touch-up")
    return loop.result()


class _Loop:
    def __init__(self, array, clock, params, response, flat_t, targeted, shape, progress):
        self.array, self.clock, self.p = array, clock, params
        self.response = response
        self.t, self.targeted, self.shape = flat_t, targeted, shape
        self.progress = progress
        n = flat_t.size
        self.status = np.where(targeted, ACTIVE, IDLE).astype(np.int8)
        self.g = np.full(n, np.nan)
        self.g_first = np.full(n, np.nan)
        self.g_lo = np.full(n, np.inf)
        self.g_hi = np.full(n, -np.inf)
        self.pulses = np.zeros(n, np.int32)
        self.stalls = np.zeros(n, np.int16)
        self.max_move = np.zeros(n)  # largest move in the pulsed direction, S
        self.g_probe = np.full(n, np.nan)  # read before a probe pulse
        self.g_sum = np.zeros(n)  # sum of unpulsed reads of a confirming cell
        self.n_reads = np.zeros(n, np.int16)
        self.rejects = np.zeros(n, np.int16)  # confirmations that ended in a pulse
        self.noise = ReadNoise()
        self.g_last = np.full(n, np.nan)  # the previous unpulsed read of a confirming cell
        self.history: list[IterationRecord] = []
        self.iterations = 0
        self.waited = 0.0  # bench seconds spent in relaxation waits
        self.tx0 = array.transactions
        self.t0_bench = self.bench_now()
        self.t0_wall = time.perf_counter()
        self.pending = None  # (idx, polarity, volts, width, g_before) of the last batch
        # Pilot: if the response model has learned nothing yet, the first batch goes to
        # a random few cells; the law fitted from their steps aims everyone else's.
        self.pilot_pending = getattr(response, "law", None) == [None, None]

    # -- verify -------------------------------------------------------------
    def _read(self, idx: np.ndarray) -> np.ndarray:
        mask = np.zeros(self.t.size, bool)
        mask[idx] = True
        whole = mask.all()
        reads = []
        for _ in range(self.p.reads_per_verify):
            g = self.array.read(None if whole else mask.reshape(self.shape),
                                averages=self.p.read_averages)
            reads.append(g.ravel()[idx])
        return np.mean(reads, axis=0)

    def _bench_time(self) -> float:
        return self.bench_now() - self.t0_bench

    def bench_now(self) -> float:
        return self.clock.now() if self.clock is not None else 0.0

    # -- one phase ------------------------------------------------------------
    def run(self, phase: str) -> None:
        p = self.p
        accept = p.tolerance * p.accept_fraction
        move_eps = p.move_fraction * p.tolerance
        while self.iterations < p.max_iterations:
            idx = np.flatnonzero((self.status == ACTIVE) | (self.status == CONFIRM) |
                                 (self.status == PROBE))
            if idx.size == 0:
                break
            g = self._read(idx)
            probing = self.status[idx] == PROBE
            if np.any(probing):
                self._judge_probe(idx[probing], g[probing])
                keep = ~probing
                idx, g = idx[keep], g[keep]
            confirming = self.status[idx] == CONFIRM
            self.g[idx] = g
            first = np.isnan(self.g_first[idx])
            self.g_first[idx[first]] = g[first]
            self.g_lo[idx] = np.minimum(self.g_lo[idx], g)
            self.g_hi[idx] = np.maximum(self.g_hi[idx], g)
            if self.pending is not None:
                self._learn(move_eps)
            # sequential verify: a cell that reads inside the band is re-read (in the
            # same transaction as the active cells), not pulsed, until the mean of its
            # reads is clearly in the acceptance zone or clearly out of the band
            c_idx = idx[confirming]
            previous = self.g_sum[c_idx] / np.maximum(self.n_reads[c_idx], 1)
            self.noise.add(previous, g[confirming] - self.g_last[c_idx])
            self.g_sum[c_idx] += g[confirming]
            self.n_reads[c_idx] += 1
            self.g_last[c_idx] = g[confirming]
            mean = self.g_sum[c_idx] / self.n_reads[c_idx]
            self.g[c_idx] = mean
            err_c = np.abs(mean - self.t[c_idx])
            accepted = err_c <= self._accept_zone(mean, self.n_reads[c_idx], accept)
            # a confirmation that would end in a RESET may take more reads, where a RESET
            # costs more than reads do (PCM: it melts the cell back to the bottom)
            budget = np.where(mean > self.t[c_idx], p.max_confirm_reads_reset,
                              p.max_confirm_reads)
            out = ~accepted & ((err_c > self._doubt_zone(mean, self.n_reads[c_idx])) |
                               (self.n_reads[c_idx] >= budget))
            self.status[c_idx[accepted]] = CONVERGED
            self.status[c_idx[out]] = ACTIVE
            self.rejects[c_idx[out]] += 1
            a_idx = idx[~confirming]
            err = g[~confirming] - self.t[a_idx]
            if p.confirm:
                # a read just outside the band may be noise: confirm it before pulsing,
                # until the cell has failed doubt_rounds confirmations; after that only
                # the acceptance zone earns another
                zone = np.where(self.rejects[a_idx] >= p.doubt_rounds, accept,
                                self._doubt_zone(g[~confirming], np.ones(a_idx.size)))
                done = np.abs(err) <= zone
                self.status[a_idx[done]] = CONFIRM
                self.g_sum[a_idx[done]] = g[~confirming][done]
                self.g_last[a_idx[done]] = g[~confirming][done]
                self.n_reads[a_idx[done]] = 1
            else:
                done = np.abs(err) <= accept
                self.status[a_idx[done]] = CONVERGED
            self._classify(a_idx[~done], move_eps)
            out_of_budget = (self.status[idx] == ACTIVE) & (self.pulses[idx] >= p.max_pulses)
            self.status[idx[out_of_budget]] = EXHAUSTED
            todo = idx[self.status[idx] == ACTIVE]
            pilot = self.pilot_pending and todo.size > 0
            if pilot:
                todo = self._pilot(todo)
            probes = idx[self.status[idx] == PROBE]
            pulsed = 0
            if todo.size or probes.size:
                e = self.g[todo] - self.t[todo]
                polarity = np.where(e < 0, SET, RESET)
                wanted = np.abs(e) * p.aim
                if pilot:  # a designed experiment: drives spread over a 9x range, so the
                    # population law is fitted over the whole curve, not one corner of it
                    rng = np.random.default_rng(p.seed + 1)
                    wanted = wanted * np.exp(rng.uniform(-np.log(3.0), np.log(3.0), wanted.size))
                # probes go the other way, asking for a clearly visible move
                e_p = self.g[probes] - self.t[probes]
                polarity = np.concatenate([polarity, np.where(e_p < 0, RESET, SET)])
                wanted = np.concatenate([wanted, np.maximum(
                    4 * p.move_fraction * p.tolerance, 0.3 * np.abs(self.g[probes]))])
                self.g_probe[probes] = self.g[probes]
                todo = np.concatenate([todo, probes])
                volts, width = self.response.pulse_for(todo, polarity, wanted, self.g[todo])
                signed = np.zeros(self.t.size)
                signed[todo] = np.where(polarity == SET, volts, -volts)
                widths = np.full(self.t.size, float(np.min(width)))
                widths[todo] = width
                uniform = bool(np.all(width == width[0]))
                self.array.pulse(signed.reshape(self.shape),
                                 width=float(width[0]) if uniform else widths.reshape(self.shape))
                self.pulses[todo] += 1
                normal = self.status[todo] == ACTIVE
                self.pending = (todo[normal], polarity[normal], volts[normal], width[normal],
                                self.g[todo[normal]].copy())
                pulsed = int(todo.size)
            else:
                self.pending = None
            self.iterations += 1
            converged = int(np.count_nonzero(self.status == CONVERGED))
            self.history.append(IterationRecord(
                iteration=self.iterations, phase=phase, active=int(idx.size), pulsed=pulsed,
                converged=converged, transactions=self.array.transactions - self.tx0,
                bench_time_s=self._bench_time()))
            if self.progress is not None:
                settled = int(np.count_nonzero(np.isin(
                    self.status, (CONVERGED, UNRESPONSIVE, UNREACHABLE, EXHAUSTED))))
                self.progress(Progress(phase, self.iterations, pulsed, converged,
                                       int(self.targeted.sum()), settled))
        self.pending = None

    def _accept_zone(self, g: np.ndarray, n_reads: np.ndarray, fixed: float) -> np.ndarray:
        """Per-cell acceptance half-width: confident the truth is within tolerance."""
        p = self.p
        sigma = self.noise.sigma(g) if p.accept_confidence > 0 else None
        if sigma is None:
            return np.full(g.shape, fixed)
        zone = p.tolerance - p.accept_confidence * sigma / np.sqrt(n_reads)
        return np.clip(zone, 0.5 * p.tolerance, p.accept_max_fraction * p.tolerance)

    def _doubt_zone(self, g: np.ndarray, n_reads: np.ndarray) -> np.ndarray:
        """Half-width beyond which a mean of ``n_reads`` is confidently out of the band."""
        p = self.p
        sigma = self.noise.sigma(g) if p.doubt_confidence > 0 else None
        if sigma is None:
            return np.full(g.shape, p.tolerance)
        return p.tolerance + p.doubt_confidence * sigma / np.sqrt(n_reads)

    def _pilot(self, todo: np.ndarray) -> np.ndarray:
        """A random share of the cells, drawn per polarity so that each polarity's law
        has enough steps to be fitted however the targets split."""
        self.pilot_pending = False
        rng = np.random.default_rng(self.p.seed)
        going_up = self.g[todo] < self.t[todo]
        chosen = []
        for cells in (todo[going_up], todo[~going_up]):
            k = max(self.p.pilot_min_cells, int(round(self.p.pilot_fraction * cells.size)))
            chosen.append(cells if k >= cells.size else rng.choice(cells, size=k, replace=False))
        return np.sort(np.concatenate(chosen))

    def _learn(self, move_eps: float) -> None:
        idx, polarity, volts, width, g_before = self.pending
        self.pending = None
        g_after = self.g[idx]  # every pulsed cell stayed active, so it was just re-read
        moved = (g_after - g_before) * np.where(polarity == SET, 1.0, -1.0)
        ok = np.isfinite(moved)
        self.response.observe(idx[ok], polarity[ok], volts[ok], width[ok], moved[ok],
                              g_before[ok])
        self.max_move[idx[ok]] = np.maximum(self.max_move[idx[ok]], moved[ok])
        strongest = self.response.at_max_drive(volts, width, polarity)
        # a real move stands clear of read noise, which grows with conductance
        clear = np.maximum(np.maximum(move_eps, 0.03 * np.abs(g_after)),
                           self._move_noise(g_after, 3.0))
        stalled = strongest & (moved < clear)
        self.stalls[idx] = np.where(stalled, self.stalls[idx] + 1,
                                    np.where(moved >= clear, 0, self.stalls[idx]))

    def _classify(self, idx: np.ndarray, move_eps: float) -> None:
        stuck = idx[self.stalls[idx] >= self.p.stall_pulses]
        if stuck.size == 0:
            return
        # "moved" must stand clear of read noise, which grows with conductance
        needed = np.maximum(np.maximum(4 * move_eps, 0.15 * np.abs(self.g[stuck])),
                            self._move_noise(self.g[stuck], 5.0))
        never_moved = self.max_move[stuck] < needed
        self.status[stuck[never_moved]] = PROBE
        self.status[stuck[~never_moved]] = UNREACHABLE

    def _move_noise(self, g: np.ndarray, z: float) -> np.ndarray:
        """z sigmas of the difference of two reads (0 until read noise is learned): a
        move smaller than that may be noise (PCM reads scatter by ~1 uS)."""
        sigma = self.noise.sigma(g)
        return np.zeros(np.shape(g)) if sigma is None else z * np.sqrt(2.0) * sigma

    def _judge_probe(self, idx: np.ndarray, g: np.ndarray) -> None:
        """A probed cell that moved the other way responds: it is saturated, not stuck."""
        self.g[idx] = g
        moved = np.abs(g - self.g_probe[idx])
        needed = np.maximum(np.maximum(4 * self.p.move_fraction * self.p.tolerance,
                                       0.15 * np.abs(self.g_probe[idx])),
                            self._move_noise(self.g_probe[idx], 5.0))
        responds = moved >= needed
        self.status[idx[responds]] = UNREACHABLE
        self.status[idx[~responds]] = UNRESPONSIVE

    # -- touch-up -------------------------------------------------------------
    def reopen_drifted(self) -> bool:
        """Re-read converged cells (mean of two reads); those that relaxed out of the
        acceptance band become active again (their next read may still send them to
        confirmation first, see the doubt zone)."""
        idx = np.flatnonzero(self.status == CONVERGED)
        if idx.size == 0:
            return False
        first, second = self._read(idx), self._read(idx)
        self.noise.add(first, second - first)  # two reads of unpulsed cells: read noise
        g = 0.5 * (first + second)
        self.g[idx] = g
        zone = self._accept_zone(g, np.full(idx.size, 2), self.p.tolerance * self.p.accept_fraction)
        drifted = np.abs(g - self.t[idx]) > zone
        again = idx[drifted & (self.pulses[idx] < self.p.max_pulses)]
        self.status[again] = ACTIVE
        self.stalls[again] = 0
        return again.size > 0

    def result(self) -> WriteVerifyResult:
        shape = self.shape
        final = np.where(self.targeted, self.g, np.nan)
        in_band = self.status == CONVERGED

        def grid(a):
            return a.reshape(shape)

        return WriteVerifyResult(
            target=grid(self.t.copy()), final=grid(final), pulses=grid(self.pulses.copy()),
            converged=grid(in_band), unresponsive=grid(self.status == UNRESPONSIVE),
            unreachable=grid(self.status == UNREACHABLE),
            exhausted=grid((self.status == EXHAUSTED) | (self.status == ACTIVE)),
            iterations=self.iterations, history=tuple(self.history),
            transactions=self.array.transactions - self.tx0,
            bench_time_s=self._bench_time(), wall_time_s=time.perf_counter() - self.t0_wall,
            params=self.p, relax_wait_time_s=self.waited,
        )
