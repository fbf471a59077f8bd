"""Fitting a :class:`TemperatureModel` to a :class:`TemperatureSweep`.

Per hot visit, every cell's ln ratio to its paired reference read (column read
offsets taken out first, so a column's offset is not mistaken for its low cells
warming up) is a line through the origin in the law's variable ``u``: its slope
is the cell's coefficient. The coefficients are then split into a column part,
a level law and the cell's own deviation by one weighted least-squares fit
(columns x linear spline in ln G, outliers left out of it), and each deviation is
shrunk by how well the repeated reads say it was measured. Column offsets and
the MVM / read gain ratio are lines in T through every visit.
"""

from __future__ import annotations

import warnings

import numpy as np

from protocols.tempcal.lsq import hat_basis, two_way
from protocols.tempcal.model import FLOOR_SHARE, OUTLIER_SIGMAS, TemperatureModel, law_variable
from protocols.tempcal.offsets import read_offsets
from protocols.tempcal.params import LAWS, TempcalError
from protocols.tempcal.result import TemperatureSweep


def _ratios(sweep: TemperatureSweep, offsets: np.ndarray) -> dict[str, np.ndarray]:
    """The hot visits' ln ratios to their paired reference reads, and their noise."""
    h = sweep.reads_s - offsets[:, None, :]
    refs = np.flatnonzero(sweep.reference)
    hot = np.flatnonzero(~sweep.reference)
    if hot.size == 0:
        raise TempcalError("the sweep has no visit away from the reference temperature")
    g_cal = h[refs[-1]]
    floor = FLOOR_SHARE * float(np.nanpercentile(g_cal, 99))
    pair = sweep.paired[hot]
    ok = (h[hot] > floor) & (h[pair] > floor) & np.isfinite(h[hot]) & np.isfinite(h[pair])
    y = np.log(np.where(ok, h[hot], 1.0) / np.where(ok, h[pair], 1.0))
    sem = sweep.read_sem_s.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(h > floor, sem ** 2 / h ** 2, np.nan)  # relative variance of a mean read
    # ln of a noisy read is low by half its relative variance (delta method): undo it
    y = y + np.where(ok, 0.5 * (np.nan_to_num(rel[hot]) - np.nan_to_num(rel[pair])), 0.0)
    return {"y": y, "ok": ok, "var": rel[hot] + rel[pair], "rel": rel[refs],
            "g_cal": np.where(g_cal > floor, g_cal, np.nan), "floor": floor,
            "g_read": np.maximum(np.nan_to_num(g_cal), 0.0),
            "t_hot": sweep.chuck_c[hot], "t_ref": sweep.chuck_c[pair]}


def _u(data: dict, law: str, reference_c: float) -> np.ndarray:
    return (law_variable(law, data["t_hot"], reference_c)
            - law_variable(law, data["t_ref"], reference_c))


def _slopes(data: dict, u: np.ndarray, var_y: np.ndarray):
    """Per cell: the slope through the origin, its variance, and whether it exists."""
    m = data["ok"].astype(np.float64)
    uu = (m * (u ** 2)[:, None, None]).sum(axis=0)
    uy = (m * u[:, None, None] * data["y"]).sum(axis=0)
    valid = (uu > 0) & np.isfinite(data["g_cal"])
    slope = np.where(valid, uy / np.where(valid, uu, 1.0), 0.0)
    var = np.where(valid, var_y / np.where(valid, uu, 1.0), np.inf)
    return slope, var, valid


def _chi2(data: dict, law: str, reference_c: float, var_y: np.ndarray) -> float:
    """Reduced chi-square of the per-cell lines under ``law`` (cells seen at every visit)."""
    u = _u(data, law, reference_c)
    every = data["ok"].all(axis=0) & np.isfinite(data["g_cal"])
    if u.size < 2 or not every.any():
        return float("nan")
    y = data["y"][:, every]
    slope = (u[:, None] * y).sum(axis=0) / float((u ** 2).sum())
    resid = y - u[:, None] * slope
    with np.errstate(divide="ignore", invalid="ignore"):
        z = resid ** 2 / np.maximum(var_y[every], 1e-30)
    return float(np.sum(z) / (z.size - every.sum()))


def _knots(x: np.ndarray, count: int) -> np.ndarray:
    lo, hi = np.quantile(x, [0.005, 0.995]) if x.size else (0.0, 0.0)
    if hi - lo < 1e-3 or count < 2:
        return np.array([0.5 * (lo + hi)])
    return np.linspace(lo, hi, count)


def _levels_and_columns(slope, var, valid, x, knots, ncols: int):
    """Column effects, level law and deviations, outliers left out of the second pass."""
    cols = np.nonzero(valid)[1]
    c, v = slope[valid], var[valid]
    basis = hat_basis(x[valid], knots)
    w = np.ones(c.size)  # first pass: every cell alike
    for _ in range(2):
        col, level = two_way(c, w, cols, basis, knots.size, ncols)
        dev = c - col[cols] - (level[basis[0]] * basis[2] + level[basis[1]] * basis[3])
        mad = 1.4826 * float(np.median(np.abs(dev))) if dev.size else 0.0
        spread = v + max(mad ** 2 - float(np.median(v)), 0.0)  # noise + device spread
        inlier = np.abs(dev) <= OUTLIER_SIGMAS * np.sqrt(spread) + 1e-12
        w = inlier / spread if np.all(spread > 0) else inlier.astype(np.float64)
    return col, level, dev, inlier, basis


def _shrunk(dev, var, inlier, basis, k: int) -> np.ndarray:
    """Each deviation times tau^2 / (tau^2 + its variance), tau^2 per nearest knot."""
    near = np.where(basis[2] >= 0.5, basis[0], basis[1])
    pick = inlier & np.isfinite(var)
    n = np.bincount(near[pick], minlength=k)
    d2 = np.bincount(near[pick], weights=dev[pick] ** 2, minlength=k)
    vv = np.bincount(near[pick], weights=var[pick], minlength=k)
    tau2 = np.maximum(d2 - vv, 0.0) / np.maximum(n, 1)
    t = tau2[near]
    with np.errstate(invalid="ignore", divide="ignore"):
        keep = np.where(var > 0, t / (t + var), 1.0)
    return dev * np.nan_to_num(keep, nan=1.0)


def _pooled(values: np.ndarray, near: np.ndarray, k: int) -> np.ndarray:
    """Mean of ``values`` per knot (NaN-free), the overall mean where a knot has none."""
    ok = np.isfinite(values)
    n = np.bincount(near[ok], minlength=k)
    s = np.bincount(near[ok], weights=values[ok], minlength=k)
    overall = float(values[ok].mean()) if ok.any() else 0.0
    return np.where(n > 0, s / np.maximum(n, 1), overall)


def _mvm_ratio(sweep: TemperatureSweep, offsets: np.ndarray) -> np.ndarray:
    """Per hot visit and column: the calibration vectors' current ratio to the paired
    reference over the ratio the reads predict (1: MVM changed as the cells did).

    What MVM adds to the cells' change (the IR drop growing with the conductances,
    an MVM path's own gain) is mostly common to the die; a column's own ratio rests
    on a few ADC steps when its currents are small next to the range, so each
    column's deviation from the die's (signal-weighted) median is shrunk by its
    scatter over the vectors (empirical Bayes), as the cells' are.
    """
    hot = np.flatnonzero(~sweep.reference)
    pair = sweep.paired[hot]
    h = np.nan_to_num(sweep.reads_s - offsets[:, None, :])
    drive = sweep.calibration_v
    mv, mr = sweep.calibration_a[hot], sweep.calibration_a[pair]
    pv = np.einsum("cr,vrj->vcj", drive, h[hot])
    pr = np.einsum("cr,vrj->vcj", drive, h[pair])
    with np.errstate(invalid="ignore", divide="ignore"):
        each = np.log((mv / mr) / (pv / pr))  # (visits, vectors, cols)
    ok = np.isfinite(each)
    n = ok.sum(axis=1)
    mean = np.where(ok, each, 0.0).sum(axis=1) / np.maximum(n, 1)
    var = np.where(ok, (each - mean[:, None, :]) ** 2, 0.0).sum(axis=1) / np.maximum(
        n * (n - 1), 1)
    signal = np.where(ok, pr, 0.0).sum(axis=1)
    out = np.zeros(mean.shape)
    for k in range(hot.size):
        good = (n[k] >= 2) & (signal[k] > 0)
        if not good.any():
            continue
        centre = _weighted_median(mean[k][good], signal[k][good])
        dev = mean[k] - centre
        tau2 = max(float(np.median(dev[good] ** 2) / 0.455 - np.median(var[k][good])), 0.0)
        keep = np.where(good, tau2 / np.maximum(tau2 + var[k], 1e-300), 0.0)
        out[k] = centre + keep * dev
    return np.exp(out)


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, 0.5 * cum[-1])])


def _column_laws(sweep: TemperatureSweep, offsets: np.ndarray):
    """Read and MVM offsets as lines in T (intercept, slope per K); the MVM/read ratio's
    coefficient (1/K, through 1 at the reference)."""
    dt = sweep.chuck_c - sweep.reference_c
    read = np.polyfit(dt, offsets, 1)[::-1].T
    mvm = np.polyfit(dt, sweep.mvm_offset, 1)[::-1].T
    hot = ~sweep.reference
    denom = float((dt[hot] ** 2).sum())
    ratio = _mvm_ratio(sweep, offsets) - 1.0
    tc = (dt[hot][:, None] * ratio).sum(axis=0) / denom if denom > 0 else np.zeros(ratio.shape[1])
    return read, mvm, tc


def fit_model(sweep: TemperatureSweep, *, law: str = "auto", knots: int = 8,
              shared_chain: bool = True) -> TemperatureModel:
    """The die's :class:`TemperatureModel` from a sweep (see the module docstring).

    ``law``: ``linear``, ``arrhenius`` or ``auto`` (the smaller reduced chi-square of
    the per-cell lines; ``linear`` when the sweep has one hot visit, which any law
    fits). ``knots``: of the level law, spread over the die's levels.
    ``shared_chain``: reads and MVM share each column's read-out chain, so the read
    offsets follow the measured MVM offsets (:mod:`protocols.tempcal.offsets`; the
    model's ``offset_tie`` says how well the reads agree).
    """
    if law != "auto" and law not in LAWS:
        raise TempcalError(f"law {law!r}: choose auto, {', '.join(LAWS)}")
    last = sweep.reads_s[np.flatnonzero(sweep.reference)[-1]]
    seen = last > FLOOR_SHARE * float(np.nanpercentile(last, 99))
    knot = _knots(np.log(last[seen]), int(knots))
    offsets, tie = read_offsets(sweep, knot, shared_chain)
    data = _ratios(sweep, offsets)
    x = np.log(np.where(np.isfinite(data["g_cal"]), data["g_cal"], 1e-15))
    b = hat_basis(x, knot)
    near = np.where(b[2] >= 0.5, b[0], b[1])
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # cells never measurable: NaN
        per_cell = np.nanmean(data["var"], axis=0).ravel()
        ref_rel = np.nanmean(data["rel"], axis=0).ravel()
    var_knot = _pooled(per_cell, near.ravel(), knot.size)
    var_y = var_knot[near]
    chi2 = tuple(_chi2(data, name, sweep.reference_c, var_y) if law in ("auto", name)
                 else float("nan") for name in LAWS)
    chosen = law if law != "auto" else ("linear" if np.isnan(chi2).all()
                                        else LAWS[int(np.nanargmin(chi2))])
    slope, var, valid = _slopes(data, _u(data, chosen, sweep.reference_c), var_y)
    col, level, dev, inlier, basis = _levels_and_columns(slope, var, valid, x, knot,
                                                         sweep.shape[1])
    cell = level[b[0]] * b[2] + level[b[1]] * b[3]
    cell[valid] += _shrunk(dev, var[valid], inlier, basis, knot.size)
    noise = np.sqrt(sweep.reads * _pooled(ref_rel, near.ravel(), knot.size))
    read, mvm, tc = _column_laws(sweep, offsets)
    return TemperatureModel(
        reference_c=sweep.reference_c, law=chosen, g_calibration=data["g_read"],
        floor_s=float(data["floor"]),
        cell_coeff=cell, level_knots=knot, level_coeff=level, level_noise=noise,
        column_coeff=col, read_offset=read, mvm_offset=mvm, mvm_ratio_tc=tc,
        mvm_range_a=float(sweep.mvm_range_a),
        fit_range_c=(float(sweep.chuck_c.min()), float(sweep.chuck_c.max())),
        law_chi2=chi2, read_averages=int(sweep.read_averages), offset_tie=float(tie))
