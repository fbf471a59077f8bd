"""Read noise versus conductance, learned online by write-verify from its own reads."""

from __future__ import annotations

from typing import Any

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
        # in float64 (the loop stores conductances as float32; the sums cancel)
        g = np.asarray(g[ok], np.float64)
        spread = np.abs(np.asarray(diff[ok], np.float64)) * np.sqrt(np.pi) / 2
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

    def to_arrays(self) -> dict[str, Any]:
        """The running sums and the fit (NaN: none yet) as numpy arrays, for an HDF5
        group; :meth:`from_arrays` restores them exactly."""
        fit = (np.nan, np.nan) if self.fit is None else self.fit
        return {"sums": self.sums.copy(), "fit": np.array(fit, np.float64)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any]) -> ReadNoise:
        noise = cls()
        noise.sums = np.array(arrays["sums"], np.float64).reshape(5)
        fit = np.asarray(arrays["fit"], np.float64)
        noise.fit = None if np.any(np.isnan(fit)) else (float(fit[0]), float(fit[1]))
        return noise
