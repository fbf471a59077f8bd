"""What the SourceMeter drivers share: the checks before any byte, and the order of a call.

:class:`SourceMeterDriver` is the SourceMeter role as the Keithley 2450, the Keithley
2600B and the Keysight B2900 drivers serve it. Every level, pulse and compliance passes
the bench's guard before any byte is sent: the DC level is bounded to read level
(``set_voltage``), the output never comes on at a level this driver did not set
(``output``), a programming pulse stays within the program limit and the pulse-width
limit (``pulse``), forming amplitudes go out only through ``form_pulse`` (the forming
limits), and a list sweep's points above read level need a dwell within the pulse-width
limit (``list_sweep``). Arguments are checked here too (a number, a whole count, a 1-D
list of at most ``max_points``). What goes on the wire is each instrument's own: the
hooks ``_send_compliance``, ``_send_level``, ``_send_output``, ``_send_averaging``,
``_read_point``, ``_sweep`` (a list the guard passed) and, where a pulse is not a
two-point sweep, ``_pulse``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from instruments.datasheet import ChipDatasheet
from instruments.drivers.base import Driver, float_array, number, switch_state, whole
from instruments.errors import ArgumentError, BadReply, ComplianceTrip
from instruments.safety import SafetyGuard
from instruments.session import VisaSession

LIST_CHUNK = 100  # sweep points per command line (an instrument's input line is limited)
MAX_POINTS = 2500  # the longest list sweep
MAX_AVERAGES = 100  # the largest averaging count
MAX_DWELL_S = 10.0  # the longest source delay per sweep point


class SourceMeterDriver(Driver):
    """The SourceMeter role's checks and call order; subclasses send the bytes."""

    role = "smu"
    stresses_device = True
    max_points: ClassVar[int] = MAX_POINTS
    max_averages: ClassVar[int] = MAX_AVERAGES
    max_dwell_s: ClassVar[float] = MAX_DWELL_S
    averaging_step: ClassVar[str] = "setting the averaging filter"  # for check_errors
    configure_before_output: ClassVar[bool] = True  # output() sets the instrument up first
    min_compliance: ClassVar[float] = 0.0  # A: the model's smallest current limit

    def __init__(self, session: VisaSession, guard: SafetyGuard,
                 datasheet: ChipDatasheet | None = None, *, parts=None) -> None:
        super().__init__(session, guard, datasheet, parts=parts)
        self._configured = False
        self._level: float | None = None  # the DC level this driver set (None: not yet)
        self._compliance: float | None = None  # the current limit this driver set
        self._on = False  # the output as this driver left it
        self._averages = 1  # the averaging count this driver set (1: off)

    def configure(self) -> None:
        raise NotImplementedError

    def _ready(self) -> None:
        """The instrument set up (``configure``) before the first command that needs it."""
        if not self._configured:
            self.configure()

    # -- the SourceMeter role --------------------------------------------------------------
    def smallest_compliance(self) -> float:
        """The instrument's smallest current limit, A (after ``configure``: some families
        tell their models apart by ``*IDN?``)."""
        return self.min_compliance

    def set_compliance(self, amps: float) -> None:
        i = self.guard.compliance(amps)
        self._ready()
        low = self.smallest_compliance()
        if i < low:  # the instrument would refuse it (an error queued, the old limit kept)
            raise ArgumentError(f"compliance {i:g} A is below this instrument's smallest "
                                f"current limit, {low:g} A")
        self._send_compliance(i)
        self._compliance = i

    def set_voltage(self, volts: float) -> None:
        """The DC level (read level at most: higher levels only as timed pulses)."""
        v = self.guard.dc_voltage(volts)
        self._ready()
        self._send_level(v)
        self._level = v

    def output(self, on: bool) -> None:
        """Output on (at the level set, 0 V if this driver set none yet) or off."""
        on = switch_state(on)
        if self.configure_before_output:
            self._ready()
        if on:
            self._safe_to_switch_on()
        self._send_output(on)
        self._on = on

    def _safe_to_switch_on(self) -> None:
        """Never on at a level this driver did not set."""
        if self._level is None:
            self.set_voltage(0.0)  # never switch on at a level someone else left

    def set_averaging(self, count: int) -> None:
        """Each reading averaged over ``count`` conversions (1 = off; the instrument's
        ``_send_averaging`` says how)."""
        count = whole(count, "averaging count", 1, self.max_averages)
        self._check_averaging(count)
        self._ready()
        self._send_averaging(count)
        self.session.check_errors(self.averaging_step)
        self._averages = count

    def _check_averaging(self, count: int) -> None:
        """Refuse, before anything is sent, a count the instrument cannot take."""

    def measure_current(self) -> float:
        """One source-measure point; raises ComplianceTrip if the limit was hit."""
        value, tripped = self._read_point()
        if tripped:
            raise self._tripped(f"at {value:g} A")
        return value

    def list_sweep(self, volts: np.ndarray, dwell_s: float) -> np.ndarray:
        """Source each voltage for ``dwell_s`` and measure; returns currents (A).

        Points above read level are pulses (program limit, ``dwell_s`` within the
        pulse-width limit); the sweep must end at read level.
        """
        v = float_array(volts, "sweep points")
        if v.ndim != 1:
            raise ArgumentError(f"sweep points must be a 1-D list, got shape {v.shape}")
        if v.size == 0 or v.size > self.max_points:
            raise ArgumentError(f"a list sweep takes 1..{self.max_points} points, got {v.size}")
        v, dwell = self._guard_sweep(v, dwell_s)
        return self._sweep(v, dwell)

    def _guard_sweep(self, v: np.ndarray, dwell_s: float) -> tuple[np.ndarray, float]:
        """The points and the dwell, checked (the dwell within the instrument's range, then
        the guard's sweep rules)."""
        dwell = number(dwell_s, "dwell", 0, self.max_dwell_s, "s")
        return self.guard.sweep(v, dwell), dwell

    def pulse(self, volts: float, width_s: float) -> float:
        """One programming pulse: ``volts`` (within the program limit) for ``width_s``
        (within the pulse-width limit), then 0 V; returns the current during it (A)."""
        v, w = guard_number(volts, "pulse amplitude"), guard_number(width_s, "pulse width")
        self.guard.pulses(np.array([v]), w)
        return self._pulse(v, w)

    def form_pulse(self, volts: float, width_s: float) -> float:
        """One forming pulse: ``volts`` and ``width_s`` within the forming limits, then
        0 V; the only path for amplitudes above the program limit."""
        v, w = guard_number(volts, "forming voltage"), guard_number(width_s, "forming width")
        self.guard.forming(v, w)
        return self._pulse(v, w)

    def _pulse(self, v: float, width: float) -> float:
        """A pulse the guard has passed, as a two-point sweep: ``v`` for ``width``, 0 V."""
        return float(self._sweep(np.array([v, 0.0]), width)[0])

    def _tripped(self, where: str) -> ComplianceTrip:
        return ComplianceTrip(f"{self.session.name}: current compliance tripped {where}; "
                              "the device may be shorted or stuck high")

    # -- the bytes: each instrument's own ---------------------------------------------------
    def _send_compliance(self, amps: float) -> None:
        raise NotImplementedError

    def _send_level(self, volts: float) -> None:
        raise NotImplementedError

    def _send_output(self, on: bool) -> None:
        raise NotImplementedError

    def _send_averaging(self, count: int) -> None:
        raise NotImplementedError

    def _read_point(self) -> tuple[float, bool]:
        """One reading and whether the limit was hit."""
        raise NotImplementedError

    def _sweep(self, v: np.ndarray, dwell_s: float) -> np.ndarray:
        """Upload and run a list sweep the guard has passed; the currents read."""
        raise NotImplementedError


def guard_number(value, what: str) -> float:
    """A number for the guard to judge (its range is the guard's business)."""
    if isinstance(value, (str, bytes, bool, np.bool_)) or np.ndim(value) != 0:
        raise ArgumentError(f"{what} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ArgumentError(f"{what} must be a number, got {value!r}") from None


def list_chunks(v: np.ndarray, sep: str = ","):
    """The sweep points as text, ``LIST_CHUNK`` to a command line: (first index, text)."""
    for start in range(0, v.size, LIST_CHUNK):
        yield start, sep.join(f"{x:.6g}" for x in v[start:start + LIST_CHUNK])


def value_and_state(sep: str, tripped: str, clear: str):
    """A parser of a reading and its compliance state, ``<value><sep><state>``, the state
    ``tripped`` or ``clear``: (value, whether the limit was hit)."""

    def parse(reply: str) -> tuple[float, bool]:
        parts = reply.strip().split(sep)
        if len(parts) != 2 or parts[1] not in (tripped, clear):
            raise BadReply(f"unexpected reply {reply!r}")
        return float(parts[0]), parts[1] == tripped

    return parse


def trip_state(reply: str) -> bool:
    """A compliance state ``0`` or ``1``."""
    if reply.strip() not in ("0", "1"):
        raise BadReply(f"unexpected compliance state {reply!r}")
    return reply.strip() == "1"
