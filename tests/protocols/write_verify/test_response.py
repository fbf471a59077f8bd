"""The learned pulse-response model, against synthetic soft-bound cells (no simulator).

Cells follow G' = B - (B - G) exp(-r d) (SET) and G' = B + (G - B) exp(-r d)
(RESET) with per-cell r and B spread lognormally, 30 % cycle-to-cycle noise
on each step and an additive verify noise: the law the model assumes, with
parameters it must discover.
"""

from __future__ import annotations

import numpy as np
import pytest

from protocols.write_verify.response import RESET, SET, AdaptiveResponse, PulseModel

US = 1e-6
MODEL = PulseModel(v_max=4.0, w_max=100e-6)


class Cells:
    def __init__(self, n: int, seed: int = 0, stuck: np.ndarray | None = None) -> None:
        rng = np.random.default_rng(seed)
        self.rng = rng
        spread = lambda: np.exp(0.3 * rng.standard_normal(n))  # noqa: E731
        self.rate = np.stack([0.10 * spread(), 0.06 * spread()])
        self.bound = np.stack([90 * US * spread(), 0.45 * US * spread()])
        self.g = np.full(n, 25 * US)
        self.stuck = np.zeros(n, bool) if stuck is None else stuck

    def pulse(self, idx, polarity, volts, width):
        d = MODEL.drive(polarity, volts, width)
        r, b = self.rate[polarity, idx], self.bound[polarity, idx]
        g = self.g[idx]
        mean = b + (g - b) * np.exp(-r * d)
        step = mean - g
        new = mean + self.rng.standard_normal(idx.size) * (0.3 * np.abs(step) + 0.08 * US)
        self.g[idx] = np.where(self.stuck[idx], g, new)

    def read(self, idx):
        return self.g[idx] + 0.2 * US * self.rng.standard_normal(idx.size)


def first_steps(cells, model, n, rng):
    """A pilot: one pulse per cell, wanted moves spread over a 9x range."""
    idx = np.arange(n)
    polarity = np.where(np.arange(n) % 2 == 0, SET, RESET)
    wanted = 8 * US * np.exp(rng.uniform(-np.log(3), np.log(3), n))
    before = cells.read(idx)
    volts, width = model.pulse_for(idx, polarity, wanted, before)
    cells.pulse(idx, polarity, volts, width)
    moved = (cells.read(idx) - before) * np.where(polarity == SET, 1, -1)
    model.observe(idx, polarity, volts, width, moved, before)


def test_population_law_is_recovered_from_first_steps():
    n = 4000
    cells, model = Cells(n, seed=1), AdaptiveResponse(n, MODEL)
    first_steps(cells, model, n, np.random.default_rng(2))
    assert model.law[SET] is not None and model.law[RESET] is not None
    # rate and bound trade off against each other over the drives seen; what must hold is
    # the curve: the median cell's mean move at each drive, from small steps to saturation
    g = 25 * US
    for p in (SET, RESET):
        r, b = model.law[p]
        for d in (0.5, 2.0, 8.0, 30.0):
            truth = np.median(np.abs(cells.bound[p] - g) * -np.expm1(-cells.rate[p] * d))
            assert abs(b - g) * -np.expm1(-r * d) == pytest.approx(truth, rel=0.2)


def test_pulse_for_inverts_the_law():
    n = 6
    model = AdaptiveResponse(n, MODEL)
    model.law = [(0.1, 90 * US), (0.06, 0.45 * US)]
    model.factor[SET, :, 0] = np.log([0.5, 1, 2, 1, 1, 1])
    model.cov[:] = 0.0  # cells fully learned: aim the whole way
    idx = np.arange(n)
    polarity = np.array([SET, SET, SET, RESET, RESET, SET])
    g = np.array([25, 25, 25, 30, 10, 25]) * US
    wanted = np.array([5, 5, 5, 10, 5, 80]) * US
    volts, width = model.pulse_for(idx, polarity, wanted, g)
    d = MODEL.drive(polarity, volts, width)
    r = np.array([0.05, 0.1, 0.2, 0.06, 0.06, 0.1])
    span = np.where(polarity == SET, 90 * US - g, g - 0.45 * US)
    predicted = span * -np.expm1(-r * d)
    assert predicted[:5] == pytest.approx(wanted[:5], rel=1e-6)
    # a slower cell gets a stronger pulse for the same move
    assert d[0] > d[1] > d[2]
    # beyond one pulse's reach (80 uS of a 65 uS span): the strongest pulse allowed
    assert model.at_max_drive(volts, width, polarity)[5]
    # a cell still uncertain aims short: an overshoot would cost a polarity switch onto
    # a response known even less
    model.cov[:, 1, :] = [0.1, 0.0, 0.1]
    volts_u, width_u = model.pulse_for(idx, polarity, wanted, g)
    d_u = MODEL.drive(polarity, volts_u, width_u)
    assert d_u[1] < d[1] and d_u[2] == pytest.approx(d[2])


def test_cells_are_learned_and_land_closer_with_each_pulse():
    n = 3000
    cells, model = Cells(n, seed=3), AdaptiveResponse(n, MODEL)
    rng = np.random.default_rng(4)
    first_steps(cells, model, n, rng)
    idx = np.arange(n)

    def aim_error():
        """Median relative error of the mean move of the pulse chosen for a 6 uS SET."""
        polarity = np.full(n, SET)
        volts, width = model.pulse_for(idx, polarity, np.full(n, 6 * US), cells.g)
        d = MODEL.drive(polarity, volts, width)
        mean = (cells.bound[SET] - cells.g) * -np.expm1(-cells.rate[SET] * d)
        return np.median(np.abs(mean / (6 * US) - 1))

    before = aim_error()
    for _ in range(4):
        # a fresh target 3-12 uS away, in either direction, for every cell
        g = cells.read(idx)
        wanted = rng.uniform(3, 12, n) * US
        polarity = np.where((rng.random(n) < 0.5) & (g - wanted > 2 * US), RESET, SET)
        volts, width = model.pulse_for(idx, polarity, wanted, g)
        cells.pulse(idx, polarity, volts, width)
        moved = (cells.read(idx) - g) * np.where(polarity == SET, 1, -1)
        model.observe(idx, polarity, volts, width, moved, g)
    # the population law alone misses the median cell's move by ~40 % (30 % spread in
    # both rate and bound); four noisy steps of its own halve that
    assert before > 0.3
    assert aim_error() < 0.55 * before


def test_a_stuck_cell_reaches_the_strongest_pulse_within_a_few_pulses():
    n = 200
    stuck = np.zeros(n, bool)
    stuck[:10] = True
    cells, model = Cells(n, seed=5, stuck=stuck), AdaptiveResponse(n, MODEL)
    first_steps(cells, model, n, np.random.default_rng(6))
    idx = np.arange(10)
    polarity = np.full(10, SET)
    pulses = 0
    while True:
        g = cells.read(idx)
        volts, width = model.pulse_for(idx, polarity, np.full(10, 1.5 * US), g)
        if np.all(model.at_max_drive(volts, width, polarity)) or pulses > 10:
            break
        cells.pulse(idx, polarity, volts, width)
        model.observe(idx, polarity, volts, width, cells.read(idx) - g, g)
        pulses += 1
    assert pulses <= 5


def known_model(n=4):
    model = AdaptiveResponse(n, MODEL)
    model.law = [(0.1, 90 * US), (0.06, 0.45 * US)]
    model._frozen = [True, True]
    return model


def test_a_surprising_step_reopens_a_confident_but_wrong_belief():
    model = known_model()
    model.factor[SET, :, 0] = np.log(0.25)  # believed four times slower than it is
    model.cov[SET] = [1e-4, 0.0, 1e-4]  # ... and confidently so
    idx, polarity = np.arange(4), np.full(4, SET)
    g = np.full(4, 20 * US)
    volts, width = model.pulse_for(idx, polarity, np.full(4, 3 * US), g)
    d = MODEL.drive(polarity, volts, width)
    moved = (90 * US - g) * -np.expm1(-0.1 * d)  # what a cell at the population law does
    model.observe(idx, polarity, volts, width, moved, g)
    # a real move back toward the truth (log factor 0), not the nudge of a filter that
    # trusts its belief (about 0.05 with this variance)
    assert np.all(model.factor[SET, :, 0] > np.log(0.25) + 0.3)


def test_a_small_move_lost_in_noise_is_not_taken_for_a_stuck_cell():
    model = known_model()
    idx, polarity = np.arange(4), np.full(4, SET)
    g = np.full(4, 20 * US)
    volts, width = model.pulse_for(idx, polarity, np.full(4, 0.3 * US), g)  # below read noise
    model.observe(idx, polarity, volts, width, np.zeros(4), g)
    assert np.all(model.quiet[SET] == 0)
    assert np.all(model.factor[SET, :, 0] > -np.log(2.0) / 2)  # no step-up halving
    # the same silence after a clearly visible move was expected: step up
    volts, width = model.pulse_for(idx, polarity, np.full(4, 5 * US), g)
    model.observe(idx, polarity, volts, width, np.zeros(4), g)
    assert np.all(model.quiet[SET] == 1) and np.all(model.factor[SET, :, 0] < -0.5)


def learned_model(n=400, seed=7):
    """A model after a pilot and two rounds of steps of its own, neither law frozen."""
    cells, model = Cells(n, seed=seed), AdaptiveResponse(n, MODEL)
    rng = np.random.default_rng(seed + 1)
    first_steps(cells, model, n, rng)
    for _ in range(2):
        idx = np.arange(n)
        g = cells.read(idx)
        polarity = np.where(rng.random(n) < 0.5, RESET, SET)
        volts, width = model.pulse_for(idx, polarity, rng.uniform(1, 6, n) * US, g)
        cells.pulse(idx, polarity, volts, width)
        moved = (cells.read(idx) - g) * np.where(polarity == SET, 1, -1)
        model.observe(idx, polarity, volts, width, moved, g)
    return cells, model, rng


def assert_same_state(a, b):
    arrays_a, arrays_b = a.to_arrays(), b.to_arrays()
    assert arrays_a.keys() == arrays_b.keys()
    for name, value in arrays_a.items():
        assert np.array_equal(value, arrays_b[name], equal_nan=True), name


def test_needs_pilot_until_a_law_is_fitted():
    model = AdaptiveResponse(200, MODEL)
    assert model.needs_pilot()
    first_steps(Cells(200, seed=2), model, 200, np.random.default_rng(3))
    assert not model.needs_pilot()


@pytest.mark.parametrize("set_width_max", [None, 20e-6])
def test_round_trip_restores_identical_pulse_choices(tmp_path, set_width_max):
    """to_arrays() holds only arrays and plain numbers (an HDF5 group can keep them);
    from_arrays() gives a model that chooses the same pulses and learns the same way."""
    import dataclasses

    h5py = pytest.importorskip("h5py")
    cells, model, rng = learned_model()
    model.model = dataclasses.replace(model.model, set_width_max=set_width_max)
    assert model.law[SET] is not None and not all(model._frozen)
    with h5py.File(tmp_path / "response.h5", "w") as f:
        group = f.create_group("response")
        for name, value in model.to_arrays().items():
            group.create_dataset(name, data=value)
    with h5py.File(tmp_path / "response.h5", "r") as f:
        restored = AdaptiveResponse.from_arrays({k: v[()] for k, v in f["response"].items()})
    assert restored.model == model.model and restored.law == model.law
    assert_same_state(restored, model)
    n = model.size
    idx = np.arange(n)
    for _ in range(3):  # same choices now, and after learning from the same steps
        g = cells.read(idx)
        polarity = np.where(rng.random(n) < 0.5, RESET, SET)
        wanted = rng.uniform(1, 6, n) * US
        volts, width = model.pulse_for(idx, polarity, wanted, g)
        volts_r, width_r = restored.pulse_for(idx, polarity, wanted, g)
        assert np.array_equal(volts, volts_r) and np.array_equal(width, width_r)
        cells.pulse(idx, polarity, volts, width)
        moved = (cells.read(idx) - g) * np.where(polarity == SET, 1, -1)
        model.observe(idx, polarity, volts, width, moved, g)
        restored.observe(idx, polarity, volts, width, moved, g)
        assert_same_state(restored, model)


def test_a_fresh_model_round_trips_too():
    model = AdaptiveResponse(10, MODEL, initial_gain=3e-6, noise=0.5e-6)
    restored = AdaptiveResponse.from_arrays(model.to_arrays())
    assert restored.needs_pilot() and restored.initial_gain == 3e-6 and restored.noise == 0.5e-6
    assert_same_state(restored, model)
