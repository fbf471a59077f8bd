"""Per-cell pulse-response models that tell write-verify which pulse to send.

The loop asks a model for the amplitude and width that should move each cell
by a wanted amount, then tells it what the cell actually did. The default
:class:`AdaptiveResponse` assumes only what holds broadly for RRAM and PCM
(no movement below a threshold, drive growing as a power of the overdrive and
of the width, steps shrinking toward a soft bound) and learns each cell's rate
and bound from its own history, starting from the population's. Benchmarks
plug in an oracle with the true parameters through the same interface.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
from scipy.optimize import least_squares

SET, RESET = 0, 1
UNIT = 1e-6  # the law is fitted in microsiemens, where its numbers are of order one
# per-cell state is stored compact (float32: log factors and their covariance are of
# order one, 7 digits are plenty); every computation gathers it to float64 first
STATE_DTYPE = np.float32
CHUNK = 1 << 13  # cells per block in the per-cell filter update (bounds its temporaries)


class ResponseModel(Protocol):
    def pulse_for(self, idx: np.ndarray, polarity: np.ndarray, wanted: np.ndarray,
                  g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Amplitude magnitude (V) and width (s) to move cells ``idx`` by ``wanted`` (S > 0)."""
        ...

    def observe(self, idx: np.ndarray, polarity: np.ndarray, volts: np.ndarray,
                width: np.ndarray, moved: np.ndarray, g_before: np.ndarray | None = None) -> None:
        """Cells ``idx`` moved by ``moved`` (S, positive = the intended direction)
        from ``g_before`` (S)."""
        ...

    def at_max_drive(self, volts: np.ndarray, width: np.ndarray,
                     polarity: np.ndarray) -> np.ndarray:
        """Whether a pulse is the strongest the model may send."""
        ...

    def needs_pilot(self) -> bool:
        """Whether the model has learned nothing yet, so the first pulses should go to a
        pilot batch of cells whose steps teach it the population's response."""
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
                with np.errstate(over="ignore"):  # a huge drive: inf, clipped to the cap
                    factor = (d[capped] / d_vmax) ** (1.0 / self.width_exponent)
            else:
                factor = np.ones_like(d_vmax)
            width[capped] = self.width_reference * factor
            volts[capped] = self.v_max
        width = np.clip(width, self.width_reference, self.width_cap(polarity))
        return volts, width


class AdaptiveResponse:
    """Learns the response from what the cells do; no device truth is used.

    The law is the soft-bound one both RRAM and PCM follow (aihwkit SoftBounds,
    NeuroSim): a pulse of nominal drive ``d`` (see :class:`PulseModel`) moves a
    cell toward its bound, SET up to ``B+``, RESET down to ``B-``, removing the
    share ``1 - exp(-r d)`` of the distance left. Cells differ in both ``r`` and
    ``B``, and the two act differently: ``r`` sets small steps, ``B`` large
    ones, so one scalar gain learned from a large first step misleads the small
    steps that follow. Hence, per polarity:

    * the population's ``(r, B)``, fitted robustly to the first observed steps
      (the pilot batch, whose drives are spread over a 9x range, and every
      cell's first pulse), then frozen;
    * per cell, log factors on both, learned from every step the cell takes by
      an iterated extended Kalman filter whose observation noise is the
      cycle-to-cycle spread (a share of the step) plus the verify noise.

    Pulses aim the median landing at the target, shortened by exp(-0.6 var)
    while a cell's factors are still uncertain (var: their summed variance), as
    an overshoot costs a polarity switch onto a response known even less; a
    wanted move beyond what one pulse can do gets the strongest pulse allowed.
    A pulse that moves a cell less than read noise halves its rate estimate
    (quarters it the next time, and so on), so the drive climbs to the strongest
    pulse within a few pulses, where write-verify recognises a stuck cell.
    Before the pilot's steps are seen, a linear prior (``initial_gain`` S per
    unit drive) aims.
    """

    MIN_SAMPLES = 64
    MAX_SAMPLES = 20000
    FREEZE_SAMPLES = 2000  # after a fit on at least this many first steps, the law is kept
    RELATIVE_STEP_NOISE = 0.3  # assumed cycle-to-cycle spread of a step, as a fraction of it
    PRIOR_VAR = (0.35**2, 0.35**2)  # cell-to-cell spread of (log r, log B) before a cell is seen
    PROCESS_VAR = 0.0025  # per pulse: what the law's form does not capture
    EKF_ITERATIONS = 3
    UNCERTAIN_AIM = 0.6  # aim shortening per unit of the factors' summed variance
    MAX_LOG_FACTOR = 3.0  # learning keeps per-cell factors within e^-3..e^3
    # quiet pulses in a row stop counting here: ln 2 x 120 below the rate, any drive asked
    # for has long been the strongest allowed (and max_pulses is 60)
    QUIET_MAX = 120
    QUIET_PATIENCE = 3
    FORMAT = 1  # of to_arrays()
    STEP_NOISE_STEP = 3e-6  # steps expected below this (S) teach the absolute scatter
    STEP_NOISE_MIN = 500  # steps before that scatter is used
    learn_step_noise = True

    def __init__(self, size: int, model: PulseModel, initial_gain: float = 2e-6,
                 noise: float = 0.4e-6) -> None:
        self.model = model
        self.noise = noise
        self.initial_gain = initial_gain
        # per polarity and cell: (log r, log B) factors
        self.factor = np.zeros((2, size, 2), STATE_DTYPE)
        self.cov = np.zeros((2, size, 3), STATE_DTYPE)  # their covariance: (var r, cov, var B)
        self.cov[..., 0], self.cov[..., 2] = self.PRIOR_VAR
        # pulses in a row without a visible move (int8, saturating at QUIET_MAX)
        self.quiet = np.zeros((2, size), np.int8)
        # step-ups while only the linear prior aims
        self.prior_factor = np.zeros((2, size), STATE_DTYPE)
        self.law: list[tuple[float, float] | None] = [None, None]  # (r, B in S) per polarity
        self._samples: list[list[np.ndarray]] = [[], []]
        self._count = [0, 0]
        self._fits = [0, 0]
        self._frozen = [False, False]
        # the steps' scatter around the law (S), learned from the steps themselves: per
        # polarity, running sums of a line a + b G through |innovation| sqrt(pi/2)
        self.step_sums = np.zeros((2, 5))
        self.step_fit: list[tuple[float, float] | None] = [None, None]

    # -- the population law ----------------------------------------------------------
    @staticmethod
    def _span(p: int, bound, g):
        """Distance a pulse of polarity ``p`` can still cover (S)."""
        return bound - g if p == SET else g - bound

    def _fit(self, p: int) -> None:
        d, moved, g = np.concatenate(self._samples[p], axis=1)[:, : self.MAX_SAMPLES]
        keep = d > 0
        d, moved, g = d[keep], moved[keep] / UNIT, g[keep] / UNIT  # fit in uS
        if d.size < self.MIN_SAMPLES:
            return
        noise = self.noise / UNIT
        if p == SET:  # the bound lies above every state seen
            lo, hi = float(np.max(g)) + 0.1, 1e3 * max(float(np.max(g)), 1.0)
            b0 = 2.0 * max(float(np.max(g)), 1.0)
        else:  # and below (a few noisy reads near zero aside)
            hi = max(float(np.percentile(g, 2)), 2e-4)
            lo = 1e-4
            b0 = 0.5 * (lo + hi)

        # in log space, on steps that stand clear of the noise: cycle-to-cycle noise is a
        # share of the step, so log residuals are alike across the curve, and the fit
        # follows the median cell, the one whose per-cell factors are zero
        clear = moved > 3 * noise
        if np.count_nonzero(clear) < self.MIN_SAMPLES // 2:
            return
        d, moved, g = d[clear], moved[clear], g[clear]

        # RESET's floor sits near zero for both RRAM and PCM; steps taken from one state
        # (a freshly formed array) cannot tell it from a slower rate, so a weak prior
        # keeps it low unless steps from many states say otherwise
        floor_scale = 0.1 * float(np.median(g))
        prior_rows = max(1, d.size // 10)

        def residual(x):
            pred = self._span(p, x[1], g) * -np.expm1(-np.exp(x[0]) * d)
            res = (np.log(np.maximum(pred, 1e-9)) - np.log(moved)) / self.RELATIVE_STEP_NOISE
            if p == SET:
                return res
            return np.append(res, np.full(prior_rows, x[1] / floor_scale))

        span0 = np.maximum(self._span(p, b0, g), 1e-3)
        r0 = float(np.median(np.clip(moved / span0, 1e-4, 0.99) / d))
        fit = least_squares(residual, [np.log(max(r0, 1e-9)), b0], loss="soft_l1", f_scale=2.0,
                            bounds=([-30.0, lo], [5.0, hi]), max_nfev=400)
        self.law[p] = (float(np.exp(fit.x[0])), float(fit.x[1]) * UNIT)

    def _cell_law(self, p: int, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r, bound = self.law[p]
        f = self.factor[p, idx].astype(np.float64)
        return r * np.exp(f[:, 0]), bound * np.exp(f[:, 1])

    # -- the interface ------------------------------------------------------------
    # per cell, so in blocks of CHUNK cells: a batch of a million cells makes no
    # million-cell float64 temporaries
    def pulse_for(self, idx, polarity, wanted, g):
        volts, width = np.empty(idx.size), np.empty(idx.size)
        for start in range(0, idx.size, CHUNK):
            b = slice(start, start + CHUNK)
            volts[b], width[b] = self._pulse_block(idx[b], polarity[b], wanted[b], g[b])
        return volts, width

    def _pulse_block(self, idx, polarity, wanted, g):
        d = np.empty(idx.size)
        for p in (SET, RESET):
            sel = polarity == p
            if not np.any(sel):
                continue
            if self.law[p] is None:  # the linear prior, stepped up per cell if it stays still
                d[sel] = wanted[sel] / (self.initial_gain * np.exp(
                    self.prior_factor[p, idx[sel]].astype(np.float64)))
                continue
            r, bound = self._cell_law(p, idx[sel])
            var = (self.cov[p, idx[sel], 0].astype(np.float64)
                   + self.cov[p, idx[sel], 2].astype(np.float64))
            frac = wanted[sel] * np.exp(-self.UNCERTAIN_AIM * var) / np.maximum(
                self._span(p, bound, g[sel]), 1e-12)
            with np.errstate(divide="ignore"):
                # beyond one pulse's reach: ask for the strongest pulse allowed
                d[sel] = np.where(frac < 0.999, -np.log1p(-np.minimum(frac, 0.999)) / r, np.inf)
        return self.model.pulse_for_drive(polarity, d)

    def observe(self, idx, polarity, volts, width, moved, g_before=None):
        seen = False
        for start in range(0, idx.size, CHUNK):
            b = slice(start, start + CHUNK)
            seen |= self._observe_block(idx[b], polarity[b], volts[b], width[b], moved[b],
                                        None if g_before is None else g_before[b])
        if not seen:
            return
        for p in (SET, RESET):
            if not self._frozen[p] and self._count[p] >= self.MIN_SAMPLES:
                first = self.law[p] is None
                self._fit(p)
                if first and self.law[p] is not None:
                    self.quiet[p] = 0  # step-ups under the prior do not carry over
                self._fits[p] += 1
                if self._fits[p] >= 2 and self._count[p] >= self.FREEZE_SAMPLES:
                    self._frozen[p] = True
                    self._samples[p] = []
        if None not in self.law and self.prior_factor.size:
            # only aims while a polarity has no law, and a law once fitted stays: free it
            self.prior_factor = np.zeros((2, 0), STATE_DTYPE)

    def _observe_block(self, idx, polarity, volts, width, moved, g_before) -> bool:
        """The per-cell part of :meth:`observe`; whether any pulse had drive."""
        d = self.model.drive(polarity, volts, width)
        ok = d > 0
        if not np.any(ok):
            return False
        if not ok.all():  # (no filtered copies of batch-sized arrays when all moved)
            idx, polarity, d, moved = idx[ok], polarity[ok], d[ok], moved[ok]
            volts, width = volts[ok], width[ok]
            g_before = None if g_before is None else g_before[ok]
        gb = np.full(idx.size, 1e-5) if g_before is None else g_before
        for p in (SET, RESET):
            sel = polarity == p
            if not np.any(sel):
                continue
            cells, g_sel, d_sel, moved_sel = idx[sel], gb[sel], d[sel], moved[sel]
            if self.law[p] is None:
                # no law yet (or none to be had: a die whose cells never move): the prior
                # aims, and the step-up below still lets a still cell's drive climb
                expected = self.initial_gain * np.exp(
                    self.prior_factor[p, cells].astype(np.float64)) * d_sel
            else:
                expected = self._predict(p, cells, d_sel, g_sel)
            # a move clearly expected but not seen: step up so the drive climbs, faster
            # with every such pulse in a row (halve the rate, then quarter it, ...); a
            # small move lost in the noise is just a noisy observation. Where the steps
            # scatter more than that (PCM: ~1 uS), a quiet pulse whose expected move lay
            # within the scatter steps up only from the QUIET_PATIENCE-th in a row: one
            # small SET that landed short is not taken for a still cell, a stuck one
            # still reaches the strongest pulse
            noise = self._noise_at(p, g_sel)
            visible_at = np.maximum(2 * self.noise, 0.03 * np.abs(g_sel))
            strongest = self.at_max_drive(volts[sel], width[sel], polarity[sel])
            quiet = (moved_sel <= visible_at) & ((expected > visible_at) | strongest)
            self.quiet[p, cells[quiet]] = np.minimum(self.quiet[p, cells[quiet]],
                                                     self.QUIET_MAX - 1) + 1
            self.quiet[p, cells[~quiet]] = 0
            quiet &= ((expected > 2 * noise) | strongest
                      | (self.quiet[p, cells] >= self.QUIET_PATIENCE))
            step_up = np.log(2.0) * self.quiet[p, cells[quiet]]
            if self.law[p] is None:
                self.prior_factor[p, cells[quiet]] -= step_up
            else:
                self.factor[p, cells[quiet], 0] -= step_up
                self.cov[p, cells[quiet], 0] = np.maximum(self.cov[p, cells[quiet], 0],
                                                          self.PRIOR_VAR[0])
                self._update_cells(p, cells[~quiet], d_sel[~quiet], moved_sel[~quiet],
                                   g_sel[~quiet], noise[~quiet])
                if self.learn_step_noise:
                    self._add_step_noise(p, g_sel, moved_sel - expected, expected)
            if not self._frozen[p]:
                # the fit takes the first MAX_SAMPLES steps: keep no more than those
                room = self.MAX_SAMPLES - sum(s.shape[1] for s in self._samples[p])
                if room > 0:
                    self._samples[p].append(np.stack([d_sel[:room], moved_sel[:room],
                                                      g_sel[:room]]))
                self._count[p] += int(sel.sum())
        return True

    def step_scatter(self, p: int, g: np.ndarray) -> np.ndarray | None:
        """The learned absolute scatter (S) of a polarity-``p`` step from ``g``, or None
        until enough steps are seen."""
        fit = self.step_fit[p]
        return None if fit is None else fit[0] + fit[1] * np.abs(np.asarray(g, np.float64))

    def _noise_at(self, p: int, g: np.ndarray) -> np.ndarray:
        """Absolute scatter (S) of a step observed from ``g``: the verify noise, or what
        the steps showed when larger (PCM: landing and 1/f read noise, ~1 uS)."""
        fit = self.step_fit[p]
        if fit is None:
            return np.full(np.shape(g), self.noise)
        return np.maximum(self.noise, fit[0] + fit[1] * np.abs(g))

    def _add_step_noise(self, p: int, g: np.ndarray, innovation: np.ndarray,
                        expected: np.ndarray) -> None:
        """Learn the steps' absolute scatter from small steps (expected below
        STEP_NOISE_STEP), where the share-of-step spread does not dominate it."""
        small = (expected < self.STEP_NOISE_STEP) & np.isfinite(innovation)
        if not np.any(small):
            return
        g, r = np.asarray(g[small], np.float64), np.asarray(innovation[small], np.float64)
        share = self.RELATIVE_STEP_NOISE * expected[small]
        # E|r| = sqrt(2/pi) sqrt(s^2 + share^2): the absolute part s
        spread = np.sqrt(np.maximum(np.pi / 2 * r * r - share * share, 0.0))
        self.step_sums[p] += [g.size, g.sum(), (g * g).sum(), spread.sum(), (g * spread).sum()]
        n, sg, sgg, ss, sgs = self.step_sums[p]
        det = n * sgg - sg * sg
        if n < self.STEP_NOISE_MIN or det <= 1e-12 * max(n * sgg, 1e-300):
            return
        slope = (n * sgs - sg * ss) / det
        self.step_fit[p] = (max(float((ss - slope * sg) / n), 0.0), max(float(slope), 0.0))

    def _predict(self, p, idx, d, g):
        """Mean move (S, in the pulse's direction) of cells ``idx`` from ``g`` at drive ``d``."""
        return self._linearised(p, self.factor[p, idx].astype(np.float64), d, g)[0]

    def _linearised(self, p, x, d, g):
        """Predicted move at factors ``x`` and its derivatives by log r and log B."""
        r0, b0 = self.law[p]
        sign = 1.0 if p == SET else -1.0
        r, bound = r0 * np.exp(x[:, 0]), b0 * np.exp(x[:, 1])
        span = np.maximum(sign * (bound - g), 1e-12)
        keep = np.exp(-r * d)
        pred = span * (1.0 - keep)
        return pred, span * keep * r * d, sign * bound * (1.0 - keep)

    def _update_cells(self, p, idx, d, moved, g, noise=None):
        """Iterated EKF on each cell's (log r, log B) factors from one observed move (S);
        ``noise``: the step's absolute scatter (S; default the verify noise)."""
        if idx.size == 0:
            return
        noise2 = self.noise**2 if noise is None else np.asarray(noise, np.float64) ** 2
        prior = self.factor[p, idx].astype(np.float64)
        c = self.cov[p, idx].astype(np.float64)
        v_r, c_rb, v_b = c[:, 0] + self.PROCESS_VAR, c[:, 1], c[:, 2] + self.PROCESS_VAR
        # a step far outside what the cell's belief allows (beyond 3 sigma) means the
        # belief is wrong, not the step: reopen it to the population's spread
        pred, h_r, h_b = self._linearised(p, prior, d, g)
        var = (h_r * h_r * v_r + 2 * h_r * h_b * c_rb + h_b * h_b * v_b
               + (self.RELATIVE_STEP_NOISE * pred) ** 2 + noise2)
        surprised = (moved - pred) ** 2 > 9.0 * var
        v_r = np.where(surprised, np.maximum(v_r, self.PRIOR_VAR[0]), v_r)
        v_b = np.where(surprised, np.maximum(v_b, self.PRIOR_VAR[1]), v_b)
        c_rb = np.where(surprised, 0.0, c_rb)
        x = prior.copy()
        for _ in range(self.EKF_ITERATIONS):
            pred, h_r, h_b = self._linearised(p, x, d, g)
            obs_var = (self.RELATIVE_STEP_NOISE * pred) ** 2 + noise2
            # innovation, linearised at the current iterate x (Gauss-Newton on the MAP)
            y = moved - pred - h_r * (prior[:, 0] - x[:, 0]) - h_b * (prior[:, 1] - x[:, 1])
            ph_r = v_r * h_r + c_rb * h_b
            ph_b = c_rb * h_r + v_b * h_b
            k_r = ph_r / (h_r * ph_r + h_b * ph_b + obs_var)
            k_b = ph_b / (h_r * ph_r + h_b * ph_b + obs_var)
            # bounded, but never pulled back past where the step-up already put it
            x = np.clip(prior + np.stack([k_r * y, k_b * y], axis=1),
                        np.minimum(prior, -self.MAX_LOG_FACTOR),
                        np.maximum(prior, self.MAX_LOG_FACTOR))
        self.factor[p, idx] = x
        self.cov[p, idx] = np.stack([v_r - k_r * ph_r, c_rb - k_r * ph_b, v_b - k_b * ph_b],
                                    axis=1)

    def at_max_drive(self, volts, width, polarity=None):
        cap = self.model.w_max if polarity is None else self.model.width_cap(polarity)
        return (volts >= self.model.v_max - 1e-9) & (width >= cap * (1 - 1e-9))

    def needs_pilot(self) -> bool:
        return self.law == [None, None]

    @property
    def size(self) -> int:
        """Cells the model covers (the array's, flat)."""
        return self.factor.shape[1]

    # -- persistence ----------------------------------------------------------------
    def to_arrays(self) -> dict[str, Any]:
        """The whole learned state as numpy arrays and plain numbers (an HDF5 group's
        datasets and attributes); :meth:`from_arrays` restores it exactly."""
        out: dict[str, Any] = {"format": self.FORMAT, "noise": float(self.noise),
                               "initial_gain": float(self.initial_gain)}
        for name, value in asdict(self.model).items():  # None (no SET width cap) -> NaN
            out[f"pulse_model.{name}"] = np.nan if value is None else float(value)
        out.update(factor=self.factor.copy(), cov=self.cov.copy(), quiet=self.quiet.copy(),
                   prior_factor=(self.prior_factor.copy() if self.prior_factor.size
                                 else np.zeros((2, self.size), STATE_DTYPE)),
                   law=np.array([(np.nan, np.nan) if law is None else law for law in self.law]),
                   count=np.array(self._count, np.int64), fits=np.array(self._fits, np.int64),
                   frozen=np.array(self._frozen, bool), step_sums=self.step_sums.copy(),
                   step_fit=np.array([(np.nan, np.nan) if f is None else f
                                      for f in self.step_fit]))
        for p, name in ((SET, "set"), (RESET, "reset")):
            samples = self._samples[p]
            out[f"samples.{name}"] = (np.concatenate(samples, axis=1) if samples
                                      else np.empty((3, 0)))
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any]) -> AdaptiveResponse:
        """The model :meth:`to_arrays` saved (from a dict, or an HDF5 group read back)."""
        if int(arrays["format"]) != cls.FORMAT:
            raise ValueError(f"response model format {arrays['format']!r}, expected "
                             f"{cls.FORMAT}")
        fields: dict[str, Any] = {}
        for name in PulseModel.__dataclass_fields__:
            value = float(arrays[f"pulse_model.{name}"])
            fields[name] = None if name == "set_width_max" and np.isnan(value) else value
        factor = np.array(arrays["factor"], STATE_DTYPE)
        model = cls(factor.shape[1], PulseModel(**fields),
                    initial_gain=float(arrays["initial_gain"]), noise=float(arrays["noise"]))
        model.factor = factor
        model.cov = np.array(arrays["cov"], STATE_DTYPE)
        model.quiet = np.minimum(np.asarray(arrays["quiet"]), cls.QUIET_MAX).astype(np.int8)
        model.prior_factor = np.array(arrays["prior_factor"], STATE_DTYPE)
        model.law = [None if np.isnan(r) else (float(r), float(b))
                     for r, b in np.asarray(arrays["law"], np.float64)]
        model._count = [int(c) for c in arrays["count"]]
        model._fits = [int(c) for c in arrays["fits"]]
        model._frozen = [bool(f) for f in arrays["frozen"]]
        if "step_sums" in arrays:  # (saved before the step scatter was learned: none)
            model.step_sums = np.array(arrays["step_sums"], np.float64).reshape(2, 5)
            model.step_fit = [None if np.isnan(a) else (float(a), float(b))
                              for a, b in np.asarray(arrays["step_fit"], np.float64)]
        for p, name in ((SET, "set"), (RESET, "reset")):
            samples = np.array(arrays[f"samples.{name}"], np.float64).reshape(3, -1)
            model._samples[p] = [samples] if samples.shape[1] else []
        return model
