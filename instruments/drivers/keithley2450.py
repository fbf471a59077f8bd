"""Keithley 2450 SMU driver (SCPI mode), SourceMeter role.

Every level and compliance passes the safety guard. List sweeps upload their
points in chunks (``:SOUR:LIST:VOLT`` then ``:APP``), run with ``:INIT`` and
read back the buffer in one ``:TRAC:DATA?``.
"""

from __future__ import annotations

import numpy as np

from instruments.errors import BadReply, ComplianceTrip
from instruments.safety import SafetyGuard
from instruments.session import VisaSession

LIST_CHUNK = 100  # points per command line
MAX_POINTS = 2500
MAX_AVERAGES = 100  # the 2450's averaging filter count


class Keithley2450:
    role = "smu"
    session_options = {"error_query": ":SYST:ERR?"}

    def __init__(self, session: VisaSession, guard: SafetyGuard) -> None:
        self.session = session
        self.guard = guard
        self._configured = False

    @property
    def transactions(self) -> int:
        return self.session.transactions

    def identity(self) -> str:
        return self.session.query("*IDN?").strip()

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
        v = self.guard.source_voltage(volts)
        self._ready()
        self.session.write(f":SOUR:VOLT {v:.6g}")

    def output(self, on: bool) -> None:
        self.session.write(f":OUTP {'ON' if on else 'OFF'}")

    def set_nplc(self, nplc: float) -> None:
        if not 0.01 <= nplc <= 10:
            raise ValueError(f"NPLC {nplc!r} must be within 0.01..10")
        self.session.write(f":SENS:CURR:NPLC {nplc:.6g}")

    def set_averaging(self, count: int) -> None:
        """Repeat filter: each reading is the mean of ``count`` conversions (1 = off)."""
        if isinstance(count, bool) or int(count) != count or not 1 <= count <= MAX_AVERAGES:
            raise ValueError(f"averaging count {count!r} must be an integer in 1..{MAX_AVERAGES}")
        self._ready()
        if count == 1:
            self.session.write(":SENS:CURR:AVER OFF")
        else:
            self.session.write(f":SENS:CURR:AVER:TCON REP;:SENS:CURR:AVER:COUN {int(count)};"
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
        """Source each voltage for ``dwell_s`` and measure; returns currents (A)."""
        v = np.asarray(volts, dtype=np.float64).ravel()
        if v.size == 0 or v.size > MAX_POINTS:
            raise ValueError(f"a list sweep takes 1..{MAX_POINTS} points, got {v.size}")
        for value in v:
            self.guard.source_voltage(value)
        if not 0 <= dwell_s <= 10:
            raise ValueError(f"dwell {dwell_s!r} s must be within 0..10 s")
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
        tripped = self.session.query(":SOUR:VOLT:ILIM:TRIP?", parse=lambda r: r.strip() == "1")
        if tripped:
            raise ComplianceTrip(f"{self.session.name}: current compliance tripped during "
                                 "the sweep; the device may be shorted or stuck high")
        return readings

    def pulse(self, volts: float, width_s: float) -> float:
        """A pulse as a two-point list sweep (volts, then 0 V), each for ``width_s``."""
        return float(self.list_sweep(np.array([volts, 0.0]), width_s)[0])

    def check(self) -> None:
        self.session.check_errors()


def _value_and_trip(reply: str) -> tuple[float, bool]:
    parts = reply.strip().split(";")
    if len(parts) != 2 or parts[1] not in ("0", "1"):
        raise BadReply(f"unexpected reply {reply!r}")
    return float(parts[0]), parts[1] == "1"


def _floats(count: int):
    def parse(reply: str) -> np.ndarray:
        values = np.array([float(x) for x in reply.strip().split(",")])
        if values.size != count:
            raise BadReply(f"expected {count} readings, got {values.size}")
        return values

    return parse
