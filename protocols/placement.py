"""Fault-aware placement of a weight layer on a die whose cells were mapped.

A layer ``w`` (inputs x outputs) needs one word line per input and two bit
lines per output (``G+``, ``G-``: ``y_j = x . (G+_j - G-_j) / scale``). The naive
placement (:mod:`protocols.weights`) puts it top-left with the pairs
interleaved, whatever the cells there can do. With a :class:`VariabilityMap`
this module chooses instead

- **which physical word line carries each input** and **which two physical bit
  lines carry each output** (any two columns, either way round), using the
  spare rows and columns of an array larger than the layer, and
- **the conductance window** the scale comes from: the window that
  ``1 - quantile`` of the *used healthy* cells reach (within the caller's
  window, normally the datasheet's), so a few cells that cannot reach the top
  do not shrink the scale for all.

Cost model. A cell the map calls healthy or narrow can take any conductance in
``[max(g_lo, g_min_cell), min(g_hi, g_max_cell)]``; a stuck, unformed or
unresponsive cell only its measured value. A pair can then hold any
difference in ``[lo+ - hi-, hi+ - lo-]``, and a weight ``w`` costs the squared
distance (in weight units) from ``scale * w`` to that interval: a stuck-low
device costs nothing when it is the idle one of its pair, a stuck-high one
costs nothing only where its partner can compensate, and every weight is
realised by its pair's *nearest* achievable difference (the healthy partner of
a stuck device compensates). A small penalty per faulty device used breaks
ties toward spare cells.

Search. Alternating exact linear assignments (``scipy.optimize.
linear_sum_assignment``) of logical rows to physical rows, of ``G+`` columns, of
``G-`` columns, and of outputs to the chosen column pairs (with orientation),
each given the others, started from the naive placement and from a
fault-count ranking of rows and columns; every step keeps or lowers the
expected error, so the result is never worse than the naive placement under
the map's own cost model.

Pure numpy/scipy; the map is the only knowledge of the die.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from protocols.variability.result import Fault, VariabilityMap
from protocols.weights import WeightMappingError

METHODS = ("fault-aware", "naive")
_MOVABLE = (Fault.HEALTHY, Fault.NARROW)
_BIG = 1e30  # cost of a forbidden choice (a column already used by the other side)
_CHUNK = 1 << 24  # elements per cost block, to bound memory on large arrays


@dataclass(frozen=True)
class Placement:
    """Where a layer lives on the physical array, and the conductance scale.

    ``rows[i]``: the physical word line of input ``i``; ``cols[j]``: the physical
    bit lines ``(G+, G-)`` of output ``j``. Siemens; ``scale`` in S per weight unit.
    ``expected_error``: ``||W_expected - W|| / ||W||`` if every cell lands exactly
    on its target (stuck cells at their measured values); ``expected_error_naive``
    the same for the naive placement on the same map, for comparison.
    """

    method: str
    shape: tuple[int, int]  # (inputs, outputs)
    array_shape: tuple[int, int]
    rows: tuple[int, ...]
    cols: tuple[tuple[int, int], ...]
    g_min: float  # window used for the scale, S
    g_max: float
    w_clip: float
    scale: float
    clipped: int
    expected_error: float
    expected_error_naive: float
    faulty_cells_used: int  # non-healthy cells among the 2 * inputs * outputs used

    @property
    def row_map(self) -> np.ndarray:
        return np.asarray(self.rows, dtype=np.int64)

    @property
    def col_map(self) -> np.ndarray:
        return np.asarray(self.cols, dtype=np.int64).reshape(-1, 2)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"], d["array_shape"] = list(self.shape), list(self.array_shape)
        d["rows"] = [int(r) for r in self.rows]
        d["cols"] = [[int(a), int(b)] for a, b in self.cols]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The maps as arrays: ``row_map`` (inputs,), ``col_map`` (outputs, 2)."""
        return {"row_map": self.row_map, "col_map": self.col_map}

    def meta(self) -> dict[str, Any]:
        """Everything but the maps (JSON): with :meth:`to_arrays`, the whole placement."""
        d = self.to_dict()
        del d["rows"], d["cols"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Placement:
        return cls(method=str(d["method"]), shape=tuple(int(x) for x in d["shape"]),
                   array_shape=tuple(int(x) for x in d["array_shape"]),
                   rows=tuple(int(r) for r in d["rows"]),
                   cols=tuple((int(a), int(b)) for a, b in d["cols"]),
                   g_min=float(d["g_min"]), g_max=float(d["g_max"]),
                   w_clip=float(d["w_clip"]), scale=float(d["scale"]),
                   clipped=int(d["clipped"]), expected_error=float(d["expected_error"]),
                   expected_error_naive=float(d["expected_error_naive"]),
                   faulty_cells_used=int(d.get("faulty_cells_used", 0)))

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any], meta: dict[str, Any]) -> Placement:
        return cls.from_dict({**meta, "rows": np.asarray(arrays["row_map"]).tolist(),
                              "cols": np.asarray(arrays["col_map"]).reshape(-1, 2).tolist()})


# -- the cells as the map sees them ---------------------------------------------------------

def _stuck_values(vmap: VariabilityMap, g_lo: float, g_hi: float) -> np.ndarray:
    """The measured value of each non-movable cell (mean of its g_min and g_max)."""
    with np.errstate(invalid="ignore"):
        v = np.where(np.isfinite(vmap.g_min) & np.isfinite(vmap.g_max),
                     0.5 * (vmap.g_min + vmap.g_max),
                     np.where(np.isfinite(vmap.g_min), vmap.g_min, vmap.g_max))
    fallback = np.select([vmap.fault == Fault.STUCK_HIGH, vmap.fault == Fault.UNRESPONSIVE],
                         [g_hi, 0.5 * (g_lo + g_hi)], g_lo)
    return np.where(np.isfinite(v), v, fallback)


def cell_ranges(vmap: VariabilityMap, g_lo: float, g_hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Per cell, the conductances a target may ask of it: ``(lo, hi)``, S, array shape."""
    fault = np.asarray(vmap.fault)
    movable = np.isin(fault, [int(f) for f in _MOVABLE])
    gmin = np.where(np.isfinite(vmap.g_min), vmap.g_min, g_lo)
    gmax = np.where(np.isfinite(vmap.g_max), vmap.g_max, g_hi)
    lo = np.maximum(g_lo, gmin)
    hi = np.minimum(g_hi, gmax)
    # a cell whose whole range lies outside the window sits at its nearest end
    below, above = gmax < g_lo, gmin > g_hi
    lo = np.where(below, gmax, np.where(above, gmin, lo))
    hi = np.where(below, gmax, np.where(above, gmin, np.maximum(hi, lo)))
    stuck = _stuck_values(vmap, g_lo, g_hi)
    return np.where(movable, lo, stuck), np.where(movable, hi, stuck)


def scale_window(vmap: VariabilityMap, used: np.ndarray | None = None, *,
                 window: tuple[float, float] | None = None,
                 quantile: float = 0.01) -> tuple[float, float]:
    """The window ``1 - quantile`` of the (used) healthy cells reach, within ``window``."""
    healthy = np.asarray(vmap.fault) == Fault.HEALTHY
    if used is not None:
        healthy &= used
    gmax, gmin = vmap.g_max[healthy], vmap.g_min[healthy]
    gmax, gmin = gmax[np.isfinite(gmax)], gmin[np.isfinite(gmin)]
    lo_cap, hi_cap = window if window is not None else (-np.inf, np.inf)
    if gmax.size == 0 or gmin.size == 0:
        if window is None:
            raise WeightMappingError("the map has no healthy cell with a measured window; "
                                     "give window=(g_min, g_max)")
        return float(lo_cap), float(hi_cap)
    hi = min(float(np.quantile(gmax, quantile)), hi_cap)
    lo = max(float(np.quantile(gmin, 1.0 - quantile)), lo_cap)
    if not lo < hi:
        raise WeightMappingError(f"the healthy cells share no window: {quantile:.0%} of them "
                                 f"cannot reach above {hi * 1e6:.3g} uS, or below "
                                 f"{lo * 1e6:.3g} uS")
    return lo, hi


# -- the cost of a placement ---------------------------------------------------------------

def _gap(t: np.ndarray, d_lo: np.ndarray, d_hi: np.ndarray) -> np.ndarray:
    """Distance from ``t`` to the interval [d_lo, d_hi] (broadcast)."""
    return np.maximum(d_lo - t, 0.0) + np.maximum(t - d_hi, 0.0)


class _Problem:
    def __init__(self, t: np.ndarray, lo: np.ndarray, hi: np.ndarray, bad: np.ndarray,
                 penalty: float) -> None:
        self.t, self.lo, self.hi = t, lo, hi  # t: target differences, S (inputs, outputs)
        self.pen = bad.astype(np.float64) * penalty  # per physical cell, S^2
        self.n_in, self.n_out = t.shape

    def cost(self, rows, cp, cn) -> float:
        lo, hi, r = self.lo, self.hi, rows[:, None]
        g = _gap(self.t, lo[r, cp] - hi[r, cn], hi[r, cp] - lo[r, cn])
        return float(np.sum(g * g) + self.pen[r, cp].sum() + self.pen[r, cn].sum())

    def _blocks(self, n: int, per: int):
        step = max(1, _CHUNK // max(per, 1))
        for a in range(0, n, step):
            yield slice(a, min(n, a + step))

    def row_costs(self, cp, cn) -> np.ndarray:
        """cost[i, r]: logical row i on physical row r, given the columns."""
        d_lo = self.lo[:, cp] - self.hi[:, cn]  # (R, J)
        d_hi = self.hi[:, cp] - self.lo[:, cn]
        pen = self.pen[:, cp].sum(1) + self.pen[:, cn].sum(1)  # (R,)
        out = np.empty((self.n_in, self.lo.shape[0]))
        for s in self._blocks(self.n_in, d_lo.size):
            g = _gap(self.t[s, None, :], d_lo[None], d_hi[None])  # (i, R, J)
            out[s] = np.einsum("irj,irj->ir", g, g) + pen[None]
        return out

    def side_costs(self, rows, other, positive: bool) -> np.ndarray:
        """cost[j, c]: output j's G+ (or G-) on physical column c, given the rest."""
        lo, hi = self.lo[rows], self.hi[rows]  # (I, C)
        lo_o, hi_o = lo[:, other], hi[:, other]  # (I, J)
        pen = self.pen[rows].sum(0)  # (C,)
        out = np.empty((self.n_out, lo.shape[1]))
        for s in self._blocks(self.n_out, lo.size):
            if positive:
                d_lo = lo[:, None, :] - hi_o[:, s, None]
                d_hi = hi[:, None, :] - lo_o[:, s, None]
            else:
                d_lo = lo_o[:, s, None] - hi[:, None, :]
                d_hi = hi_o[:, s, None] - lo[:, None, :]
            g = _gap(self.t[:, s, None], d_lo, d_hi)  # (I, j, C)
            out[s] = np.einsum("ijc,ijc->jc", g, g) + pen[None]
        out[:, other] = _BIG  # a column cannot be both sides of pairs
        return out

    def pair_costs(self, rows, cp, cn) -> tuple[np.ndarray, np.ndarray]:
        """cost[j, k]: output j on the k-th chosen pair, best orientation; and whether
        it is flipped."""
        lo, hi = self.lo[rows], self.hi[rows]
        t = self.t[:, :, None]  # (I, J, 1) against pairs on the last axis
        g1 = _gap(t, (lo[:, cp] - hi[:, cn])[:, None, :], (hi[:, cp] - lo[:, cn])[:, None, :])
        g2 = _gap(t, (lo[:, cn] - hi[:, cp])[:, None, :], (hi[:, cn] - lo[:, cp])[:, None, :])
        c1, c2 = np.einsum("ijk,ijk->jk", g1, g1), np.einsum("ijk,ijk->jk", g2, g2)
        return np.minimum(c1, c2), c2 < c1


def _assign(cost: np.ndarray) -> np.ndarray:
    r, c = linear_sum_assignment(cost)
    out = np.empty(cost.shape[0], dtype=np.int64)
    out[r] = c
    return out


def _improve(p: _Problem, rows, cp, cn, rounds: int):
    best = p.cost(rows, cp, cn)
    for _ in range(rounds):
        start = best
        for step in ("rows", "pos", "neg", "pairs"):
            if step == "rows":
                new = (_assign(p.row_costs(cp, cn)), cp, cn)
            elif step == "pos":
                new = (rows, _assign(p.side_costs(rows, cn, True)), cn)
            elif step == "neg":
                new = (rows, cp, _assign(p.side_costs(rows, cp, False)))
            else:
                costs, flip = p.pair_costs(rows, cp, cn)
                k = _assign(costs)
                f = flip[np.arange(k.size), k]
                new = (rows, np.where(f, cn[k], cp[k]), np.where(f, cp[k], cn[k]))
            c = p.cost(*new)
            if c < best * (1 - 1e-12):
                best, (rows, cp, cn) = c, new
        if best >= start * (1 - 1e-9):
            break
    return best, rows, cp, cn


def _ranked_start(bad: np.ndarray, n_in: int, n_out: int):
    rows = np.sort(np.argsort(bad.sum(1), kind="stable")[:n_in])
    cols = np.sort(np.argsort(bad.sum(0), kind="stable")[: 2 * n_out])
    return rows, cols[0::2].copy(), cols[1::2].copy()


# -- targets from a placement --------------------------------------------------------------

def _pair_targets(t, lo_p, hi_p, lo_n, hi_n):
    """The pair conductances nearest to difference ``t``: idle device at its lowest,
    the partner compensating a device that cannot take its share."""
    pos = t >= 0
    gp = np.where(pos, lo_n + t, lo_p)
    gn = np.where(pos, lo_n, lo_p - t)
    # the carrying device is out of its range: put it at its end, re-aim the other
    gp_c = np.clip(gp, lo_p, hi_p)
    gn = np.where(gp_c != gp, np.clip(gp_c - t, lo_n, hi_n), gn)
    gp = gp_c
    gn_c = np.clip(gn, lo_n, hi_n)
    gp = np.where(gn_c != gn, np.clip(gn_c + t, lo_p, hi_p), gp)
    return gp, gn_c


def _targets(shape, rows, cp, cn, t, lo, hi) -> np.ndarray:
    out = np.full(shape, np.nan)
    r = rows[:, None]
    gp, gn = _pair_targets(t, lo[r, cp], hi[r, cp], lo[r, cn], hi[r, cn])
    out[r, cp] = gp
    out[r, cn] = gn
    return out


def _check(w: np.ndarray, vmap: VariabilityMap) -> tuple[int, int]:
    if w.ndim != 2 or w.size == 0:
        raise WeightMappingError(f"weights must be a non-empty 2-D matrix, got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise WeightMappingError("weights contain NaN or infinity")
    rows, cols = vmap.shape
    if w.shape[0] > rows or 2 * w.shape[1] > cols:
        raise WeightMappingError(f"weights {w.shape[0]} x {w.shape[1]} need {w.shape[0]} x "
                                 f"{2 * w.shape[1]} cells; the mapped array is {rows} x {cols}")
    return rows, cols


def _relative(err2: float, w: np.ndarray) -> float:
    norm = float(np.linalg.norm(w))
    return float(np.sqrt(err2) / norm) if norm > 0 else float(np.sqrt(err2))


def _fault_aware(kept, w_clip, vmap, bad, window, quantile, fault_penalty, rounds):
    """The search, with the window from all healthy cells, then from the used ones:
    (rows, G+ columns, G- columns, g_lo, g_hi, targets)."""
    n_in, n_out = kept.shape
    naive = (np.arange(n_in), 2 * np.arange(n_out), 2 * np.arange(n_out) + 1)
    g_lo, g_hi = scale_window(vmap, window=window, quantile=quantile)
    best = None
    for _ in range(2):
        scale = (g_hi - g_lo) / w_clip
        lo, hi = cell_ranges(vmap, g_lo, g_hi)
        p = _Problem(scale * kept, lo, hi, bad, (fault_penalty * (g_hi - g_lo)) ** 2)
        starts = [naive, _ranked_start(bad, n_in, n_out)] + ([best[1:]] if best else [])
        best = min((_improve(p, *(np.asarray(a).copy() for a in s), rounds) for s in starts),
                   key=lambda x: x[0])
        used = np.zeros(vmap.shape, bool)
        r = best[1][:, None]
        used[r, best[2]] = used[r, best[3]] = True
        new_lo, new_hi = scale_window(vmap, used, window=window, quantile=quantile)
        tol = 1e-3 * (g_hi - g_lo)
        if abs(new_lo - g_lo) <= tol and abs(new_hi - g_hi) <= tol:
            break
        g_lo, g_hi = new_lo, new_hi
    _, rows, cp, cn = best
    return rows, cp, cn, g_lo, g_hi, _targets(vmap.shape, rows, cp, cn, scale * kept, lo, hi)


def place_weights(w: np.ndarray, vmap: VariabilityMap, *, method: str = "fault-aware",
                  window: tuple[float, float] | None = None, quantile: float = 0.01,
                  clip_percentile: float = 100.0, fault_penalty: float = 0.01,
                  rounds: int = 12) -> tuple[np.ndarray, Placement]:
    """Targets (array shape, S, NaN = leave alone) and the :class:`Placement` of ``w``.

    ``window``: the range targets may use (normally the datasheet's window); the
    scale comes from the window ``1 - quantile`` of the used healthy cells reach
    inside it (``method="naive"``: ``window`` itself, top-left, interleaved pairs,
    like :func:`protocols.weights.map_weights`). ``fault_penalty``: the cost of
    each faulty device used, as a fraction of the window (a tie-breaker toward
    spare cells). ``rounds``: alternating-assignment rounds per start.
    """
    if method not in METHODS:
        raise WeightMappingError(f"placement {method!r}: choose {' or '.join(METHODS)}")
    w = np.asarray(w, dtype=np.float64)
    shape = _check(w, vmap)
    if not 0 < clip_percentile <= 100:
        raise WeightMappingError("clip_percentile must be in (0, 100]")
    if not 0 <= quantile < 0.5:
        raise WeightMappingError("quantile must be in [0, 0.5)")
    if window is not None:
        lo_w, hi_w = (float(x) for x in window)
        if not (np.isfinite(lo_w) and np.isfinite(hi_w)) or not 0 <= lo_w < hi_w:
            raise WeightMappingError(f"conductance window [{lo_w}, {hi_w}] S is empty")
        window = (lo_w, hi_w)
    n_in, n_out = w.shape
    w_clip = float(np.percentile(np.abs(w), clip_percentile)) or 1.0
    kept = np.clip(w, -w_clip, w_clip)
    bad = np.asarray(vmap.fault) != Fault.HEALTHY
    naive = (np.arange(n_in), 2 * np.arange(n_out), 2 * np.arange(n_out) + 1)

    if method == "naive":
        if window is None:
            raise WeightMappingError("naive placement needs window=(g_min, g_max)")
        g_lo, g_hi = window
        targets, err = _naive(w, vmap, window, w_clip)
        rows, cp, cn = naive
        scale = (g_hi - g_lo) / w_clip
    else:
        rows, cp, cn, g_lo, g_hi, targets = _fault_aware(kept, w_clip, vmap, bad, window,
                                                         quantile, fault_penalty, rounds)
        scale = (g_hi - g_lo) / w_clip
        w_exp = (targets[rows[:, None], cp] - targets[rows[:, None], cn]) / scale
        err = _relative(float(np.sum((w_exp - w) ** 2)), w)
    err_naive = _naive(w, vmap, window if window is not None else (g_lo, g_hi), w_clip)[1]
    used_cells = np.concatenate([bad[rows[:, None], cp].ravel(), bad[rows[:, None], cn].ravel()])
    placement = Placement(
        method=method, shape=(n_in, n_out), array_shape=shape,
        rows=tuple(int(x) for x in rows),
        cols=tuple((int(a), int(b)) for a, b in zip(cp, cn, strict=True)),
        g_min=float(g_lo), g_max=float(g_hi), w_clip=w_clip, scale=float(scale),
        clipped=int(np.count_nonzero(np.abs(w) > w_clip)), expected_error=err,
        expected_error_naive=err_naive, faulty_cells_used=int(used_cells.sum()))
    return targets, placement


def _naive(w, vmap, window, w_clip) -> tuple[np.ndarray, float]:
    """Today's placement (:func:`protocols.weights.map_weights`, top-left) and its expected
    error on this map: each cell lands on its target as far as its range allows."""
    n_in, n_out = w.shape
    g_lo, g_hi = window
    scale = (g_hi - g_lo) / w_clip
    kept = np.clip(w, -w_clip, w_clip)
    targets = np.full(vmap.shape, np.nan)
    targets[:n_in, 0: 2 * n_out: 2] = g_lo + scale * np.maximum(kept, 0.0)
    targets[:n_in, 1: 2 * n_out: 2] = g_lo + scale * np.maximum(-kept, 0.0)
    lo, hi = cell_ranges(vmap, g_lo, g_hi)
    g = np.clip(targets, lo, hi)[:n_in, : 2 * n_out]
    w_exp = (g[:, 0::2] - g[:, 1::2]) / scale
    return targets, _relative(float(np.sum((w_exp - w) ** 2)), w)


def weights_from_placement(g: np.ndarray, placement: Placement) -> np.ndarray:
    """Effective weights (inputs, outputs) the conductances ``g`` hold under ``placement``."""
    g = np.asarray(g, dtype=np.float64)
    if g.shape != tuple(placement.array_shape):
        raise WeightMappingError(f"conductances {g.shape} are not the placed array "
                                 f"{tuple(placement.array_shape)}")
    r = placement.row_map[:, None]
    cols = placement.col_map
    return (g[r, cols[:, 0]] - g[r, cols[:, 1]]) / placement.scale
