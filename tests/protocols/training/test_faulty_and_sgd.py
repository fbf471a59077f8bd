"""Pairs with one failed device: taken at the floor (one sign) or, with
``faulty_pairs="partner"``, the working device alone around a mid-window reference (both
signs), updated alone; and SGD's rounding zone."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from protocols.training import (
    InSitu,
    TrainingInputError,
    TrainParams,
    float_models,
    init_weights,
    train_float,
)
from protocols.training.baseline import backward, forward, output_delta
from protocols.training.layout import (
    floor_of,
    lone_level,
    lone_pairs,
    lone_targets,
    references,
    tile_cells,
    training_mapping,
    with_weights,
)
from protocols.training.sgd import sgd_changes
from tests.protocols.training.fakes import SHEET, US, ExactArray, ExactResponse
from tests.protocols.training.test_rules import _data

G_MIN, G_MAX = SHEET.window.g_min, SHEET.window.g_max
STUCK_AT = 0.8 * G_MAX  # what the failed devices read (a value the host only measures)


def _faulty(lone: bool):
    """An exact 8-6-3 trainer whose layer-0 pairs (0, j) have G- failed and (1, j) G+
    failed, stuck at ``STUCK_AT``; the working devices programmed as the mode would."""
    d = _data()
    mapping = training_mapping(SHEET, (16, 16), (8, 6, 3), (2.0, 2.0))
    weights = init_weights((8, 6, 3), seed=0)
    weights[0][0, :] = -np.abs(weights[0][0, :])  # G- failed, weight negative
    weights[0][1, :] = np.abs(weights[0][1, :])  # G+ failed, weight positive
    mapping = with_weights(mapping, weights)
    plus, minus = tile_cells(mapping, 0)
    skip = np.zeros(16 * 16, bool)
    skip[minus[0]] = skip[plus[1]] = True
    g = np.nan_to_num(mapping.targets, nan=G_MIN).ravel()
    if lone:
        again = lone_targets(mapping, weights, skip).ravel()
        g = np.where(np.isfinite(again), again, g)
    g[skip] = STUCK_AT
    array = ExactArray(g.reshape(16, 16))
    params = TrainParams(lr=0.5, batch=5, hidden=6, input_bits=None, granularity_s=0.01 * US,
                         faulty_pairs="partner" if lone else "floor", sgd_momentum=0.0)
    trainer = InSitu(array, d, params, rule="sgd", mapping=mapping,
                     biases=[np.zeros(6), np.zeros(3)], response=ExactResponse(),
                     skip=skip, lone=lone)
    return trainer, array, d, weights, skip


def test_lone_layout_helpers():
    mapping = training_mapping(SHEET, (16, 16), (8, 6, 3), (2.0, 2.0))
    plus, minus = tile_cells(mapping, 0)
    skip = np.zeros(256, bool)
    skip[minus[0, 0]] = skip[plus[1, 0]] = True
    skip[plus[2, 0]] = skip[minus[2, 0]] = True  # both failed: not lone
    (fp, fm), (fp1, fm1) = lone_pairs(mapping, skip)
    assert np.argwhere(fm).tolist() == [[0, 0]] and np.argwhere(fp).tolist() == [[1, 0]]
    assert not (fp1.any() or fm1.any())
    level = lone_level(G_MIN, G_MAX)
    floor = floor_of(G_MIN, G_MAX)
    assert level == pytest.approx(floor + 0.5 * (G_MAX - floor))
    ref = references(mapping, skip, lone=True)
    assert ref[minus[0, 0]] == level and ref[plus[1, 0]] == level
    assert ref[plus[2, 0]] == floor and ref[minus[2, 0]] == floor
    assert np.isnan(ref[~skip]).all()
    assert np.allclose(references(mapping, skip, lone=False)[skip], floor)


def test_a_lone_device_carries_both_signs_and_the_forward_subtracts_its_stuck_partner():
    trainer, array, d, weights, skip = _faulty(lone=True)
    w = trainer.chip.weights()[0]
    assert np.allclose(w[0], weights[0][0], atol=1e-9)  # negative, on G+ alone
    assert np.allclose(w[1], weights[0][1], atol=1e-9)  # positive, on G- alone
    x = d.x_train[:7]
    h = trainer.chip.forward(x)[1]
    want = forward(trainer.chip.weights(), trainer.chip.biases, x)[1]
    assert np.allclose(h, want, rtol=1e-6, atol=1e-9)
    # at the floor, the same pairs can only give one sign: zero here
    floor_trainer = _faulty(lone=False)[0]
    wf = floor_trainer.chip.weights()[0]
    assert (wf[0] >= -1e-12).all() and (wf[1] <= 1e-12).all()


def test_a_lone_pair_gets_its_whole_change_on_the_working_device():
    trainer, array, d, weights, skip = _faulty(lone=True)
    stuck_before = array.g.ravel()[skip].copy()
    w0 = trainer.chip.weights()
    x, y = d.x_train[:5], d.y_train[:5]
    acts = forward(w0, trainer.chip.biases, x)
    grads = backward(w0, acts, output_delta(acts[-1], y))
    trainer.step(x, y)
    w1 = trainer.chip.weights()
    want = -0.5 * grads[0][0]
    moved = np.abs(want[:2]) * trainer.chip.mapping.tiles[0].scale >= 0.125 * trainer.eps
    assert moved.sum() > 3
    assert np.allclose((w1[0] - w0[0])[:2][moved], want[:2][moved], rtol=1e-6, atol=1e-9)
    assert np.array_equal(array.g.ravel()[skip], stuck_before)  # never pulsed
    # at the floor, the same pairs stay of one sign whatever the gradient asks
    ft = _faulty(lone=False)[0]
    ft.step(x, y)
    wf = ft.chip.weights()[0]
    assert (wf[0] >= -1e-12).all() and (wf[1] <= 1e-12).all()


def test_faulty_pairs_must_be_a_known_mode():
    with pytest.raises(TrainingInputError, match="faulty_pairs"):
        TrainParams(faulty_pairs="remap")


def test_lone_needs_pair_updates():
    trainer = _faulty(lone=True)[0]
    assert trainer.lone
    d = _data()
    t = InSitu(trainer.array, d, TrainParams(hidden=6, input_bits=None), rule="sgd",
               mapping=trainer.chip.mapping, biases=trainer.chip.biases,
               response=ExactResponse(), skip=trainer.skip, lone=True, update="set-only")
    assert not t.lone


# -- sgd's rounding zone and its host-side sum over batches ----------------------------
def test_sgd_zone_sends_large_changes_as_asked_and_rounds_small_ones_to_it():
    eps = 1.0 * US
    wanted = np.array([2.0, -1.5, 0.3, -0.6]) * eps
    rng = np.random.default_rng(1)
    draws = np.array([sgd_changes(wanted, eps, rng, zone=1.0) for _ in range(4000)])
    assert np.allclose(draws[:, :2], wanted[:2])  # at least the zone: as asked
    small = draws[:, 2:]
    assert set(np.unique(np.round(small / eps, 9))) <= {-1.0, 0.0, 1.0}  # zone or nothing
    assert np.allclose(small.mean(axis=0), wanted[2:], atol=0.03 * eps)  # the expectation
    assert np.count_nonzero(small) < 0.5 * small.size  # fewer pulses than changes
    with pytest.raises(TrainingInputError, match="sgd_zone"):
        TrainParams(sgd_zone=0.0)


def _exact_sgd(every):
    d = _data()
    mapping = training_mapping(SHEET, (16, 16), (8, 6, 3), (2.0, 2.0))
    mapping = with_weights(mapping, init_weights((8, 6, 3), seed=0))
    array = ExactArray(np.nan_to_num(mapping.targets, nan=G_MIN))
    params = TrainParams(lr=0.2, batch=5, hidden=6, input_bits=None, granularity_s=0.001 * US,
                         sgd_every=every, sgd_momentum=0.0)
    trainer = InSitu(array, d, params, rule="sgd", mapping=mapping,
                     biases=[np.zeros(6), np.zeros(3)], response=ExactResponse())
    return trainer, array, d


def test_sgd_every_sums_steps_on_the_host_and_sends_them_together():
    trainer, array, d = _exact_sgd(3)
    w0 = trainer.chip.weights()
    total = [np.zeros_like(w) for w in w0]
    for n in range(3):
        x, y = d.x_train[5 * n:5 * n + 5], d.y_train[5 * n:5 * n + 5]
        acts = forward(w0, trainer.chip.biases, x)  # the chip is unchanged until the send
        grads = backward(w0, acts, output_delta(acts[-1], y))
        for k in range(2):
            total[k] -= 0.2 * grads[k][0]
        pulses_before = array.calls["pulse"]
        _, sent = trainer.step(x, y, send_now=n == 2)
        if n < 2:
            assert sent == 0 and array.calls["pulse"] == pulses_before
            assert all(np.array_equal(a, b) for a, b in zip(trainer.chip.weights(), w0,
                                                             strict=True))
    w1 = trainer.chip.weights()
    for k in range(2):
        assert np.allclose(w1[k] - w0[k], total[k], rtol=1e-6, atol=1e-6)
    assert not trainer.acc.chi.any()  # nothing carried to the next send


def test_sgd_every_sends_at_the_epochs_end_and_the_float_baseline_sums_alike():
    trainer, array, d = _exact_sgd(4)  # 30 samples, batch 5: 6 batches, sends after 4 and 6
    trainer.run_epoch()
    assert array.calls["pulse"] == 2 and not trainer.acc.chi.any()
    a = train_float(d, 6, epochs=2, lr=0.5, batch=5, seed=0)
    assert np.array_equal(train_float(d, 6, epochs=2, lr=0.5, batch=5, seed=0, every=1)
                          .weights[0], a.weights[0])
    b = train_float(d, 6, epochs=2, lr=0.5, batch=5, seed=0, every=3)
    assert not np.array_equal(a.weights[0], b.weights[0])
    p = TrainParams(epochs=2, lr=0.5, batch=5, hidden=6, float_epochs=2, sgd_every=3,
                    sgd_momentum=0.0)
    same_sgd, _ = float_models(d, p, "sgd")
    same_mixed, _ = float_models(d, p, "mixed")
    assert np.array_equal(same_sgd.weights[0], b.weights[0])
    assert np.array_equal(same_mixed.weights[0], a.weights[0])  # only sgd sums
    with pytest.raises(TrainingInputError, match="sgd_every"):
        TrainParams(sgd_every=0)


def test_begin_reprograms_a_lone_device_around_its_failed_partner(monkeypatch):
    """``faulty_pairs="partner"``: after the first programming, the working device of
    each pair write-verify found half unresponsive is written again to ``level ± s w``;
    the trainer reads the intended weights, of both signs, on those pairs."""
    import protocols.training.start as start

    d = _data()
    failed = {}
    calls = []

    def fake_write_verify(array, targets, clock=None, params=None, progress=None,
                          response=None):
        flat = np.asarray(targets, float).ravel()
        if not failed:  # the first programming: every fourth programmed G- fails
            cells = np.flatnonzero(np.isfinite(flat))
            failed["cells"] = cells[1::8]
        go = np.isfinite(flat)
        go[failed["cells"]] = False
        array.g.ravel()[go] = flat[go]
        array.g.ravel()[failed["cells"]] = STUCK_AT
        calls.append(np.flatnonzero(np.isfinite(flat)))
        unresponsive = np.zeros(flat.size, bool)
        unresponsive[failed["cells"]] = np.isfinite(flat[failed["cells"]])
        return SimpleNamespace(response=ExactResponse(), pulses=np.ones(flat.size, int),
                               unresponsive=unresponsive.reshape(targets.shape),
                               target=targets, converged=~unresponsive.reshape(targets.shape))

    monkeypatch.setattr(start, "write_verify", fake_write_verify)
    array = ExactArray(np.full((16, 16), G_MIN))
    params = TrainParams(lr=0.5, batch=5, hidden=6, input_bits=None, float_epochs=5,
                         faulty_pairs="partner")
    t = start.begin(array, SHEET, d, params, "sgd")
    assert t.lone and len(calls) == 2
    skip = t.skip
    lone = lone_pairs(t.chip.mapping, skip)
    assert sum(int(fp.sum() + fm.sum()) for fp, fm in lone) > 0
    assert not np.intersect1d(calls[1], np.flatnonzero(skip)).size  # failed ones left alone
    wanted = init_weights((8, 6, 3), 0)
    for k, (fp, fm) in enumerate(lone):
        w = t.chip.weights()[k]
        clip = t.chip.mapping.tiles[k].w_clip
        both = fp | fm
        assert np.allclose(w[both], np.clip(wanted[k], -clip, clip)[both], atol=1e-9)
    floor_t = start.begin(ExactArray(np.full((16, 16), G_MIN)), SHEET, d,
                          TrainParams(lr=0.5, batch=5, hidden=6, input_bits=None,
                                      float_epochs=5, faulty_pairs="floor"), "sgd")
    assert not floor_t.lone and len(calls) == 3  # one programming, no second pass


def test_method_defaults_for_faulty_pairs_and_the_sgd_zone():
    """Every method uses a failed device's partner alone, sgd rounds to one granularity
    step and sends a momentum of 0.9 by default (measured, docs/training.md); the floor
    stays an option."""
    p = TrainParams()
    assert p.faulty_pairs_for("sgd") == "partner" and p.sgd_zone == 1.0
    assert p.sgd_momentum == 0.9
    assert all(p.faulty_pairs_for(m) == "partner" for m in ("mixed", "hybrid", "chip-in-loop"))
    assert TrainParams(faulty_pairs="floor").faulty_pairs_for("mixed") == "floor"
    assert TrainParams(faulty_pairs="floor").faulty_pairs_for("sgd") == "floor"
