"""The pcm preset follows the IBM statistical model, scored against ground truth."""

from __future__ import annotations

import numpy as np
import pytest

import sim_backend

US = 1e-6


def healthy(t):
    return ~t.stuck


def test_no_forming_and_gmax_spread(pcm_chip):
    assert pcm_chip.form() == 0
    t = pcm_chip.truth()
    assert t.formed.all()
    ok = healthy(t)
    assert np.std(np.log(t.g_max[ok])) == pytest.approx(0.1, abs=0.005)
    assert np.mean(t.g_max[ok] >= 25 * US) >= 0.99
    assert abs(np.count_nonzero(t.stuck) / t.stuck.size - 0.01) < 0.003


def test_gradual_set_and_abrupt_reset(pcm_chip):
    h = healthy(pcm_chip.truth())
    levels = []
    for _ in range(6):
        pcm_chip.pulse(np.full(pcm_chip.shape, 1.2))
        levels.append(np.median(pcm_chip.truth().g_programmed[h]))
    assert all(b > a for a, b in zip(levels, levels[1:], strict=False))  # gradual SET
    assert levels[0] < 0.5 * levels[-1]
    pcm_chip.pulse(np.full(pcm_chip.shape, -2.0), width=100e-9)
    t = pcm_chip.truth()
    # RESET is abrupt: one pulse takes every cell back near its g_min
    assert np.median(t.g_programmed[h]) < 1.0 * US
    assert np.all(t.g_programmed[h] < 3 * US)


def test_programming_noise_polynomial(pcm_chip):
    spec = pcm_chip.spec.response
    h = healthy(pcm_chip.truth())
    for _ in range(3):
        pcm_chip.pulse(np.full(pcm_chip.shape, 1.2))
    before = pcm_chip.truth().g
    pcm_chip.pulse(np.full(pcm_chip.shape, 1.0))
    t = pcm_chip.truth()
    d = ((1.0 - spec.set_threshold) / (spec.set_reference - spec.set_threshold)) ** 2 * 1.0
    mean = t.g_max - (t.g_max - before) * np.exp(-t.set_rate * d * (1e-6 / 100e-9) ** 0.5)
    x = np.clip(mean / t.g_max, 0, 1)
    poly = (0.26348 + 1.9650 * x - 1.1731 * x**2) * US
    c2c = np.abs(mean - before) * spec.c2c_relative + spec.c2c_absolute
    sigma = np.sqrt(poly**2 + c2c**2)
    z = ((t.g_programmed - mean) / sigma)[h & (mean < 0.95 * t.g_max)]
    # normalised residuals are standard normal: std 1 +- 5 % (clipping at g_max excluded)
    assert np.std(z) == pytest.approx(1.0, abs=0.05)
    assert abs(np.mean(z)) < 0.05


def test_drift_power_law(pcm_chip):
    h = healthy(pcm_chip.truth())
    for _ in range(4):
        pcm_chip.pulse(np.full(pcm_chip.shape, 1.2))
    t0 = pcm_chip.truth()
    pcm_chip.advance(10.0)  # before t0 = 20 s: no drift yet
    assert np.allclose(pcm_chip.truth().g, t0.g)
    pcm_chip.advance(20.0 * 1000 - 10.0)
    t1 = pcm_chip.truth()
    nu = -np.log(t1.g[h] / t0.g[h]) / np.log(1000.0)
    assert np.allclose(nu, t1.nu[h], atol=1e-4)  # the law, per cell
    x = np.clip(t0.g_programmed[h] / t0.g_max[h], 1e-6, 1)
    mean = np.clip(-0.0155 * np.log(x) + 0.0244, 0.049, 0.1)
    sd = np.clip(-0.0125 * np.log(x) - 0.0059, 0.008, 0.045)
    z = (t1.nu[h] - mean) / sd
    assert abs(np.mean(z)) < 0.05 and np.std(z) == pytest.approx(1.0, abs=0.06)


def test_read_noise_grows_with_time_since_programming(pcm_chip):
    for _ in range(4):
        pcm_chip.pulse(np.full(pcm_chip.shape, 1.2))
    h = healthy(pcm_chip.truth())

    def rel_sigma():
        g = pcm_chip.truth().g
        reads = np.stack([pcm_chip.read() for _ in range(30)])
        return np.median((reads.std(axis=0) / g)[h])

    early = rel_sigma()
    pcm_chip.advance(1e5)
    late = rel_sigma()
    assert late > early * 1.1
    # sigma/G = Q sqrt(ln((t + t_r)/(2 t_r))); Q ~ 0.0088 x^-0.65 at x ~ 0.5: 1-5 %
    assert 0.01 < late < 0.08


def test_arrhenius_temperature(pcm_chip):
    for _ in range(2):
        pcm_chip.pulse(np.full(pcm_chip.shape, 1.2))
    t = pcm_chip.truth()
    h = healthy(t)
    pcm_chip.temperature = 75.0
    hot = pcm_chip.truth().g
    ratio = hot[h] / t.g[h]
    x = np.clip(t.g[h] / t.g_max[h], 0, 1)
    # the preset's law scaled per die, plus each cell's own spread (docs/simulator.md)
    law = t.temp_coeff_die * (0.2 + (0.03 - 0.2) * x)
    assert np.allclose(t.temp_coeff[h] - t.temp_coeff_cell[h], law, rtol=1e-5, atol=1e-7)
    ea = t.temp_coeff[h]
    expected = np.exp(-ea / 8.617333262e-5 * (1 / 348.15 - 1 / 298.15))
    assert np.allclose(ratio, expected, rtol=1e-3)
    assert np.all((ratio > 1) == (ea > 0))  # thermally activated: hotter conducts more
    assert np.mean(ea > 0) > 0.999
    lowx = x < np.median(x)
    assert ratio[lowx].mean() > ratio[~lowx].mean()


def test_stuck_cells_do_not_move(pcm_chip):
    t0 = pcm_chip.truth()
    pcm_chip.pulse(np.full(pcm_chip.shape, 1.5))
    pcm_chip.pulse(np.full(pcm_chip.shape, -2.0))
    assert np.array_equal(pcm_chip.truth().g_programmed[t0.stuck], t0.g_programmed[t0.stuck])
    assert sim_backend.load_chip("pcm").shape == (64, 64)


def test_averaging_barely_touches_one_over_f_read_noise(pcm_chip):
    """Averaged conversions are one longer integration: 1/f noise falls only as
    sqrt(ln(t / (2 n t_r))), not as 1/sqrt(n)."""
    pcm_chip.pulse(np.full(pcm_chip.shape, 1.2), width=1e-6)
    pcm_chip.advance(1.0)
    truth = pcm_chip.truth()
    h = ~truth.stuck & (truth.g > 5e-6)
    single = np.stack([pcm_chip.read() for _ in range(30)]).std(axis=0)[h]
    averaged = np.stack([pcm_chip.read(averages=16) for _ in range(30)]).std(axis=0)[h]
    ratio = float(np.median(averaged / single))
    expected = np.sqrt(np.log(1.0 / (2 * 16 * 250e-9)) / np.log(1.0 / (2 * 250e-9)))
    assert ratio == pytest.approx(expected, rel=0.1)
    assert ratio > 0.8  # nowhere near the 0.25 of white noise
