"""Emulator of a Keithley 2600B System SourceMeter (TSP), wired to the probe card.

The 2600B is scripted, not SCPI: every line a client sends is a chunk of TSP
(Lua 5.0) run against the instrument's objects (``smua``, ``smub``,
``errorqueue``, ``format``, ``localnode``, ``status``, ``display``, ...). This
emulator runs them through a small Lua interpreter (:class:`Lua`): assignments,
calls, tables, arithmetic and strings, ``local``, ``if``/``while``/``repeat``/
numeric and generic ``for``, functions, and ``loadscript``/``loadandrunscript``
... ``endscript`` blocks sent line by line. Queries are ``print(...)``: numbers
with ``format.asciiprecision`` significant digits (``1.00000e+00``), several
values tab-separated; ``printbuffer`` comma-and-space separated, or ``#0`` and
IEEE-754 bytes after ``format.data = format.REAL32`` (or ``REAL64``).

A statement that fails stops its line there (nothing after it runs, nothing
is printed for it) and puts an entry on the error queue (code, message,
severity, node), read with ``print(errorqueue.next())``: ``-285`` TSP syntax
error, ``-286`` TSP runtime error (Lua's own wording, e.g. ``attempt to index
global `smub' (a nil value)`` on a one-channel model), ``1101``/``1102``
parameter too big/small, ``1115`` parameter error (a value not in the set).

Physics, shared with the 2450 emulator (:mod:`sim_backend.emulators.smu_physics`):
the channel on the switch matrix (``matrix_channel``, channel A by default)
reaches the word lines closed on row A with HI and the bit lines closed on row
B with LO; the other channel is an open circuit. A trigger-model list sweep
(``smuX.trigger.source.listv``, ``smuX.trigger.count``, ``smuX.trigger.initiate()``)
holds each point for the source delay (``smuX.source.delay``): a point above the
switching threshold is a programming pulse of that width. Every sourced value
is noted on the bench's WireLog, as the 2450 emulator notes it.

Not emulated: current sourcing (``OUTPUT_DCAMPS``), trigger timers, blenders and
digital I/O (``trigger.timer[N]``, ``digio``), TSP-Link, contact check, and the
time a measurement adds to a point (NPLC): a point lasts its source delay.
"""

from __future__ import annotations

import math
import re
import struct
from collections import deque
from dataclasses import dataclass

import numpy as np

from sim_backend.emulators.smu_physics import connected_cells, source_point

# -- error codes, as the 2600B's error summary list numbers them -----------------------
SYNTAX_ERROR = -285
RUNTIME_ERROR = -286
PARAMETER_TOO_BIG = 1101
PARAMETER_TOO_SMALL = 1102
PARAMETER_ERROR = 1115
SEVERITY_RECOVERABLE = 20
ERROR_NODE = 1
QUEUE_LENGTH = 100
STEP_BUDGET = 200_000  # statements per line: a runaway script is stopped, not hung
MAX_SWEEP_POINTS = 100_000


@dataclass(frozen=True)
class Model:
    """What differs between the 2600B models the emulator can be."""

    name: str
    channels: tuple[str, ...]
    max_volts: float
    max_amps: float
    min_limit_amps: float
    volt_ranges: tuple[float, ...]
    amp_ranges: tuple[float, ...]


_LOW_I = (100e-12, 1e-9, 10e-9, 100e-9, 1e-6, 10e-6, 100e-6, 1e-3, 10e-3, 100e-3, 1.0, 1.5)
_HIGH_I = (100e-9, 1e-6, 10e-6, 100e-6, 1e-3, 10e-3, 100e-3, 1.0, 3.0)
MODELS = {
    "2601B": Model("2601B", ("a",), 40.4, 3.03, 10e-9, (0.1, 1.0, 6.0, 40.0), _HIGH_I),
    "2602B": Model("2602B", ("a", "b"), 40.4, 3.03, 10e-9, (0.1, 1.0, 6.0, 40.0), _HIGH_I),
    "2635B": Model("2635B", ("a",), 202.0, 1.515, 100e-12, (0.2, 2.0, 20.0, 200.0), _LOW_I),
    "2636B": Model("2636B", ("a", "b"), 202.0, 1.515, 100e-12, (0.2, 2.0, 20.0, 200.0),
                   _LOW_I),
}


# -- errors ------------------------------------------------------------------------------
class TspError(Exception):
    """An error the instrument puts on its error queue."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class LuaError(Exception):
    """A runtime error; the line is added where it is caught."""

    def __init__(self, message: str, code: int = RUNTIME_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class ParameterError(LuaError):
    """An instrument attribute refused a value (Keithley codes, no line prefix)."""


class LuaSyntaxError(Exception):
    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class _Break(Exception):
    pass


class _Return(Exception):
    def __init__(self, values: list) -> None:
        self.values = values


# -- Lua values ---------------------------------------------------------------------------
class LuaTable:
    """A Lua table: one dict; numeric keys are floats (1 and 1.0 are one key)."""

    def __init__(self, items=None) -> None:
        self.hash: dict = {}
        for i, value in enumerate(items or (), start=1):
            self.hash[float(i)] = value

    @staticmethod
    def key(key):
        if isinstance(key, bool):
            return ("bool", key)  # True == 1 in Python; not in Lua
        if isinstance(key, float) and key.is_integer():
            return float(key)
        return key

    def get(self, key):
        return self.hash.get(self.key(key))

    def set(self, key, value) -> None:
        if key is None:
            raise LuaError("table index is nil")
        if isinstance(key, float) and math.isnan(key):
            raise LuaError("table index is NaN")
        if value is None:
            self.hash.pop(self.key(key), None)
        else:
            self.hash[self.key(key)] = value

    def length(self) -> int:
        n = 0
        while float(n + 1) in self.hash:
            n += 1
        return n

    def array(self) -> list:
        return [self.hash[float(i)] for i in range(1, self.length() + 1)]

    def next_key(self, key):
        keys = list(self.hash)
        if key is None:
            index = 0
        else:
            try:
                index = keys.index(self.key(key)) + 1
            except ValueError:
                raise LuaError("invalid key to `next'") from None
        if index >= len(keys):
            return None, None
        k = keys[index]
        return (k[1] if isinstance(k, tuple) and k[0] == "bool" else k), self.hash[k]


class Builtin:
    """A function implemented in Python: ``fn(args) -> value | list of values``."""

    def __init__(self, name: str, fn) -> None:
        self.name = name
        self.fn = fn

    def __call__(self, args: list) -> list:
        out = self.fn(args)
        if out is None:
            return []
        return out if isinstance(out, list) else [out]


class LuaFunction:
    def __init__(self, params: list[str], body: list, scope, interp) -> None:
        self.params = params
        self.body = body
        self.scope = scope
        self.interp = interp

    def __call__(self, args: list) -> list:
        scope = Scope(self.scope)
        for i, name in enumerate(self.params):
            scope.declare(name, args[i] if i < len(args) else None)
        try:
            self.interp.block(self.body, scope)
        except _Return as ret:
            return ret.values
        return []


class Node:
    """An instrument object (``smua``, ``smua.source``, ``errorqueue``, ...).

    Members: constants, attributes (getter, setter or None: read-only), functions,
    child objects. Reading an unknown member gives nil, as on the instrument;
    setting one is refused.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.members: dict[str, tuple] = {}

    def const(self, **values) -> Node:
        for name, value in values.items():
            self.members[name] = ("const", value)
        return self

    def attr(self, name: str, get, set_=None) -> Node:
        self.members[name] = ("attr", get, set_)
        return self

    def func(self, name: str, fn) -> Node:
        self.members[name] = ("const", Builtin(f"{self.path}.{name}", fn))
        return self

    def child(self, name: str, node: Node) -> Node:
        self.members[name] = ("const", node)
        return node

    def index(self, key):
        member = self.members.get(key) if isinstance(key, str) else None
        if member is None:
            return None
        if member[0] == "attr":
            return member[1]()
        return member[1]

    def newindex(self, key, value) -> None:
        member = self.members.get(key) if isinstance(key, str) else None
        if member is None:
            raise LuaError(f"attempt to set unknown field `{key}' of {self.path}")
        if member[0] != "attr" or member[2] is None:
            raise LuaError(f"attempt to set read-only field `{key}' of {self.path}")
        member[2](value)


def type_name(value) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, LuaTable):
        return "table"
    if isinstance(value, (Builtin, LuaFunction)):
        return "function"
    return "userdata"


def truthy(value) -> bool:
    return value is not None and value is not False


def to_number(value):
    """Lua's coercion: numbers, and strings that read as numbers; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            if re.fullmatch(r"[+-]?0[xX][0-9a-fA-F]+", text):
                return float(int(text, 16))
            return float(text)
        except ValueError:
            return None
    return None


def lua_tostring(value) -> str:
    """``tostring()`` and concatenation (``%.14g``), not ``print`` (asciiprecision)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.14g}"
    if isinstance(value, str):
        return value
    if isinstance(value, Node):
        return value.path
    return f"{type_name(value)}: 0x{id(value) & 0xFFFFFFFF:08x}"


# -- the lexer ------------------------------------------------------------------------------
KEYWORDS = {"and", "break", "do", "else", "elseif", "end", "false", "for", "function", "if",
            "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until",
            "while"}
_TOKEN = re.compile(r"""
    (?P<space>[ \t\r\f\v]+)
  | (?P<newline>\n)
  | (?P<longcomment>--\[\[.*?\]\])
  | (?P<comment>--[^\n]*)
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z_0-9]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<op>\.\.\.|\.\.|==|~=|<=|>=|[-+*/^<>=(){}\[\];:,.])
""", re.X | re.S)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v",
            "\\": "\\", '"': '"', "'": "'", "\n": "\n"}


@dataclass(frozen=True)
class Token:
    kind: str  # name, keyword, number, string, op, eof
    value: object
    text: str
    line: int


def tokenize(source: str, first_line: int = 1) -> list[Token]:
    tokens, pos, line = [], 0, first_line
    while pos < len(source):
        m = _TOKEN.match(source, pos)
        if m is None:
            ch = source[pos]
            if ch in "\"'":
                raise LuaSyntaxError(f"unfinished string near `{source[pos:].splitlines()[0]}'",
                                     line)
            raise LuaSyntaxError(f"unexpected symbol near `{ch}'", line)
        kind, text = m.lastgroup, m.group()
        pos = m.end()
        if kind in ("space", "comment"):
            continue
        if kind in ("newline", "longcomment"):
            line += text.count("\n")
            continue
        if kind == "number":
            value = float(int(text, 16)) if text[:2].lower() == "0x" else float(text)
            tokens.append(Token("number", value, text, line))
        elif kind == "name":
            tokens.append(Token("keyword" if text in KEYWORDS else "name", text, text, line))
        elif kind == "string":
            tokens.append(Token("string", _unescape(text[1:-1]), text, line))
        else:
            tokens.append(Token("op", text, text, line))
    tokens.append(Token("eof", None, "<eof>", line))
    return tokens


def _unescape(body: str) -> str:
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1] if i + 1 < len(body) else ""
        if nxt.isdigit():
            digits = re.match(r"\d{1,3}", body[i + 1:]).group()
            out.append(chr(int(digits) % 256))
            i += 1 + len(digits)
        else:
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
    return "".join(out)


# -- the parser (Lua 5.0 grammar, as its lparser.c reads it) -----------------------------------
_BINARY = {"or": (1, 1), "and": (2, 2), "<": (3, 3), ">": (3, 3), "<=": (3, 3), ">=": (3, 3),
           "~=": (3, 3), "==": (3, 3), "..": (5, 4), "+": (6, 6), "-": (6, 6), "*": (7, 7),
           "/": (7, 7), "^": (10, 9)}
_UNARY_PRIORITY = 8
_BLOCK_END = {"else", "elseif", "end", "until"}


class Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def error(self, message: str, token: Token | None = None):
        token = token or self.tok
        raise LuaSyntaxError(f"{message} near `{token.text}'", token.line)

    def check(self, text: str) -> bool:
        return self.tok.kind in ("op", "keyword") and self.tok.text == text

    def accept(self, text: str) -> bool:
        if self.check(text):
            self.i += 1
            return True
        return False

    def expect(self, text: str, opened: tuple[str, int] | None = None) -> None:
        if not self.accept(text):
            if opened and opened[1] != self.tok.line:
                self.error(f"`{text}' expected (to close `{opened[0]}' at line {opened[1]})")
            self.error(f"`{text}' expected")

    def name(self) -> str:
        if self.tok.kind != "name":
            self.error("<name> expected")
        value = self.tok.text
        self.i += 1
        return value

    # -- blocks and statements ---------------------------------------------------
    def chunk(self) -> list:
        body = self.block()
        if self.tok.kind != "eof":
            self.error("`<eof>' expected")
        return body

    def block(self) -> list:
        body = []
        while not (self.tok.kind == "eof" or (self.tok.kind == "keyword"
                                              and self.tok.text in _BLOCK_END)):
            if self.check("return") or self.check("break"):
                body.append(self.last_statement())
                self.accept(";")
                break
            body.append(self.statement())
            self.accept(";")
        return body

    def last_statement(self):
        line = self.tok.line
        if self.accept("break"):
            return ("break", line)
        self.expect("return")
        exprs = []
        if not (self.tok.kind == "eof" or self.check(";") or (
                self.tok.kind == "keyword" and self.tok.text in _BLOCK_END)):
            exprs = self.exprlist()
        return ("return", exprs, line)

    def statement(self):
        tok, line = self.tok, self.tok.line
        if tok.kind == "keyword":
            word = tok.text
            if word == "if":
                return self.if_statement(line)
            if word == "while":
                self.i += 1
                cond = self.expr()
                self.expect("do")
                body = self.block()
                self.expect("end", ("while", line))
                return ("while", cond, body, line)
            if word == "do":
                self.i += 1
                body = self.block()
                self.expect("end", ("do", line))
                return ("do", body, line)
            if word == "for":
                return self.for_statement(line)
            if word == "repeat":
                self.i += 1
                body = self.block()
                self.expect("until", ("repeat", line))
                return ("repeat", body, self.expr(), line)
            if word == "function":
                self.i += 1
                target = ("name", self.name(), line)
                while self.check(".") or self.check(":"):
                    method = self.check(":")
                    self.i += 1
                    key = self.name()
                    target = ("index", target, ("const", key), line)
                    if method:
                        params, body = self.funcbody(line, method=True)
                        return ("assign", [target], [("function", params, body)], line)
                params, body = self.funcbody(line)
                return ("assign", [target], [("function", params, body)], line)
            if word == "local":
                self.i += 1
                if self.accept("function"):
                    name = self.name()
                    params, body = self.funcbody(line)
                    return ("localfunction", name, ("function", params, body), line)
                names = [self.name()]
                while self.accept(","):
                    names.append(self.name())
                exprs = self.exprlist() if self.accept("=") else []
                return ("local", names, exprs, line)
        expr = self.suffixed()
        if self.check("=") or self.check(","):
            targets = [expr]
            while self.accept(","):
                targets.append(self.suffixed())
            for target in targets:
                if target[0] not in ("name", "index"):
                    self.error("syntax error")
            self.expect("=")
            return ("assign", targets, self.exprlist(), line)
        if expr[0] not in ("call", "method"):
            self.error("syntax error")
        return ("callstat", expr, line)

    def if_statement(self, line: int):
        self.expect("if")
        clauses = []
        cond = self.expr()
        self.expect("then")
        clauses.append((cond, self.block()))
        orelse = None
        while True:
            if self.accept("elseif"):
                cond = self.expr()
                self.expect("then")
                clauses.append((cond, self.block()))
            elif self.accept("else"):
                orelse = self.block()
                self.expect("end", ("if", line))
                break
            else:
                self.expect("end", ("if", line))
                break
        return ("if", clauses, orelse, line)

    def for_statement(self, line: int):
        self.expect("for")
        first = self.name()
        if self.accept("="):
            start = self.expr()
            self.expect(",")
            stop = self.expr()
            step = self.expr() if self.accept(",") else ("const", 1.0)
            self.expect("do")
            body = self.block()
            self.expect("end", ("for", line))
            return ("fornum", first, start, stop, step, body, line)
        names = [first]
        while self.accept(","):
            names.append(self.name())
        if not self.accept("in"):
            self.error("`=' or `in' expected")
        exprs = self.exprlist()
        self.expect("do")
        body = self.block()
        self.expect("end", ("for", line))
        return ("forin", names, exprs, body, line)

    def funcbody(self, line: int, method: bool = False):
        self.expect("(")
        params = ["self"] if method else []
        if not self.check(")"):
            while True:
                if self.accept("..."):
                    break
                params.append(self.name())
                if not self.accept(","):
                    break
        self.expect(")")
        body = self.block()
        self.expect("end", ("function", line))
        return params, body

    # -- expressions -----------------------------------------------------------------
    def exprlist(self) -> list:
        exprs = [self.expr()]
        while self.accept(","):
            exprs.append(self.expr())
        return exprs

    def expr(self, limit: int = 0):
        tok = self.tok
        if (tok.kind == "keyword" and tok.text == "not") or (tok.kind == "op"
                                                              and tok.text == "-"):
            self.i += 1
            left = ("unop", tok.text, self.expr(_UNARY_PRIORITY), tok.line)
        else:
            left = self.simple()
        while True:
            tok = self.tok
            op = tok.text if tok.kind in ("op", "keyword") else None
            if op not in _BINARY or _BINARY[op][0] <= limit:
                return left
            self.i += 1
            right = self.expr(_BINARY[op][1])
            left = ("binop", op, left, right, tok.line)

    def simple(self):
        tok = self.tok
        if tok.kind in ("number", "string"):
            self.i += 1
            return ("const", tok.value)
        if tok.kind == "keyword":
            if tok.text in ("nil", "true", "false"):
                self.i += 1
                return ("const", {"nil": None, "true": True, "false": False}[tok.text])
            if tok.text == "function":
                self.i += 1
                params, body = self.funcbody(tok.line)
                return ("function", params, body)
        if self.check("{"):
            return self.table()
        return self.suffixed()

    def primary(self):
        tok = self.tok
        if tok.kind == "name":
            self.i += 1
            return ("name", tok.text, tok.line)
        if self.accept("("):
            inner = self.expr()
            self.expect(")")
            return ("paren", inner)
        self.error("unexpected symbol")

    def suffixed(self):
        expr = self.primary()
        while True:
            tok = self.tok
            if self.accept("."):
                expr = ("index", expr, ("const", self.name()), tok.line)
            elif self.accept("["):
                key = self.expr()
                self.expect("]")
                expr = ("index", expr, key, tok.line)
            elif self.accept(":"):
                name = self.name()
                expr = ("method", expr, name, self.call_args(), tok.line)
            elif self.check("(") or self.check("{") or tok.kind == "string":
                expr = ("call", expr, self.call_args(), tok.line)
            else:
                return expr

    def call_args(self) -> list:
        tok = self.tok
        if tok.kind == "string":
            self.i += 1
            return [("const", tok.value)]
        if self.check("{"):
            return [self.table()]
        self.expect("(")
        if self.accept(")"):
            return []
        args = self.exprlist()
        self.expect(")")
        return args

    def table(self):
        line = self.tok.line
        self.expect("{")
        positional, keyed = [], []
        while not self.check("}"):
            if self.check("["):
                self.i += 1
                key = self.expr()
                self.expect("]")
                self.expect("=")
                keyed.append((key, self.expr()))
            elif self.tok.kind == "name" and self.tokens[self.i + 1].text == "=" \
                    and self.tokens[self.i + 1].kind == "op":
                key = self.name()
                self.i += 1
                keyed.append((("const", key), self.expr()))
            else:
                positional.append(self.expr())
            if not (self.accept(",") or self.accept(";")):
                break
        self.expect("}", ("{", line))
        return ("table", positional, keyed)


# -- the evaluator ------------------------------------------------------------------------------
class Scope:
    def __init__(self, parent: Scope | None = None) -> None:
        self.parent = parent
        self.names: dict[str, object] = {}

    def declare(self, name: str, value) -> None:
        self.names[name] = value

    def find(self, name: str) -> Scope | None:
        scope = self
        while scope is not None:
            if name in scope.names:
                return scope
            scope = scope.parent
        return None


class Lua:
    """A Lua 5.0 subset over a globals dict; :meth:`run` executes one chunk."""

    def __init__(self, globals_: dict) -> None:
        self.globals = globals_
        self.steps = 0
        self.line = 1

    def run(self, source: str, first_line: int = 1) -> None:
        """Run ``source``; raise TspError as the instrument would queue it."""
        try:
            body = Parser(tokenize(source, first_line)).chunk()
        except LuaSyntaxError as exc:
            raise TspError(SYNTAX_ERROR, f"TSP Syntax error at line {exc.line}: "
                                         f"{exc.message}") from None
        except RecursionError:
            raise TspError(SYNTAX_ERROR, f"TSP Syntax error at line {first_line}: "
                                         "chunk has too many syntax levels") from None
        self.steps = 0
        self.line = first_line
        try:
            self.block(body, Scope())
        except ParameterError as exc:
            raise TspError(exc.code, exc.message) from None
        except LuaError as exc:
            raise TspError(exc.code, f"TSP Runtime error at line {self.line}: "
                                     f"{exc.message}") from None
        except (_Break, _Return):
            pass  # a chunk may end with return (or a stray break) at top level
        except RecursionError:
            raise TspError(RUNTIME_ERROR, f"TSP Runtime error at line {self.line}: "
                                          "stack overflow") from None
        except (ArithmeticError, ValueError) as exc:  # a number beyond what a double holds
            raise TspError(RUNTIME_ERROR, f"TSP Runtime error at line {self.line}: "
                                          f"{exc}") from None

    # -- statements -----------------------------------------------------------------
    def block(self, body: list, scope: Scope) -> None:
        for stat in body:
            self.statement(stat, scope)

    def statement(self, stat, scope: Scope) -> None:
        self.steps += 1
        if self.steps > STEP_BUDGET:
            raise LuaError("emulator step budget exceeded (a runaway loop?)")
        kind = stat[0]
        self.line = stat[-1] if isinstance(stat[-1], int) else self.line
        if kind == "assign":
            _, targets, exprs, _ = stat
            places = [self.place(t, scope) for t in targets]
            values = self.values(exprs, scope, len(targets))
            for place, value in zip(places, values, strict=True):
                place(value)
        elif kind == "local":
            _, names, exprs, _ = stat
            values = self.values(exprs, scope, len(names))
            for name, value in zip(names, values, strict=True):
                scope.declare(name, value)
        elif kind == "localfunction":
            _, name, fn, _ = stat
            scope.declare(name, None)
            scope.declare(name, self.eval(fn, scope))
        elif kind == "callstat":
            self.multi(stat[1], scope)
        elif kind == "do":
            self.block(stat[1], Scope(scope))
        elif kind == "if":
            _, clauses, orelse, _ = stat
            for cond, body in clauses:
                if truthy(self.eval(cond, scope)):
                    self.block(body, Scope(scope))
                    return
            if orelse is not None:
                self.block(orelse, Scope(scope))
        elif kind == "while":
            _, cond, body, _ = stat
            try:
                while truthy(self.eval(cond, scope)):
                    self.steps += 1
                    if self.steps > STEP_BUDGET:
                        raise LuaError("emulator step budget exceeded (a runaway loop?)")
                    self.block(body, Scope(scope))
            except _Break:
                pass
        elif kind == "repeat":
            _, body, cond, _ = stat
            try:
                while True:
                    inner = Scope(scope)
                    self.block(body, inner)
                    if truthy(self.eval(cond, inner)):
                        break
            except _Break:
                pass
        elif kind == "fornum":
            self.for_numeric(stat, scope)
        elif kind == "forin":
            self.for_generic(stat, scope)
        elif kind == "return":
            raise _Return(self.values(stat[1], scope))
        elif kind == "break":
            raise _Break()

    def for_numeric(self, stat, scope: Scope) -> None:
        _, name, start, stop, step, body, _ = stat
        values = []
        for what, expr in (("initial", start), ("limit", stop), ("step", step)):
            value = to_number(self.eval(expr, scope))
            if value is None:
                raise LuaError(f"`for' {what} value must be a number")
            values.append(value)
        i, stop_v, step_v = values
        try:
            while (step_v > 0 and i <= stop_v) or (step_v <= 0 and i >= stop_v):
                self.steps += 1
                if self.steps > STEP_BUDGET or step_v == 0:
                    raise LuaError("emulator step budget exceeded (a runaway loop?)")
                inner = Scope(scope)
                inner.declare(name, i)
                self.block(body, inner)
                i += step_v
        except _Break:
            pass

    def for_generic(self, stat, scope: Scope) -> None:
        _, names, exprs, body, _ = stat
        fn, state, control = self.values(exprs, scope, 3)
        try:
            while True:
                self.steps += 1
                if self.steps > STEP_BUDGET:
                    raise LuaError("emulator step budget exceeded (a runaway loop?)")
                results = self.call(fn, [state, control], "for iterator")
                results = (results + [None] * len(names))[:len(names)]
                if results[0] is None:
                    break
                control = results[0]
                inner = Scope(scope)
                for n, v in zip(names, results, strict=True):
                    inner.declare(n, v)
                self.block(body, inner)
        except _Break:
            pass

    def place(self, target, scope: Scope):
        """A setter for an assignment target."""
        if target[0] == "name":
            name = target[1]
            owner = scope.find(name)
            if owner is not None:
                return lambda v: owner.declare(name, v)
            return lambda v: self.set_global(name, v)
        _, obj_expr, key_expr, _ = target
        obj = self.eval(obj_expr, scope)
        key = self.eval(key_expr, scope)
        if isinstance(obj, LuaTable):
            return lambda v: obj.set(key, v)
        if isinstance(obj, Node):
            return lambda v: obj.newindex(key, v)
        raise LuaError(f"attempt to index {self.describe(obj_expr)} (a {type_name(obj)} "
                       "value)")

    def set_global(self, name: str, value) -> None:
        if value is None:
            self.globals.pop(name, None)
        else:
            self.globals[name] = value

    # -- expressions ---------------------------------------------------------------------
    def values(self, exprs: list, scope: Scope, want: int | None = None) -> list:
        """Evaluate an expression list; the last call expands to all its results."""
        out = []
        for i, expr in enumerate(exprs):
            if i == len(exprs) - 1 and expr[0] in ("call", "method"):
                out.extend(self.multi(expr, scope))
            else:
                out.append(self.eval(expr, scope))
        if want is not None:
            out = (out + [None] * want)[:want]
        return out

    def multi(self, expr, scope: Scope) -> list:
        if expr[0] == "call":
            _, fn_expr, args, line = expr
            fn = self.eval(fn_expr, scope)
            self.line = line
            return self.call(fn, self.values(args, scope), self.describe(fn_expr))
        if expr[0] == "method":
            _, obj_expr, name, args, line = expr
            obj = self.eval(obj_expr, scope)
            fn = self.index(obj, name, obj_expr)
            self.line = line
            return self.call(fn, [obj, *self.values(args, scope)], f"method `{name}'")
        return [self.eval(expr, scope)]

    def call(self, fn, args: list, what: str) -> list:
        if isinstance(fn, (Builtin, LuaFunction)):
            return fn(args)
        if isinstance(fn, Script):
            return fn.run_script()
        raise LuaError(f"attempt to call {what} (a {type_name(fn)} value)")

    def eval(self, expr, scope: Scope):
        kind = expr[0]
        if kind == "const":
            return expr[1]
        if kind == "name":
            owner = scope.find(expr[1])
            return owner.names[expr[1]] if owner is not None else self.globals.get(expr[1])
        if kind == "index":
            _, obj_expr, key_expr, _ = expr
            return self.index(self.eval(obj_expr, scope), self.eval(key_expr, scope), obj_expr)
        if kind in ("call", "method"):
            results = self.multi(expr, scope)
            return results[0] if results else None
        if kind == "paren":
            return self.eval(expr[1], scope)
        if kind == "binop":
            return self.binop(expr, scope)
        if kind == "unop":
            _, op, operand, _ = expr
            value = self.eval(operand, scope)
            if op == "not":
                return not truthy(value)
            number = to_number(value)
            if number is None:
                raise LuaError(f"attempt to perform arithmetic on {self.describe(operand)} "
                               f"(a {type_name(value)} value)")
            return -number
        if kind == "table":
            _, positional, keyed = expr
            table = LuaTable()
            for key_expr, value_expr in keyed:
                table.set(self.eval(key_expr, scope), self.eval(value_expr, scope))
            items = self.values(positional, scope)
            for i, value in enumerate(items, start=1):
                if value is not None:
                    table.set(float(i), value)
            return table
        if kind == "function":
            return LuaFunction(expr[1], expr[2], scope, self)
        raise LuaError(f"cannot evaluate {kind}")  # not reached: the parser makes no other

    def index(self, obj, key, obj_expr):
        if isinstance(obj, LuaTable):
            return obj.get(key)
        if isinstance(obj, Node):
            return obj.index(key)
        if isinstance(obj, str) and isinstance(key, str):
            string_lib = self.globals.get("string")
            if isinstance(string_lib, LuaTable):
                return string_lib.get(key)
        raise LuaError(f"attempt to index {self.describe(obj_expr)} (a {type_name(obj)} value)")

    def binop(self, expr, scope: Scope):
        _, op, left_expr, right_expr, _ = expr
        left = self.eval(left_expr, scope)
        if op == "and":
            return self.eval(right_expr, scope) if truthy(left) else left
        if op == "or":
            return left if truthy(left) else self.eval(right_expr, scope)
        right = self.eval(right_expr, scope)
        if op == "==":
            return _equal(left, right)
        if op == "~=":
            return not _equal(left, right)
        if op in ("<", "<=", ">", ">="):
            both_numbers = isinstance(left, float) and isinstance(right, float)
            both_strings = isinstance(left, str) and isinstance(right, str)
            if not (both_numbers or both_strings):
                raise LuaError(f"attempt to compare {type_name(left)} with {type_name(right)}")
            return {"<": left < right, "<=": left <= right, ">": left > right,
                    ">=": left >= right}[op]
        if op == "..":
            for value, side in ((left, left_expr), (right, right_expr)):
                if not isinstance(value, (str, float)) or isinstance(value, bool):
                    raise LuaError(f"attempt to concatenate {self.describe(side)} "
                                   f"(a {type_name(value)} value)")
            return lua_tostring(left) + lua_tostring(right)
        a, b = to_number(left), to_number(right)
        for value, number, side in ((left, a, left_expr), (right, b, right_expr)):
            if number is None:
                raise LuaError(f"attempt to perform arithmetic on {self.describe(side)} "
                               f"(a {type_name(value)} value)")
        return _arith(op, a, b)

    @staticmethod
    def describe(expr) -> str:
        if expr[0] == "name":
            return f"global `{expr[1]}'"
        if expr[0] == "index" and expr[2][0] == "const" and isinstance(expr[2][1], str):
            return f"field `{expr[2][1]}'"
        return "a value"


def _equal(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (float, str)) or isinstance(b, (float, str)):
        return type(a) is type(b) and a == b
    return a is b


def _arith(op: str, a: float, b: float) -> float:
    try:
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            if b == 0:
                return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a) * (
                    math.copysign(1.0, b))
            return a / b
        if op == "^":
            return math.pow(a, b)
    except OverflowError:
        return math.inf
    except ValueError:  # a negative number to a fractional power
        return math.nan
    raise LuaError(f"unknown operator {op}")


class Script(Node):
    """A script loaded with ``loadscript name`` ... ``endscript``: ``name()`` or ``name.run()``."""

    def __init__(self, name: str, source: str, first_line: int, emulator) -> None:
        super().__init__(name)
        self.source = source
        self.first_line = first_line
        self.emulator = emulator
        self.func("run", lambda args: self.run_script())
        self.attr("source", lambda: self.source)

    def run_script(self) -> list:
        self.emulator.lua.run(self.source, self.first_line)
        return []


# -- argument and value checks for the instrument's attributes -------------------------------
def _number(value, where: str) -> float:
    number = to_number(value)
    if number is None:
        raise LuaError(f"bad argument to {where} (number expected, got {type_name(value)})")
    if not math.isfinite(number):
        raise ParameterError(f"Parameter error, {where} must be finite", PARAMETER_ERROR)
    return number


def _bounded(value, where: str, lo: float, hi: float) -> float:
    number = _number(value, where)
    if number > hi:
        raise ParameterError(f"Parameter too big, {where} = {number:g} (at most {hi:g})",
                             PARAMETER_TOO_BIG)
    if number < lo:
        raise ParameterError(f"Parameter too small, {where} = {number:g} (at least {lo:g})",
                             PARAMETER_TOO_SMALL)
    return number


def _choice(value, where: str, choices) -> int:
    number = _number(value, where)
    if number not in choices:
        raise ParameterError(f"Parameter error, {where} = {number:g} (one of "
                             f"{', '.join(f'{c:g}' for c in choices)})", PARAMETER_ERROR)
    return int(number)


def _whole(value, where: str, lo: int, hi: int) -> int:
    number = _bounded(value, where, lo, hi)
    if not float(number).is_integer():
        raise ParameterError(f"Parameter error, {where} = {number:g} (a whole number)",
                             PARAMETER_ERROR)
    return int(number)


def _table_numbers(value, where: str) -> list[float]:
    if not isinstance(value, LuaTable):
        raise LuaError(f"bad argument #1 to {where} (table expected, got {type_name(value)})")
    items = value.array()
    if not items:
        raise ParameterError(f"Parameter error, {where}: empty list", PARAMETER_ERROR)
    return [_number(v, where) for v in items]


# -- the instrument's objects ----------------------------------------------------------------------
OFF, ON, HIGH_Z = 0, 1, 2
DCAMPS, DCVOLTS = 0, 1
DELAY_AUTO = -1.0
SOURCE_IDLE, SOURCE_HOLD = 0, 1
LIMIT_AUTO = 0.0
STATUS_AUTORANGE_MEASURE = 0x04
STATUS_COMPLIANCE = 0x40
STATUS_FILTERED = 0x80
CONDITION_CURRENT_LIMIT = 0x02  # status.measurement.instrument.smuX.condition: ILMT


class ReadingBuffer:
    """``smuX.nvbuffer1``/``nvbuffer2`` (or ``smuX.makebuffer(n)``): readings and their
    statuses, source values and timestamps."""

    FIELDS = ("readings", "statuses", "sourcevalues", "timestamps")

    def __init__(self, path: str, clock, capacity: int = 60_000) -> None:
        self.path = path
        self.clock = clock
        self.capacity = capacity
        self.appendmode = 0
        self.collectsourcevalues = 0
        self.collecttimestamps = 0
        self.fillmode = 0
        self.base = 0.0
        self.data = {field: [] for field in self.FIELDS}
        self.node = self._node()

    def clear(self) -> None:
        for values in self.data.values():
            values.clear()
        self.base = self.clock.now

    @property
    def n(self) -> int:
        return len(self.data["readings"])

    def append(self, reading: float, status: int, source: float) -> None:
        if self.n >= self.capacity:
            if self.fillmode == 0:  # FILL_ONCE: a full buffer takes no more
                return
            for values in self.data.values():
                del values[0]
        self.data["readings"].append(reading)
        self.data["statuses"].append(float(status))
        self.data["sourcevalues"].append(source)
        self.data["timestamps"].append(self.clock.now - self.base)

    def _node(self) -> Node:
        node = BufferNode(self.path, self, "readings")
        node.attr("n", lambda: float(self.n))
        node.attr("capacity", lambda: float(self.capacity))
        for name, choices in (("appendmode", (0, 1)), ("collectsourcevalues", (0, 1)),
                              ("collecttimestamps", (0, 1)), ("fillmode", (0, 1))):
            node.attr(name, lambda name=name: float(getattr(self, name)),
                      lambda v, name=name, choices=choices: setattr(
                          self, name, _choice(v, f"{self.path}.{name}", choices)))
        node.attr("timestampresolution", lambda: 1e-6, lambda v: None)
        node.attr("basetimestamp", lambda: self.base)
        node.func("clear", lambda args: self.clear())
        node.func("clearcache", lambda args: None)
        for field in self.FIELDS:
            node.child(field, BufferNode(f"{self.path}.{field}", self, field))
        return node


class BufferNode(Node):
    """A reading buffer or one of its subtables; ``[i]`` reads entry i (1-based)."""

    def __init__(self, path: str, buffer: ReadingBuffer, field: str) -> None:
        super().__init__(path)
        self.buffer = buffer
        self.field = field

    def values(self) -> list[float]:
        return self.buffer.data[self.field]

    def index(self, key):
        if isinstance(key, float):
            values = self.values()
            i = int(key) if key.is_integer() else 0
            return values[i - 1] if 1 <= i <= len(values) else None
        return super().index(key)


class SmuChannel:
    """One source-measure channel (``smua`` or ``smub``) and its TSP objects."""

    def __init__(self, emulator: Keithley2600BEmulator, name: str) -> None:
        self.emulator = emulator
        self.name = name
        self.path = f"smu{name}"
        clock = emulator.bench.clock
        self.nvbuffer1 = ReadingBuffer(f"{self.path}.nvbuffer1", clock)
        self.nvbuffer2 = ReadingBuffer(f"{self.path}.nvbuffer2", clock)
        self.reset()
        self.node = self._node()

    @property
    def model(self) -> Model:
        return self.emulator.model

    def reset(self) -> None:
        """The channel's settings after ``reset()`` / ``smuX.reset()``."""
        self.func = DCVOLTS
        self.levelv = 0.0
        self.leveli = 0.0
        self.present = 0.0  # what the output sources while on (levelv, or a held sweep point)
        self.limiti = 100e-3
        self.limitv = 20.0
        self.rangev = self.model.volt_ranges[0]
        self.rangei = 100e-3
        self.autorangev = ON
        self.autorangei = ON
        self.output = OFF
        self.offmode = 0
        self.offfunc = DCVOLTS
        self.offlimiti = 1e-3
        self.offlimitv = 40.0
        self.source_delay = 0.0  # DELAY_OFF
        self.nplc = 1.0
        self.measure_rangei = 100e-9
        self.measure_rangev = self.model.volt_ranges[0]
        self.measure_autorangei = ON
        self.measure_autorangev = ON
        self.autozero = 2
        self.measure_count = 1
        self.measure_interval = 0.0
        self.measure_delay = DELAY_AUTO
        self.filter_count = 1
        self.filter_enable = OFF
        self.filter_type = 1  # FILTER_REPEAT_AVG
        self.sense = 0
        self.tripped = False  # the compliance state of the last point
        self.trig_count = 1
        self.arm_count = 1
        self.source_action = 0
        self.sweep_values: list[float] | None = None
        self.measure_action = 0
        self.measure_what: tuple[str, tuple[ReadingBuffer, ...]] | None = None
        self.endsweep_action = SOURCE_IDLE
        self.endpulse_action = SOURCE_HOLD
        self.trig_limiti = LIMIT_AUTO
        self.stimuli = {"arm": 0.0, "source": 0.0, "measure": 0.0, "endpulse": 0.0}
        self.autoclear = 0
        for buffer in (self.nvbuffer1, self.nvbuffer2):
            buffer.clear()

    # -- what reaches the cells ----------------------------------------------------------
    def connected(self) -> np.ndarray | None:
        if self.name != self.emulator.matrix_channel:
            return None  # this channel's terminals are not on the switch matrix
        if self.output != ON and self.offmode == HIGH_Z:
            return None  # output relay open
        return connected_cells(self.emulator.bench)

    def terminal_volts(self) -> float:
        """The voltage at the terminals: the level while on, 0 V when off (normal mode)."""
        return self.present if self.output == ON else 0.0

    def observe_output(self) -> None:
        if self.output == ON:
            self.emulator.bench.observed.note("smu_voltage", abs(self.present))

    # -- measurements --------------------------------------------------------------------
    def measure(self, what: str, buffers: tuple[ReadingBuffer | None, ...] = ()) -> list:
        """``smuX.measure.i/v/r/p/iv()``: measure.count readings (filtered when the
        filter is on); returns the first, stores every one in ``buffers``."""
        emulator = self.emulator
        volts = self.terminal_volts()
        conversions = self.filter_count if self.filter_enable == ON else 1
        first = None
        for _ in range(self.measure_count):
            tripped = False
            current = 0.0
            for _ in range(conversions):
                current += emulator._apply(self, volts, emulator.bench.latency.smu_point_s)
                tripped = tripped or self.tripped
            current /= conversions
            values = _functions(what, volts, current)
            status = self.status(tripped)
            for value, buffer in zip(values, buffers, strict=False):
                if buffer is not None:
                    buffer.append(value, status, volts)
            if first is None:
                first = values
            if self.measure_interval:
                emulator.bench.clock.advance(self.measure_interval)
        return first

    def status(self, tripped: bool) -> int:
        return ((STATUS_COMPLIANCE if tripped else 0)
                | (STATUS_AUTORANGE_MEASURE if self.measure_autorangei else 0)
                | (STATUS_FILTERED if self.filter_enable else 0))

    def initiate(self) -> None:
        """``smuX.trigger.initiate()``: the trigger model's sweep, run to completion."""
        emulator = self.emulator
        total = self.trig_count * max(1, self.arm_count)
        if self.trig_count == 0:
            raise ParameterError(f"Parameter error, {self.path}.trigger.count = 0 (an endless "
                                 "sweep) is not emulated", PARAMETER_ERROR)
        if total > MAX_SWEEP_POINTS:
            raise ParameterError(f"Parameter too big, {total} sweep points (emulated: at most "
                                 f"{MAX_SWEEP_POINTS})", PARAMETER_TOO_BIG)
        values = self.sweep_values if self.source_action else None
        measuring = self.measure_action and self.measure_what is not None
        if measuring:
            for buffer in self.measure_what[1]:
                if buffer is not None and not buffer.appendmode:
                    buffer.clear()
        delay = max(self.source_delay, 0.0)
        level = self.present
        for k in range(total):
            if values:
                level = values[k % len(values)]
            volts = level if self.output == ON else 0.0
            current = emulator._apply(self, volts, max(delay, 1e-7), sweep=True,
                                      measuring=bool(measuring))
            emulator.bench.clock.advance(delay)
            if measuring:
                what, buffers = self.measure_what
                status = self.status(self.tripped)
                for value, buffer in zip(_functions(what, volts, current), buffers,
                                         strict=False):
                    if buffer is not None:
                        buffer.append(value, status, volts)
        if values and self.endsweep_action == SOURCE_HOLD:
            self.present = level
        else:
            self.present = self.levelv
        self.observe_output()

    # -- the TSP objects ---------------------------------------------------------------------
    def _node(self) -> Node:
        p = self.path
        smu = Node(p).const(
            OUTPUT_DCAMPS=float(DCAMPS), OUTPUT_DCVOLTS=float(DCVOLTS), OUTPUT_OFF=float(OFF),
            OUTPUT_ON=float(ON), OUTPUT_HIGH_Z=float(HIGH_Z), OUTPUT_NORMAL=0.0,
            OUTPUT_ZERO=1.0, DISABLE=0.0, ENABLE=1.0, ASYNC=2.0, FILTER_OFF=0.0,
            FILTER_ON=1.0, FILTER_MOVING_AVG=0.0, FILTER_REPEAT_AVG=1.0, FILTER_MEDIAN=2.0,
            AUTORANGE_OFF=0.0, AUTORANGE_ON=1.0, AUTORANGE_FOLLOW_LIMIT=2.0, AUTOZERO_OFF=0.0,
            AUTOZERO_ONCE=1.0, AUTOZERO_AUTO=2.0, DELAY_OFF=0.0, DELAY_AUTO=DELAY_AUTO,
            SOURCE_IDLE=float(SOURCE_IDLE), SOURCE_HOLD=float(SOURCE_HOLD), SENSE_LOCAL=0.0,
            SENSE_REMOTE=1.0, SENSE_CALA=3.0, LIMIT_AUTO=LIMIT_AUTO, FILL_ONCE=0.0,
            FILL_WINDOW=1.0)
        smu.func("reset", lambda args: self.reset())
        smu.func("abort", lambda args: None)
        smu.func("makebuffer", self._makebuffer)
        smu.attr("sense", lambda: float(self.sense),
                 lambda v: setattr(self, "sense", _choice(v, f"{p}.sense", (0, 1, 3))))
        smu.child("nvbuffer1", self.nvbuffer1.node)
        smu.child("nvbuffer2", self.nvbuffer2.node)
        self._source_node(smu.child("source", Node(f"{p}.source")))
        self._measure_node(smu.child("measure", Node(f"{p}.measure")))
        self._trigger_node(smu.child("trigger", Node(f"{p}.trigger")))
        return smu

    def _makebuffer(self, args):
        size = _whole(args[0] if args else None, f"{self.path}.makebuffer", 1, 60_000)
        return ReadingBuffer(f"{self.path}.buffer", self.emulator.bench.clock, size).node

    def _field(self, node: Node, name: str, field: str, check) -> None:
        """An attribute stored on this channel as ``field``, ``check(value)`` when set."""
        node.attr(name, lambda: float(getattr(self, field)),
                  lambda v: setattr(self, field, check(v)))

    def _source_node(self, src: Node) -> None:
        p, m = src.path, self.model
        src.attr("func", lambda: float(self.func), self._set_func)
        src.attr("levelv", lambda: self.levelv, self._set_levelv)
        self._field(src, "leveli", "leveli",
                    lambda v: _bounded(v, f"{p}.leveli", -m.max_amps, m.max_amps))
        src.attr("limiti", lambda: self.limiti, self._set_limiti)
        self._field(src, "limitv", "limitv",
                    lambda v: _bounded(v, f"{p}.limitv", 0.01, m.max_volts))
        src.attr("rangev", lambda: self.rangev, lambda v: self._set_range("rangev", v))
        src.attr("rangei", lambda: self.rangei, lambda v: self._set_range("rangei", v))
        for name in ("autorangev", "autorangei"):
            self._field(src, name, name, lambda v, n=name: _choice(v, f"{p}.{n}", (0, 1)))
        src.attr("output", lambda: float(self.output), self._set_output)
        self._field(src, "offmode", "offmode", lambda v: _choice(v, f"{p}.offmode", (0, 1, 2)))
        self._field(src, "offfunc", "offfunc", lambda v: _choice(v, f"{p}.offfunc", (0, 1)))
        self._field(src, "offlimiti", "offlimiti",
                    lambda v: _bounded(v, f"{p}.offlimiti", m.min_limit_amps, m.max_amps))
        self._field(src, "offlimitv", "offlimitv",
                    lambda v: _bounded(v, f"{p}.offlimitv", 0.01, m.max_volts))
        self._field(src, "delay", "source_delay", lambda v: _delay(v, f"{p}.delay"))
        src.attr("compliance", lambda: bool(self.output == ON and self.tripped))

    def _set_func(self, value) -> None:
        func = _choice(value, f"{self.path}.source.func", (DCAMPS, DCVOLTS))
        if func == DCAMPS:
            raise ParameterError(f"Parameter error, {self.path}.source.func: emulated "
                                 "OUTPUT_DCVOLTS only", PARAMETER_ERROR)
        self.func = func

    def _set_levelv(self, value) -> None:
        m = self.model
        self.levelv = _bounded(value, f"{self.path}.source.levelv", -m.max_volts, m.max_volts)
        self.present = self.levelv
        self.observe_output()

    def _set_limiti(self, value) -> None:
        m = self.model
        self.limiti = _bounded(value, f"{self.path}.source.limiti", m.min_limit_amps,
                               m.max_amps)
        self.emulator.bench.observed.note("compliance", self.limiti)

    def _set_range(self, which: str, value) -> None:
        ranges = self.model.volt_ranges if which.endswith("v") else self.model.amp_ranges
        where = f"{self.path}.source.{which}"
        wanted = abs(_bounded(value, where, -ranges[-1], ranges[-1]))
        setattr(self, which, next(r for r in ranges if r >= wanted * (1 - 1e-9)))
        setattr(self, "auto" + which, OFF)  # a fixed range switches autorange off

    def _set_output(self, value) -> None:
        state = _choice(value, f"{self.path}.source.output", (OFF, ON, HIGH_Z))
        if state == HIGH_Z:
            self.offmode, state = HIGH_Z, OFF
        self.output = state
        self.tripped = False
        self.observe_output()

    def _measure_node(self, meas: Node) -> None:
        p, m = meas.path, self.model

        def reading(what):
            def fn(args):
                buffers = tuple(_buffer(a, f"{p}.{what}") for a in args[:len(what)])
                return self.measure(what, buffers)
            return fn

        for what in ("i", "v", "r", "p", "iv"):
            meas.func(what, reading(what))
        self._field(meas, "nplc", "nplc", lambda v: _bounded(v, f"{p}.nplc", 0.001, 25.0))
        self._field(meas, "rangei", "measure_rangei",
                    lambda v: abs(_bounded(v, f"{p}.rangei", -m.max_amps, m.max_amps)))
        self._field(meas, "rangev", "measure_rangev",
                    lambda v: abs(_bounded(v, f"{p}.rangev", -m.max_volts, m.max_volts)))
        self._field(meas, "lowrangei", "measure_rangei",
                    lambda v: abs(_bounded(v, f"{p}.lowrangei", -m.max_amps, m.max_amps)))
        for name, field in (("autorangei", "measure_autorangei"),
                            ("autorangev", "measure_autorangev")):
            self._field(meas, name, field, lambda v, n=name: _choice(v, f"{p}.{n}", (0, 1, 2)))
        self._field(meas, "autozero", "autozero",
                    lambda v: _choice(v, f"{p}.autozero", (0, 1, 2)))
        self._field(meas, "count", "measure_count",
                    lambda v: _whole(v, f"{p}.count", 1, 60_000))
        self._field(meas, "interval", "measure_interval",
                    lambda v: _bounded(v, f"{p}.interval", 0.0, 1.0))
        self._field(meas, "delay", "measure_delay", lambda v: _delay(v, f"{p}.delay"))
        filt = meas.child("filter", Node(f"{p}.filter"))
        self._field(filt, "count", "filter_count",
                    lambda v: _whole(v, f"{p}.filter.count", 1, 100))
        self._field(filt, "enable", "filter_enable",
                    lambda v: _choice(v, f"{p}.filter.enable", (0, 1)))
        self._field(filt, "type", "filter_type",
                    lambda v: _choice(v, f"{p}.filter.type", (0, 1, 2)))

    def _trigger_node(self, trig: Node) -> None:
        p = trig.path
        base = 16 if self.name == "a" else 32
        trig.const(ARMED_EVENT_ID=float(base + 1), SWEEPING_EVENT_ID=float(base + 2),
                   SOURCE_COMPLETE_EVENT_ID=float(base + 3),
                   MEASURE_COMPLETE_EVENT_ID=float(base + 4),
                   PULSE_COMPLETE_EVENT_ID=float(base + 5),
                   SWEEP_COMPLETE_EVENT_ID=float(base + 6), IDLE_EVENT_ID=float(base + 7))
        self._field(trig, "count", "trig_count", lambda v: _whole(v, f"{p}.count", 0, 2**31))
        self._field(trig, "autoclear", "autoclear",
                    lambda v: _choice(v, f"{p}.autoclear", (0, 1)))
        trig.func("initiate", lambda args: self.initiate())
        trig.func("abort", lambda args: None)
        trig.func("clear", lambda args: None)
        arm = trig.child("arm", Node(f"{p}.arm"))
        self._field(arm, "count", "arm_count", lambda v: _whole(v, f"{p}.arm.count", 0, 2**31))
        self._stimulus(arm, "arm")
        source = trig.child("source", Node(f"{p}.source"))
        self._field(source, "action", "source_action",
                    lambda v: _choice(v, f"{p}.source.action", (0, 1)))
        self._stimulus(source, "source")
        source.func("listv", self._listv)
        source.func("linearv", self._linearv)
        source.attr("limiti", lambda: self.trig_limiti, self._set_trig_limiti)
        source.func("set", lambda args: None)
        measure = trig.child("measure", Node(f"{p}.measure"))
        self._field(measure, "action", "measure_action",
                    lambda v: _choice(v, f"{p}.measure.action", (0, 1, 2)))
        self._stimulus(measure, "measure")
        for what in ("i", "v", "r", "p", "iv"):
            measure.func(what, lambda args, what=what: self._sweep_measure(what, args))
        measure.func("set", lambda args: None)
        for name, field in (("endpulse", "endpulse_action"), ("endsweep", "endsweep_action")):
            node = trig.child(name, Node(f"{p}.{name}"))
            self._field(node, "action", field,
                        lambda v, n=name: _choice(v, f"{p}.{n}.action", (0, 1)))
            if name == "endpulse":
                self._stimulus(node, "endpulse")
                node.func("set", lambda args: None)

    def _stimulus(self, node: Node, key: str) -> None:
        node.attr("stimulus", lambda: self.stimuli[key],
                  lambda v: self.stimuli.__setitem__(key, _bounded(v, f"{node.path}.stimulus",
                                                                   0.0, 255.0)))

    def _listv(self, args) -> None:
        where = f"{self.path}.trigger.source.listv"
        values = _table_numbers(args[0] if args else None, where)
        m = self.model
        for v in values:
            _bounded(v, where, -m.max_volts, m.max_volts)
        self.sweep_values = values

    def _linearv(self, args) -> None:
        where = f"{self.path}.trigger.source.linearv"
        m = self.model
        start = _bounded(args[0] if args else None, where, -m.max_volts, m.max_volts)
        stop = _bounded(args[1] if len(args) > 1 else None, where, -m.max_volts, m.max_volts)
        points = _whole(args[2] if len(args) > 2 else None, where, 1, MAX_SWEEP_POINTS)
        self.sweep_values = [float(x) for x in np.linspace(start, stop, points)]

    def _set_trig_limiti(self, value) -> None:
        number = _number(value, f"{self.path}.trigger.source.limiti")
        if number != LIMIT_AUTO:
            number = _bounded(number, f"{self.path}.trigger.source.limiti",
                              self.model.min_limit_amps, self.model.max_amps)
            self.emulator.bench.observed.note("compliance", number)
        self.trig_limiti = number

    def _sweep_measure(self, what: str, args) -> None:
        where = f"{self.path}.trigger.measure.{what}"
        buffers = tuple(_buffer(a, where) for a in args[:len(what)])
        if not buffers or any(b is None for b in buffers):
            raise LuaError(f"bad argument #1 to {where} (reading buffer expected)")
        self.measure_what = (what, buffers)

    def sweep_limit(self) -> float:
        return self.limiti if self.trig_limiti == LIMIT_AUTO else self.trig_limiti


def _functions(what: str, volts: float, current: float) -> list[float]:
    """The values of one reading for measure.i/v/r/p/iv."""
    if what == "i":
        return [current]
    if what == "v":
        return [volts]
    if what == "r":
        return [volts / current if current else 9.91e37]
    if what == "p":
        return [volts * current]
    return [current, volts]


def _buffer(value, where: str) -> ReadingBuffer | None:
    if value is None:
        return None
    if isinstance(value, BufferNode) and value.field == "readings":
        return value.buffer
    raise LuaError(f"bad argument to {where} (reading buffer expected, got "
                   f"{type_name(value)})")


def _delay(value, where: str) -> float:
    number = _number(value, where)
    if number == DELAY_AUTO:
        return DELAY_AUTO
    return _bounded(number, where, 0.0, 10_000.0)


# -- the instrument --------------------------------------------------------------------------------
class Keithley2600BEmulator:
    """A Keithley 2600B (a 2636B by default; :meth:`set_model` for another) speaking TSP."""

    role = "smu"

    def __init__(self, bench, model: str = "2636B") -> None:
        self.bench = bench
        self._rng = np.random.default_rng(2636)  # the current-noise floor
        self.matrix_channel = "a"  # the channel whose terminals reach the switch matrix
        self.errors: deque[tuple[int, str]] = deque(maxlen=QUEUE_LENGTH)
        self.received: deque[str] = deque(maxlen=50_000)  # lines received, for tests
        self.set_model(model)

    # -- state -------------------------------------------------------------------------------
    @property
    def idn(self) -> str:
        return f"Keithley Instruments Inc., Model {self.model.name}, 04512345, 4.0.5"

    def set_model(self, model: str) -> None:
        """Become another 2600B model (channels, ranges), in its power-on state."""
        if model not in MODELS:
            raise ValueError(f"unknown 2600B model {model!r}; choose from {', '.join(MODELS)}")
        self.model = MODELS[model]
        self.channels = {name: SmuChannel(self, name) for name in self.model.channels}
        self.power_on()

    def reset(self) -> None:
        """``reset()`` / ``*RST``: every channel and the output format to defaults."""
        for smu in self.channels.values():
            smu.reset()
        self.asciiprecision = 6
        self.data_format = 1  # format.ASCII
        self.byteorder = 1  # format.LITTLEENDIAN
        self.prompts = 0
        self.prompts4882 = 1
        self.showerrors = 0

    def power_on(self) -> None:
        """After power-on (a reboot fault): defaults, empty error queue, no user globals."""
        self.reset()
        self.errors.clear()
        self.description = f"Keithley Instruments SMU {self.model.name} - 04512345"
        self.linefreq = 60.0
        self._script: list[str] | None = None  # lines of a script being loaded
        self._script_name: str | None = None
        self._script_run = False
        self.lua = Lua(self._globals())

    # -- physics -------------------------------------------------------------------------------
    def _connected(self, smu: SmuChannel) -> np.ndarray | None:
        return smu.connected()

    def _apply(self, smu: SmuChannel, volts: float, seconds: float, *, sweep: bool = False,
               measuring: bool = True) -> float:
        """Source ``volts`` from ``smu`` for ``seconds`` on whatever its terminals reach;
        return the current (shared physics: smu_physics.source_point)."""
        point = source_point(self.bench, volts, seconds,
                             ilim=smu.sweep_limit() if sweep else smu.limiti,
                             nplc=smu.nplc if measuring else 0.0, rng=self._rng,
                             role=self.role, mask=self._connected(smu))
        smu.tripped = point.tripped
        return point.current

    # -- transport entry point ------------------------------------------------------------------
    def handle(self, message: bytes) -> bytes | None:
        return self.bench.transact(self, message, self.process)

    def process(self, message: bytes) -> bytes | None:
        line = message.decode("ascii", errors="replace").rstrip("\r\n")
        self.received.append(line)
        self._out: list[bytes] = []
        try:
            self._line(line)
        except TspError as exc:
            self._queue(exc.code, exc.message)
        if self.prompts and self._script is None:
            self._out.append(b"TSP?\n" if self.errors else b"TSP>\n")
        elif self.prompts:
            self._out.append(b">>>>\n")
        return b"".join(self._out) or None

    def _queue(self, code: int, message: str) -> None:
        self.errors.append((code, message))

    def _line(self, line: str) -> None:
        text = line.strip()
        if self._script is not None:
            if text == "endscript":
                self._end_script()
            else:
                self._script.append(line.rstrip("\r"))
            return
        words = text.split()
        if words and words[0] in ("loadscript", "loadandrunscript"):
            if len(words) > 2 or (words[0] == "loadscript" and len(words) != 2):
                raise TspError(SYNTAX_ERROR, f"TSP Syntax error at line 1: `{words[0]}' "
                                             "takes one script name")
            self._script, self._script_run = [], words[0] == "loadandrunscript"
            self._script_name = words[1] if len(words) == 2 else None
            return
        if text.startswith("*"):
            self._common(text)
            return
        if text == "abort":
            return
        self.lua.run(line)

    def _end_script(self) -> None:
        source = "\n".join(self._script)
        name, run = self._script_name, self._script_run
        self._script, self._script_name = None, None
        if name is not None:
            script = Script(name, source, 1, self)
            self.lua.globals[name] = script
        if run:
            self.lua.run(source)

    def _common(self, text: str) -> None:
        """IEEE-488.2 common commands, which the 2600B accepts alongside TSP."""
        command = text.upper()
        if command == "*IDN?":
            self._print(self.idn)
        elif command == "*RST":
            self.reset()
        elif command == "*CLS":
            self.errors.clear()
        elif command == "*OPC?":
            self._print("1")
        elif command in ("*OPC", "*WAI", "*TRG"):
            pass
        elif command in ("*ESR?", "*STB?", "*ESE?", "*SRE?"):
            self._print("0")
        else:
            raise TspError(SYNTAX_ERROR, f"TSP Syntax error at line 1: unexpected symbol "
                                         f"near `{text[:1]}'")

    # -- output ------------------------------------------------------------------------------
    def _print(self, text: str) -> None:
        self._out.append(text.encode("ascii", "replace") + b"\n")

    def format_value(self, value) -> str:
        if isinstance(value, float):
            return f"{value:.{self.asciiprecision - 1}e}"
        return lua_tostring(value)

    def _print_numbers(self, values: list[float]) -> None:
        if self.data_format == 1:
            self._print(", ".join(self.format_value(v) for v in values))
            return
        code = "f" if self.data_format == 2 else "d"
        order = "<" if self.byteorder == 1 else ">"
        self._out.append(b"#0" + struct.pack(f"{order}{len(values)}{code}", *values) + b"\n")

    # -- the global environment ---------------------------------------------------------------
    def _globals(self) -> dict:
        env: dict = {f"smu{name}": smu.node for name, smu in self.channels.items()}
        env.update(
            print=Builtin("print", self._lua_print),
            printbuffer=Builtin("printbuffer", self._lua_printbuffer),
            printnumber=Builtin("printnumber", self._lua_printnumber),
            waitcomplete=Builtin("waitcomplete", lambda args: None),
            opc=Builtin("opc", lambda args: None),
            delay=Builtin("delay", self._lua_delay),
            reset=Builtin("reset", lambda args: self.reset()),
            tostring=Builtin("tostring", lambda args: lua_tostring(args[0] if args else None)),
            tonumber=Builtin("tonumber", lambda args: to_number(args[0] if args else None)),
            type=Builtin("type", lambda args: type_name(args[0] if args else None)),
            ipairs=Builtin("ipairs", _ipairs),
            pairs=Builtin("pairs", lambda args: [_NEXT, _table_arg(args, "pairs"), None]),
            next=_NEXT,
            error=Builtin("error", _error),
            collectgarbage=Builtin("collectgarbage", lambda args: None),
            gcinfo=Builtin("gcinfo", lambda args: [0.0, 0.0]),
            table=_table_library(),
            math=_math_library(),
            string=_string_library(),
        )
        env["errorqueue"] = self._errorqueue_node()
        env["format"] = self._format_node()
        env["localnode"] = self._localnode_node()
        env["status"] = self._status_node()
        env["display"] = self._display_node()
        env["beeper"] = Node("beeper").func("beep", lambda args: None).attr(
            "enable", lambda: 1.0, lambda v: None)
        timer = Node("timer")
        start = [self.bench.clock.now]
        timer.func("reset", lambda args: start.__setitem__(0, self.bench.clock.now))
        timer.child("measure", Node("timer.measure")).func(
            "t", lambda args: self.bench.clock.now - start[0])
        env["timer"] = timer
        return env

    def _lua_print(self, args) -> None:
        self._print("\t".join(self.format_value(v) for v in args))

    def _lua_printnumber(self, args) -> None:
        self._print_numbers([_number(v, "printnumber") for v in args])

    def _lua_printbuffer(self, args) -> None:
        if len(args) < 3:
            raise LuaError("bad argument to printbuffer (start, end and a buffer expected)")
        start = int(_number(args[0], "printbuffer"))
        end = int(_number(args[1], "printbuffer"))
        columns = []
        for arg in args[2:]:
            if isinstance(arg, BufferNode):
                columns.append(arg.values())
            elif isinstance(arg, LuaTable):
                columns.append([_number(v, "printbuffer") for v in arg.array()])
            else:
                raise LuaError(f"bad argument to printbuffer (reading buffer expected, got "
                               f"{type_name(arg)})")
        n = min(len(c) for c in columns)
        start, end = max(start, 1), min(end, n)
        self._print_numbers([c[i - 1] for i in range(start, end + 1) for c in columns])

    def _lua_delay(self, args) -> None:
        seconds = _bounded(args[0] if args else None, "delay", 0.0, 1e6)
        self.bench.clock.advance(seconds)

    def _errorqueue_node(self) -> Node:
        def next_entry(args):
            if not self.errors:
                return [0.0, "Queue Is Empty", 0.0, 0.0]
            code, message = self.errors.popleft()
            return [float(code), message, float(SEVERITY_RECOVERABLE), float(ERROR_NODE)]

        node = Node("errorqueue")
        node.attr("count", lambda: float(len(self.errors)))
        node.func("next", next_entry)
        node.func("clear", lambda args: self.errors.clear())
        return node

    def _format_node(self) -> Node:
        node = Node("format").const(ASCII=1.0, SREAL=2.0, REAL32=2.0, REAL=3.0, REAL64=3.0,
                                    DREAL=3.0, NORMAL=0.0, BIGENDIAN=0.0, NETWORK=0.0,
                                    SWAPPED=1.0, LITTLEENDIAN=1.0)
        node.attr("asciiprecision", lambda: float(self.asciiprecision),
                  lambda v: setattr(self, "asciiprecision",
                                    _whole(v, "format.asciiprecision", 1, 16)))
        node.attr("data", lambda: float(self.data_format),
                  lambda v: setattr(self, "data_format", _choice(v, "format.data", (1, 2, 3))))
        node.attr("byteorder", lambda: float(self.byteorder),
                  lambda v: setattr(self, "byteorder", _choice(v, "format.byteorder", (0, 1))))
        return node

    def _localnode_node(self) -> Node:
        node = Node("localnode")
        node.attr("model", lambda: self.model.name)
        node.attr("serialno", lambda: "04512345")
        node.attr("revision", lambda: "4.0.5")
        node.attr("description", lambda: self.description,
                  lambda v: setattr(self, "description", lua_tostring(v)))
        node.attr("linefreq", lambda: self.linefreq,
                  lambda v: setattr(self, "linefreq",
                                    float(_choice(v, "localnode.linefreq", (50, 60)))))
        node.attr("autolinefreq", lambda: True, lambda v: None)
        for name in ("prompts", "prompts4882", "showerrors"):
            node.attr(name, lambda n=name: float(getattr(self, n)),
                      lambda v, n=name: setattr(self, n, _choice(v, f"localnode.{n}", (0, 1))))
        node.func("reset", lambda args: self.reset())
        return node

    def _status_node(self) -> Node:
        status = Node("status")
        status.attr("condition", lambda: float(4 if self.errors else 0))
        status.func("reset", lambda args: None)
        measurement = status.child("measurement", Node("status.measurement"))
        instrument = measurement.child("instrument", Node("status.measurement.instrument"))
        for name, smu in self.channels.items():
            path = f"status.measurement.instrument.smu{name}"
            node = instrument.child(f"smu{name}", Node(path))
            node.attr("condition", lambda smu=smu: float(
                CONDITION_CURRENT_LIMIT if smu.output == ON and smu.tripped else 0))
            node.attr("event", lambda: 0.0)
        return status

    def _display_node(self) -> Node:
        display = Node("display").const(SMUA=0.0, SMUB=1.0, SMUA_SMUB=2.0, USER=3.0)
        for name in ("clear", "settext", "sendkey", "setcursor"):
            display.func(name, lambda args: None)
        display.attr("screen", lambda: 2.0, lambda v: None)
        return display


# -- the Lua standard functions TSP scripts use --------------------------------------------------
def _table_arg(args, where: str) -> LuaTable:
    if not args or not isinstance(args[0], LuaTable):
        raise LuaError(f"bad argument #1 to `{where}' (table expected, got "
                       f"{type_name(args[0] if args else None)})")
    return args[0]


def _ipairs(args):
    table = _table_arg(args, "ipairs")

    def step(step_args):
        i = step_args[1] + 1.0
        value = table.get(i)
        return [None] if value is None else [i, value]

    return [Builtin("ipairs iterator", step), table, 0.0]


def _next(args):
    table = _table_arg(args, "next")
    key, value = table.next_key(args[1] if len(args) > 1 else None)
    return [key, value] if key is not None else [None]


_NEXT = Builtin("next", _next)


def _error(args):
    raise LuaError(lua_tostring(args[0]) if args else "nil")


def _table_library() -> LuaTable:
    def insert(args):
        table = _table_arg(args, "insert")
        if len(args) >= 3:
            pos = int(_number(args[1], "table.insert"))
            items = table.array()
            items.insert(pos - 1, args[2])
            for i, v in enumerate(items, start=1):
                table.set(float(i), v)
        else:
            table.set(float(table.length() + 1), args[1] if len(args) > 1 else None)

    lib = LuaTable()
    lib.set("insert", Builtin("table.insert", insert))
    lib.set("getn", Builtin("table.getn", lambda a: float(_table_arg(a, "getn").length())))
    return lib


def _math_library() -> LuaTable:
    lib = LuaTable()

    def unary(name, fn):
        lib.set(name, Builtin(f"math.{name}", lambda a: float(fn(_number(
            a[0] if a else None, f"math.{name}")))))

    for name, fn in (("abs", abs), ("floor", math.floor), ("ceil", math.ceil),
                     ("sqrt", lambda x: math.sqrt(x) if x >= 0 else math.nan),
                     ("log10", lambda x: math.log10(x) if x > 0 else math.nan),
                     ("exp", math.exp)):
        unary(name, fn)
    lib.set("min", Builtin("math.min", lambda a: min(_number(x, "math.min") for x in a)))
    lib.set("max", Builtin("math.max", lambda a: max(_number(x, "math.max") for x in a)))
    lib.set("pi", math.pi)
    lib.set("huge", math.inf)
    return lib


def _string_library() -> LuaTable:
    def fmt(args):
        if not args or not isinstance(args[0], str):
            raise LuaError("bad argument #1 to `format' (string expected)")
        pattern, values = args[0], list(args[1:])
        out, i = [], 0
        for m in re.finditer(r"%([-+ #0]*\d*(?:\.\d+)?)([diouxXeEfgGqs%c])", pattern):
            out.append(pattern[i:m.start()])
            i = m.end()
            flags, conv = m.groups()
            if conv == "%":
                out.append("%")
                continue
            if not values:
                raise LuaError("bad argument to `format' (no value)")
            value = values.pop(0)
            if conv in "diouxXc":
                n = int(_number(value, "string.format"))
                out.append(chr(n % 256) if conv == "c"
                           else f"%{flags}{'d' if conv in 'iu' else conv}" % n)
            elif conv in "eEfgG":
                out.append(f"%{flags}{conv}" % _number(value, "string.format"))
            else:
                out.append(f"%{flags}s" % lua_tostring(value))
        out.append(pattern[i:])
        return "".join(out)

    lib = LuaTable()
    lib.set("format", Builtin("string.format", fmt))
    lib.set("len", Builtin("string.len", lambda a: float(len(lua_tostring(a[0] if a else "")))))
    lib.set("upper", Builtin("string.upper", lambda a: lua_tostring(a[0] if a else "").upper()))
    lib.set("lower", Builtin("string.lower", lambda a: lua_tostring(a[0] if a else "").lower()))
    return lib
