"""What write-verify reports: per-cell outcome, per-iteration history, progress."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from protocols.write_verify.hold import HoldParams, RelaxationLaw
from protocols.write_verify.params import WriteVerifyParams
from protocols.write_verify.read_noise import ReadNoise
from protocols.write_verify.response import ResponseModel

# one row of the iteration history (what write_verify writes to the die file)
HISTORY_DTYPE = np.dtype([("iteration", "i4"), ("phase", "S10"), ("active", "i4"),
                          ("pulsed", "i4"), ("converged", "i4"), ("transactions", "i4"),
                          ("bench_time_s", "f8")])


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
    bench_time_s: float = 0.0  # since the run began, on the clock role
    # the run so far as a result (per-cell arrays), for callers that checkpoint long runs
    snapshot: Callable[[], WriteVerifyResult] | None = field(default=None, compare=False,
                                                             repr=False)


@dataclass(frozen=True)
class WriteVerifyResult:
    """Outcome of a write-verify run. Conductances in siemens; NaN = not targeted.

    ``response`` and ``read_noise`` are what the run learned (the same objects it
    updated): pass them to the next call on this die (``response=result.response,
    read_noise=result.read_noise``) so it starts from there, or save their
    ``to_arrays()`` as run artifacts.
    """

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
    response: ResponseModel | None = None  # the response model after the run
    read_noise: ReadNoise | None = None  # the read-noise fit after the run
    # hold mode (hold_s > 0): the predicted share of cells that can reach their targets
    # (accepted or out of budget) in band hold_s after the run, by the law it learned
    hold_s: float = 0.0
    in_band_hold_predicted: float | None = None
    relaxation: RelaxationLaw | None = None
    hold_rounds: int = 0  # wait / re-read rounds
    hold: HoldParams | None = None  # the hold mode's knobs (None: off)

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

    @property
    def in_band_now_fraction(self) -> float:
        """Share of targeted cells whose last estimate is within the band of its target
        (in hold mode the loop aims elsewhere, so this differs from the converged share)."""
        err = np.abs(self.final - self.target)[self.targeted]
        return float(np.mean(err <= self.params.tolerance)) if err.size else 0.0

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
            **self._hold_summary(),
        }

    def _hold_summary(self) -> dict:
        if self.hold_s <= 0:
            return {}
        law = self.relaxation
        return {"hold_s": self.hold_s, "in_band_now_fraction": self.in_band_now_fraction,
                "in_band_hold_predicted": self.in_band_hold_predicted,
                "hold_rounds": self.hold_rounds,
                "relaxation_shift_per_ln_s": None if law is None else law.shift_per_ln_s}

    def arrays(self) -> dict[str, np.ndarray]:
        """Per-cell outcome and the iteration history, as the die file stores them."""
        history = np.array(
            [(h.iteration, h.phase.encode(), h.active, h.pulsed, h.converged, h.transactions,
              h.bench_time_s) for h in self.history], dtype=HISTORY_DTYPE)
        return {"target": self.target, "final": self.final, "pulses": self.pulses,
                "converged": self.converged, "unresponsive": self.unresponsive,
                "unreachable": self.unreachable, "exhausted": self.exhausted,
                "history": history}
