"""How a layer's inputs become row voltages: the knobs of on-chip inference."""

from __future__ import annotations

import math
from dataclasses import dataclass

from protocols.checks import is_number as _number
from protocols.checks import is_whole as _whole
from protocols.inference.network import InferenceInputError

SIGNED_MODES = ("split", "bipolar")
MAX_INPUT_BITS = 16


@dataclass(frozen=True)
class InferenceParams:
    """Input encoding and batching. Volts; bits of the row DACs.

    Each input vector is scaled by its own largest |value| so that value drives
    ``input_volts`` (the datasheet's read voltage when None; never above the
    array's ``max_read_voltage``), then rounded to ``input_bits`` (magnitude
    levels ``2**bits - 1``; None: no rounding beyond the link's float32); the
    scale is multiplied back digitally. ``signed``: ``split`` sends the positive
    and the negative parts of a batch as two sets of vectors of one transaction
    and subtracts (any array: rows only ever see 0..+V); ``bipolar`` sends
    negative voltages as they are (arrays whose read is symmetric). A batch with
    no negative input is sent once either way. ``batch_size``: input vectors per
    MVM transaction of each layer. ``repeats``: conversions of each vector in the
    same transaction, averaged (output noise falls as 1/sqrt(repeats)).

    ``mvm_range`` (A): the column ADC range to set before each layer's batches on
    a controller that has one (``set_mvm_range``, the reference board's
    ``:MVM:RANG``; others are left alone): ``"auto"`` sets ``range_margin`` x the
    largest column current the mapping predicts for that layer's inputs, so the
    ADC's steps and output noise (a share of its range) are small next to the
    signal; a number sets that for every layer, a tuple one per layer (a
    temperature correction's offsets need the ranges it will run at); None
    leaves the controller as configured. The last range set stays set.
    """

    input_volts: float | None = None
    input_bits: int | None = 8
    signed: str = "split"
    batch_size: int = 256
    repeats: int = 1
    mvm_range: float | str | tuple[float, ...] | None = "auto"
    range_margin: float = 1.5

    def __post_init__(self) -> None:
        v = self.input_volts
        if v is not None and not (_number(v) and math.isfinite(v) and v > 0):
            raise InferenceInputError(f"input_volts: must be a positive number of volts, "
                                      f"got {v!r}")
        b = self.input_bits
        if b is not None and not (_whole(b) and 1 <= b <= MAX_INPUT_BITS):
            raise InferenceInputError(f"input_bits: must be 1..{MAX_INPUT_BITS} or None, "
                                      f"got {b!r}")
        if self.signed not in SIGNED_MODES:
            raise InferenceInputError(f"signed: {self.signed!r}; choose split or bipolar")
        r = self.mvm_range
        values = r if isinstance(r, tuple) else (r,)
        if r is not None and r != "auto" and not (values and all(
                _number(v) and math.isfinite(v) and v > 0 for v in values)):
            raise InferenceInputError(f"mvm_range: 'auto', None, a positive current in A or "
                                      f"a tuple of them (one per layer), got {r!r}")
        if not (_number(self.range_margin) and self.range_margin >= 1):
            raise InferenceInputError(f"range_margin: must be >= 1, got {self.range_margin!r}")
        for name in ("batch_size", "repeats"):
            value = getattr(self, name)
            if not (_whole(value) and value >= 1):
                raise InferenceInputError(f"{name}: must be a whole number >= 1, got {value!r}")

    @property
    def levels(self) -> int | None:
        """DAC magnitude steps from 0 to full scale (None: not rounded)."""
        return None if self.input_bits is None else (1 << self.input_bits) - 1


@dataclass(frozen=True)
class DriftParams:
    """How a drift calibration measures (:mod:`protocols.inference.compensation`).

    The calibration drive of each tile is ``vectors`` fixed random 0 / V patterns
    on its rows (each row on with probability ``density``, from ``seed``; V =
    ``calibration_volts``, None: the mapping's read voltage), each sent ``repeats``
    times, all in one MVM transaction per tile; the column range (where settable)
    is ``range_margin`` x the largest column current the mapping predicts for it.
    ``read_averages``: conversions per reference cell in the one reference read
    (None: as configured). ``outlier_share``: reference cells whose
    programming-time read is farther than this share of the window from their
    level (stuck, unreachable) are left out of the fit.
    """

    vectors: int = 32
    repeats: int = 4
    density: float = 0.5
    seed: int = 0
    calibration_volts: float | None = None
    range_margin: float = 1.5
    read_averages: int | None = None
    outlier_share: float = 0.1

    def __post_init__(self) -> None:
        for name in ("vectors", "repeats"):
            value = getattr(self, name)
            if not (_whole(value) and value >= 1):
                raise InferenceInputError(f"{name}: a whole number >= 1, got {value!r}")
        if not (_number(self.density) and 0 < self.density <= 1):
            raise InferenceInputError(f"density: in (0, 1], got {self.density!r}")
        if not (_whole(self.seed) and self.seed >= 0):
            raise InferenceInputError(f"seed: a whole number >= 0, got {self.seed!r}")
        v = self.calibration_volts
        if v is not None and not (_number(v) and math.isfinite(v) and v > 0):
            raise InferenceInputError(f"calibration_volts: a positive number of volts, got {v!r}")
        if not (_number(self.range_margin) and self.range_margin >= 1):
            raise InferenceInputError(f"range_margin: must be >= 1, got {self.range_margin!r}")
        a = self.read_averages
        if a is not None and not (_whole(a) and a >= 1):
            raise InferenceInputError(f"read_averages: a whole number >= 1 or None, got {a!r}")
        if not (_number(self.outlier_share) and 0 < self.outlier_share <= 1):
            raise InferenceInputError(f"outlier_share: in (0, 1], got {self.outlier_share!r}")
