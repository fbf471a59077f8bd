"""Network weights <-> conductance targets on differential pairs.

A weight matrix ``w`` of shape (inputs, outputs) computes ``y = x @ w``. On a
crossbar, input i drives word line i and output j is the difference of two
bit lines: ``G+`` in column 2j and ``G-`` in column 2j+1 (interleaved, so a
layer and its pairs sit in one array). Then ``y_j = x . (G+_j - G-_j) / scale``.

Scale choice: the largest kept weight magnitude ``w_clip`` maps to the whole
usable window, ``scale = (g_max - g_min) / w_clip`` (siemens per weight unit).
``w_clip`` is the ``clip_percentile`` of |w| (default 100: no clipping); weights
beyond it are clipped. For each weight one device of the pair carries it and
the other rests at ``g_min``: the least current, and the smallest drift in
absolute terms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from instruments.errors import UserError


class WeightMappingError(UserError, ValueError):
    """Weights or window cannot be mapped (shape, NaN, empty window)."""


@dataclass(frozen=True)
class WeightMapping:
    """How weights became conductances. Siemens; weights in their own units."""

    g_min: float
    g_max: float
    w_clip: float  # weight magnitude mapped to the full window
    scale: float  # siemens per weight unit
    shape: tuple[int, int]  # (inputs, outputs) of the weight matrix
    clipped: int  # how many weights were clipped


def map_weights(w: np.ndarray, g_min: float, g_max: float,
                clip_percentile: float = 100.0) -> tuple[np.ndarray, WeightMapping]:
    """Targets (inputs, 2*outputs), siemens, for weights ``w`` (inputs, outputs)."""
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 2 or w.size == 0:
        raise WeightMappingError(f"weights must be a non-empty 2-D matrix, got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise WeightMappingError("weights contain NaN or infinity")
    if not (np.isfinite(g_min) and np.isfinite(g_max)) or not 0 <= g_min < g_max:
        raise WeightMappingError(f"conductance window [{g_min}, {g_max}] S is empty")
    if not 0 < clip_percentile <= 100:
        raise WeightMappingError("clip_percentile must be in (0, 100]")
    w_clip = float(np.percentile(np.abs(w), clip_percentile))
    if w_clip == 0:
        w_clip = 1.0  # all-zero weights: any scale maps them to g_min
    scale = (g_max - g_min) / w_clip
    kept = np.clip(w, -w_clip, w_clip)
    targets = np.empty((w.shape[0], 2 * w.shape[1]))
    targets[:, 0::2] = g_min + scale * np.maximum(kept, 0.0)
    targets[:, 1::2] = g_min + scale * np.maximum(-kept, 0.0)
    mapping = WeightMapping(g_min=float(g_min), g_max=float(g_max), w_clip=w_clip,
                            scale=scale, shape=(int(w.shape[0]), int(w.shape[1])),
                            clipped=int(np.count_nonzero(np.abs(w) > w_clip)))
    return targets, mapping


def weights_from_conductances(g: np.ndarray, mapping: WeightMapping) -> np.ndarray:
    """Effective weights (inputs, outputs) a chip holds, from its pair conductances."""
    g = np.asarray(g, dtype=np.float64)
    rows, outs = mapping.shape
    if g.shape[0] < rows or g.shape[1] < 2 * outs:
        raise WeightMappingError(f"conductances {g.shape} do not hold a {rows} x {outs} layer")
    block = g[:rows, : 2 * outs]
    return (block[:, 0::2] - block[:, 1::2]) / mapping.scale


def place(targets: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Put a smaller target block at the top-left of an array; NaN elsewhere (skip)."""
    targets = np.asarray(targets, dtype=np.float64)
    if targets.shape[0] > shape[0] or targets.shape[1] > shape[1]:
        raise WeightMappingError(f"targets {targets.shape} do not fit the array {shape}")
    out = np.full(shape, np.nan)
    out[: targets.shape[0], : targets.shape[1]] = targets
    return out
