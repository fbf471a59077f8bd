"""Forward and backward passes on the chip, and the reads that keep the host's view.

Forward: each layer is one ``run_network`` call of the inference protocol (one MVM
transaction per batch, auto column range, the DAC's rounding); the host adds the
biases and the ReLU. Backward: the hidden layers' error ``delta @ W.T`` by the
controller's transposed MVM (``mvm_transposed``: the output error as column voltages,
``G+`` columns and ``G-`` columns driven with opposite signs in two sets of vectors of
one transaction, their difference the product) or, on a controller without it, in
numpy from the weights last read (``digital``). The devices the host takes at a
reference level (unresponsive ones: :meth:`OnChip.read`) carry their true current in
both directions: the forward pass subtracts it (the inference protocol's corrections),
and so does the transposed product, so both use the host's weights. Only the host's
counters and reads are kept here; the algorithms decide what to pulse.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from protocols.inference import InferenceParams, Layer, Network, encode, run_network
from protocols.inference.run import MAX_RANGE_A, MIN_RANGE_A
from protocols.training.layout import floor_of, single_layer, with_conductances
from protocols.training.params import TrainingInputError

RANGE_MARGIN = 1.5


def backward_mode(array, wanted: str) -> str:
    """``chip`` or ``digital`` for ``wanted`` (``auto``: chip when the controller has a
    transposed MVM); asking for ``chip`` on a controller without one is an error."""
    has = callable(getattr(array, "mvm_transposed", None))
    if wanted == "chip" and not has:
        raise TrainingInputError("backward 'chip': this array controller has no transposed "
                                 "MVM (mvm_transposed); use backward 'digital' or 'auto'")
    return "chip" if wanted == "chip" or (wanted == "auto" and has) else "digital"


class OnChip:
    """A network as it stands on the array: the mapping, the host's biases, the last read.

    ``g``: the conductances (S, array shape) of the used cells as last read, NaN
    elsewhere. Counters: ``mvm_calls`` (forward), ``backward_calls`` (transposed),
    ``reads``. ``repeats``: conversions of each vector in one forward MVM transaction,
    averaged (``InferenceParams.repeats``).
    """

    def __init__(self, array, mapping, biases, *, backward: str = "auto",
                 input_bits: int | None = 8, clock=None, skip=None,
                 repeats: int = 1, references=None) -> None:
        self.array, self.mapping, self.clock = array, mapping, clock
        size = int(np.prod(mapping.array_shape))
        self.skip = np.zeros(size, bool) if skip is None else np.asarray(skip, bool).ravel()
        self.references = None if references is None else np.asarray(references, float).ravel()
        self.biases = [np.array(b, np.float64) for b in biases]
        self.backward = backward_mode(array, backward)
        self.params = InferenceParams(input_bits=input_bits, repeats=repeats)
        self.cells = np.flatnonzero(mapping.used)
        self.g = np.full(mapping.array_shape, np.nan)
        self.mvm_calls = self.backward_calls = self.reads = 0
        self.read_averages: int | None = None  # conversions per read; None: the board's

    @property
    def layers(self) -> int:
        return len(self.mapping.tiles)

    def read(self) -> np.ndarray:
        """Read every used cell (one transaction); returns and keeps the conductances.

        A device in ``skip`` (write-verify found it unresponsive: stuck, unformed) is
        taken as sitting at the floor (or at its entry of ``references``), and what it
        reads beyond that is recorded as a correction the forward pass subtracts (the
        inference protocol's fix-up of cells the array cannot hold): the host sees the
        pair as one working device.
        """
        values = (self.array.read_cells(self.cells) if self.read_averages is None else
                  self.array.read_cells(self.cells, averages=self.read_averages))
        shape = self.mapping.array_shape
        g = np.full(int(np.prod(shape)), np.nan)
        g[self.cells] = values
        floor = np.full(g.size, floor_of(self.mapping.g_min, self.mapping.g_max))
        if self.references is not None:
            floor = np.where(np.isfinite(self.references), self.references, floor)
        stuck = self.skip & np.isfinite(g)
        corrections = np.where(stuck, g - floor, 0.0).reshape(shape)
        g[stuck] = floor[stuck]
        self.g = g.reshape(shape)
        self.mapping = dataclasses.replace(with_conductances(self.mapping, self.g),
                                           corrections=corrections if stuck.any() else None)
        self.reads += 1
        return self.g

    def weights(self) -> list[np.ndarray]:
        """Each layer's weights as the last read shows them."""
        return [self.mapping.tile_weights(self.g, k) for k in range(self.layers)]

    def layer(self, k: int, a: np.ndarray, activation: str) -> np.ndarray:
        """Layer k on the chip for inputs ``a``: activation(a @ W_chip + b)."""
        w = np.nan_to_num(self.mapping.tile_weights(self.g, k))
        net = Network((Layer(w, self.biases[k], activation),))
        result = run_network(self.array, net, single_layer(self.mapping, k), a,
                             params=self.params)
        self.mvm_calls += result.mvm_transactions
        return result.outputs

    def forward(self, x: np.ndarray) -> list[np.ndarray]:
        """Activations [x, h, ..., logits], every product on the chip."""
        acts = [x]
        for k in range(self.layers):
            last = k == self.layers - 1
            acts.append(self.layer(k, acts[-1], "none" if last else "relu"))
        return acts

    def error_back(self, k: int, delta: np.ndarray) -> np.ndarray:
        """``delta @ W_k.T``: layer k's output error carried to its inputs."""
        if self.backward == "digital":
            return delta @ self.mapping.tile_weights(self.g, k).T
        tile = self.mapping.tiles[k]
        u, per_volt = encode(delta, self.params.input_volts or self.mapping.read_voltage,
                             self.params.levels)
        pos, neg = np.maximum(u, 0.0), np.maximum(-u, 0.0)
        n, cols = delta.shape[0], self.mapping.array_shape[1]
        v = np.zeros((2 * n, cols))
        v[:n, tile.plus_cols], v[:n, tile.minus_cols] = pos, neg
        v[n:, tile.plus_cols], v[n:, tile.minus_cols] = neg, pos
        carried = self.mapping.expected_conductances()  # as read, unresponsive ones too
        setter = getattr(self.array, "set_mvm_range", None)
        if setter is not None:
            peak = float(np.abs(v @ carried.T).max())
            setter(float(np.clip(RANGE_MARGIN * peak, MIN_RANGE_A, MAX_RANGE_A)))
        rows = np.asarray(self.array.mvm_transposed(v), np.float64)
        self.backward_calls += 1
        rows = rows[:, tile.rows[0]:tile.rows[1]]
        if self.mapping.corrections is not None:  # as the forward pass: the host's weights
            rows = rows - v[:, tile.cols[0]:tile.cols[1]] @ tile.block(
                self.mapping.corrections).T
        return (rows[:n] - rows[n:]) * (per_volt / tile.scale)[:, None]
