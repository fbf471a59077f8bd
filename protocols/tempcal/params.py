"""The knobs of a temperature calibration sweep, and its error classes.

Units are in the names: ``_c`` degrees C, ``_s`` seconds, ``_a`` amperes, ``_v`` volts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from instruments.errors import UserError
from protocols.checks import is_number as _number
from protocols.checks import is_whole as _whole

PLANS = ("interleaved", "descending")
LAWS = ("linear", "arrhenius")


class TempcalError(UserError, ValueError):
    """Bad input to the temperature calibration, or a model that cannot be used as asked."""


class ChuckNotSettled(TempcalError):
    """The chuck did not report settled at a set point within the timeout."""

    def __init__(self, setpoint_c: float, reading_c: float, timeout_s: float) -> None:
        super().__init__(
            f"the chuck did not settle at {setpoint_c:g} degC within {timeout_s:g} s (it reads "
            f"{reading_c:.2f} degC): check the chuck's heater / cooling and its settle window, "
            "or give a longer settle_timeout_s")
        self.setpoint_c, self.reading_c, self.timeout_s = setpoint_c, reading_c, timeout_s


class NoReferenceCells(TempcalError):
    """The die temperature was asked of reference cells, and the mapping has none."""


@dataclass(frozen=True)
class SweepParams:
    """How :func:`protocols.tempcal.temperature_sweep` visits and measures.

    ``reference_c``: the temperature the model refers to and the correction maps
    back to (None: the first set point). ``plan``: ``interleaved`` visits the
    reference again after every other set point (hottest first), so each hot
    measurement is paired with a reference read taken minutes later, not before
    the hottest stint aged the die; ``descending`` visits the reference, then the
    others hottest first, then the reference once more (fewer transitions, more
    drift between a hot read and its reference). Either way the sweep starts and
    ends at the first set point.

    At each visit the chuck must report settled within ``settle_timeout_s`` (polled
    every ``poll_s``), then the sweep waits ``soak_s`` more: the die lags its chuck
    by tens of seconds, and the chuck cannot tell. It then reads the whole array
    ``reads`` times (``read_averages`` conversions each; their scatter gives the
    read noise), and runs one MVM transaction of ``zero_vectors`` all-zero inputs (the
    column offsets: their sigma falls as 1/sqrt(zero_vectors)) and ``mvm_repeats``
    x ``calibration_vectors`` fixed inputs at ``mvm_volts`` (None: the array's or
    the datasheet's read voltage). ``mvm_range_a``: the column range set for those
    vectors, the same at every visit (on a controller that can set one); None:
    2.5 x the largest calibration current the first visit's reads predict.
    """

    reference_c: float | None = None
    plan: str = "interleaved"
    settle_timeout_s: float = 1800.0
    poll_s: float = 5.0
    soak_s: float = 120.0
    reads: int = 8
    read_averages: int = 16
    zero_vectors: int = 2048
    calibration_vectors: int = 16
    mvm_repeats: int = 16
    mvm_volts: float | None = None
    mvm_range_a: float | None = None

    def __post_init__(self) -> None:
        if self.plan not in PLANS:
            raise TempcalError(f"plan: {self.plan!r}; choose {' or '.join(PLANS)}")
        for name in ("settle_timeout_s", "poll_s"):
            if not _positive(getattr(self, name)):
                raise TempcalError(f"{name}: a positive number of seconds, got "
                                   f"{getattr(self, name)!r}")
        if not (_number(self.soak_s) and math.isfinite(self.soak_s) and self.soak_s >= 0):
            raise TempcalError(f"soak_s: a number of seconds >= 0, got {self.soak_s!r}")
        for name in ("reads", "read_averages", "zero_vectors", "calibration_vectors",
                     "mvm_repeats"):
            value = getattr(self, name)
            if not (_whole(value) and value >= 1):
                raise TempcalError(f"{name}: a whole number >= 1, got {value!r}")
        for name in ("mvm_volts", "mvm_range_a"):
            value = getattr(self, name)
            if value is not None and not _positive(value):
                raise TempcalError(f"{name}: a positive number or None, got {value!r}")
        r = self.reference_c
        if r is not None and not (_number(r) and math.isfinite(r)):
            raise TempcalError(f"reference_c: a temperature in degC or None, got {r!r}")


def _positive(value) -> bool:
    return _number(value) and math.isfinite(value) and value > 0
