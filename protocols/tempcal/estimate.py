"""The die temperature at inference: the chuck's reading, or the cells' own.

A chuck reports its own sensor: the die lags it by tens of seconds and sits a
little short of it on a hot chuck, and a chuck that is not ours (or not
calibrated) may read off by degrees. Cells whose conductance the model knows
at the reference temperature are a thermometer on the die itself: read them
(one transaction) and find the temperature whose predicted reads fit best
(:meth:`TemperatureModel.predict_reads`, weighted by the model's read noise per
level). The estimate is on the calibration's temperature scale (the chuck's
during the sweep); a common drift of every cell since the calibration
(``drift=True``) can be fitted alongside when the cells' coefficients differ
enough to tell it apart from a temperature change (cells at several levels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from protocols.tempcal.lsq import hat_basis
from protocols.tempcal.model import TemperatureModel
from protocols.tempcal.params import NoReferenceCells, TempcalError

GRID_STEP_C = 0.25
MIN_CELLS = 3
MODEL_SIGMA = 0.003  # relative: what the model's per-cell law misses, beside read noise
TARGET_SPREAD = 0.025  # write-verify's scatter about a target, share of the largest level
OUTLIER_SIGMAS = 5.0


@dataclass(frozen=True)
class TemperatureEstimate:
    """A die temperature (degC) and where it came from.

    ``uncertainty_c``: one sigma from the fit (NaN for a chuck reading);
    ``cells``: cells the fit used; ``drift_ln``: the common ln drift fitted (0 when
    not asked); ``reduced_chi2``: of the fit (1: the reads scatter as the model's
    noise says, with ``state_sigma_s``); ``state_sigma_s``: how far (S) the cells'
    states wandered since the model measured them, beyond read noise, fitted from the
    scatter (relaxation goes on; the fit weighs each cell by it).
    """

    temperature_c: float
    source: str  # "chuck" | "reference cells" | "cells"
    uncertainty_c: float = float("nan")
    cells: int = 0
    drift_ln: float = 0.0
    reduced_chi2: float = float("nan")
    state_sigma_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {"temperature_c": round(self.temperature_c, 3), "source": self.source,
                "uncertainty_c": round(self.uncertainty_c, 3), "cells": self.cells,
                "drift_ln": round(self.drift_ln, 5), "reduced_chi2": round(self.reduced_chi2, 3),
                "state_sigma_s": self.state_sigma_s}


def chuck_temperature(thermal) -> TemperatureEstimate:
    """The chuck's own reading (ThermalController role)."""
    return TemperatureEstimate(temperature_c=float(thermal.temperature()), source="chuck")


def _cells(model: TemperatureModel, mapping, cells):
    """(flat indices, expected states or None, source name)."""
    if cells is not None:
        return np.asarray(cells, np.int64).ravel(), None, "cells"
    refs = getattr(mapping, "reference_cells", None) if mapping is not None else None
    if refs is None or np.size(refs) == 0:
        raise NoReferenceCells(
            "the mapping holds no reference cells to take the die temperature from: program "
            "the network with reference cells (program_network(..., reference_cells=N)) before "
            "the temperature sweep, pass cells= the model measured, or use the chuck's reading "
            "(chuck_temperature)")
    return (np.asarray(refs, np.int64).ravel(),
            np.asarray(mapping.reference_targets, np.float64).ravel(), "reference cells")


def _states(model: TemperatureModel, idx: np.ndarray, expected):
    """(cells, their conductance at the reference, S, extra relative sigma): the cells in
    the state the model measured when there are enough, else the expected levels
    (reference cells programmed after the sweep), uncertain by write-verify's scatter."""
    cal = model.g_calibration.ravel()[idx]
    same = cal > model.floor_s
    if expected is not None:
        same &= model.state(expected, idx) == cal
    if same.sum() >= MIN_CELLS:
        return idx[same], cal[same], np.zeros(int(same.sum()))
    ok = np.isfinite(expected) & (expected > 0) if expected is not None else same
    if ok.sum() < MIN_CELLS:
        raise TempcalError(f"only {int(ok.sum())} of the {idx.size} cells have a known "
                           "conductance at the reference temperature: too few to take a "
                           "temperature from")
    e = expected[ok]
    return idx[ok], e, TARGET_SPREAD * float(e.max()) / e


def _residuals(model: TemperatureModel, reads, g, extra, cells, grid):
    """Log residuals (grid, cells) of the reads against the model at each grid
    temperature, their sigmas (cells,) and where they exist."""
    cols = cells % model.shape[1]
    i0, i1, w0, w1 = hat_basis(np.log(g), model.level_knots)
    rel = model.level_noise[i0] * w0 + model.level_noise[i1] * w1
    sigma = np.sqrt(rel ** 2 + extra ** 2 + MODEL_SIGMA ** 2)
    coeff = model.column_coeff[cols] + model.coefficients(g, cells)
    u = model.u(grid)[:, None]
    dt = (grid - model.reference_c)[:, None]
    signal = reads[None, :] - (model.read_offset[cols, 0] + model.read_offset[cols, 1] * dt)
    ok = signal > 0
    z = np.where(ok, np.log(np.where(ok, signal, 1.0)) - np.log(g) - coeff * u, 0.0)
    return z, sigma, ok


def _chi2_curve(z, sigma, ok, keep, drift: bool):
    """Chi-square at each grid temperature of the kept cells, and the common ln drift
    that minimises it there (0 unless ``drift``); a cell reading below its offset
    counts as a 5-sigma miss."""
    w = np.where(ok & keep, 1.0 / sigma ** 2, 0.0)
    total = np.maximum(w.sum(axis=1), 1e-300)
    shift = (w * z).sum(axis=1) / total if drift else np.zeros(z.shape[0])
    chi2 = (w * (z - shift[:, None]) ** 2).sum(axis=1) + ((~ok) & keep).sum(axis=1) * 25.0
    return chi2, shift


def _refine(grid, chi2) -> tuple[float, float]:
    """The minimum of a parabola through the best grid point and its neighbours, and
    the one-sigma half width (chi-square + 1)."""
    k = int(np.clip(np.argmin(chi2), 1, grid.size - 2))
    y0, y1, y2 = chi2[k - 1], chi2[k], chi2[k + 1]
    h = grid[1] - grid[0]
    curv = (y0 - 2 * y1 + y2) / h ** 2
    if curv <= 0:
        return float(grid[int(np.argmin(chi2))]), float("inf")
    t = grid[k] - h * (y2 - y0) / (2 * (y0 - 2 * y1 + y2))
    return float(t), float(np.sqrt(2.0 / curv))


def estimate_temperature(array, model: TemperatureModel, mapping=None, *, cells=None,
                         averages: int | None = 16, drift: bool = False) -> TemperatureEstimate:
    """The die temperature from a read of cells the model knows (one transaction).

    The mapping's reference cells (``mapping.reference_cells``: in the state the
    model measured them, or, programmed after the sweep, at ``reference_targets``),
    or ``cells`` (flat indices the model measured). Raises :class:`NoReferenceCells`
    when the mapping has none. Searched over the chip's temperature limits; cells
    more than 5 sigma off the best fit (stuck, reprogrammed) are left out and the
    fit repeated.
    """
    idx, expected, source = _cells(model, mapping, cells)
    if idx.size and (idx.min() < 0 or idx.max() >= model.g_calibration.size):
        raise TempcalError(f"cells must be flat indices 0..{model.g_calibration.size - 1}")
    idx, g, extra = _states(model, idx, expected)
    reads = np.asarray(array.read_cells(idx, averages=averages), dtype=np.float64)
    lim = array.limits
    grid = np.arange(float(lim.min_temperature), float(lim.max_temperature) + GRID_STEP_C,
                     GRID_STEP_C)
    z, base, ok = _residuals(model, reads, g, extra, idx, grid)
    keep = np.ones(idx.size, dtype=bool)
    wander, sigma = 0.0, base
    for _ in range(3):
        chi2, shift = _chi2_curve(z, sigma, ok, keep, drift)
        best = int(np.argmin(chi2))
        r = (z[best] - shift[best]) / sigma
        robust = 1.4826 * float(np.median(np.abs(r[keep & ok[best]]))) if keep.any() else 1.0
        keep = ok[best] & (np.abs(r) <= OUTLIER_SIGMAS * max(robust, 1.0))
        wander = _wander(z[best] - shift[best], base, g, keep, 1 + int(drift))
        sigma = np.sqrt(base ** 2 + (wander / g) ** 2)
    chi2, shift = _chi2_curve(z, sigma, ok, keep, drift)
    best = int(np.argmin(chi2))
    t, width = _refine(grid, chi2)
    used = int(keep.sum())
    red = float(chi2[best]) / max(used - 1 - int(drift), 1)
    return TemperatureEstimate(temperature_c=t, source=source,
                               uncertainty_c=width * float(np.sqrt(max(red, 1.0))),
                               cells=used, drift_ln=float(shift[best]), reduced_chi2=red,
                               state_sigma_s=wander)


def _wander(residual, base, g, keep, fitted: int) -> float:
    """The additive spread (S) of the cells' states since the model measured them that makes
    the kept cells' chi-square its degrees of freedom (0 when read noise explains it).

    Relaxation goes on after the sweep, cell by cell and in siemens, so it moves a low cell
    by a larger share than a high one: weighed by read noise alone, a few low cells would
    pull the temperature. Solved by bisection in log S."""
    n = int(keep.sum())
    if n <= fitted + 1:
        return 0.0
    r2, b2, g2 = residual[keep] ** 2, base[keep] ** 2, g[keep] ** 2
    dof = n - fitted

    def chi2(w: float) -> float:
        return float(np.sum(r2 / (b2 + w * w / g2)))

    if chi2(0.0) <= dof:
        return 0.0
    lo, hi = -30.0, -5.0  # ln S: 1e-13 .. 7e-3 S
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if chi2(float(np.exp(mid))) > dof else (lo, mid)
    return float(np.exp(hi))
