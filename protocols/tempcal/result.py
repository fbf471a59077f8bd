"""What a temperature sweep measured: per visit, the whole array and each column's read-out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)  # arrays inside: compared by identity
class TemperatureSweep:
    """The measurements of :func:`protocols.tempcal.temperature_sweep`, one row per visit.

    ``setpoints_c`` / ``chuck_c``: the set point and the chuck's mean reading while
    measuring (degC); ``times_s``: clock time of the measurement; ``reference``:
    a visit at ``reference_c``; ``paired``: for a hot visit, the index of the
    reference visit its reads are compared with (the next one), for a reference
    visit itself. ``reads_s`` (visits, rows, cols): mean of ``reads`` whole-array reads,
    S; ``read_sem_s``: its standard error from their scatter (S). Per column:
    ``mvm_offset`` and ``mvm_noise`` (an all-zero input's mean and sigma: shares
    of ``mvm_range_a``, or amperes when the range is unknown, NaN).
    ``calibration_a`` (visits, vectors, cols): the mean current of each of the
    ``calibration_v`` inputs (vectors, rows; V), the zero-input offset taken out
    (NaN where a conversion may have clipped). ``dwell_s``: from the set point
    command to the end of the visit's measurement.
    """

    setpoints_c: np.ndarray
    chuck_c: np.ndarray
    times_s: np.ndarray
    reference: np.ndarray
    paired: np.ndarray
    reads_s: np.ndarray
    read_sem_s: np.ndarray
    mvm_offset: np.ndarray
    mvm_noise: np.ndarray
    calibration_a: np.ndarray
    calibration_v: np.ndarray
    dwell_s: np.ndarray
    settle_s: np.ndarray
    reference_c: float
    mvm_range_a: float
    mvm_volts: float
    zero_vectors: int
    reads: int
    read_averages: int
    bench_time_s: float
    wall_time_s: float
    read_transactions: int
    cells_read: int
    mvm_transactions: int
    mvm_vectors: int

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.reads_s.shape[1]), int(self.reads_s.shape[2]))

    @property
    def hot_time_s(self) -> float:
        """Bench time spent at set points above the reference (s): what ages the die."""
        return float(self.dwell_s[self.setpoints_c > self.reference_c].sum())

    def reference_drift(self) -> np.ndarray:
        """Median ln(G_last / G_first) of the cells between the first and the last
        reference visit: the drift the sweep caused, by level quartile (4,)."""
        refs = np.flatnonzero(self.reference)
        first, last = self.reads_s[refs[0]], self.reads_s[refs[-1]]
        floor = 0.01 * float(np.nanpercentile(first, 99))
        ok = (first > floor) & (last > floor)
        ratio, level = np.log(last[ok] / first[ok]), first[ok]
        edges = np.quantile(level, [0.25, 0.5, 0.75]) if level.size else np.zeros(3)
        bins = np.searchsorted(edges, level)
        return np.array([float(np.median(ratio[bins == b])) if np.any(bins == b) else np.nan
                         for b in range(4)])

    def summary(self) -> dict[str, Any]:
        return {
            "visits": [{"setpoint_c": float(s), "chuck_c": round(float(c), 3),
                        "settle_s": round(float(t), 1), "reference": bool(r)}
                       for s, c, t, r in zip(self.setpoints_c, self.chuck_c, self.settle_s,
                                             self.reference, strict=True)],
            "reference_c": self.reference_c, "bench_time_s": round(self.bench_time_s, 1),
            "hot_time_s": round(self.hot_time_s, 1), "wall_time_s": round(self.wall_time_s, 2),
            "read_transactions": self.read_transactions, "cells_read": self.cells_read,
            "read_averages": self.read_averages, "mvm_transactions": self.mvm_transactions,
            "mvm_vectors": self.mvm_vectors,
            "mvm_range_a": None if np.isnan(self.mvm_range_a) else self.mvm_range_a,
            "reference_drift_ln_by_level_quartile": [round(float(v), 5)
                                                     for v in self.reference_drift()],
        }

    def arrays(self) -> dict[str, np.ndarray]:
        names = ("setpoints_c", "chuck_c", "times_s", "reference", "paired", "reads_s",
                 "read_sem_s", "mvm_offset", "mvm_noise", "calibration_a", "calibration_v",
                 "dwell_s", "settle_s")
        return {name: getattr(self, name) for name in names}
