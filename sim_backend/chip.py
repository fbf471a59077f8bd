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
from sim_backend.thermal import DieThermalPath

F32 = np.float32
READ_TIME_PER_ROW = 1e-6  # s; row-parallel read of one word line (assumption)
MAX_READ_AVERAGES = 1024  # conversions averaged per read, at most
MVM_TIME = 1e-6  # s per input vector (assumption)
DENSE_FRACTION = 0.3  # above this share of cells, operate on whole arrays
SCPI_OVERFLOW = 9.9e37  # what an SCPI instrument reports for an overflowed reading


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

    g: np.ndarray  # (rows, cols) what each cell conducts now, at the die temperature, noise-free
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
    temperature: float  # the die's true temperature, degC (not the chuck's reading)
    # -- temperature (docs/simulator.md, "Temperature") --
    g_reference: np.ndarray  # what g would be at the reference temperature (state now)
    g_read: np.ndarray  # what a noise-free on-chip read at the nominal voltage returns, before
    #                     the ADC rounds it: column_gain * g + column_offset * read_full_scale
    temp_coeff: np.ndarray  # per-cell coefficient in the present state: 1/K (two_state), eV
    temp_coeff_cell: np.ndarray  # the cell's own deviation from the law (same unit), fixed
    temp_coeff_die: float  # the die's scale of the law (lognormal, median 1)
    column_gain: np.ndarray  # (cols,) read-out chain gain at the die temperature
    column_offset: np.ndarray  # (cols,) read-out chain offset, fraction of the ADC full scale
    column_gain_tc: np.ndarray  # (cols,) 1/K
    column_offset_tc: np.ndarray  # (cols,) full scale per K
    die_offset: float  # share of (chuck - ambient) this die sits short of the chuck
    relaxation_age: np.ndarray  # effective time (s at reference T) since the last event
    drift_age: np.ndarray  # the same for the drift law
    # -- relaxation (docs/simulator.md, "Relaxation and cycling") --
    cycles: np.ndarray  # programming events each cell has had, forming included (saturating)
    relaxation_deviation: np.ndarray  # the walk's deviation from the law's mean now, S


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
        # spawn(n)[:k] are the streams spawn(k) gave: adding a stream changed no die
        seeds = np.random.SeedSequence(entropy).spawn(4)
        self._init_cells(np.random.default_rng(seeds[0]))
        self._rng = np.random.default_rng(seeds[1])  # cycle-to-cycle and read noise
        self._init_temperature(np.random.default_rng(seeds[2]))
        # the relaxation walk's increments: looking at the truth moves no read noise
        self._relax_rng = np.random.default_rng(seeds[3])
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
        # Relaxation walk: each cell's deviation from the law's mean (S) at the ln of the
        # effective age it was last looked at; and its programming events (saturating).
        self.relax_dev = np.zeros(n, F32)
        self.relax_ln_t = np.full(n, self._relax_ln_min())
        self.cycles = np.zeros(n, np.uint16)
        self.nu = np.zeros(n, F32)

    def _init_temperature(self, rng: np.random.Generator) -> None:
        """Hidden temperature parameters of this die, from its own stream of the seed.

        Per die: a lognormal scale of the temperature law and the share of
        (chuck - ambient) the die sits short of the chuck; per column: the
        read-out chain's gain and offset coefficients; per cell: a normal
        deviation from the law (1/K for two_state, eV for arrhenius).
        """
        t, n, cols = self.spec.temperature, self.size, self.shape[1]
        z = rng.standard_normal(2)
        self.temp_die_scale = float(np.exp(t.die_sigma * z[0]))
        self.die_offset = float(t.die_offset * np.exp(t.die_offset_sigma * z[1]))
        zc = rng.standard_normal((2, cols))
        self.column_gain_tc = t.adc_gain_tc + t.adc_gain_tc_sigma * zc[0]
        self.column_offset_tc = t.adc_offset_tc + t.adc_offset_tc_sigma * zc[1]
        sigma = {"two_state": t.coeff_sigma, "arrhenius": t.ea_sigma}.get(t.model, 0.0)
        self.temp_cell = (F32(sigma) * rng.standard_normal(n, dtype=F32)) if sigma else (
            np.zeros(n, F32))
        # Arrhenius acceleration of the time laws: the excess effective time
        # integral of (AF - 1) dt, per law [relaxation, drift], up to _excess_at, and
        # its value at each programming event (a table parallel to _event_times).
        ea = [t.relaxation_ea if self.spec.relaxation.model != "none" else 0.0,
              t.drift_ea if self.spec.drift.model != "none" else 0.0]
        self._ea = np.array(ea)
        self._accelerates = bool(self._ea.any())
        self._excess = np.zeros(2)
        self._excess_at = self.clock.now
        self._accelerated = False  # some excess has accrued: ages differ from clock time
        self._event_excess = np.zeros((self._event_times.size, 2))
        self._temperature = t.reference
        self._thermal: DieThermalPath | None = None

    # -- temperature -------------------------------------------------------
    @property
    def temperature(self) -> float:
        """The die's true temperature, degrees C.

        On a bench the die sits on the chuck's thermal path (:meth:`attach_thermal`):
        it lags the chuck and sits offset from it. Off a bench it is what was set.
        """
        if self._thermal is not None:
            return self._thermal.die_temperature(self.die_offset)
        return self._temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        """Hold the die at ``value`` degC from now on.

        Setting the temperature the die already has (what the bench does on every
        transaction) leaves it on its thermal path; another value takes it off.
        Time spent so far counts at the temperature it had.
        """
        value = float(value)
        if not math.isfinite(value) or value <= -273.15:
            raise ChipInputError(f"temperature must be a finite value above -273.15 degC, "
                                 f"got {value!r}")
        if self._thermal is not None:
            if abs(value - self.temperature) <= 1e-9:
                return
            self._accumulate()
            self._thermal = None
        else:
            self._accumulate()
        self._temperature = value

    @property
    def thermal(self) -> DieThermalPath | None:
        """The thermal path this die follows (None: held at ``temperature``)."""
        return self._thermal

    def attach_thermal(self, path: DieThermalPath) -> None:
        """Put the die on ``path`` (the chuck it sits on); its time counts there from now."""
        if path is not self._thermal:
            self._accumulate()
            self._thermal = path

    def _accumulate(self) -> None:
        """Bring the excess effective time of the time laws up to now.

        Held temperature: exact for the piecewise-constant history it is.
        On a thermal path: the path's quadrature over the die's true trajectory.
        """
        now = self.clock.now
        dt = now - self._excess_at
        if dt <= 0.0:
            return
        if self._accelerates:
            ref = self.spec.temperature.reference
            if self._thermal is not None:
                w, temps = self._thermal.die_nodes(self._excess_at, now, self.die_offset)
                af = devices.arrhenius_factor(self._ea[:, None], temps[None, :], ref)
                self._excess += (af - 1.0) @ w
            elif self._temperature != ref:
                self._excess += (devices.arrhenius_factor(self._ea, self._temperature, ref)
                                 - 1.0) * dt
            self._accelerated = self._accelerated or bool(self._excess.any())
        self._excess_at = now

    def _age_table(self, law: int) -> np.ndarray:
        """Effective age of each event for ``law`` (0 relaxation, 1 drift), s at reference T."""
        since = self._since_table()
        if not self._accelerates:
            return since
        self._accumulate()
        if not self._accelerated:
            return since  # bit for bit the clock's ages: nothing was ever accelerated
        age = since + (self._excess[law] - self._event_excess[: self._n_events, law])
        return np.maximum(age, 0.0, out=age)

    def _column_chain(self, temperature_c: float):
        return devices.column_chain(self.column_gain_tc, self.column_offset_tc, temperature_c,
                                    self.spec.temperature.reference)

    def _columns(self, sel) -> np.ndarray | slice:
        """Column index of each selected cell (a slice: every cell, row-major)."""
        if isinstance(sel, slice):
            return sel
        idx = np.flatnonzero(sel) if sel.dtype == bool else sel
        return idx % self.shape[1]

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
            self._event_excess = np.concatenate([self._event_excess, self._event_excess])
        self._event_times[self._n_events] = self.clock.now
        if self._accelerates:
            self._accumulate()
            self._event_excess[self._n_events] = self._excess
        self._n_events += 1
        return self._n_events - 1

    def _since_table(self) -> np.ndarray:
        return self.clock.now - self._event_times[: self._n_events]

    def _per_cell(self, table: np.ndarray, sel) -> np.ndarray:
        return table.take(self.event[sel])

    def _relax_ln_min(self) -> np.float32:
        t_min = self.spec.relaxation.t_min
        return F32(math.log(t_min)) if t_min > 0 else F32(0.0)

    def _relax(self, sel):
        """Walk the relaxation of cells ``sel`` on to now: (ln of their effective age, deviation).

        Each look draws the increments since the cell's last one (its own stream), so
        the truth and the next read at the same instant agree, and the deviation at a
        time has the law's spread whatever was looked at before.
        """
        spec = self.spec
        table = devices.relaxation_log_time(spec, self._age_table(0))
        ln_min = self._relax_ln_min()
        dev = self.relax_dev[sel]
        if not (table > ln_min).any():  # every event younger than t_min: nothing walked yet
            return ln_min, dev
        ln_t = self._per_cell(table, sel)
        z = normals(self._relax_rng, ln_t.size)
        scale = devices.relaxation_scale(spec, self.cycles[sel])
        dev = devices.relaxation_walk(spec, dev, self.relax_ln_t[sel], ln_t, scale, z)
        if isinstance(sel, slice):  # every cell: the fresh arrays are the state
            self.relax_dev, self.relax_ln_t = dev, ln_t
        else:
            self.relax_dev[sel] = dev
            self.relax_ln_t[sel] = ln_t
        return ln_t, dev

    def _programmed(self, cells, z) -> None:
        """A programming event for ``cells`` (a :class:`_Cells` or indices): count it and
        start each cell's relaxation walk afresh from the N(0, 1) draws ``z``."""
        if isinstance(cells, _Cells) and cells.dense:
            self.cycles += (cells.weight_int != 0) & (self.cycles < devices.CYCLES_MAX)
            cycles, put = self.cycles, cells.put
        else:
            idx = cells.sel if isinstance(cells, _Cells) else cells

            def put(arr, values):
                arr[idx] = values
            cycles = self.cycles[idx]
            cycles += cycles < devices.CYCLES_MAX
            self.cycles[idx] = cycles
        if self.spec.relaxation.model != "none":
            scale = devices.relaxation_scale(self.spec, cycles)
            put(self.relax_dev, devices.relaxation_start(self.spec, scale, z))
            put(self.relax_ln_t, self._relax_ln_min())

    def _state(self, sel) -> np.ndarray:
        """Conductance at the reference temperature now, without read noise."""
        g0 = self.g0[sel]
        spec = self.spec
        if spec.relaxation.model == "none" and spec.drift.model == "none":
            return g0.copy()
        if spec.relaxation.model != "none":
            ln_t, dev = self._relax(sel)
            g0 = devices.relaxed(spec, g0, ln_t, dev)
        if spec.drift.model != "none":
            table = devices.drift_log_ratio(spec, self._age_table(1))
            if table.any():  # before t0 nothing drifts
                g0 = devices.drifted(g0, self._per_cell(table, sel), self.nu[sel])
        return np.maximum(g0, F32(0.0))

    def _read_sigma(self, g, sel, integrations: int = 1) -> np.ndarray:
        spread = None
        if self.spec.read_noise.model == "pcm_1f":
            table = devices.read_spread(self.spec, self._since_table(), integrations)
            spread = self._per_cell(table, sel)
        return devices.read_sigma(self.spec, g, self.g_max[sel], spread, integrations)

    def _observed(self, sel, temperature_c: float | None = None) -> np.ndarray:
        """Noise-free conductance of the cells at the die temperature."""
        return self._heated(self._state(sel), sel,
                            self.temperature if temperature_c is None else temperature_c)

    def _heated(self, g, sel, temperature_c: float) -> np.ndarray:
        t = self.spec.temperature
        if t.model == "none" or temperature_c == t.reference:
            return g
        factor = devices.temperature_factor(self.spec, g, self.g_max[sel], temperature_c,
                                            self.temp_cell[sel], self.temp_die_scale)
        return g * factor

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
        temperature = self.temperature
        g = self._observed(sel, temperature)
        # the on-chip read-out chain (an external SMU, adc=False, bypasses it)
        chain = self._column_chain(temperature) if adc else None
        if chain is not None:
            cols = self._columns(sel)
            gain, offset = chain
            if isinstance(cols, slice):
                gain = np.tile(gain, self.shape[0])
                offset = np.tile(offset, self.shape[0])
            else:
                gain, offset = gain[cols], offset[cols]
            offset = offset * F32(self.spec.adc.read_full_scale * self.spec.window.read_voltage)
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
                current = noisy * F32(v)
                if chain is not None:
                    current *= gain
                    current += offset
                current = devices.quantize(current, i_full, conv.read_bits, False)
                values += current
            else:
                values += noisy
        values /= (v * conversions) if adc else conversions
        if adc and chain is not None:
            # A column offset read at a vanishing voltage (below ~1e-44 V) is a conductance
            # beyond the board's float32 results: report SCPI's overflow value instead.
            np.minimum(values, SCPI_OVERFLOW, out=values)
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
        devices.set_capped(self.spec, mean, g, v)
        step = mean - g
        if self.spec.response.reset_mode == "abrupt":  # melt-quench forgets the old state
            step *= (v > 0).astype(F32)
        sigma = devices.step_sigma(self.spec, step, mean, g_max)
        k = mean.size
        z = normals(self._rng, 2 * k)
        g_new = sigma * z[:k]
        g_new += mean
        np.clip(g_new, F32(0.0), g_max, out=g_new)
        devices.set_capped(self.spec, g_new, g, v)
        cells.put(self.g0, g_new)
        cells.put(self.event, self._new_event())
        self._programmed(cells, z[k:])
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
        self._programmed(idx, z[idx.size:])
        return int(idx.size)

    def _product_inputs(self, volts, width: int, name: str, full_scale):
        """(vectors (n, width), whether one vector was given, the ADC full scale in A),
        every value checked."""
        x = np.asarray(volts, dtype=np.float64)
        x2 = np.atleast_2d(x)
        if x2.ndim != 2 or x2.shape[1] != width:
            raise ChipInputError(f"{name} must have shape ({width},) or (n, {width}), "
                                 f"got {x.shape}")
        if not np.all(np.isfinite(x2)):
            raise ChipInputError(f"{name} contains NaN or infinity")
        fs = self.spec.adc.mvm_full_scale if full_scale is None else float(full_scale)
        if not math.isfinite(fs) or fs <= 0:
            raise ChipInputError(f"full_scale must be positive, got {full_scale!r}")
        return x2, x.ndim == 1, fs

    def mvm(self, x_volts, full_scale: float | None = None) -> np.ndarray:
        """Column currents (A) for row voltages ``x_volts`` (V), shape (rows,) or (n, rows).

        Includes IR drop on the word and bit lines, read noise summed over each
        column, output noise and the column ADC (``full_scale`` in A overrides
        the spec's range, as a programmable TIA gain would).
        """
        x2, single, fs = self._product_inputs(x_volts, self.shape[0], "x_volts", full_scale)
        temperature = self.temperature
        g = self._observed(slice(None), temperature)
        sigma = self._read_sigma(g, slice(None)).reshape(self.shape)
        g = g.reshape(self.shape)
        currents = crossbar.column_currents(x2, g, self.spec.lines.wire_resistance)
        out = self._sensed(x2, currents, sigma, fs, lambda: self._column_chain(temperature))
        return out[0] if single else out

    def mvm_transposed(self, v_volts, full_scale: float | None = None) -> np.ndarray:
        """Row currents (A) for column voltages ``v_volts`` (V), shape (cols,) or (n, cols).

        The backward product of a transposable array (NeuRRAM's): bit lines driven,
        word lines held at virtual ground and sensed. The same physics as :meth:`mvm`
        with the roles swapped: IR drop on both lines (bit lines driven from row 0,
        word lines sensed after the last column), read noise summed over each row,
        output noise and the ADC at ``full_scale``. Each word line has its own sense
        chain (gain and offset at the die temperature), its coefficients drawn from
        the spec's column-chain law on a stream fixed by the die, so they are the
        same on every call and trimmed (gain 1, offset 0) at the reference temperature.
        """
        v2, single, fs = self._product_inputs(v_volts, self.shape[1], "v_volts", full_scale)
        temperature = self.temperature
        g = self._observed(slice(None), temperature)
        sigma = self._read_sigma(g, slice(None)).reshape(self.shape).T
        g_t = g.reshape(self.shape).T  # (cols, rows): the array seen from the bit lines
        currents = crossbar.column_currents(v2, g_t, self.spec.lines.wire_resistance)
        out = self._sensed(v2, currents, sigma, fs, lambda: self._row_chain(temperature))
        return out[0] if single else out

    def _row_chain(self, temperature_c: float):
        """The word lines' sense chains (gain, offset) at ``temperature_c``: the column
        chain's law, drawn on a stream fixed by the die (from its own draws)."""
        t = self.spec.temperature
        chain_rng = np.random.default_rng(np.frombuffer(
            np.ascontiguousarray(self.column_gain_tc, np.float64).tobytes(), np.uint32))
        z = chain_rng.standard_normal((2, self.shape[0]))
        return devices.column_chain(t.adc_gain_tc + t.adc_gain_tc_sigma * z[0],
                                    t.adc_offset_tc + t.adc_offset_tc_sigma * z[1],
                                    temperature_c, t.reference)

    def _sensed(self, x2, currents, sigma, fs: float, chain) -> np.ndarray:
        """What the sense lines report for ideal ``currents`` of inputs ``x2``: read noise
        summed over each line, output noise, the chain's gain and offset (``chain()``:
        None or (gain, offset) at the die temperature), the ADC at ``fs``; the clock
        advances by the conversions."""
        noise_var = (x2 * x2) @ (sigma.astype(np.float64) ** 2)
        out_sigma = np.sqrt(noise_var + (self.spec.adc.mvm_output_noise * fs) ** 2)
        noisy = currents + out_sigma * normals(self._rng, currents.size).reshape(currents.shape)
        gain_offset = chain()
        if gain_offset is not None:  # the line's TIA/ADC gain and offset at the die temperature
            gain, offset = gain_offset
            noisy = noisy * gain + offset.astype(np.float64) * fs
        out = devices.quantize(noisy.astype(F32), fs, self.spec.adc.mvm_bits, True)
        self.clock.advance(MVM_TIME * x2.shape[0])
        return out.astype(np.float64)

    def advance(self, seconds: float) -> None:
        """Let virtual time pass (relaxation and drift go on)."""
        self.clock.advance(seconds)

    # -- scoring ----------------------------------------------------------
    def truth(self) -> ChipTruth:
        """Hidden ground truth; for tests and benchmarks, never for protocols."""
        shape = self.shape

        def grid(a, dtype=np.float64):  # one fresh copy, in the caller's own hands
            return np.array(a, dtype=dtype).reshape(shape)

        temperature = self.temperature
        everything = slice(None)
        g_ref = self._state(everything)
        g = self._heated(g_ref, everything, temperature)
        chain = self._column_chain(temperature)
        gain, offset = chain if chain is not None else (
            np.ones(shape[1], F32), np.zeros(shape[1], F32))
        g_read = (grid(g) * gain.astype(np.float64)
                  + offset.astype(np.float64) * self.spec.adc.read_full_scale)
        coeff = devices.temperature_coefficient(self.spec, g_ref, self.g_max, self.temp_cell,
                                                self.temp_die_scale)
        self._accumulate()
        if self._accelerates and self._accelerated:
            ages = [self._age_table(law)[self.event] for law in (0, 1)]
        else:  # one clock age for both laws
            ages = [self._age_table(0)[self.event]] * 2
        return ChipTruth(
            g=grid(g),
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
            temperature=temperature,
            g_reference=grid(g_ref),
            g_read=g_read,
            temp_coeff=grid(np.zeros(self.size) if coeff is None else coeff),
            temp_coeff_cell=grid(self.temp_cell),
            temp_coeff_die=self.temp_die_scale,
            column_gain=gain.astype(np.float64),
            column_offset=offset.astype(np.float64),
            column_gain_tc=np.array(self.column_gain_tc, np.float64),
            column_offset_tc=np.array(self.column_offset_tc, np.float64),
            die_offset=self.die_offset,
            relaxation_age=grid(ages[0]),
            drift_age=grid(ages[1]),
            cycles=grid(self.cycles, np.uint16),
            relaxation_deviation=grid(self.relax_dev),
        )
