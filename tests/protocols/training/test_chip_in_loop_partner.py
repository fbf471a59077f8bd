"""Chip-in-the-loop with a failed device's partner used alone (``faulty_pairs`` partner):
the bounds such a pair can realise, the targets it is written to, and a run on the
simulated bench (a tiny blob set, 8-6-3)."""

from __future__ import annotations

import numpy as np
import pytest

from protocols.training import TrainParams
from protocols.training.chip_in_loop import (
    ChipInLoop,
    begin_chip_in_loop,
    layer_targets,
    realisable,
)
from protocols.training.layout import (
    floor_of,
    lone_level,
    tile_cells,
    training_mapping,
    with_weights,
)
from tests.protocols.training.fakes import SHEET, US
from tests.protocols.training.test_methods import PARAMS, blobs

PARTNER = TrainParams(epochs=2, lr=0.5, batch=5, hidden=6, float_epochs=30,
                      faulty_pairs="partner")


def mapping_and_weights():
    mapping = training_mapping(SHEET, SHEET.shape, (4, 3, 2), (1.0, 2.0))
    rng = np.random.default_rng(1)
    weights = [rng.uniform(-0.8, 0.8, (4, 3)), rng.uniform(-1.6, 1.6, (3, 2))]
    return with_weights(mapping, weights), weights


def test_realisable_gives_a_lone_pair_both_signs_around_the_lone_level():
    m, _ = mapping_and_weights()
    plus, minus = tile_cells(m, 1)
    skip = np.zeros(int(np.prod(m.array_shape)), bool)
    skip[[plus[0, 0], minus[1, 1], plus[2, 0], minus[2, 0]]] = True
    w_read = np.full((3, 2), 0.25)
    tile = m.tiles[1]
    level = lone_level(m.g_min, m.g_max)
    up, down = (m.g_max - level) / tile.scale, (level - m.g_min) / tile.scale
    low, high = realisable(m, 1, skip, w_read)  # floor: one sign only
    assert (low[0, 0], high[0, 0]) == (-tile.w_clip, 0.0)
    assert (low[1, 1], high[1, 1]) == (0.0, tile.w_clip)
    low, high = realisable(m, 1, skip, w_read, lone=True)
    assert low[0, 0] == pytest.approx(-up) and high[0, 0] == pytest.approx(down)  # G+ failed
    assert low[1, 1] == pytest.approx(-down) and high[1, 1] == pytest.approx(up)  # G- failed
    assert low[2, 0] == high[2, 0] == 0.25  # both failed: as read
    assert (low[0, 1], high[0, 1]) == (-tile.w_clip, tile.w_clip)  # both work
    assert 0 < up < tile.w_clip and 0 < down


def test_layer_targets_put_a_lone_device_around_the_lone_level_and_only_layer_k():
    m, weights = mapping_and_weights()
    plus, minus = tile_cells(m, 1)
    skip = np.zeros(int(np.prod(m.array_shape)), bool)
    skip[[plus[0, 0], minus[1, 1]]] = True
    level, s = lone_level(m.g_min, m.g_max), m.tiles[1].scale
    floor = floor_of(m.g_min, m.g_max)
    t = layer_targets(m, 1, weights, skip, lone=True).ravel()
    w = weights[1]
    assert np.isnan(t[plus[0, 0]]) and np.isnan(t[minus[1, 1]])  # failed: never written
    assert t[minus[0, 0]] == pytest.approx(np.clip(level - s * w[0, 0], m.g_min, m.g_max))
    assert t[plus[1, 1]] == pytest.approx(np.clip(level + s * w[1, 1], m.g_min, m.g_max))
    # a pair with both devices working: one device at the floor, the other above it
    assert t[plus[0, 1]] == pytest.approx(floor + s * max(w[0, 1], 0.0))
    assert t[minus[0, 1]] == pytest.approx(floor + s * max(-w[0, 1], 0.0))
    p0, m0 = tile_cells(m, 0)
    assert np.isnan(t[p0]).all() and np.isnan(t[m0]).all()
    floor_only = layer_targets(m, 1, weights, skip, lone=False).ravel()
    assert floor_only[minus[0, 0]] == pytest.approx(floor + s * max(-w[0, 0], 0.0))


def test_partner_writes_a_failed_devices_partner_alone_and_keeps_both_signs(bench):
    data = blobs()
    t = begin_chip_in_loop(bench.array, bench.datasheet, data, PARTNER, clock=bench.clock)
    assert t.lone
    plus, minus = tile_cells(t.chip.mapping, 1)
    t.run_epoch()
    dead_p, dead_m = int(plus[0, 0]), int(minus[1, 1])
    t.skip[[dead_p, dead_m]] = True
    before = bench.array.read_cells(np.array([dead_p, dead_m]))
    t.run_epoch()  # programs layer 1, then again around the failed devices
    after = bench.array.read_cells(np.array([dead_p, dead_m]))
    assert np.allclose(after, before, atol=1.0 * US)  # never written
    m = t.chip.mapping
    level = lone_level(m.g_min, m.g_max)
    assert t.chip.references[dead_p] == t.chip.references[dead_m] == level
    low, high = realisable(m, 1, t.skip, np.zeros((6, 3)), lone=True)
    assert low[0, 0] < 0 < high[0, 0] and low[1, 1] < 0 < high[1, 1]
    # the working devices hold the tuned weights around the level (write-verify's band)
    s = m.tiles[1].scale
    g = bench.array.read_cells(np.array([int(minus[0, 0]), int(plus[1, 1])]))
    wanted = np.clip([level - s * t.w[1][0, 0], level + s * t.w[1][1, 1]], m.g_min, m.g_max)
    if not t.skip[[int(minus[0, 0]), int(plus[1, 1])]].any():
        assert np.allclose(g, wanted, atol=2.0 * US)
    w_read = t.chip.weights()[1]
    assert abs(w_read[0, 0] - t.w[1][0, 0]) < 3.0 * US / s
    assert t.records[-1].test_accuracy >= 0.5
    arrays, meta = t.to_arrays()  # the checkpoint keeps the mode
    back = ChipInLoop.from_arrays(bench.array, bench.datasheet, data, PARTNER, arrays, meta,
                                  clock=bench.clock)
    assert back.lone and back.chip.references[dead_p] == level


def test_floor_is_the_mode_the_checkpoint_names(bench):
    """A checkpoint of a floor run resumes as floor even if the default is partner."""
    data = blobs()
    t = begin_chip_in_loop(bench.array, bench.datasheet, data,
                           TrainParams(**{**PARAMS.__dict__, "faulty_pairs": "floor"}),
                           clock=bench.clock)
    assert not t.lone
    arrays, meta = t.to_arrays()
    back = ChipInLoop.from_arrays(bench.array, bench.datasheet, data, PARTNER, arrays, meta,
                                  clock=bench.clock)
    assert not back.lone
