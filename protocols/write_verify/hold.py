"""Retention-aware programming: the relaxation law learned from the die's own re-reads.

RRAM relaxes in log time after each programming event: a mean shift and an
unpredictable part whose spread grows with ln t. A cell accepted in band now
may leave it by the time the array is used (``hold_s`` after programming ends).
:class:`RelaxationLaw` is what the loop learns about that from re-reads of
accepted cells after waits (never from a simulator or a chip file): per ln t
of age (seconds, counted from 1 s: nothing measurable moves before),

* mean shift  dG = dL (c0 + c1 G)    (level-linear: PCM drift scales with G);
* spread      Var[G(L2) - G(L1)] = dL (alpha + beta (L1 + L2)),

the second being the increment of a spread linear in ln t, sigma(L) = a + b L,
for which alpha = 2ab and beta = b^2: both fits are linear least squares.
The unpredictable part of a cell's future is only what is left from its last
look to the hold time, so a cell re-read late is predicted well, and a cell
pulsed again starts its walk afresh.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import ndtr

from protocols.write_verify.params import WriteVerifyError

T_FLOOR_S = 1.0  # ages below this count as this: relaxation laws are written from 1 s on
MIN_SAMPLES = 200  # re-read cells a fit needs
SAMPLES_PER_LOOK = 8192  # re-reads kept per look for the fit (bounded memory)


@dataclass(frozen=True)
class HoldParams:
    """Knobs of hold mode (``write_verify(..., hold_s=...)``; each also as a keyword
    ``hold_<name>``). Seconds; probabilities and shares as fractions of one.

    ``hold_s`` > 0 aims for the band that long after programming ends: rounds of
    wait, re-read, fit of the relaxation law and touch-up of the cells predicted to
    be out then, until the predicted in-band stops improving. 0: off.
    """

    hold_s: float = 0.0
    wait_fraction: float = 0.05  # each round waits this share of hold_s (>= relax_wait_s)
    wait_max_s: float = 600.0  # ... at most this: a day's hold must not cost a bench day
    rounds: int = 12  # most wait / re-read rounds
    touch_probability: float = 0.85  # program again a cell predicted in band less likely
    # accept a cell only this close to its aim (share of the band): the walk ahead of it
    # needs the rest (1: the loop's usual acceptance)
    accept_fraction: float = 1.0
    min_gain: float = 0.002  # stop when a round raises the predicted in-band less

    def __post_init__(self) -> None:
        checks = {
            "hold_s": (_finite(self.hold_s) and self.hold_s >= 0,
                       "seconds after programming ends, finite, >= 0; 0: no hold"),
            "wait_fraction": (_finite(self.wait_fraction) and 0 < self.wait_fraction <= 10,
                              "a share of hold_s, > 0"),
            "wait_max_s": (_finite(self.wait_max_s) and self.wait_max_s > 0, "seconds, > 0"),
            "rounds": (isinstance(self.rounds, (int, np.integer)) and not isinstance(
                self.rounds, bool) and self.rounds >= 2, "two looks at least fit the law"),
            "touch_probability": (_finite(self.touch_probability)
                                  and 0 < self.touch_probability < 1, "between 0 and 1"),
            "accept_fraction": (_finite(self.accept_fraction)
                                and 0 < self.accept_fraction <= 1, "in (0, 1]"),
            "min_gain": (_finite(self.min_gain) and self.min_gain >= 0, ">= 0"),
        }
        for name, (ok, hint) in checks.items():
            if not ok:
                key = name if name == "hold_s" else f"hold_{name}"
                raise WriteVerifyError(f"{key}: invalid value {getattr(self, name)!r} ({hint})")

    @property
    def on(self) -> bool:
        return self.hold_s > 0

    def wait_s(self, relax_wait_s: float) -> float:
        """The wait of each round, s."""
        return max(relax_wait_s, min(self.wait_fraction * self.hold_s, self.wait_max_s))


def _finite(x) -> bool:
    return (isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)
            and math.isfinite(x))


def log_age(age_s: np.ndarray) -> np.ndarray:
    """ln(age / 1 s), ages below :data:`T_FLOOR_S` counted as that."""
    return np.log(np.maximum(np.asarray(age_s, np.float64), T_FLOOR_S))


@dataclass(frozen=True)
class RelaxationLaw:
    """Relaxation versus log age, fitted from re-reads. Siemens; ln of seconds.

    ``shift_per_ln_s`` + ``shift_per_ln_per_g`` * G is the mean shift per unit
    ln t (S); ``var_per_ln_s2`` and ``var_per_ln2_s2`` give the variance of the
    unpredictable part accumulated between log ages L1 < L2:
    (L2 - L1) (var_per_ln + var_per_ln2 (L1 + L2)), S^2. ``samples``: re-reads fitted.
    """

    shift_per_ln_s: float = 0.0
    shift_per_ln_per_g: float = 0.0
    var_per_ln_s2: float = 0.0
    var_per_ln2_s2: float = 0.0
    samples: int = 0

    def shift(self, g: np.ndarray, l_from: np.ndarray, l_to: np.ndarray) -> np.ndarray:
        """Expected change of a cell at ``g`` from log age ``l_from`` to ``l_to``, S."""
        return (l_to - l_from) * (self.shift_per_ln_s + self.shift_per_ln_per_g * g)

    def variance(self, l_from: np.ndarray, l_to: np.ndarray) -> np.ndarray:
        """Variance of the unpredictable part added from ``l_from`` to ``l_to``, S^2."""
        d = np.maximum(l_to - l_from, 0.0)
        return np.maximum(d * (self.var_per_ln_s2 + self.var_per_ln2_s2 * (l_from + l_to)), 0.0)

    def in_band(self, g: np.ndarray, goal: np.ndarray, tolerance: float, l_now: np.ndarray,
                l_use: np.ndarray, var_now: np.ndarray | float = 0.0) -> np.ndarray:
        """Probability that a cell estimated at ``g`` (estimate variance ``var_now``, S^2)
        at log age ``l_now`` is within ``tolerance`` of ``goal`` at log age ``l_use``."""
        e = g + self.shift(g, l_now, l_use) - goal
        sd = np.sqrt(self.variance(l_now, l_use) + var_now + 1e-30)
        return ndtr((tolerance - e) / sd) - ndtr((-tolerance - e) / sd)

    def to_arrays(self) -> dict[str, Any]:
        return {"shift_per_ln_s": self.shift_per_ln_s,
                "shift_per_ln_per_g": self.shift_per_ln_per_g,
                "var_per_ln_s2": self.var_per_ln_s2, "var_per_ln2_s2": self.var_per_ln2_s2,
                "samples": self.samples, "t_floor_s": T_FLOOR_S}

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any]) -> RelaxationLaw:
        return cls(**{k: type(getattr(cls, k))(np.asarray(arrays[k]).item())
                      for k in ("shift_per_ln_s", "shift_per_ln_per_g", "var_per_ln_s2",
                                "var_per_ln2_s2", "samples")})


class RelaxationFit:
    """Re-reads of unpulsed cells, (L1, L2, G1, dG, read variance), a bounded sample per
    look; :meth:`law` fits :class:`RelaxationLaw` to all of them."""

    def __init__(self, seed: int = 0) -> None:
        self.rows: list[np.ndarray] = []
        self.rng = np.random.default_rng(seed)
        self.looks = 0

    @property
    def count(self) -> int:
        return sum(r.shape[1] for r in self.rows)

    def add(self, l1: np.ndarray, l2: np.ndarray, g1: np.ndarray, g2: np.ndarray,
            read_var: np.ndarray) -> None:
        take = np.flatnonzero(np.isfinite(g1) & np.isfinite(g2) & (l2 > l1))
        if take.size == 0:
            return
        if take.size > SAMPLES_PER_LOOK:  # the sample first: no copies of a whole look
            take = take[self.rng.choice(take.size, SAMPLES_PER_LOOK, replace=False)]
        g1 = np.asarray(g1, np.float64)[take]
        rows = np.stack([l1[take], l2[take], g1, g2[take] - g1,
                         np.broadcast_to(read_var, l1.shape)[take]])
        self.rows.append(rows)
        self.looks += 1

    def law(self) -> RelaxationLaw | None:
        """The fit, or None until two looks and :data:`MIN_SAMPLES` re-reads (one look
        cannot tell a spread growing with ln t from one that starts wide)."""
        if self.looks < 2 or self.count < MIN_SAMPLES:
            return None
        l1, l2, g1, dg, read_var = np.concatenate(self.rows, axis=1)
        dl = l2 - l1
        keep = np.ones(dl.size, bool)
        for _ in range(2):  # refit without the few re-reads far off the law (a jump, a glitch)
            a = np.stack([dl, dl * g1], axis=1)[keep]
            c0, c1 = np.linalg.lstsq(a, dg[keep], rcond=None)[0]
            r2 = (dg - dl * (c0 + c1 * g1)) ** 2 - read_var
            b = np.stack([dl, dl * (l1 + l2)], axis=1)[keep]
            alpha, beta = np.linalg.lstsq(b, r2[keep], rcond=None)[0]
            expected = np.maximum(dl * (alpha + beta * (l1 + l2)), 1e-30) + read_var
            keep = (dg - dl * (c0 + c1 * g1)) ** 2 <= 25.0 * expected
        if beta < 0:  # a spread that would shrink with time: keep the mean rate alone
            beta, alpha = 0.0, max(float(np.sum(b[:, 0] * r2[keep]) / np.sum(b[:, 0] ** 2)), 0.0)
        return RelaxationLaw(float(c0), float(c1), float(alpha), float(beta), int(keep.sum()))
