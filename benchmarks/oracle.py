"""The oracle for write-verify: the same loop, given the truth.

``OracleResponse`` knows each cell's true bounds and rates and the chip's
response law, so it sends exactly the pulse whose mean lands on the target;
``TruthArray`` answers verify reads with the true conductance (no read noise,
no ADC) while still making the real read transaction for honest accounting.
What is left is the device's own stochasticity (cycle-to-cycle noise,
relaxation): the floor any verify loop on this device faces.
Benchmarks and tests only: it reads the simulator's hidden ground truth.
"""

from __future__ import annotations

import numpy as np

from protocols.write_verify.response import SET


class TruthArray:
    """An ArrayController whose reads return the simulated die's true conductance."""

    def __init__(self, array, simulation) -> None:
        self.array = array
        self.simulation = simulation

    def __getattr__(self, name):
        return getattr(self.array, name)

    @property
    def shape(self):
        return self.array.shape

    @property
    def transactions(self):
        return self.array.transactions

    @property
    def limits(self):
        return self.array.limits

    def read(self, mask=None, averages=None):
        self.array.read(mask, averages)  # same transaction and bench time as a real verify
        g = self.simulation.chip.truth().g
        return g if mask is None else np.where(mask, g, np.nan)

    def read_cells(self, cells, averages=None):
        self.array.read_cells(cells, averages)  # the real transaction, as read() makes
        return self.simulation.chip.truth().g.ravel()[np.asarray(cells, np.int64)]

    def pulse(self, volts, width=1e-6):
        return self.array.pulse(volts, width)

    def pulse_cells(self, cells, volts, width=1e-6):
        return self.array.pulse_cells(cells, volts, width)


class OracleResponse:
    """Exact inverse of the simulated response law, per cell."""

    def __init__(self, simulation, v_max: float, w_max: float) -> None:
        chip = simulation.chip
        t = chip.truth()
        self.spec = chip.spec
        self.g_min, self.g_max = t.g_min.ravel(), t.g_max.ravel()
        self.rate = np.stack([t.set_rate.ravel(), t.reset_rate.ravel()])
        self.v_max, self.w_max = v_max, w_max

    def _inverse_drive(self, polarity, d):
        r = self.spec.response
        th = np.where(polarity == SET, r.set_threshold, r.reset_threshold)
        ref = np.where(polarity == SET, r.set_reference, r.reset_reference)
        w0 = r.reference_width
        volts = th + (np.maximum(d, 0) ** (1 / r.amplitude_exponent)) * (ref - th)
        width = np.full(d.shape, w0)
        over = volts > self.v_max
        if np.any(over):
            d_vmax = ((self.v_max - th[over]) / (ref[over] - th[over])) ** r.amplitude_exponent
            width[over] = w0 * (d[over] / d_vmax) ** (1 / r.width_exponent)
            volts[over] = self.v_max
        volts = np.maximum(volts, th + 1e-3)
        return volts, np.clip(width, w0, self.w_max)

    def pulse_for(self, idx, polarity, wanted, g):
        sign = np.where(polarity == SET, 1.0, -1.0)
        goal = g + sign * wanted
        bound = np.where(polarity == SET, self.g_max[idx], self.g_min[idx])
        with np.errstate(divide="ignore", invalid="ignore"):  # a cell already at its bound
            keep = (bound - goal) / (bound - g)
        keep = np.clip(np.nan_to_num(keep, nan=1e-6, posinf=1.0, neginf=1e-6), 1e-6, 1.0)
        rate = self.rate[polarity, idx]
        if self.spec.response.law == "exp_saturating":
            d = -np.log(keep) / rate
        else:
            d = (1 - keep) / rate
        return self._inverse_drive(polarity, d)

    def observe(self, idx, polarity, volts, width, moved, g_before=None):
        pass  # it already knows

    def at_max_drive(self, volts, width, polarity):
        return (volts >= self.v_max - 1e-9) & (width >= self.w_max * (1 - 1e-9))

    def needs_pilot(self) -> bool:
        return False  # nothing to learn
