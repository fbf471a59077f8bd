"""The knobs of a variability map, and what the protocol reports while it runs.

Units are in the names: ``_s`` seconds or siemens as stated, ``_v`` volts. A quick
map and a thorough one differ only in ``cycles`` (and what follows from it);
:func:`protocols.profiles.variability_params` fills every field from the chip's
datasheet.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, fields

from instruments.errors import UserError
from protocols.write_verify.response import PulseModel


class VariabilityError(UserError, ValueError):
    """Bad input to the variability map, or a die the map cannot characterise
    (unformed, dead, no contact). Raised before the first pulse when it can be."""


class DeadArrayError(VariabilityError):
    """No cell moved under the strongest pulse the limits allow: a dead die, cells not
    formed, or no probe contact. A wafer sweep bins such a die instead of failing."""


@dataclass(frozen=True)
class VariabilityParams:
    """Parameters of :func:`protocols.variability.map_variability`.

    Window and forming fields come from the datasheet (siemens); the pulse model
    is the datasheet's nominal shape (drive = overdrive^p (w / w_ref)^q), which
    the protocol uses only to scale its train pulses and to express every cell's
    rate at the datasheet's reference pulse (drive 1).
    """

    window_g_min_s: float = 1e-6  # the chip's window, S (datasheet)
    window_g_max_s: float = 40e-6
    pristine_below_s: float = 1e-7  # reads below this: not formed (datasheet), S
    forming_required: bool = True
    pulse_model: PulseModel = field(default_factory=PulseModel)
    abrupt_reset: bool = False  # melt-quench RESET (PCM): trains use the reference RESET
    white_read_noise: bool = True  # False (1/f, PCM): instrument averaging barely helps

    cycles: int = 5  # full SET + RESET cycles (C2C spread needs >= 2)
    set_pulses: int = 8  # pulses per SET train (one cycle's SET half)
    reset_pulses: int = 7  # pulses per RESET train (then the tail, below)
    train_fraction: float = 0.35  # share of the distance to the bound one train pulse
    # should remove for the median cell (chosen from a two-pulse pilot per polarity)
    reset_train_fraction: float = 0.35  # the same for RESET trains: they measure the rate
    # (bites small enough that fast cells still take several steps); g_min comes from the tail
    reset_tail_pulses: int = 4  # strong RESET pulses ending each RESET train, each read a
    # sample of the cell's bottom (g_min); 0 with an abrupt RESET (every RESET is one)
    pilot_pulses: int = 2  # reference pulses per polarity that measure the population rate
    max_pulses_per_cell: int = 200  # the endurance budget (refused before any pulse if short)
    read_averages: int = 8  # conversions per read on the instrument (trains, ramps)

    noise_reads: int = 4  # repeat reads (averages 1) per state for the read-noise law
    ramp_steps: int = 12  # amplitudes of each threshold ramp
    ramp_start_fraction: float = 0.6  # first ramp amplitude, share of the nominal threshold
    ramp_width_s: float | None = None  # ramp pulse width, s (None: the reference width)
    move_sigma: float = 5.0  # "moved": beyond this many sigma of a two-read difference

    min_swing_fraction: float = 0.05  # a cell moves if SET and RESET levels differ by more
    # than this share of the chip window (and move_sigma): else max-drive probe, then fault
    low_level_fraction: float = 0.10  # non-moving cell reading below g_min + this share of
    # the window: stuck-low (below pristine_below on a chip that forms: unformed)
    high_level_fraction: float = 0.25  # ... above g_min + this share: stuck-high; between
    # the two: unresponsive within limits
    narrow_margin: float = 0.02  # share of the window a cell may miss before it is narrow
    usable_quantile: float = 0.99  # the usable window: what this share of healthy cells reach
    dead_fraction: float = 0.01  # fewer cells than this moving under max drive: a dead die

    def __post_init__(self) -> None:
        ints = {"cycles": 1, "set_pulses": 2, "reset_pulses": 1, "pilot_pulses": 2,
                "max_pulses_per_cell": 1, "noise_reads": 2, "ramp_steps": 2,
                "reset_tail_pulses": 0}
        for name, low in ints.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise VariabilityError(f"{name}: must be a whole number >= {low}, got {value!r}")
        if not (isinstance(self.read_averages, numbers.Integral)
                and 1 <= self.read_averages <= 1024):
            raise VariabilityError(f"read_averages: must be within 1..1024, got "
                                   f"{self.read_averages!r}")
        unit = ("train_fraction", "reset_train_fraction", "ramp_start_fraction",
                "min_swing_fraction", "low_level_fraction", "high_level_fraction",
                "usable_quantile", "dead_fraction")
        for name in unit:
            value = getattr(self, name)
            if not (_real(value) and 0 < value < 1):
                raise VariabilityError(f"{name}: must be within (0, 1), got {value!r}")
        if not (_real(self.narrow_margin) and 0 <= self.narrow_margin < 1):
            raise VariabilityError(f"narrow_margin: must be within [0, 1), got "
                                   f"{self.narrow_margin!r}")
        if self.low_level_fraction >= self.high_level_fraction:
            raise VariabilityError("low_level_fraction must be below high_level_fraction")
        if not (_real(self.move_sigma) and self.move_sigma > 0):
            raise VariabilityError(f"move_sigma: must be > 0, got {self.move_sigma!r}")
        if not (_real(self.window_g_min_s) and _real(self.window_g_max_s)
                and 0 <= self.window_g_min_s < self.window_g_max_s):
            raise VariabilityError("the window needs 0 <= g_min < g_max (siemens)")
        if self.ramp_width_s is not None and not (_real(self.ramp_width_s)
                                                  and self.ramp_width_s > 0):
            raise VariabilityError(f"ramp_width_s: must be > 0 s, got {self.ramp_width_s!r}")

    @property
    def span_s(self) -> float:
        return self.window_g_max_s - self.window_g_min_s

    def worst_case_pulses(self) -> int:
        """The most pulses one cell can receive: the budget must cover this."""
        return (2 * self.ramp_steps + 2 * self.pilot_pulses + 2  # ramps, pilots, probe
                + 1  # the max-drive SET that tells a dead die from a slow one
                + self.cycles * (self.set_pulses + self.reset_pulses
                                 + (0 if self.abrupt_reset else self.reset_tail_pulses)))

    def check_budget(self) -> None:
        """VariabilityError if the endurance budget cannot cover the worst case."""
        worst = self.worst_case_pulses()
        if worst > self.max_pulses_per_cell:
            tail = 0 if self.abrupt_reset else self.reset_tail_pulses
            raise VariabilityError(
                f"endurance budget {self.max_pulses_per_cell} pulses per cell is too small "
                f"for {self.cycles} cycles: the map may need up to {worst} (ramps "
                f"{2 * self.ramp_steps}, pilots and probes {2 * self.pilot_pulses + 3}, "
                f"{self.set_pulses + self.reset_pulses + tail} per cycle); raise the budget "
                "or map fewer cycles")

    def as_dict(self) -> dict:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = (value.__dict__ if isinstance(value, PulseModel) else value)
        return out


@dataclass(frozen=True)
class MapProgress:
    """What the protocol reports after each step (one read or pulse transaction)."""

    phase: str
    step: int  # steps done
    total: int  # steps planned (worst case; the map may finish earlier)
    cycle: int  # the cycle under way (0: before the first)
    bench_time_s: float
    transactions: int

    @property
    def settled(self) -> int:  # for progress bars counting "done" units
        return self.step


def _real(value) -> bool:
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))
