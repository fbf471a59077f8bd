"""A die's temperature model, fitted from a sweep: cells, levels and columns.

What MVM column j returns at temperature T, relative to the reference temperature:

    I_j(T) = m_j(T) g_j(T) sum_i x_i G_ij exp(c_ij u(T)) + o_j(T) * range

- **cells**: ``ln G(T) - ln G(T_ref) = c_ij u(T)``, one coefficient per cell, with
  ``u = T - T_ref`` (K; ``linear``: a constant temperature coefficient, as metallic
  filaments have) or ``u = (1/T_ref - 1/T) / k_B`` (1/eV; ``arrhenius``: c is an
  activation energy, as in amorphous PCM). The sweep decides (``law="auto"``): the
  law whose per-cell fits leave the smaller chi-square. Per cell because the
  coefficient spreads from device to device; the per-**level** law
  ``lambda(ln G)`` (a linear spline over the die's levels) carries it to another
  state: a cell reprogrammed from G to G' gets ``c + lambda(G') - lambda(G)``.
  Where reads are too noisy to tell a cell from its level (PCM's 1/f noise on low
  levels), its own deviation is shrunk toward the level law by how well it was
  measured (empirical Bayes).
- **columns**: the read-out chain's gain ``g_j = exp(a_j u)`` (the column-common
  part of the cells' coefficients, mean 0 over the columns: a die-wide part is
  the level law's), its offsets on reads ``b_j(T)`` (S) and on MVM ``o_j(T)``
  (share of the column range), and the ratio ``m_j(T)`` of the MVM to the read
  gain, each a line in T.

The model is an artifact of a ``tempcal`` run (:meth:`TemperatureModel.to_arrays`);
:meth:`TemperatureModel.correction` makes the ``run_network`` correction for a
temperature and :func:`protocols.tempcal.estimate_temperature` inverts it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from protocols.tempcal.lsq import hat_basis
from protocols.tempcal.params import LAWS, TempcalError

BOLTZMANN_EV = 8.617333262e-5  # eV/K
KELVIN = 273.15
FORMAT = 1
FLOOR_SHARE = 0.01  # cells below this share of the die's 99th percentile read: no ratio
OUTLIER_SIGMAS = 6.0  # cells this far from their column + level law are left out of it


def law_variable(law: str, temperature_c, reference_c: float) -> np.ndarray:
    """``u(T)`` of a law: K for ``linear``, 1/eV for ``arrhenius`` (0 at the reference)."""
    t = np.asarray(temperature_c, dtype=np.float64)
    if law == "linear":
        return t - reference_c
    return (1.0 / (reference_c + KELVIN) - 1.0 / (t + KELVIN)) / BOLTZMANN_EV


@dataclass(frozen=True, eq=False)  # arrays inside: compared by identity
class TemperatureModel:
    """One die's temperature law (see the module docstring). Units: degC, S, law units.

    ``g_calibration`` (rows, cols): each cell's read at the reference temperature at
    the end of the sweep, S; ``floor_s``: below it a cell's ratio was not measurable
    (its coefficient is the level law's); ``cell_coeff`` (rows, cols): each cell's
    coefficient without the column part;
    ``level_knots`` (ln S) / ``level_coeff``: the level law; ``level_noise``: the
    relative sigma of one read (the sweep's averages) at each knot.
    ``column_coeff`` (cols,): the read gain's coefficient; ``read_offset`` (cols, 2):
    S and S/K; ``mvm_offset`` (cols, 2): share of ``mvm_range_a`` and per K (amperes
    when the range is NaN, unknown); ``mvm_ratio_tc`` (cols,): 1/K.
    ``fit_range_c``: the chuck temperatures measured (degC); ``law_chi2``: the
    per-cell fits' reduced chi-square under each law of ``LAWS`` (NaN: not tried);
    ``offset_tie``: the share of the columns' own read intercepts the MVM offsets
    explain (near 1 when reads and MVM share the chain, as the fit assumed).
    """

    reference_c: float
    law: str
    g_calibration: np.ndarray
    floor_s: float
    cell_coeff: np.ndarray
    level_knots: np.ndarray
    level_coeff: np.ndarray
    level_noise: np.ndarray
    column_coeff: np.ndarray
    read_offset: np.ndarray
    mvm_offset: np.ndarray
    mvm_ratio_tc: np.ndarray
    mvm_range_a: float
    fit_range_c: tuple[float, float]
    law_chi2: tuple[float, float]
    read_averages: int
    offset_tie: float = float("nan")

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.g_calibration.shape[0]), int(self.g_calibration.shape[1]))

    @property
    def measured(self) -> np.ndarray:
        """Cells whose own coefficient was measured (bool, array shape)."""
        return self.g_calibration > self.floor_s

    def u(self, temperature_c) -> np.ndarray:
        return law_variable(self.law, temperature_c, self.reference_c)

    def level_law(self, g) -> np.ndarray:
        """The level law's coefficient at conductances ``g`` (S)."""
        x = np.log(np.maximum(np.asarray(g, dtype=np.float64), 1e-15))
        i0, i1, w0, w1 = hat_basis(x, self.level_knots)
        return self.level_coeff[i0] * w0 + self.level_coeff[i1] * w1

    def _cells(self, cells) -> np.ndarray:
        size = self.g_calibration.size
        return np.arange(size) if cells is None else np.asarray(cells, np.int64).ravel()

    def state(self, expected=None, cells=None) -> np.ndarray:
        """The cells' conductance at the reference temperature (S, flat): the calibration
        read where ``expected`` (S, flat, e.g. a mapping's targets) agrees with it within
        a factor of about 2 (the same state, drifted), else ``expected``."""
        idx = self._cells(cells)
        cal = self.g_calibration.ravel()[idx]
        if expected is None:
            return cal
        e = np.asarray(expected, dtype=np.float64).ravel()
        span = float(np.percentile(self.g_calibration, 99))
        same = ~np.isfinite(e) | (np.abs(cal - e) <= 0.5 * np.maximum(cal, e) + 0.02 * span)
        return np.where(same, cal, np.nan_to_num(e))

    def coefficients(self, g, cells=None) -> np.ndarray:
        """Each cell's coefficient (without its column's part) in state ``g`` (S, flat)."""
        idx = self._cells(cells)
        g = np.asarray(g, dtype=np.float64).ravel()
        cal = self.g_calibration.ravel()[idx]
        own = self.cell_coeff.ravel()[idx]
        known = cal > self.floor_s
        moved = self.level_law(g) - self.level_law(np.where(known, cal, 1.0))
        return np.where(known, own + moved, self.level_law(g))

    def _columns(self, cells) -> np.ndarray:
        return self._cells(cells) % self.shape[1]

    def read_gain_ln(self, temperature_c, cells=None) -> np.ndarray:
        return self.column_coeff[self._columns(cells)] * float(self.u(temperature_c))

    def read_offsets(self, temperature_c) -> np.ndarray:
        """Per column, what a read adds at ``temperature_c`` (S)."""
        dt = float(temperature_c) - self.reference_c
        return self.read_offset[:, 0] + self.read_offset[:, 1] * dt

    def mvm_offsets(self, temperature_c) -> np.ndarray:
        """Per column, the MVM offset: share of ``mvm_range_a`` (A if that is NaN)."""
        dt = float(temperature_c) - self.reference_c
        return self.mvm_offset[:, 0] + self.mvm_offset[:, 1] * dt

    def mvm_factor(self, temperature_c, g, cells=None) -> np.ndarray:
        """Per cell (flat) in state ``g``: MVM current at ``temperature_c`` over the
        current at the reference."""
        u = float(self.u(temperature_c))
        cols = self._columns(cells)
        ratio = 1.0 + self.mvm_ratio_tc[cols] * (float(temperature_c) - self.reference_c)
        return ratio * np.exp(self.column_coeff[cols] * u + self.coefficients(g, cells) * u)

    def predict_reads(self, temperature_c, g, cells=None) -> np.ndarray:
        """Noise-free reads (S, flat) of cells in state ``g`` at ``temperature_c``."""
        u = float(self.u(temperature_c))
        cols = self._columns(cells)
        ln = self.read_gain_ln(temperature_c, cells) + self.coefficients(g, cells) * u
        return np.asarray(g, np.float64).ravel() * np.exp(ln) + self.read_offsets(
            temperature_c)[cols]

    def rebased(self, reads_s, temperature_c: float) -> TemperatureModel:
        """The model with its cells' states taken from a whole-array read (S) at a known
        temperature near the reference (the chuck at home): the states drift and relax
        after the sweep, and the reference cells' thermometer reads the drift as a
        temperature change unless it compares with states measured at the same age."""
        reads = np.asarray(reads_s, dtype=np.float64)
        if reads.shape != self.shape:
            raise TempcalError(f"rebased: reads of shape {reads.shape}, the model's {self.shape}")
        u = float(self.u(temperature_c))
        old = self.g_calibration.ravel()
        gain = np.exp(self.read_gain_ln(temperature_c) + self.coefficients(old) * u)
        g = (np.nan_to_num(reads).ravel() - self.read_offsets(temperature_c)[
            self._columns(None)]) / gain
        return dataclasses.replace(self, g_calibration=np.maximum(g, 0.0).reshape(self.shape))

    def correction(self, temperature_c: float, mapping, **options):
        """The ``run_network`` correction at ``temperature_c`` for ``mapping``'s tiles:
        see :func:`protocols.tempcal.correction.temperature_correction`."""
        from protocols.tempcal.correction import temperature_correction
        return temperature_correction(self, temperature_c, mapping, **options)

    def summary(self) -> dict[str, Any]:
        top = self.fit_range_c[1]
        gain = np.exp(self.column_coeff * float(self.u(top)))
        known = self.measured
        return {"law": self.law, "reference_c": self.reference_c,
                "fit_range_c": list(self.fit_range_c),
                "law_chi2": dict(zip(LAWS, self.law_chi2, strict=True)),
                "offset_tie": self.offset_tie,
                "cells_measured": int(known.sum()), "cells": int(known.size),
                "cell_coeff_median": float(np.median(self.cell_coeff)),
                "cell_coeff_sigma": float(np.std(self.cell_coeff)),
                f"column_gain_sigma_at_{top:g}c": float(np.std(gain)),
                f"read_offset_sigma_s_at_{top:g}c": float(np.std(self.read_offsets(top))),
                "mvm_range_a": None if np.isnan(self.mvm_range_a) else self.mvm_range_a}

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain numpy arrays (an HDF5 group, ``np.savez``); :meth:`from_arrays` restores."""
        out = {f.name: np.asarray(getattr(self, f.name)) for f in dataclasses.fields(self)}
        out["law"] = np.array(self.law)
        out["format"] = np.array(FORMAT, dtype=np.int64)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any]) -> TemperatureModel:
        """The model :meth:`to_arrays` saved; a missing key or another format is one line."""
        names = [f.name for f in dataclasses.fields(cls)]
        missing = sorted(set(names + ["format"]) - set(arrays))
        if missing:
            raise TempcalError(f"not a temperature model: missing {', '.join(missing)}")
        if int(np.asarray(arrays["format"])) != FORMAT:
            raise TempcalError(f"temperature model format {arrays['format']!r}, expected {FORMAT}")
        a = {n: np.asarray(arrays[n]) for n in names}
        law = str(a["law"].item())
        if law not in LAWS:
            raise TempcalError(f"temperature model law {law!r}: expected one of {LAWS}")
        return cls(reference_c=float(a["reference_c"]), law=law, floor_s=float(a["floor_s"]),
                   fit_range_c=tuple(float(v) for v in a["fit_range_c"]),
                   law_chi2=tuple(float(v) for v in a["law_chi2"]),
                   mvm_range_a=float(a["mvm_range_a"]), read_averages=int(a["read_averages"]),
                   offset_tie=float(a["offset_tie"]),
                   **{n: a[n].astype(np.float64) for n in names if n not in (
                       "reference_c", "law", "floor_s", "fit_range_c", "law_chi2",
                       "mvm_range_a", "read_averages", "offset_tie")})
