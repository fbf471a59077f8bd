"""The update rules on small cases: accumulate-and-fire, SGD's dead zone, pair changes,
the window bound, the float maths, and one step of each rule on an exact array."""

from __future__ import annotations

import numpy as np
import pytest

from protocols.training import (
    Accumulator,
    OnChip,
    TrainingInputError,
    TrainParams,
    backward_mode,
    check_data,
    init_weights,
    train_float,
)
from protocols.training.baseline import backward, cross_entropy, forward, output_delta
from protocols.training.chip_in_loop import realisable
from protocols.training.insitu import MAX_CHANGE, InSitu, bounded
from protocols.training.layout import tile_cells, training_mapping, with_weights
from protocols.training.mixed import MAX_STEPS
from protocols.training.pulses import pair_changes
from protocols.training.sgd import DEAD_ZONE, sgd_changes
from tests.protocols.training.fakes import SHEET, US, ExactArray, ExactResponse


def test_accumulator_fires_only_past_the_granularity():
    acc = Accumulator(6)
    cells = np.arange(6)
    acc.add(cells, np.array([0.4, -0.9, 1.0, 2.7, -3.2, 9.0]) * US)
    fired, asked = acc.fire(cells, 1.0 * US)
    assert fired.tolist() == [2, 3, 4, 5]
    assert np.allclose(asked / US, [1.0, 2.0, -3.0, MAX_STEPS])
    # what was asked left the accumulator; the rest stays for later
    assert np.allclose(acc.chi / US, [0.4, -0.9, 0.0, 0.7, -0.2, 9.0 - MAX_STEPS])
    acc.add(np.array([0, 0]), np.array([0.3, 0.3]) * US)  # repeated cells add up
    fired, asked = acc.fire(np.array([0]), 1.0 * US)
    assert fired.tolist() == [0] and np.allclose(asked, 1.0 * US)
    assert acc.chi[0] == pytest.approx(0.0, abs=1e-15)


def test_sgd_drops_changes_under_its_dead_zone_only():
    eps = 1.2 * US
    wanted = np.array([0.5, -0.9, 1.1, -2.0]) * DEAD_ZONE * eps
    assert np.array_equal(sgd_changes(wanted, eps), np.where(np.abs(wanted) >= DEAD_ZONE * eps,
                                                              wanted, 0.0))


def test_pair_changes_reset_the_high_device_first_then_set_the_other():
    floor = 2 * US
    g_plus = np.array([10.0, 2.0, 12.0, 2.0]) * US
    g_minus = np.array([2.0, 5.0, 2.0, 3.0]) * US
    dg = np.array([3.0, 4.0, -4.0, -1.0]) * US
    up, down = pair_changes(dg, g_plus, g_minus, floor)
    assert np.allclose(up / US, [3.0, 1.0, -4.0, 0.0])
    assert np.allclose(down / US, [0.0, -3.0, 0.0, 1.0])
    assert np.allclose(up - down, dg)  # the pair's difference moves by what was asked


def test_bounded_keeps_devices_in_the_window():
    mapping = training_mapping(SHEET, (64, 64), (64, 20, 10), (1.0, 1.0))
    most = MAX_CHANGE * (mapping.g_max - mapping.g_min) / US
    g = np.array([39.5, 20.0, 50.0, 50.0, 0.5]) * US
    wanted = np.array([2.0, 100.0, 1.0, -1.0, -1.0]) * US
    out = bounded(wanted, g, mapping)
    assert np.allclose(out / US, [0.5, most, 0.0, -1.0, 0.0])


def test_realisable_keeps_the_sign_a_failed_pairs_working_device_can_give():
    mapping = training_mapping(SHEET, (64, 64), (64, 20, 10), (1.0, 2.0))
    plus, minus = tile_cells(mapping, 1)
    skip = np.zeros(64 * 64, bool)
    skip[[plus[0, 0], minus[0, 1], plus[2, 2], minus[2, 2]]] = True
    w_read = np.full((20, 10), 0.3)
    low, high = realisable(mapping, 1, skip, w_read)
    assert (low[0, 0], high[0, 0]) == (-2.0, 0.0)  # G+ failed: only G- works
    assert (low[0, 1], high[0, 1]) == (0.0, 2.0)  # G- failed
    assert low[2, 2] == high[2, 2] == 0.3  # both: the weight as read
    assert low[1, 1] == -2.0 and high[1, 1] == 2.0


def test_lr_decay_schedules_the_float_baseline_too():
    d = _data()
    p = TrainParams(lr=0.4, lr_decay=0.5)
    assert p.lr_at(1) == 0.4 and p.lr_at(3) == pytest.approx(0.1)
    assert TrainParams().lr_at(7) == TrainParams().lr
    plain = train_float(d, 6, epochs=3, lr=0.5, batch=5, seed=3)
    same = train_float(d, 6, epochs=3, lr=0.5, batch=5, seed=3, lr_decay=1.0)
    decayed = train_float(d, 6, epochs=3, lr=0.5, batch=5, seed=3, lr_decay=0.5)
    assert np.array_equal(plain.weights[0], same.weights[0])
    assert not np.array_equal(plain.weights[0], decayed.weights[0])


def test_float_backward_is_the_gradient():
    rng = np.random.default_rng(0)
    w = init_weights((5, 4, 3), seed=1)
    b = [rng.standard_normal(4) * 0.1, rng.standard_normal(3) * 0.1]
    x, y = rng.random((7, 5)), rng.integers(0, 3, 7)
    acts = forward(w, b, x)
    grads = backward(w, acts, output_delta(acts[-1], y))
    h = 1e-6
    for k in range(2):
        i, j = 1, 2
        wp = [a.copy() for a in w]
        wp[k][i, j] += h
        numeric = (cross_entropy(forward(wp, b, x)[-1], y)
                   - cross_entropy(forward(w, b, x)[-1], y)) / h
        assert grads[k][0][i, j] == pytest.approx(numeric, rel=1e-3, abs=1e-6)


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.random((3, 8))
    y = rng.integers(0, 3, n)
    x = np.clip(centres[y] + 0.1 * rng.standard_normal((n, 8)), 0, 1)
    return check_data(x[:30], y[:30], x[30:], y[30:], classes=3, source="blobs")


def test_float_baseline_is_seeded_and_learns():
    d = _data()
    a = train_float(d, 6, epochs=20, lr=0.5, batch=5, seed=3)
    b = train_float(d, 6, epochs=20, lr=0.5, batch=5, seed=3)
    assert np.array_equal(a.weights[0], b.weights[0]) and a.accuracy == b.accuracy
    assert a.loss[-1] < a.loss[0] and a.accuracy >= 0.8


def _trainer(rule, transposed=True, backward="auto", layers=None, granularity=0.01 * US):
    d = _data()
    mapping = training_mapping(SHEET, (16, 16), (8, 6, 3), (2.0, 2.0))
    weights = init_weights((8, 6, 3), seed=0)
    mapping = with_weights(mapping, weights)
    array = ExactArray(np.nan_to_num(mapping.targets, nan=SHEET.window.g_min), transposed)
    params = TrainParams(lr=0.5, batch=5, hidden=6, backward=backward, input_bits=None,
                         sgd_momentum=0.0,
                         granularity_s=granularity)
    trainer = InSitu(array, d, params, rule=rule, mapping=mapping,
                     biases=[np.zeros(6), np.zeros(3)], response=ExactResponse(),
                     layers=layers)
    return trainer, array, d


@pytest.mark.parametrize("transposed", [True, False])
def test_one_sgd_step_moves_every_weight_by_its_gradient(transposed):
    """On an exact array, SGD's pulses realise -lr * dW (a granularity of 0.01 uS: every
    change is sent); the backward by the transposed MVM equals the digital one."""
    trainer, array, d = _trainer("sgd", transposed)
    assert trainer.chip.backward == ("chip" if transposed else "digital")
    w0 = trainer.chip.weights()
    b0 = [b.copy() for b in trainer.chip.biases]
    x, y = d.x_train[:5], d.y_train[:5]
    acts = forward(w0, b0, x)
    grads = backward(w0, acts, output_delta(acts[-1], y))
    calls = dict(array.calls)
    trainer.step(x, y)
    w1 = trainer.chip.weights()
    for k in range(2):
        scale = trainer.chip.mapping.tiles[k].scale
        want = -0.5 * grads[k][0]
        sent = np.abs(scale * want) >= DEAD_ZONE * trainer.eps
        assert sent.mean() > 0.5  # the rest: exact zeros of hidden units that are off
        assert np.allclose((w1[k] - w0[k])[sent], want[sent], rtol=1e-6, atol=1e-9)
        assert np.allclose((w1[k] - w0[k])[~sent], 0.0, atol=1e-12)
        assert np.allclose(trainer.chip.biases[k], b0[k] - 0.5 * grads[k][1])
    spent = {k: array.calls[k] - calls[k] for k in calls}
    assert spent == {"mvm": 2, "mvm_transposed": 1 if transposed else 0, "read": 1,
                     "pulse": 1}


def test_mixed_step_pulses_only_whole_steps_and_keeps_the_rest():
    trainer, array, d = _trainer("mixed", granularity=0.5 * US)
    w0 = trainer.chip.weights()
    trainer.step(d.x_train[:5], d.y_train[:5])
    w1 = trainer.chip.weights()
    eps = trainer.eps
    plus, _ = tile_cells(trainer.chip.mapping, 0)
    steps = (w1[0] - w0[0]) * trainer.chip.mapping.tiles[0].scale / eps  # per weight
    assert np.any(steps != 0)
    assert np.allclose(steps, np.round(steps), atol=1e-6)  # whole granularity steps
    chi = trainer.acc.chi[plus.ravel()]
    capped = np.abs(np.round(steps.ravel())) == MAX_STEPS
    assert np.all((np.abs(chi) < eps + 1e-15) | capped)
    assert np.count_nonzero(chi) > 0  # what did not fire is kept for later
    # accumulated + realised = asked, for every weight
    x, y = d.x_train[:5], d.y_train[:5]
    acts = forward(w0, [np.zeros(6), np.zeros(3)], x)
    grads = backward(w0, acts, output_delta(acts[-1], y))
    asked = -0.5 * grads[0][0] * trainer.chip.mapping.tiles[0].scale
    assert np.allclose(steps.ravel() * eps + chi, asked.ravel(), atol=1e-15)


def test_only_the_last_layer_in_hybrid_mode_needs_no_backward():
    trainer, array, d = _trainer("sgd", layers=(1,))
    w0 = trainer.chip.weights()
    trainer.step(d.x_train[:5], d.y_train[:5])
    w1 = trainer.chip.weights()
    assert np.array_equal(w1[0], w0[0]) and not np.array_equal(w1[1], w0[1])
    assert array.calls["mvm_transposed"] == 0 and not trainer.uses_backward


def test_backward_mode_falls_back_and_refuses_chip_without_it():
    with_t, without = ExactArray(np.zeros((2, 2))), ExactArray(np.zeros((2, 2)), False)
    assert backward_mode(with_t, "auto") == "chip"
    assert backward_mode(without, "auto") == "digital"
    assert backward_mode(with_t, "digital") == "digital"
    with pytest.raises(TrainingInputError, match="no transposed MVM"):
        backward_mode(without, "chip")


def test_onchip_backward_transposed_equals_digital():
    mapping = with_weights(training_mapping(SHEET, (16, 16), (8, 6, 3), (2.0, 2.0)),
                           init_weights((8, 6, 3), 4))
    g = np.nan_to_num(mapping.targets, nan=1e-6)
    delta = np.random.default_rng(1).standard_normal((4, 3))
    outs = []
    for transposed in (True, False):
        chip = OnChip(ExactArray(g, transposed), mapping, [np.zeros(6), np.zeros(3)],
                      input_bits=None)
        chip.read()
        outs.append(chip.error_back(1, delta))
    assert np.allclose(outs[0], outs[1], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("bad, match", [
    ({"lr": 0}, "lr"), ({"lr": float("nan")}, "lr"), ({"batch": 0}, "batch"),
    ({"batch": 2.5}, "batch"), ({"epochs": -1}, "epochs"), ({"backward": "x"}, "backward"),
    ({"granularity_s": 1.0}, "granularity"), ({"fraction": 0}, "fraction"),
    ({"lr_decay": 0}, "lr_decay"), ({"lr_decay": 1.5}, "lr_decay")])
def test_params_refuse_bad_values(bad, match):
    with pytest.raises(TrainingInputError, match=match):
        TrainParams(**bad)


@pytest.mark.parametrize("change, match", [
    (lambda p: {**p, "x_train": p["x_train"][:, :5]}, "width|differ"),
    (lambda p: {**p, "y_test": p["y_test"] + 5}, "labels"),
    (lambda p: {**p, "x_train": np.where(p["x_train"] > 0.5, np.nan, p["x_train"])}, "NaN"),
    (lambda p: {**p, "x_test": p["x_test"][:0], "y_test": p["y_test"][:0]}, "empty"),
    (lambda p: {**p, "y_train": p["y_train"].astype(float)}, "whole-number")])
def test_data_checks(change, match):
    d = _data()
    parts = {"x_train": d.x_train, "y_train": d.y_train, "x_test": d.x_test, "y_test": d.y_test}
    with pytest.raises(TrainingInputError, match=match):
        check_data(**change(parts), classes=3)
