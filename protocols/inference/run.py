"""Running a mapped network on the chip: the matrix products analog, the rest digital.

Layer by layer (every batch through a layer before the next starts, so the
column range is set once per layer), one ``array.mvm`` transaction per batch:
the layer's inputs, each vector scaled by its own largest |value| to the
full-scale voltage and rounded to the row DAC's steps, drive its tile's rows
(every other row at 0 V); the tile's column currents, ``G+`` minus ``G-`` of each pair, divided by
``volts per unit input x siemens per unit weight``, are the layer's product.
Bias and activation follow on the host, and the next layer takes the result.
Signed inputs are split into positive and negative parts sent in the same
transaction (or sent as negative voltages: ``signed="bipolar"``); hidden layers
after a ReLU are non-negative and go once. Cells the mapping records off target
(:func:`protocols.inference.mapping.compensate`) are corrected on the host:
their share of the current, ``x_volts @ corrections``, is subtracted.

Corrections. ``run_network(..., corrections=(...))`` takes callables
``(layer_index, currents) -> currents`` applied, in order, to each layer's tile
column currents (A, ``(n, tile_columns)``, the tile's columns in order: ``G+``
even, ``G-`` odd) after the fault deviation is taken out and before the split
passes and the pairs are subtracted: drift compensation
(:mod:`protocols.inference.compensation`) and temperature corrections share
this one hook. Why there: a per-column gain must see ``G+`` and ``G-`` apart
(they hold other levels, so they drift apart); and a stuck cell's current does
not drift, so its recorded deviation comes out first (a drift gain applied
before would scale a 60 uS stuck cell's whole current, after it only the
target's share).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from protocols.inference.mapping import Mapping, Tile, check_array
from protocols.inference.network import InferenceInputError, Layer, Network, apply_activation
from protocols.inference.params import InferenceParams
from protocols.inference.result import InferenceResult

MIN_RANGE_A = 1e-6  # the smallest column range "auto" asks for
MAX_RANGE_A = 0.1  # and the largest


def encode(a: np.ndarray, volts: float, levels: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Row voltages (n, inputs) for layer inputs ``a`` and the per-vector scale
    (units of input per volt) that turns the product back into input units."""
    peak = np.abs(a).max(axis=1)
    peak = np.where(peak > 0, peak, 1.0)
    u = a / peak[:, None]
    if levels is not None:
        u = np.rint(u * levels) / levels
    return u * volts, peak / volts


class _Run:
    """One inference run: the batches, the counters, the error sums."""

    def __init__(self, array, network: Network, mapping: Mapping, params: InferenceParams,
                 corrections: tuple = ()):
        self.array, self.network, self.mapping, self.params = array, network, mapping, params
        self.corrections = corrections
        n = len(network.layers)
        self.calls = self.vectors = 0
        self.err2, self.ref2, self.peak = np.zeros(n), np.zeros(n), np.zeros(n)
        c = mapping.corrections  # per tile: None when it holds every cell on target
        self.corr = [None if c is None or not t.block(c).any() else t.block(c)
                     for t in mapping.tiles]

    def parts(self, a: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """Row voltages of a layer's inputs, as one or two passes, and the per-vector scale."""
        v, per_volt = encode(a, self.params.input_volts, self.params.levels)
        if self.params.signed == "split" and bool(np.any(v < 0)):
            return [np.maximum(v, 0.0), np.maximum(-v, 0.0)], per_volt
        return [v], per_volt

    def layer(self, k: int, layer: Layer, tile: Tile, a: np.ndarray) -> np.ndarray:
        """The analog product ``a @ W`` of one layer, in one MVM transaction."""
        p = self.params
        parts, per_volt = self.parts(a)
        n, rows = a.shape[0], self.mapping.array_shape[0]
        x = np.zeros((len(parts) * n, rows))
        for i, part in enumerate(parts):
            x[i * n:(i + 1) * n, tile.rows[0]:tile.rows[1]] = part
        if p.repeats > 1:
            x = np.tile(x, (p.repeats, 1))
        currents = np.asarray(self.array.mvm(x), dtype=np.float64)
        self.calls += 1
        self.vectors += x.shape[0]
        cols = currents[:, tile.cols[0]:tile.cols[1]]
        self.peak[k] = max(self.peak[k], float(np.abs(cols).max()))
        cols = cols.reshape(p.repeats, len(parts), n, -1).mean(axis=0)
        if self.corr[k] is not None:
            cols = cols - np.stack(parts) @ self.corr[k]
        cols = self.correct(k, cols.reshape(len(parts) * n, -1)).reshape(len(parts), n, -1)
        cols = cols[0] - cols[1] if len(parts) == 2 else cols[0]
        y = (cols[:, 0::2] - cols[:, 1::2]) * (per_volt / tile.scale)[:, None]
        ideal = a @ layer.weights
        self.err2[k] += float(np.sum((y - ideal) ** 2))
        self.ref2[k] += float(np.sum(ideal ** 2))
        return y

    def correct(self, k: int, currents: np.ndarray) -> np.ndarray:
        """The caller's corrections, in order, on layer k's tile currents (rows: vectors)."""
        for i, fix in enumerate(self.corrections):
            out = np.asarray(fix(k, currents), dtype=np.float64)
            if out.shape != currents.shape:
                raise InferenceInputError(f"correction {i} returned shape {out.shape} for "
                                          f"layer {k}'s currents of shape {currents.shape}")
            currents = out
        return currents

    def layer_range(self, k: int, tile: Tile, a: np.ndarray) -> float | None:
        """Set the column ADC range for layer k's inputs ``a`` (if asked and possible)."""
        mode, setter = self.params.mvm_range, getattr(self.array, "set_mvm_range", None)
        if mode is None or setter is None:
            return None
        if mode == "auto":
            amps = self.params.range_margin * self.peak_current(tile, a)
            amps = float(np.clip(amps, MIN_RANGE_A, MAX_RANGE_A))
        else:
            amps = float(mode[k] if isinstance(mode, tuple) else mode)
        setter(amps)
        return amps

    def peak_current(self, tile: Tile, a: np.ndarray) -> float:
        """The largest |column current| (A) the tile should draw for inputs ``a``: what
        the mapping predicts, through the inverse (``raw``) of each correction that has one."""
        block = tile.block(self.mapping.expected_conductances())
        peak = 0.0
        for part in self.parts(a)[0]:
            currents = part @ block
            for fix in reversed(self.corrections):
                raw = getattr(fix, "raw", None)
                currents = currents if raw is None else np.asarray(raw(tile.layer, currents))
            peak = max(peak, float(np.abs(currents).max()))
        return peak

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, tuple[float | None, ...]]:
        """Layer by layer, every batch through a layer before the next: one range per layer."""
        a, ranges, size = x, [], self.params.batch_size
        for k, (layer, tile) in enumerate(zip(self.network.layers, self.mapping.tiles,
                                              strict=True)):
            ranges.append(self.layer_range(k, tile, a))
            y = np.concatenate([self.layer(k, layer, tile, a[i:i + size])
                                for i in range(0, a.shape[0], size)])
            a = apply_activation(layer.activation, y + layer.bias)
        return a, tuple(ranges)

    def errors(self) -> tuple[float, ...]:
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.sqrt(self.err2 / self.ref2)
        return tuple(float(e) if np.isfinite(e) else 0.0 for e in rel)


def _check(array, network: Network, mapping: Mapping, params: InferenceParams) -> InferenceParams:
    check_array(array, mapping)
    tiles, layers = [t.shape for t in mapping.tiles], [la.shape for la in network.layers]
    if tiles != layers:
        raise InferenceInputError(f"the mapping was made for another network: its tiles "
                                  f"are {tiles}, the layers {layers}")
    if params.mvm_range not in (None, "auto") and getattr(array, "set_mvm_range", None) is None:
        raise InferenceInputError("mvm_range: this array controller has no settable MVM "
                                  "range; give mvm_range=None or 'auto'")
    if isinstance(params.mvm_range, tuple) and len(params.mvm_range) != len(layers):
        raise InferenceInputError(f"mvm_range: one range per layer ({len(layers)}), got "
                                  f"{len(params.mvm_range)}")
    volts = mapping.read_voltage if params.input_volts is None else params.input_volts
    limit = float(array.limits.max_read_voltage)
    if volts > limit:
        raise InferenceInputError(f"input_volts {volts:g} V exceeds the chip's read limit "
                                  f"{limit:g} V")
    return dataclasses.replace(params, input_volts=float(volts))


def _labels(labels, n: int) -> np.ndarray | None:
    if labels is None:
        return None
    y = np.asarray(labels)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise InferenceInputError(f"labels must be {n} whole numbers (one per input), "
                                  f"got shape {y.shape} of {y.dtype}")
    return y.astype(np.int64)


def run_network(array, network: Network, mapping: Mapping, x: np.ndarray, labels=None, *,
                params: InferenceParams | None = None, clock=None,
                corrections=()) -> InferenceResult:
    """Classify ``x`` (n, inputs) with ``network`` as programmed on ``array`` by ``mapping``.

    One ``array.mvm`` transaction per layer per batch of ``params.batch_size``
    vectors (all batches through a layer before the next, so an ``"auto"`` column
    range is set once per layer, from the inputs that layer actually gets); ``labels``
    (n,) give the accuracy; ``clock`` (Clock role) the bench time.

    ``corrections``: callables ``(layer_index: int, currents: ndarray) -> ndarray``,
    applied in the order given to layer ``layer_index``'s tile column currents
    (A, shape ``(m, tile_columns)``, the tile's columns in order, ``G+`` even and
    ``G-`` odd; ``m`` is the batch's vectors times its passes, repeats already
    averaged), after the faulty cells' recorded deviation is subtracted and
    before the passes and the pairs are; each returns currents of the same shape.
    Called once per batch, so a correction must not keep state between calls. A
    correction may also have ``raw(layer_index, currents)``, its inverse (the
    currents it expects the array to give for those the mapping predicts): the
    ``"auto"`` column range is then set from those, so a die whose currents
    drifted down (or rose with temperature) keeps its margin.
    :func:`protocols.inference.compensation.correction` makes drift ones.
    Everything is checked before the first vector is sent.
    """
    params = _check(array, network, mapping, params or InferenceParams())
    x = network.check_inputs(x)
    y = _labels(labels, x.shape[0])
    corrections = tuple(corrections)
    for i, fix in enumerate(corrections):
        if not callable(fix):
            raise InferenceInputError(f"correction {i} is not callable: a correction is a "
                                      f"function (layer_index, currents) -> currents")
    run = _Run(array, network, mapping, params, corrections)
    start, bench_start = time.perf_counter(), clock.now() if clock is not None else None
    outputs, ranges = run.forward(x)
    bench = None if clock is None else float(clock.now() - bench_start)
    return InferenceResult(
        predictions=np.argmax(outputs, axis=1), outputs=outputs,
        reference_predictions=network.predict(x), labels=y, layer_errors=run.errors(),
        peak_currents_a=tuple(float(p) for p in run.peak), mvm_transactions=run.calls,
        vectors=run.vectors, batches=-(-x.shape[0] // params.batch_size), bench_time_s=bench,
        wall_time_s=time.perf_counter() - start, params=params, mvm_ranges_a=ranges,
        corrections=len(corrections))
