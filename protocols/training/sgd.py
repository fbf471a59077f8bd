"""Online SGD with pulse updates (Li et al., Nature Communications 2018).

Each batch's gradient step ``-lr dW`` goes straight to the devices: half of it up on
one device of a pair, half down on the other, one pulse each (one SET and one RESET
batch of the same transaction), then one array read. What the devices actually did
is whatever they did: stuck cells, nonlinear and asymmetric steps are not corrected,
the next gradient sees them (the algorithm is blind to faults beyond what write-verify
measured: a pair it found half unresponsive is its working device alone by default,
``TrainParams.faulty_pairs``).
A device change under the zone (``TrainParams.sgd_zone``: one granularity step by default)
is rounded stochastically to the zone or to nothing, so the expected change is the
gradient's at a fraction of the pulses, each large enough to stand above the
cycle-to-cycle scatter (Li's scheme quantises its steps the same way, through its gate
voltage). ``TrainParams.sgd_every`` > 1 sums several batches' steps on the host before a
send (cleared at each send: no residue is carried, unlike mixed precision).
``TrainParams.sgd_momentum`` beta > 0: what is sent is the host's velocity of the steps,
``v = beta v + (1 - beta) step`` per weight (:class:`Momentum`: the same expected update,
its batch-to-batch noise averaged, so a weight is not pulsed up and down by gradients
that cancel, each pulse paying the device's cycle-to-cycle scatter).
"""

from __future__ import annotations

import numpy as np

from protocols.training.params import SGD_ZONE

DEAD_ZONE = SGD_ZONE  # of the granularity: smaller changes are rounded (TrainParams.sgd_zone)


def sgd_changes(wanted: np.ndarray, granularity_s: float,
                rng: np.random.Generator | None = None, zone: float = DEAD_ZONE) -> np.ndarray:
    """The device changes (S) SGD sends: ``wanted`` where at least ``zone`` steps;
    under it, zero — or, given ``rng``, the dead zone's size with probability
    ``|wanted| / dead zone`` (stochastic rounding: the expected change is the gradient's,
    as when every device is pulsed every batch, at a fraction of the pulses)."""
    wanted = np.asarray(wanted, np.float64)
    zone = zone * granularity_s
    small = np.abs(wanted) < zone
    if rng is None:
        return np.where(small, 0.0, wanted)
    fire = rng.random(wanted.shape) < np.abs(wanted) / zone
    return np.where(small, np.where(fire, np.sign(wanted) * zone, 0.0), wanted)


class Momentum:
    """The host's velocity (S) of sgd's device steps, one per weight, kept at its G+ cell
    (flat index) as mixed precision keeps its accumulators: ``v = beta v + (1 - beta)
    step`` (dampened, so the expected update is the step's and the learning rate
    keeps its meaning); beta 0: the step itself, no state."""

    def __init__(self, size: int, beta: float, velocity: np.ndarray | None = None) -> None:
        self.beta = float(beta)
        self.velocity = (np.zeros(size) if velocity is None
                         else np.array(velocity, np.float64).ravel())

    def step(self, cells: np.ndarray, wanted: np.ndarray) -> np.ndarray:
        """This batch's steps (S) of the weights at ``cells`` in, their velocity out."""
        if self.beta == 0:
            return np.asarray(wanted, np.float64)
        v = self.beta * self.velocity[cells] + (1.0 - self.beta) * np.asarray(wanted)
        self.velocity[cells] = v
        return v.copy()
