"""The pilot batch: how many cells teach the response model the population's law."""

from __future__ import annotations

import numpy as np
import pytest

import protocols
from protocols.write_verify import WriteVerifyError, WriteVerifyParams

US = 1e-6


class _StillArray:
    """Cells that sit still and read exactly; records each pulse batch's cell count."""

    def __init__(self, g):
        self.g, self.shape = g, g.shape
        self.transactions = 0
        self.batches: list[int] = []

    def read(self, mask=None, averages=None):
        self.transactions += 1
        return self.g.copy() if mask is None else np.where(mask, self.g, np.nan)

    def read_cells(self, cells, averages=None):
        self.transactions += 1
        return self.g.ravel()[cells]

    def pulse_cells(self, cells, volts, width=1e-6):
        self.transactions += 1
        self.batches.append(int(np.size(cells)))
        return int(np.size(cells))


def _first_batch(n_up: int, n_down: int, **knobs) -> int:
    """Cells in the first pulse batch of a run on ``n_up`` cells below their targets and
    ``n_down`` above (a fresh response model: that batch is the pilot)."""
    g = np.full(n_up + n_down, 20 * US)
    target = np.where(np.arange(g.size) < n_up, 30 * US, 10 * US)
    array = _StillArray(g.reshape(1, -1))
    protocols.write_verify(array, target.reshape(1, -1), tolerance=1 * US, max_iterations=1,
                           **knobs)
    return array.batches[0]


def test_the_pilot_is_a_share_of_each_polarity_and_at_least_the_minimum():
    # 5 % of 4000 cells going up and of 8000 going down; the minimum for a small array
    assert _first_batch(4000, 8000) == 200 + 400
    assert _first_batch(400, 800) == 64 + 64


def test_a_capped_pilot_takes_at_most_that_many_cells_per_polarity():
    """A million-cell array's 5 % would be 50 000 pilot cells whose first pulses are aimed
    before any law; the law needs a few hundred steps per polarity."""
    assert _first_batch(4000, 8000, pilot_max_cells=150) == 150 + 150
    assert _first_batch(4000, 8000, pilot_max_cells=300) == 200 + 300  # the share is less
    # the minimum still holds: a cap below it is the minimum
    assert _first_batch(4000, 8000, pilot_max_cells=10) == 64 + 64


def test_a_pilot_cap_below_one_cell_is_refused():
    for bad in (0, -5):
        with pytest.raises(WriteVerifyError, match="pilot_max_cells"):
            WriteVerifyParams(pilot_max_cells=bad)
    assert WriteVerifyParams().pilot_max_cells is None  # no cap unless a profile asks
