"""(for the insitu.py wiring) sgd with momentum on an exact array: what is sent is the
velocity, and a checkpoint carries it."""

import numpy as np

from protocols.training import InSitu, TrainParams, init_weights
from protocols.training.dataset import TrainData
from protocols.training.layout import training_mapping, with_weights
from tests.protocols.training.fakes import SHEET, ExactArray, ExactResponse


def test_sgd_momentum_velocity_is_sent_and_checkpointed():
    rng = np.random.default_rng(0)
    data = TrainData(rng.random((20, 8)), rng.integers(0, 3, 20), rng.random((6, 8)),
                     rng.integers(0, 3, 6), "fake")
    mapping = with_weights(training_mapping(SHEET, (16, 16), (8, 6, 3), (2.0, 2.0)),
                           init_weights((8, 6, 3), 1))
    g = np.nan_to_num(mapping.targets, nan=1e-6)
    params = TrainParams(batch=5, hidden=6, sgd_momentum=0.5, sgd_zone=0.01, lr=0.5,
                         input_bits=None)
    t = InSitu(ExactArray(g), data, params, rule="sgd", mapping=mapping,
               biases=[np.zeros(6), np.zeros(3)], response=ExactResponse())
    t.step(data.x_train[:5], data.y_train[:5])
    assert np.abs(t.momentum.velocity).max() > 0
    arrays, _ = t.to_arrays()
    again = InSitu(ExactArray(g), data, params, rule="sgd", mapping=mapping,
                   biases=[np.zeros(6), np.zeros(3)], response=ExactResponse(),
                   velocity=arrays["velocity"])
    assert np.array_equal(again.momentum.velocity, t.momentum.velocity)
