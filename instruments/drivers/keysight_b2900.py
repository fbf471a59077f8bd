"""Keysight B2900 precision SMU driver (B2901A/B2902A/B2911A/B2912A and B-models), SourceMeter.

One driver instance drives one channel (option ``channel = 1 | 2``, default 1;
the ``[c]`` suffix of ``:SOUR[c]``, ``:SENS[c]``, ``:OUTP[c]``, ``:TRIG[c]`` and
the ``(@c)`` channel lists). Every level, pulse and compliance passes the safety
guard with the same rules as the Keithley 2450 driver. The DC output (a level set
with :meth:`KeysightB2900.set_voltage`, left on with ``output(True)``) stays at
read level; anything above it reaches a cell only as a timed pulse:

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
from instruments.drivers.base import (
    Driver,
    float_array,
    number,
    option_whole,
    switch_state,
    whole,
)
from instruments.errors import ArgumentError, BadReply, ComplianceTrip, InstrumentError
from instruments.safety import SafetyGuard
from instruments.session import VisaSession

LIST_CHUNK = 100  # points per command line
MAX_POINTS = 2500  # the B2900's list length
MIN_PULSE_WIDTH_S = 50e-6  # shortest programmable pulse (B2900 user's guide)
MIN_DWELL_S = 20e-6  # shortest trigger interval of a B2901A/B2902A (B2911A/B2912A: 10 us)
MAX_DWELL_S = 10.0  # this driver's longest sweep point
MIN_APERTURE_S = 8e-6  # shortest integration time
LINE_HZ = 50.0  # the slower line frequency, so an NPLC is never underestimated in seconds
MIN_NPLC, MAX_NPLC = 4e-4, 100.0  # at 50 Hz
DEFAULT_NPLC = 0.1  # the B2900's reset value
MAX_AVERAGES = 100


class KeysightB2900(Driver):
    """Keysight B2900 SMU (one channel, SCPI): DC reads, pulse-mode pulses, list sweeps."""

    role = "smu"
    session_options = {"error_query": ":SYST:ERR?"}
    stresses_device = True
    idn_pattern = r"\bB29[01]\d(?:A|B|BL)?\b"  # B2901A .. B2912A, B2901B .. B2912B, B2910BL
    min_pulse_width_s = MIN_PULSE_WIDTH_S  # for callers planning pulses (write-verify widths)
    min_dwell_s = MIN_DWELL_S

    def __init__(self, session: VisaSession, guard: SafetyGuard,
                 datasheet: ChipDatasheet | None = None, *, parts=None,
                 channel: int = 1) -> None:
        super().__init__(session, guard, datasheet, parts=parts)
        self.channel = option_whole("channel", channel, 1, 2)
        self._configured = False
        self._level: float | None = None  # the DC level this driver set (None: not yet)
        self._on = False  # the output state this driver set
        self._nplc = DEFAULT_NPLC  # base integration time, power-line cycles
        self._averages = 1

    def settings(self) -> dict:
        return {"channel": self.channel, "nplc": self._nplc, "averages": self._averages}

    # -- the SCPI nodes of this channel -------------------------------------------------
    @property
    def _sour(self) -> str:
        return f":SOUR{self.channel}"

    @property
    def _sens(self) -> str:
        return f":SENS{self.channel}"

    @property
    def _trig(self) -> str:
        return f":TRIG{self.channel}"

    @property
    def _outp(self) -> str:
        return f":OUTP{self.channel}"

    @property
    def _list(self) -> str:
        return f"(@{self.channel})"

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

    def _ready(self) -> None:
        """The instrument checked (``*IDN?``) and set up, before any other command."""
        if not self._configured:
            self.configure()

    def set_compliance(self, amps: float) -> None:
        i = self.guard.compliance(amps)
        self._ready()
        self.session.write(f"{self._sens}:CURR:PROT {i:.6g}")

    def set_voltage(self, volts: float) -> None:
        """The DC level (read level at most: higher levels only as timed pulses)."""
        v = self.guard.dc_voltage(volts)
        self._ready()
        self.session.write(f"{self._sour}:VOLT {v:.6g}")
        self._level = v

    def output(self, on: bool) -> None:
        """Output on (at the level set, 0 V if this driver set none yet) or off."""
        on = switch_state(on)
        self._ready()
        if on and self._level is None:
            self.set_voltage(0.0)  # never switch on at a level someone else left
        self.session.write(f"{self._outp} {'ON' if on else 'OFF'}")
        self._on = on

    def set_nplc(self, nplc: float) -> None:
        """Base integration time in power-line cycles (times the averaging count)."""
        n = number(nplc, "NPLC", MIN_NPLC, MAX_NPLC)
        if n * self._averages > MAX_NPLC:
            raise ArgumentError(f"NPLC {n:g} x averaging {self._averages} exceeds the "
                                f"B2900's {MAX_NPLC:g} PLC")
        self._ready()
        self.session.write(f"{self._sens}:CURR:NPLC {n * self._averages:.6g}")
        self._nplc = n

    def set_averaging(self, count: int) -> None:
        """Each reading integrates ``count`` times the base NPLC (1 = the base alone)."""
        count = whole(count, "averaging count", 1, MAX_AVERAGES)
        if count * self._nplc > MAX_NPLC:
            raise ArgumentError(f"averaging {count} x NPLC {self._nplc:g} exceeds the "
                                f"B2900's {MAX_NPLC:g} PLC")
        self._ready()
        self.session.write(f"{self._sens}:CURR:NPLC {count * self._nplc:.6g}")
        self.session.check_errors("setting the integration time")
        self._averages = count

    # -- measuring and sourcing --------------------------------------------------------------
    def measure_current(self) -> float:
        """One spot measurement; raises ComplianceTrip if the limit was hit."""
        self._ready()
        value, tripped = self.session.query(
            f":MEAS:CURR? {self._list};{self._sens}:CURR:PROT:TRIP?", parse=_reading_and_trip)
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
        v = self.guard.sweep(v, _level(dwell_s, "dwell"))
        dwell = number(dwell_s, "dwell (the B2900's trigger interval)", MIN_DWELL_S,
                       MAX_DWELL_S, "s")
        return self._sweep(v, dwell)

    def pulse(self, volts: float, width_s: float) -> float:
        """One programming pulse: ``volts`` (within the program limit) for ``width_s``
        (within the pulse-width limit, at least 50 us), from and back to 0 V; returns
        the current during it (A), limited at the compliance (not an error: the
        compliance is what limits a pulse; a shorted cell shows at the next read)."""
        v, w = _level(volts, "pulse amplitude"), _level(width_s, "pulse width")
        self.guard.pulses(np.array([v]), w)
        return self._pulse(v, _pulse_width(w))

    def form_pulse(self, volts: float, width_s: float) -> float:
        """One forming pulse: ``volts`` and ``width_s`` within the forming limits, from
        and back to 0 V; the only path for amplitudes above the program limit. Returns
        the current during it, limited at the compliance (forming runs into it by design)."""
        v, w = _level(volts, "forming voltage"), _level(width_s, "forming width")
        self.guard.forming(v, w)
        return self._pulse(v, _pulse_width(w))

    def _pulse(self, v: float, width: float) -> float:
        """One pulse-mode pulse the guard has passed: base 0 V, peak ``v``."""
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
        for start in range(0, v.size, LIST_CHUNK):
            chunk = ",".join(f"{x:.6g}" for x in v[start:start + LIST_CHUNK])
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
            raise ComplianceTrip(f"{self.session.name}: current compliance tripped at the "
                                 "sweep's last point; the device may be shorted or stuck high")
        return readings


def _level(value, what: str) -> float:
    """A number for the guard to judge (its range is the guard's business)."""
    if isinstance(value, (str, bytes, bool, np.bool_)) or np.ndim(value) != 0:
        raise ArgumentError(f"{what} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ArgumentError(f"{what} must be a number, got {value!r}") from None


def _pulse_width(width: float) -> float:
    """A width the guard passed, within what the B2900 can program (not lengthened)."""
    if width < MIN_PULSE_WIDTH_S:
        raise ArgumentError(f"pulse width {width:g} s is below the B2900's shortest pulse "
                            f"{MIN_PULSE_WIDTH_S:g} s")
    return width


def _trip(text: str) -> bool:
    if text.strip() not in ("0", "1"):
        raise BadReply(f"unexpected compliance state {text!r}")
    return text.strip() == "1"


def _reading_and_trip(reply: str) -> tuple[float, bool]:
    parts = reply.strip().split(";")
    if len(parts) != 2:
        raise BadReply(f"unexpected reply {reply!r}")
    return float(parts[0]), _trip(parts[1])


def _readings(count: int, with_trip: bool):
    """``count`` comma-separated readings, then ``;`` and the compliance state if asked."""

    def parse(reply: str) -> tuple[np.ndarray, bool]:
        parts = reply.strip().split(";")
        if len(parts) != (2 if with_trip else 1):
            raise BadReply(f"unexpected reply {reply!r}")
        values = np.array([float(x) for x in parts[0].split(",")])
        if values.size != count:
            raise BadReply(f"expected {count} readings, got {values.size}")
        return values, _trip(parts[1]) if with_trip else False

    return parse
