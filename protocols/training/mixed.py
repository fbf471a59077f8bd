"""Mixed-precision training (Nandakumar et al., Frontiers in Neuroscience 2020).

Every device has a digital high-precision accumulator ``chi`` (S) that collects the
conductance change its gradient asks for; a device is pulsed only when ``|chi|``
reaches the programming granularity ``eps``: it is asked to move by ``n eps``
(``n = floor(|chi| / eps)``, at most ``max_steps``) and ``n eps`` leaves the
accumulator, as in the paper (the device's error shows up in the next gradients, not
in ``chi``). Forward and backward passes are the chip's.
"""

from __future__ import annotations

import numpy as np

MAX_STEPS = 4  # granularity steps one pulse is asked for, at most


class Accumulator:
    """The per-device digital accumulators (S), flat; part of a training checkpoint."""

    def __init__(self, size: int, chi: np.ndarray | None = None) -> None:
        self.chi = np.zeros(size) if chi is None else np.array(chi, np.float64)

    def add(self, cells: np.ndarray, changes: np.ndarray) -> None:
        np.add.at(self.chi, cells, changes)

    def fire(self, cells: np.ndarray, eps: float,
             max_steps: int = MAX_STEPS) -> tuple[np.ndarray, np.ndarray]:
        """Devices among ``cells`` whose accumulator reached ``eps``: (cells, signed
        change asked of them, S); what they are asked leaves the accumulator."""
        chi = self.chi[cells]
        steps = np.minimum(np.floor(np.abs(chi) / eps), max_steps)
        fire = steps >= 1
        asked = np.sign(chi[fire]) * steps[fire] * eps
        self.chi[cells[fire]] -= asked
        return cells[fire], asked
