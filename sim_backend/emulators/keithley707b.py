"""Emulator of a Keithley 707B switching matrix (TSP ``channel.*`` commands).

Channels are ``<slot 1-6><row A-H><column 01-12>``; the closed set is shared
with the bench, where the SMU emulator sees which lines it reaches.
"""

from __future__ import annotations

import re
from collections import deque

CHANNEL = re.compile(r"^([1-6])([A-H])(0[1-9]|1[0-2])$")
CALL = re.compile(r'^channel\.(close|open|exclusiveclose)\(\s*"([^"]*)"\s*\)$')
GETCLOSE = re.compile(r'^print\(\s*channel\.getclose\(\s*"([^"]*)"\s*\)\s*\)$')
PARAMETER_ERROR = 1115


class Keithley707BEmulator:
    idn = "Keithley Instruments Inc., Model 707B, 04498765, 1.6.0"
    role = "switch"

    def __init__(self, bench) -> None:
        self.bench = bench
        self.errors: deque[tuple[int, str]] = deque(maxlen=32)
        self.connect_rule = "BREAK_BEFORE_MAKE"

    def handle(self, message: bytes) -> bytes | None:
        return self.bench.transact(self, message, self.process)

    def process(self, message: bytes) -> bytes | None:
        text = message.decode("ascii", errors="replace").strip()
        replies = []
        for statement in filter(None, (s.strip() for s in text.split(";"))):
            reply = self._statement(statement)
            if reply is not None:
                replies.append(reply)
        # ASCII out, whatever came in: a stray byte echoed in an error message shows as "?"
        return ("\n".join(replies) + "\n").encode("ascii", "replace") if replies else None

    def _statement(self, s: str) -> str | None:
        closed = self.bench.closed_channels
        if s == "*IDN?":
            return self.idn
        if s == "*OPC?":
            return "1"
        if s in ("*RST", "reset()"):
            closed.clear()
            self.errors.clear()
            return None
        if s in ("*CLS", "errorqueue.clear()"):
            self.errors.clear()
            return None
        if s == "print(errorqueue.count)":
            return str(len(self.errors))
        if s == "print(errorqueue.next())":
            if not self.errors:
                return "0\tQueue Is Empty\t0\t0"
            code, msg = self.errors.popleft()
            return f"{code}\t{msg}\t2\t0"
        match = re.match(r"^channel\.connectrule\s*=\s*channel\.(\w+)$", s)
        if match:
            if match.group(1) not in ("BREAK_BEFORE_MAKE", "MAKE_BEFORE_BREAK", "OFF"):
                self._error(f"unknown connect rule {match.group(1)}")
            else:
                self.connect_rule = match.group(1)
            return None
        match = GETCLOSE.match(s)
        if match:
            names = sorted(closed, key=_order)
            if match.group(1) != "allslots":
                wanted = set(self._channels(match.group(1), allow_all=True) or [])
                names = [n for n in names if n in wanted]
            return ";".join(names) if names else "nil"
        match = CALL.match(s)
        if match:
            action, arg = match.groups()
            if action == "open" and arg == "allslots":
                closed.clear()
                self._settle()
                return None
            channels = self._channels(arg)
            if channels is None:
                return None
            if action == "close":
                closed.update(channels)
            elif action == "open":
                closed.difference_update(channels)
            else:
                closed.clear()
                closed.update(channels)
            self._settle()
            return None
        self._error(f"syntax error at '{s[:40]}'")
        return None

    def _channels(self, arg: str, allow_all: bool = False) -> list[str] | None:
        names = [n.strip() for n in arg.split(",") if n.strip()]
        bad = [n for n in names if not CHANNEL.match(n)]
        if bad or not names:
            self._error(f"invalid channel list '{arg}'")
            return None
        return names

    def _settle(self) -> None:
        self.bench.clock.advance(self.bench.latency.relay_s)

    def _error(self, message: str) -> None:
        self.errors.append((PARAMETER_ERROR, message))


def _order(name: str) -> tuple[int, str, int]:
    return int(name[0]), name[1], int(name[2:])
