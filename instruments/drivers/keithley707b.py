"""Keithley 707B switching matrix driver (TSP ``channel.*``), SwitchMatrix role.

Every switching command is followed by ``*OPC?`` so relays have settled before
anything is measured; closures are read back and verified (a reply that is not
a list of channel names is a garbled one, and is asked again).
"""

from __future__ import annotations

import re

from instruments.datasheet import ChipDatasheet
from instruments.drivers.base import Driver, option_bool
from instruments.errors import ArgumentError, BadReply, InstrumentError
from instruments.safety import SafetyGuard
from instruments.session import VisaSession

CHANNEL = re.compile(r"^[1-6][A-H](0[1-9]|1[0-2])$")


class ChannelError(ArgumentError):
    """A channel name is not <slot 1-6><row A-H><column 01-12>."""


def _names(channels) -> str:
    if isinstance(channels, str):
        names = [channels]
    else:
        try:
            names = list(channels)
        except TypeError:
            raise ChannelError(f"invalid channel list {channels!r}; use e.g. ['1A01'] "
                               "(slot 1-6, row A-H, column 01-12)") from None
    bad = [c for c in names if not isinstance(c, str) or not CHANNEL.match(c)]
    if bad or not names:
        raise ChannelError(f"invalid channel name(s) {bad or names}; use e.g. '1A01' "
                           "(slot 1-6, row A-H, column 01-12)")
    return ",".join(names)


class Keithley707B(Driver):
    """Keithley 707B switching matrix (TSP): closes the probe card's lines onto the SMU."""

    role = "switch"
    session_options = {"error_query": "print(errorqueue.next())",
                       "no_error": lambda r: r.strip().startswith("0")}

    def __init__(self, session: VisaSession, guard: SafetyGuard,
                 datasheet: ChipDatasheet | None = None, *, parts=None,
                 verify: bool = True) -> None:
        super().__init__(session, guard, datasheet, parts=parts)
        self.verify = option_bool("verify", verify)
        self._ruled = False

    def settings(self) -> dict:
        return {"verify": self.verify}

    def _rule(self) -> None:
        if not self._ruled:
            self.session.write("channel.connectrule = channel.BREAK_BEFORE_MAKE")
            self._ruled = True

    def _switch(self, call: str) -> None:
        self._rule()
        self.session.write(call)
        self.session.query("*OPC?", parse=_done)

    def close(self, channels) -> None:
        names = _names(channels)
        self._switch(f'channel.close("{names}")')
        self._verify(set(names.split(",")), subset=True)

    def open(self, channels) -> None:
        self._switch(f'channel.open("{_names(channels)}")')

    def open_all(self) -> None:
        self._switch('channel.open("allslots")')

    def exclusive_close(self, channels) -> None:
        names = _names(channels)
        self._switch(f'channel.exclusiveclose("{names}")')
        self._verify(set(names.split(",")), subset=False)

    def closed(self) -> list[str]:
        return self.session.query('print(channel.getclose("allslots"))', parse=_closed)

    def _verify(self, wanted: set[str], subset: bool) -> None:
        if not self.verify:
            return
        got = set(self.closed())
        ok = wanted <= got if subset else wanted == got
        if not ok:
            self.session.check_errors("switching")
            raise InstrumentError(f"{self.session.name}: closed {sorted(got)}, expected "
                                  f"{sorted(wanted)}; check the card configuration")


def _closed(reply: str) -> list[str]:
    text = reply.strip()
    if text == "nil":
        return []
    names = text.split(";")
    if not all(CHANNEL.match(n) for n in names):
        raise BadReply(f"unexpected closed-channel list {reply!r}")
    return names


def _done(reply: str) -> str:
    if reply.strip() != "1":
        raise BadReply(f"unexpected *OPC? reply {reply!r}")
    return reply
