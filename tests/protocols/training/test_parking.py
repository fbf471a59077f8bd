"""The die's idle cells are parked at g_min when a training starts, and chip-in-the-loop
holds its last layer at the ex-situ weights while layer 0's outputs are measured (both:
the load on the driven lines, hence their IR drop, is what the network will have)."""

from __future__ import annotations

import numpy as np
import pytest

from protocols.training import begin
from protocols.training.chip_in_loop import begin_chip_in_loop
from protocols.training.layout import idle_cells, parked, training_mapping, with_weights
from tests.protocols.training.fakes import SHEET, US
from tests.protocols.training.test_methods import PARAMS, blobs


def test_parked_aims_only_idle_cells_on_driven_lines_that_read_high_at_g_min():
    m = training_mapping(SHEET, SHEET.shape, (4, 3, 2), (1.0, 1.0))
    m = with_weights(m, [np.full((4, 3), 0.5), np.full((3, 2), -0.5)])
    idle = idle_cells(m)
    rows, cols = m.used.any(axis=1), m.used.any(axis=0)
    assert np.array_equal(idle, ~m.used & (rows[:, None] | cols[None, :]))
    assert (~m.used & ~idle).any()  # on no driven line: left alone
    high = np.where(idle, 25 * US, np.nan)
    t = parked(m, m.targets, high)
    assert np.array_equal(t[m.used], m.targets[m.used])  # the network's targets kept
    assert np.all(t[idle] == m.g_min) and np.isnan(t[~m.used & ~idle]).all()
    low = high.copy()
    low[idle] = np.where(np.arange(idle.sum()) % 2 == 0, 0.1 * US, 25 * US)
    t = parked(m, m.targets, low)  # already under the floor: not written
    assert np.isnan(t[idle][0::2]).all() and np.all(t[idle][1::2] == m.g_min)
    held = np.full(m.array_shape, np.nan)
    held[idle] = np.where(np.arange(idle.sum()) == 0, 3 * US, np.nan)
    t = parked(m, held, high)  # a target of the caller's own is never replaced
    assert t[idle][0] == 3 * US and np.all(t[idle][1:] == m.g_min)


@pytest.mark.parametrize("method", ["mixed", "chip-in-loop"])
def test_a_training_parks_the_formed_dies_idle_cells(bench, method):
    before = bench.array.read()
    data = blobs()
    if method == "chip-in-loop":
        t = begin_chip_in_loop(bench.array, bench.datasheet, data, PARAMS, clock=bench.clock)
    else:
        t = begin(bench.array, bench.datasheet, data, PARAMS, method, clock=bench.clock)
    idle = idle_cells(t.chip.mapping)
    after = bench.array.read()
    assert np.median(before[idle]) > 10 * US  # formed: mid-window
    # write-verify's band is 1 uS; a stuck cell cannot move (a few per cent of the die)
    assert np.mean(after[idle] < SHEET.window.g_min + 1.5 * US) > 0.9


def test_chip_in_loop_holds_its_last_layer_at_the_ex_situ_weights_from_the_start(bench):
    data = blobs()
    t = begin_chip_in_loop(bench.array, bench.datasheet, data, PARAMS, clock=bench.clock)
    m = with_weights(t.chip.mapping, t.w)  # the ex-situ weights, as not yet tuned
    block = m.tiles[1].block
    g, want = block(t.chip.g), block(m.targets)
    assert np.median(np.abs(g - want)) < 1.0 * US
    # layer 1's devices write-verify left off target but responsive stay trainable
    skip = t.skip.reshape(m.array_shape)
    assert block(skip).sum() <= block(np.abs(g - want) > 3 * US).sum() + 2
