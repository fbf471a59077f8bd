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

    Population law, per polarity, fitted robustly to every observed step:
    soft bounds, move = |B - g| (1 - exp(-a d)) with d the nominal drive of
    :class:`PulseModel`. Each cell then keeps its own multiplicative factor on
    ``a`` (log space, updated in proportion to how far the expected move stands
    above the verify noise). Before enough steps are seen, a linear prior
    (``initial_gain`` S per unit drive) aims the first pulses.
    """

    MIN_SAMPLES = 64
    MAX_SAMPLES = 20000

    def __init__(self, size: int, model: PulseModel, initial_gain: float = 2e-6,
                 noise: float = 0.4e-6, learning_rate: float = 0.5) -> None:
        self.model = model
        self.noise = noise
        self.rate = learning_rate
        self.initial_gain = initial_gain
        self.log_c = np.zeros((2, size))  # per-cell factor on the population rate
        self.law: list[tuple[float, float] | None] = [None, None]  # (B, a) per polarity
        self._samples: list[list[np.ndarray]] = [[], []]
        self._count = [0, 0]

    # -- the population law ----------------------------------------------------
    def _span(self, p: int, g: np.ndarray) -> np.ndarray:
        bound, _ = self.law[p]
        return np.maximum(bound - g, 1e-12) if p == SET else np.maximum(g - bound, 1e-12)

    def _fit(self, p: int) -> None:
        from scipy.optimize import least_squares

        data = np.concatenate(self._samples[p], axis=1)[:, -self.MAX_SAMPLES:]
        g, d, moved = data
        keep = d > 0
        g, d, moved = g[keep], d[keep], moved[keep]
        if g.size < self.MIN_SAMPLES:
            return
        lo, hi = float(np.min(g)), float(np.max(g))
        scale = max(hi, 1e-9)

        def unpack(x):
            if p == SET:
                bound = hi + scale * np.exp(x[0])
            else:
                bound = lo / (1.0 + np.exp(-x[0]))  # between 0 and the lowest state seen
            return bound, np.exp(x[1])

        def residual(x):
            bound, a = unpack(x)
            span = (bound - g) if p == SET else (g - bound)
            return (span * -np.expm1(-a * d) - moved) / self.noise

        x0 = [0.0, np.log(0.1)] if self.law[p] is None else self._pack(p, lo, hi, scale)
        fit = least_squares(residual, x0, loss="soft_l1", f_scale=2.0, max_nfev=200)
        bound, a = unpack(fit.x)
        # the robust fit leans low under skewed step noise: re-centre the rate so the
        # median observed/predicted ratio of clearly-moving steps is one
        span = (bound - g) if p == SET else (g - bound)
        pred = span * -np.expm1(-a * d)
        big = pred > 4 * self.noise
        if np.count_nonzero(big) >= self.MIN_SAMPLES // 2:
            ratio = np.clip(moved[big] / span[big], 1e-6, 0.999)
            a_obs = -np.log1p(-ratio) / d[big]
            a = float(np.exp(np.median(np.log(a_obs))))
        self.law[p] = (bound, a)

    def _pack(self, p, lo, hi, scale):
        bound, a = self.law[p]
        if p == SET:
            x_b = np.log(max(bound - hi, 1e-3 * scale) / scale)
        else:
            frac = min(max(bound / max(lo, 1e-15), 1e-6), 1 - 1e-6)
            x_b = np.log(frac / (1 - frac))
        return [x_b, np.log(a)]

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
            span = self._span(p, g[sel])
            a = self.law[p][1] * np.exp(self.log_c[p, idx[sel]])
            frac = np.minimum(wanted[sel] / span, 0.999)
            d[sel] = -np.log1p(-frac) / a
        return self.model.pulse_for_drive(polarity, d)

    def observe(self, idx, polarity, volts, width, moved, g_before=None):
        d = self.model.drive(polarity, volts, width)
        ok = d > 0
        if not np.any(ok):
            return
        idx, polarity, d, moved = idx[ok], polarity[ok], d[ok], moved[ok]
        gb = g_before[ok] if g_before is not None else np.full(idx.size, np.nan)
        for p in (SET, RESET):
            sel = polarity == p
            if not np.any(sel):
                continue
            if g_before is not None:
                self._samples[p].append(np.stack([gb[sel], d[sel], moved[sel]]))
                self._count[p] += int(sel.sum())
            if self.law[p] is not None:
                self._update_cells(p, idx[sel], gb[sel], d[sel], moved[sel])
        for p in (SET, RESET):
            if self._count[p] >= self.MIN_SAMPLES:
                self._fit(p)

    def _update_cells(self, p, idx, g, d, moved):
        bound, a0 = self.law[p]
        span = self._span(p, g)
        current = self.log_c[p, idx]
        a = a0 * np.exp(current)
        expected = span * -np.expm1(-a * d)
        frac = np.clip(moved / span, 1e-6, 0.999)
        observed = np.log(-np.log1p(-frac) / (a0 * d))
        observed = np.clip(observed, current - np.log(8.0), current + np.log(8.0))
        snr = expected / (expected + self.noise)
        self.log_c[p, idx] = current + self.rate * snr * (observed - current)

    def at_max_drive(self, volts, width, polarity=None):
        cap = self.model.w_max if polarity is None else self.model.width_cap(polarity)
        return (volts >= self.model.v_max - 1e-9) & (width >= cap * (1 - 1e-9))
