"""Read noise versus conductance, learned online by write-verify from its own reads."""

from __future__ import annotations

import numpy as np


class ReadNoise:
    """Read noise versus conductance, learned from repeat reads of unpulsed cells.

    Two reads of an unpulsed cell differ by read noise alone: E|r2 - r1| =
    2 sigma / sqrt(pi), so a least-squares line through |r2 - r1| sqrt(pi) / 2
    against G estimates sigma(G) = a + b G. Kept as running sums, so a refit
    costs the same on the millionth pair as on the first.
    """

    MIN_PAIRS = 200

    def __init__(self) -> None:
        self.sums = np.zeros(5)  # n, sum g, sum g^2, sum s, sum g s
        self.fit: tuple[float, float] | None = None

    @property
    def count(self) -> int:
        return int(self.sums[0])

    def add(self, g: np.ndarray, diff: np.ndarray) -> None:
        ok = np.isfinite(g) & np.isfinite(diff)
        if not np.any(ok):
            return
        g, spread = g[ok], np.abs(diff[ok]) * np.sqrt(np.pi) / 2
        self.sums += [g.size, g.sum(), (g * g).sum(), spread.sum(), (g * spread).sum()]
        n, sg, sgg, ss, sgs = self.sums
        det = n * sgg - sg * sg
        if n < self.MIN_PAIRS or det <= 1e-12 * max(n * sgg, 1e-300):
            return
        slope = (n * sgs - sg * ss) / det
        intercept = (ss - slope * sg) / n
        self.fit = (max(float(intercept), 0.0), max(float(slope), 0.0))

    def sigma(self, g: np.ndarray) -> np.ndarray | None:
        if self.fit is None:
            return None
        return self.fit[0] + self.fit[1] * np.abs(g)
