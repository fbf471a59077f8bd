"""Temperature as untidy as silicon, scored against ground truth.

Each effect of docs/simulator.md ("Temperature") has its own test: the per-cell
and per-die spread of the temperature law, the per-column read-out chain in reads
and in MVM, the die lagging the chuck and sitting offset from it, Arrhenius-
accelerated relaxation and drift, and nothing at all at the reference
temperature. Seeds are fixed; each tolerance is stated where it is used.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import sim_backend
from sim_backend import crossbar
from sim_backend.bench import SimBench
from sim_backend.chip import SimChip
from sim_backend.clock import VirtualClock
from sim_backend.spec import ChipSpecError, LinesSection
from sim_backend.thermal import DieThermalPath, ThermalModel
from sim_backend.wafer import SimWafer

US = 1e-6
K_B = 8.617333262e-5  # eV/K
HOT = 85.0
REF = 25.0


def accel(ea: float, celsius: float) -> float:
    """Arrhenius factor of ``celsius`` over the 25 degC reference, computed here."""
    return math.exp(ea / K_B * (1 / (REF + 273.15) - 1 / (celsius + 273.15)))


def spread_cells(chip: SimChip, rounds: int, low: float, high: float, set_only=False):
    """Program every cell to some state across the window (fixed seed)."""
    rng = np.random.default_rng(0)
    for _ in range(rounds):
        sign = 1.0 if set_only else rng.choice([-1.0, 1.0], chip.shape)
        chip.pulse(sign * rng.uniform(low, high, chip.shape), width=5e-6)


def cascade(t_end: float, step_to: float, tau_chuck: float, tau_die: float,
            dt: float = 0.05, start: float = REF, die_start: float | None = None):
    """Chuck and die temperatures after a set point step, by RK4 (independent of the
    simulator's closed form). Returns times and die-lag temperatures."""
    def f(c, d):
        return (step_to - c) / tau_chuck, (c - d) / tau_die

    n = int(round(t_end / dt))
    c, d = start, start if die_start is None else die_start
    times, lags = [0.0], [d]
    for i in range(n):
        k1 = f(c, d)
        k2 = f(c + dt / 2 * k1[0], d + dt / 2 * k1[1])
        k3 = f(c + dt / 2 * k2[0], d + dt / 2 * k2[1])
        k4 = f(c + dt * k3[0], d + dt * k3[1])
        c += dt / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
        d += dt / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
        times.append((i + 1) * dt)
        lags.append(d)
    return np.array(times), np.array(lags)


# -- 1. the cell law: device to device ----------------------------------------------
def test_rram_per_cell_coefficient_spread_measured_from_reads(rram_spec):
    chip = SimChip(rram_spec.with_geometry(128, 128), seed=21)
    chip.form()
    spread_cells(chip, 6, 1.5, 3.5)
    chip.advance(1000.0)  # relaxation is slow by now (ln t): reads at 25 and 85 see one state
    cold = chip.read(adc=False, averages=16)  # an SMU on the cell: no read-out chain
    t_cold = chip.truth()
    chip.temperature = HOT
    hot = chip.read(adc=False, averages=16)
    t = chip.truth()
    ok = ~t.stuck & t.formed & (t_cold.g > 2 * US)
    assert ok.sum() > 10000
    measured = np.log(hot[ok] / cold[ok]) / (HOT - REF)  # dlnG/dT of each cell, 1/K
    law = t.temp_coeff[ok] - t.temp_coeff_cell[ok]  # the die's law in each cell's state
    residual = measured - law
    # The spec's per-cell sigma is 1e-3 /K. Read noise (<= 2 % per read, 16 averaged)
    # adds <= 1.2e-4 /K in quadrature (+0.7 %); 10k cells pin the std to 0.7 %: 5 %.
    assert residual.std() == pytest.approx(rram_spec.temperature.coeff_sigma, rel=0.05)
    assert abs(np.median(residual)) < 1e-4  # the spread is centred on the law
    # ... and it is each cell's own: the measured deviation is the hidden one
    assert np.corrcoef(residual, t.temp_coeff_cell[ok])[0, 1] > 0.99


def test_pcm_per_cell_activation_energy_spread_measured_from_reads(pcm_spec):
    chip = SimChip(pcm_spec.with_geometry(128, 128), seed=22)
    spread_cells(chip, 4, 0.9, 1.4, set_only=True)
    chip.advance(100.0)
    cold = [chip.read(adc=False) for _ in range(2)]
    t_cold = chip.truth()
    chip.temperature = HOT
    hot = [chip.read(adc=False) for _ in range(2)]
    t = chip.truth()
    x = t_cold.g / t_cold.g_max
    ok = ~t.stuck & (x > 0.3)
    assert ok.sum() > 8000
    per_ev = (1 / (HOT + 273.15) - 1 / (REF + 273.15)) / K_B  # ln ratio = -Ea * per_ev
    ln_ratio = np.log((hot[0] + hot[1])[ok] / (cold[0] + cold[1])[ok])
    measured = -ln_ratio / per_ev  # each cell's Ea, eV
    residual = measured - (t.temp_coeff[ok] - t.temp_coeff_cell[ok])
    # PCM read noise is 1/f (~6 % per read), comparable to the spread: take out its
    # variance, measured from the repeat reads (var of a 2-read mean = var(diff) / 4).
    noise = (np.var(np.log(hot[0][ok] / hot[1][ok]))
             + np.var(np.log(cold[0][ok] / cold[1][ok]))) / 4 / per_ev**2
    spread = math.sqrt(residual.var() - noise)
    # spec sigma 0.01 eV; ~9k cells estimate both variances to ~2 %: 10 % on the sigma
    assert spread == pytest.approx(pcm_spec.temperature.ea_sigma, rel=0.10)
    assert abs(np.median(residual)) < 2e-3
    # truth: the hidden deviations have the spec's sigma over every cell
    assert t.temp_coeff_cell.std() == pytest.approx(0.01, rel=0.02)


def test_the_law_at_75c_is_each_cells_own_arrhenius_factor(pcm_chip):
    """test_sim_pcm's per-cell check of the law, with each cell's true Ea."""
    for _ in range(2):
        pcm_chip.pulse(np.full(pcm_chip.shape, 1.2))
    t = pcm_chip.truth()
    h = ~t.stuck
    pcm_chip.temperature = 75.0
    ratio = pcm_chip.truth().g[h] / t.g[h]
    x = np.clip(t.g[h] / t.g_max[h], 0, 1)
    law = t.temp_coeff_die * (0.2 + (0.03 - 0.2) * x)  # the preset's law, scaled per die
    assert np.allclose(t.temp_coeff[h] - t.temp_coeff_cell[h], law, rtol=1e-5, atol=1e-7)
    expected = np.exp(-t.temp_coeff[h] / K_B * (1 / 348.15 - 1 / 298.15))
    assert np.allclose(ratio, expected, rtol=1e-3)
    # hotter conducts more wherever Ea > 0: all but a few near-crystalline cells
    assert np.all((ratio > 1) == (t.temp_coeff[h] > 0))
    assert np.mean(t.temp_coeff[h] > 0) > 0.999


# -- 2. the cell law: die to die -----------------------------------------------------
def test_die_to_die_spread_of_the_law_measured_across_a_wafer(rram_spec):
    spec = rram_spec.with_geometry(16, 16)
    wafer = SimWafer(spec, seed=3)
    t_law = spec.temperature
    measured, hidden = [], []
    for die in [d for d in wafer.dies if not d.dead][:120]:
        chip = wafer.die(die.id)
        chip.form()
        for _ in range(4):  # RESET hard: low-G cells, where the law is coeff_low = +0.6 %/K
            chip.pulse(np.full(chip.shape, -3.5), width=50e-6)
        chip.advance(100.0)
        cold = chip.read(adc=False, averages=8)
        chip.temperature = HOT
        hot = chip.read(adc=False, averages=8)
        t = chip.truth()
        ok = ~t.stuck & t.formed & (t.g_reference > 0.2 * US) & (t.g_reference <= t_law.g_low)
        own = np.log(hot[ok] / cold[ok]) / (HOT - REF) - t.temp_coeff_cell[ok]
        measured.append(np.median(own) / t_law.coeff_low)
        hidden.append(t.temp_coeff_die)
    measured, hidden = np.array(measured), np.array(hidden)
    # Per die, ~250 cells with ~5 % read noise each, 8 averaged: the median scale to
    # ~0.6 %; 3 % is 5 sigma.
    assert np.max(np.abs(measured / hidden - 1)) < 0.03
    # Across 120 dies the lognormal sigma 0.1 is pinned to ~6.5 %: 20 % is 3 sigma.
    assert np.std(np.log(measured)) == pytest.approx(t_law.die_sigma, rel=0.2)
    all_dies = [wafer.die(d.id).temp_die_scale for d in wafer.dies]
    assert np.std(np.log(all_dies)) == pytest.approx(t_law.die_sigma, rel=0.15)


# -- 3. the read-out chain -------------------------------------------------------------
def _fit_columns(read: np.ndarray, g: np.ndarray, ok: np.ndarray):
    """Per-column least squares read = a g + b over the cells in ``ok``, weighted by
    the read noise (1 % of G + 0.02 uS per read)."""
    gains, offsets = [], []
    for j in range(read.shape[1]):  # 64 columns in a test; the simulator loops over none
        gj = g[ok[:, j], j]
        a, b = np.polyfit(gj, read[ok[:, j], j], 1, w=1 / (0.01 * gj + 0.02 * US))
        gains.append(a)
        offsets.append(b)
    return np.array(gains), np.array(offsets)


def test_column_gain_and_offset_are_visible_in_reads(rram_spec):
    chip = SimChip(rram_spec.with_geometry(64, 64), seed=23)
    chip.form()
    spread_cells(chip, 6, 1.5, 3.5)
    chip.advance(100.0)
    full_scale = rram_spec.adc.read_full_scale
    t = chip.truth()
    ok = ~t.stuck & t.formed & (t.g > 1 * US) & (t.g < 100 * US)
    read = chip.read(averages=64)
    gain, offset = _fit_columns(read, chip.truth().g, ok)
    # at the reference the chain is trimmed: gain 1, offset 0
    assert np.all(t.column_gain == 1.0) and np.all(t.column_offset == 0.0)
    assert np.all(t.g_read == t.g)
    # ~60 cells of 1-100 uS, 64 reads averaged (0.13 % noise), fitted weighted: the
    # slope to ~3e-4, the intercept to ~0.01 uS (1 sigma); the bounds are >= 5 sigma
    assert np.max(np.abs(gain - 1)) < 0.003
    assert np.max(np.abs(offset)) < 0.12 * US
    chip.temperature = HOT
    read = chip.read(averages=64)
    t = chip.truth()
    gain, offset = _fit_columns(read, t.g, ok)
    assert np.allclose(t.g_read, t.column_gain * t.g + t.column_offset * full_scale)
    # each column's fitted gain and offset are its hidden ones...
    assert np.max(np.abs(gain - t.column_gain)) < 0.003
    assert np.max(np.abs(offset - t.column_offset * full_scale)) < 0.12 * US
    # ... and they differ from column to column far beyond that (200 ppm/K sigma:
    # 1.2 % at 85 degC; 50 ppm FS/K: 0.38 uS)
    assert np.std(gain) > 0.006 and np.std(offset) > 0.2 * US
    assert np.allclose(t.column_gain, 1 + t.column_gain_tc * (HOT - REF), rtol=1e-6)
    # an external SMU on the cell bypasses the chain
    smu = chip.read(adc=False, averages=64)
    assert np.max(np.abs(_fit_columns(smu, t.g, ok)[0] - 1)) < 0.003


def test_a_column_offset_read_at_a_vanishing_voltage_is_an_overflow_not_infinity(rram_spec):
    chip = SimChip(rram_spec.with_geometry(8, 8), seed=25)
    chip.temperature = HOT
    g = chip.read(voltage=1e-300)  # the offset current over 1e-300 V
    assert np.all(np.isfinite(g.astype(np.float32))) and g.max() == 9.9e37
    assert np.all(np.isfinite(chip.read(voltage=1e-3)))


def test_column_gain_and_offset_are_visible_in_mvm(rram_spec):
    # ideal wires: the IR-drop solver is not under test here, and x @ G is quick
    spec = dataclasses.replace(rram_spec.with_geometry(64, 64), lines=LinesSection(0.0))
    chip = SimChip(spec, seed=24)
    chip.form()
    spread_cells(chip, 6, 1.5, 3.5)
    chip.advance(100.0)
    fs = spec.adc.mvm_full_scale
    n = 400
    x_on = np.full((n, 64), 0.05)  # column currents 150-210 uA: inside the 256 uA range
    x_off = np.zeros((n, 64))

    def measure():
        t = chip.truth()
        ideal = crossbar.column_currents(x_on[:1], t.g, 0.0)[0]
        return t, ideal, chip.mvm(x_on).mean(axis=0), chip.mvm(x_off).mean(axis=0)

    # Per conversion: output noise 1.28 uA, cell noise ~0.2 uA, 2 uA LSB dithered by
    # them; 400 averaged: 0.07 uA. Tolerance 0.35 uA (5 sigma).
    t, ideal, on, off = measure()
    assert np.max(np.abs(on - ideal)) < 0.35e-6 and np.max(np.abs(off)) < 0.35e-6
    chip.temperature = HOT
    t, ideal, on, off = measure()
    assert np.max(np.abs(on - (t.column_gain * ideal + t.column_offset * fs))) < 0.35e-6
    assert np.max(np.abs(off - t.column_offset * fs)) < 0.35e-6
    # visible: the columns depart from the ideal currents by far more than the noise
    assert np.std(on - ideal) > 0.8e-6 and np.std(off) > 0.3e-6
    # the offset is a share of the range, so a programmable TIA range scales it
    off_half = chip.mvm(x_off, full_scale=fs / 2).mean(axis=0)
    assert np.max(np.abs(off_half - t.column_offset * fs / 2)) < 0.35e-6


# -- 4. the die on the chuck -------------------------------------------------------------
def test_die_lags_a_chuck_step_and_settles_at_its_offset():
    bench = SimBench("rram", seed=7, rows=16, cols=16)
    bench.die_id, bench.in_contact = 12, True
    chip = bench.wafer.die(12)
    assert bench.die_temperature() == REF
    k = chip.truth().die_offset
    tau_die = bench.spec.temperature.die_tau
    t0 = bench.clock.now
    bench.chuck.set(HOT)
    times, lags = cascade(1800.0, HOT, bench.chuck.tau_s, tau_die)
    for at in (5.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0):
        bench.clock.advance(t0 + at - bench.clock.now)
        lag = np.interp(at, times, lags)
        expected = REF + (1 - k) * (lag - REF)
        die = bench.die_temperature()
        assert die == pytest.approx(expected, abs=1e-4), at  # RK4 at 50 ms: ~1e-7 K
        assert chip.truth().temperature == die
        assert die < bench.chuck.temperature() - 0.1  # the chuck reading is not the die
    # settled: short of the chuck by the die's share of (chuck - ambient)
    assert bench.chuck.temperature() == pytest.approx(HOT, abs=1e-9)
    assert die == pytest.approx(HOT - k * (HOT - REF), abs=1e-6)
    assert 0.1 < k * (HOT - REF) < 2.0  # a fraction of a degree to ~2 degC at 85 degC


def test_the_die_lag_has_its_own_time_constant():
    clock = VirtualClock()
    chuck = ThermalModel(clock, start_c=REF, tau_s=1e-6)  # a chuck that steps at once
    path = DieThermalPath(clock, chuck, ThermalModel(clock), tau_s=30.0, ambient_c=REF)
    chuck.set(HOT)
    clock.advance(30.0)  # one time constant: 63.2 % of the step
    assert path.die_temperature() == pytest.approx(REF + 60 * (1 - math.exp(-1)), abs=1e-5)
    clock.advance(60.0)
    assert path.die_temperature(0.01) == pytest.approx(
        REF + 0.99 * 60 * (1 - math.exp(-3)), abs=1e-5)
    # a step back while the die is still on its way: continuous, then decays with tau
    before = path.die_temperature()
    chuck.set(REF)
    assert path.die_temperature() == pytest.approx(before, abs=1e-5)
    clock.advance(300.0)
    assert path.die_temperature() == pytest.approx(REF, abs=0.01)


def test_a_chuck_excursion_reaches_the_die_through_its_lag():
    clock = VirtualClock()
    chuck = ThermalModel(clock, start_c=HOT, tau_s=60.0)  # settled at 85 degC
    path = DieThermalPath(clock, chuck, ThermalModel(clock), tau_s=30.0, ambient_c=REF)
    clock.advance(10.0)
    chuck.disturb(5.0)  # a chuck fault: +5 degC at once, relaxing back with 60 s
    assert path.die_temperature() == pytest.approx(HOT, abs=1e-9)  # the die has not moved yet
    times, lags = cascade(300.0, HOT, 60.0, 30.0, start=HOT + 5.0, die_start=HOT)
    seen = []
    for at in (10.0, 30.0, 60.0, 120.0, 300.0):
        clock.advance(10.0 + at - clock.now)
        seen.append(path.die_temperature())
        assert seen[-1] == pytest.approx(np.interp(at, times, lags), abs=1e-6), at
    # a smoothed, delayed excursion: it peaks (at 2 ln 2 tau = 42 s) well below +5 degC
    assert max(seen) < HOT + 2.6 and seen[-1] < HOT + 0.1


def test_every_die_of_the_wafer_has_its_own_offset():
    bench = SimBench("rram", seed=7, rows=8, cols=8)
    shares = np.array([bench.wafer.die(d.id).die_offset for d in bench.wafer.dies])
    at_hot = shares * (HOT - REF)
    assert np.median(at_hot) == pytest.approx(0.3, rel=0.15)
    assert np.std(np.log(shares)) == pytest.approx(0.6, rel=0.15)
    assert 1.0 < at_hot.max() < 2.5 and at_hot.min() < 0.15


def test_the_forcer_sets_the_die_and_the_chuck_path_keeps_going():
    bench = SimBench("rram", seed=7, rows=8, cols=8)
    bench.die_id, bench.in_contact = 5, True
    chip = bench.wafer.die(5)
    bench.chuck.set(HOT)
    bench.forcer.set(60.0)
    bench.forcer_active = True
    bench.clock.advance(1200.0)
    assert bench.die_temperature() == pytest.approx(bench.forcer.temperature(), abs=1e-9)
    bench.forcer_active = False  # head up: back on the chuck, which has been at 85
    k = chip.truth().die_offset
    assert bench.die_temperature() == pytest.approx(HOT - k * (HOT - REF), abs=1e-4)


def test_setting_a_bench_die_to_its_own_temperature_keeps_it_on_the_path():
    bench = SimBench("rram", seed=7, rows=8, cols=8)
    bench.die_id, bench.in_contact = 3, True
    chip = bench.wafer.die(3)
    bench.die_temperature()
    bench.chuck.set(HOT)
    bench.clock.advance(100.0)
    chip.temperature = chip.temperature  # what every transaction does
    assert chip.thermal is bench.die_thermal
    chip.temperature = 40.0  # held by hand: off the path until the next transaction
    assert chip.thermal is None and chip.temperature == 40.0
    bench.clock.advance(10.0)
    assert chip.temperature == 40.0
    assert bench.die_temperature() > 60.0 and chip.thermal is bench.die_thermal


# -- 5. Arrhenius-accelerated relaxation and drift -----------------------------------------
def _twins(spec, seed):
    chips = [SimChip(spec, seed=seed) for _ in range(3)]
    for chip in chips:
        chip.form()
        spread_cells(chip, 3, 1.5, 3.0, set_only=spec.technology == "pcm")
    return chips


def test_rram_relaxation_runs_faster_hot_by_the_arrhenius_factor(rram_spec):
    spec = rram_spec.with_geometry(64, 64)
    ea = spec.temperature.relaxation_ea
    hot, cold, long = _twins(spec, 31)
    hot.temperature = HOT
    hot.advance(3600.0)
    hot.temperature = REF
    cold.advance(3600.0)
    factor = accel(ea, HOT)
    long.advance(3600.0 * factor)
    th, tc, tl = hot.truth(), cold.truth(), long.truth()
    since = th.time - th.t_programmed
    # an hour at 85 degC is AF hours at 25 degC, cell by cell (every cell's last event,
    # the pulses or, for stuck cells, the die's making, came before the hour)
    assert np.allclose(th.relaxation_age, since + 3600.0 * (factor - 1), rtol=1e-9)
    assert np.allclose(tc.relaxation_age, since, rtol=0, atol=0)
    assert np.allclose(th.g_reference, tl.g_reference, rtol=1e-5, atol=1e-12)
    # the mean relaxation went further by -0.089 uS * ln(AF) (= -0.58 uS for 1 eV)
    ok = ~th.stuck & th.formed
    extra = np.mean((th.g_reference - tc.g_reference)[ok])
    assert extra == pytest.approx(spec.relaxation.mean_per_ln * math.log(factor), rel=0.05)


def test_pcm_drift_runs_faster_hot_by_the_arrhenius_factor(pcm_spec):
    spec = pcm_spec.with_geometry(64, 64)
    hot, cold, _ = _twins(spec, 32)
    hot.temperature = HOT
    cold.advance(3600.0)
    hot.advance(3600.0)
    th, tc = hot.truth(), cold.truth()
    factor = accel(spec.temperature.drift_ea, HOT)
    age = (th.time - th.t_programmed) + 3600.0 * (factor - 1)
    assert np.allclose(th.drift_age, age, rtol=1e-9)
    t0 = spec.drift.t0
    ok = ~th.stuck & (th.g_programmed > 1 * US)
    expected = th.g_programmed * (age / t0) ** -th.nu
    assert np.allclose(th.g_reference[ok], expected[ok], rtol=1e-4)
    # the drift exponent is unchanged; the log-time went further by ln(AF)
    slow = np.log(tc.g_reference[ok] / tc.g_programmed[ok])
    fast = np.log(th.g_reference[ok] / th.g_programmed[ok])
    assert np.allclose(fast / slow, np.log(age[ok] / t0) / np.log(tc.drift_age[ok] / t0),
                       rtol=1e-3)


def test_time_at_each_temperature_counts(rram_spec):
    chip = SimChip(rram_spec.with_geometry(16, 16), seed=33)
    chip.form()
    chip.pulse(np.full(chip.shape, 2.5))
    start = chip.truth().relaxation_age.copy()
    ea = rram_spec.temperature.relaxation_ea
    for celsius in (HOT, 50.0, REF, -20.0):
        chip.temperature = celsius
        chip.advance(1800.0)
    chip.temperature = REF
    age = chip.truth().relaxation_age
    expected = 1800.0 * sum(accel(ea, c) for c in (HOT, 50.0, REF, -20.0))
    assert np.allclose(age - start, expected, rtol=1e-9)
    # a later programming event starts its own count
    chip.pulse(np.full(chip.shape, 2.5))
    chip.advance(10.0)
    fresh = chip.truth()
    moved = ~fresh.stuck & fresh.formed
    assert np.allclose(fresh.relaxation_age[moved], 10.0, rtol=1e-9)


def test_on_the_chuck_every_second_counts_at_the_die_temperature():
    """A wait while the chuck ramps ages the die by the integral over its true path,
    also after the probes have left it (the whole wafer sits on the chuck)."""
    bench = SimBench("rram", seed=7, rows=16, cols=16)
    bench.die_id, bench.in_contact = 12, True
    bench.die_temperature()
    chip = bench.wafer.die(12)
    chip.form()
    chip.pulse(np.full(chip.shape, 2.5))
    bench.in_contact = False  # probes up
    t0 = bench.clock.now
    age0 = chip.truth().relaxation_age.copy()
    bench.chuck.set(HOT)
    bench.clock.advance(3600.0)  # one long wait: no query in between
    k = chip.truth().die_offset
    times, lags = cascade(3600.0, HOT, bench.chuck.tau_s, bench.spec.temperature.die_tau)
    die = REF + (1 - k) * (lags - REF)
    ea = bench.spec.temperature.relaxation_ea
    factors = np.exp(ea / K_B * (1 / (REF + 273.15) - 1 / (die + 273.15)))
    expected = np.trapezoid(factors, times)  # 50 ms steps: trapezoid error ~1e-7
    assert bench.clock.now - t0 == pytest.approx(3600.0)
    assert np.allclose(chip.truth().relaxation_age - age0, expected, rtol=1e-5)
    # and far from what the chuck's reading would give
    assert expected < 0.97 * 3600.0 * accel(ea, HOT)


# -- 6. nothing at the reference temperature ----------------------------------------------
@pytest.mark.parametrize("preset", ["rram", "pcm"])
def test_nothing_changes_at_the_reference_temperature(preset):
    """A die on a bench chuck at 25 degC behaves bit for bit as a chip held at 25 degC,
    and every temperature quantity is neutral."""
    bench = SimBench(preset, seed=7, rows=32, cols=32)
    info = bench.wafer.info(12)
    on_chuck = bench.wafer.die(12)
    on_chuck.attach_thermal(bench.die_thermal)
    held = SimChip(bench.spec, seed=(7, 12), modifiers=bench.wafer.modifiers(info), die_id=12)
    rng = np.random.default_rng(5)
    for chip in (on_chuck, held):
        chip.form()
    for _ in range(5):
        volts = rng.choice([-1.0, 1.0], on_chuck.shape) * rng.uniform(0.8, 3.0, on_chuck.shape)
        x = rng.uniform(0, 0.2, (4, 32))
        wait = float(rng.uniform(1, 500))
        outs = []
        for chip in (on_chuck, held):
            chip.pulse(volts)
            outs.append((chip.read(), chip.read(averages=4), chip.mvm(x)))
            chip.advance(wait)
        for a, b in zip(*outs, strict=True):
            assert np.array_equal(a, b)
    assert on_chuck.clock.now == held.clock.now
    for t in (on_chuck.truth(), held.truth()):
        assert t.temperature == REF
        assert np.array_equal(t.g, t.g_reference) and np.array_equal(t.g_read, t.g)
        assert np.all(t.column_gain == 1.0) and np.all(t.column_offset == 0.0)
        since = t.time - t.t_programmed
        assert np.array_equal(t.relaxation_age, since) and np.array_equal(t.drift_age, since)
    a, b = on_chuck.truth(), held.truth()
    assert np.array_equal(a.g, b.g) and np.array_equal(a.temp_coeff_cell, b.temp_coeff_cell)


# -- the spec -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "field, value, pattern",
    [
        ("die_tau", '"0 s"', r"temperature\.die_tau: must be positive"),
        ("die_tau", "30", r"temperature\.die_tau: needs a unit"),
        ("die_offset", "1.5", r"temperature\.die_offset: must be between 0 and 1"),
        ("die_offset", "0.9", r"temperature\.die_offset_sigma: too wide"),
        ("adc_gain_tc", "0.01", r"temperature\.adc_gain_tc: the column gain would move"),
        ("adc_offset_tc_sigma", "0.01", r"temperature\.adc_offset_tc"),
        ("relaxation_ea", '"5 eV"', r"temperature\.relaxation_ea: above 3 eV"),
        ("coeff_sigma", "-0.001", r"temperature\.coeff_sigma: must be >= 0"),
        ("ea_sigma", '"1 eV"', r"temperature\.ea_sigma: above 0.2 eV"),
        ("ambient", '"25 K"', r"temperature\.ambient: expected a temperature"),
    ],
)
def test_bad_temperature_fields_are_named(tmp_path, field, value, pattern):
    path = tmp_path / "chip.toml"
    path.write_text(f'base = "rram"\n[temperature]\n{field} = {value}\n')
    with pytest.raises(ChipSpecError, match=pattern):
        sim_backend.load_chip(path)


def test_presets_state_the_temperature_numbers():
    for name in ("rram", "pcm"):
        t = sim_backend.load_chip(name).temperature
        assert t.ambient == t.reference == 25.0 and t.die_tau == 30.0
        assert 0 < t.die_offset < 0.02 and t.die_sigma == 0.1
    rram, pcm = (sim_backend.load_chip(n).temperature for n in ("rram", "pcm"))
    assert rram.coeff_sigma == 0.001 and rram.relaxation_ea == 1.0 and rram.drift_ea == 0
    assert pcm.ea_sigma == 0.01 and pcm.drift_ea == 1.0 and pcm.relaxation_ea == 0
