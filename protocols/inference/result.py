"""What an on-chip inference run reports: predictions, accuracy, per-layer MVM error, cost."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from protocols.inference.params import InferenceParams


@dataclass(frozen=True)
class InferenceResult:
    """Outcome of running a network on the chip for a batch of inputs.

    ``layer_errors[k]``: relative RMS error of layer k's analog product against
    the float product of the *intended* weights with the same layer inputs,
    ``||y_chip - x @ W|| / ||x @ W||`` over all vectors (input rounding, weight
    errors, read and output noise, IR drop and ADC together).
    ``peak_currents_a[k]``: the largest |column current| read on layer k's tile (A),
    to compare with the column ADC's range. ``reference_predictions``: the float
    network's on the same inputs. Bench time on the clock role (None: no clock).
    """

    predictions: np.ndarray  # (n,) int, argmax of the chip's outputs
    outputs: np.ndarray  # (n, outputs) the last layer's outputs (after its activation)
    reference_predictions: np.ndarray  # (n,) int, the float network's
    labels: np.ndarray | None  # (n,) int, when given
    layer_errors: tuple[float, ...]
    peak_currents_a: tuple[float, ...]
    mvm_transactions: int  # array.mvm calls: one per layer per batch
    vectors: int  # input vectors sent, split passes and repeats included
    batches: int
    bench_time_s: float | None
    wall_time_s: float
    params: InferenceParams
    mvm_ranges_a: tuple[float | None, ...] = ()  # column ADC range set per layer (None: as was)
    corrections: int = 0  # correction callables applied to the column currents

    @property
    def count(self) -> int:
        return int(self.predictions.size)

    @property
    def accuracy(self) -> float | None:
        """Share of predictions equal to the labels (None: no labels)."""
        if self.labels is None:
            return None
        return float(np.mean(self.predictions == self.labels))

    @property
    def reference_accuracy(self) -> float | None:
        """The float network's accuracy on the same inputs (None: no labels)."""
        if self.labels is None:
            return None
        return float(np.mean(self.reference_predictions == self.labels))

    @property
    def agreement(self) -> float:
        """Share of inputs where the chip predicts what the float network does."""
        return float(np.mean(self.predictions == self.reference_predictions))

    def summary(self) -> dict[str, Any]:
        return {
            "inputs": self.count, "accuracy": self.accuracy,
            "reference_accuracy": self.reference_accuracy, "agreement": self.agreement,
            "layer_errors": list(self.layer_errors),
            "peak_currents_a": list(self.peak_currents_a),
            "mvm_transactions": self.mvm_transactions, "vectors": self.vectors,
            "batches": self.batches, "bench_time_s": self.bench_time_s,
            "wall_time_s": self.wall_time_s, "input_volts": self.params.input_volts,
            "input_bits": self.params.input_bits, "signed": self.params.signed,
            "repeats": self.params.repeats, "mvm_ranges_a": list(self.mvm_ranges_a),
            "corrections": self.corrections,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"predictions": self.predictions, "outputs": self.outputs,
               "reference_predictions": self.reference_predictions,
               "layer_errors": np.asarray(self.layer_errors, dtype=np.float64)}
        if self.labels is not None:
            out["labels"] = self.labels
        return out
