"""Keysight B2900 precision SMU driver (B2901A/B2902A/B2911A/B2912A and B-models), SourceMeter.

One driver instance drives one channel (option ``channel = 1 | 2``, default 1;
the ``[c]`` suffix of ``:SOUR[c]``, ``:SENS[c]``, ``:OUTP[c]``, ``:TRIG[c]`` and
the ``(@c)`` channel lists). Every level, pulse and compliance passes the safety
guard with the same rules as the Keithley 2450 driver (the shared checks of
:mod:`instruments.drivers.smu_base`). The DC output (a level set with
:meth:`KeysightB2900.set_voltage`, left on with ``output(True)``) stays at read
level; anything above it reaches a cell only as a timed pulse:

- :meth:`~KeysightB2900.pulse` and :meth:`~KeysightB2900.form_pulse` use the
  B2900's pulse mode (``:SOUR:FUNC:SHAP PULS``): base 0 V (the immediate level),
  peak ``:SOUR:VOLT:TRIG``, ``:SOUR:PULS:DEL 0`` and ``:SOUR:PULS:WIDT``, one
  trigger, the current measured in the middle half of the pulse (limited at the
  compliance, which is no error for a pulse); then the shape goes back to DC, the
  output at 0 V, and the output as the driver had it (on or off).
- :meth:`~KeysightB2900.list_sweep` is a DC list sweep (``:SOUR:VOLT:MODE LIST``,
  ``:SOUR:LIST:VOLT`` then ``:APP``), one timer trigger per point
  (``:TRIG:SOUR TIM``, ``:TRIG:TIM`` = the dwell), the measurement window inside
  each point, read back in one ``:FETC:ARR:CURR?``; a compliance trip at the last
  point (read level) raises ComplianceTrip, as on the 2450.

The instrument's own limits are checked before anything is sent: the shortest
programmable pulse is 50 us and the shortest trigger interval (a sweep point)
20 us (the B2901A/B2902A figure; the B2911A/B2912A allow 10 us), so a request
below them is an ArgumentError rather than a longer pulse than asked for.
Averaging is integration: ``set_averaging(n)`` sets the integration time to
``n`` times the base NPLC (``set_nplc``, 0.1 PLC until set), one reading per
point. ``:OUTP:ON:AUTO`` is switched off, so no measurement or trigger ever turns
the output on behind the driver's back.
"""

from __future__ import annotations

import numpy as np

from instruments.datasheet import ChipDatasheet
from instruments.drivers.base import number, option_whole
from instruments.drivers.smu_base import (
    SourceMeterDriver,
    guard_number,
    list_chunks,
    trip_state,
)
from instruments.errors import ArgumentError, BadReply, InstrumentError
from instruments.safety import SafetyGuard
from instruments.session import VisaSession

MIN_PULSE_WIDTH_S = 50e-6  # shortest programmable pulse (B2900 user's guide)
MIN_DWELL_S = 20e-6  # shortest trigger interval of a B2901A/B2902A (B2911A/B2912A: 10 us)
MAX_DWELL_S = 10.0  # this driver's longest sweep point
MIN_APERTURE_S = 8e-6  # shortest integration time
LINE_HZ = 50.0  # the slower line frequency, so an NPLC is never underestimated in seconds
MIN_NPLC, MAX_NPLC = 4e-4, 100.0  # at 50 Hz
DEFAULT_NPLC = 0.1  # the B2900's reset value


def _of_channel(template: str) -> property:
    """A node or channel list of the driver's channel: ``template`` with its number."""
    return property(lambda self: template.format(self.channel))


class KeysightB2900(SourceMeterDriver):
    """Keysight B2900 SMU (one channel, SCPI): DC reads, pulse-mode pulses, list sweeps."""

    session_options = {"error_query": ":SYST:ERR?"}
    min_compliance = 1e-9  # A: :SENS:CURR:PROT range of the B2900 (1 nA .. 3 A)
    averaging_step = "setting the integration time"
    idn_pattern = r"\bB29[01]\d(?:A|B|BL)?\b"  # B2901A .. B2912A, B2901B .. B2912B, B2910BL
    min_pulse_width_s = MIN_PULSE_WIDTH_S  # for callers planning pulses (write-verify widths)
    min_dwell_s = MIN_DWELL_S

    def __init__(self, session: VisaSession, guard: SafetyGuard,
                 datasheet: ChipDatasheet | None = None, *, parts=None,
                 channel: int = 1) -> None:
        super().__init__(session, guard, datasheet, parts=parts)
        self.channel = option_whole("channel", channel, 1, 2)
        self._nplc = DEFAULT_NPLC  # base integration time, power-line cycles

    def settings(self) -> dict:
        return {"channel": self.channel, "nplc": self._nplc, "averages": self._averages}

    # -- the SCPI nodes of this channel -------------------------------------------------
    _sour = _of_channel(":SOUR{}")
    _sens = _of_channel(":SENS{}")
    _trig = _of_channel(":TRIG{}")
    _outp = _of_channel(":OUTP{}")
    _list = _of_channel("(@{})")

    def _integration(self) -> float:
        """The DC integration time in power-line cycles (base NPLC x averages)."""
        return self._nplc * self._averages

    # -- set-up ----------------------------------------------------------------------------
    def configure(self) -> None:
        """Voltage source (DC shape, fixed mode), current sense, the integration time, no
        source delay after a trigger, no automatic output-on."""
        self.verify_identity()
        s = self._sour
        self.session.write(f'{s}:FUNC:MODE VOLT;{s}:FUNC:SHAP DC;{s}:VOLT:MODE FIX;'
                           f'{self._sens}:FUNC "CURR";{self._sens}:CURR:NPLC '
                           f'{self._integration():.6g};{self._trig}:TRAN:DEL 0;'
                           f'{self._outp}:ON:AUTO OFF')
        self.session.check_errors("configuring source and sense")
        self._configured = True

    def _send_compliance(self, amps: float) -> None:
        self.session.write(f"{self._sens}:CURR:PROT {amps:.6g}")

    def _send_level(self, volts: float) -> None:
        self.session.write(f"{self._sour}:VOLT {volts:.6g}")

    def _send_output(self, on: bool) -> None:
        self.session.write(f"{self._outp} {'ON' if on else 'OFF'}")

    def set_nplc(self, nplc: float) -> None:
        """Base integration time in power-line cycles (times the averaging count)."""
        n = number(nplc, "NPLC", MIN_NPLC, MAX_NPLC)
        if n * self._averages > MAX_NPLC:
            raise ArgumentError(f"NPLC {n:g} x averaging {self._averages} exceeds the "
                                f"B2900's {MAX_NPLC:g} PLC")
        self._ready()
        self.session.write(f"{self._sens}:CURR:NPLC {n * self._averages:.6g}")
        self._nplc = n

    def _check_averaging(self, count: int) -> None:
        if count * self._nplc > MAX_NPLC:
            raise ArgumentError(f"averaging {count} x NPLC {self._nplc:g} exceeds the "
                                f"B2900's {MAX_NPLC:g} PLC")

    def _send_averaging(self, count: int) -> None:
        """Each reading integrates ``count`` times the base NPLC (1 = the base alone)."""
        self.session.write(f"{self._sens}:CURR:NPLC {count * self._nplc:.6g}")

    # -- measuring and sourcing --------------------------------------------------------------
    def _read_point(self) -> tuple[float, bool]:
        """One spot measurement and its compliance state."""
        self._ready()
        return self.session.query(f":MEAS:CURR? {self._list};{self._sens}:CURR:PROT:TRIP?",
                                  parse=_reading_and_trip)

    def _guard_sweep(self, v: np.ndarray, dwell_s: float) -> tuple[np.ndarray, float]:
        """The guard's sweep rules, then the dwell within the B2900's trigger interval."""
        v = self.guard.sweep(v, guard_number(dwell_s, "dwell"))
        return v, number(dwell_s, "dwell (the B2900's trigger interval)", MIN_DWELL_S,
                         MAX_DWELL_S, "s")

    def _pulse(self, v: float, width: float) -> float:
        """One pulse-mode pulse the guard has passed: base 0 V, peak ``v`` for ``width``
        (at least 50 us); the current during it (A), limited at the compliance (not an
        error: the compliance is what limits a pulse, forming runs into it by design; a
        shorted cell shows at the next read)."""
        width = _pulse_width(width)
        self._ready()
        s, aperture = self._sour, width / 2
        on = "" if self._on else f";{self._outp} ON"
        self.session.write(
            f"{s}:FUNC:SHAP PULS;{s}:VOLT:MODE FIX;{s}:VOLT 0;{s}:VOLT:TRIG {v:.6g};"
            f"{s}:PULS:DEL 0;{s}:PULS:WIDT {width:.6g};{self._sens}:CURR:APER {aperture:.6g};"
            f"{self._trig}:SOUR AINT;{self._trig}:COUN 1;{self._trig}:ACQ:DEL {width / 4:.6g}"
            f"{on}")
        self._level = 0.0
        return float(self._run(1, width, f"{s}:FUNC:SHAP DC", sweep=False)[0])

    def _sweep(self, v: np.ndarray, dwell: float) -> np.ndarray:
        """Upload and run a DC list sweep the guard has passed."""
        self._ready()
        s = self._sour
        for start, chunk in list_chunks(v):
            if start == 0:
                self.session.write(f"{s}:FUNC:SHAP DC;{s}:VOLT:MODE FIX;{s}:VOLT 0;"
                                   f"{s}:LIST:VOLT {chunk}")
            else:
                self.session.write(f"{s}:LIST:VOLT:APP {chunk}")
        self._level = 0.0
        # the measurement window sits inside each point, so no point outlasts its dwell
        aperture = max(MIN_APERTURE_S, min(self._integration() / LINE_HZ, dwell / 2))
        on = "" if self._on else f";{self._outp} ON"
        self.session.write(
            f"{s}:VOLT:MODE LIST;{self._sens}:CURR:APER {aperture:.6g};"
            f"{self._trig}:SOUR TIM;{self._trig}:TIM {dwell:.6g};{self._trig}:COUN {v.size};"
            f"{self._trig}:ACQ:DEL {(dwell - aperture) / 2:.6g}{on}")
        return self._run(v.size, dwell, f"{s}:VOLT:MODE FIX", sweep=True)

    def _run(self, points: int, dwell: float, restore: str, *, sweep: bool) -> np.ndarray:
        """Trigger and read the points, then put the channel back: ``restore``, the DC
        integration time, the output as the driver had it. A sweep also reads the
        compliance state of its last point (at read level: a trip there means a
        shorted or stuck cell); a pulse's reading is simply limited at the compliance."""
        restore += f";{self._sens}:CURR:NPLC {self._integration():.6g}"
        if not self._on:
            restore += f";{self._outp} OFF"
        ask = f":INIT {self._list};*WAI;:FETC:ARR:CURR? {self._list}"
        if sweep:
            ask += f";{self._sens}:CURR:PROT:TRIP?"
        try:
            readings, tripped = self.session.query(
                ask, parse=_readings(points, sweep),
                retry=False,  # a trigger sent again would pulse the cell again
                timeout_s=self.session.timeout_s + points * (dwell + 0.05))
        except InstrumentError:
            try:
                self.session.write(restore)
            except InstrumentError:
                pass  # the original error is the one to report
            raise
        self.session.write(restore)
        if tripped:
            raise self._tripped("at the sweep's last point")
        return readings


def _pulse_width(width: float) -> float:
    """A width the guard passed, within what the B2900 can program (not lengthened)."""
    if width < MIN_PULSE_WIDTH_S:
        raise ArgumentError(f"pulse width {width:g} s is below the B2900's shortest pulse "
                            f"{MIN_PULSE_WIDTH_S:g} s")
    return width


def _reading_and_trip(reply: str) -> tuple[float, bool]:
    parts = reply.strip().split(";")
    if len(parts) != 2:
        raise BadReply(f"unexpected reply {reply!r}")
    return float(parts[0]), trip_state(parts[1])


def _readings(count: int, with_trip: bool):
    """``count`` comma-separated readings, then ``;`` and the compliance state if asked."""

    def parse(reply: str) -> tuple[np.ndarray, bool]:
        parts = reply.strip().split(";")
        if len(parts) != (2 if with_trip else 1):
            raise BadReply(f"unexpected reply {reply!r}")
        values = np.array([float(x) for x in parts[0].split(",")])
        if values.size != count:
            raise BadReply(f"expected {count} readings, got {values.size}")
        return values, trip_state(parts[1]) if with_trip else False

    return parse
