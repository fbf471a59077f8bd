"""Least squares the fit shares: the level law's spline basis and the column x level fit."""

from __future__ import annotations

import numpy as np

SMOOTHING = 1e-6  # second-difference penalty of the level law, share of its normal matrix


def hat_basis(x: np.ndarray, knots: np.ndarray):
    """Linear-spline (hat) basis at ``x``: two knot indices and weights per point,
    flat beyond the end knots."""
    k = knots.size
    if k == 1:
        zero = np.zeros(x.shape, np.int64)
        return zero, zero, np.ones(x.shape), np.zeros(x.shape)
    i = np.clip(np.searchsorted(knots, x) - 1, 0, k - 2)
    t = np.clip((x - knots[i]) / (knots[i + 1] - knots[i]), 0.0, 1.0)
    return i, i + 1, 1.0 - t, t


def two_way(c, w, cols, basis, k: int, ncols: int):
    """Weighted LSQ ``c = a[col] + lambda(x)``: column effects (mean 0) and spline values."""
    i0, i1, w0, w1 = basis
    n = np.bincount(cols, weights=w, minlength=ncols)
    cy = np.bincount(cols, weights=w * c, minlength=ncols)
    bb = np.zeros((k, k))
    for ia, wa in ((i0, w0), (i1, w1)):
        for ib, wb in ((i0, w0), (i1, w1)):
            np.add.at(bb, (ia, ib), w * wa * wb)
    bc = np.zeros((k, ncols))
    np.add.at(bc, (i0, cols), w * w0)
    np.add.at(bc, (i1, cols), w * w1)
    by = np.bincount(i0, weights=w * w0 * c, minlength=k) + np.bincount(
        i1, weights=w * w1 * c, minlength=k)
    inv = np.where(n > 0, 1.0 / np.where(n > 0, n, 1.0), 0.0)
    schur = bb - (bc * inv) @ bc.T
    rhs = by - bc @ (cy * inv)
    if k >= 3:
        d2 = np.diff(np.eye(k), 2, axis=0)
        schur = schur + SMOOTHING * max(float(np.trace(schur)) / k, 1e-300) * (d2.T @ d2)
    level = np.linalg.lstsq(schur, rhs, rcond=None)[0]
    col = (cy - bc.T @ level) * inv
    shift = float(col[n > 0].mean()) if (n > 0).any() else 0.0
    return np.where(n > 0, col - shift, 0.0), level + shift
