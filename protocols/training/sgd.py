"""Online SGD with pulse updates (Li et al., Nature Communications 2018).

Each batch's gradient step ``-lr dW`` goes straight to the devices: half of it up on
one device of a pair, half down on the other, one pulse each (one SET and one RESET
batch of the same transaction), then one array read. What the devices actually did
is whatever they did: stuck cells, nonlinear and asymmetric steps are not corrected,
the next gradient sees them (the algorithm is blind to faults). A device change
under an eighth of the programming granularity is dropped rather than sent as a pulse
too weak to move a device visibly (Li of a step: Li's scheme quantises the same way
through its gate voltage).
"""

from __future__ import annotations

import numpy as np

DEAD_ZONE = 0.125  # of the granularity: smaller changes are not sent


def sgd_changes(wanted: np.ndarray, granularity_s: float,
                rng: np.random.Generator | None = None) -> np.ndarray:
    """The device changes (S) SGD sends: ``wanted`` where at least ``DEAD_ZONE`` steps;
    under it, zero — or, given ``rng``, the dead zone's size with probability
    ``|wanted| / dead zone`` (stochastic rounding: the expected change is the gradient's,
    as when every device is pulsed every batch, at a fraction of the pulses)."""
    wanted = np.asarray(wanted, np.float64)
    zone = DEAD_ZONE * granularity_s
    small = np.abs(wanted) < zone
    if rng is None:
        return np.where(small, 0.0, wanted)
    fire = rng.random(wanted.shape) < np.abs(wanted) / zone
    return np.where(small, np.where(fire, np.sign(wanted) * zone, 0.0), wanted)
