"""Keithley 707B switching matrix driver (TSP ``channel.*``), SwitchMatrix role.

Every switching command is followed by ``*OPC?`` so relays have settled before
anything is measured; closures are read back and verified.
"""

from __future__ import annotations

import re

from instruments.errors import InstrumentError
from instruments.session import VisaSession

CHANNEL = re.compile(r"^[1-6][A-H](0[1-9]|1[0-2])$")


class ChannelError(InstrumentError, ValueError):
    """A channel name is not <slot 1-6><row A-H><column 01-12>."""


def _names(channels) -> str:
    names = [channels] if isinstance(channels, str) else list(channels)
    bad = [c for c in names if not CHANNEL.match(c)]
    if bad or not names:
        raise ChannelError(f"invalid channel name(s) {bad or names}; use e.g. '1A01' "
                           "(slot 1-6, row A-H, column 01-12)")
    return ",".join(names)


class Keithley707B:
    role = "switch"
    session_options = {"error_query": "print(errorqueue.next())",
                       "no_error": lambda r: r.strip().startswith("0")}

    def __init__(self, session: VisaSession, verify: bool = True) -> None:
        self.session = session
        self.verify = verify
        self._ruled = False

    @property
    def transactions(self) -> int:
        return self.session.transactions

    def identity(self) -> str:
        return self.session.query("*IDN?").strip()

    def _rule(self) -> None:
        if not self._ruled:
            self.session.write("channel.connectrule = channel.BREAK_BEFORE_MAKE")
            self._ruled = True

    def _switch(self, call: str) -> None:
        self._rule()
        self.session.write(call)
        self.session.query("*OPC?")

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
        reply = self.session.query('print(channel.getclose("allslots"))').strip()
        return [] if reply == "nil" else reply.split(";")

    def _verify(self, wanted: set[str], subset: bool) -> None:
        if not self.verify:
            return
        got = set(self.closed())
        ok = wanted <= got if subset else wanted == got
        if not ok:
            self.session.check_errors("switching")
            raise InstrumentError(f"{self.session.name}: closed {sorted(got)}, expected "
                                  f"{sorted(wanted)}; check the card configuration")

    def check(self) -> None:
        self.session.check_errors()
