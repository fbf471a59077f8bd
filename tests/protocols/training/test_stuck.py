"""Unresponsive devices on the chip: the forward and the backward products both use the
host's weights (the failed devices taken at their reference, what they really carry
subtracted), whatever the failed devices read."""

from __future__ import annotations

import numpy as np
import pytest

from protocols.training import OnChip, init_weights
from protocols.training.layout import references, tile_cells, training_mapping, with_weights
from tests.protocols.training.fakes import SHEET, US, ExactArray

SIZES = (8, 6, 3)


def _chip(lone: bool, transposed: bool = True):
    """A chip whose layer-1 pairs have devices stuck far above and below the window."""
    mapping = with_weights(training_mapping(SHEET, (16, 16), SIZES, (2.0, 2.0)),
                           init_weights(SIZES, 4))
    g = np.nan_to_num(mapping.targets, nan=1e-6).ravel()
    plus, minus = tile_cells(mapping, 1)
    skip = np.zeros(g.size, bool)
    skip[[plus[0, 0], minus[2, 1], plus[4, 2]]] = True  # one failed device of a pair
    skip[[plus[3, 0], minus[3, 0]]] = True  # both failed
    g[[plus[0, 0], minus[3, 0]]] = 60 * US  # stuck high, above g_max
    g[[minus[2, 1], plus[3, 0], plus[4, 2]]] = 0.3 * US  # stuck low, under g_min
    chip = OnChip(ExactArray(g.reshape(16, 16), transposed), mapping,
                  [np.zeros(6), np.zeros(3)], input_bits=None, skip=skip,
                  references=references(mapping, skip, lone))
    chip.read()
    return chip


@pytest.mark.parametrize("lone", [False, True])
def test_backward_through_stuck_devices_is_the_host_weights(lone):
    chip = _chip(lone)
    delta = np.random.default_rng(2).standard_normal((5, 3))
    host = delta @ chip.weights()[1].T  # the weights the forward pass uses
    assert np.allclose(chip.error_back(1, delta), host, rtol=1e-6, atol=1e-9)
    digital = _chip(lone, transposed=False)
    assert np.allclose(digital.error_back(1, delta), host, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("lone", [False, True])
def test_forward_through_stuck_devices_is_the_host_weights(lone):
    chip = _chip(lone)
    h = np.abs(np.random.default_rng(3).standard_normal((5, 6)))
    z = chip.layer(1, h, "none")
    assert np.allclose(z, h @ chip.weights()[1], rtol=1e-6, atol=1e-9)
