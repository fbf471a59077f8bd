"""Virtual time shared by everything on a simulated bench."""

from __future__ import annotations

import math


class VirtualClock:
    """Seconds since the simulated bench was created.

    Programming, reads, waits and instrument latencies advance it, so an hour
    of relaxation or drift costs no wall time.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    @property
    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        seconds = float(seconds)
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"time can only move forward by a finite amount, got {seconds!r} s")
        self._now += seconds
        return self._now
