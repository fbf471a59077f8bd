"""Keithley 2600B System SourceMeter driver (TSP), SourceMeter role, one channel.

The 2600B (2636B, 2602B, ...) is scripted in TSP, a Lua dialect, not SCPI:
settings are assignments (``smua.source.levelv = 0.2``), queries are
``print(...)`` and errors wait on ``errorqueue``. One driver instance drives
one channel (option ``channel = "a" | "b"``: ``smua`` or ``smub``); two roles
can drive both channels of one instrument through two bench entries.

Safety, as for the 2450 (:mod:`instruments.drivers.keithley2450`): every level,
pulse and compliance passes the bench's guard before any byte is sent. The DC
output (``set_voltage``, then ``output(True)``) stays at read level; anything
above it reaches a cell only as a timed pulse, :meth:`~Keithley2600B.pulse`
(program amplitudes, pulse-width limit) or :meth:`~Keithley2600B.form_pulse`
(forming limits); a list sweep's points above read level need a dwell within
the pulse-width limit, and a sweep ends at read level. ``output(True)`` with no
level set yet sets 0 V first and, with no compliance set yet, the chip's
``max_compliance``: the channel never comes on at what someone left behind.

Pulses and list sweeps run on the instrument's trigger model: the list
(``smua.trigger.source.listv``), a source delay per point (the pulse width),
``smua.trigger.initiate()``, ``waitcomplete()``, then one ``printbuffer`` of
the readings and their statuses: a point at read level in compliance is a trip
(:class:`~instruments.errors.ComplianceTrip`), a pulse held at the limit is not
(that is what the limit is for, when forming or setting a cell).
Configuring, running and reading back a sweep is one line: if any statement of
it fails, the instrument runs nothing after it, so a sweep never starts on a
list that failed to load. Before the first configuring or sourcing command the
driver checks ``*IDN?`` (a 2600B model), so a resource that answers as another
instrument gets :class:`~instruments.errors.WrongInstrumentError` before any
output is enabled.

Whenever the session had to renew its link (a lost reply, an instrument that
restarted), the driver sets the instrument up again as it had it (function,
limit, level, filter, NPLC, output) before its next command, and takes a reading
caught in the renewal again: a 2600B back at its defaults would otherwise measure
with the output off and source with its 100 mA default limit.

As on the 2450, a point lasts its source delay *plus* its measurement (NPLC):
keep NPLC low (:meth:`~Keithley2600B.set_nplc`) for short pulses.
"""

from __future__ import annotations

import functools
import re

import numpy as np

from instruments.datasheet import ChipDatasheet
from instruments.drivers.base import Driver, float_array, number, switch_state, whole
from instruments.errors import (
    ArgumentError,
    BadReply,
    ComplianceTrip,
    DriverOptionError,
    InstrumentError,
    InstrumentIOError,
    InstrumentReportedError,
)
from instruments.safety import SafetyGuard
from instruments.session import VisaSession

CHANNELS = ("a", "b")
LIST_CHUNK = 100  # sweep points per command line (the instrument's input line is limited)
MAX_POINTS = 2500
MAX_AVERAGES = 100  # the 2600B's filter count
MAX_DWELL_S = 10.0
NPLC_RANGE = (0.001, 25.0)
STATUS_COMPLIANCE = 0x40  # a reading-buffer status bit: the source hit its limit
LIST_NAME = "aimc_sweep"  # the global a long sweep list is assembled in
# an error-queue entry as print(errorqueue.next()) sends it: code, message, severity, node
_ENTRY = re.compile(r"([+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)\t([^\t]*)\t[^\t;]*\t[^\t;]*")


def _queue_empty(reply: str) -> bool:
    """``print(errorqueue.next())`` with nothing queued: code 0 ("Queue Is Empty")."""
    try:
        return float(reply.split("\t", 1)[0]) == 0
    except ValueError:
        return False


def _entries(text: str) -> str:
    """Error-queue entries (tab-separated, codes as ``-2.86000e+02``) as ``-286, message``."""
    return _ENTRY.sub(lambda m: f"{int(float(m.group(1)))}, {m.group(2)}", text)


def _reported(method):
    """Show the instrument's errors as ``code, message``, not as the queue's raw fields."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except InstrumentReportedError as exc:
            raise InstrumentReportedError(_entries(str(exc))) from None

    return wrapper


class Keithley2600B(Driver):
    """Keithley 2600B SourceMeter in TSP: one channel's DC reads, pulses and list sweeps."""

    role = "smu"
    session_options = {"error_query": "print(errorqueue.next())", "no_error": _queue_empty}
    stresses_device = True
    idn_pattern = r"Model 26\d\dB"

    def __init__(self, session: VisaSession, guard: SafetyGuard,
                 datasheet: ChipDatasheet | None = None, *, parts=None,
                 channel: str = "a") -> None:
        super().__init__(session, guard, datasheet, parts=parts)
        if not isinstance(channel, str) or channel.strip().lower() not in CHANNELS:
            raise DriverOptionError("channel", f"expected \"a\" or \"b\" (smua or smub), got "
                                               f"{channel!r}")
        self.channel = channel.strip().lower()
        self.smu = f"smu{self.channel}"
        self._configured = False
        self._sweeps_configured = False
        self._level: float | None = None  # the DC level this driver set (None: not yet)
        self._compliance: float | None = None  # the current limit this driver set
        self._on = False  # the output as this driver left it
        self._averages = 1  # the filter count this driver set (1: off, as after reset)
        self._nplc: float | None = None
        self._link = 0  # session.reconnects when the instrument was last set up

    def settings(self) -> dict:
        return {"channel": self.channel}

    @_reported
    def check(self) -> None:
        """Raise if the instrument reports a problem (drains its error queue)."""
        super().check()

    # -- set-up -----------------------------------------------------------------------
    def configure(self) -> None:
        """DC voltage source, autoranged source and current measurement (after checking,
        once, that the instrument is a 2600B)."""
        self.verify_identity()
        s = self.smu
        self.session.write(f"{s}.source.func = {s}.OUTPUT_DCVOLTS; "
                           f"{s}.source.autorangev = {s}.AUTORANGE_ON; "
                           f"{s}.measure.autorangei = {s}.AUTORANGE_ON")
        self.session.check_errors("configuring source and measurement")
        self._configured = True
        self._link = self.session.reconnects

    def _ready(self) -> None:
        if self._configured and self.session.reconnects != self._link:
            self._restore()
        if not self._configured:
            self.configure()  # *IDN? first: before anything configures or sources

    def _restore(self) -> None:
        """The link was renewed: the instrument may have restarted with its defaults (a
        100 mA limit, the output off). Set it up again as this driver had it."""
        self._configured = self._sweeps_configured = False
        self.configure()
        s = self.smu
        if self._compliance is not None:
            self.session.write(f"{s}.source.limiti = {self._compliance:.6g}")
        if self._level is not None:
            self.session.write(f"{s}.source.levelv = {self._level:.6g}")
        if self._nplc is not None:
            self.session.write(f"{s}.measure.nplc = {self._nplc:.6g}")
        if self._averages != 1:
            self._filter(self._averages)
        if self._on:
            self.session.write(f"{s}.source.output = {s}.OUTPUT_ON")
        self.session.check_errors("restoring the settings after a reconnect")
        self._link = self.session.reconnects

    def _configure_sweeps(self) -> None:
        """The trigger model as every sweep of this driver uses it (once): source and
        measure each point at once, hold each level until the next, idle level after the
        sweep, the channel's own current limit, readings to nvbuffer1."""
        s = self.smu
        self.session.write(
            f"{s}.trigger.arm.count = 1; {s}.trigger.arm.stimulus = 0; "
            f"{s}.trigger.source.stimulus = 0; {s}.trigger.measure.stimulus = 0; "
            f"{s}.trigger.endpulse.stimulus = 0; "
            f"{s}.trigger.source.action = {s}.ENABLE; "
            f"{s}.trigger.source.limiti = {s}.LIMIT_AUTO; "
            f"{s}.trigger.measure.action = {s}.ENABLE; "
            f"{s}.trigger.measure.i({s}.nvbuffer1); "
            f"{s}.trigger.endpulse.action = {s}.SOURCE_HOLD; "
            f"{s}.trigger.endsweep.action = {s}.SOURCE_IDLE; "
            f"{s}.nvbuffer1.appendmode = 0")
        self.session.check_errors("configuring the trigger model")
        self._sweeps_configured = True

    # -- the SourceMeter role ------------------------------------------------------------
    @_reported
    def set_compliance(self, amps: float) -> None:
        i = self.guard.compliance(amps)
        self._ready()
        self.session.write(f"{self.smu}.source.limiti = {i:.6g}")
        self._compliance = i

    @_reported
    def set_voltage(self, volts: float) -> None:
        """The DC level (read level at most: higher levels only as timed pulses)."""
        v = self.guard.dc_voltage(volts)
        self._ready()
        self.session.write(f"{self.smu}.source.levelv = {v:.6g}")
        self._level = v

    @_reported
    def output(self, on: bool) -> None:
        """Output on (at the level set, 0 V if this driver set none yet) or off."""
        on = switch_state(on)
        self._ready()
        if on:
            self._safe_to_switch_on()
        state = "OUTPUT_ON" if on else "OUTPUT_OFF"
        self.session.write(f"{self.smu}.source.output = {self.smu}.{state}")
        self._on = on

    def _safe_to_switch_on(self) -> None:
        """Never on at a level or limit this driver did not set."""
        if self._level is None:
            self.set_voltage(0.0)
        if self._compliance is None:
            self.set_compliance(self.guard.limits.max_compliance)

    @_reported
    def set_nplc(self, nplc: float) -> None:
        n = number(nplc, "NPLC", *NPLC_RANGE)
        self._ready()
        self.session.write(f"{self.smu}.measure.nplc = {n:.6g}")
        self._nplc = n

    @_reported
    def set_averaging(self, count: int) -> None:
        """Repeat filter: each reading is the mean of ``count`` conversions (1 = off)."""
        count = whole(count, "averaging count", 1, MAX_AVERAGES)
        self._ready()
        self._filter(count)
        self.session.check_errors("setting the averaging filter")
        self._averages = count

    def _filter(self, count: int) -> None:
        s = self.smu
        if count == 1:
            self.session.write(f"{s}.measure.filter.enable = {s}.FILTER_OFF")
        else:
            self.session.write(f"{s}.measure.filter.type = {s}.FILTER_REPEAT_AVG; "
                               f"{s}.measure.filter.count = {count}; "
                               f"{s}.measure.filter.enable = {s}.FILTER_ON")

    @_reported
    def measure_current(self) -> float:
        """One source-measure point; raises ComplianceTrip if the limit was hit.

        A reading whose link was renewed on the way (a reply lost, the instrument
        restarted) is taken again once the instrument is set up as before: a read
        changes nothing on the cell, and one taken on an instrument back at its
        defaults (output off) would be wrong without saying so.
        """
        self._ready()
        query = f"print({self.smu}.measure.i(), {self.smu}.source.compliance)"
        before = self.session.reconnects
        value, tripped = self.session.query(query, parse=_value_and_compliance)
        if self.session.reconnects != before:
            self._restore()
            value, tripped = self.session.query(query, parse=_value_and_compliance)
        if tripped:
            raise ComplianceTrip(f"{self.session.name}: current compliance tripped at "
                                 f"{value:g} A; the device may be shorted or stuck high")
        return value

    @_reported
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

    @_reported
    def pulse(self, volts: float, width_s: float) -> float:
        """One programming pulse: ``volts`` (within the program limit) for ``width_s``
        (within the pulse-width limit), then 0 V; returns the current during it (A)."""
        v, w = _level(volts, "pulse amplitude"), _level(width_s, "pulse width")
        self.guard.pulses(np.array([v]), w)
        return float(self._sweep(np.array([v, 0.0]), w)[0])

    @_reported
    def form_pulse(self, volts: float, width_s: float) -> float:
        """One forming pulse: ``volts`` and ``width_s`` within the forming limits, then
        0 V; the only path for amplitudes above the program limit."""
        v, w = _level(volts, "forming voltage"), _level(width_s, "forming width")
        self.guard.forming(v, w)
        return float(self._sweep(np.array([v, 0.0]), w)[0])

    # -- sweeps -----------------------------------------------------------------------------
    def _sweep(self, v: np.ndarray, dwell_s: float) -> np.ndarray:
        """Upload and run a list sweep the guard has passed; one line runs it."""
        self._ready()
        if not self._sweeps_configured:
            self._configure_sweeps()
        was_on = self._on
        if not was_on:
            self._safe_to_switch_on()  # the output comes on at the idle level first
        s, n = self.smu, v.size
        table = self._upload(v)
        run = [f"{s}.trigger.source.listv({table})", f"{s}.trigger.count = {n}",
               f"{s}.source.delay = {dwell_s:.9g}", f"{s}.nvbuffer1.clear()"]
        if not was_on:
            run.append(f"{s}.source.output = {s}.OUTPUT_ON")
        run += [f"{s}.trigger.initiate()", "waitcomplete()"]
        if not was_on:
            run.append(f"{s}.source.output = {s}.OUTPUT_OFF")
        run.append(f"printbuffer(1, {n}, {s}.nvbuffer1.readings, {s}.nvbuffer1.statuses)")
        try:
            readings, statuses = self.session.query(
                "; ".join(run), parse=_readings(n), retry=False,
                timeout_s=self.session.timeout_s + n * (dwell_s + 0.05))
        except InstrumentIOError:
            # never sent again (the pulse may have reached the cell), but the next command
            # gets a fresh link, and the instrument set up again on it
            self._renew_link()
            raise
        # a pulse held at the limit is the limit doing its job (forming, SET); a point at
        # read level in compliance means a short
        at_read = np.abs(v) <= self.guard.limits.max_read_voltage
        if np.any((statuses.astype(np.int64) & STATUS_COMPLIANCE).astype(bool) & at_read):
            raise ComplianceTrip(f"{self.session.name}: current compliance tripped at read "
                                 "level during the sweep; the device may be shorted or "
                                 "stuck high")
        return readings

    def _renew_link(self) -> None:
        try:
            self.session.reconnect()
        except InstrumentError:
            pass  # the instrument is gone: the next command says so

    def _upload(self, v: np.ndarray) -> str:
        """The sweep list as the listv argument: inline when it fits one line, else
        assembled chunk by chunk in a global (plain Lua: a table, then indexed copies)."""
        text = [f"{x:.6g}" for x in v]
        if v.size <= LIST_CHUNK:
            return "{" + ", ".join(text) + "}"
        self.session.write(f"{LIST_NAME} = {{{', '.join(text[:LIST_CHUNK])}}}")
        for start in range(LIST_CHUNK, v.size, LIST_CHUNK):
            chunk = text[start:start + LIST_CHUNK]
            self.session.write(f"aimc_chunk = {{{', '.join(chunk)}}}; for i = 1, {len(chunk)} "
                               f"do {LIST_NAME}[{start} + i] = aimc_chunk[i] end")
        self.session.check_errors("uploading the sweep list")
        return LIST_NAME


def _level(value, what: str) -> float:
    """A number for the guard to judge (its range is the guard's business)."""
    if isinstance(value, (str, bytes, bool, np.bool_)) or np.ndim(value) != 0:
        raise ArgumentError(f"{what} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ArgumentError(f"{what} must be a number, got {value!r}") from None


def _value_and_compliance(reply: str) -> tuple[float, bool]:
    parts = reply.strip().split("\t")
    if len(parts) != 2 or parts[1] not in ("true", "false"):
        raise BadReply(f"unexpected reply {reply!r}")
    return float(parts[0]), parts[1] == "true"


def _readings(count: int):
    """``printbuffer`` of readings and statuses: ``r1, s1, r2, s2, ...``."""

    def parse(reply: str) -> tuple[np.ndarray, np.ndarray]:
        values = np.array([float(x) for x in reply.strip().split(",")])
        if values.size != 2 * count or not np.all(np.isfinite(values)):
            raise BadReply(f"expected {count} readings and statuses, got {values.size} values")
        return values[0::2], values[1::2]

    return parse
