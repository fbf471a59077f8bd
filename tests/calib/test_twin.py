"""The simulator twin: a chip TOML the simulator loads, reproducing the map's statistics."""

from __future__ import annotations

import numpy as np
import pytest

from calib.twin import TwinError, twin_toml, write_twin
from instruments.datasheet import load_datasheet
from protocols.variability.result import Fault, ReadNoiseLaw, VariabilityMap
from sim_backend import load_chip
from sim_backend.chip import SimChip

US = 1e-6


def measured_like(shape=(64, 64), seed=0, stuck=0.03, high_share=0.3, unformed=0.0,
                  thresholds=(np.nan, np.nan), c2c=np.nan) -> VariabilityMap:
    rng = np.random.default_rng(seed)
    g_min = 0.5 * US * np.exp(0.25 * rng.normal(size=shape))
    g_max = 80 * US * np.exp(0.25 * rng.normal(size=shape))
    set_k = 0.12 * np.exp(0.4 * rng.normal(size=shape))
    reset_k = 0.05 * np.exp(0.4 * rng.normal(size=shape))
    u = rng.random(shape)
    fault = np.zeros(shape, np.uint8)
    fault[u < stuck] = Fault.STUCK_LOW
    fault[u < stuck * high_share] = Fault.STUCK_HIGH
    fault[(u >= stuck) & (u < stuck + unformed)] = Fault.UNFORMED
    value = np.select([fault == Fault.STUCK_HIGH, fault == Fault.STUCK_LOW,
                       fault == Fault.UNFORMED], [50 * US, 0.25 * US, 0.01 * US], np.nan)
    fixed = fault != Fault.HEALTHY
    full = np.full(shape, 1.0)
    return VariabilityMap(
        g_min=np.where(fixed, value, g_min), g_max=np.where(fixed, value, g_max),
        g_min_c2c=c2c * full, g_max_c2c=c2c * full, set_threshold=thresholds[0] * full,
        reset_threshold=thresholds[1] * full, set_rate=1 - np.exp(-set_k),
        reset_rate=1 - np.exp(-reset_k), fault=fault, read_noise=ReadNoiseLaw(3e-8, 0.02),
        usable_window=(1 * US, 40 * US), pulses_per_cell=120.0, transactions=250,
        bench_time_s=1.0, wall_time_s=1.0, cycles=5, extra={"run": "0002_variability"})


def load(tmp_path, vmap, sheet="rram"):
    path = write_twin(vmap, load_datasheet(sheet), tmp_path / "twin.toml")
    return load_chip(path), path


def test_twin_loads_and_reproduces_the_map(tmp_path):
    vmap = measured_like()
    spec, path = load(tmp_path, vmap)
    text = path.read_text()
    assert text.splitlines()[4] == 'base = "rram"' and "0002_variability" in text
    assert spec.shape == (64, 64) and spec.technology == "rram"
    assert spec.window.g_max == pytest.approx(40 * US)  # the datasheet's
    assert spec.read_noise.relative == pytest.approx(0.02, rel=1e-4)
    assert spec.read_noise.absolute == pytest.approx(3e-8, rel=1e-4)
    # the twin's own truth has the map's statistics
    t = SimChip(spec, seed=1).truth()
    moving = ~t.stuck
    assert np.median(t.g_max[moving]) == pytest.approx(80 * US, rel=0.03)
    assert np.median(t.g_min[moving]) == pytest.approx(0.5 * US, rel=0.03)
    assert np.log(t.g_max[moving]).std() == pytest.approx(0.25, rel=0.1)
    assert np.median(t.set_rate[moving]) == pytest.approx(0.12, rel=0.05)
    assert np.median(t.reset_rate[moving]) == pytest.approx(0.05, rel=0.05)
    assert np.log(t.set_rate[moving]).std() == pytest.approx(0.4, rel=0.1)
    assert t.stuck.mean() == pytest.approx(np.mean(vmap.fault != Fault.HEALTHY), abs=0.008)
    assert t.stuck_high[t.stuck].mean() == pytest.approx(0.3, abs=0.1)
    assert np.median(t.g[t.stuck_high]) == pytest.approx(50 * US, rel=0.15)
    assert np.median(t.g[t.stuck & ~t.stuck_high]) == pytest.approx(0.25 * US, rel=0.15)


def test_unformed_share_survives_forming(tmp_path):
    spec, _ = load(tmp_path, measured_like(stuck=0.0, unformed=0.05, seed=2))
    chip = SimChip(spec, seed=3)
    chip.form()  # the datasheet's forming pulse
    assert np.mean(~chip.truth().formed) == pytest.approx(0.05, abs=0.015)


def test_thresholds_and_c2c_are_upper_bounds(tmp_path):
    """Measured thresholds and bound spreads above the nominal ones keep the nominal ones
    (they include visibility and estimation noise); lower ones are taken."""
    high, _ = load(tmp_path, measured_like(thresholds=(1.3, 1.6), c2c=3 * US))
    assert high.response.set_threshold == pytest.approx(0.9)
    assert high.response.reset_threshold == pytest.approx(1.0)
    assert high.response.c2c_absolute == pytest.approx(0.08 * US)
    low, _ = load(tmp_path, measured_like(thresholds=(0.7, 0.8), c2c=0.42 * US))
    assert low.response.set_threshold == pytest.approx(0.7)
    assert low.response.reset_threshold == pytest.approx(0.8)
    assert low.response.c2c_absolute < 0.08 * US


def test_pcm_twin_loads(tmp_path):
    vmap = measured_like(seed=4)
    spec, _ = load(tmp_path, vmap, "pcm")
    assert spec.technology == "pcm" and spec.response.reset_mode == "abrupt"
    assert spec.read_noise.model == "pcm_1f" and not spec.forming.required


def test_a_map_with_no_moving_cell_is_refused(tmp_path):
    vmap = measured_like(stuck=1.0)
    with pytest.raises(TwinError, match="no cell that moves"):
        twin_toml(vmap, load_datasheet("rram"))
