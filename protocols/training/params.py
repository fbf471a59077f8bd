"""The knobs of in-situ training, checked when they are made."""

from __future__ import annotations

import math
from dataclasses import dataclass

from instruments.errors import UserError
from protocols.checks import is_number as _number
from protocols.checks import is_whole as _whole

METHODS = ("sgd", "mixed", "hybrid", "chip-in-loop")
BACKWARDS = ("auto", "chip", "digital")
UPDATES = ("auto", "pair", "set-only")
FAULTY_PAIRS = ("floor", "partner")
# how a pair with one unresponsive device is used, by method (TrainParams.faulty_pairs None)
FAULTY_DEFAULT = {"sgd": "partner", "mixed": "partner", "hybrid": "partner",
                  "chip-in-loop": "partner"}
SGD_ZONE = 1.0  # of the granularity: sgd's stochastic rounding zone (TrainParams.sgd_zone)
SGD_MOMENTUM = 0.9  # sgd's host-side momentum (TrainParams.sgd_momentum)
LR_DECAY = 1.0  # per epoch, of the learning rate (see TrainParams)
# conversions per input vector in each forward MVM, by method (TrainParams.repeats None)
REPEATS = {"sgd": 1, "mixed": 1, "hybrid": 4, "chip-in-loop": 16}


class TrainingInputError(UserError, ValueError):
    """Training cannot start with these inputs; the message names what and why."""


@dataclass(frozen=True)
class TrainParams:
    """How a network is trained on the chip. Siemens; learning rate per sample.

    ``epochs``, ``lr`` (plain SGD on the mean cross-entropy of a batch), ``batch``
    (training samples per update: one forward, one backward and one pulse batch per
    ``batch`` samples), ``hidden`` (width of the one hidden layer), ``seed`` (weights'
    initialisation and the sample order). ``weight_margin``: each layer's window spans
    this times the largest |w| of the float baseline, so training has room to grow
    weights. ``granularity_s``: the conductance step one pulse is trusted to make
    (mixed precision fires when its accumulator passes it; SGD skips updates under half
    of it); None: 1/32 of the datasheet's window. ``backward``: ``chip`` (the
    controller's transposed MVM), ``digital`` (from read conductances) or ``auto``
    (chip when the controller has it). ``input_bits``: the row DACs' resolution.
    ``fraction``: the share of the training set hybrid retrains its last layer on.
    ``float_epochs``: epochs of the float baseline (also the ex-situ weights of hybrid
    and chip-in-the-loop). ``lr_decay``: the learning rate of epoch e is
    ``lr * lr_decay ** (e - 1)``, on the chip and in the float baseline of the same
    budget alike (the ex-situ network keeps a constant ``lr``); 1: constant.
    ``repeats``: conversions of each input vector in the same MVM transaction of a
    forward pass, averaged (the inference protocol's ``InferenceParams.repeats``: the
    column read-out noise falls as 1/sqrt(repeats), at ``repeats`` times the
    conversions, not more transactions); None: the method's default (``REPEATS``).
    ``update``: how an in-situ update changes a pair (sgd, mixed, hybrid): ``pair``
    (RESET the device that should come down, SET the other for the rest), ``set-only``
    (SET only the device whose increase gives the wanted sign; a pair whose device nears
    ``g_max`` is re-programmed to its difference by write-verify: the refresh), ``auto``
    (set-only where the datasheet's RESET is abrupt, PCM; pair elsewhere).
    ``faulty_pairs`` (sgd, mixed, hybrid with pair updates; chip-in-loop): a pair one of
    whose devices write-verify found unresponsive works with its other device, which gives weights
    of one sign (``floor``: the failed device taken at the floor) or of both (``partner``:
    the failed device taken mid-way up the window, the working one re-programmed around
    it after the first programming and updated alone); None: the method's default
    (``FAULTY_DEFAULT``).
    ``sgd_zone``: sgd sends a device change of at least this share of the granularity as
    asked, and rounds a smaller one stochastically to this share (zero otherwise), so the
    expected change is the gradient's; a larger zone sends fewer, larger pulses.
    ``sgd_every``: sgd sums the steps of that many batches on the host and sends the sum
    (the float baseline of the same budget sums alike); the sum is cleared at every send
    and at each epoch's end, so nothing is carried from one send to the next (unlike
    mixed precision's accumulators, which keep what did not fire); 1: every batch.
    ``sgd_momentum`` beta in [0, 1): sgd sends the host's dampened velocity of its steps,
    ``v = beta v + (1 - beta) step`` per weight (:class:`protocols.training.sgd.Momentum`,
    kept in the checkpoint), not each batch's step; 0: the step itself.
    """

    epochs: int = 10
    lr: float = 0.1
    batch: int = 10
    hidden: int = 20
    seed: int = 0
    weight_margin: float = 1.25
    granularity_s: float | None = None
    backward: str = "auto"
    input_bits: int | None = 8
    fraction: float = 0.25
    float_epochs: int = 30
    lr_decay: float = LR_DECAY
    repeats: int | None = None
    update: str = "auto"
    faulty_pairs: str | None = None
    sgd_zone: float = SGD_ZONE
    sgd_every: int = 1
    sgd_momentum: float = SGD_MOMENTUM

    def repeats_for(self, method: str) -> int:
        """Conversions per vector of ``method``'s forward passes."""
        return int(self.repeats) if self.repeats is not None else REPEATS[method]

    def faulty_pairs_for(self, method: str) -> str:
        """How ``method`` uses a pair with one unresponsive device."""
        return self.faulty_pairs or FAULTY_DEFAULT[method]

    def lr_at(self, epoch: int) -> float:
        """The learning rate of ``epoch`` (1 = the first)."""
        return self.lr * self.lr_decay ** (epoch - 1)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch", "hidden", "float_epochs", "sgd_every"):
            value = getattr(self, name)
            if not (_whole(value) and value >= 1):
                raise TrainingInputError(f"{name}: a whole number >= 1, got {value!r}")
        if not (_whole(self.seed) and self.seed >= 0):
            raise TrainingInputError(f"seed: a whole number >= 0, got {self.seed!r}")
        if not (_number(self.lr) and math.isfinite(self.lr) and self.lr > 0):
            raise TrainingInputError(f"lr: a positive learning rate, got {self.lr!r}")
        if not (_number(self.lr_decay) and 0 < self.lr_decay <= 1):
            raise TrainingInputError(f"lr_decay: in (0, 1], got {self.lr_decay!r}")
        if not (_number(self.weight_margin) and self.weight_margin >= 1):
            raise TrainingInputError(f"weight_margin: >= 1, got {self.weight_margin!r}")
        g = self.granularity_s
        if g is not None and not (_number(g) and math.isfinite(g) and 0 < g < 1e-3):
            raise TrainingInputError(f"granularity_s: a conductance step in siemens "
                                     f"(1 uS is 1e-6), got {g!r}")
        if self.backward not in BACKWARDS:
            raise TrainingInputError(f"backward: {self.backward!r}; choose "
                                     f"{', '.join(BACKWARDS)}")
        b = self.input_bits
        if b is not None and not (_whole(b) and 1 <= b <= 16):
            raise TrainingInputError(f"input_bits: 1..16 or None, got {b!r}")
        if self.update not in UPDATES:
            raise TrainingInputError(f"update: {self.update!r}; choose {', '.join(UPDATES)}")
        if not (_number(self.sgd_zone) and 0 < self.sgd_zone <= 8):
            raise TrainingInputError(f"sgd_zone: in (0, 8] granularity steps, got "
                                     f"{self.sgd_zone!r}")
        if not (_number(self.sgd_momentum) and 0 <= self.sgd_momentum < 1):
            raise TrainingInputError(f"sgd_momentum: in [0, 1), got {self.sgd_momentum!r}")
        if self.faulty_pairs is not None and self.faulty_pairs not in FAULTY_PAIRS:
            raise TrainingInputError(f"faulty_pairs: {self.faulty_pairs!r}; choose "
                                     f"{', '.join(FAULTY_PAIRS)}")
        r = self.repeats
        if r is not None and not (_whole(r) and 1 <= r <= 64):
            raise TrainingInputError(f"repeats: 1..64 or None, got {r!r}")
        if not (_number(self.fraction) and 0 < self.fraction <= 1):
            raise TrainingInputError(f"fraction: in (0, 1], got {self.fraction!r}")


def check_method(method: str) -> str:
    if method not in METHODS:
        raise TrainingInputError(f"method {method!r}: choose {', '.join(METHODS)}")
    return method
