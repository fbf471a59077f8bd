"""The rram preset does what its spec says, scored against ground truth.

Tolerances are stated per test; all seeds are fixed.
"""

from __future__ import annotations

import numpy as np
import pytest

import sim_backend
from sim_backend.chip import ChipInputError

US = 1e-6


def healthy(truth):
    return ~truth.stuck & truth.formed


def test_bounds_spread_and_window_reachability(rram_spec):
    chip = sim_backend.SimChip(rram_spec.with_geometry(256, 256), seed=3)
    t = chip.truth()
    ok = ~t.stuck
    # lognormal sigma 0.3 on both bounds, +-0.01 on 65k cells
    assert np.std(np.log(t.g_max[ok])) == pytest.approx(0.3, abs=0.01)
    assert np.std(np.log(t.g_min[ok])) == pytest.approx(0.3, abs=0.01)
    reach = (t.g_min[ok] <= 1 * US) & (t.g_max[ok] >= 40 * US)
    assert reach.mean() >= 0.99
    # ... but the few that cannot reach the top exist (a real failure mode)
    assert np.count_nonzero(t.g_max[ok] < 40 * US) > 50


def test_stuck_fraction_split_and_immobility(rram_spec):
    chip = sim_backend.SimChip(rram_spec.with_geometry(256, 256), seed=4)
    chip.form()
    t0 = chip.truth()
    n = t0.stuck.size
    # 1 % of 65536 = 655, binomial sigma ~25: +-100 is 4 sigma
    assert abs(np.count_nonzero(t0.stuck) - 0.01 * n) < 100
    share_high = np.count_nonzero(t0.stuck_high) / np.count_nonzero(t0.stuck)
    assert share_high == pytest.approx(0.5, abs=0.1)
    assert np.all(t0.g[t0.stuck_high] > 10 * US)
    assert np.all(t0.g[t0.stuck & ~t0.stuck_high] < 1 * US)
    for amp in (4.0, -4.0, 3.0):
        chip.pulse(np.full(chip.shape, amp))
    t1 = chip.truth()
    assert np.array_equal(t1.g[t0.stuck], t0.g[t0.stuck])
    assert np.mean(np.abs(t1.g[~t0.stuck] - t0.g[~t0.stuck]) > 0.5 * US) > 0.9


def test_fresh_cells_need_forming(rram_spec):
    chip = sim_backend.SimChip(rram_spec, seed=5)
    before = chip.truth()
    # fresh cells are pristine; stuck-high cells are high from fabrication on
    assert not before.formed.any() and np.all(before.g[~before.stuck] < 0.1 * US)
    assert chip.pulse(np.full(chip.shape, 4.0)) == 0  # unformed cells do not switch
    assert np.array_equal(chip.truth().g_programmed, before.g_programmed)
    assert chip.form(voltage=2.0) == 0  # below every cell's forming voltage
    formed = chip.form()
    assert formed == np.count_nonzero(~before.stuck)
    after = chip.truth()
    assert after.formed[~after.stuck].all()
    assert np.median(after.g[~after.stuck]) == pytest.approx(25 * US, rel=0.15)
    assert chip.pulse(np.full(chip.shape, -3.0)) == formed


def test_subthreshold_pulses_do_nothing(rram_chip):
    before = rram_chip.truth()
    v = np.where(np.arange(rram_chip.size).reshape(rram_chip.shape) % 2, 0.85, -0.95)
    assert rram_chip.pulse(v) == 0
    after = rram_chip.truth()
    assert np.array_equal(after.g_programmed, before.g_programmed)
    assert np.array_equal(after.t_programmed, before.t_programmed)


def test_saturation_at_each_cells_bounds(rram_chip):
    for _ in range(40):
        rram_chip.pulse(np.full(rram_chip.shape, 4.0), width=10e-6)
    t = rram_chip.truth()
    h = healthy(t)
    # exp-saturating law: after 40 strong SETs every cell sits at its own g_max
    # (within c2c noise and 1 s relaxation: 4 % median, never above g_max at programming)
    assert np.median(np.abs(t.g_programmed[h] / t.g_max[h] - 1)) < 0.04
    assert np.all(t.g_programmed[h] <= t.g_max[h] * (1 + 1e-6))
    for _ in range(40):
        rram_chip.pulse(np.full(rram_chip.shape, -4.0), width=100e-6)
    t = rram_chip.truth()
    assert np.median(np.abs(t.g_programmed[h] - t.g_min[h])) < 0.3 * US


def _steps(chip, amp, width=1e-6):
    """Truth-scored step of one pulse from the current (relaxed) state."""
    before = chip.truth().g
    chip.pulse(np.full(chip.shape, amp), width=width)
    return chip.truth().g_programmed - before, before


def _reset_to(chip, level_us):
    chip.pulse(np.full(chip.shape, -4.0), width=100e-6)
    chip.pulse(np.full(chip.shape, -4.0), width=100e-6)


def test_set_reset_asymmetry(rram_chip):
    spec = rram_chip.spec.response
    h = healthy(rram_chip.truth())
    # from mid-window, equal 2.0 V / 1 us pulses: SET and RESET rates differ
    rram_chip.pulse(np.full(rram_chip.shape, 4.0))
    set_step, g = _steps(rram_chip, 2.0)
    reset_step, g2 = _steps(rram_chip, -2.0)
    t = rram_chip.truth()
    d_set = ((2.0 - spec.set_threshold) / (spec.set_reference - spec.set_threshold)) ** 2
    d_reset = ((2.0 - spec.reset_threshold) / (spec.reset_reference - spec.reset_threshold)) ** 2
    exp_set = (t.g_max - g) * (1 - np.exp(-t.set_rate * d_set))
    # ... where the 1T1R SET compliance lets the cell grow that far (set_compliance)
    cap = spec.set_compliance / spec.set_threshold
    exp_set = np.minimum(exp_set, np.maximum(cap - g, 0.0))
    exp_reset = -(g2 - t.g_min) * (1 - np.exp(-t.reset_rate * d_reset))
    # law's means, within 3 % over ~16k cells
    assert set_step[h].mean() == pytest.approx(exp_set[h].mean(), rel=0.03)
    assert reset_step[h].mean() == pytest.approx(exp_reset[h].mean(), rel=0.03)
    # relative to the distance to the bound, RESET at 2 V is weaker than SET at 2 V
    frac_set = np.median(set_step[h] / (t.g_max[h] - g[h]))
    frac_reset = np.median(-reset_step[h] / (g2[h] - t.g_min[h]))
    assert frac_set > 1.5 * frac_reset


def test_cycle_to_cycle_noise(rram_chip):
    spec = rram_chip.spec.response
    h = healthy(rram_chip.truth())
    _reset_to(rram_chip, 1)
    # a large step: noise is ~30 % of the step (20-40 % in the reference)
    step, g = _steps(rram_chip, 2.5)
    t = rram_chip.truth()
    d = ((2.5 - spec.set_threshold) / (spec.set_reference - spec.set_threshold)) ** 2
    mean = (t.g_max - g) * (1 - np.exp(-t.set_rate * d))
    resid = (step - mean)[h]
    assert np.std(resid) / np.mean(mean[h]) == pytest.approx(0.3, abs=0.06)
    # a tiny step: noise larger than the step itself (1-5x in the reference)
    tiny, g = _steps(rram_chip, 1.0)
    t = rram_chip.truth()
    d = ((1.0 - spec.set_threshold) / (spec.set_reference - spec.set_threshold)) ** 2
    mean = (t.g_max - g) * (1 - np.exp(-t.set_rate * d))
    ratio = np.std((tiny - mean)[h]) / np.mean(mean[h])
    assert 1.0 < ratio < 5.0


def test_step_depends_on_amplitude_and_width(rram_chip):
    h = healthy(rram_chip.truth())
    means = []
    for amp, width in ((1.3, 1e-6), (1.8, 1e-6), (1.8, 4e-6)):
        _reset_to(rram_chip, 1)
        step, _ = _steps(rram_chip, amp, width)
        means.append(step[h].mean())
    assert 0 < means[0] < means[1] < means[2]


def test_read_noise_is_one_percent(rram_chip):
    rram_chip.pulse(np.full(rram_chip.shape, 4.0))
    truth = rram_chip.truth().g
    reads = np.stack([rram_chip.read() for _ in range(40)])
    h = healthy(rram_chip.truth()) & (truth > 20 * US)
    rel = (reads.std(axis=0) / truth)[h]
    # sigma = 1 % G + 0.02 uS floor, through a 12-bit ADC: ~1.05 % at these levels
    assert np.median(rel) == pytest.approx(0.0105, rel=0.15)
    # reads are unbiased: mean of 40 reads within 0.5 % of the truth
    assert np.median(np.abs(reads.mean(axis=0) / truth - 1)[h]) < 0.005


def test_averaged_reads_cut_the_noise_by_root_n(rram_chip):
    rram_chip.pulse(np.full(rram_chip.shape, 4.0))
    truth = rram_chip.truth()
    h = healthy(truth) & (truth.g > 20 * US) & (truth.g < 100 * US)  # below ADC full scale
    single = np.stack([rram_chip.read() for _ in range(30)]).std(axis=0)[h]
    t0 = rram_chip.clock.now
    averaged = np.stack([rram_chip.read(averages=16) for _ in range(30)]).std(axis=0)[h]
    elapsed = rram_chip.clock.now - t0
    assert np.median(averaged / single) == pytest.approx(0.25, rel=0.15)
    # sixteen conversions per row take sixteen times as long
    assert elapsed == pytest.approx(30 * 16 * 1e-6 * rram_chip.shape[0], rel=1e-6)
    for bad in (0, 2.5, 5000):
        with pytest.raises(ChipInputError, match="averages"):
            rram_chip.read(averages=bad)


def test_read_subset_and_adc(rram_chip):
    mask = np.zeros(rram_chip.shape, bool)
    mask[3, :] = True
    mask[:, 7] = True
    g = rram_chip.read(mask)
    assert np.isnan(g[~mask]).all() and np.isfinite(g[mask]).all()
    lsb = 128 * US / 4095
    full = rram_chip.read()
    assert np.allclose(np.round(full / lsb) * lsb, full, atol=1e-12)
    with pytest.raises(ChipInputError, match="mask"):
        rram_chip.read(np.ones((3, 3), bool))


def test_relaxation_law_over_virtual_time(rram_chip):
    rram_chip.pulse(np.full(rram_chip.shape, -1.6))
    t0 = rram_chip.truth()
    h = healthy(t0)
    rram_chip.advance(3600.0)
    t1 = rram_chip.truth()
    dev = (t1.g - t1.g_programmed)[h] / US
    # reference: 1 h -> mean -0.73 uS, sigma 0.76 uS (0.412 + 0.042 ln 3600)
    assert dev.mean() == pytest.approx(-0.089 * np.log(3600), abs=0.03)
    assert dev.std() == pytest.approx(0.412 + 0.042 * np.log(3600), rel=0.05)
    # and at 1 s: no mean shift, sigma 0.412
    dev0 = (t0.g - t0.g_programmed)[h] / US
    assert dev0.mean() == pytest.approx(0.0, abs=0.02)
    assert dev0.std() == pytest.approx(0.412, rel=0.05)


def test_temperature_acts_on_low_and_high_states(rram_chip):
    h = healthy(rram_chip.truth())
    for _ in range(3):
        rram_chip.pulse(np.full(rram_chip.shape, -4.0), width=100e-6)
    low = rram_chip.truth().g
    rram_chip.temperature = 85.0
    hot_low = rram_chip.truth().g
    rram_chip.temperature = 25.0
    for _ in range(10):
        rram_chip.pulse(np.full(rram_chip.shape, 4.0), width=10e-6)
    high = rram_chip.truth().g
    rram_chip.temperature = 85.0
    hot_high = rram_chip.truth().g
    # low-G cells conduct more when hot (~ +0.6 %/K near 1 uS), high-G cells less (-0.2 %/K)
    sel_low = h & (low > 0.5 * US) & (low < 1.0 * US)
    assert np.median(hot_low[sel_low] / low[sel_low]) == pytest.approx(np.exp(0.006 * 60), rel=0.05)
    sel_high = h & (high > 40 * US)
    assert np.median(hot_high[sel_high] / high[sel_high]) == pytest.approx(np.exp(-0.002 * 60),
                                                                           rel=0.01)
    # reads follow the temperature too
    assert np.median(rram_chip.read()[sel_high] / high[sel_high]) < 0.9


def test_bad_inputs_are_clear_errors(rram_chip):
    with pytest.raises(ChipInputError, match="shape"):
        rram_chip.pulse(np.zeros((3, 3)))
    with pytest.raises(ChipInputError, match="NaN"):
        rram_chip.pulse(np.full(rram_chip.shape, np.nan))
    with pytest.raises(ChipInputError, match="width"):
        rram_chip.pulse(np.zeros(rram_chip.shape), width=-1)
    with pytest.raises(ChipInputError, match="x_volts"):
        rram_chip.mvm(np.zeros(5))
    with pytest.raises(ChipInputError, match="temperature"):
        rram_chip.temperature = float("nan")
    with pytest.raises(ValueError):
        rram_chip.advance(-1.0)


def test_mvm_matches_ideal_without_wires_and_loses_current_with_them(rram_spec):
    import dataclasses

    spec = rram_spec.with_geometry(64, 64)
    ideal_spec = dataclasses.replace(spec, lines=dataclasses.replace(spec.lines,
                                                                     wire_resistance=0.0))
    x = np.random.default_rng(0).uniform(0, 0.2, size=(8, 64))
    results = []
    for s in (ideal_spec, spec):
        chip = sim_backend.SimChip(s, seed=21)
        chip.form()
        g = chip.truth().g
        i = chip.mvm(x, full_scale=2e-3)
        results.append((i, x @ g))
    i0, ref0 = results[0]
    # no wires: within ADC resolution (2 mA * 2 / 255) and output noise
    assert np.max(np.abs(i0 - ref0)) < 3 * (4e-3 / 255 + 0.005 * 2e-3)
    i1, ref1 = results[1]
    loss = 1 - i1.sum() / ref1.sum()
    assert 0.001 < loss < 0.2  # IR drop takes a visible but bounded share
    single = sim_backend.SimChip(spec, seed=21)
    single.form()
    assert single.mvm(x[0]).shape == (64,)


def test_ir_drop_grows_with_array_size(rram_spec):
    losses = []
    for n in (32, 128):
        chip = sim_backend.SimChip(rram_spec.with_geometry(n, n), seed=2)
        chip.form()
        x = np.full(n, 0.1)
        ideal = x @ chip.truth().g
        got = chip.mvm(x, full_scale=float(ideal.max() * 1.2))
        losses.append(1 - got.sum() / ideal.sum())
    assert losses[1] > 3 * losses[0]


def test_virtual_clock_advances_with_operations(rram_chip):
    t = rram_chip.clock.now
    rram_chip.read()
    t1 = rram_chip.clock.now
    assert t1 > t
    rram_chip.pulse(np.full(rram_chip.shape, 1.5), width=2e-6)
    assert rram_chip.clock.now - t1 == pytest.approx(128 * 2e-6)
    rram_chip.advance(10.0)
    assert rram_chip.clock.now - t1 == pytest.approx(10.0 + 128 * 2e-6)
