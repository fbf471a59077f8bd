"""Chip-in-the-loop fine-tuning (NeuRRAM, Wan et al., Nature 2022).

Layer by layer: the ex-situ (float) network's first layer is programmed by write-verify;
the training set is run through it on the chip, and the layers above are fine-tuned
digitally (plain SGD in numpy, one epoch per :meth:`ChipInLoop.run_epoch`) against
those actual outputs — the chip's noise, IR drop, stuck cells and programming errors
included; then the next layer is programmed, and so on. No backward product is needed
on the chip and no pulse is sent between programmings. The last layer's programming
error is nobody's to absorb, so once it is programmed the host reads it back: pairs
with a device write-verify could not place (stuck, unformed, off target) keep only what
their working device can realise (its sign, or the weight as read when both failed;
with ``faulty_pairs`` ``partner`` the failed device is taken mid-window and the working
one alone gives both signs over half the range, as sgd's pairs do — layer 0's such
pairs are written that way right after its first programming), the layer is
fine-tuned again digitally around them (``RETUNE_EPOCHS`` on the same
measured hidden outputs) and written again by write-verify (the devices on target
only verified); then its digital part (bias, and a gain per output for the column
read-out) is fitted to its actual outputs on the training split. Records: epoch 0 and each
fine-tuning epoch score the programmed layers on the chip with the rest digital; the
last epoch ends with the tuned layer programmed and the whole network on the chip.
"""

from __future__ import annotations

import time

import numpy as np

from protocols.inference import Mapping
from protocols.profiles import write_verify_params
from protocols.training.baseline import backward, cross_entropy, forward, output_delta
from protocols.training.dataset import TrainData
from protocols.training.layout import (
    lone_level,
    lone_pairs,
    lone_targets,
    parked,
    read_idle,
    references,
    tile_cells,
    training_mapping,
    with_weights,
)
from protocols.training.params import TrainParams
from protocols.training.passes import OnChip
from protocols.training.result import EpochRecord, records_array, records_from
from protocols.training.start import float_models, off_target, sizes_of
from protocols.write_verify import AdaptiveResponse, write_verify

RETUNE_EPOCHS = 5  # digital epochs around the last layer's failed devices


def realisable(mapping: Mapping, k: int, skip: np.ndarray, w_read: np.ndarray,
               lone: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per weight of layer k, the (low, high) bounds its pair can still realise: the
    full range; with one device in ``skip``, ``<= 0`` when it is G+ (the host takes it at
    the floor), ``>= 0`` when it is G- — or, ``lone``, both signs over the span its
    working device has around :func:`~protocols.training.layout.lone_level`; the weight
    as read when both are in ``skip``."""
    tile = mapping.tiles[k]
    plus, minus = tile_cells(mapping, k)
    dead_p, dead_m = skip[plus], skip[minus]
    both = dead_p & dead_m
    low = np.where(both, w_read, np.where(dead_m, 0.0, -tile.w_clip))
    high = np.where(both, w_read, np.where(dead_p, 0.0, tile.w_clip))
    if lone:
        level = lone_level(mapping.g_min, mapping.g_max)
        up = min(tile.w_clip, (mapping.g_max - level) / tile.scale)
        down = min(tile.w_clip, (level - mapping.g_min) / tile.scale)
        alone = dead_p ^ dead_m
        # G- failed: w = (G+ - level) / s; G+ failed: w = (level - G-) / s
        low = np.where(alone, np.where(dead_m, -down, -up), low)
        high = np.where(alone, np.where(dead_m, up, down), high)
    return low, high


def layer_targets(mapping: Mapping, k: int, weights, skip: np.ndarray,
                  lone: bool) -> np.ndarray:
    """Targets (S, array shape) of layer k's devices only, NaN for every other cell and
    for the devices in ``skip``: pairs holding ``weights`` with one device at the floor,
    and, ``lone``, a pair with one failed device its working device alone around the
    failed one taken at :func:`~protocols.training.layout.lone_level`."""
    targets = with_weights(mapping, weights).targets
    if lone:
        alone = lone_targets(mapping, weights, skip)
        targets = np.where(np.isfinite(alone), alone, targets)
    tile = mapping.tiles[k]
    only = np.full(targets.shape, np.nan)
    only[tile.rows[0]:tile.rows[1], tile.cols[0]:tile.cols[1]] = tile.block(targets)
    only.ravel()[np.asarray(skip, bool).ravel()] = np.nan
    return only


def has_lone(mapping: Mapping, k: int, skip: np.ndarray) -> bool:
    """Whether layer k has a pair with exactly one device in ``skip``."""
    fp, fm = lone_pairs(mapping, skip)[k]
    return bool((fp | fm).any())


class ChipInLoop:
    """A 2-layer chip-in-the-loop fine-tuning in progress: layer 0 on the chip, layer 1
    tuned digitally on its outputs, then programmed."""

    def __init__(self, array, datasheet, data: TrainData, params: TrainParams, *, mapping,
                 weights, biases, response, clock=None, programming_pulses: int = 0,
                 skip=None, lone: bool = False) -> None:
        self.array, self.sheet, self.data, self.params = array, datasheet, data, params
        self.clock, self.response = clock, response
        size = int(np.prod(mapping.array_shape))
        self.skip = np.zeros(size, bool) if skip is None else np.asarray(skip, bool).ravel()
        self.lone = bool(lone)
        self.chip = OnChip(array, mapping, biases, backward="digital",
                           input_bits=params.input_bits, clock=clock, skip=self.skip,
                           repeats=params.repeats_for("chip-in-loop"),
                           references=references(mapping, self.skip, self.lone))
        self.w = [np.array(w, np.float64) for w in weights]
        self.layers = (len(mapping.tiles) - 1,)
        self.subset = np.arange(data.y_train.size)
        self.epoch, self.records = 0, []
        self.programming_pulses = int(programming_pulses)
        self.uses_backward = False
        self.gain = np.ones(data.classes)  # per output, fitted once the last layer is on chip
        self.chip.read()
        self._features = None

    def features(self) -> tuple[np.ndarray, np.ndarray]:
        """Layer 0's outputs on the chip for the training and test split (one MVM
        transaction per 256 samples), measured once per programming."""
        if self._features is None:
            self._features = tuple(self.chip.layer(0, x, "relu")
                                   for x in (self.data.x_train, self.data.x_test))
        return self._features

    def _scores(self, on_chip: bool) -> tuple[float, float]:
        out = []
        h = self.features()
        for k, y in enumerate((self.data.y_train, self.data.y_test)):
            if on_chip:
                z = self.gain * (self.chip.layer(1, h[k], "none") - self.chip.biases[1])
                z = z + self.chip.biases[1]
            else:
                z = h[k] @ self.w[1] + self.chip.biases[1]
            out.append(float(np.mean(np.argmax(z, axis=1) == y)))
        return out[0], out[1]

    def run_epoch(self, progress=None) -> EpochRecord:
        tx0, bench0, wall0 = self._counters()
        if not self.records:
            self.records.append(self._record(0, float("nan"), 0, tx0, bench0, wall0, False))
            tx0, bench0, wall0 = self._counters()
        self.epoch += 1
        loss = self.tune(self.params.lr_at(self.epoch), [self.params.seed, self.epoch])
        pulses, last = 0, self.epoch >= self.params.epochs
        if last:
            pulses = self.program_layer(1)
        record = self._record(self.epoch, loss, pulses, tx0, bench0, wall0, last)
        self.records.append(record)
        return record

    def tune(self, lr: float, seed, bounds=None) -> float:
        """One digital epoch of plain SGD on the last layer against the chip's measured
        hidden outputs (``bounds``: (low, high) the weights are kept within); returns
        the mean training loss."""
        h = self.features()[0]
        order = np.random.default_rng(seed).permutation(h.shape[0])
        total, b = 0.0, self.chip.biases
        for i in range(0, order.size, self.params.batch):
            pick = order[i:i + self.params.batch]
            acts = forward([self.w[1]], [b[1]], h[pick])
            y = self.data.y_train[pick]
            total += cross_entropy(acts[-1], y) * pick.size
            (dw, db), = backward([self.w[1]], acts, output_delta(acts[-1], y))
            self.w[1] -= lr * dw
            b[1] -= lr * db
            if bounds is not None:
                self.w[1] = np.clip(self.w[1], *bounds)
        return total / order.size

    def program_layer(self, k: int) -> int:
        """Write-verify layer k's tuned weights onto its tile, then tune the layer again
        around the devices that failed and write it again (the devices already on
        target are only verified); returns the pulses."""
        pulses = self._write(k)
        plus, minus = tile_cells(self.chip.mapping, k)
        if (self.skip[plus] | self.skip[minus]).any():
            w_read = np.nan_to_num(self.chip.weights()[k])
            bounds = realisable(self.chip.mapping, k, self.skip, w_read, self.lone)
            self.w[k] = np.clip(self.w[k], *bounds)
            lr = self.params.lr_at(self.params.epochs)
            for i in range(RETUNE_EPOCHS):
                self.tune(lr, [self.params.seed, 0xFA11, i], bounds)
            pulses += self._write(k)
        self.calibrate_outputs()
        return pulses

    def _write(self, k: int) -> int:
        """One write-verify of layer k's targets (the devices in ``skip`` left alone);
        the devices it leaves off target join ``skip``; the chip read again."""
        only = layer_targets(self.chip.mapping, k, self.w, self.skip, self.lone)
        if not np.isfinite(only).any():  # every device of the tile failed before
            return 0
        wv = write_verify(self.array, only, clock=self.clock,
                          params=write_verify_params(self.sheet), response=self.response)
        self.response = wv.response
        self.skip |= off_target(wv, trainable=False)
        self.chip.skip = self.skip
        self.chip.references = references(self.chip.mapping, self.skip, self.lone)
        self.chip.read()
        return int(np.sum(wv.pulses))

    def calibrate_outputs(self, steps: int = 200, lr: float = 0.5) -> None:
        """Fit the digital part of the programmed last layer — a gain and the bias per
        output — to the chip's actual outputs on the training split (one MVM
        transaction per 256 samples; gradient descent on the cross-entropy)."""
        b = self.chip.biases[1]
        raw = self.chip.layer(1, self.features()[0], "none") - b
        y = self.data.y_train
        gain = np.ones(raw.shape[1])
        for _ in range(steps):
            delta = output_delta(raw * gain + b, y)
            gain -= lr * (delta * raw).sum(axis=0)
            b -= lr * delta.sum(axis=0)
        self.gain = gain

    def _counters(self):
        bench = self.clock.now() if self.clock is not None else float("nan")
        return int(self.array.transactions), bench, time.perf_counter()

    def _record(self, epoch, loss, pulses, tx0, bench0, wall0, on_chip) -> EpochRecord:
        train, test = self._scores(on_chip)
        tx, bench, wall = self._counters()
        return EpochRecord(epoch, train, test, float(loss), int(pulses), tx - tx0,
                           bench - bench0, wall - wall0)

    @property
    def weights_trained(self) -> int:
        return int(self.w[1].size)

    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict]:
        """The digital state (tuned weights, biases, records, response model): a
        checkpoint; :meth:`from_arrays` continues it on the die as it is."""
        arrays = {"epoch": np.int64(self.epoch), "records": records_array(self.records),
                  "w0": self.w[0].copy(), "w1": self.w[1].copy(), "skip": self.skip.copy(),
                  "gain": self.gain.copy(),
                  "programming_pulses": np.int64(self.programming_pulses)}
        for k, b in enumerate(self.chip.biases):
            arrays[f"bias{k}"] = b.copy()
        for key, value in self.response.to_arrays().items():
            arrays[f"response.{key}"] = np.asarray(value)
        return arrays, {"rule": "chip-in-loop", "mapping": self.chip.mapping.to_dict(),
                        "lone": self.lone}

    @classmethod
    def from_arrays(cls, array, datasheet, data, params, arrays, meta, clock=None):
        a = {k: np.asarray(v) for k, v in arrays.items()}
        shape = tuple(meta["mapping"]["array_shape"])
        mapping = Mapping.from_dict(meta["mapping"], np.full(shape, np.nan))
        weights = [a["w0"], a["w1"]]
        response = AdaptiveResponse.from_arrays(
            {k[len("response."):]: v for k, v in a.items() if k.startswith("response.")})
        out = cls(array, datasheet, data, params, mapping=with_weights(mapping, weights),
                  weights=weights, biases=[a["bias0"], a["bias1"]], response=response,
                  clock=clock, programming_pulses=int(a["programming_pulses"]),
                  skip=a["skip"], lone=bool(meta.get("lone", False)))
        out.epoch, out.records = int(a["epoch"]), records_from(a["records"])
        out.gain = np.array(a["gain"], np.float64)
        return out


def begin_chip_in_loop(array, datasheet, data: TrainData, params: TrainParams, *,
                       clock=None, response=None) -> ChipInLoop:
    """Program the ex-situ network's first layer and return the fine-tuning. With
    ``faulty_pairs`` ``partner``, a pair of layer 0 with one device write-verify could not
    place has its working device written again around the failed one (both signs)."""
    _, ex_situ = float_models(data, params)
    ranges = tuple(params.weight_margin * float(np.abs(w).max()) for w in ex_situ.weights)
    mapping = training_mapping(datasheet, tuple(array.shape), sizes_of(data, params), ranges)
    targets = with_weights(mapping, ex_situ.weights)
    lone = params.faulty_pairs_for("chip-in-loop") == "partner"
    wv_params = write_verify_params(datasheet)
    skip = np.zeros(int(np.prod(targets.array_shape)), bool)
    first = layer_targets(targets, 0, ex_situ.weights, skip, False)
    # the last layer's tile at the ex-situ weights and the idle cells at g_min while layer
    # 0's outputs are measured: the load on its word lines (their IR drop) is then about
    # what it will be once the tuned layer is written, not a formed die's mid-window cells
    upper = layer_targets(targets, 1, ex_situ.weights, skip, False)
    initial = parked(targets, np.where(np.isfinite(first), first, upper),
                     read_idle(array, targets))
    wv = write_verify(array, initial, clock=clock, params=wv_params, response=response)
    response, pulses = wv.response, int(np.sum(wv.pulses))
    # layer 0 stays as programmed: every device left off target is skipped; layer 1 is
    # written again, so only its unresponsive devices are
    skip = off_target(wv, trainable=True) | (off_target(wv, trainable=False)
                                             & np.isfinite(first).ravel())
    if lone and has_lone(targets, 0, skip):
        # only the working devices of layer 0's pairs with one failed device
        again = np.where(np.isfinite(first), lone_targets(targets, ex_situ.weights, skip),
                         np.nan)
        wv = write_verify(array, again, clock=clock, params=wv_params, response=response)
        response, pulses = wv.response, pulses + int(np.sum(wv.pulses))
        skip = skip | off_target(wv, trainable=False)
    return ChipInLoop(array, datasheet, data, params, mapping=targets,
                      weights=ex_situ.weights, biases=ex_situ.biases, response=response,
                      clock=clock, programming_pulses=pulses, skip=skip, lone=lone)
