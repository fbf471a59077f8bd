"""Drift compensation: measure at programming, measure again at inference, correct the currents.

A programmed network is used hours to years later, when conductances have
relaxed (RRAM) or drifted (PCM, ``G ~ t^-nu`` with ``nu`` per cell and larger at
low levels). Each method is a calibration step run twice, right after
programming (:func:`calibrate`, an artifact the caller stores) and at the start
of an inference session (:func:`correction`), and a correction built from the
two: a gain per tile column (:class:`ColumnGains`) that
:func:`protocols.inference.run_network` applies through its ``corrections`` hook.

- ``none``: gains of 1, nothing measured.
- ``global``: one gain per layer tile from a fixed calibration drive of the
  tile's rows (``DriftParams``: 32 random 0 / V patterns, each sent 4 times: 128
  vectors in one MVM transaction per tile): the least-squares gain that maps the
  pairs' outputs now onto those measured right after programming. Per tile
  rather than per array: the layers have their own scales and so their own mixes
  of levels, PCM drift depends on the level, and each tile is driven on its own
  rows anyway, so it costs nothing more.
- ``column``: from the same measurement, a gain for each column: per pair, the
  ``g+`` and ``g-`` whose ``g+ I+ - g- I-`` best gives the outputs of then (the
  positive and the negative weights of an output hold other cells at other
  levels, and drift apart).
- ``reference``: cells programmed to known levels beside the tiles
  (``Mapping.reference_cells``, programmed with the weights) are read in one
  transaction; the mean conductance of each level then and now gives a
  piecewise-linear law ``G_now = h(G_then)``, and the ``column`` fit is made on
  the host, on the currents the drive would give with the targets ``T`` and with
  ``h(T)``. It sees the level dependence of the drift, not the cells themselves.

Why fit outputs, not ratios of column currents: a shift common to both devices
of a pair (RRAM relaxes its idle ``g_min`` devices as much as its weights)
cancels in their difference, but not in a column sum (gains from column sums
with every row on raised RRAM's layer error at 1 y from 11 % to 17-22 %); and a
gain fitted on outputs for varied inputs weighs each weight as inference does.
Products of the now currents come from distinct repeats, so output noise does
not bias the gains low. Measurements, choices and their numbers:
``docs/inference.md`` (Drift compensation).

Cost (:class:`CalibrationCost`), per measurement: ``global`` / ``column`` one MVM
transaction per tile (128 vectors each), ``reference`` one read transaction.
Drift goes as ln t, so one measurement per session, or per hour of operation at
most, keeps up with it. The output signal falls with the drift while the read
noise does not: :meth:`ColumnGains.suggested_repeats` gives the conversions that
restore the signal-to-noise ratio of right after programming. A gain measured
on raw currents includes whatever the temperature changed since programming; a
temperature correction for the same effect is not to be stacked on it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from protocols.inference.mapping import Mapping, check_array
from protocols.inference.network import InferenceInputError, apply_activation
from protocols.inference.params import DriftParams
from protocols.inference.run import MAX_RANGE_A, MIN_RANGE_A

METHODS = ("none", "global", "column", "reference")
REFERENCE_CELLS = 256  # a default for "reference": 4 columns of 64 rows on a 64 x 64 die
REFERENCE_LEVELS = 8
MIN_PAIR_SHARE = 0.05  # a pair below this share of its tile's median output takes the tile's gain
MAX_GAIN = 20.0  # a tile whose outputs fell below 1/MAX_GAIN of their calibration: no contact
MIN_INDEPENDENCE = 1e-3  # 1 - correlation^2 of a pair's columns needed to fit them apart


class CompensationError(InferenceInputError):
    """A drift calibration cannot be made or used; the message says what to do."""


@dataclass(frozen=True)
class CalibrationCost:
    """What one calibration measurement took: array transactions, vectors, cells, bench time (s)."""

    mvm_transactions: int = 0
    mvm_vectors: int = 0
    read_transactions: int = 0
    cells_read: int = 0
    bench_time_s: float | None = None  # on the clock role; None without one

    def summary(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, eq=False)  # arrays inside: compared by identity
class DriftCalibration:
    """The programming-time measurement of one method: the artifact an inference reuses.

    ``tiles``: the mapping's tile table (layer, row start, row stop, col start, col
    stop), so that another mapping's calibration is refused. ``drives``: per tile,
    the calibration patterns (vectors, tile rows), 0 or 1 (x the calibration
    voltage); ``currents_a``: per tile (vectors, tile columns), the column currents
    (A) for them, the mean of the repeats, faulty cells' recorded deviation taken
    out (``global``, ``column``). ``reference_siemens``: the reference cells' read
    (S) in ``reference_cells`` order (``reference``). Unused ones are empty.
    ``time_s``: clock time of the measurement (None: no clock).
    """

    method: str
    params: DriftParams
    tiles: np.ndarray
    drives: tuple[np.ndarray, ...]
    currents_a: tuple[np.ndarray, ...]
    reference_cells: np.ndarray
    reference_siemens: np.ndarray
    time_s: float | None
    cost: CalibrationCost

    def summary(self) -> dict[str, Any]:
        return {"method": self.method, "time_s": self.time_s,
                "params": dataclasses.asdict(self.params), "cost": self.cost.summary(),
                "reference_cells": int(self.reference_cells.size)}

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain numpy arrays (``np.savez``, a die file); :meth:`from_arrays` reads them back."""
        p, c = self.params, self.cost
        out = {
            "method": np.array(self.method), "tiles": self.tiles,
            "reference_cells": self.reference_cells, "reference_siemens": self.reference_siemens,
            "time_s": np.float64(_nan(self.time_s)),
            "params": np.array([p.vectors, p.repeats, p.seed, p.read_averages or 0],
                               dtype=np.int64),
            "params_float": np.array([p.density, p.calibration_volts, p.range_margin,
                                      p.outlier_share], dtype=np.float64),
            "cost": np.array([c.mvm_transactions, c.mvm_vectors, c.read_transactions,
                              c.cells_read], dtype=np.int64),
            "cost_bench_time_s": np.float64(_nan(c.bench_time_s)),
        }
        for k, (drive, currents) in enumerate(zip(self.drives, self.currents_a, strict=True)):
            out[f"drive{k}"], out[f"currents{k}_a"] = drive, currents
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> DriftCalibration:
        """The calibration from :meth:`to_arrays`' keys; a missing key is one line."""
        a = {k: np.asarray(v) for k, v in arrays.items()}
        missing = sorted(set(_ARRAY_KEYS) - set(a))
        if missing:
            raise CompensationError(f"not a drift calibration: missing {', '.join(missing)}")
        method = str(a["method"].item())
        _check_method(method)
        vectors, repeats, seed, averages = (int(v) for v in a["params"])
        density, volts, margin, share = (float(v) for v in a["params_float"])
        params = DriftParams(vectors=vectors, repeats=repeats, density=density, seed=seed,
                             calibration_volts=volts, range_margin=margin,
                             read_averages=averages or None, outlier_share=share)
        tiles = a["tiles"].astype(np.int64).reshape(-1, 5)
        count = len(tiles) if "drive0" in a else 0
        if any(f"drive{k}" not in a or f"currents{k}_a" not in a for k in range(count)):
            raise CompensationError(f"not a drift calibration: drive / currents of one of the "
                                    f"{count} tiles missing")
        cost = CalibrationCost(*(int(v) for v in a["cost"]),
                               bench_time_s=_none(float(a["cost_bench_time_s"])))
        return cls(method=method, params=params, tiles=tiles,
                   drives=tuple(a[f"drive{k}"].astype(np.float64) for k in range(count)),
                   currents_a=tuple(a[f"currents{k}_a"].astype(np.float64) for k in range(count)),
                   reference_cells=a["reference_cells"].astype(np.int64),
                   reference_siemens=a["reference_siemens"].astype(np.float64),
                   time_s=_none(float(a["time_s"])), cost=cost)


_ARRAY_KEYS = ("method", "tiles", "reference_cells", "reference_siemens", "time_s", "params",
               "params_float", "cost", "cost_bench_time_s")


def _nan(value: float | None) -> float:
    return np.nan if value is None else float(value)


def _none(value: float) -> float | None:
    return None if np.isnan(value) else value


@dataclass(frozen=True, eq=False)
class ColumnGains:
    """A correction for ``run_network(corrections=...)``: layer k's tile currents
    times ``gains[k]`` (one per tile column; 1 = unchanged)."""

    method: str
    gains: tuple[np.ndarray, ...]

    def __call__(self, layer_index: int, currents: np.ndarray) -> np.ndarray:
        return currents * self.gains[layer_index]

    def raw(self, layer_index: int, currents: np.ndarray) -> np.ndarray:
        """The inverse: what the array gives now for currents the mapping predicts
        (``run_network``'s auto range sets the range from these)."""
        return currents / self.gains[layer_index]

    def suggested_repeats(self, repeats: int = 1) -> int:
        """Conversions per vector (``InferenceParams.repeats``) that give the outputs
        about the signal-to-noise ratio ``repeats`` gave right after programming:
        the signal fell by the gain while the output noise did not, and averaging
        n conversions cuts the noise by sqrt(n). Rounded: ``repeats x gain^2``."""
        worst = max((float(np.mean(g)) for g in self.gains), default=1.0)
        return max(int(repeats), int(np.rint(repeats * worst ** 2)))

    def summary(self) -> dict[str, Any]:
        return {"method": self.method,
                "gains": [{"mean": float(g.mean()), "min": float(g.min()), "max": float(g.max())}
                          for g in self.gains]}


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise CompensationError(f"drift compensation {method!r}: choose "
                                f"{', '.join(METHODS)}")


def _tile_table(mapping: Mapping) -> np.ndarray:
    return np.array([(t.layer, *t.rows, *t.cols) for t in mapping.tiles],
                    dtype=np.int64).reshape(-1, 5)


def _volts(array, mapping: Mapping, params: DriftParams) -> float:
    volts = mapping.read_voltage if params.calibration_volts is None else params.calibration_volts
    limit = float(array.limits.max_read_voltage)
    if volts > limit:
        raise CompensationError(f"calibration_volts {volts:g} V exceeds the chip's read limit "
                                f"{limit:g} V")
    return float(volts)


def calibration_drives(mapping: Mapping, params: DriftParams) -> tuple[np.ndarray, ...]:
    """Per tile, ``params.vectors`` random 0/1 patterns on its rows (seeded: the same
    every time for the same parameters)."""
    rng = np.random.default_rng(params.seed)
    return tuple((rng.random((params.vectors, t.shape[0])) < params.density).astype(np.float64)
                 for t in mapping.tiles)


def _measure_currents(array, mapping: Mapping, drives: tuple[np.ndarray, ...],
                      params: DriftParams) -> tuple[np.ndarray, ...]:
    """Per tile (repeats, vectors, tile columns): the column currents (A) for the
    drive, faulty cells' recorded deviation taken out; one MVM transaction per tile."""
    volts, r = params.calibration_volts, params.repeats
    expected = mapping.expected_conductances()
    setter = getattr(array, "set_mvm_range", None)
    out = []
    for tile, drive in zip(mapping.tiles, drives, strict=True):
        v = drive * volts
        if setter is not None:
            peak = float(np.abs(v @ tile.block(expected)).max())
            setter(float(np.clip(params.range_margin * peak, MIN_RANGE_A, MAX_RANGE_A)))
        x = np.zeros((r * v.shape[0], mapping.array_shape[0]))
        x[:, tile.rows[0]:tile.rows[1]] = np.tile(v, (r, 1))
        currents = np.asarray(array.mvm(x), dtype=np.float64)[:, tile.cols[0]:tile.cols[1]]
        currents = currents.reshape(r, v.shape[0], -1)
        if mapping.corrections is not None:
            currents = currents - v @ tile.block(mapping.corrections)
        out.append(currents)
    return tuple(out)


def _measure(array, mapping: Mapping, method: str, drives, params: DriftParams, clock):
    """The method's measurement: (currents per tile, reference reads, cost)."""
    start = None if clock is None else clock.now()
    currents, refs = (), np.zeros(0)
    mvm = vectors = reads = cells = 0
    if method in ("global", "column"):
        currents = _measure_currents(array, mapping, drives, params)
        mvm, vectors = len(currents), sum(c.shape[0] * c.shape[1] for c in currents)
    elif method == "reference":
        refs = np.asarray(array.read_cells(mapping.reference_cells,
                                           averages=params.read_averages), dtype=np.float64)
        reads, cells = 1, int(mapping.reference_cells.size)
    bench = None if clock is None else float(clock.now() - start)
    return currents, refs, CalibrationCost(mvm, vectors, reads, cells, bench)


def network_drives(network, x: np.ndarray) -> tuple[np.ndarray, ...]:
    """Calibration drives from inputs ``x`` (n, inputs) run through the float
    ``network``: each layer's inputs, every vector scaled to its largest |value| as
    inference encodes it (0..1), a negative part as a vector of its own. A drive
    like the data weighs the weights as inference does; random patterns need none."""
    a, out = network.check_inputs(x), []
    for layer in network.layers:
        peak = np.abs(a).max(axis=1, keepdims=True)
        u = a / np.where(peak > 0, peak, 1.0)
        neg = np.maximum(-u, 0.0)
        out.append(np.concatenate([np.maximum(u, 0.0), neg[neg.any(axis=1)]]))
        a = apply_activation(layer.activation, a @ layer.weights + layer.bias)
    return tuple(out)


def _checked_drives(mapping: Mapping, drives) -> tuple[np.ndarray, ...]:
    drives = tuple(np.asarray(d, dtype=np.float64) for d in drives)
    if len(drives) != len(mapping.tiles):
        raise CompensationError(f"drives: one per layer ({len(mapping.tiles)}), "
                                f"got {len(drives)}")
    for k, (d, t) in enumerate(zip(drives, mapping.tiles, strict=True)):
        if d.ndim != 2 or d.shape[0] == 0 or d.shape[1] != t.shape[0]:
            raise CompensationError(f"drives: layer {k} needs (vectors, {t.shape[0]}), "
                                    f"got {d.shape}")
        if not (np.isfinite(d).all() and d.min() >= 0 and d.max() <= 1):
            raise CompensationError(f"drives: layer {k}'s values must be 0..1 (share of "
                                    "the calibration voltage)")
    return drives


def calibrate(array, mapping: Mapping, method: str, *, params: DriftParams | None = None,
              clock=None, drives=None) -> DriftCalibration:
    """Measure what ``method`` needs, right after programming (``clock``: bench time).

    ``reference`` needs a mapping with reference cells (``program_network(...,
    reference_cells=REFERENCE_CELLS)``). ``drives``: per layer, the calibration
    patterns (vectors, inputs), 0..1 of the calibration voltage (default:
    :func:`calibration_drives`; :func:`network_drives` from sample inputs). Store the
    result (:meth:`DriftCalibration.to_arrays`) with the mapping; :func:`correction`
    takes it at inference.
    """
    _check_method(method)
    check_array(array, mapping)
    if method == "reference" and mapping.reference_cells.size == 0:
        raise CompensationError("drift compensation 'reference' needs reference cells: "
                                "program the network with reference_cells="
                                f"{REFERENCE_CELLS} (or any count that fits)")
    params = params or DriftParams()
    params = dataclasses.replace(params, calibration_volts=_volts(array, mapping, params))
    if method == "none":
        drives = ()
    else:
        drives = _checked_drives(mapping, calibration_drives(mapping, params)
                                 if drives is None else drives)
    currents, refs, cost = _measure(array, mapping, method, drives, params, clock)
    means = (tuple(c.mean(axis=0) for c in currents)  # reference: the drive, no currents
             or tuple(np.zeros((0, 2 * t.shape[1])) for t in mapping.tiles[:len(drives)]))
    return DriftCalibration(method=method, params=params, tiles=_tile_table(mapping),
                            drives=drives, currents_a=means,
                            reference_cells=mapping.reference_cells.copy(),
                            reference_siemens=refs,
                            time_s=None if clock is None else float(clock.now()), cost=cost)


def correction(array, mapping: Mapping, calibration: DriftCalibration, *,
               clock=None) -> tuple[ColumnGains, CalibrationCost]:
    """Measure again as ``calibration`` did; the correction and what the measurement cost.

    Pass the correction to ``run_network(..., corrections=(gains,))``, one per
    inference session (see the module docstring).
    """
    check_array(array, mapping)
    table = _tile_table(mapping)
    if (calibration.tiles.shape != table.shape or not np.array_equal(calibration.tiles, table)
            or not np.array_equal(calibration.reference_cells, mapping.reference_cells)):
        raise CompensationError("the drift calibration was made for another mapping: "
                                "calibrate again after programming this one")
    method, params, drives = calibration.method, calibration.params, calibration.drives
    _volts(array, mapping, params)
    currents, refs, cost = _measure(array, mapping, method, drives, params, clock)
    if method in ("global", "column"):
        gains = tuple(fit_gains(then, now, per_column=method == "column", layer=k)
                      for k, (then, now) in enumerate(zip(calibration.currents_a, currents,
                                                          strict=True)))
    elif method == "reference":
        law = reference_law(mapping.reference_targets, calibration.reference_siemens, refs,
                            params.outlier_share * (mapping.g_max - mapping.g_min))
        gains = reference_gains(mapping, drives, *law)
    else:
        gains = tuple(np.ones(t.cols[1] - t.cols[0]) for t in mapping.tiles)
    return ColumnGains(method, gains), cost


def _inner(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per pair, ``<a, b>`` over the vectors from (repeats, vectors, pairs) arrays: the
    mean product of distinct repeats, so that output noise adds nothing to it."""
    r = a.shape[0]
    if r == 1:
        return (a[0] * b[0]).sum(axis=0)
    return ((a.sum(axis=0) * b.sum(axis=0)).sum(axis=0) - (a * b).sum(axis=(0, 1))) / (r * (r - 1))


def fit_gains(then: np.ndarray, now: np.ndarray, *, per_column: bool,
              layer: int = 0) -> np.ndarray:
    """Tile column gains from its column currents for the drive: ``then`` (vectors,
    columns), ``now`` (repeats, vectors, columns).

    The least-squares gains that map the pairs' outputs now, ``g+ I+ - g- I-``,
    onto their outputs then: one gain for the whole tile, or (``per_column``) a
    ``g+`` and a ``g-`` for each pair (the positive and the negative weights of an
    output drift apart; a shift common to both columns still cancels, since the
    fit is on their difference). Products of the now currents come from distinct
    repeats, so output noise does not bias the gains low. A pair with too little
    signal, or whose two columns move too alike to be told apart, takes one gain
    for both (its own, or the tile's).
    """
    y = then[:, 0::2] - then[:, 1::2]
    p, m = now[..., 0::2], now[..., 1::2]
    d = p - m
    num, den = (d.mean(axis=0) * y).sum(axis=0), _inner(d, d)
    if not (num.sum() > 0 and den.sum() > 0) or num.sum() / den.sum() > MAX_GAIN:
        raise CompensationError(f"layer {layer}: the calibration outputs fell below "
                                f"1/{MAX_GAIN:g} of those right after programming (or "
                                "changed sign): check the contact, then program again")
    tile = float(num.sum() / den.sum())
    if not per_column:
        return np.full(then.shape[1], tile)
    signal = (y ** 2).sum(axis=0)
    strong = signal > MIN_PAIR_SHARE ** 2 * np.median(signal)
    pair = np.where(strong & (num > 0) & (den > 0), num / np.where(den > 0, den, 1.0), tile)
    spp, smm, spm = _inner(p, p), _inner(m, m), _inner(p, m)
    bp, bm = (p.mean(axis=0) * y).sum(axis=0), -(m.mean(axis=0) * y).sum(axis=0)
    det = spp * smm - spm ** 2
    safe = np.where(det > 0, det, 1.0)
    g_plus, g_minus = (smm * bp + spm * bm) / safe, (spm * bp + spp * bm) / safe
    apart = strong & (det > MIN_INDEPENDENCE * spp * smm)
    for g in (g_plus, g_minus):
        apart &= (g > 1 / MAX_GAIN) & (g < MAX_GAIN)
    out = np.repeat(pair, 2)
    out[0::2] = np.where(apart, g_plus, pair)
    out[1::2] = np.where(apart, g_minus, pair)
    return out


def reference_law(levels: np.ndarray, then: np.ndarray, now: np.ndarray,
                  tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean conductance (S) of each reference level then and now, ascending.

    A cell whose read then is farther than ``tolerance`` (S) from its level (stuck,
    unreachable) or any non-finite read is left out; a level left empty is dropped.
    """
    levels, then, now = (np.asarray(a, dtype=np.float64) for a in (levels, then, now))
    good = np.isfinite(then) & np.isfinite(now) & (np.abs(then - levels) <= tolerance)
    values, index = np.unique(levels, return_inverse=True)
    count = np.bincount(index, weights=good, minlength=values.size)
    if not count.any():
        raise CompensationError("no reference cell read near its level: program the "
                                "network with its reference cells, then calibrate")
    total_then = np.bincount(index, weights=np.where(good, then, 0), minlength=values.size)
    total_now = np.bincount(index, weights=np.where(good, now, 0), minlength=values.size)
    keep = count > 0
    g_then, g_now = total_then[keep] / count[keep], total_now[keep] / count[keep]
    order = np.argsort(g_then)
    return g_then[order], g_now[order]


def reference_gains(mapping: Mapping, drives: tuple[np.ndarray, ...], g_then: np.ndarray,
                    g_now: np.ndarray) -> tuple[np.ndarray, ...]:
    """Tile column gains from the law ``h`` through the levels (piecewise linear,
    flat beyond the end levels): the ``column`` fit (:func:`fit_gains`) on the
    currents the calibration drive would give with the targets ``T`` (then) and
    with ``h(T)`` (now), computed on the host."""
    gains = []
    for tile, drive in zip(mapping.tiles, drives, strict=True):
        t = np.nan_to_num(tile.block(mapping.targets))
        h = np.interp(t, g_then, g_now)
        gains.append(fit_gains(drive @ t, (drive @ h)[None], per_column=True,
                               layer=tile.layer))
    return tuple(gains)
