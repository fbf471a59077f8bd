"""Keithley 2450 SMU driver (SCPI mode), SourceMeter role.

Every level, pulse and compliance passes the safety guard (the checks are the
SourceMeter drivers' shared ones, :mod:`instruments.drivers.smu_base`). The DC output (a
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

from instruments.drivers.base import number
from instruments.drivers.smu_base import (
    SourceMeterDriver,
    list_chunks,
    trip_state,
    value_and_state,
)
from instruments.errors import BadReply

_value_and_trip = value_and_state(";", "1", "0")  # :MEAS:CURR?;:SOUR:VOLT:ILIM:TRIP?


class Keithley2450(SourceMeterDriver):
    """Keithley 2450 source-measure unit in SCPI mode: DC reads, pulses, list sweeps."""

    session_options = {"error_query": ":SYST:ERR?"}
    min_compliance = 1e-9  # A: :SOUR:VOLT:ILIM range (reference manual)
    configure_before_output = False  # output, reads and NPLC go out as they are

    def configure(self) -> None:
        """Voltage source, current sense."""
        self.session.write(':SOUR:FUNC VOLT;:SENS:FUNC "CURR"')
        self.session.check_errors("configuring source and sense")
        self._configured = True

    def _send_compliance(self, amps: float) -> None:
        self.session.write(f":SOUR:VOLT:ILIM {amps:.6g}")

    def _send_level(self, volts: float) -> None:
        self.session.write(f":SOUR:VOLT {volts:.6g}")

    def _send_output(self, on: bool) -> None:
        self.session.write(f":OUTP {'ON' if on else 'OFF'}")

    def set_nplc(self, nplc: float) -> None:
        n = number(nplc, "NPLC", 0.01, 10)
        self.session.write(f":SENS:CURR:NPLC {n:.6g}")

    def _send_averaging(self, count: int) -> None:
        """Repeat filter: each reading is the mean of ``count`` conversions (1 = off)."""
        if count == 1:
            self.session.write(":SENS:CURR:AVER OFF")
        else:
            self.session.write(f":SENS:CURR:AVER:TCON REP;:SENS:CURR:AVER:COUN {count};"
                               ":SENS:CURR:AVER ON")

    def _read_point(self) -> tuple[float, bool]:
        return self.session.query(":MEAS:CURR?;:SOUR:VOLT:ILIM:TRIP?", parse=_value_and_trip)

    def _sweep(self, v: np.ndarray, dwell_s: float) -> np.ndarray:
        """Upload and run a list sweep the guard has passed."""
        self._ready()
        for start, chunk in list_chunks(v):
            head = ":SOUR:LIST:VOLT" if start == 0 else ":SOUR:LIST:VOLT:APP"
            self.session.write(f"{head} {chunk}")
        self.session.write(f":SOUR:SWE:VOLT:LIST 1, {dwell_s:.9g}")
        readings = self.session.query(
            f':INIT;*WAI;:TRAC:DATA? 1, {v.size}, "defbuffer1", READ',
            parse=_floats(v.size), retry=False,
            timeout_s=self.session.timeout_s + v.size * (dwell_s + 0.05))
        if self.session.query(":SOUR:VOLT:ILIM:TRIP?", parse=trip_state):
            raise self._tripped("during the sweep")
        return readings


def _floats(count: int):
    def parse(reply: str) -> np.ndarray:
        values = np.array([float(x) for x in reply.strip().split(",")])
        if values.size != count:
            raise BadReply(f"expected {count} readings, got {values.size}")
        return values

    return parse
