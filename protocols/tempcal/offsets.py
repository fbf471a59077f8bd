"""Each column's read offset at a hot visit: the MVM offsets, scaled by the reads.

A read at temperature T is ``R = Q exp(gamma_j + lambda(ln Q)) + b_j`` per cell
against the reference read ``Q`` (where the chain is trimmed: ``b = 0``): a
column gain, a die-wide level law and the column's offset, the cells' own
coefficients scattering about it. The reads alone fix each column's offset only
relative to the others': an offset common to every column looks like a change
of the low levels, which the level law absorbs. The zero-input MVM offsets
``o_j`` fix it: both come from the column's read-out chain, so ``b_j = kappa o_j``
with one ``kappa`` for the die (the read's full scale over the MVM range), found
by Gauss-Newton on the log ratios' residual from the column x level fit, every
hot visit at once.

That the reads and MVM share each column's chain is an assumption (the reference
board's and the simulator's; a NeuRRAM-style neuron reads through its MVM ADC):
:func:`read_offsets` also returns how much of the columns' own intercepts (each
column fitted in turn with the level law) ``kappa o`` explains, to check it. With
``shared_chain=False`` those intercepts stand instead; a die-wide offset is then
indistinguishable from the low levels' law, and the correction carries that
ambiguity (``docs/temperature.md``).
"""

from __future__ import annotations

import numpy as np

from protocols.tempcal.lsq import hat_basis, two_way
from protocols.tempcal.model import FLOOR_SHARE
from protocols.tempcal.params import TempcalError

ROUNDS = 8


class _Visit:
    """One hot visit's reads against its reference, ready for the column x level fit."""

    def __init__(self, sweep, v: int, knots: np.ndarray):
        r, q = sweep.reads_s[v], sweep.reads_s[sweep.paired[v]]
        self.floor = FLOOR_SHARE * float(np.nanpercentile(q, 99))
        self.ok = (q > self.floor) & np.isfinite(r) & np.isfinite(q)
        self.r, self.q = r, q
        self.o = sweep.mvm_offset[v] - sweep.mvm_offset[sweep.paired[v]]
        self.cols = np.broadcast_to(np.arange(r.shape[1]), r.shape)[self.ok]
        self.basis = tuple(a[self.ok] for a in hat_basis(np.log(np.where(self.ok, q, 1.0)),
                                                         knots))
        self.knots = knots

    def fit(self, values: np.ndarray, use: np.ndarray):
        """The column x level fit of ``values`` (at the ok cells, where ``use``): the
        residual (0 where not used) and the level part alone."""
        col, level = two_way(values[use], np.ones(int(use.sum())), self.cols[use],
                             tuple(a[use] for a in self.basis), self.knots.size,
                             self.r.shape[1])
        i0, i1, w0, w1 = self.basis
        law = level[i0] * w0 + level[i1] * w1
        return np.where(use, values - col[self.cols] - law, 0.0), law

    def log_ratio(self, b: np.ndarray):
        """ln((R - b) / Q) at the ok cells with offsets ``b`` (per cell), and where defined."""
        h = self.r[self.ok] - b
        use = h > self.floor
        return np.where(use, np.log(np.where(use, h, 1.0) / self.q[self.ok]), 0.0), use, h

    def level(self, b: np.ndarray) -> np.ndarray:
        """exp of the level law at every cell with column offsets ``b`` taken out."""
        y, use, _ = self.log_ratio(b[self.cols])
        out = np.ones(self.r.shape)
        out[self.ok] = np.exp(self.fit(y, use)[1])
        return out


def _kappa(visits: list[_Visit]) -> float:
    """The die's read offset per MVM offset: Gauss-Newton on the residual of
    ``ln((R - kappa o) / Q)`` from the column x level fit, all visits together."""
    kappa = 0.0
    for _ in range(ROUNDS):
        num = den = 0.0
        for v in visits:
            y, use, h = v.log_ratio(kappa * v.o[v.cols])
            ry = v.fit(y, use)[0]
            rz = v.fit(np.where(use, v.o[v.cols] / np.where(use, h, 1.0), 0.0), use)[0]
            num += float((ry * rz).sum())
            den += float((rz * rz).sum())
        step = num / den if den > 0 else 0.0
        kappa += step
        if abs(step) <= 1e-12 * max(abs(kappa), 1e-300):
            break
    return kappa


def _intercepts(r: np.ndarray, x: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Per column: the offset of ``r = g x + b``, fitted as ``r / x = g + b / x``."""
    w = ok.astype(np.float64)
    s = np.where(ok, 1.0 / np.where(ok, x, 1.0), 0.0)
    t = np.where(ok, r * s, 0.0)
    n = np.maximum(w.sum(axis=0), 1.0)
    ms, mt = s.sum(axis=0) / n, t.sum(axis=0) / n
    vs = (w * (s - ms) ** 2).sum(axis=0)
    b = (w * (s - ms) * (t - mt)).sum(axis=0) / np.where(vs > 0, vs, 1.0)
    return np.where(vs > 0, b, 0.0)


def _free(v: _Visit, start: np.ndarray) -> np.ndarray:
    """Each column's own intercept, refined in turn with the level law."""
    b = start.copy()
    for _ in range(ROUNDS):
        x = v.q * v.level(b)
        b = _intercepts(v.r, x, v.ok & (x > v.floor))
    return b


def read_offsets(sweep, knots: np.ndarray, shared_chain: bool = True):
    """Per visit and column, what a read adds (S) over the reference (0 at the reference
    visits, fitted at the hot ones: see the module docstring), and the share of the
    columns' own intercepts' spread the MVM offsets explain (1: one chain)."""
    hot = np.flatnonzero(~sweep.reference)
    if hot.size == 0:
        raise TempcalError("the sweep has no visit away from the reference temperature")
    visits = [_Visit(sweep, v, knots) for v in hot]
    kappa = _kappa(visits)
    tied = np.array([kappa * v.o for v in visits])
    own = np.array([_free(v, t) for v, t in zip(visits, tied, strict=True)])
    spread = own - own.mean(axis=1, keepdims=True)
    miss = (own - tied) - (own - tied).mean(axis=1, keepdims=True)
    explained = float(np.clip(1.0 - float((miss ** 2).sum()) / max(
        float((spread ** 2).sum()), 1e-300), 0.0, 1.0))
    out = np.zeros((sweep.reads_s.shape[0], sweep.shape[1]))
    out[hot] = tied if shared_chain else own
    return out, explained
