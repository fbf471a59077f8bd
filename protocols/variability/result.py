"""What a variability map of a die holds: per cell and per die, in siemens, volts, seconds.

Shared by the mapping protocol (which fills it), fault-aware placement and the
simulator twin (which read it), and the die file (``arrays()`` are its datasets).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np


class Fault(IntEnum):
    """Fault class of a cell (the ``fault`` dataset, uint8)."""

    HEALTHY = 0
    STUCK_LOW = 1  # does not move, reads near or below the window's bottom
    STUCK_HIGH = 2  # does not move, reads high
    UNFORMED = 3  # reads pristine and did not form
    NARROW = 4  # moves, but cannot reach the chip's window
    UNRESPONSIVE = 5  # does not move within the limits, reading mid-window


PER_CELL = ("g_min", "g_max", "g_min_c2c", "g_max_c2c", "set_threshold", "reset_threshold",
            "set_rate", "reset_rate")


@dataclass(frozen=True)
class ReadNoiseLaw:
    """sigma(G) = a + b * G^c of one read (S); fitted from repeat reads at several states.

    ``c`` = 1 (the default): a line, ``b`` dimensionless; otherwise ``b`` is in S^(1 - c)
    (1/f-like noise grows as a power of G below 1)."""

    a: float  # S
    b: float  # S^(1 - c)
    c: float = 1.0  # exponent

    def sigma(self, g: np.ndarray) -> np.ndarray:
        g = np.abs(g)
        return self.a + self.b * (g if self.c == 1.0 else g ** self.c)

    @classmethod
    def from_summary(cls, noise: dict) -> ReadNoiseLaw:
        """The law from a map summary's ``read_noise`` entry (``a_s``, ``b``, ``c``)."""
        return cls(float(noise.get("a_s", 0.0)), float(noise.get("b", 0.0)),
                   float(noise.get("c", 1.0)))

    def describe(self) -> str:
        """The law in microsiemens, for people: "0.012 uS + 0.0103 G" or with G^c."""
        if self.c == 1.0:
            return f"{self.a * 1e6:.3g} uS + {self.b:.3g} G"
        b_us = self.b * 1e-6 ** self.c / 1e-6  # sigma in uS for G in uS
        return f"{self.a * 1e6:.3g} uS + {b_us:.3g} uS (G/uS)^{self.c:.2f}"


@dataclass(frozen=True)
class VariabilityMap:
    """A die's measured variability. Arrays have the array's shape; NaN = not measured.

    ``g_min``/``g_max``: the reachable window within the limits (S), from the
    saturation of RESET and SET trains; ``*_c2c``: their cycle-to-cycle spread
    (std, S); ``*_threshold``: the smallest amplitude (V, magnitude) that moves the
    cell clearly beyond read noise; ``*_rate``: the fraction of the remaining
    distance to the bound one reference pulse removes; ``fault``: :class:`Fault`.
    """

    g_min: np.ndarray
    g_max: np.ndarray
    g_min_c2c: np.ndarray
    g_max_c2c: np.ndarray
    set_threshold: np.ndarray
    reset_threshold: np.ndarray
    set_rate: np.ndarray
    reset_rate: np.ndarray
    fault: np.ndarray  # uint8, Fault codes
    read_noise: ReadNoiseLaw
    usable_window: tuple[float, float]  # (S, S) that >= 99 % of healthy cells reach
    pulses_per_cell: float  # mean pulses spent per cell (the endurance cost)
    transactions: int
    bench_time_s: float
    wall_time_s: float
    cycles: int  # full SET/RESET cycles measured
    extra: dict[str, Any] = field(default_factory=dict)  # protocol-specific figures

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.fault.shape)

    @property
    def healthy(self) -> np.ndarray:
        return self.fault == Fault.HEALTHY

    def counts(self) -> dict[str, int]:
        return {f.name.lower(): int(np.count_nonzero(self.fault == f)) for f in Fault}

    def d2d(self) -> dict[str, dict[str, float]]:
        """Device-to-device statistics of every per-cell quantity over healthy cells."""
        out = {}
        for name in PER_CELL:
            v = getattr(self, name)[self.healthy]
            v = v[np.isfinite(v)]
            if v.size == 0:
                continue
            q = np.percentile(v, [1, 5, 25, 50, 75, 95, 99])
            entry = {"median": float(q[3]), "std": float(v.std()),
                     "q01": float(q[0]), "q05": float(q[1]), "q25": float(q[2]),
                     "q75": float(q[4]), "q95": float(q[5]), "q99": float(q[6])}
            if np.all(v > 0):
                entry["log_std"] = float(np.log(v).std())
            out[name] = entry
        return out

    def summary(self) -> dict[str, Any]:
        cells = int(self.fault.size)
        return {
            "cells": cells, "yield": float(np.count_nonzero(self.healthy) / max(cells, 1)),
            "faults": self.counts(), "usable_window_s": list(self.usable_window),
            "read_noise": {"a_s": self.read_noise.a, "b": self.read_noise.b,
                           "c": self.read_noise.c},
            "d2d": self.d2d(), "cycles": self.cycles, "pulses_per_cell": self.pulses_per_cell,
            "transactions": self.transactions, "bench_time_s": self.bench_time_s,
            "wall_time_s": self.wall_time_s, **self.extra,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        out = {name: np.asarray(getattr(self, name), dtype=np.float64) for name in PER_CELL}
        out["fault"] = np.asarray(self.fault, dtype=np.uint8)
        return out
