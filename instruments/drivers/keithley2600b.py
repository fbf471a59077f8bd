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
from instruments.drivers.base import number
from instruments.drivers.smu_base import (
    LIST_CHUNK,
    SourceMeterDriver,
    list_chunks,
    value_and_state,
)
from instruments.errors import (
    BadReply,
    DriverOptionError,
    InstrumentError,
    InstrumentIOError,
    InstrumentReportedError,
)
from instruments.safety import SafetyGuard
from instruments.session import VisaSession

CHANNELS = ("a", "b")
NPLC_RANGE = (0.001, 25.0)
STATUS_COMPLIANCE = 0x40  # a reading-buffer status bit: the source hit its limit
LIST_NAME = "aimc_sweep"  # the global a long sweep list is assembled in
# print(smua.measure.i(), smua.source.compliance): the reading, a tab, true or false
_value_and_compliance = value_and_state("\t", "true", "false")
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


class Keithley2600B(SourceMeterDriver):
    """Keithley 2600B SourceMeter in TSP: one channel's DC reads, pulses and list sweeps."""

    session_options = {"error_query": "print(errorqueue.next())", "no_error": _queue_empty}
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
        self._sweeps_configured = False
        self._nplc: float | None = None
        self._link = 0  # session.reconnects when the instrument was last set up

    def settings(self) -> dict:
        return {"channel": self.channel}

    def smallest_compliance(self) -> float:
        """10 nA on the 2601B/2602B/2604B/2611B..., 100 pA on the low-current 2634B, 2635B
        and 2636B (the models' source.limiti ranges)."""
        reply = getattr(self, "identity_reply", "")
        return 100e-12 if re.search(r"Model 263\dB", reply) else 10e-9

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
            self._send_averaging(self._averages)
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

    # -- the SourceMeter role (the checks: smu_base), its errors as code, message -------------
    set_compliance = _reported(SourceMeterDriver.set_compliance)
    set_voltage = _reported(SourceMeterDriver.set_voltage)
    output = _reported(SourceMeterDriver.output)
    set_averaging = _reported(SourceMeterDriver.set_averaging)
    measure_current = _reported(SourceMeterDriver.measure_current)
    list_sweep = _reported(SourceMeterDriver.list_sweep)
    pulse = _reported(SourceMeterDriver.pulse)
    form_pulse = _reported(SourceMeterDriver.form_pulse)

    def _send_compliance(self, amps: float) -> None:
        self.session.write(f"{self.smu}.source.limiti = {amps:.6g}")

    def _send_level(self, volts: float) -> None:
        self.session.write(f"{self.smu}.source.levelv = {volts:.6g}")

    def _send_output(self, on: bool) -> None:
        state = "OUTPUT_ON" if on else "OUTPUT_OFF"
        self.session.write(f"{self.smu}.source.output = {self.smu}.{state}")

    def _safe_to_switch_on(self) -> None:
        """Never on at a level or limit this driver did not set."""
        super()._safe_to_switch_on()
        if self._compliance is None:
            self.set_compliance(self.guard.limits.max_compliance)

    @_reported
    def set_nplc(self, nplc: float) -> None:
        n = number(nplc, "NPLC", *NPLC_RANGE)
        self._ready()
        self.session.write(f"{self.smu}.measure.nplc = {n:.6g}")
        self._nplc = n

    def _send_averaging(self, count: int) -> None:
        """Repeat filter: each reading is the mean of ``count`` conversions (1 = off)."""
        s = self.smu
        if count == 1:
            self.session.write(f"{s}.measure.filter.enable = {s}.FILTER_OFF")
        else:
            self.session.write(f"{s}.measure.filter.type = {s}.FILTER_REPEAT_AVG; "
                               f"{s}.measure.filter.count = {count}; "
                               f"{s}.measure.filter.enable = {s}.FILTER_ON")

    def _read_point(self) -> tuple[float, bool]:
        """One reading and its compliance state.

        A reading whose link was renewed on the way (a reply lost, the instrument
        restarted) is taken again once the instrument is set up as before: a read
        changes nothing on the cell, and one taken on an instrument back at its
        defaults (output off) would be wrong without saying so.
        """
        self._ready()
        query = f"print({self.smu}.measure.i(), {self.smu}.source.compliance)"
        before = self.session.reconnects
        reading = self.session.query(query, parse=_value_and_compliance)
        if self.session.reconnects != before:
            self._restore()
            reading = self.session.query(query, parse=_value_and_compliance)
        return reading

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
            raise self._tripped("at read level during the sweep")
        return readings

    def _renew_link(self) -> None:
        try:
            self.session.reconnect()
        except InstrumentError:
            pass  # the instrument is gone: the next command says so

    def _upload(self, v: np.ndarray) -> str:
        """The sweep list as the listv argument: inline when it fits one line, else
        assembled chunk by chunk in a global (plain Lua: a table, then indexed copies)."""
        chunks = list_chunks(v, ", ")
        if v.size <= LIST_CHUNK:
            return "{" + "".join(chunk for _, chunk in chunks) + "}"
        for start, chunk in chunks:
            if start == 0:
                self.session.write(f"{LIST_NAME} = {{{chunk}}}")
                continue
            count = min(LIST_CHUNK, v.size - start)
            self.session.write(f"aimc_chunk = {{{chunk}}}; for i = 1, {count} "
                               f"do {LIST_NAME}[{start} + i] = aimc_chunk[i] end")
        self.session.check_errors("uploading the sweep list")
        return LIST_NAME


def _readings(count: int):
    """``printbuffer`` of readings and statuses: ``r1, s1, r2, s2, ...``."""

    def parse(reply: str) -> tuple[np.ndarray, np.ndarray]:
        values = np.array([float(x) for x in reply.strip().split(",")])
        if values.size != 2 * count or not np.all(np.isfinite(values)):
            raise BadReply(f"expected {count} readings and statuses, got {values.size} values")
        return values[0::2], values[1::2]

    return parse
