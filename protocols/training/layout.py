"""A trainable network's layers on the array: differential pairs with one device low.

A weight is ``(G+ - G-) / s`` (``s`` S per weight unit: ``w_range`` spans the window
above the floor). Programmed, the device of the sign the weight lacks sits at the
floor (``g_min`` plus 5 % of the window, out of the slow end of RESET), as the
inference mapping keeps its idle device at ``g_min``: the column currents stay small
next to the column ADC's range, which a common mode in the middle of the window would
fill (measured: the plain transfer of the digits network fell from 97 % to 46 %). An
update moves the device that brings the pair back toward the floor first (a RESET),
the other for the rest (a SET): :func:`protocols.training.pulses.pair_changes`. The
tiles are those :func:`protocols.inference.map_network` places, so the forward pass is
the inference protocol's.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from instruments.datasheet import ChipDatasheet
from protocols.inference import Layer, Mapping, Network, map_network


def training_mapping(datasheet: ChipDatasheet, array_shape: tuple[int, int],
                     sizes: tuple[int, ...], w_ranges: tuple[float, ...]) -> Mapping:
    """Tiles for layers of ``sizes`` (widths, input first), layer k's scale such that
    ``±w_ranges[k]`` spans the window; targets are NaN until :func:`with_weights`.
    A network that does not fit the die is a :class:`NetworkFitError` naming both sizes."""
    shapes = list(zip(sizes, sizes[1:], strict=False))
    probe = Network(tuple(Layer(np.ones(s), np.zeros(s[1])) for s in shapes))
    placed = map_network(probe, datasheet, array_shape=tuple(array_shape))
    span = datasheet.window.g_max - floor_of(datasheet.window.g_min, datasheet.window.g_max)
    tiles = tuple(dataclasses.replace(t, scale=float(span / r), w_clip=float(r),
                                      clipped=0) for t, r in zip(placed.tiles, w_ranges,
                                                                  strict=True))
    return dataclasses.replace(placed, tiles=tiles, targets=np.full(placed.array_shape, np.nan))


FLOOR_SHARE = 0.05  # of the window, above g_min


def floor_of(g_min: float, g_max: float) -> float:
    """Where a pair's low device sits (S)."""
    return g_min + FLOOR_SHARE * (g_max - g_min)


def idle_cells(mapping: Mapping) -> np.ndarray:
    """Cells (bool, array shape) no tile holds and no reference uses, on a row or column
    some tile uses: the lines the network's inputs (rows) and backward errors (columns)
    drive. Cells on no such line carry nothing."""
    used = mapping.used
    idle = ~used & (used.any(axis=1)[:, None] | used.any(axis=0)[None, :])
    idle.ravel()[np.asarray(mapping.reference_cells, np.int64)] = False
    return idle


def parked(mapping: Mapping, targets: np.ndarray, g_idle: np.ndarray) -> np.ndarray:
    """``targets`` (S, array shape) with each :func:`idle_cells` cell that reads
    (``g_idle``, S, as read; NaN: not read) above the floor, and has no target of its own,
    aimed at ``g_min``. A formed die's idle cells sit in the middle of the window; on
    the driven lines they draw current the host does not count, and its IR drop moves
    every product there (die 12: 1136 idle cells at ~25 uS beside the digits network).
    Those already low (a PCM die as made) are left out of the write-verify."""
    out = np.array(targets, np.float64)
    high = np.asarray(g_idle, np.float64) > floor_of(mapping.g_min, mapping.g_max)
    out[idle_cells(mapping) & high & ~np.isfinite(out)] = mapping.g_min
    return out


def read_idle(array, mapping: Mapping) -> np.ndarray:
    """One read of the :func:`idle_cells` (S, array shape, NaN elsewhere)."""
    idle = idle_cells(mapping)
    if not idle.any():
        return np.full(idle.shape, np.nan)
    return np.asarray(array.read(idle), np.float64)  # NaN outside the mask


def with_weights(mapping: Mapping, weights) -> Mapping:
    """The mapping with targets (S) of pairs holding ``weights`` (clipped to each layer's
    range), the device of the other sign at the floor."""
    floor = floor_of(mapping.g_min, mapping.g_max)
    targets = np.full(mapping.array_shape, np.nan)
    for tile, w in zip(mapping.tiles, weights, strict=True):
        g = tile.scale * np.clip(w, -tile.w_clip, tile.w_clip)
        block = tile.block(targets)
        block[:, 0::2] = floor + np.maximum(g, 0.0)
        block[:, 1::2] = floor + np.maximum(-g, 0.0)
    return dataclasses.replace(mapping, targets=targets)


def with_conductances(mapping: Mapping, g: np.ndarray) -> Mapping:
    """The mapping whose 'targets' are the conductances last read (S): the forward pass
    sets its column ranges from them, so they follow what training moved."""
    targets = np.where(mapping.used, g, np.nan)
    return dataclasses.replace(mapping, targets=targets)


def tile_cells(mapping: Mapping, layer: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat row-major indices of layer ``layer``'s G+ and G- devices, each (inputs,
    outputs)."""
    t = mapping.tiles[layer]
    cols = mapping.array_shape[1]
    rows = np.arange(t.rows[0], t.rows[1])[:, None]
    return rows * cols + t.plus_cols[None, :], rows * cols + t.minus_cols[None, :]


def single_layer(mapping: Mapping, layer: int) -> Mapping:
    """A mapping of one tile (as layer 0), to run one layer with ``run_network``."""
    tile = dataclasses.replace(mapping.tiles[layer], layer=0)
    return dataclasses.replace(mapping, tiles=(tile,))


LONE_SHARE = 0.5  # of the span above the floor: where a lone device's failed partner is taken


def lone_level(g_min: float, g_max: float) -> float:
    """Where the host takes the failed device of a pair whose other device works, when
    that device is used alone (S): mid-way between the floor and ``g_max``, so the working
    device gives weights of both signs (half the pair's range each way)."""
    floor = floor_of(g_min, g_max)
    return floor + LONE_SHARE * (g_max - floor)


def lone_pairs(mapping: Mapping, skip: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per layer, (G+ failed alone, G- failed alone): bool (inputs, outputs) of the pairs
    with exactly one device in ``skip`` (flat bool), by which device failed."""
    skip = np.asarray(skip, bool).ravel()
    out = []
    for k in range(len(mapping.tiles)):
        plus, minus = tile_cells(mapping, k)
        dp, dm = skip[plus], skip[minus]
        out.append((dp & ~dm, dm & ~dp))
    return out


def references(mapping: Mapping, skip: np.ndarray, lone: bool) -> np.ndarray:
    """Where the host takes each device it never pulses (flat S; NaN for the others): at
    the floor — the pair then works with its other device, of one sign only — or, given
    ``lone``, a failed device whose partner works at :func:`lone_level`, so the partner
    alone carries weights of both signs."""
    skip = np.asarray(skip, bool).ravel()
    ref = np.where(skip, floor_of(mapping.g_min, mapping.g_max), np.nan)
    if lone:
        level = lone_level(mapping.g_min, mapping.g_max)
        for k, (fp, fm) in enumerate(lone_pairs(mapping, skip)):
            plus, minus = tile_cells(mapping, k)
            ref[plus[fp]] = level
            ref[minus[fm]] = level
    return ref


def lone_targets(mapping: Mapping, weights, skip: np.ndarray) -> np.ndarray:
    """Targets (S, array shape; NaN elsewhere) of the working devices of the pairs with
    one failed device, used alone around :func:`lone_level`: ``level + s w`` on G+ (its
    G- failed), ``level - s w`` on G- (its G+ failed), within the window."""
    level = lone_level(mapping.g_min, mapping.g_max)
    targets = np.full(int(np.prod(mapping.array_shape)), np.nan)
    for k, ((fp, fm), tile, w) in enumerate(zip(lone_pairs(mapping, skip), mapping.tiles,
                                                 weights, strict=True)):
        plus, minus = tile_cells(mapping, k)
        g = tile.scale * np.asarray(w, np.float64)
        targets[plus[fm]] = np.clip(level + g[fm], mapping.g_min, mapping.g_max)
        targets[minus[fp]] = np.clip(level - g[fp], mapping.g_min, mapping.g_max)
    return targets.reshape(mapping.array_shape)
