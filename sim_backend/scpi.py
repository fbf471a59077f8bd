"""SCPI parsing as real instruments do it, for the emulators.

Headers match short or long mnemonic forms case-insensitively, optional nodes
in ``[]`` may be left out, a leading ``:`` is optional, ``;`` joins commands
(a command without a leading ``:`` continues the previous header's path),
queries end in ``?`` and may take arguments. Errors go to the error queue as
``code,"message"``; a failed query sends no reply, as on a real instrument.
Bytes that are no command at all are refused the same way: a non-ASCII byte
outside a binary block is ``-101`` (invalid character), a ``#<digit>`` without
its length digits ``-161`` (invalid block data); the instrument stays usable.

An emulator declares its command table with :func:`command` on methods, so the
table reads at a glance in each emulator module.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from sim_backend.framing import FramingError, split_block


class ScpiError(Exception):
    """An error the instrument puts on its error queue (SCPI codes)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code},{message}")
        self.code = code
        self.message = message


INVALID_CHARACTER = -101
INVALID_BLOCK = -161
UNDEFINED_HEADER = -113
MISSING_PARAMETER = -109
DATA_TYPE = -104
ILLEGAL_VALUE = -224
OUT_OF_RANGE = -222
EXECUTION = -200
HARDWARE = -240


@dataclass(frozen=True)
class _Node:
    short: str
    long: str
    optional: bool


def _compile(pattern: str) -> tuple[tuple[_Node, ...], bool]:
    query = pattern.endswith("?")
    body = pattern.rstrip("?")
    nodes = []
    for optional, name in re.findall(r"(\[?):?([A-Za-z*]+)\]?", body):
        short = "".join(ch for ch in name if ch.isupper() or ch == "*")
        nodes.append(_Node(short=short or name.upper(), long=name.upper(),
                           optional=bool(optional)))
    return tuple(nodes), query


def command(pattern: str) -> Callable:
    """Mark a method as the handler of a SCPI header pattern (``?`` = query)."""

    def mark(fn: Callable) -> Callable:
        fn._scpi_pattern = pattern
        return fn

    return mark


def _match(tokens: list[str], nodes: tuple[_Node, ...]) -> bool:
    def go(i: int, j: int) -> bool:
        if j == len(nodes):
            return i == len(tokens)
        node = nodes[j]
        if i < len(tokens) and tokens[i] in (node.short, node.long):
            if go(i + 1, j + 1):
                return True
        return node.optional and go(i, j + 1)

    return go(0, 0)


def _split_top(text: str, sep: str) -> list[str]:
    """Split at ``sep`` outside quotes and brackets (SCPI strings and TSP tables)."""
    parts, depth, quote, cur = [], 0, None, []
    for ch in text:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in "({":
            depth += 1
        elif ch in ")}":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return parts


def split_args(text: str) -> list[str]:
    """Split a parameter list at commas outside quotes and parentheses."""
    args = [a.strip() for a in _split_top(text, ",")]
    return [] if args == [""] else args


def number(arg: str, name: str = "value") -> float:
    try:
        value = float(arg)
    except (TypeError, ValueError):
        raise ScpiError(DATA_TYPE, f"Data type error; {name} must be numeric") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ScpiError(ILLEGAL_VALUE, f"Illegal parameter value; {name}")
    return value


def boolean(arg: str) -> bool:
    text = arg.strip().upper()
    if text in ("ON", "1"):
        return True
    if text in ("OFF", "0"):
        return False
    raise ScpiError(ILLEGAL_VALUE, "Illegal parameter value; expected ON|OFF|1|0")


def need(args: list[str], count: int) -> None:
    if len(args) < count:
        raise ScpiError(MISSING_PARAMETER, "Missing parameter")


class ScpiInstrument:
    """Base of the SCPI emulators: command dispatch, IEEE 488.2 commons, error queue."""

    idn = "AIMC,Generic,0,0"
    role = "generic"

    def __init__(self, bench) -> None:
        self.bench = bench
        self.errors: deque[tuple[int, str]] = deque(maxlen=32)
        self._table = []
        for name in dir(type(self)):
            fn = getattr(type(self), name)
            pattern = getattr(fn, "_scpi_pattern", None)
            if pattern:
                nodes, query = _compile(pattern)
                self._table.append((nodes, query, getattr(self, name)))
        self._cache: dict[tuple[tuple[str, ...], bool], Callable | None] = {}

    # -- transport entry point ---------------------------------------------
    def handle(self, message: bytes) -> bytes | None:
        return self.bench.transact(self, message, self.process)

    def process(self, message: bytes) -> bytes | None:
        try:
            text, block = split_block(message)
        except FramingError:
            self.push_error(INVALID_BLOCK, "Invalid block data; malformed block header")
            return None
        try:
            decoded = text.decode("ascii")
        except UnicodeDecodeError:
            self.push_error(INVALID_CHARACTER, "Invalid character; non-ASCII byte in the command")
            return None
        replies: list[bytes] = []
        path: list[str] = []
        parts = _split_commands(decoded)
        for idx, part in enumerate(parts):
            part = part.strip()
            if not part:
                continue
            is_last = idx == len(parts) - 1
            try:
                reply, path = self._execute(part, path, block if is_last else None)
            except ScpiError as exc:
                self.push_error(exc.code, exc.message)
                return b";".join(replies) + b"\n" if replies else None
            if reply is not None:
                replies.append(reply if isinstance(reply, bytes) else str(reply).encode())
        if not replies:
            return None
        return b";".join(replies) + b"\n"

    def _execute(self, part: str, path: list[str], block: bytes | None):
        header, _, rest = part.partition(" ")
        query = header.endswith("?")
        header = header.rstrip("?")
        if header.lstrip(":").startswith("*"):  # ":*CLS" is sent by some drivers
            header = header.lstrip(":")
            tokens = [header.upper()]
            new_path = path
        else:
            absolute = header.startswith(":")
            tokens = [re.sub(r"\d+$", "", t.upper()) for t in header.strip(":").split(":")]
            if not absolute and path:
                tokens = path + tokens
            new_path = tokens[:-1]
        handler = self._lookup(tuple(tokens), query)
        if handler is None and not header.startswith(("*", ":")) and path:
            handler = self._lookup(tuple(tokens[len(path):]), query)  # treat as absolute
            new_path = tokens[len(path):-1]
        if handler is None:
            raise ScpiError(UNDEFINED_HEADER, f"Undefined header; {header}{'?' if query else ''}")
        args = split_args(rest)
        return handler(args, block), new_path

    def _lookup(self, tokens: tuple[str, ...], query: bool):
        key = (tokens, query)
        if key not in self._cache:
            found = None
            for nodes, is_query, fn in self._table:
                if is_query == query and _match(list(tokens), nodes):
                    found = fn
                    break
            self._cache[key] = found
        return self._cache[key]

    def push_error(self, code: int, message: str) -> None:
        self.errors.append((code, message))

    # -- IEEE 488.2 common commands and the error queue ----------------------------
    @command("*IDN?")
    def _idn(self, args, block):
        return self.idn

    @command("*RST")
    def _rst(self, args, block):
        self.reset()

    def reset(self) -> None:
        """Return to power-on settings; emulators extend this."""

    def power_on(self) -> None:
        """The state after power-on (a reboot fault): settings reset, error queue empty."""
        self.reset()
        self.errors.clear()

    @command("*CLS")
    def _cls(self, args, block):
        self.errors.clear()

    @command("*OPC?")
    def _opc(self, args, block):
        return "1"

    @command("*WAI")
    def _wai(self, args, block):
        return None

    @command("*ESR?")
    def _esr(self, args, block):
        return "0"

    @command(":SYSTem:ERRor[:NEXT]?")
    def _syst_err(self, args, block):
        if not self.errors:
            return '0,"No error"'
        code, message = self.errors.popleft()
        return f'{code},"{message}"'

    @command(":STATus:PRESet")
    def _stat_pres(self, args, block):
        return None

    @command(":SYSTem:ERRor:COUNt?")
    def _syst_err_count(self, args, block):
        return str(len(self.errors))


def _split_commands(text: str) -> list[str]:
    return _split_top(text, ";")
