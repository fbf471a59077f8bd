"""The temperature correction for ``run_network(..., corrections=(...))``.

``run_network`` hands a correction each layer's tile column currents (after the
faulty cells' recorded deviation is taken out) without the inputs that made them,
so the correction is a map of those currents. From the model and the tile's
states it knows, per cell, the current at the die temperature over the current
at the reference; what it cannot know is how much of a column's current came
from which row. Two maps:

- ``column`` (default): per column, ``(I - o(T)) * K + o(T_ref)`` with ``K`` the
  column's current at the reference over its current at T for rows driven alike
  (or in proportion to ``layer_inputs``' mean, when given). Exact for a column
  whose cells share one factor; what is left is the cells' own spread weighted
  by the inputs (a few % of the current at 85 degC on RRAM).
- ``tile``: the least-squares linear estimate of the reference currents from all
  of the tile's columns at T, for inputs with the second moments of
  ``layer_inputs`` (typical inputs of each layer, e.g. :func:`layer_inputs` of a
  training batch): ``M = (A' S A + r) ^ -1 A' S B`` with ``A`` / ``B`` the tile at
  T / at the reference. The other columns say which rows were driven, which
  takes most of the cells' spread out too.

Offsets are a share of the column range (the model's), so they need the range
each layer runs at (``mvm_range_a``: one value, or one per layer, e.g. the
``mvm_ranges_a`` of a run at this temperature); without it they are left as they
are (at 85 degC about 0.3 % of the range, column to column).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from protocols.tempcal.params import TempcalError

METHODS = ("column", "tile")


@dataclass(frozen=True, eq=False)  # arrays inside: compared by identity
class TemperatureCorrection:
    """Maps raw tile currents at ``temperature_c`` to the model's reference (degC).

    Per layer: ``maps[k]`` a gain per tile column (``column``) or a (columns,
    columns) matrix (``tile``); ``offsets_a[k]`` (2, columns): the offsets at the
    temperature and at the reference (A; zeros when not known);
    ``current_gain[k]``: the tile's largest column current (every row driven) at the
    temperature over the largest at the reference (for the column range:
    :meth:`range_margin`).
    """

    temperature_c: float
    reference_c: float
    method: str
    maps: tuple[np.ndarray, ...]
    offsets_a: tuple[np.ndarray, ...]
    current_gain: tuple[float, ...]
    offsets_known: bool
    extrapolated: bool = False  # the temperature lies outside the sweep's

    def __call__(self, layer_index: int, currents: np.ndarray) -> np.ndarray:
        m, o = self.maps[layer_index], self.offsets_a[layer_index]
        i = np.asarray(currents, dtype=np.float64) - o[0]
        return (i * m if m.ndim == 1 else i @ m) + o[1]

    def range_margin(self, margin: float = 1.5) -> float:
        """The ``InferenceParams.range_margin`` that keeps ``margin`` of headroom over the
        currents the targets predict, now that the temperature scales them: an ADC
        that clips cannot be corrected afterwards."""
        return float(margin * max(1.0, *self.current_gain))

    def summary(self) -> dict[str, Any]:
        return {"temperature_c": self.temperature_c, "reference_c": self.reference_c,
                "method": self.method, "offsets_known": self.offsets_known,
                "extrapolated": self.extrapolated,
                "current_gain": [round(g, 4) for g in self.current_gain]}


def layer_inputs(network, x: np.ndarray) -> tuple[np.ndarray, ...]:
    """Each layer's inputs in the float network for a batch ``x`` (n, inputs): the input
    statistics ``layer_inputs=`` takes (use a training batch, not the test set)."""
    a = network.check_inputs(x)
    out = []
    for layer in network.layers:
        out.append(a)
        a = np.maximum(a @ layer.weights + layer.bias, 0.0) if layer.activation == "relu" \
            else a @ layer.weights + layer.bias
    return tuple(out)


def _encoded(a: np.ndarray) -> np.ndarray:
    """Inputs as the forward pass drives them: each vector over its largest |value|,
    split into positive and negative passes when it has negative values."""
    a = np.asarray(a, dtype=np.float64)
    peak = np.abs(a).max(axis=1)
    u = a / np.where(peak > 0, peak, 1.0)[:, None]
    return np.vstack([np.maximum(u, 0), np.maximum(-u, 0)]) if np.any(u < 0) else u


def _ranges(mvm_range_a, layers: int) -> list[float | None]:
    if mvm_range_a is None or np.ndim(mvm_range_a) == 0:
        return [None if mvm_range_a is None else float(mvm_range_a)] * layers
    values = list(mvm_range_a)
    if len(values) != layers:
        raise TempcalError(f"mvm_range_a: one range per layer ({layers}), got {len(values)}")
    return [None if v is None else float(v) for v in values]


def _tile_map(a: np.ndarray, b: np.ndarray, inputs, method: str, ridge: float):
    """Per-column gains or the tile matrix, from the tile at T (``a``) and at the
    reference (``b``), (rows, columns) each."""
    if method == "tile":
        u = _encoded(inputs)
        s = (u.T @ u) / u.shape[0]
        lhs = a.T @ s @ a
        lhs = lhs + ridge * max(float(np.trace(lhs)) / lhs.shape[0], 1e-300) * np.eye(lhs.shape[0])
        return np.linalg.solve(lhs, a.T @ s @ b)
    w = np.ones(a.shape[0]) if inputs is None else _encoded(inputs).mean(axis=0)
    at, bt = w @ a, w @ b
    return np.where(at > 0, bt / np.where(at > 0, at, 1.0), 1.0)


def _check_inputs(method, inputs, tiles):
    if method not in METHODS:
        raise TempcalError(f"method {method!r}: choose {' or '.join(METHODS)}")
    if inputs is None:
        if method == "tile":
            raise TempcalError("method 'tile' needs layer_inputs: typical inputs of every "
                               "layer (protocols.tempcal.layer_inputs(network, x_train))")
        return [None] * len(tiles)
    inputs = list(inputs)
    if len(inputs) != len(tiles):
        raise TempcalError(f"layer_inputs: one batch per layer ({len(tiles)}), got {len(inputs)}")
    for k, (batch, tile) in enumerate(zip(inputs, tiles, strict=True)):
        if np.ndim(batch) != 2 or np.shape(batch)[1] != tile.shape[0]:
            raise TempcalError(f"layer_inputs[{k}]: shape (n, {tile.shape[0]}), got "
                               f"{np.shape(batch)}")
    return inputs


def temperature_correction(model, temperature_c: float, mapping, *, method: str = "column",
                           layer_inputs=None, mvm_range_a=None,
                           ridge: float = 1e-3) -> TemperatureCorrection:
    """The correction at ``temperature_c`` (degC, the die's) for ``mapping``'s tiles.

    Each tile's cells are taken in the state the model measured where the mapping
    agrees (the same programming, drifted), else at the mapping's expected
    conductances; their coefficients follow (:meth:`TemperatureModel.coefficients`).
    ``method``, ``layer_inputs``, ``mvm_range_a``: see the module docstring;
    ``ridge``: the ``tile`` fit's regularisation, a share of its mean signal power.
    """
    if tuple(mapping.array_shape) != model.shape:
        raise TempcalError(f"the model is for a {model.shape[0]} x {model.shape[1]} array, the "
                           f"mapping for {mapping.array_shape[0]} x {mapping.array_shape[1]}")
    inputs = _check_inputs(method, layer_inputs, mapping.tiles)
    ranges = _ranges(mvm_range_a, len(mapping.tiles))
    t = float(temperature_c)
    g = model.state(mapping.expected_conductances()).reshape(model.shape)
    factor = model.mvm_factor(t, g).reshape(model.shape)
    dev = np.zeros(model.shape) if mapping.corrections is None else mapping.corrections
    scaled = np.isfinite(model.mvm_range_a)
    known = not scaled or all(r is not None for r in ranges)
    maps, offsets, gains = [], [], []
    for tile, batch, rng in zip(mapping.tiles, inputs, ranges, strict=True):
        b = tile.block(g) - tile.block(dev)
        a = tile.block(g * factor) - tile.block(dev)
        maps.append(_tile_map(a, b, batch, method, ridge))
        cols = slice(*tile.cols)
        scale = (rng if rng is not None else 0.0) if scaled else 1.0
        offsets.append(np.stack([model.mvm_offsets(t)[cols], model.mvm_offsets(
            model.reference_c)[cols]]) * scale)
        gains.append(float(a.sum(axis=0).max() / max(float(b.sum(axis=0).max()), 1e-300)))
    return TemperatureCorrection(temperature_c=t, reference_c=model.reference_c, method=method,
                                 maps=tuple(maps), offsets_a=tuple(offsets),
                                 current_gain=tuple(gains), offsets_known=known,
                                 extrapolated=not (model.fit_range_c[0] - 0.5 <= t
                                                   <= model.fit_range_c[1] + 0.5))
