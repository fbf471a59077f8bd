"""SET-only updates with refresh (PCM), and repeated conversions in the forward pass, on
the exact fake array: the arithmetic, not the device physics."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import protocols.training.insitu as insitu_module
from instruments.datasheet import load_datasheet
from protocols.training import InSitu, TrainingInputError, TrainParams, init_weights
from protocols.training.baseline import backward, forward, output_delta
from protocols.training.layout import floor_of, tile_cells, training_mapping, with_weights
from protocols.training.passes import OnChip
from protocols.training.pulses import (
    REFRESH_SHARE,
    refresh_due,
    refresh_targets,
    set_only_changes,
    update_rule,
)
from tests.protocols.training.fakes import SHEET, US, ExactArray, ExactResponse
from tests.protocols.training.test_rules import _data


def test_set_only_changes_set_the_device_of_the_wanted_sign_only():
    up, down = set_only_changes(np.array([2.0, -3.0, 0.0]) * US)
    assert np.allclose(up, [2 * US, 0, 0]) and np.allclose(down, [0, 3 * US, 0])
    assert (up >= 0).all() and (down >= 0).all()


def test_update_rule_is_set_only_where_the_datasheet_reset_is_abrupt():
    assert update_rule("auto", load_datasheet("pcm")) == "set-only"
    assert update_rule("auto", SHEET) == "pair"
    assert update_rule("pair", load_datasheet("pcm")) == "pair"
    assert update_rule("set-only", SHEET) == "set-only"


def test_refresh_trigger_and_targets():
    g_min, g_max = 0.0, 25 * US
    level = g_min + REFRESH_SHARE * (g_max - g_min)
    gp = np.array([level + 1e-8, 5 * US, 5 * US, level + 1e-8, level + 1e-8])
    gm = np.array([3 * US, level + 1e-8, 4 * US, 4 * US, 1.5 * US])
    no, floor = np.zeros(5, bool), 1 * US
    due = refresh_due(gp, gm, g_min, g_max, no, no, floor)
    # the last: its low device near the floor, a refresh would give no SET back
    assert due.tolist() == [True, True, False, True, False]
    # a skipped (stuck) device near g_max does not trigger: it cannot be re-programmed
    assert refresh_due(gp, gm, g_min, g_max, np.array([0, 0, 0, 1, 0], bool),
                       no, floor).tolist() == [True, True, False, False, False]
    tp, tm = refresh_targets(gp, gm, floor=1 * US)
    assert np.allclose(tp - tm, gp - gm)  # the weight is kept
    assert np.allclose(np.minimum(tp, tm), 1 * US)  # the low device back at the floor


def _set_only_trainer(g_scale=1.0):
    d = _data()
    mapping = with_weights(training_mapping(SHEET, (16, 16), (8, 6, 3), (2.0, 2.0)),
                           init_weights((8, 6, 3), seed=0))
    g = np.nan_to_num(mapping.targets, nan=SHEET.window.g_min) * g_scale
    array = ExactArray(g)
    params = TrainParams(lr=0.5, batch=5, hidden=6, input_bits=None, granularity_s=0.01 * US,
                         sgd_momentum=0.0)
    trainer = InSitu(array, d, params, rule="sgd", mapping=mapping,
                     biases=[np.zeros(6), np.zeros(3)], response=ExactResponse(),
                     update="set-only")
    return trainer, array, d


def test_set_only_step_moves_weights_by_their_gradient_with_sets_only():
    trainer, array, d = _set_only_trainer()
    sent = []
    pulse = array.pulse_cells
    array.pulse_cells = lambda cells, volts, width=1e-6: (sent.append(np.array(volts)),
                                                         pulse(cells, volts, width))[1]
    g0 = array.g.copy()
    w0 = trainer.chip.weights()
    x, y = d.x_train[:5], d.y_train[:5]
    acts = forward(w0, [np.zeros(6), np.zeros(3)], x)
    grads = backward(w0, acts, output_delta(acts[-1], y))
    trainer.step(x, y)
    assert sent and all((v > 0).all() for v in sent)  # SET pulses only
    assert (array.g >= g0 - 1e-15).all()  # no device came down
    w1 = trainer.chip.weights()
    for k in range(2):
        want = -0.5 * grads[k][0]
        plus, minus = tile_cells(trainer.chip.mapping, k)
        rise = array.g.ravel()[plus] - g0.ravel()[plus]
        fall = array.g.ravel()[minus] - g0.ravel()[minus]
        assert np.all((rise == 0) | (fall == 0))  # one device of a pair per update
        moved = np.abs(trainer.chip.mapping.tiles[k].scale * want) >= 0.125 * trainer.eps
        assert np.allclose((w1[k] - w0[k])[moved], want[moved], rtol=1e-6, atol=1e-9)
    assert trainer.refreshes == 0


def test_a_device_near_g_max_triggers_a_refresh_to_the_pairs_difference(monkeypatch):
    trainer, array, d = _set_only_trainer()
    m = trainer.chip.mapping
    plus, minus = tile_cells(m, 1)
    high = m.g_min + 0.95 * (m.g_max - m.g_min)
    flat = array.g.ravel()
    flat[plus[0, 0]], flat[minus[0, 0]] = high, high - 2 * US  # weight +2 uS, both high
    flat[plus[1:]] = flat[minus[1:]] = floor_of(m.g_min, m.g_max)
    calls = []

    def fake_wv(arr, targets, clock=None, params=None, response=None):
        calls.append(np.array(targets))
        ok = np.isfinite(targets)
        arr.g[ok] = targets[ok]
        return SimpleNamespace(response=response, pulses=np.where(ok, 3, 0))

    monkeypatch.setattr(insitu_module, "write_verify", fake_wv)
    trainer.chip.read()
    pairs = np.stack([np.concatenate([p.ravel() for p in (tile_cells(m, 0)[0], plus)]),
                      np.concatenate([q.ravel() for q in (tile_cells(m, 0)[1], minus)])])
    before = trainer.chip.weights()[1][0, 0]
    pulses = trainer.refresh(pairs)
    assert len(calls) == 1 and trainer.refreshes == 1 and pulses == 6
    targets = calls[0].ravel()
    assert np.isfinite(targets).sum() == 2  # only that pair's two devices
    floor = floor_of(m.g_min, m.g_max)
    assert targets[minus[0, 0]] == pytest.approx(floor)
    assert targets[plus[0, 0]] == pytest.approx(floor + 2 * US)
    assert trainer.chip.weights()[1][0, 0] == pytest.approx(before)  # weight kept
    assert trainer.refresh(pairs) == 0 and len(calls) == 1  # nothing due any more


def test_pair_update_never_refreshes(monkeypatch):
    trainer, array, d = _set_only_trainer()
    trainer.update = "pair"
    monkeypatch.setattr(insitu_module, "write_verify", lambda *a, **k: pytest.fail("refresh"))
    m = trainer.chip.mapping
    plus, _ = tile_cells(m, 1)
    array.g.ravel()[plus[0, 0]] = m.g_max
    trainer.chip.read()
    trainer.step(d.x_train[:5], d.y_train[:5])


def test_repeats_convert_each_vector_several_times_in_one_transaction():
    mapping = with_weights(training_mapping(SHEET, (16, 16), (8, 6, 3), (2.0, 2.0)),
                           init_weights((8, 6, 3), 4))
    array = ExactArray(np.nan_to_num(mapping.targets, nan=1e-6))
    rows = []
    mvm = array.mvm
    array.mvm = lambda x: (rows.append(len(x)), mvm(x))[1]
    outs = []
    for repeats in (1, 4):
        chip = OnChip(array, mapping, [np.zeros(6), np.zeros(3)], input_bits=None,
                      repeats=repeats)
        chip.read()
        outs.append(chip.layer(0, _data().x_train[:7], "relu"))
    assert rows == [7, 28]  # one transaction each, 4 conversions per vector
    assert np.allclose(outs[0], outs[1])
    assert TrainParams().repeats_for("chip-in-loop") == 16  # measured: docs/training.md
    assert TrainParams(repeats=3).repeats_for("sgd") == 3


@pytest.mark.parametrize("bad, match", [({"update": "reset"}, "update"),
                                        ({"repeats": 0}, "repeats"),
                                        ({"repeats": 2.5}, "repeats")])
def test_params_refuse_bad_update_and_repeats(bad, match):
    with pytest.raises(TrainingInputError, match=match):
        TrainParams(**bad)


def test_a_set_only_step_refreshes_what_it_drove_near_g_max(monkeypatch):
    trainer, array, d = _set_only_trainer()
    m = trainer.chip.mapping
    plus, minus = tile_cells(m, 1)
    window = m.g_max - m.g_min
    array.g.ravel()[plus] = m.g_min + 0.99 * window  # every G+ of layer 1 near g_max,
    array.g.ravel()[minus] = m.g_min + 0.6 * window  # every G- well above the floor
    trainer.chip.read()
    calls = []

    def fake_wv(arr, targets, clock=None, params=None, response=None):
        calls.append(np.isfinite(targets).sum())
        ok = np.isfinite(targets)
        arr.g[ok] = targets[ok]
        return SimpleNamespace(response=response, pulses=np.where(ok, 1, 0))

    monkeypatch.setattr(insitu_module, "write_verify", fake_wv)
    _, sent = trainer.step(d.x_train[:5], d.y_train[:5])
    assert calls == [2 * plus.size] and trainer.refreshes == plus.size
    assert sent >= 2 * plus.size
    level = m.g_min + REFRESH_SHARE * (m.g_max - m.g_min)
    assert (array.g.ravel()[plus] < level).all()


def test_default_granularity_is_at_least_twice_the_measured_read_noise():
    from protocols.training.insitu import NOISE_STEPS, default_granularity

    mapping = training_mapping(SHEET, (16, 16), (8, 6, 3), (2.0, 2.0))
    window = mapping.g_max - mapping.g_min
    quiet = SimpleNamespace(sigma=lambda g: np.full(np.shape(g), 0.01 * window / 32))
    noisy = SimpleNamespace(sigma=lambda g: np.full(np.shape(g), 0.05 * window))
    unknown = SimpleNamespace(sigma=lambda g: None)
    assert default_granularity(mapping) == pytest.approx(window / 32)
    assert default_granularity(mapping, quiet) == pytest.approx(window / 32)
    assert default_granularity(mapping, unknown) == pytest.approx(window / 32)
    assert default_granularity(mapping, noisy) == pytest.approx(NOISE_STEPS * 0.05 * window)
