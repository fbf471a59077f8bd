"""What training reports: a record per epoch and the run's result."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

FINAL_PASSES = 10  # passes of the test split through the chip that score a finished run
EPOCH_FIELDS = ("epoch", "train_accuracy", "test_accuracy", "loss", "pulses", "transactions",
                "bench_time_s", "wall_time_s")


@dataclass(frozen=True)
class EpochRecord:
    """One epoch (epoch 0: right after the weights were first programmed, before any
    training). Accuracies on the chip; ``test_accuracy`` on the held-out split; ``loss``:
    mean training cross-entropy over the epoch's batches (NaN for epoch 0); ``pulses``:
    device pulses sent in the epoch; ``transactions``: array bus transactions in it;
    seconds of bench time (clock role, NaN without one) and wall time."""

    epoch: int
    train_accuracy: float
    test_accuracy: float
    loss: float
    pulses: int
    transactions: int
    bench_time_s: float
    wall_time_s: float

    def row(self) -> tuple:
        return tuple(getattr(self, f) for f in EPOCH_FIELDS)


def records_array(records) -> np.ndarray:
    """Records as one float array (epochs, fields) in ``EPOCH_FIELDS`` order."""
    return np.array([r.row() for r in records], np.float64).reshape(-1, len(EPOCH_FIELDS))


def records_from(array: np.ndarray) -> list[EpochRecord]:
    a = np.asarray(array, np.float64).reshape(-1, len(EPOCH_FIELDS))
    return [EpochRecord(int(r[0]), float(r[1]), float(r[2]), float(r[3]), int(r[4]), int(r[5]),
                        float(r[6]), float(r[7])) for r in a]


@dataclass(frozen=True, eq=False)
class TrainResult:
    """A finished training: per-epoch records and what the method did.

    ``float_accuracy``: the float baseline's test accuracy per epoch (same network,
    data, learning rate, batch); ``reference_accuracy``: the float accuracy the method
    is measured against (the baseline's last, or the ex-situ network's for methods that
    transfer one). ``backward``: ``chip`` (transposed MVM), ``digital`` (from read
    conductances) or ``none`` (no backward product needed). ``weights``: each layer's
    weights as last read; ``conductance``: the array as last read (S, NaN where unused).
    ``pulses_per_weight``: device pulses of the epochs (programming excluded) per weight
    trained. ``final_passes``: the test split's accuracy on each of ``FINAL_PASSES``
    passes through the chip after the last epoch (a fresh forward pass each, nothing
    pulsed in between); their mean, ``final_test_accuracy``, is the finished network's
    score with the pass-to-pass noise of the chip averaged out (the epochs' series are
    one pass each: their last, ``accuracy``, moves by up to ~1.4 pt with that noise).
    """

    method: str
    records: tuple[EpochRecord, ...]
    float_accuracy: np.ndarray
    reference_accuracy: float
    backward: str
    weights: tuple[np.ndarray, ...]
    conductance: np.ndarray
    weights_trained: int
    programming_pulses: int
    samples_per_epoch: int
    final_passes: tuple[float, ...] = ()

    @property
    def accuracy(self) -> float:
        return self.records[-1].test_accuracy

    @property
    def final_test_accuracy(self) -> float:
        """Mean test accuracy of the final passes (the last epoch's without any)."""
        return float(np.mean(self.final_passes)) if self.final_passes else self.accuracy

    @property
    def pulses(self) -> int:
        return int(sum(r.pulses for r in self.records))

    @property
    def pulses_per_weight(self) -> float:
        return self.pulses / max(self.weights_trained, 1)

    def summary(self) -> dict[str, Any]:
        trained = [r for r in self.records if r.epoch > 0]
        samples = max(self.samples_per_epoch * len(trained), 1)
        return {
            "method": self.method, "backward": self.backward, "epochs": len(trained),
            "test_accuracy": self.accuracy, "train_accuracy": self.records[-1].train_accuracy,
            "transfer_accuracy": self.records[0].test_accuracy,
            "final_test_accuracy": self.final_test_accuracy,
            "final_test_std": float(np.std(self.final_passes)) if self.final_passes else 0.0,
            "final_test_passes": [float(a) for a in self.final_passes],
            "float_accuracy": self.reference_accuracy,
            "gap_to_float": self.reference_accuracy - self.accuracy,
            "pulses": self.pulses, "pulses_per_weight": self.pulses_per_weight,
            "programming_pulses": self.programming_pulses,
            "transactions_per_sample": sum(r.transactions for r in trained) / samples,
            "bench_time_per_sample_s": sum(r.bench_time_s for r in trained) / samples,
            "epochs_record": [dataclasses.asdict(r) for r in self.records],
            "float_test_accuracy": [float(a) for a in self.float_accuracy]}

    def arrays(self) -> dict[str, np.ndarray]:
        """The die file's ``train`` datasets: ``weights`` (every layer's, layer 0
        row-major then the next) and ``conductance`` (S)."""
        return {"weights": np.concatenate([w.ravel() for w in self.weights]),
                "conductance": self.conductance}


def chip_logits(trainer, x: np.ndarray) -> np.ndarray:
    """The network's outputs for ``x`` as it stands on the chip: one fresh forward pass
    (every product an MVM). A trainer with a digital gain per output fitted around its
    programmed last layer (chip-in-the-loop's ``gain``) applies it as its scores do."""
    z = trainer.chip.forward(x)[-1]
    gain = getattr(trainer, "gain", None)
    if gain is not None:
        b = trainer.chip.biases[-1]
        z = np.asarray(gain) * (z - b) + b
    return z


def score_passes(trainer, passes: int = FINAL_PASSES) -> tuple[float, ...]:
    """The held-out test split's accuracy on each of ``passes`` forward passes through
    the chip (each the forward pass of an epoch's scoring: an MVM per layer, with its
    column range; nothing is pulsed or read)."""
    x, y = trainer.data.x_test, trainer.data.y_test
    return tuple(float(np.mean(np.argmax(chip_logits(trainer, x), axis=1) == y))
                 for _ in range(int(passes)))


def training_result(trainer, method: str, float_accuracy, reference_accuracy: float,
                    passes: int = FINAL_PASSES):
    """The :class:`TrainResult` of a training object (``InSitu``, ``ChipInLoop``), scored
    on ``passes`` final passes of the test split through the chip (0: none)."""
    return TrainResult(
        method=method, records=tuple(trainer.records),
        float_accuracy=np.asarray(float_accuracy, np.float64),
        reference_accuracy=float(reference_accuracy),
        backward=trainer.chip.backward if trainer.uses_backward else "none",
        weights=tuple(trainer.chip.weights()), conductance=trainer.chip.g.copy(),
        weights_trained=trainer.weights_trained,
        programming_pulses=trainer.programming_pulses,
        samples_per_epoch=int(trainer.subset.size),
        final_passes=score_passes(trainer, passes) if passes else ())
