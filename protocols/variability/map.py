"""The variability map of a die: every cell's window, thresholds, rates and fault class.

Array-parallel: every step is one read or one pulse transaction for all the cells
it touches (flat cell lists through the array role), never a round trip per cell.
The steps, in order (``MapProgress.phase``):

1. **initial**: one averaged read; a die that mostly reads pristine on a chip that
   needs forming is refused before any pulse; repeat reads (averages 1) at this
   state start the read-noise law.
2. **pilot-set**: ``pilot_pulses`` datasheet-reference SET pulses to every cell. The
   ratio of the population's median second and first steps is the share of the
   remaining distance one reference pulse removes (independent of the bound), from
   which the SET train pulse is scaled so that it removes ``train_fraction``.
   Fewer than ``dead_fraction`` of the cells moving even under one strongest SET
   (limits) is a dead die or no contact: an error, after two pulses per cell.
3. **cycle 1**: a SET train (noise reads after its first pulse: the mid state; and at
   its end: the high state), the RESET threshold ramp from that high state, the
   RESET pilot and train (noise reads at the low state).
4. **classify**: a cell whose SET and RESET levels differ by less than
   ``min_swing_fraction`` of the window (or ``move_sigma``) gets one strongest SET
   and RESET pulse (the limits' amplitude and width); a cell that still does not
   move takes no further pulse and is classed by what it reads (unformed, stuck-low,
   unresponsive, stuck-high).
5. **SET ramp** from the low state, on the cells that move.
6. **cycles 2..C**: SET and RESET trains on the cells that move.

Per cell and polarity, the train steps are fitted with the soft-bound law of a
fixed pulse, ``G' = B - (B - G) beta``: a least-squares line of the read after
each pulse against the read before it, slope ``beta`` shared by the cell's
cycles, intercept per cycle, so ``B_c = a_c / (1 - beta)`` is the bound the cycle's
train approaches (its saturation, extrapolated: trains stop at about 95 % of the
way). ``g_max`` / ``g_min`` are the medians of ``B_c`` over cycles, ``*_c2c``
their standard deviation (estimation noise included); the rate is the share of
the distance ``1 - beta`` converted to the datasheet's reference pulse through the
nominal drive law, ``1 - beta^(1 / d_train)``, pooled with the pilot's reference
pulses. Reads pinned at the instrument's top of range (many cells reading the same
largest value) are censored in the fits. The estimation noise of the per-cell rates
and g_max, measured by a jackknife over the cycles, is taken out of their D2D spread
(:func:`_deconvolve`). The read-noise law is a + b G, or a + b G^c when no line holds
within 15 % across the window (1/f-like noise).

The die is left with every moving cell at the end of its last RESET train (at its
g_min); cells that do not move are left as they were.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
from scipy.optimize import nnls
from scipy.special import log_ndtr
from scipy.stats import chi2

from protocols.variability.params import (
    DeadArrayError,
    MapProgress,
    VariabilityError,
    VariabilityParams,
)
from protocols.variability.result import Fault, ReadNoiseLaw, VariabilityMap
from protocols.write_verify.response import RESET, SET

UNIT = 1e-6  # fits run in microsiemens
CEILING_MARGIN = 0.01  # reads within this share of a detected top of range are censored
PINNED = 1e-6  # ... within this share: pinned at it
REWEIGHTS = 3  # IRLS passes of the soft-bound fit
PILOT_DISTANCE = 0.25  # pilot rates of cells this share of the window from the bound
NOISE_BINS = 8  # quantile bins of a per-cell estimate, for its estimation noise
NOISE_CELLS = 30  # bins of fewer cells are fitted but not judged
NOISE_MISFIT = 0.15  # the largest relative miss of a read-noise law inside the window
PROBE_SWING = 0.2  # share of the window a strongest SET + RESET must swing a cell
DENSE = 0.25  # above this share of the cells, reads and pulses go as masks
MIN_BETA = 0.02  # ... less than this: a failed fit (gradual polarities)
MAX_BETA = 0.97  # a cell keeping more than this per pulse: too slow to extrapolate


def map_variability(array, clock=None, params: VariabilityParams | None = None,
                    progress: Callable[[MapProgress], None] | None = None) -> VariabilityMap:
    """Characterise every cell of ``array`` (ArrayController role; Clock for bench time).

    Refuses, before any pulse, an endurance budget (``max_pulses_per_cell``) smaller
    than the worst case the parameters need, and a die that reads pristine.
    """
    return _Mapper(array, clock, params or VariabilityParams(), progress).run()


class _Mapper:
    def __init__(self, array, clock, params: VariabilityParams, progress) -> None:
        p = params
        self.array, self.clock, self.p, self.progress = array, clock, p, progress
        p.check_budget()
        self.shape = tuple(array.shape)
        self.n = int(np.prod(self.shape))
        model = p.pulse_model
        limits = getattr(array, "limits", None)
        if limits is not None:
            model = replace(model, v_max=min(model.v_max, limits.max_program_voltage),
                            w_max=min(model.w_max, limits.max_pulse_width))
        self.model = model
        self.avg_gain = np.sqrt(p.read_averages) if p.white_read_noise else 1.0
        self.pulses = np.zeros(self.n, np.int32)
        self.g = np.full(self.n, np.nan)  # the latest averaged read of each cell, S
        self.step, self.cycle, self.phase = 0, 0, "initial"
        self.total = (1 + 4 * (p.noise_reads + 2) + 4 * p.pilot_pulses + 6 + 4 * p.ramp_steps
                      + 2 * p.cycles * (p.set_pulses + p.reset_pulses) + 2)
        self.noise_states: list[tuple[np.ndarray, np.ndarray]] = []  # (mean, var) per state
        self.law = self.law_all = self.law_move = ReadNoiseLaw(0.0, 0.01)
        self.ceiling = np.inf  # detected top of the read range, S
        self.cut = np.inf  # reads above this are censored
        # per polarity: every train's (cells, reads), and the last read of each train
        self.trains: list[list[tuple[np.ndarray, np.ndarray]]] = [[], []]
        self.levels: list[list[np.ndarray]] = [[], []]  # last read of each train, S
        self.tails: list[tuple[np.ndarray, np.ndarray]] = []  # saturated RESET samples, S
        self.train = {}  # polarity -> (volts, width, drive)
        self.pilot_fraction = {}
        self.pilot_reads = {}  # polarity -> (cells, reads before and after each pulse)
        self.spread = {}  # polarity -> per-cell jackknife variances (log rate, log bound)
        self.tx0 = array.transactions
        self.t0_bench = self.now()
        self.t0_wall = time.perf_counter()

    # -- bench access: one transaction each -----------------------------------------
    def now(self) -> float:
        return float(self.clock.now()) if self.clock is not None else 0.0

    def _tick(self) -> None:
        self.step += 1
        if self.progress is not None:
            self.progress(MapProgress(self.phase, self.step, max(self.total, self.step),
                                      self.cycle, self.now() - self.t0_bench,
                                      self.array.transactions - self.tx0))

    def read(self, idx: np.ndarray | None = None, averages: int | None = None) -> np.ndarray:
        """Averaged reads (S) of ``idx`` (sorted flat indices; None: all), one transaction:
        a mask when they are many (no index list to build), else a cell list."""
        avg = self.p.read_averages if averages is None else averages
        if idx is None or idx.size == self.n:
            values = np.asarray(self.array.read(averages=avg), np.float64).ravel()
        elif idx.size > DENSE * self.n:
            mask = np.zeros(self.n, bool)
            mask[idx] = True
            grid = self.array.read(mask.reshape(self.shape), averages=avg)
            values = np.asarray(grid, np.float64).ravel()[idx]
        else:
            values = np.asarray(self.array.read_cells(idx, averages=avg), np.float64)
        self._tick()
        return values

    def pulse(self, idx: np.ndarray, volts: float, width: float) -> None:
        """One pulse of ``volts`` (signed), ``width`` (s) on each of ``idx``: one transaction."""
        if idx.size == 0:
            return
        if idx.size > DENSE * self.n:
            grid = np.zeros(self.n)
            grid[idx] = float(volts)
            self.array.pulse(grid.reshape(self.shape), float(width))
        else:
            self.array.pulse_cells(idx, np.full(idx.size, float(volts)), float(width))
        self.pulses[idx] += 1
        self._tick()

    # -- read noise -----------------------------------------------------------------
    def sigma(self, g: np.ndarray) -> np.ndarray:
        """Sigma of one averaged read at ``g`` (S), for judging moves: the larger of two
        lines, the window's and the one through every bin, so no move is judged on too
        little (repeat reads in quick succession understate 1/f noise over a ramp)."""
        g = np.nan_to_num(g)
        return np.maximum(self.law_move.sigma(g), self.law_all.sigma(g)) / self.avg_gain

    def noise_state(self) -> None:
        """Repeat reads (averages 1) of every cell, unpulsed: one point per cell."""
        reads = np.empty((self.p.noise_reads, self.n), np.float32)
        for j in range(self.p.noise_reads):
            reads[j] = self.read(averages=1)
        self.noise_states.append((reads.mean(0, dtype=np.float64),
                                  reads.var(0, ddof=1, dtype=np.float64)))
        self.fit_noise()

    def noise_points(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Binned (G, sigma, cells) over every noise state, censored reads left out."""
        edges = np.geomspace(1e-9, 1e-3, 61)
        count, sum_g, sum_v = np.zeros(60), np.zeros(60), np.zeros(60)
        for mean, var in self.noise_states:
            ok = np.isfinite(mean) & np.isfinite(var) & (mean > 0) & (mean < self.cut)
            b = np.clip(np.searchsorted(edges, mean[ok]) - 1, 0, 59)
            count += np.bincount(b, minlength=60)
            sum_g += np.bincount(b, mean[ok], minlength=60)
            sum_v += np.bincount(b, var[ok], minlength=60)
        keep = count >= 5
        return (sum_g[keep] / count[keep], np.sqrt(sum_v[keep] / count[keep]), count[keep])

    def fit_noise(self) -> None:
        """The reported law: sigma(G) = a + b G, least squares in relative error, a, b >= 0,
        if the line holds within 15 % across the window (over its bins of ``NOISE_CELLS``
        cells or more); else the power law a + b G^c (1/f-like noise grows as a power of
        G: PCM's), over every bin, over those from the window's bottom up, or over the
        window's: the first that holds, else whichever of those (or the window's line)
        misses least. Move detection uses lines only (:meth:`sigma`): the one through every
        bin (``law_all``) and, if that misses a window bin by 15 %, the window's."""
        g, s, c = self.noise_points()
        if g.size == 0:
            return
        p = self.p
        above = g >= p.window_g_min_s + 0.02 * p.span_s
        inside = above & (g <= p.window_g_max_s)
        judged = inside & (c >= NOISE_CELLS)  # a bin's sigma is within ~7 % from 30 cells
        self.law = self.law_all = self.law_move = ReadNoiseLaw(*_relative_fit(g, s, c))
        if np.count_nonzero(inside) >= 3:
            if np.abs(self.law_all.sigma(g[inside]) / s[inside] - 1).max() > NOISE_MISFIT:
                self.law_move = ReadNoiseLaw(*_relative_fit(g[inside], s[inside], c[inside]))
        if np.count_nonzero(judged) < 3:
            return

        def misfit(law: ReadNoiseLaw) -> float:
            return float(np.abs(law.sigma(g[judged]) / s[judged] - 1).max())

        if misfit(self.law) <= NOISE_MISFIT:
            return
        tried = [_power_fit(g[sub], s[sub], c[sub]) for sub in (g > 0, above, inside)]
        good = [law for law in tried if misfit(law) <= NOISE_MISFIT]
        self.law = good[0] if good else min(tried + [self.law_move], key=misfit)

    # -- pulses ---------------------------------------------------------------------
    def reference(self, pol: int) -> tuple[float, float]:
        m = self.model
        ref = m.set_reference if pol == SET else m.reset_reference
        return min(ref, m.v_max), min(m.width_reference, m.w_max)

    def strongest(self) -> tuple[float, float]:
        return self.model.v_max, self.model.w_max

    def drive(self, pol: int, volts: float, width: float) -> float:
        return float(self.model.drive(np.array([pol]), np.array([volts]),
                                      np.array([width]))[0])

    def pulse_for_drive(self, pol: int, d: float) -> tuple[float, float]:
        v, w = self.model.pulse_for_drive(np.array([pol]), np.array([max(d, 1e-9)]))
        return float(v[0]), float(w[0])

    @staticmethod
    def sign(pol: int) -> float:
        return 1.0 if pol == SET else -1.0

    # -- the phases ---------------------------------------------------------------
    def run(self) -> VariabilityMap:
        p = self.p
        everyone = np.arange(self.n)
        self.g = self.read()
        self.g0 = self.g.copy()
        if p.forming_required:
            pristine = int(np.count_nonzero(self.g < p.pristine_below_s))
            if pristine > self.n / 2:
                raise VariabilityError(
                    f"{pristine} of {self.n} cells read pristine (below "
                    f"{p.pristine_below_s * 1e6:g} uS): the die is not formed; form it first")
        self.noise_state()

        self.phase = "pilot-set"
        self.pilot(SET, everyone, dead_check=True)
        self.cycle = 1
        self.phase = "set-train"
        self.run_train(SET, everyone, noise_mid=True)
        self.phase = "noise"
        self.noise_state()  # the high state
        self.phase = "reset-ramp"
        reset_threshold = self.ramp(RESET, everyone)
        self.phase = "pilot-reset"
        self.pilot(RESET, everyone)
        self.phase = "reset-train"
        self.run_train(RESET, everyone)

        self.phase = "classify"
        movers, level, slow = self.classify()
        self.phase = "noise"
        self.noise_state()  # the low state
        self.phase = "set-ramp"
        set_threshold = self.ramp(SET, movers)
        for c in range(2, p.cycles + 1):
            self.cycle = c
            self.phase = "set-train"
            self.run_train(SET, movers)
            self.phase = "reset-train"
            self.run_train(RESET, movers)
        self.phase = "done"
        self.fit_noise()
        return self.result(movers, level, slow, set_threshold, reset_threshold)

    def pilot(self, pol: int, cells: np.ndarray, dead_check: bool = False) -> None:
        """Reference pulses to every cell; the population's rate from its step ratio."""
        p = self.p
        volts, width = self.reference(pol)
        s = self.sign(pol)
        reads = [self.g[cells]]
        for _ in range(p.pilot_pulses):
            self.pulse(cells, s * volts, width)
            reads.append(self.read(cells))
        self.g[cells] = reads[-1]
        self.pilot_reads[pol] = (cells, np.asarray(reads, np.float32))  # a rate per cell
        steps = [s * (b - a) for a, b in zip(reads[:-1], reads[1:], strict=True)]
        thr = p.move_sigma * np.sqrt(2.0) * self.sigma(reads[0])
        moved = steps[0] > thr
        d_ref = self.drive(pol, volts, width)
        if dead_check and np.count_nonzero(moved) < p.dead_fraction * cells.size:
            vmax, wmax = self.strongest()
            before = self.g[cells]
            self.pulse(cells, s * vmax, wmax)
            after = self.read(cells)
            self.g[cells] = after
            strong = s * (after - before) > p.move_sigma * np.sqrt(2.0) * self.sigma(before)
            if np.count_nonzero(strong) < p.dead_fraction * cells.size:
                raise DeadArrayError(
                    f"no cell moved under SET pulses up to {vmax:g} V, {wmax * 1e6:g} us "
                    f"({np.count_nonzero(strong)} of {cells.size} changed beyond read "
                    "noise): a dead die, unformed cells or no probe contact")
            self.train[pol] = (vmax, wmax, self.drive(pol, vmax, wmax))
            self.pilot_fraction[pol] = float("nan")
            return
        if p.abrupt_reset and pol == RESET:
            self.train[pol] = (volts, width, d_ref)
            self.pilot_fraction[pol] = float("nan")
            return
        # the ratio of the population's mean last and first steps: over every cell, not
        # just those whose first step looked large (that would pick positive noise)
        first, last = np.nanmean(steps[0]), np.nanmean(steps[-1])
        ratio = last / first if first > 0 else np.nan
        k = len(steps) - 1
        keep = np.clip(ratio, 0.01, 0.99) ** (1.0 / k) if np.isfinite(ratio) else 0.9
        f = 1.0 - keep
        self.pilot_fraction[pol] = float(f)
        share = p.train_fraction if pol == SET else p.reset_train_fraction
        d = d_ref * np.log(1.0 - share) / np.log(1.0 - f)
        v, w = self.pulse_for_drive(pol, d)
        self.train[pol] = (v, w, self.drive(pol, v, w))

    def run_train(self, pol: int, cells: np.ndarray, noise_mid: bool = False) -> None:
        p = self.p
        k = p.set_pulses if pol == SET else p.reset_pulses
        volts, width, _ = self.train[pol]
        s = self.sign(pol)
        reads = np.empty((k + 1, cells.size), np.float64)
        reads[0] = self.g[cells]
        for j in range(k):
            self.pulse(cells, s * volts, width)
            reads[j + 1] = self.read(cells)
            self.g[cells] = reads[j + 1]
            if noise_mid and j == 0:
                self.noise_state()
        if pol == SET and self.cycle == 1:
            self.detect_ceiling(reads)
        self.accumulate(pol, cells, reads)
        if pol == RESET:
            self.sample_bottom(cells, reads)

    def sample_bottom(self, cells: np.ndarray, reads: np.ndarray) -> None:
        """The RESET bound, sampled: ``reset_tail_pulses`` strongest pulses (the limits'
        amplitude and width), each erasing what is left of the train (the trains approach
        a bound 100x below where they start, so extrapolating it would be noisier than
        the cell's own level C2C); with an abrupt RESET, every train read already is
        such a sample."""
        p = self.p
        if p.abrupt_reset or p.reset_tail_pulses == 0:
            self.tails.append((cells, reads[1:].astype(np.float32)))
            return
        volts, width = self.strongest()
        tail = np.empty((p.reset_tail_pulses, cells.size), np.float32)
        for j in range(p.reset_tail_pulses):
            self.pulse(cells, -volts, width)
            tail[j] = self.read(cells)
        self.g[cells] = tail[-1]
        self.levels[RESET][-1][cells] = tail[-1]
        self.tails.append((cells, tail))

    def detect_ceiling(self, reads: np.ndarray) -> None:
        """Many cells reading exactly the same largest value: the top of the read range."""
        top = float(np.nanmax(reads)) if np.isfinite(reads).any() else np.nan
        if not np.isfinite(top) or top <= 0:
            return
        pinned = np.count_nonzero(reads >= top * (1 - 1e-9))
        if pinned >= max(3, 1e-3 * reads.shape[1]):
            self.ceiling = top
            self.cut = top * (1 - CEILING_MARGIN)

    def accumulate(self, pol: int, cells: np.ndarray, reads: np.ndarray) -> None:
        """Keep one train's reads (float32, S) for the soft-bound fit at the end."""
        self.trains[pol].append((cells, reads.astype(np.float32)))
        level = np.full(self.n, np.nan)
        level[cells] = reads[-1]
        self.levels[pol].append(level)

    def ramp(self, pol: int, cells: np.ndarray) -> np.ndarray:
        """Smallest amplitude of an ascending ramp that moves each cell beyond read noise."""
        p, m = self.p, self.model
        th = m.set_threshold if pol == SET else m.reset_threshold
        stop, ref_width = self.reference(pol)
        width = min(p.ramp_width_s or ref_width, m.w_max)
        amps = np.linspace(min(p.ramp_start_fraction * th, stop), stop, p.ramp_steps)
        out = np.full(self.n, np.nan)
        s = self.sign(pol)
        start = self.g.copy()
        limit = p.move_sigma * np.sqrt(2.0) * self.sigma(start)
        active = cells
        for a in amps:
            if active.size == 0:
                break
            self.pulse(active, s * a, width)
            g = self.read(active)
            self.g[active] = g
            moved = s * (g - start[active]) > limit[active]
            out[active[moved]] = a
            active = active[~moved]
        return out

    def classify(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cells that move after cycle 1; a strongest-pulse probe for the rest."""
        p = self.p
        # the levels: medians of the SET train's last 3 reads and of the RESET tail's
        hi, lo = np.full(self.n, np.nan), np.full(self.n, np.nan)
        cells, reads = self.trains[SET][-1]
        top = reads[-3:]
        hi[cells] = np.median(top, axis=0)
        cells, tail = self.tails[-1]
        lo[cells] = np.median(tail, axis=0)
        floor = p.min_swing_fraction * p.span_s
        spread = 1.25 / np.sqrt([top.shape[0], tail.shape[0]])  # sigma of a median of m
        noise = p.move_sigma * np.hypot(spread[0] * self.sigma(hi), spread[1] * self.sigma(lo))
        need = np.maximum(noise, floor)
        moves = (hi - lo) > need
        level = np.nanmedian(np.vstack([self.g0, hi, lo]), axis=0)
        slow = np.zeros(self.n, bool)
        still = np.flatnonzero(~moves)
        if still.size:
            vmax, wmax = self.strongest()
            self.pulse(still, vmax, wmax)
            g_set = 0.5 * (self.read(still) + self.read(still))
            self.pulse(still, -vmax, wmax)
            g_reset = 0.5 * (self.read(still) + self.read(still))
            self.g[still] = g_reset
            # a cell that moves at all under the strongest pulses swings far: 20 % of the
            # window (never-pulsed cells read noisier than the law, fitted on pulsed ones)
            single = p.move_sigma * np.hypot(self.sigma(g_set), self.sigma(g_reset)) / np.sqrt(2)
            woke = (g_set - g_reset) > np.maximum(single, PROBE_SWING * p.span_s)
            slow[still[woke]] = True
            moves[still[woke]] = True
            level[still] = np.median(np.vstack([self.g0[still], hi[still], lo[still], g_set,
                                                g_reset]), axis=0)
        return np.flatnonzero(moves), level, slow

    # -- the result -----------------------------------------------------------------
    def pairs(self, pol: int) -> tuple[np.ndarray, np.ndarray]:
        """(before, after) reads of every train pulse of ``pol``: (cycles, pulses, cells),
        float32 uS, NaN for cells not in a train."""
        trains = self.trains[pol]
        shape = (len(trains), trains[0][1].shape[0] - 1, self.n)
        x, y = np.full(shape, np.nan, np.float32), np.full(shape, np.nan, np.float32)
        for i, (cells, reads) in enumerate(trains):
            x[i][:, cells] = reads[:-1] / np.float32(UNIT)
            y[i][:, cells] = reads[1:] / np.float32(UNIT)
        return x, y

    def bounds(self, pol: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per cell: the bound (S), its C2C std over cycles (S) and the keep share beta,
        from the soft-bound fit of every train of polarity ``pol`` (float32, uS)."""
        x, y = self.pairs(pol)
        c = x.shape[0]
        cut = np.float32(self.cut / UNIT) if np.isfinite(self.cut) else np.float32(np.inf)
        fin = np.isfinite(x) & np.isfinite(y) & (x < cut)
        ok = fin & (y < cut)
        # a read at the top of the range says only "at least there": censored; the EM
        # steps below put in its expectation under the current fit (a Tobit line)
        censored = fin & (y >= cut)
        any_censored = bool(censored.any())
        y_fit, w = y, ok.astype(np.float32)
        beta, bound_c, common = _fit_soft_bound(x, y, w)
        mostly = ok.sum((0, 1)) < censored.sum((0, 1))
        if np.any(mostly) and np.any(np.isfinite(beta) & ~mostly):
            # cells read mostly at the top: start their EM from the population's beta
            beta = np.where(mostly, np.nanmedian(beta[~mostly]), beta)
            with np.errstate(invalid="ignore", divide="ignore"):
                level = np.where(ok, y - beta * x, 0.0).sum(1) / ok.sum(1)
                bound_c = np.where(ok.sum(1) >= 1, level / (1.0 - beta), np.nan)
        for _ in range(REWEIGHTS):  # reweight: step noise grows with the step (C2C)
            b32, keep = beta.astype(np.float32), (1.0 - beta).astype(np.float32)
            target = (bound_c.astype(np.float32) * keep)[:, None, :]
            fitted = b32 * x
            fitted += target  # (1 - beta) B + beta x
            pred = np.abs(target - keep * x)  # the expected step
            use = ok & np.isfinite(pred) & np.isfinite(fitted)
            sigma = _step_noise(y, fitted, pred, use)
            if sigma is None:
                break
            y_fit = y
            if any_censored:
                y_fit, fill = _impute_censored(y, fitted, sigma, censored, cut)
                use |= fill
            w = np.where(use, np.float32(1.0) / (sigma * sigma), np.float32(0.0))
            beta, bound_c, common = _fit_soft_bound(x, y_fit, w)
        self.spread[pol] = _jackknife(x, y_fit, w)  # estimation noise, from the cycles
        # a cell whose reads sit mostly at the top of the range: its rate is not measured
        beta = np.where(ok.sum((0, 1)) < c, np.nan, beta)
        levels = np.vstack(self.levels[pol]) / UNIT
        slow = ~(beta <= MAX_BETA)  # NaN beta too: fall back on the saturated reads
        per = np.where(slow[None, :], levels, bound_c)
        n_cyc = np.isfinite(per).sum(0)
        with _quiet():
            # the bound: one intercept over all cycles (the pooled fit); slow cells: the
            # median of their saturated reads
            bound = np.where(slow, np.nanmedian(levels, axis=0), common) * UNIT
            c2c = np.where(n_cyc >= 2, np.nanstd(per, axis=0, ddof=1), np.nan) * UNIT
        return bound, c2c, beta

    def bottom(self) -> tuple[np.ndarray, np.ndarray]:
        """g_min: the median of every saturated RESET sample of the cell (a median, since
        a state near 0 S cannot read below it: the mean would sit above the bound); its
        C2C: the samples' spread (1.4826 x their median absolute deviation)."""
        samples = np.full((sum(t.shape[0] for _, t in self.tails), self.n), np.nan, np.float32)
        row = 0
        for cells, tail in self.tails:
            samples[row:row + tail.shape[0], cells] = tail
            row += tail.shape[0]
        count = np.isfinite(samples).sum(0)
        with _quiet():
            mid = np.nanmedian(samples, axis=0)
            mad = np.nanmedian(np.abs(samples - mid), axis=0)
        c2c = np.where(count >= 3, 1.4826 * mad, np.nan)
        return mid.astype(np.float64), c2c.astype(np.float64)

    def top_censored(self, moving: np.ndarray, g_max: np.ndarray):
        """Cells read pinned at the top of the range, and g_max with their bound beyond
        it: the extrapolated fit, kept within [top, 2 x top]."""
        censored = np.zeros(self.n, bool)
        if np.isfinite(self.ceiling):
            top = np.nanmax(np.vstack(self.levels[SET]), axis=0)
            censored = moving & (top >= self.ceiling * (1 - PINNED))
            g_max = np.where(censored, np.clip(np.nan_to_num(g_max, nan=self.ceiling),
                                               self.ceiling, 2 * self.ceiling), g_max)
        return censored, g_max

    def rates(self, beta_set, beta_reset, censored) -> tuple[np.ndarray, np.ndarray]:
        """The share of the distance one datasheet-reference pulse removes, per polarity."""
        out = []
        for pol, beta in ((SET, beta_set), (RESET, beta_reset)):
            d = self.train[pol][2]
            with np.errstate(invalid="ignore", divide="ignore"):
                out.append(1.0 - np.clip(beta, 0.0, 1.0) ** (1.0 / d))
        set_rate, reset_rate = out
        # a gradual polarity whose fit says one train pulse erased all of the distance
        # (the trains aim at 35 %): a failed fit, not a measurement
        set_rate[~(beta_set >= MIN_BETA)] = np.nan
        if not self.p.abrupt_reset:
            reset_rate[~(beta_reset >= MIN_BETA)] = np.nan
        # read at the top of the range yet, by its fit, barely moving: the fit failed
        set_rate[censored & ~(beta_set <= 0.9)] = np.nan
        return set_rate, reset_rate

    def deconvolve(self, moving, pinned, slow, rates, g_max, g_min) -> dict:
        """Per-cell rates (``rates``: set, reset shares) and g_max, in place, with the
        estimation noise measured from the repeat cycles (jackknife) taken out of their
        D2D spread (in log); rates first pooled with the pilot's (:meth:`with_pilot`).
        ``pinned``: the cells read at the top of the range (their noise is told apart);
        ``slow``: too slow to extrapolate (their g_max is read, not fitted).
        Returns the spread factors applied."""
        factors, cycles = {}, self.p.cycles
        pols = (("set_rate", SET, g_max),) + (
            () if self.p.abrupt_reset else (("reset_rate", RESET, g_min),))
        for name, pol, bound in pols:
            share = rates[pol]
            with np.errstate(invalid="ignore", divide="ignore"):
                log_r = np.log(-np.log1p(-np.clip(share, 0.0, 1.0 - 1e-12)))
            use = moving & (share > 0) & np.isfinite(log_r)
            noise = np.fmax(*(_binned_noise(self.spread[pol][0], log_r, use & group, cycles)
                              for group in (pinned, ~pinned)))  # pinned: noisier
            log_r, noise = self.with_pilot(pol, log_r, noise, use, bound)
            new, k = _deconvolve(log_r, noise, use)
            share[:] = np.where(np.isfinite(new), -np.expm1(-np.exp(new)), share)
            factors[name] = k
        with np.errstate(invalid="ignore", divide="ignore"):
            log_g = np.log(g_max / UNIT)
        use = moving & ~pinned & ~slow  # g_max from the fit
        new, k = _deconvolve(log_g, _binned_noise(self.spread[SET][1], log_g, use, cycles), use)
        g_max[:] = np.where(np.isfinite(new), np.exp(new) * UNIT, g_max)
        factors["g_max"] = k
        return factors

    def with_pilot(self, pol, log_r, noise, use, bound):
        """The trains' log rates pooled (inverse-variance) with the pilot's own: its
        reference pulses (drive 1) remove ``sum(steps) / sum(distances to the bound)`` of
        a cell far from its bound, the nominal drive law's misfit taken out as the median
        log ratio to the trains' rates, its noise the spread of that ratio less the
        trains' (per bin of rate, as ``noise``, the trains' per cell). Returns the log
        rates and each cell's estimation variance."""
        if pol not in self.pilot_reads or not np.any(np.isfinite(noise) & use):
            return log_r, noise
        cells, reads = self.pilot_reads[pol]
        s = self.sign(pol)
        dist, step = s * (bound[cells] - reads[:-1]), s * (reads[1:] - reads[:-1])
        with np.errstate(invalid="ignore", divide="ignore"):
            f = step.sum(0) / dist.sum(0)
            far = (dist.min(0) > PILOT_DISTANCE * self.p.span_s) & (f > 0) & (f < 1)
            far &= reads.max(0) < self.cut  # a read at the top of the range: censored
            log_p = np.full(self.n, np.nan)
            d_ref = self.drive(pol, *self.reference(pol))
            log_p[cells[far]] = np.log(-np.log1p(-f[far]) / d_ref)
        both = use & np.isfinite(log_p) & np.isfinite(noise)
        if np.count_nonzero(both) < 20 * NOISE_BINS:
            return log_r, noise
        diff = log_p - log_r
        log_p = log_p - float(np.median(diff[both]))
        noise_p = np.full(self.n, np.nan)
        for b in _bins(log_r, both):
            spread = float((1.4826 * np.median(np.abs(diff[b] - np.median(diff[b])))) ** 2)
            noise_p[b] = np.maximum(spread - noise[b], 0.25 * spread)
        out, pooled = log_r.copy(), noise.copy()
        pooled[both] = 1.0 / (1.0 / noise[both] + 1.0 / noise_p[both])
        out[both] = pooled[both] * (log_r[both] / noise[both] + log_p[both] / noise_p[both])
        return out, pooled

    def faults(self, moving, level, g_min, g_max) -> np.ndarray:
        """Moving cells: healthy or narrow; the others by what they read."""
        p = self.p
        fault = np.full(self.n, Fault.HEALTHY, np.uint8)
        margin = p.narrow_margin * p.span_s
        narrow = moving & ((g_max < p.window_g_max_s - margin)
                           | (g_min > p.window_g_min_s + margin))
        fault[narrow] = Fault.NARROW
        low_cut = p.window_g_min_s + p.low_level_fraction * p.span_s
        high_cut = p.window_g_min_s + p.high_level_fraction * p.span_s
        kind = np.select([p.forming_required & (level < p.pristine_below_s), level <= low_cut,
                          level >= high_cut], [Fault.UNFORMED, Fault.STUCK_LOW,
                                               Fault.STUCK_HIGH], Fault.UNRESPONSIVE)
        fault[~moving] = kind[~moving]
        return fault

    def extra(self, healthy, g_min_c2c, g_max_c2c, censored, slow) -> dict:
        g, s, c = self.noise_points()
        with _quiet():
            c2c = {"g_max_c2c_median_s": _median(g_max_c2c[healthy]),
                   "g_min_c2c_median_s": _median(g_min_c2c[healthy])}
        return {
            "final_state": "reset",
            "train_pulses": {name: {"volts": self.train[pol][0], "width_s": self.train[pol][1],
                                    "drive": self.train[pol][2]}
                             for name, pol in (("set", SET), ("reset", RESET))},
            "pilot_fraction": {"set": self.pilot_fraction.get(SET),
                               "reset": self.pilot_fraction.get(RESET)},
            "rate_reference": "share of the distance to the bound one datasheet-reference "
                              "pulse removes (drive 1)",
            "c2c": c2c,
            "d2d_deconvolution": getattr(self, "factors", {}),
            "read_ceiling_s": None if not np.isfinite(self.ceiling) else self.ceiling,
            "g_max_beyond_read_range": int(np.count_nonzero(censored)),
            "slow_cells": int(np.count_nonzero(slow)),
            "pulses_per_cell_max": int(self.pulses.max(initial=0)),
            "read_noise_points": {"g_s": g.tolist(), "sigma_s": s.tolist(),
                                  "cells": c.astype(int).tolist()},
        }

    def result(self, movers, level, slow, set_threshold, reset_threshold) -> VariabilityMap:
        p = self.p
        moving = np.zeros(self.n, bool)
        moving[movers] = True
        g_max, g_max_c2c, beta_set = self.bounds(SET)
        _, _, beta_reset = self.bounds(RESET)
        g_min, g_min_c2c = self.bottom()
        censored, g_max = self.top_censored(moving, g_max)
        set_rate, reset_rate = self.rates(beta_set, beta_reset, censored)
        self.factors = self.deconvolve(moving, censored, ~(beta_set <= MAX_BETA),
                                       {SET: set_rate, RESET: reset_rate}, g_max, g_min)
        fault = self.faults(moving, level, g_min, g_max)
        still = ~moving
        for arr in (g_min, g_max):
            arr[still] = level[still]  # the one conductance the cell holds
        for arr in (g_min_c2c, g_max_c2c, set_threshold, reset_threshold):
            arr[still] = np.nan
        set_rate[still], reset_rate[still] = 0.0, 0.0
        healthy = fault == Fault.HEALTHY
        q = p.usable_quantile
        usable = (float("nan"), float("nan"))
        if np.count_nonzero(healthy & np.isfinite(g_min) & np.isfinite(g_max)):
            usable = (float(np.nanquantile(g_min[healthy], q)),
                      float(np.nanquantile(g_max[healthy], 1 - q)))

        def grid(a):
            return np.asarray(a, np.float64).reshape(self.shape)

        return VariabilityMap(
            g_min=grid(g_min), g_max=grid(g_max), g_min_c2c=grid(g_min_c2c),
            g_max_c2c=grid(g_max_c2c), set_threshold=grid(set_threshold),
            reset_threshold=grid(reset_threshold), set_rate=grid(set_rate),
            reset_rate=grid(reset_rate), fault=fault.reshape(self.shape), read_noise=self.law,
            usable_window=usable, pulses_per_cell=float(self.pulses.mean()),
            transactions=int(self.array.transactions - self.tx0),
            bench_time_s=self.now() - self.t0_bench,
            wall_time_s=time.perf_counter() - self.t0_wall, cycles=p.cycles,
            extra=self.extra(healthy, g_min_c2c, g_max_c2c, censored, slow))


def _impute_censored(y, fitted, sigma, censored, cut):
    """``y`` with each censored read (at or above ``cut``) replaced by its expectation
    above the cut under N(fitted, sigma) (the EM step of a Tobit line); and where."""
    fill = censored & np.isfinite(fitted)
    if not fill.any():
        return y, fill
    z = (cut - fitted[fill]) / sigma[fill]
    mills = np.exp(-0.5 * z * z - 0.5 * np.log(2 * np.pi) - log_ndtr(-z))
    out = y.copy()
    out[fill] = fitted[fill] + sigma[fill] * mills
    return out, fill


def _step_noise(y, fitted, pred, use):
    """sigma = slope |expected step| + floor of each pair (C2C noise grows with the step),
    from the fit's absolute residuals (a subsample of at most 200k pairs); None: too few."""
    if np.count_nonzero(use) < 10:
        return None
    sample = np.flatnonzero(use.ravel())
    if sample.size > 200_000:
        sample = sample[:: sample.size // 200_000]
    a = np.column_stack([pred.ravel()[sample], np.ones(sample.size)]).astype(np.float64)
    resid = np.abs(y.ravel()[sample] - fitted.ravel()[sample]) * np.sqrt(np.pi / 2)
    (slope, floor), _ = nnls(a, resid.astype(np.float64))
    sigma = np.nan_to_num(pred, copy=False)  # pred is not used again
    sigma *= np.float32(slope)
    sigma += np.float32(max(floor, 1e-3))
    return sigma


def _relative_fit(g: np.ndarray, s: np.ndarray, c: np.ndarray) -> tuple[float, float]:
    """a, b >= 0 of s = a + b g, each bin weighted by its cells over its sigma squared."""
    w = np.sqrt(c) / np.maximum(s, 1e-12)
    x, _ = nnls(np.column_stack([w * UNIT, w * g]), w * s)
    return float(x[0] * UNIT), float(x[1])


def _power_fit(g: np.ndarray, s: np.ndarray, c: np.ndarray) -> ReadNoiseLaw:
    """s = a + b g^e, a, b >= 0, least squares in relative error (weights as
    :func:`_relative_fit`), e the best on a grid of 0.05 .. 1.5."""
    w = np.sqrt(c) / np.maximum(s, 1e-12)
    gu = g / UNIT
    best = (np.inf, ReadNoiseLaw(0.0, 0.0))
    for e in np.arange(0.05, 1.5001, 0.025):
        x, resid = nnls(np.column_stack([w, w * gu ** e]), w * s / UNIT)
        if resid < best[0]:
            best = (resid, ReadNoiseLaw(float(x[0] * UNIT), float(x[1] * UNIT ** (1 - e)),
                                        float(e)))
    return best[1]


def _fit_soft_bound(x: np.ndarray, y: np.ndarray, w: np.ndarray):
    """Weighted line y = (1 - beta) B + beta x per cell (axis 2) over every pair of every
    cycle (axis 0): beta, the bounds B_c of each cycle's pairs given that beta (NaN: too
    few pairs) and the bound B of all of them. ``w`` = 0 leaves a pair out."""
    on = w > 0
    xs, ys = np.where(on, x, 0), np.where(on, y, 0)
    wx = w * xs
    f8 = np.float64
    sw_c, swx_c, swy_c = w.sum(1, dtype=f8), wx.sum(1, dtype=f8), (w * ys).sum(1, dtype=f8)
    with np.errstate(invalid="ignore", divide="ignore"):
        total = sw_c.sum(0)
        mx, my = swx_c.sum(0) / total, swy_c.sum(0) / total
        sxx = (wx * xs).sum((0, 1), dtype=f8) - total * mx * mx
        sxy = (wx * ys).sum((0, 1), dtype=f8) - total * mx * my
        beta = np.where(sxx > 1e-9 * np.maximum(total * mx * mx, 1e-12), sxy / sxx, np.nan)
        beta = np.clip(beta, 0.0, 0.999)
        common = (my - beta * mx) / (1.0 - beta)
        bound = (swy_c / sw_c - beta * swx_c / sw_c) / (1.0 - beta)
    enough = on.sum(1) >= 2
    return beta, np.where(enough, bound, np.nan), common


def _jackknife(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per cell, the jackknife variance over cycles (axis 0) of the pooled soft-bound
    fit's log rate ``log(-log beta)`` and log bound: how much of a per-cell estimate is
    the cycle-to-cycle noise of its steps (NaN with fewer than 3 cycles in the fit)."""
    on = w > 0
    xs, ys = np.where(on, x, 0), np.where(on, y, 0)
    f8 = np.float64
    wx = w * xs
    sums = np.stack([w.sum(1, dtype=f8), wx.sum(1, dtype=f8), (w * ys).sum(1, dtype=f8),
                     (wx * xs).sum(1, dtype=f8), (wx * ys).sum(1, dtype=f8)])
    present = on.any(1)  # (cycles, cells)

    def fit(s):
        with np.errstate(invalid="ignore", divide="ignore"):
            total = s[0]
            mx, my = s[1] / total, s[2] / total
            beta = (s[4] - total * mx * my) / (s[3] - total * mx * mx)
            beta = np.where((beta >= MIN_BETA) & (beta < 0.999), beta, np.nan)
            bound = (my - beta * mx) / (1.0 - beta)
            return np.log(-np.log(beta)), np.log(np.where(bound > 0, bound, np.nan))

    full = sums.sum(1)
    out = []
    loo = [fit(full - sums[:, i]) for i in range(x.shape[0])]
    count = present.sum(0)
    for k in range(2):
        est = np.stack([np.where(present[i], loo[i][k], np.nan) for i in range(len(loo))])
        with _quiet():
            dev = est - np.nanmean(est, axis=0)
            var = (count - 1) / np.maximum(count, 1) * np.nansum(dev * dev, axis=0)
        out.append(np.where(count >= 3, var, np.nan))
    return out[0], out[1]


def _noise_var(est_var: np.ndarray, use: np.ndarray, cycles: int) -> float:
    """The estimation variance of a per-cell quantity over ``use``, robustly: the cells'
    median jackknife variance over the median of chi2(m - 1) / (m - 1), m the cycles (the
    jackknife's mean is pulled up by a few cells and overstates it). NaN: too few."""
    ok = use & np.isfinite(est_var)
    if np.count_nonzero(ok) < 20 or cycles < 3:
        return float("nan")
    return float(np.median(est_var[ok]) * (cycles - 1) / chi2.ppf(0.5, cycles - 1))


def _bins(v: np.ndarray, use: np.ndarray):
    """``NOISE_BINS`` masks splitting the cells of ``use`` by quantiles of ``v``."""
    edges = np.quantile(v[use], np.linspace(0.0, 1.0, NOISE_BINS + 1))
    edges[-1] = np.inf
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        yield use & (v >= lo) & (v < hi)


def _binned_noise(est_var, log_v, use, cycles) -> np.ndarray:
    """Per cell, the estimation variance of its bin of ``log_v`` (:func:`_noise_var` over
    the bin: a cell's own jackknife is too rough, its bin's median is not); NaN off
    ``use`` or with too few cells."""
    out = np.full(log_v.shape, np.nan)
    ok = use & np.isfinite(log_v)
    if np.count_nonzero(ok) < 20 * NOISE_BINS:
        out[ok] = _noise_var(est_var, ok, cycles)
        return out
    for b in _bins(log_v, ok):
        out[b] = _noise_var(est_var, b, cycles)
    return out


def _deconvolve(log_v: np.ndarray, noise, use: np.ndarray):
    """``log_v`` with the estimation noise ``noise`` (a variance, per cell or for all) taken
    out of its spread over ``use``: observed variance V = true + E (E its mean, true at
    least 0.09 V); each cell's deviation from the median is shrunk by true / (true + its
    noise) (the noisier, the more), then all scaled so that their spread is the true
    one. Returns that and sqrt(true / V) (1: nothing to remove, or too few cells)."""
    ok = use & np.isfinite(log_v)
    noise = np.broadcast_to(np.asarray(noise, np.float64), log_v.shape)
    if np.count_nonzero(ok) < 20 or not np.all(np.isfinite(noise[ok])):
        return log_v, 1.0
    v = log_v[ok]
    observed = float(v.var())
    if not observed > 0:
        return log_v, 1.0
    true = max(observed - float(noise[ok].mean()), 0.09 * observed)
    mid = float(np.median(v))
    dev = (v - mid) * (true / (true + noise[ok]))  # each cell by its own noise
    out = log_v.copy()
    out[ok] = mid + dev * np.sqrt(true) / max(float(dev.std()), 1e-12)
    return out, float(np.sqrt(true / observed))


def _median(v: np.ndarray) -> float | None:
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else None


class _quiet:
    """Silence numpy's all-NaN slice warnings (cells with nothing to fit stay NaN)."""

    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._w.__exit__(*exc)
