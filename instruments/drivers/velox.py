"""FormFactor (Cascade Microtech) Velox prober driver, Prober and ThermalController roles.

Velox is reached through its message server (TCP port 1412 by default): a client
registers once per connection (``FCN=1:RegisterProberApp:<app> <app> 0``), then sends
one remote command (SCI) per line, ``Cmd=<id>:<Name>:<args>``, and reads one reply,
``Rsp=<id>:<code>:<values>``: code 0 and the values, or a non-zero error code and the
prober's message. The driver numbers its commands 1..999 and accepts only the reply
to the command it sent, so a late reply can never answer the next command.

The driver never moves XY in contact: ``goto`` separates first, steps, then makes
contact (retried once after a separation, like the SENTIO driver). Die ids are the
Velox wafer map's die numbers (``StepToDie <n>``, counted from 1 in the map's own
order); ``(column, row)`` positions are the map's (``StepNextDie <col> <row>``).
Command strings and which of them are verified: docs/drivers/velox.md.
"""

from __future__ import annotations

import re

from instruments.datasheet import ChipDatasheet
from instruments.drivers.base import Driver, option_number, whole
from instruments.errors import (
    ArgumentError,
    BadReply,
    ContactError,
    DriverOptionError,
    InstrumentTimeout,
    ProberError,
)
from instruments.safety import SafetyGuard
from instruments.session import VisaSession

CONTACT_ATTEMPTS = 2
MAX_COMMAND_ID = 999  # the message server's command ids run 1..999, then start again
MOVE_TIMEOUT_S = 60.0  # stepping, Z moves and heater commands (the vendor allows 60 s and more)
IDN_TIMEOUT_S = 1.0  # *IDN? is not part of the message server's protocol: ask briefly
# ReadTemperatureChuckStatus status bits (as FormFactor's published Velox clients read them)
HEATING, COOLING, AT_TEMPERATURE, HOLD_READY, SOAKING = 1, 2, 4, 8, 64
_REPLY = re.compile(r"Rsp=(\d+):(-?\d+)(?::(.*))?", re.DOTALL)
_SERVER_FRAME = re.compile(r"(?:Rsp|FCN|Cmd)=\d+(?::|$)")
_APP_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class VeloxProber(Driver):
    """FormFactor Velox wafer prober: steps dies, makes contact, bins; its chuck is thermal.

    ``idn_pattern`` stays None: ``*IDN?`` is no message-server command (the kernel's GPIB
    interface answers it, the TCP message server need not). What stops a wrong instrument
    before anything moves is the registration handshake: an instrument that does not
    answer it in the message server's ``Rsp=``/``FCN=`` framing is refused.
    """

    role = "prober"
    roles = ("prober", "thermal")  # the prober's chuck is the thermal controller
    session_options = {"error_query": None}  # errors come back in each reply
    stresses_device = True
    idn_pattern = None

    def __init__(self, session: VisaSession, guard: SafetyGuard,
                 datasheet: ChipDatasheet | None = None, *, parts=None,
                 settle_window_c: float = 0.5, app_name: str = "aimc-calib") -> None:
        super().__init__(session, guard, datasheet, parts=parts)
        self.settle_window_c = option_number("settle_window_c", settle_window_c, 0.01, 50.0,
                                             "degC")
        if not isinstance(app_name, str) or not _APP_NAME.fullmatch(app_name):
            raise DriverOptionError("app_name", "expected 1..64 letters, digits, '_', '.' or "
                                                f"'-' (no spaces or colons), got {app_name!r}")
        self.app_name = app_name
        self._last_id = 0
        self._registered_link: int | None = None  # session.reconnects when we registered

    def settings(self) -> dict:
        return {"settle_window_c": self.settle_window_c, "app_name": self.app_name}

    # -- the message server ------------------------------------------------------------
    def _register(self) -> None:
        """Register with the message server on this connection (again after a reconnect)."""
        self.verify_identity()  # a no-op while idn_pattern is None (see the class docstring)
        message = f"FCN=1:RegisterProberApp:{self.app_name} {self.app_name} 0"
        code, text = self.session.query(message, parse=_registration)
        if code:
            raise ProberError(f"the Velox message server refused to register "
                              f"{self.app_name!r}: {text or 'no message'} (error {code})")
        self._registered_link = self.session.reconnects

    def _cmd(self, name: str, args: str = "", timeout_s: float | None = None) -> list[str]:
        """One remote command; its reply values, or ProberError with the prober's message."""
        if self._registered_link != self.session.reconnects:
            self._register()
        self._last_id = cmd_id = self._last_id % MAX_COMMAND_ID + 1
        code, values = self.session.query(f"Cmd={cmd_id}:{name}:{args}",
                                          parse=lambda reply: _parse(reply, cmd_id),
                                          timeout_s=timeout_s)
        if code:
            sent = f"{name} {args}".strip()
            raise ProberError(f"prober refused {sent!r}: {values or 'no message'} "
                              f"(error {code})")
        return values.split()

    def identity(self) -> str:
        """``*IDN?`` if the station answers it; else the kernel's ``ReportKernelVersion``."""
        try:
            reply = self.session.query("*IDN?", retry=False,
                                       timeout_s=min(IDN_TIMEOUT_S, self.session.timeout_s))
        except InstrumentTimeout:
            reply = ""
        reply = reply.strip()
        if reply and not _SERVER_FRAME.match(reply):
            return reply
        return "FormFactor Velox, kernel " + " ".join(self._cmd("ReportKernelVersion"))

    # -- Prober role ------------------------------------------------------------------
    def goto(self, die) -> tuple[int, int]:
        """Separate, step to ``die`` (die number, or (column, row)), make contact."""
        if isinstance(die, tuple):
            if len(die) != 2:
                raise ArgumentError(f"a die position is (column, row), got {die!r}")
            wanted = whole(die[0], "die column"), whole(die[1], "die row")
            name, args = "StepNextDie", f"{wanted[0]} {wanted[1]}"
        else:
            wanted = None
            name, args = "StepToDie", str(whole(die, "die number", 1))
        self.separate()
        position = _position(self._cmd(name, args, timeout_s=MOVE_TIMEOUT_S), name)
        if wanted is not None and position != wanted:
            raise ProberError(f"prober stepped to die {position} instead of {wanted}; "
                              "not making contact")
        self.contact()
        return position

    def contact(self) -> None:
        for attempt in range(CONTACT_ATTEMPTS):
            try:
                self._cmd("MoveChuckContact", timeout_s=MOVE_TIMEOUT_S)
                return
            except ProberError as exc:
                if attempt == CONTACT_ATTEMPTS - 1:
                    raise ContactError(f"{exc}; check the probe card, needle marks and "
                                       "chuck height") from None
                self.separate()

    def separate(self) -> None:
        self._cmd("MoveChuckSeparation", timeout_s=MOVE_TIMEOUT_S)

    def position(self) -> tuple[int, int]:
        return _position(self._cmd("ReadMapPosition2"), "ReadMapPosition2")

    def set_bin(self, bin_number: int) -> None:
        self._cmd("BinMapDie", str(whole(bin_number, "bin", 0, 255)))

    def die_map(self) -> tuple[tuple[int, int, int], ...]:
        """(die number, column, row) of every selected die of the Velox wafer map, numbers
        as ``goto`` takes them (``StepToDie <n>``).

        ``GetNumSelectedDies``, then ``GetDieDataAsNum <n>`` for n = 1..count, whose reply
        begins ``<die number> <column> <row>``: one query per die. Both are SCI commands
        (FormFactor's bindings); the loop and the reply's fields are as SweepMe!'s Velox
        driver and published kernel clients read them (docs/drivers/velox.md).
        """
        values = self._cmd("GetNumSelectedDies")
        try:
            count = int(values[0])
        except (IndexError, ValueError):
            count = -1
        if count < 0:
            raise ProberError(f"unexpected number of dies {' '.join(values)!r} from "
                              "GetNumSelectedDies")
        dies = []
        for n in range(1, count + 1):
            values = self._cmd("GetDieDataAsNum", str(n))
            try:
                number = int(values[0])
            except (IndexError, ValueError):
                raise ProberError(f"unexpected die data {' '.join(values)!r} from "
                                  f"GetDieDataAsNum {n}") from None
            dies.append((number, *_position(values[1:], f"GetDieDataAsNum {n}")))
        return tuple(dies)

    # -- ThermalController role (the chuck) ---------------------------------------------
    def set_temperature(self, celsius: float) -> None:
        t = round(self.guard.temperature(celsius), 2)
        echoed = _celsius(self._cmd("SetHeaterTemp", f"{t:.2f} C", timeout_s=MOVE_TIMEOUT_S),
                          "SetHeaterTemp")
        if abs(echoed - t) > 0.1:
            raise ProberError(f"prober set the chuck to {echoed:g} degC, not {t:g} degC")

    def temperature(self) -> float:
        return _celsius(self._cmd("GetHeaterTemp", "C"), "GetHeaterTemp")

    def setpoint(self) -> float:
        return _celsius(self._cmd("GetTargetTemp", "C"), "GetTargetTemp")

    def settled(self) -> bool:
        values = self._cmd("ReadTemperatureChuckStatus")
        try:
            status = int(values[0])
        except (IndexError, ValueError):
            raise ProberError(f"unexpected thermal chuck status {' '.join(values)!r} "
                              "from the prober") from None
        if not status & (AT_TEMPERATURE | HOLD_READY) or status & (HEATING | COOLING | SOAKING):
            return False
        return abs(self.temperature() - self.setpoint()) <= self.settle_window_c

    def check(self) -> None:
        self.position()


def _registration(reply: str) -> tuple[int, str]:
    """The message server's answer to RegisterProberApp: ``Rsp=``/``FCN=<n>[:<code>[:...]]``.

    Its exact form is not documented in the sources found; anything in the server's own
    framing is accepted (a numeric second field is its code), anything else is garbled.
    """
    text = reply.strip()
    if not _SERVER_FRAME.match(text) or text.startswith("Cmd="):
        raise BadReply(f"unexpected reply {reply!r} to RegisterProberApp; is this a Velox "
                       "message server?")
    _, _, rest = text.partition(":")
    code, _, message = rest.partition(":")
    if re.fullmatch(r"-?\d+", code):
        return int(code), message.strip()
    return 0, rest.strip()


def _parse(reply: str, cmd_id: int) -> tuple[int, str]:
    match = _REPLY.fullmatch(reply.strip())
    if match is None:
        raise BadReply(f"unexpected prober reply {reply!r}")
    if int(match[1]) != cmd_id:
        raise BadReply(f"reply {reply!r} answers command {match[1]}, not {cmd_id}")
    return int(match[2]), (match[3] or "").strip()


def _position(values: list[str], what: str) -> tuple[int, int]:
    try:
        col, row = (int(v) for v in values[:2])
    except ValueError:
        raise ProberError(f"unexpected die position {' '.join(values)!r} from "
                          f"{what}") from None
    return col, row


def _celsius(values: list[str], what: str) -> float:
    try:
        t = float(values[0])
    except (IndexError, ValueError):
        raise ProberError(f"unexpected temperature {' '.join(values)!r} from {what}") from None
    if len(values) > 1 and values[1].upper() not in ("C", "CELSIUS"):
        raise ProberError(f"{what} answered in {values[1]!r}, not degrees Celsius")
    return t
