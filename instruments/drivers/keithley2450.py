"""Keithley 2450 SMU driver (SCPI mode), SourceMeter role.

Every level, pulse and compliance passes the safety guard. The DC output (a
level set with :meth:`Keithley2450.set_voltage`, left on with ``output(True)``)
stays at read level; anything above it reaches a cell only as a timed pulse:
:meth:`~Keithley2450.pulse` (program amplitudes, widths up to the pulse limit)
or :meth:`~Keithley2450.form_pulse` (forming amplitudes and widths). Pulses
and list sweeps upload their points in chunks (``:SOUR:LIST:VOLT`` then
``:APP``), run with ``:INIT`` and read back the buffer in one ``:TRAC:DATA?``.

A pulse's width is the sweep's source delay per point. On a real 2450 each
point also lasts its measurement (set by NPLC), so sub-millisecond pulses need
a low NPLC (:meth:`~Keithley2450.set_nplc`) or a pulse-capable SMU.
"""

from __future__ import annotations

import numpy as np

from instruments.datasheet import ChipDatasheet
from instruments.drivers.base import Driver, float_array, number, switch_state, whole
from instruments.errors import ArgumentError, BadReply, ComplianceTrip
from instruments.safety import SafetyGuard
from instruments.session import VisaSession

LIST_CHUNK = 100  # points per command line
MAX_POINTS = 2500
MAX_AVERAGES = 100  # the 2450's averaging filter count
MAX_DWELL_S = 10.0  # the 2450's longest source delay per sweep point


class Keithley2450(Driver):
    """Keithley 2450 source-measure unit in SCPI mode: DC reads, pulses, list sweeps."""

    role = "smu"
    session_options = {"error_query": ":SYST:ERR?"}
    stresses_device = True

    def __init__(self, session: VisaSession, guard: SafetyGuard,
                 datasheet: ChipDatasheet | None = None, *, parts=None) -> None:
        super().__init__(session, guard, datasheet, parts=parts)
        self._configured = False
        self._level: float | None = None  # the DC level this driver set (None: not yet)

    def configure(self) -> None:
        """Voltage source, current sense."""
        self.session.write(':SOUR:FUNC VOLT;:SENS:FUNC "CURR"')
        self.session.check_errors("configuring source and sense")
        self._configured = True

    def _ready(self) -> None:
        if not self._configured:
            self.configure()

    def set_compliance(self, amps: float) -> None:
        i = self.guard.compliance(amps)
        self._ready()
        self.session.write(f":SOUR:VOLT:ILIM {i:.6g}")

    def set_voltage(self, volts: float) -> None:
        """The DC level (read level at most: higher levels only as timed pulses)."""
        v = self.guard.dc_voltage(volts)
        self._ready()
        self.session.write(f":SOUR:VOLT {v:.6g}")
        self._level = v

    def output(self, on: bool) -> None:
        """Output on (at the level set, 0 V if this driver set none yet) or off."""
        on = switch_state(on)
        if on and self._level is None:
            self.set_voltage(0.0)  # never switch on at a level someone else left
        self.session.write(f":OUTP {'ON' if on else 'OFF'}")

    def set_nplc(self, nplc: float) -> None:
        n = number(nplc, "NPLC", 0.01, 10)
        self.session.write(f":SENS:CURR:NPLC {n:.6g}")

    def set_averaging(self, count: int) -> None:
        """Repeat filter: each reading is the mean of ``count`` conversions (1 = off)."""
        count = whole(count, "averaging count", 1, MAX_AVERAGES)
        self._ready()
        if count == 1:
            self.session.write(":SENS:CURR:AVER OFF")
        else:
            self.session.write(f":SENS:CURR:AVER:TCON REP;:SENS:CURR:AVER:COUN {count};"
                               ":SENS:CURR:AVER ON")
        self.session.check_errors("setting the averaging filter")

    def measure_current(self) -> float:
        """One source-measure point; raises ComplianceTrip if the limit was hit."""
        value, tripped = self.session.query(":MEAS:CURR?;:SOUR:VOLT:ILIM:TRIP?",
                                            parse=_value_and_trip)
        if tripped:
            raise ComplianceTrip(f"{self.session.name}: current compliance tripped at "
                                 f"{value:g} A; the device may be shorted or stuck high")
        return value

    def list_sweep(self, volts: np.ndarray, dwell_s: float) -> np.ndarray:
        """Source each voltage for ``dwell_s`` and measure; returns currents (A).

        Points above read level are pulses (program limit, ``dwell_s`` within the
        pulse-width limit); the sweep must end at read level.
        """
        v = float_array(volts, "sweep points")
        if v.ndim != 1:
            raise ArgumentError(f"sweep points must be a 1-D list, got shape {v.shape}")
        if v.size == 0 or v.size > MAX_POINTS:
            raise ArgumentError(f"a list sweep takes 1..{MAX_POINTS} points, got {v.size}")
        dwell = number(dwell_s, "dwell", 0, MAX_DWELL_S, "s")
        v = self.guard.sweep(v, dwell)
        return self._sweep(v, dwell)

    def pulse(self, volts: float, width_s: float) -> float:
        """One programming pulse: ``volts`` (within the program limit) for ``width_s``
        (within the pulse-width limit), then 0 V; returns the current during it (A)."""
        v, w = _level(volts, "pulse amplitude"), _level(width_s, "pulse width")
        self.guard.pulses(np.array([v]), w)
        return float(self._sweep(np.array([v, 0.0]), w)[0])

    def form_pulse(self, volts: float, width_s: float) -> float:
        """One forming pulse: ``volts`` and ``width_s`` within the forming limits, then
        0 V; the only path for amplitudes above the program limit."""
        v, w = _level(volts, "forming voltage"), _level(width_s, "forming width")
        self.guard.forming(v, w)
        return float(self._sweep(np.array([v, 0.0]), w)[0])

    def _sweep(self, v: np.ndarray, dwell_s: float) -> np.ndarray:
        """Upload and run a list sweep the guard has passed."""
        self._ready()
        for start in range(0, v.size, LIST_CHUNK):
            chunk = ",".join(f"{x:.6g}" for x in v[start:start + LIST_CHUNK])
            head = ":SOUR:LIST:VOLT" if start == 0 else ":SOUR:LIST:VOLT:APP"
            self.session.write(f"{head} {chunk}")
        self.session.write(f":SOUR:SWE:VOLT:LIST 1, {dwell_s:.9g}")
        readings = self.session.query(
            f':INIT;*WAI;:TRAC:DATA? 1, {v.size}, "defbuffer1", READ',
            parse=_floats(v.size), retry=False,
            timeout_s=self.session.timeout_s + v.size * (dwell_s + 0.05))
        tripped = self.session.query(":SOUR:VOLT:ILIM:TRIP?", parse=_trip)
        if tripped:
            raise ComplianceTrip(f"{self.session.name}: current compliance tripped during "
                                 "the sweep; the device may be shorted or stuck high")
        return readings


def _level(value, what: str) -> float:
    """A number for the guard to judge (its range is the guard's business)."""
    if isinstance(value, (str, bytes, bool, np.bool_)) or np.ndim(value) != 0:
        raise ArgumentError(f"{what} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ArgumentError(f"{what} must be a number, got {value!r}") from None


def _value_and_trip(reply: str) -> tuple[float, bool]:
    parts = reply.strip().split(";")
    if len(parts) != 2 or parts[1] not in ("0", "1"):
        raise BadReply(f"unexpected reply {reply!r}")
    return float(parts[0]), parts[1] == "1"


def _trip(reply: str) -> bool:
    if reply.strip() not in ("0", "1"):
        raise BadReply(f"unexpected compliance state {reply!r}")
    return reply.strip() == "1"


def _floats(count: int):
    def parse(reply: str) -> np.ndarray:
        values = np.array([float(x) for x in reply.strip().split(",")])
        if values.size != count:
            raise BadReply(f"expected {count} readings, got {values.size}")
        return values

    return parse
