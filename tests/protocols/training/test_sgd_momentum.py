"""SGD's host-side momentum: a dampened velocity per weight, the same expected update."""

from __future__ import annotations

import numpy as np
import pytest

from protocols.training import TrainingInputError, TrainParams
from protocols.training.sgd import Momentum
from tests.protocols.training.fakes import US


def test_momentum_is_a_dampened_velocity_per_weight():
    m = Momentum(6, 0.5)
    cells = np.array([1, 4])
    assert np.allclose(m.step(cells, np.array([2.0, -4.0]) * US) / US, [1.0, -2.0])
    assert np.allclose(m.step(cells, np.array([2.0, 4.0]) * US) / US, [1.5, 1.0])
    assert np.allclose(m.velocity[[0, 2, 3, 5]], 0.0)  # other weights untouched
    again = Momentum(6, 0.5, m.velocity)  # a checkpoint's velocity continues
    assert np.allclose(again.step(cells, np.zeros(2)) / US, [0.75, 0.5])


def test_momentum_keeps_the_expected_update_and_cancels_flips():
    m = Momentum(1, 0.9)
    steady = sum(m.step(np.array([0]), np.array([1.0]))[0] for _ in range(200))
    assert steady == pytest.approx(200 - 0.9 * (1 - 0.9 ** 200) / (1 - 0.9), rel=1e-9)
    flips = Momentum(1, 0.9)
    sent = [flips.step(np.array([0]), np.array([(-1.0) ** i]))[0] for i in range(50)]
    assert max(abs(s) for s in sent[40:]) < 0.055  # (1 - b) / (1 + b) of a flip


def test_zero_momentum_is_the_step_itself():
    m = Momentum(3, 0.0)
    step = np.array([1.0, -2.0]) * US
    assert np.array_equal(m.step(np.array([0, 2]), step), step)
    assert not m.velocity.any()


@pytest.mark.parametrize("bad", [-0.1, 1.0, float("nan"), "0.9"])
def test_params_refuse_bad_momentum(bad):
    with pytest.raises(TrainingInputError, match="sgd_momentum"):
        TrainParams(sgd_momentum=bad)


def test_the_float_baseline_of_sgd_takes_the_same_momentum():
    """sgd's float reference is trained alike (its momentum), the other methods' and the
    ex-situ network plainly; momentum 0 is plain SGD."""
    from protocols.training.baseline import train_float
    from protocols.training.start import float_models
    from tests.protocols.training.test_rules import _data

    d = _data()
    common = {"epochs": 2, "lr": 0.5, "batch": 5, "seed": 0}
    plain = train_float(d, 6, **common)
    zero = train_float(d, 6, momentum=0.0, **common)
    assert all(np.array_equal(a, b) for a, b in zip(plain.weights, zero.weights, strict=True))
    heavy = train_float(d, 6, momentum=0.9, **common)
    assert not np.array_equal(heavy.weights[0], plain.weights[0])
    p = TrainParams(epochs=2, lr=0.5, batch=5, hidden=6, float_epochs=2, sgd_momentum=0.9)
    same_sgd, ex_situ = float_models(d, p, "sgd")
    same_mixed, _ = float_models(d, p, "mixed")
    assert np.array_equal(same_sgd.weights[0], heavy.weights[0])
    assert np.array_equal(same_mixed.weights[0], plain.weights[0])
    assert np.array_equal(ex_situ.weights[0], plain.weights[0])
