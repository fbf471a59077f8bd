"""A network's layers as tiles of one die's array, and their conductance targets.

Layer k (inputs x outputs) needs a tile of ``inputs`` word lines and ``2 *
outputs`` bit lines: the differential pairs of :mod:`protocols.weights` (``G+`` in
the tile's even columns, ``G-`` in its odd ones, the idle device at ``g_min``),
with its own scale (S per weight unit: its largest kept |w| spans the window).
Tiles are disjoint row x column ranges, so layers share the array side by side
or stacked: running a layer drives only its tile's rows (the others at 0 V)
and reads only its tile's columns, and another tile in the same rows or
columns adds nothing to what is read. Placement is first fit, column-major:
each tile goes to the leftmost column, then the topmost row, where it fits (a
64-20-10 network on 64 x 64: layer 0 on rows 0-63 x columns 0-39, layer 1 on
rows 0-19 x columns 40-59). Cells no tile uses are NaN (left alone).

Faulty cells. About 1 % of a die's cells are stuck (one at 60 uS where its
target is 1 uS swamps a column), and write-verify reports the cells it could
not program and what they read. :func:`compensate` records their deviation
from target (``corrections``, S) in the mapping; the forward pass subtracts
``x_volts @ corrections`` from the column currents on the host: a sparse
digital fix-up of the few cells the array cannot hold, as a chip's periphery
would apply it. :func:`program_network` does this from its write-verify result.

Reference cells. A mapping may also hold cells programmed to known levels
beside the weights (``reference_cells``, flat row-major indices, and their
``reference_targets``, S), in cells no tile uses: columns no tile touches
first, so they share no bit line with a layer. They are programmed in the
same write-verify as the weights, so they age with them; reading them later
tells how conductance moved with time and temperature
(:mod:`protocols.inference.compensation`, the temperature calibration).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from instruments.datasheet import ChipDatasheet
from protocols.inference.network import InferenceInputError, Network
from protocols.profiles import write_verify_params
from protocols.weights import map_weights
from protocols.write_verify import write_verify


class NetworkFitError(InferenceInputError):
    """The network's layers do not fit the array as disjoint tiles."""


@dataclass(frozen=True)
class Tile:
    """Where layer ``layer`` lives: word lines ``rows[0]:rows[1]``, bit lines
    ``cols[0]:cols[1]`` (pairs interleaved, G+ first); ``scale`` in S per weight unit."""

    layer: int
    rows: tuple[int, int]  # [start, stop)
    cols: tuple[int, int]  # [start, stop), 2 per output
    scale: float  # S per weight unit
    w_clip: float  # weight magnitude mapped to the whole window
    clipped: int  # weights beyond w_clip, clipped

    @property
    def shape(self) -> tuple[int, int]:
        """(inputs, outputs) of the layer."""
        return (self.rows[1] - self.rows[0], (self.cols[1] - self.cols[0]) // 2)

    def block(self, g: np.ndarray) -> np.ndarray:
        """The tile's part of an array-shaped matrix (a view)."""
        return g[self.rows[0]:self.rows[1], self.cols[0]:self.cols[1]]

    @property
    def plus_cols(self) -> np.ndarray:
        return np.arange(self.cols[0], self.cols[1], 2)

    @property
    def minus_cols(self) -> np.ndarray:
        return np.arange(self.cols[0] + 1, self.cols[1], 2)


@dataclass(frozen=True, eq=False)  # arrays inside: compared by identity
class Mapping:
    """A network on one array: its tiles and the targets of every cell.

    ``targets``: array shape, siemens, NaN where no tile is. ``g_min``/``g_max``:
    the window the scales come from (S); ``read_voltage``: the datasheet's read
    level (V), the default full-scale input voltage. ``corrections``: measured
    minus target conductance (S, array shape) of the cells the array does not
    hold on target, 0 elsewhere; None: none recorded (see :func:`compensate`).
    ``reference_cells`` (flat row-major indices, int64) and ``reference_targets``
    (S, one per cell): cells outside every tile programmed to known levels
    (:func:`place_references`); empty when there are none.
    """

    tiles: tuple[Tile, ...]
    targets: np.ndarray
    array_shape: tuple[int, int]
    g_min: float
    g_max: float
    read_voltage: float
    corrections: np.ndarray | None = None
    reference_cells: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    reference_targets: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        cells = np.asarray(self.reference_cells, dtype=np.int64).ravel()
        levels = np.asarray(self.reference_targets, dtype=np.float64).ravel()
        if cells.shape != levels.shape:
            raise InferenceInputError(f"reference_cells ({cells.size}) and reference_targets "
                                      f"({levels.size}) must have one entry per cell")
        size = int(np.prod(self.array_shape))
        if cells.size and (cells.min() < 0 or cells.max() >= size
                           or np.unique(cells).size != cells.size):
            raise InferenceInputError(f"reference_cells must be distinct flat indices "
                                      f"0..{size - 1} of the array")
        if cells.size and (np.isfinite(self.targets.ravel()[cells]).any()
                           or not np.isfinite(levels).all()):
            raise InferenceInputError("reference cells must lie outside every tile and "
                                      "have finite targets")
        object.__setattr__(self, "reference_cells", cells)
        object.__setattr__(self, "reference_targets", levels)

    @property
    def compensated_cells(self) -> int:
        return 0 if self.corrections is None else int(np.count_nonzero(self.corrections))

    def expected_conductances(self) -> np.ndarray:
        """What the array should hold (S): targets, corrected where known; 0 where unused."""
        g = np.nan_to_num(self.targets, nan=0.0)
        return g if self.corrections is None else g + self.corrections

    @property
    def used(self) -> np.ndarray:
        """Cells some tile holds (bool, array shape); reference cells are not among them."""
        return np.isfinite(self.targets)

    def program_targets(self) -> np.ndarray:
        """What write-verify programs (S, array shape): the tiles' targets and the
        reference levels; NaN elsewhere."""
        out = self.targets.copy()
        out.ravel()[self.reference_cells] = self.reference_targets
        return out

    def tile_weights(self, g: np.ndarray, layer: int) -> np.ndarray:
        """Effective weights (inputs, outputs) of one layer from conductances ``g`` (S)."""
        tile = self.tiles[layer]
        block = tile.block(np.asarray(g, dtype=np.float64))
        return (block[:, 0::2] - block[:, 1::2]) / tile.scale

    def to_dict(self) -> dict[str, Any]:
        """Everything but the targets (JSON-ready); with :meth:`arrays`, the whole mapping."""
        return {"array_shape": list(self.array_shape), "g_min": self.g_min, "g_max": self.g_max,
                "read_voltage": self.read_voltage,
                "tiles": [{"layer": t.layer, "rows": list(t.rows), "cols": list(t.cols),
                           "scale": t.scale, "w_clip": t.w_clip, "clipped": t.clipped}
                          for t in self.tiles]}

    def summary(self) -> dict[str, Any]:
        return {**self.to_dict(), "cells_used": int(self.used.sum()),
                "cells": int(self.targets.size), "compensated_cells": self.compensated_cells,
                "reference_cells": int(self.reference_cells.size),
                "reference_levels_s": sorted(set(self.reference_targets.tolist()))}

    def arrays(self) -> dict[str, np.ndarray]:
        """``targets`` (S), ``tiles`` (layer, row start, row stop, col start, col stop) and,
        when recorded, ``corrections`` (S), ``reference_cells`` and ``reference_targets`` (S)."""
        table = np.array([(t.layer, *t.rows, *t.cols) for t in self.tiles], dtype=np.int64)
        out = {"targets": self.targets, "tiles": table}
        if self.corrections is not None:
            out["corrections"] = self.corrections
        if self.reference_cells.size:
            out["reference_cells"] = self.reference_cells
            out["reference_targets"] = self.reference_targets
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any], targets: np.ndarray,
                  corrections: np.ndarray | None = None,
                  reference_cells: np.ndarray | None = None,
                  reference_targets: np.ndarray | None = None) -> Mapping:
        tiles = tuple(Tile(layer=int(t["layer"]), rows=(int(t["rows"][0]), int(t["rows"][1])),
                           cols=(int(t["cols"][0]), int(t["cols"][1])),
                           scale=float(t["scale"]), w_clip=float(t["w_clip"]),
                           clipped=int(t["clipped"])) for t in d["tiles"])
        return cls(tiles=tiles, targets=np.asarray(targets, dtype=np.float64),
                   array_shape=(int(d["array_shape"][0]), int(d["array_shape"][1])),
                   g_min=float(d["g_min"]), g_max=float(d["g_max"]),
                   read_voltage=float(d["read_voltage"]),
                   corrections=None if corrections is None
                   else np.asarray(corrections, dtype=np.float64),
                   reference_cells=np.zeros(0, np.int64) if reference_cells is None
                   else reference_cells,
                   reference_targets=np.zeros(0) if reference_targets is None
                   else reference_targets)


def _free_spots(occupied: np.ndarray, h: int, w: int) -> np.ndarray:
    """free[r, c]: an h x w block at (r, c) touches no occupied cell (integral image)."""
    s = np.zeros((occupied.shape[0] + 1, occupied.shape[1] + 1), dtype=np.int64)
    s[1:, 1:] = occupied.cumsum(0).cumsum(1)
    total = s[h:, w:] - s[:-h, w:] - s[h:, :-w] + s[:-h, :-w]
    return total == 0


def pack_tiles(sizes: list[tuple[int, int]],
               shape: tuple[int, int]) -> list[tuple[int, int]] | None:
    """Top-left corners of disjoint (rows, cols) blocks in ``shape``, first fit
    column-major in the given order; None when one does not fit."""
    occupied = np.zeros(shape, dtype=bool)
    corners = []
    for h, w in sizes:
        if h > shape[0] or w > shape[1]:
            return None
        free = _free_spots(occupied, h, w)
        spots = np.argwhere(free.T)  # (col, row), column-major order
        if spots.size == 0:
            return None
        c, r = (int(v) for v in spots[0])
        occupied[r:r + h, c:c + w] = True
        corners.append((r, c))
    return corners


def _place(sizes: list[tuple[int, int]], shape: tuple[int, int]) -> list[tuple[int, int]]:
    corners = pack_tiles(sizes, shape)
    if corners is not None:
        return corners
    order = sorted(range(len(sizes)), key=lambda k: -sizes[k][0] * sizes[k][1])
    found = pack_tiles([sizes[k] for k in order], shape)
    if found is not None:  # largest first fits where the network's own order did not
        corners = [(0, 0)] * len(sizes)
        for k, corner in zip(order, found, strict=True):
            corners[k] = corner
        return corners
    _no_fit(sizes, shape)


def _no_fit(sizes: list[tuple[int, int]], shape: tuple[int, int]) -> None:
    rows, cols = shape
    k = max(range(len(sizes)), key=lambda i: (sizes[i][0] > rows or sizes[i][1] > cols,
                                              sizes[i][0] * sizes[i][1]))
    h, w = sizes[k]
    if h > rows or w > cols:
        raise NetworkFitError(f"network needs {h} rows x {w} columns in its largest layer "
                              f"(layer {k}: {h} inputs x {w // 2} outputs), the array has "
                              f"{rows} x {cols}; a layer must fit one tile of the array")
    need = sum(a * b for a, b in sizes)
    tiles = ", ".join(f"{a} x {b}" for a, b in sizes)
    raise NetworkFitError(f"network's layers need tiles of {tiles} cells ({need} cells) that "
                          f"do not fit side by side or stacked on the {rows} x {cols} array; "
                          "use a smaller network or a larger array")


def place_references(mapping: Mapping, count: int, levels: int = 8) -> Mapping:
    """The mapping with ``count`` reference cells in cells no tile uses.

    ``levels`` conductances evenly spaced over the window, ``g_min`` and ``g_max``
    included (drift depends on the level). Cells are taken column by column, from
    the columns no tile touches first (they share no bit line with a layer), top
    to bottom; the levels cycle down each column, so every level sits on near and
    far word lines alike. A request that does not fit is a :class:`NetworkFitError`
    naming how many cells are free.
    """
    if not (isinstance(count, int | np.integer) and count >= 0):
        raise InferenceInputError(f"reference cells: a whole number >= 0, got {count!r}")
    if not (isinstance(levels, int | np.integer) and levels >= 1 and
            (count == 0 or levels <= count)):
        raise InferenceInputError(f"reference levels: a whole number from 1 to the number "
                                  f"of cells ({count}), got {levels!r}")
    free = ~mapping.used
    free.ravel()[mapping.reference_cells] = False
    shared = np.zeros(free.shape, dtype=bool)  # cells in a column some tile uses
    for t in mapping.tiles:
        shared[:, t.cols[0]:t.cols[1]] = True
    rows, cols = np.nonzero(free.T)[::-1]  # column-major
    order = np.lexsort((rows, cols, shared[rows, cols]))
    if count > order.size:
        raise NetworkFitError(f"{count} reference cells do not fit beside the network's "
                              f"tiles: {order.size} cells are free; ask for at most "
                              f"{order.size}")
    pick = order[:count]
    cells = rows[pick] * free.shape[1] + cols[pick]
    grid = np.linspace(mapping.g_min, mapping.g_max, levels)
    return dataclasses.replace(
        mapping, reference_cells=np.concatenate([mapping.reference_cells, cells]),
        reference_targets=np.concatenate([mapping.reference_targets,
                                          grid[np.arange(count) % levels]]))


def map_network(network: Network, datasheet: ChipDatasheet, *,
                array_shape: tuple[int, int] | None = None,
                clip_percentile: float = 100.0, reference_cells: int = 0,
                reference_levels: int = 8) -> Mapping:
    """Tiles and targets (S) for ``network`` on the die's array.

    ``array_shape``: the array's (rows, cols) (default: the datasheet's; pass
    ``array.shape`` when a bench overrides it). ``clip_percentile``: of |w| per
    layer, mapped to the whole window (weights beyond it are clipped).
    ``reference_cells``: that many cells at ``reference_levels`` levels beside the
    tiles (:func:`place_references`), for drift and temperature tracking.
    """
    shape = tuple(int(v) for v in (array_shape or datasheet.shape))
    sizes = [(layer.shape[0], 2 * layer.shape[1]) for layer in network.layers]
    corners = _place(sizes, shape)
    w = datasheet.window
    targets = np.full(shape, np.nan)
    tiles = []
    for k, (layer, (r, c), (h, cw)) in enumerate(zip(network.layers, corners, sizes,
                                                     strict=True)):
        block, m = map_weights(layer.weights, w.g_min, w.g_max, clip_percentile)
        targets[r:r + h, c:c + cw] = block
        tiles.append(Tile(layer=k, rows=(r, r + h), cols=(c, c + cw), scale=m.scale,
                          w_clip=m.w_clip, clipped=m.clipped))
    mapping = Mapping(tiles=tuple(tiles), targets=targets, array_shape=shape,
                      g_min=float(w.g_min), g_max=float(w.g_max),
                      read_voltage=float(w.read_voltage))
    if reference_cells:
        mapping = place_references(mapping, reference_cells, reference_levels)
    return mapping


def read_weights(array, mapping: Mapping, averages: int | None = None) -> tuple[np.ndarray, ...]:
    """Effective weights (inputs, outputs) of every layer as the array holds them now.

    One masked read of the used cells (``averages`` conversions per cell), for
    diagnostics: compare with the network's weights.
    """
    check_array(array, mapping)
    g = array.read(mapping.used, averages=averages)
    return tuple(mapping.tile_weights(g, t.layer) for t in mapping.tiles)


def check_array(array, mapping: Mapping) -> None:
    """A one-line error unless ``array`` is the size the mapping was made for."""
    shape = tuple(array.shape)
    if shape != tuple(mapping.array_shape):
        raise InferenceInputError(f"the mapping is for a {mapping.array_shape[0]} x "
                                  f"{mapping.array_shape[1]} array, this one is "
                                  f"{shape[0]} x {shape[1]}")


def compensate(mapping: Mapping, measured: np.ndarray, cells: np.ndarray) -> Mapping:
    """The mapping with ``cells`` (bool, array shape) recorded at their ``measured``
    conductances (S): the forward pass then subtracts their deviation from target."""
    measured = np.asarray(measured, dtype=np.float64)
    cells = np.asarray(cells, dtype=bool)
    shape = tuple(mapping.array_shape)
    if measured.shape != shape or cells.shape != shape:
        raise InferenceInputError(f"measured conductances {measured.shape} and cells "
                                  f"{cells.shape} must have the array's shape {shape}")
    pick = cells & mapping.used & np.isfinite(measured)
    corrections = np.where(pick, measured - np.nan_to_num(mapping.targets), 0.0)
    return dataclasses.replace(mapping, corrections=corrections)


def program_network(array, network: Network, datasheet: ChipDatasheet, clock, params=None, *,
                    clip_percentile: float = 100.0, compensate_faults: bool = True,
                    progress=None, response=None, reference_cells: int = 0,
                    reference_levels: int = 8):
    """Map ``network`` onto ``array`` and program it by write-verify.

    Returns ``(mapping, write_verify_result)``. ``params``: ``WriteVerifyParams``
    (default: :func:`protocols.profiles.write_verify_params` of the datasheet);
    ``response``: a response model learned earlier on this die.
    ``compensate_faults``: record the cells write-verify left off target
    (not converged: stuck, unreachable, out of pulses) at their last verify read
    (:func:`compensate`). ``reference_cells`` / ``reference_levels``: reference
    cells beside the tiles (:func:`place_references`), programmed in the same
    write-verify as the weights so that they age with them.
    """
    mapping = map_network(network, datasheet, array_shape=tuple(array.shape),
                          clip_percentile=clip_percentile, reference_cells=reference_cells,
                          reference_levels=reference_levels)
    params = write_verify_params(datasheet) if params is None else params
    result = write_verify(array, mapping.program_targets(), clock=clock, params=params,
                          progress=progress, response=response)
    if compensate_faults:
        mapping = compensate(mapping, result.final, mapping.used & ~result.converged)
    return mapping, result
