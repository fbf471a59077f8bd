"""Hybrid and chip-in-the-loop on the simulated bench (a tiny blob set, 8-6-3), and the
checkpoints of every method: what goes in comes out."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from protocols.training import InSitu, TrainParams, begin, check_data
from protocols.training.chip_in_loop import ChipInLoop, begin_chip_in_loop
from protocols.training.layout import tile_cells
from tests.protocols.training.fakes import US


def blobs(n=60, features=8, classes=3, seed=0, noise=0.3):
    rng = np.random.default_rng(seed)
    centres = rng.random((classes, features))
    y = rng.integers(0, classes, n)
    x = np.clip(centres[y] + noise * rng.standard_normal((n, features)), 0, 1)
    return check_data(x[:40], y[:40], x[40:], y[40:], classes=classes, source="blobs")


PARAMS = TrainParams(epochs=2, lr=0.5, batch=5, hidden=6, float_epochs=30)


def test_hybrid_retrains_only_the_last_layer_on_a_fraction(bench):
    data = blobs()
    t = begin(bench.array, bench.datasheet, data, PARAMS, "hybrid", clock=bench.clock)
    assert t.layers == (1,) and t.subset.size == round(0.25 * 40) and not t.uses_backward
    assert t.chip.params.repeats == 4  # hybrid's default conversions per vector
    w0 = t.chip.weights()[0].copy()
    for _ in range(2):
        t.run_epoch()
    assert [r.epoch for r in t.records] == [0, 1, 2]
    assert t.records[0].test_accuracy >= 0.5  # the ex-situ transfer already classifies
    # layer 0 as programmed (read noise aside), layer 1 trained: its accumulators only
    assert np.median(np.abs(t.chip.weights()[0] - w0)) < 0.05 * np.abs(w0).max()
    assert t.rule == "mixed"
    plus0, _ = tile_cells(t.chip.mapping, 0)
    plus1, _ = tile_cells(t.chip.mapping, 1)
    assert not t.acc.chi[plus0.ravel()].any() and t.acc.chi[plus1.ravel()].any()


def test_chip_in_loop_programs_layer_by_layer(bench):
    data = blobs()
    t = begin_chip_in_loop(bench.array, bench.datasheet, data, PARAMS, clock=bench.clock)
    tile1 = t.chip.mapping.tiles[1]
    g1 = tile1.block(t.chip.g)
    assert t.programming_pulses > 0
    r1 = t.run_epoch()
    assert r1.pulses == 0 and np.allclose(tile1.block(t.chip.g), g1, equal_nan=True)
    r2 = t.run_epoch()  # the last epoch programs the tuned layer
    assert r2.pulses > 0 and not np.allclose(tile1.block(t.chip.g), g1, equal_nan=True)
    assert r2.test_accuracy >= 0.5 and t.gain.shape == (3,)


def test_chip_in_loop_tunes_the_last_layer_around_its_failed_devices(bench):
    """A device the host takes as failed is never written; its pair keeps only the sign
    its working device can realise (``floor``; ``partner``: test_chip_in_loop_partner),
    and the layer is tuned again around it."""
    data = blobs()
    t = begin_chip_in_loop(bench.array, bench.datasheet, data,
                           replace(PARAMS, faulty_pairs="floor"), clock=bench.clock)
    plus, minus = tile_cells(t.chip.mapping, 1)
    t.run_epoch()
    dead_p, dead_m = int(plus[0, 0]), int(minus[1, 1])
    t.skip[[dead_p, dead_m]] = True
    before = bench.array.read_cells(np.array([dead_p, dead_m]))
    t.run_epoch()  # programs layer 1, then the second pass around the failed devices
    assert t.w[1][0, 0] <= 0.0 and t.w[1][1, 1] >= 0.0
    after = bench.array.read_cells(np.array([dead_p, dead_m]))
    assert np.allclose(after, before, atol=1.0 * US)  # read noise and relaxation only
    assert t.records[-1].pulses > 0 and t.records[-1].test_accuracy >= 0.5


@pytest.mark.parametrize("method", ["sgd", "mixed"])
def test_insitu_checkpoint_round_trip(bench, method):
    data = blobs()
    t = begin(bench.array, bench.datasheet, data, PARAMS, method, clock=bench.clock)
    t.run_epoch()
    arrays, meta = t.to_arrays()
    back = InSitu.from_arrays(bench.array, data, PARAMS, arrays, meta, clock=bench.clock)
    assert back.epoch == 1 and back.rule == t.rule and back.layers == t.layers
    assert [r.epoch for r in back.records] == [0, 1]
    assert np.array_equal(back.acc.chi, t.acc.chi) and np.array_equal(back.skip, t.skip)
    for a, b in zip(back.chip.biases, t.chip.biases, strict=True):
        assert np.array_equal(a, b)
    assert np.array_equal(back.response.factor, t.response.factor)
    assert back.chip.backward == t.chip.backward
    back.run_epoch()  # and it goes on
    assert back.epoch == 2


def test_chip_in_loop_checkpoint_round_trip(bench):
    data = blobs()
    t = begin_chip_in_loop(bench.array, bench.datasheet, data, PARAMS, clock=bench.clock)
    t.run_epoch()
    arrays, meta = t.to_arrays()
    back = ChipInLoop.from_arrays(bench.array, bench.datasheet, data, PARAMS, arrays, meta,
                                  clock=bench.clock)
    assert back.epoch == 1 and np.array_equal(back.w[1], t.w[1])
    assert np.array_equal(back.chip.biases[1], t.chip.biases[1])
    back.run_epoch()
    assert back.epoch == 2 and back.records[-1].pulses > 0


def test_set_only_training_checkpoint_keeps_its_rule_step_and_refreshes(bench):
    """A set-only (PCM-style) run on the rram bench: SET pulses only, and what resume
    needs — the update rule, the granularity chosen at the start, the refresh count,
    the conversions per vector — comes back from the checkpoint."""
    data = blobs()
    params = TrainParams(epochs=2, lr=0.5, batch=5, hidden=6, float_epochs=30,
                         update="set-only", repeats=2)
    t = begin(bench.array, bench.datasheet, data, params, "mixed", clock=bench.clock)
    assert t.update == "set-only" and t.chip.params.repeats == 2
    sent = []
    pulse = bench.array.pulse_cells

    def spy(cells, volts, *args, **kwargs):
        sent.append(np.asarray(volts))
        return pulse(cells, volts, *args, **kwargs)

    bench.array.pulse_cells = spy
    t.run_epoch()
    bench.array.pulse_cells = pulse
    assert sent and all((v >= 0).all() for v in sent[:1])  # the first batch: SETs only
    t.refreshes = 3
    arrays, meta = t.to_arrays()
    back = InSitu.from_arrays(bench.array, data, params, arrays, meta, clock=bench.clock)
    assert back.update == "set-only" and back.refreshes == 3 and back.eps == t.eps
    assert back.chip.params.repeats == 2
