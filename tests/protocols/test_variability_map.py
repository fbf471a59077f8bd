"""The variability map, scored against the simulator's truth (small dies, fixed seeds).

Tolerances are stated per test; they hold with margin on these seeds and are
looser than the benchmark's targets (benchmarks/bench_map.py), since 32x32 dies
give few cells per statistic.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from calib.wiring.bench import Bench
from calib.wiring.config import default_config
from protocols.profiles import variability_params
from protocols.variability import (
    Fault,
    MapProgress,
    ReadNoiseLaw,
    VariabilityError,
    VariabilityParams,
    map_variability,
)
from protocols.variability.map import _deconvolve, _fit_soft_bound, _jackknife, _power_fit

US = 1e-6


def bench(tmp_path, preset="rram", size=32, die=121, physics: str | None = None, form=True,
          seed=3):
    """A simulated bench on ``die``; ``physics``: TOML lines over the preset's spec."""
    chip = preset
    if physics is not None:
        path = tmp_path / f"{preset}-variant.toml"
        path.write_text(f'base = "{preset}"\n\n{physics}\n')
        chip = str(path)
    config = default_config(preset, seed=seed, rows=size, cols=size)
    config = dataclasses.replace(config, simulation=dataclasses.replace(config.simulation,
                                                                        chip=chip))
    b = Bench(config)
    b.prober.goto(die)
    if form and b.datasheet.forming.required:
        b.array.form()
    return b


def run_map(b, **overrides):
    params = variability_params(b.datasheet, **overrides)
    return map_variability(b.array, clock=b.clock, params=params)


def test_stuck_cells_and_their_kind_match_the_truth(tmp_path):
    with bench(tmp_path, physics="[faults]\nstuck_fraction = 0.08") as b:
        m = run_map(b)
        t = b.simulation.chip.truth()
    assert t.stuck.sum() > 40
    stuck = np.isin(m.fault, [Fault.STUCK_LOW, Fault.STUCK_HIGH, Fault.UNFORMED,
                              Fault.UNRESPONSIVE])
    assert np.array_equal(stuck, t.stuck)  # every stuck cell found, no healthy one blamed
    assert np.array_equal(m.fault == Fault.STUCK_HIGH, t.stuck_high)
    assert np.array_equal(np.isin(m.fault, [Fault.STUCK_LOW, Fault.UNFORMED]),
                          t.stuck & ~t.stuck_high)
    # a stuck cell's window is the one conductance it holds; no threshold, rate 0
    assert np.all(m.g_min[stuck] == m.g_max[stuck])
    assert np.all(np.isnan(m.set_threshold[stuck])) and np.all(m.set_rate[stuck] == 0)


def test_cells_stuck_mid_window_are_unresponsive(tmp_path):
    physics = '[faults]\nstuck_fraction = 0.05\nstuck_high_share = 0.0\nstuck_low = "8 uS"'
    with bench(tmp_path, physics=physics) as b:
        m = run_map(b, cycles=2)
        t = b.simulation.chip.truth()
    level = t.g[t.stuck]
    mid = (level > 4.9 * US) & (level < 10.75 * US)  # g_min + 10 % ... 25 % of the window
    assert mid.sum() > 20
    assert np.all(m.fault[t.stuck][mid] == Fault.UNRESPONSIVE)


def test_cells_left_unformed_are_unformed(tmp_path):
    with bench(tmp_path, size=16, form=False) as b:
        skip = np.zeros((16, 16), bool)
        skip[3, :] = True  # one word line stays pristine
        b.array.form(mask=~skip)
        m = run_map(b, cycles=2)
        t = b.simulation.chip.truth()
    assert np.all(m.fault[skip & ~t.stuck] == Fault.UNFORMED)
    assert np.all(m.fault[~skip & ~t.stuck] != Fault.UNFORMED)


def test_cells_that_cannot_reach_the_window_are_narrow(tmp_path):
    # g_max median 45 uS: about a third of the cells top out below the 40 uS window
    with bench(tmp_path, physics='[bounds]\ng_max_median = "45 uS"') as b:
        m = run_map(b)
        t = b.simulation.chip.truth()
    ok = ~t.stuck
    narrow, healthy = ok & (m.fault == Fault.NARROW), ok & (m.fault == Fault.HEALTHY)
    assert 0.2 < narrow.sum() / ok.sum() < 0.5
    # the class follows the true bound up to the estimate's error (3 %) and the margin
    assert np.mean(t.g_max[narrow] < 40.5 * US) > 0.97
    assert np.mean(t.g_max[healthy] > 38 * US) > 0.97


def test_windows_rates_and_read_noise_against_the_truth(tmp_path):
    with bench(tmp_path, size=32, die=12) as b:
        m = run_map(b)
        t = b.simulation.chip.truth()
    sel = np.isin(m.fault, [Fault.HEALTHY, Fault.NARROW]) & ~t.stuck
    assert np.median(np.abs(m.g_max[sel] / t.g_max[sel] - 1)) < 0.03
    assert np.median(np.abs(m.g_min[sel] - t.g_min[sel])) < 0.15 * US
    for name, truth in (("set", t.set_rate), ("reset", t.reset_rate)):
        rate = -np.log1p(-getattr(m, f"{name}_rate"))  # per unit drive, the truth's units
        ok = sel & np.isfinite(rate)
        assert ok.sum() > 0.9 * sel.sum()
        assert np.corrcoef(rate[ok], truth[ok])[0, 1] > 0.8
        assert abs(np.median(rate[ok] / truth[ok]) - 1) < 0.1
    # the simulator's rram read noise is 1 % of G + 0.02 uS (plus the ADC's LSB)
    assert m.read_noise.b == pytest.approx(0.01, rel=0.15)
    assert 0.01 * US < m.read_noise.a < 0.04 * US


def test_thresholds_are_where_the_cells_start_to_move(tmp_path):
    for preset, nominal in (("rram", (0.9, 1.0)), ("pcm", (0.8, 1.5))):
        with bench(tmp_path, preset=preset, size=16) as b:
            m = run_map(b, cycles=1)
        healthy = m.fault == Fault.HEALTHY
        sth, rth = m.set_threshold[healthy], m.reset_threshold[healthy]
        # the simulator moves nothing below its thresholds; a ramp step is ~0.1 V
        assert np.nanmin(sth) >= nominal[0] and np.nanmin(rth) >= nominal[1]
        assert np.nanmedian(sth) < nominal[0] + 0.45 and np.nanmedian(rth) < nominal[1] + 0.7
        assert np.mean(np.isfinite(sth)) > 0.95


def test_soft_bound_fit_recovers_bound_and_rate():
    rng = np.random.default_rng(5)
    cells, cycles, k = 400, 4, 8
    bound = rng.uniform(40, 120, cells)  # uS
    beta = rng.uniform(0.5, 0.8, cells)
    x = np.empty((cycles, k, cells))
    y = np.empty((cycles, k, cells))
    for c in range(cycles):
        g = rng.uniform(0.2, 1.0, cells)
        for j in range(k):
            step = (1 - beta) * (bound - g)
            new = g + step * (1 + 0.1 * rng.standard_normal(cells)) + 0.05 * rng.standard_normal(
                cells)
            x[c, j], y[c, j] = g, new
            g = new
    b, per_cycle, common = _fit_soft_bound(x, y, np.ones_like(x))
    assert np.median(np.abs(common / bound - 1)) < 0.01
    assert np.median(np.abs(b - beta)) < 0.02
    assert per_cycle.shape == (cycles, cells)


def test_read_noise_law_is_a_line_by_default_and_a_power_law_is_recovered():
    g = np.geomspace(0.5, 25, 12) * US
    assert np.allclose(ReadNoiseLaw(2e-8, 0.01).sigma(g), 2e-8 + 0.01 * g)
    truth = ReadNoiseLaw(1e-8, 3e-5, 0.35)  # 1/f-like: grows as G^0.35
    law = _power_fit(g, truth.sigma(g), np.full(g.size, 100))
    assert law.c == pytest.approx(0.35, abs=0.03)
    assert np.abs(law.sigma(g) / truth.sigma(g) - 1).max() < 0.03


def test_jackknife_measures_the_estimation_noise_and_deconvolution_removes_it():
    rng = np.random.default_rng(11)
    cells, cycles, k = 4000, 5, 8
    bound = np.exp(rng.normal(np.log(80), 0.2, cells))  # uS
    rate = np.exp(rng.normal(np.log(0.35), 0.3, cells))  # share removed per pulse
    x, y = np.empty((cycles, k, cells)), np.empty((cycles, k, cells))
    for c in range(cycles):
        g = np.full(cells, 1.0)
        for j in range(k):
            step = rate * (bound - g)
            x[c, j], y[c, j] = g, g + step * (1 + 0.25 * rng.standard_normal(cells))
            g = y[c, j]
    w = np.ones_like(x, dtype=np.float32)
    beta, _, _ = _fit_soft_bound(x, y, w)
    log_r = np.log(-np.log(beta))
    true_log = np.log(-np.log1p(-rate))
    var_rate, var_bound = _jackknife(x, y, w)
    err = np.var(log_r - true_log)
    assert 0.6 * err < np.nanmean(var_rate) < 1.6 * err  # the cycles tell the noise
    assert np.log(rate).std() < log_r.std()  # the raw estimates are too wide ...
    use = np.isfinite(log_r)
    out, factor = _deconvolve(log_r, np.nanmean(var_rate), use)
    assert factor < 1
    assert out[use].std() == pytest.approx(true_log[use].std(), rel=0.06)  # ... these not
    assert np.corrcoef(out[use], true_log[use])[0, 1] > 0.9
    assert np.all(np.isfinite(var_bound[use]))


def test_a_budget_too_small_is_refused_before_any_pulse(tmp_path):
    with bench(tmp_path, size=16) as b:
        tx, pulses = b.array.transactions, b.simulation.chip.pulses_applied
        with pytest.raises(VariabilityError, match="endurance budget 40 pulses per cell is "
                                                   "too small for 5 cycles"):
            run_map(b, max_pulses_per_cell=40)
        assert b.array.transactions == tx and b.simulation.chip.pulses_applied == pulses


def test_an_unformed_die_is_refused_before_any_pulse(tmp_path):
    with bench(tmp_path, size=16, form=False) as b:
        with pytest.raises(VariabilityError, match="not formed"):
            run_map(b)
        assert b.simulation.chip.pulses_applied == 0


def test_a_dead_die_is_a_clear_error(tmp_path):
    with bench(tmp_path, size=16, die=5, seed=7) as b:  # die 5 of wafer seed 7 is dead
        with pytest.raises(VariabilityError, match="no cell moved.*dead die"):
            run_map(b)


def test_cost_progress_and_final_state(tmp_path):
    seen: list[MapProgress] = []
    with bench(tmp_path, size=32) as b:
        params = variability_params(b.datasheet)
        m = map_variability(b.array, clock=b.clock, params=params, progress=seen.append)
        t = b.simulation.chip.truth()
        quick = map_variability(b.array, clock=b.clock,
                                params=variability_params(b.datasheet, quick=True))
    assert m.transactions <= 300 and m.pulses_per_cell <= 200 and m.bench_time_s > 0
    assert m.extra["pulses_per_cell_max"] <= params.worst_case_pulses()
    phases = {p.phase for p in seen}
    assert {"initial", "pilot-set", "set-train", "reset-ramp", "reset-train", "set-ramp"} <= phases
    assert [p.step for p in seen] == list(range(1, len(seen) + 1))
    # left RESET: every moving cell within a few C2C of its bottom
    moving = np.isin(m.fault, [Fault.HEALTHY, Fault.NARROW])
    assert np.mean(t.g[moving] < t.g_min[moving] + 1.5 * US) > 0.99
    assert quick.cycles == 2 and quick.pulses_per_cell < m.pulses_per_cell
    assert set(m.arrays()) == {"g_min", "g_max", "g_min_c2c", "g_max_c2c", "set_threshold",
                               "reset_threshold", "set_rate", "reset_rate", "fault"}
    assert m.arrays()["fault"].dtype == np.uint8


def test_parameters_per_technology_and_bad_values():
    from instruments.datasheet import load_datasheet

    pcm = variability_params(load_datasheet("pcm"))
    assert pcm.abrupt_reset and not pcm.white_read_noise and pcm.reset_pulses == 3
    assert not pcm.forming_required and pcm.window_g_max_s == pytest.approx(25e-6)
    rram = variability_params(load_datasheet("rram"), quick=True)
    assert rram.cycles == 2 and rram.forming_required and rram.white_read_noise
    assert variability_params(load_datasheet("rram"), quick=True, cycles=3).cycles == 3
    for bad in ({"cycles": 0}, {"train_fraction": 1.5}, {"read_averages": 0},
                {"max_pulses_per_cell": True}):
        with pytest.raises(VariabilityError):
            VariabilityParams(**bad)
