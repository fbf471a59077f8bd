"""Weight mapping onto differential pairs, and what a chip actually holds."""

from __future__ import annotations

import numpy as np
import pytest

import protocols
from calib import open_bench
from instruments.datasheet import load_datasheet
from protocols.profiles import write_verify_params
from protocols.weights import (
    WeightMappingError,
    map_weights,
    place,
    weights_from_conductances,
)

US = 1e-6


def test_exact_round_trip_without_a_chip():
    w = np.random.default_rng(0).normal(size=(16, 8))
    g, m = map_weights(w, 1 * US, 40 * US)
    assert g.shape == (16, 16)
    assert g.min() >= 1 * US - 1e-15 and g.max() <= 40 * US + 1e-15
    assert np.allclose(weights_from_conductances(g, m), w, atol=1e-12)
    # one device of each pair rests at g_min
    assert np.all(np.minimum(g[:, 0::2], g[:, 1::2]) == pytest.approx(1 * US))
    assert m.scale == pytest.approx(39 * US / np.abs(w).max())


def test_clipping_is_counted_and_applied():
    w = np.array([[0.1, -0.2], [5.0, -0.1]])
    g, m = map_weights(w, 1 * US, 40 * US, clip_percentile=75)
    assert m.clipped == 1 and m.w_clip < 5.0
    assert weights_from_conductances(g, m)[1, 0] == pytest.approx(m.w_clip)


@pytest.mark.parametrize("w, message", [
    (np.ones(3), "2-D"), (np.full((2, 2), np.nan), "NaN"), (np.zeros((0, 2)), "2-D"),
])
def test_bad_weights(w, message):
    with pytest.raises(WeightMappingError, match=message):
        map_weights(w, 1 * US, 40 * US)
    with pytest.raises(WeightMappingError, match="window"):
        map_weights(np.ones((2, 2)), 40 * US, 1 * US)


def test_place_puts_a_block_top_left():
    out = place(np.ones((2, 3)), (4, 4))
    assert np.isnan(out[2:, :]).all() and np.isnan(out[:, 3:]).all() and out[:2, :3].sum() == 6
    with pytest.raises(WeightMappingError, match="do not fit"):
        place(np.ones((5, 1)), (4, 4))


def test_weight_round_trip_through_the_chip():
    """Program a layer; the effective weights read back (and truly held) match."""
    w = np.random.default_rng(3).normal(size=(32, 16)) * 0.2
    with open_bench(rows=32, cols=32) as bench:
        bench.prober.goto(12)
        bench.array.form()
        targets, m = map_weights(w, 1 * US, 40 * US)
        sheet = getattr(bench, "datasheet", None) or load_datasheet("rram").with_geometry(32, 32)
        result = protocols.write_verify(bench.array, targets, clock=bench.clock,
                                        params=write_verify_params(sheet))
        truth = bench.simulation.chip.truth()
        held = weights_from_conductances(truth.g, m)
        read_back = weights_from_conductances(np.nan_to_num(result.final), m)
    ok_pairs = ~(truth.stuck[:, 0::2] | truth.stuck[:, 1::2])
    # each device within +-1 uS -> each weight within 2 uS / scale
    bound = 2 * US / m.scale
    assert np.mean(np.abs(held - w)[ok_pairs] <= bound) >= 0.99
    assert np.mean(np.abs(read_back - held)[ok_pairs] <= bound) >= 0.99
    # on healthy pairs the layer computes what the weights say. Bound: each device
    # anywhere in +-1 uS (sigma <= 0.58 uS, 0.82 uS per pair) gives weight errors
    # <= 0.82 uS / scale ~ 0.014 against a weight spread of 0.2, so the output
    # correlation is >= 1 / sqrt(1 + 0.069^2) = 0.9976
    x = np.random.default_rng(4).normal(size=(64, 32))
    healthy = np.where(ok_pairs, held, w)
    expected = 1 / np.sqrt(1 + (0.82 * US / m.scale / w.std()) ** 2)
    assert np.corrcoef((x @ w).ravel(), (x @ healthy).ravel())[0, 1] >= expected - 5e-4
    # and every pair a stuck device spoils is reported, so a user can remap it
    flagged = result.unresponsive | result.unreachable
    spoiled = ~ok_pairs & (np.abs(held - w) > bound)
    assert np.all((flagged[:, 0::2] | flagged[:, 1::2])[spoiled])
