"""One simulated crossbar die: per-cell state and vectorised array operations.

State is held in flat float32 arrays (float64 for times) in siemens; every
operation works on whole arrays or on an index subset, never a Python loop over
cells. Ground truth is reachable only through :meth:`SimChip.truth`, which
tests and benchmarks use for scoring.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from sim_backend import crossbar, devices
from sim_backend.clock import VirtualClock
from sim_backend.randoms import normals
from sim_backend.spec import ChipSpec

F32 = np.float32
READ_TIME_PER_ROW = 1e-6  # s; row-parallel read of one word line (assumption)
MAX_READ_AVERAGES = 1024  # conversions averaged per read, at most
MVM_TIME = 1e-6  # s per input vector (assumption)
DENSE_FRACTION = 0.3  # above this share of cells, operate on whole arrays


class ChipInputError(ValueError):
    """An array operation was given an input of the wrong shape or value."""


@dataclass(frozen=True)
class DieModifiers:
    """Wafer-level systematic effects on one die."""

    g_max_scale: float = 1.0  # multiplies the median of the per-cell upper bound
    stuck_scale: float = 1.0  # multiplies the stuck-cell fraction
    dead: bool = False  # no cell works (e.g. a broken word-line decoder)


@dataclass(frozen=True)
class ChipTruth:
    """Hidden state of a die, for scoring only. Conductances in siemens."""

    g: np.ndarray  # (rows, cols) what a noise-free, infinitely fine read returns now
    g_programmed: np.ndarray  # state right after the last programming event (at reference T)
    g_min: np.ndarray  # per-cell physical lower bound
    g_max: np.ndarray  # per-cell physical upper bound
    stuck: np.ndarray  # bool: the cell never moves
    stuck_high: np.ndarray  # bool: stuck at a high conductance (subset of stuck)
    formed: np.ndarray  # bool
    set_rate: np.ndarray  # per-cell response rate for SET (see ResponseSection)
    reset_rate: np.ndarray
    forming_voltage: np.ndarray  # per-cell forming threshold, V
    nu: np.ndarray  # PCM drift exponent of the last programming event
    t_programmed: np.ndarray  # virtual time of the last programming event, s
    time: float  # virtual now, s
    temperature: float  # degC


class _Cells:
    """The cells one pulse batch acts on.

    Dense batches compute on whole arrays (views) and write back by blending
    with a 0/1 weight, which is several times faster than boolean gathers and
    scatters; sparse batches gather and scatter by index.
    """

    def __init__(self, active: np.ndarray, count: int) -> None:
        self.dense = count > DENSE_FRACTION * active.size
        if self.dense:
            self.sel = slice(None)
            self.weight = active.astype(F32)
            self.weight_int = active.astype(np.int32)
        else:
            self.sel = np.flatnonzero(active)

    def take(self, arr: np.ndarray) -> np.ndarray:
        return arr if self.dense else arr[self.sel]

    def put(self, arr: np.ndarray, values) -> None:
        if not self.dense:
            arr[self.sel] = values
            return
        delta = np.subtract(values, arr, dtype=arr.dtype)
        delta *= self.weight if arr.dtype == F32 else self.weight_int
        arr += delta


def _seed_entropy(seed: object) -> list[int]:
    """A chip seed, a whole number >= 0 or a tuple of them, as SeedSequence entropy."""
    parts = list(seed) if isinstance(seed, tuple) else [seed]
    for part in parts:
        if isinstance(part, bool) or not isinstance(part, numbers.Integral) or part < 0:
            raise ChipInputError(f"seed {seed!r}: must be a whole number >= 0 "
                                 "(or a tuple of them)")
    if not parts:
        raise ChipInputError("seed (): give at least one whole number")
    return [int(p) for p in parts]


class SimChip:
    """A simulated die of ``spec``; same ``seed`` gives the same chip."""

    def __init__(
        self,
        spec: ChipSpec,
        seed: int | tuple = 0,
        clock: VirtualClock | None = None,
        modifiers: DieModifiers | None = None,
        die_id: int | None = None,
    ) -> None:
        self.spec = spec
        self.die_id = die_id
        self.modifiers = modifiers or DieModifiers()
        self.clock = clock or VirtualClock()
        self.shape = spec.shape
        self.size = spec.chip.rows * spec.chip.cols
        entropy = _seed_entropy(seed)
        seeds = np.random.SeedSequence(entropy).spawn(2)
        self._init_cells(np.random.default_rng(seeds[0]))
        self._rng = np.random.default_rng(seeds[1])  # cycle-to-cycle and read noise
        self._temperature = spec.temperature.reference
        self.pulses_applied = 0  # cell-pulses, for accounting

    # -- construction -------------------------------------------------------
    def _init_cells(self, rng: np.random.Generator) -> None:
        spec, n, mod = self.spec, self.size, self.modifiers
        b, r, f = spec.bounds, spec.response, spec.faults
        z = normals(rng, 6 * n).reshape(6, n)
        self.g_min = (F32(b.g_min_median) * np.exp(F32(b.d2d_sigma) * z[0])).astype(F32)
        self.g_max = (F32(b.g_max_median * mod.g_max_scale) * np.exp(F32(b.d2d_sigma) * z[1]))
        self.g_max = np.maximum(self.g_max, self.g_min * F32(2.0)).astype(F32)
        self.set_rate = (F32(r.set_rate) * np.exp(F32(r.rate_d2d_sigma) * z[2])).astype(F32)
        self.reset_rate = (F32(r.reset_rate) * np.exp(F32(r.rate_d2d_sigma) * z[3])).astype(F32)
        fm = spec.forming
        self.forming_voltage = (F32(fm.threshold_median) + F32(fm.threshold_sigma) * z[4])
        u = rng.random((2, n), dtype=F32)
        stuck_fraction = min(1.0, f.stuck_fraction * mod.stuck_scale)
        self.stuck = np.ones(n, bool) if mod.dead else u[0] < F32(stuck_fraction)
        self.stuck_high = self.stuck & (u[1] < F32(f.stuck_high_share)) & (not mod.dead)
        stuck_value = np.where(self.stuck_high, F32(f.stuck_high), F32(f.stuck_low))
        stuck_value = stuck_value * np.exp(F32(0.3) * z[5])
        now = self.clock.now
        if fm.required:
            self.formed = np.zeros(n, bool)
            self.g0 = np.full(n, F32(fm.pristine))
        else:
            self.formed = np.ones(n, bool)
            self.g0 = self.g_min.copy()  # as-fabricated PCM: amorphous (RESET) state
        self.g0 = np.where(self.stuck, stuck_value, self.g0).astype(F32)
        # Time of each cell's last programming event, as an index into a table
        # of event times: one entry per pulse batch, so time laws are evaluated
        # per event and gathered, not per cell.
        self.event = np.zeros(n, np.int32)
        self._event_times = np.full(64, now)
        self._n_events = 1
        self.z_relax = np.zeros(n, F32)
        self.nu = np.zeros(n, F32)

    # -- temperature -------------------------------------------------------
    @property
    def temperature(self) -> float:
        """Die temperature, degrees C (set by the chuck on a bench)."""
        return self._temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        value = float(value)
        if not math.isfinite(value) or value <= -273.15:
            raise ChipInputError(f"temperature must be a finite value above -273.15 degC, "
                                 f"got {value!r}")
        self._temperature = value

    # -- internal state helpers ----------------------------------------------
    def _selection(self, mask) -> slice | np.ndarray:
        if mask is None:
            return slice(None)
        mask = np.asarray(mask)
        if mask.shape != self.shape or mask.dtype != bool:
            raise ChipInputError(f"mask must be a boolean array of shape {self.shape}, "
                                 f"got {mask.dtype} {mask.shape}")
        flat = mask.ravel()
        count = int(np.count_nonzero(flat))
        if count > DENSE_FRACTION * self.size:
            return flat  # boolean indexing of the whole array
        return np.flatnonzero(flat)

    def _new_event(self) -> int:
        """Record a programming event at the current virtual time."""
        if self._n_events == self._event_times.size:
            self._event_times = np.concatenate([self._event_times, self._event_times])
        self._event_times[self._n_events] = self.clock.now
        self._n_events += 1
        return self._n_events - 1

    def _since_table(self) -> np.ndarray:
        return self.clock.now - self._event_times[: self._n_events]

    def _per_cell(self, table: np.ndarray, sel) -> np.ndarray:
        return table.take(self.event[sel])

    def _state(self, sel) -> np.ndarray:
        """Conductance at the reference temperature now, without read noise."""
        g0 = self.g0[sel]
        spec = self.spec
        if spec.relaxation.model == "none" and spec.drift.model == "none":
            return g0.copy()
        since = self._since_table()
        if spec.relaxation.model != "none":
            table = devices.relaxation_log_time(spec, since)
            if table.any():
                ln_t = self._per_cell(table, sel)
            else:  # every event younger than t_min: ln t = 0 for all cells
                ln_t = F32(0.0)
            g0 = devices.relaxed(spec, g0, ln_t, self.z_relax[sel])
        if spec.drift.model != "none":
            table = devices.drift_log_ratio(spec, since)
            if table.any():  # before t0 nothing drifts
                g0 = devices.drifted(g0, self._per_cell(table, sel), self.nu[sel])
        return np.maximum(g0, F32(0.0))

    def _read_sigma(self, g, sel, integrations: int = 1) -> np.ndarray:
        spread = None
        if self.spec.read_noise.model == "pcm_1f":
            table = devices.read_spread(self.spec, self._since_table(), integrations)
            spread = self._per_cell(table, sel)
        return devices.read_sigma(self.spec, g, self.g_max[sel], spread, integrations)

    def _observed(self, sel) -> np.ndarray:
        """Noise-free conductance as the periphery sees it at the die temperature."""
        g = self._state(sel)
        factor = devices.temperature_factor(self.spec, g, self.g_max[sel], self._temperature)
        return g if factor is None else g * factor

    # -- array operations ---------------------------------------------------
    def read(self, mask=None, voltage: float | None = None, adc: bool = True,
             averages: int = 1) -> np.ndarray:
        """Read conductances (siemens) of all cells or of ``mask``; NaN where not read.

        Each read draws fresh read noise and passes the read ADC (``adc=False``:
        the analog value, as an external SMU measuring the cell sees it).
        ``averages`` > 1: that many conversions per cell, averaged (and timed) as
        the periphery would. White read noise (``relative``) is drawn and
        quantized per conversion, so it averages down as 1/sqrt(n); 1/f noise
        (``pcm_1f``) is one integration n times longer, which it barely notices.
        """
        v = self.spec.window.read_voltage if voltage is None else float(voltage)
        if not math.isfinite(v) or v <= 0:
            raise ChipInputError(f"read voltage must be positive, got {voltage!r}")
        if int(averages) != averages or not 1 <= averages <= MAX_READ_AVERAGES:
            raise ChipInputError(f"averages must be an integer in 1..{MAX_READ_AVERAGES}, "
                                 f"got {averages!r}")
        averages = int(averages)
        sel = self._selection(mask)
        g = self._observed(sel)
        one_over_f = self.spec.read_noise.model == "pcm_1f"
        sigma = self._read_sigma(g, sel, averages if one_over_f else 1)
        conversions = 1 if one_over_f else averages
        values = np.zeros(g.size, np.float64)
        for _ in range(conversions):
            noisy = sigma * normals(self._rng, g.size)
            noisy += g
            # The read ADC has a fixed current range: read_full_scale at the nominal read
            # voltage. Reading at another voltage changes the conductance resolution.
            if adc:
                conv = self.spec.adc
                i_full = conv.read_full_scale * self.spec.window.read_voltage
                current = devices.quantize(noisy * F32(v), i_full, conv.read_bits, False)
                values += current
            else:
                values += noisy
        values /= (v * conversions) if adc else conversions
        if isinstance(sel, slice):
            out = values.reshape(self.shape)
            rows_read = self.shape[0]
        else:
            out = np.full(self.size, np.nan)
            out[sel] = values
            rows_read = int(np.count_nonzero(mask.any(axis=1)))
            out = out.reshape(self.shape)
        self.clock.advance(READ_TIME_PER_ROW * rows_read * averages)
        return out

    def pulse(self, volts, width=1e-6) -> int:
        """Apply one programming pulse per cell: signed amplitude (V), 0 = none.

        Positive is SET (toward g_max), negative RESET. ``width`` in seconds,
        scalar or per cell. Returns the number of cells that switched.
        """
        volts = np.asarray(volts, dtype=F32)
        if volts.shape != self.shape:
            raise ChipInputError(f"volts must have shape {self.shape}, got {volts.shape}")
        if not np.all(np.isfinite(volts)):
            raise ChipInputError("volts contains NaN or infinity")
        width_arr = np.asarray(width, dtype=F32)
        if width_arr.ndim and width_arr.shape != self.shape:
            raise ChipInputError(f"width must be a scalar or shape {self.shape}")
        if not np.all(np.isfinite(width_arr)) or np.any(width_arr <= 0):
            raise ChipInputError("width must be positive and finite (seconds)")
        flat_v = volts.ravel()
        r = self.spec.response
        active = (flat_v > F32(r.set_threshold)) | (flat_v < -F32(r.reset_threshold))
        active &= self.formed & ~self.stuck
        n_active = int(np.count_nonzero(active))
        self._advance_for_pulses(volts, width_arr)
        if n_active == 0:
            return 0
        cells = _Cells(active, n_active)
        v = cells.take(flat_v)
        w = width_arr if width_arr.ndim == 0 else cells.take(width_arr.ravel())
        g = self._state(cells.sel)
        g_min, g_max = cells.take(self.g_min), cells.take(self.g_max)
        mean = devices.pulse_mean(
            self.spec, g, g_min, g_max, cells.take(self.set_rate),
            cells.take(self.reset_rate), v, w,
        )
        step = mean - g
        if self.spec.response.reset_mode == "abrupt":  # melt-quench forgets the old state
            step *= (v > 0).astype(F32)
        sigma = devices.step_sigma(self.spec, step, mean, g_max)
        k = mean.size
        z = normals(self._rng, 2 * k)
        g_new = sigma * z[:k]
        g_new += mean
        np.clip(g_new, F32(0.0), g_max, out=g_new)
        cells.put(self.g0, g_new)
        cells.put(self.event, self._new_event())
        if self.spec.relaxation.model != "none":
            cells.put(self.z_relax, z[k:])
        if self.spec.drift.model != "none":
            cells.put(self.nu, devices.drift_nu(self.spec, g_new, g_max, z[k:]))
        self.pulses_applied += n_active
        return n_active

    def _advance_for_pulses(self, volts: np.ndarray, width: np.ndarray) -> None:
        """Rows are pulsed one after another, SET and RESET in separate phases."""
        if width.ndim == 0:
            phases = np.count_nonzero((volts > 0).any(axis=1)) + np.count_nonzero(
                (volts < 0).any(axis=1))
            self.clock.advance(float(width) * phases)
            return
        set_rows = np.where(volts > 0, width, 0).max(axis=1)
        reset_rows = np.where(volts < 0, width, 0).max(axis=1)
        self.clock.advance(float(set_rows.sum() + reset_rows.sum()))

    def form(self, voltage: float | None = None, width: float | None = None, mask=None) -> int:
        """Forming pulses on unformed cells; returns how many cells formed.

        A no-op (returns 0) on technologies that need no forming.
        """
        fm = self.spec.forming
        if not fm.required:
            return 0
        v = fm.voltage if voltage is None else float(voltage)
        w = fm.width if width is None else float(width)
        if not (math.isfinite(v) and math.isfinite(w)) or v <= 0 or w <= 0:
            raise ChipInputError("forming voltage and width must be positive and finite")
        candidates = ~self.formed & ~self.stuck
        if mask is not None:
            mask = np.asarray(mask, bool)
            if mask.shape != self.shape:
                raise ChipInputError(f"mask must have shape {self.shape}")
            candidates &= mask.ravel()
        # Forming needs a pulse of at least a tenth of the nominal width (assumption).
        forms = candidates & (self.forming_voltage <= F32(v)) & (w >= 0.1 * fm.width)
        idx = np.flatnonzero(forms)
        rows_touched = np.count_nonzero(candidates.reshape(self.shape).any(axis=1))
        self.clock.advance(w * rows_touched)
        if idx.size == 0:
            return 0
        z = normals(self._rng, 2 * idx.size)
        g = F32(fm.formed_state) * np.exp(F32(0.3) * z[: idx.size])
        self.g0[idx] = np.clip(g, self.g_min[idx], self.g_max[idx])
        self.formed[idx] = True
        self.event[idx] = self._new_event()
        if self.spec.relaxation.model != "none":
            self.z_relax[idx] = z[idx.size:]
        return int(idx.size)

    def mvm(self, x_volts, full_scale: float | None = None) -> np.ndarray:
        """Column currents (A) for row voltages ``x_volts`` (V), shape (rows,) or (n, rows).

        Includes IR drop on the word and bit lines, read noise summed over each
        column, output noise and the column ADC (``full_scale`` in A overrides
        the spec's range, as a programmable TIA gain would).
        """
        x = np.asarray(x_volts, dtype=np.float64)
        single = x.ndim == 1
        x2 = np.atleast_2d(x)
        if x2.ndim != 2 or x2.shape[1] != self.shape[0]:
            raise ChipInputError(f"x_volts must have shape ({self.shape[0]},) or "
                                 f"(n, {self.shape[0]}), got {x.shape}")
        if not np.all(np.isfinite(x2)):
            raise ChipInputError("x_volts contains NaN or infinity")
        fs = self.spec.adc.mvm_full_scale if full_scale is None else float(full_scale)
        if not math.isfinite(fs) or fs <= 0:
            raise ChipInputError(f"full_scale must be positive, got {full_scale!r}")
        g = self._observed(slice(None))
        sigma = self._read_sigma(g, slice(None)).reshape(self.shape)
        g = g.reshape(self.shape)
        currents = crossbar.column_currents(x2, g, self.spec.lines.wire_resistance)
        noise_var = (x2 * x2) @ (sigma.astype(np.float64) ** 2)
        out_sigma = np.sqrt(noise_var + (self.spec.adc.mvm_output_noise * fs) ** 2)
        noisy = currents + out_sigma * normals(self._rng, currents.size).reshape(currents.shape)
        out = devices.quantize(noisy.astype(F32), fs, self.spec.adc.mvm_bits, True)
        self.clock.advance(MVM_TIME * x2.shape[0])
        out = out.astype(np.float64)
        return out[0] if single else out

    def advance(self, seconds: float) -> None:
        """Let virtual time pass (relaxation and drift go on)."""
        self.clock.advance(seconds)

    # -- scoring ----------------------------------------------------------
    def truth(self) -> ChipTruth:
        """Hidden ground truth; for tests and benchmarks, never for protocols."""
        shape = self.shape

        def grid(a, dtype=np.float64):
            return np.asarray(a, dtype=dtype).reshape(shape).copy()

        return ChipTruth(
            g=grid(self._observed(slice(None))),
            g_programmed=grid(self.g0),
            g_min=grid(self.g_min),
            g_max=grid(self.g_max),
            stuck=grid(self.stuck, bool),
            stuck_high=grid(self.stuck_high, bool),
            formed=grid(self.formed, bool),
            set_rate=grid(self.set_rate),
            reset_rate=grid(self.reset_rate),
            forming_voltage=grid(self.forming_voltage),
            nu=grid(self.nu),
            t_programmed=grid(self._event_times[self.event]),
            time=self.clock.now,
            temperature=self._temperature,
        )
