"""Fault-aware placement: round trip, spare rows and columns, the scale, serialisation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from protocols.placement import Placement, place_weights, weights_from_placement
from protocols.variability.result import Fault, ReadNoiseLaw, VariabilityMap
from protocols.weights import WeightMappingError, map_weights, weights_from_conductances

US = 1e-6
WINDOW = (1 * US, 40 * US)


def synthetic_map(shape=(64, 64), stuck=0.05, seed=0, g_max_median=90 * US) -> VariabilityMap:
    """A die like the rram preset: lognormal bounds, a share of stuck cells at their values."""
    rng = np.random.default_rng(seed)
    g_min = 0.45 * US * np.exp(0.3 * rng.normal(size=shape))
    g_max = g_max_median * np.exp(0.3 * rng.normal(size=shape))
    is_stuck = rng.random(shape) < stuck
    high = is_stuck & (rng.random(shape) < 0.5)
    value = np.where(high, 60 * US, 0.3 * US) * np.exp(0.3 * rng.normal(size=shape))
    fault = np.full(shape, int(Fault.HEALTHY), np.uint8)
    fault[(g_max < WINDOW[1]) & ~is_stuck] = Fault.NARROW
    fault[is_stuck] = Fault.STUCK_LOW
    fault[high] = Fault.STUCK_HIGH
    return make_map(np.where(is_stuck, value, g_min), np.where(is_stuck, value, g_max), fault)


def make_map(g_min, g_max, fault) -> VariabilityMap:
    nan = np.full(fault.shape, np.nan)
    return VariabilityMap(g_min=g_min, g_max=g_max, g_min_c2c=nan, g_max_c2c=nan,
                          set_threshold=nan, reset_threshold=nan, set_rate=nan, reset_rate=nan,
                          fault=fault, read_noise=ReadNoiseLaw(2e-8, 0.01), usable_window=WINDOW,
                          pulses_per_cell=0.0, transactions=0, bench_time_s=0.0,
                          wall_time_s=0.0, cycles=0)


def healthy_map(shape=(64, 64)) -> VariabilityMap:
    return make_map(np.full(shape, 0.4 * US), np.full(shape, 90 * US),
                    np.zeros(shape, np.uint8))


def chip_holds(targets, vmap) -> np.ndarray:
    """What ideal programming leaves: targets where a cell moves, stuck cells as they are."""
    fixed = ~np.isin(vmap.fault, [Fault.HEALTHY, Fault.NARROW])
    g = np.clip(targets, vmap.g_min, vmap.g_max)
    return np.where(fixed, vmap.g_min, np.nan_to_num(g, nan=0.0))


def test_round_trip_is_exact_on_ideal_conductances():
    w = np.random.default_rng(1).normal(size=(48, 24))
    targets, p = place_weights(w, healthy_map(), window=WINDOW)
    assert targets.shape == (64, 64)
    assert np.isfinite(targets).sum() == 48 * 48  # the rest: NaN, left alone
    assert np.nanmin(targets) >= WINDOW[0] - 1e-15 and np.nanmax(targets) <= WINDOW[1] + 1e-15
    assert np.allclose(weights_from_placement(targets, p), w, rtol=0, atol=1e-12)
    assert p.expected_error < 1e-12 and p.scale == pytest.approx(39 * US / np.abs(w).max())


def test_round_trip_with_faults_matches_the_expected_error():
    vmap = synthetic_map(seed=2)
    w = np.random.default_rng(3).normal(size=(48, 24))
    targets, p = place_weights(w, vmap, window=WINDOW)
    w_eff = weights_from_placement(chip_holds(targets, vmap), p)
    err = np.linalg.norm(w_eff - w) / np.linalg.norm(w)
    assert err == pytest.approx(p.expected_error, abs=1e-9)
    assert p.expected_error <= 0.5 * p.expected_error_naive
    # the naive placement's expected error is what today's mapping would leave
    t_naive, m = map_weights(w, *WINDOW)
    g = chip_holds(np.pad(t_naive, ((0, 16), (0, 16)), constant_values=np.nan), vmap)
    naive_err = np.linalg.norm(weights_from_conductances(g, m) - w) / np.linalg.norm(w)
    assert naive_err == pytest.approx(p.expected_error_naive, rel=1e-9)


def test_spare_rows_and_columns_avoid_stuck_cells():
    fault = np.zeros((16, 16), np.uint8)
    g_min, g_max = np.full((16, 16), 0.4 * US), np.full((16, 16), 90 * US)
    fault[2, :] = Fault.STUCK_HIGH  # a whole bad word line
    fault[:, 5] = Fault.STUCK_HIGH  # and a bad bit line
    g_min[fault > 0] = g_max[fault > 0] = 60 * US
    vmap = make_map(g_min, g_max, fault)
    w = np.random.default_rng(4).normal(size=(12, 6))  # 12 x 12 cells of 16 x 16
    targets, p = place_weights(w, vmap, window=WINDOW)
    assert 2 not in p.rows and 5 not in p.col_map.ravel()
    assert p.faulty_cells_used == 0 and p.expected_error < 1e-12
    assert np.isnan(targets[2]).all() and np.isnan(targets[:, 5]).all()
    _, naive = place_weights(w, vmap, method="naive", window=WINDOW)
    assert naive.expected_error > 0.3 and naive.rows == tuple(range(12))


def test_stuck_low_device_is_made_the_idle_one():
    """Without spares, a stuck-low device goes where its pair's weight is negative."""
    fault = np.zeros((2, 2), np.uint8)
    fault[0, 0] = Fault.STUCK_LOW
    g_min, g_max = np.full((2, 2), 0.4 * US), np.full((2, 2), 90 * US)
    g_min[0, 0] = g_max[0, 0] = 0.3 * US
    w = np.array([[1.0], [-0.5]])
    targets, p = place_weights(w, make_map(g_min, g_max, fault), window=WINDOW)
    r = p.rows.index(0)
    stuck_is_positive_side = p.cols[0][0] == 0
    assert (w[r, 0] < 0) == stuck_is_positive_side  # the stuck device is the idle one
    assert p.expected_error < 0.02


def test_scale_is_not_set_by_narrow_cells():
    vmap = synthetic_map(stuck=0.0, seed=5, g_max_median=60 * US)
    g_max = vmap.g_max.copy()
    fault = vmap.fault.copy()
    narrow = np.zeros(fault.shape, bool)
    narrow[::7, ::5] = True  # 2 % of the cells reach only 20 uS
    g_max[narrow] = 20 * US
    fault[narrow] = Fault.NARROW
    vmap = make_map(vmap.g_min, g_max, fault)
    w = np.random.default_rng(6).normal(size=(48, 24))
    _, p = place_weights(w, vmap, window=None)
    healthy = vmap.g_max[fault == Fault.HEALTHY]
    assert p.g_max > 30 * US  # not 20 uS
    assert p.g_max <= np.quantile(healthy, 0.02)
    # within a datasheet window, the window's top holds when the used cells reach it
    _, q = place_weights(w, synthetic_map(stuck=0.0, seed=5), window=WINDOW)
    assert q.g_max == pytest.approx(WINDOW[1])


def test_placement_serialises_to_json_and_arrays():
    w = np.random.default_rng(7).normal(size=(10, 4))
    _, p = place_weights(w, synthetic_map((16, 16), seed=8), window=WINDOW)
    again = Placement.from_dict(json.loads(p.to_json()))
    assert again == p
    arrays = p.to_arrays()
    assert arrays["row_map"].shape == (10,) and arrays["col_map"].shape == (4, 2)
    assert Placement.from_arrays(arrays, json.loads(json.dumps(p.meta()))) == p


def test_bad_inputs_are_one_line_errors():
    vmap = healthy_map((8, 8))
    with pytest.raises(WeightMappingError, match="need 5 x 10 cells"):
        place_weights(np.ones((5, 5)), vmap, window=WINDOW)
    with pytest.raises(WeightMappingError, match="NaN"):
        place_weights(np.full((2, 2), np.nan), vmap, window=WINDOW)
    with pytest.raises(WeightMappingError, match="placement 'best'"):
        place_weights(np.ones((2, 2)), vmap, method="best", window=WINDOW)
    _, p = place_weights(np.ones((2, 2)), vmap, window=WINDOW)
    with pytest.raises(WeightMappingError, match="not the placed array"):
        weights_from_placement(np.zeros((4, 4)), p)
