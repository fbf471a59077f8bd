"""An exact trainable crossbar and a response model that asks exactly what it wants,
so an update rule's arithmetic is checked without device physics."""

from __future__ import annotations

import numpy as np

from instruments.datasheet import load_datasheet

SHEET = load_datasheet("rram")
US = 1e-6


class ExactArray:
    """Reads return G, MVM x @ G, the transposed MVM G @ v; a pulse of v volts moves a
    cell by v uS (signed). ``transposed=False``: a controller without the backward."""

    def __init__(self, g: np.ndarray, transposed: bool = True) -> None:
        self.g = np.array(g, np.float64)
        self.limits = SHEET.limits
        self.calls = {"mvm": 0, "mvm_transposed": 0, "read": 0, "pulse": 0}
        self.pulsed = 0
        if transposed:
            self.mvm_transposed = self._mvm_transposed

    @property
    def shape(self):
        return self.g.shape

    @property
    def transactions(self) -> int:
        return sum(self.calls.values())

    def read(self, mask=None, averages=None):
        self.calls["read"] += 1
        return self.g.copy() if mask is None else np.where(mask, self.g, np.nan)

    def read_cells(self, cells, averages=None):
        self.calls["read"] += 1
        return self.g.ravel()[np.asarray(cells)].copy()

    def mvm(self, x):
        self.calls["mvm"] += 1
        return np.asarray(x, np.float64) @ self.g

    def _mvm_transposed(self, v):
        self.calls["mvm_transposed"] += 1
        return np.asarray(v, np.float64) @ self.g.T

    def pulse_cells(self, cells, volts, width=1e-6):
        self.calls["pulse"] += 1
        flat = self.g.ravel()
        flat[np.asarray(cells)] += np.asarray(volts) * US
        self.pulsed += int(np.count_nonzero(volts))
        return int(np.count_nonzero(volts))


class ExactResponse:
    """Asks |wanted| / 1 uS volts; records what it was told."""

    def __init__(self) -> None:
        self.observed = []

    def pulse_for(self, idx, polarity, wanted, g):
        return np.asarray(wanted) / US, np.full(len(idx), 1e-6)

    def observe(self, idx, polarity, volts, width, moved, g_before=None):
        self.observed.append((np.array(idx), np.array(moved)))

    def to_arrays(self):
        return {}
