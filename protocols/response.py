"""Per-cell pulse-response models that tell write-verify which pulse to send.

The loop asks a model for the amplitude and width that should move each cell
by a wanted amount, then tells it what the cell actually did. The default
:class:`AdaptiveResponse` assumes only what holds broadly for RRAM and PCM
(no movement below a threshold, step growing as a power of the overdrive and
of the width) and learns each cell's gain from its own history, starting from
the population's median. Benchmarks plug in an oracle with the true
parameters through the same interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

SET, RESET = 0, 1


class ResponseModel(Protocol):
    def pulse_for(self, idx: np.ndarray, polarity: np.ndarray, wanted: np.ndarray,
                  g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Amplitude magnitude (V) and width (s) to move cells ``idx`` by ``wanted`` (S > 0)."""
        ...

    def observe(self, idx: np.ndarray, polarity: np.ndarray, volts: np.ndarray,
                width: np.ndarray, moved: np.ndarray) -> None:
        """Cells ``idx`` moved by ``moved`` (S, positive = the intended direction)."""
        ...

    def at_max_drive(self, volts: np.ndarray, width: np.ndarray,
                     polarity: np.ndarray) -> np.ndarray:
        """Whether a pulse is the strongest the model may send."""
        ...


@dataclass(frozen=True)
class PulseModel:
    """Nominal shape of the response, per polarity: drive = overdrive^p (w/w_ref)^q.

    Volts and seconds. ``threshold`` is where cells start to move; the learned
    per-cell gain (S per unit drive) absorbs each cell's own strength.
    """

    set_threshold: float = 0.9
    reset_threshold: float = 1.0
    set_reference: float = 2.0
    reset_reference: float = 2.2
    amplitude_exponent: float = 2.0
    width_reference: float = 1e-6
    width_exponent: float = 0.5
    v_max: float = 4.0  # set from the controller's limits by write_verify
    w_max: float = 100e-6
    set_width_max: float | None = None  # longest SET width (default w_max)
    v_min_over: float = 0.05  # smallest overdrive used (V above threshold)

    def thresholds(self, polarity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        th = np.where(polarity == SET, self.set_threshold, self.reset_threshold)
        ref = np.where(polarity == SET, self.set_reference, self.reset_reference)
        return th, ref

    def drive(self, polarity: np.ndarray, volts: np.ndarray, width: np.ndarray) -> np.ndarray:
        th, ref = self.thresholds(polarity)
        over = np.maximum(volts - th, 0.0) / (ref - th)
        return over**self.amplitude_exponent * (width / self.width_reference) ** self.width_exponent

    def width_cap(self, polarity: np.ndarray) -> np.ndarray:
        set_cap = self.w_max if self.set_width_max is None else min(self.set_width_max, self.w_max)
        return np.where(polarity == SET, set_cap, self.w_max)

    def pulse_for_drive(self, polarity: np.ndarray, d: np.ndarray):
        """Weakest pulse giving drive ``d``: amplitude first, then width at v_max."""
        th, ref = self.thresholds(polarity)
        over = (np.maximum(d, 0.0) ** (1.0 / self.amplitude_exponent)) * (ref - th)
        volts = th + np.maximum(over, self.v_min_over)
        width = np.full(d.shape, self.width_reference)
        capped = volts > self.v_max
        if np.any(capped):
            d_vmax = ((self.v_max - th[capped]) / (ref[capped] - th[capped])) ** (
                self.amplitude_exponent)
            if self.width_exponent > 0:
                factor = (d[capped] / d_vmax) ** (1.0 / self.width_exponent)
            else:
                factor = np.ones_like(d_vmax)
            width[capped] = self.width_reference * factor
            volts[capped] = self.v_max
        width = np.clip(width, self.width_reference, self.width_cap(polarity))
        return volts, width


class AdaptiveResponse:
    """Learns the response from what the cells do; no device truth is used.

    Population law, per polarity, fitted robustly to the first observed steps
    (the pilot batch and every cell's first pulse, which span the widest range
    of drives): move = k s(g) (1 - exp(-a d)) / a, with d the nominal drive of
    :class:`PulseModel`: linear for small drives (slope k s), saturating for
    large ones (at k s / a), as soft-bounded devices do; s(g) is the span a
    step can cover: for RESET the present conductance itself (soft bound toward
    a floor near zero, so steps shrink 40-fold across a 1-40 uS window), for SET
    1 (its bound lies far above the window). The law is then frozen, and each cell
    keeps its own factor on ``k`` (log space, updated in proportion to how far
    the expected move stands above the verify noise). Before the pilot's steps
    are seen, a linear prior (``initial_gain`` S per unit drive) aims.
    """

    MIN_SAMPLES = 64
    MAX_SAMPLES = 20000
    FREEZE_SAMPLES = 2000  # after a fit on at least this many first steps, the law is kept
    RELATIVE_STEP_NOISE = 0.3  # assumed cycle-to-cycle spread of a step, as a fraction of it
    PRIOR_VAR = 0.16  # cell-to-cell spread of log gain before a cell is seen (~40 %)
    DRIFT_VAR = 0.01  # a cell's gain wanders as its state moves (per pulse)

    def __init__(self, size: int, model: PulseModel, initial_gain: float = 2e-6,
                 noise: float = 0.4e-6, learning_rate: float = 0.5) -> None:
        self.model = model
        self.noise = noise
        self.rate = learning_rate
        self.initial_gain = initial_gain
        self.log_c = np.zeros((2, size))  # per-cell factor on the population gain
        self.var_c = np.full((2, size), self.PRIOR_VAR)  # its uncertainty (log units^2)
        self.law: list[tuple[float, float] | None] = [None, None]  # (k, a) per polarity
        self._samples: list[list[np.ndarray]] = [[], []]
        self._count = [0, 0]
        self._fits = [0, 0]
        self._frozen = [False, False]

    def _fit(self, p: int) -> None:
        from scipy.optimize import least_squares

        d, moved, g = np.concatenate(self._samples[p], axis=1)[:, : self.MAX_SAMPLES]
        keep = d > 0
        d, moved = d[keep], moved[keep] / self._span(p, g[keep])
        if d.size < self.MIN_SAMPLES:
            return

        def curve(x, d):
            k, a = np.exp(x[0]), np.exp(x[1])
            return k * -np.expm1(-a * d) / a

        def residual(x):
            pred = curve(x, d)
            # step noise grows with the step (cycle-to-cycle): weight accordingly
            return (pred - moved) / (self.noise + self.RELATIVE_STEP_NOISE * pred)

        x0 = [np.log(max(np.median(np.maximum(moved, 0) / d), 1e-9)), np.log(0.05)]
        fit = least_squares(residual, x0, loss="soft_l1", f_scale=2.0,
                            bounds=([-40.0, np.log(1e-4)], [0.0, np.log(20.0)]), max_nfev=200)
        k, a = float(np.exp(fit.x[0])), float(np.exp(fit.x[1]))
        pred = curve(fit.x, d)
        clear = pred > 4 * self.noise  # re-centre on steps that stand clear of the noise
        if np.count_nonzero(clear) >= self.MIN_SAMPLES // 2:
            k *= float(np.median(moved[clear] / pred[clear]))
        self.law[p] = (k, a)

    def _gain(self, p: int, idx: np.ndarray) -> np.ndarray:
        return self.law[p][0] * np.exp(self.log_c[p, idx])

    @staticmethod
    def _span(p: int, g: np.ndarray) -> np.ndarray:
        if p == SET:
            return np.ones_like(g)
        return np.maximum(np.abs(g), 1e-9) * 1e5  # ~1 at 10 uS, keeps k well scaled

    # -- the interface ------------------------------------------------------------
    def pulse_for(self, idx, polarity, wanted, g):
        d = np.empty(idx.size)
        for p in (SET, RESET):
            sel = polarity == p
            if not np.any(sel):
                continue
            if self.law[p] is None:
                d[sel] = wanted[sel] / self.initial_gain
                continue
            _, a = self.law[p]
            reach = self._gain(p, idx[sel]) * self._span(p, g[sel]) / a  # largest one-pulse move
            frac = wanted[sel] / reach
            with np.errstate(divide="ignore"):
                # beyond one pulse's reach: ask for the strongest pulse allowed
                d[sel] = np.where(frac < 0.999, -np.log1p(-np.minimum(frac, 0.999)) / a, np.inf)
        return self.model.pulse_for_drive(polarity, d)

    def observe(self, idx, polarity, volts, width, moved, g_before=None):
        d = self.model.drive(polarity, volts, width)
        ok = d > 0
        if not np.any(ok):
            return
        idx, polarity, d, moved = idx[ok], polarity[ok], d[ok], moved[ok]
        for p in (SET, RESET):
            sel = polarity == p
            if not np.any(sel):
                continue
            gb = np.full(idx.size, 1e-5) if g_before is None else g_before[ok]
            if self.law[p] is not None:
                # no visible move: step up (halve the gain estimate) so the drive climbs
                # to the strongest pulse, where a stuck cell is recognised
                visible = moved[sel] > np.maximum(2 * self.noise, 0.03 * np.abs(gb[sel]))
                cells = idx[sel]
                self.log_c[p, cells[~visible]] -= np.log(2.0)
                self._update_cells(p, cells[visible], d[sel][visible],
                                   moved[sel][visible] / self._span(p, gb[sel][visible]))
            if not self._frozen[p]:
                self._samples[p].append(np.stack([d[sel], moved[sel], gb[sel]]))
                self._count[p] += int(sel.sum())
        for p in (SET, RESET):
            if not self._frozen[p] and self._count[p] >= self.MIN_SAMPLES:
                self._fit(p)
                self._fits[p] += 1
                if self._fits[p] >= 2 and self._count[p] >= self.FREEZE_SAMPLES:
                    self._frozen[p] = True
                    self._samples[p] = []

    def _update_cells(self, p, idx, d, moved):
        """Kalman update of each cell's log gain factor; ``moved`` already / span."""
        k, a = self.law[p]
        shape = k * -np.expm1(-a * d) / a  # the population's move at factor 1
        current = self.log_c[p, idx]
        var = self.var_c[p, idx] + self.DRIFT_VAR
        expected = np.exp(current) * shape
        observed = np.log(np.maximum(moved, 1e-30) / shape)
        observed = np.clip(observed, current - np.log(8.0), current + np.log(8.0))
        # observation variance: cycle-to-cycle spread plus verify noise over the step
        obs_var = self.RELATIVE_STEP_NOISE**2 + (self.noise / np.maximum(expected, 1e-30)) ** 2
        gain = var / (var + obs_var)
        self.log_c[p, idx] = current + gain * (observed - current)
        self.var_c[p, idx] = (1.0 - gain) * var

    def at_max_drive(self, volts, width, polarity=None):
        cap = self.model.w_max if polarity is None else self.model.width_cap(polarity)
        return (volts >= self.model.v_max - 1e-9) & (width >= cap * (1 - 1e-9))
