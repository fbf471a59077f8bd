"""The one base every driver derives from: identity, transactions, check, configuration.

One constructor shape for the whole family, so a bench is wired from data:
``Driver(session, guard, datasheet, parts=..., **options)``. The constructor
does no I/O (a bench can be built, and its config checked, before any byte is
sent): it checks its options (:class:`DriverOptionError`, naming the option) and
the first command goes out when a role method is called. Every driver gets the
bench's :class:`SafetyGuard`; those that can stress a device (``stresses_device``)
ask it before anything that sources a voltage, a current, a pulse or heat.

The checks below are shared by the drivers: options (``option_*``) raise
:class:`DriverOptionError`; method arguments (``whole``, ``number``,
``flat_cells``, ``switch_state``) raise :class:`ArgumentError`, before any I/O.
"""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar

import numpy as np

from instruments.datasheet import ChipDatasheet
from instruments.errors import (
    ArgumentError,
    ArrayShapeError,
    DriverOptionError,
    SafetyError,
    WrongInstrumentError,
)
from instruments.safety import SafetyGuard
from instruments.session import VisaSession


class Driver:
    """One instrument model serving one role (or several: ``roles``)."""

    role: ClassVar[str] = ""
    roles: ClassVar[tuple[str, ...]] = ()  # every role one instance may serve; () = (role,)
    session_options: ClassVar[dict[str, Any]] = {}  # VisaSession defaults (error query, pacing)
    uses_session: ClassVar[bool] = True  # False: needs no instrument (the host's wall clock)
    needs: ClassVar[tuple[str, ...]] = ()  # roles a composite driver is built from
    stresses_device: ClassVar[bool] = False  # sources voltage, current, pulses or heat
    idn_pattern: ClassVar[str | None] = None  # regex a genuine *IDN? reply matches
    _identity_checked: bool = False

    def __init__(self, session: VisaSession | None, guard: SafetyGuard,
                 datasheet: ChipDatasheet | None = None, *,
                 parts: dict[str, Driver] | None = None) -> None:
        if not isinstance(guard, SafetyGuard):
            raise DriverOptionError("guard", f"{type(self).__name__} needs the bench's "
                                             f"SafetyGuard, got {guard!r}")
        if self.uses_session and session is None:
            raise DriverOptionError("session", f"{type(self).__name__} talks to an "
                                               "instrument: give it a VisaSession")
        if datasheet is not None and not isinstance(datasheet, ChipDatasheet):
            raise DriverOptionError("datasheet", f"expected a ChipDatasheet or None, got "
                                                 f"{datasheet!r}")
        if parts is not None and not isinstance(parts, dict):
            raise DriverOptionError("parts", f"expected a dict of role -> driver, got {parts!r}")
        self.session = session
        self.guard = guard
        self.datasheet = datasheet
        self.parts = dict(parts or {})

    def cell_settings(self, read_voltage, forming_voltage, forming_width
                      ) -> tuple[float | None, float | None, float | None]:
        """Read voltage and forming settings of an array driver: each option checked
        against the chip's limits, the datasheet's values where none is given."""
        guard, sheet = self.guard, self.datasheet
        if read_voltage is not None:
            read_voltage = option_guarded("read_voltage", read_voltage, guard.read_voltage)
        if forming_voltage is not None:
            forming_voltage = option_guarded("forming_voltage", forming_voltage,
                                             guard.forming_voltage)
        if forming_width is not None:
            forming_width = option_guarded("forming_width", forming_width,
                                           guard.forming_width)
        if sheet is not None:
            if read_voltage is None:
                read_voltage = sheet.window.read_voltage
            if sheet.forming.required:
                forming_voltage = forming_voltage or sheet.forming.voltage
                forming_width = forming_width or sheet.forming.width
        return read_voltage, forming_voltage, forming_width

    @classmethod
    def serves(cls) -> tuple[str, ...]:
        return cls.roles or (cls.role,)

    @property
    def limits(self):
        """The SafetyLimits this driver enforces, so protocols can plan within them."""
        return self.guard.limits

    @property
    def transactions(self) -> int:
        """Bus transactions so far (for accounting)."""
        own = self.session.transactions if self.session is not None else 0
        return own + sum(p.transactions for p in self.parts.values())

    def identity(self) -> str:
        return self.session.query("*IDN?").strip()

    def verify_identity(self) -> None:
        """Check once, before the first command that configures or sources anything,
        that the instrument is the model this driver drives (``idn_pattern``, a regular
        expression searched in the ``*IDN?`` reply); raise WrongInstrumentError if not."""
        if self.idn_pattern is None or self._identity_checked:
            return
        reply = self.identity()
        if not re.search(self.idn_pattern, reply):
            raise WrongInstrumentError(
                f"{self.session.name}: {self.session.resource} answers *IDN? with {reply!r}, "
                f"not a {type(self).__name__}; check the bench config's resource string")
        self._identity_checked = True
        self.identity_reply = reply

    def settings(self) -> dict[str, Any]:
        """The driver's own settings worth recording (subclasses add theirs)."""
        return {}

    def configuration(self) -> dict[str, Any]:
        """JSON-ready provenance: driver, resource, session and driver settings."""
        out: dict[str, Any] = {"driver": type(self).__name__}
        if self.session is not None:
            out.update(resource=self.session.resource, timeout_s=self.session.timeout_s,
                       retries=self.session.retries)
        out.update(self.settings())
        return out

    def check(self) -> None:
        """Raise if the instrument reports a problem (drains its error queue)."""
        if self.session is not None:
            self.session.check_errors()


# -- driver options (constructor keywords, bench config keys) --------------------------
def _is_number(v: Any) -> bool:
    return (not isinstance(v, (bool, np.bool_)) and isinstance(v, (int, float, np.number))
            and math.isfinite(float(v)))


def _is_whole(v: Any) -> bool:
    return not isinstance(v, (bool, np.bool_)) and isinstance(v, (int, np.integer))


def option_whole(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    """A whole-number option in ``lo..hi``."""
    if not _is_whole(value) or value < lo or (hi is not None and value > hi):
        span = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise DriverOptionError(name, f"expected a whole number {span}, got {value!r}")
    return int(value)


def option_number(name: str, value: Any, lo: float, hi: float, unit: str = "") -> float:
    """A finite number option in ``[lo, hi]``."""
    if not _is_number(value) or not lo <= value <= hi:
        raise DriverOptionError(name, f"expected a number in [{lo:g}, {hi:g}]"
                                      f"{' ' + unit if unit else ''}, got {value!r}")
    return float(value)


def option_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise DriverOptionError(name, f"expected true or false, got {value!r}")
    return bool(value)


def option_guarded(name: str, value: Any, check) -> float:
    """An option the safety guard bounds (``check`` is a guard method, e.g.
    ``guard.read_voltage``): refused as a :class:`DriverOptionError` naming it."""
    if not _is_number(value):
        raise DriverOptionError(name, f"expected a number, got {value!r}")
    try:
        return float(check(value))
    except SafetyError as exc:
        raise DriverOptionError(name, f"{exc} (the chip's limits)") from None


# -- method arguments --------------------------------------------------------------
def whole(value: Any, what: str, lo: int | None = None, hi: int | None = None) -> int:
    """A whole number (numpy integers and integral floats too) in ``lo..hi``."""
    ok = _is_whole(value) or (_is_number(value) and float(value).is_integer())
    if not ok or (lo is not None and value < lo) or (hi is not None and value > hi):
        span = (f" in {lo}..{hi}" if lo is not None and hi is not None
                else f" >= {lo}" if lo is not None else "")
        raise ArgumentError(f"{what} must be a whole number{span}, got {value!r}")
    return int(value)


def number(value: Any, what: str, lo: float, hi: float, unit: str = "") -> float:
    """A finite number in ``[lo, hi]``."""
    if not _is_number(value) or not lo <= value <= hi:
        raise ArgumentError(f"{what} must be a number in [{lo:g}, {hi:g}]"
                            f"{' ' + unit if unit else ''}, got {value!r}")
    return float(value)


def switch_state(on: Any, what: str = "output") -> bool:
    """On/off: a bool (numpy bool, or 0/1 as numeric booleans)."""
    if isinstance(on, (bool, np.bool_)):
        return bool(on)
    if _is_whole(on) and on in (0, 1):
        return bool(on)
    raise ArgumentError(f"{what} must be True or False, got {on!r}")


def flat_cells(cells: Any, shape: tuple[int, int]) -> np.ndarray:
    """Flat row-major cell indices of an array of ``shape``: 1-D, whole, in range, unique."""
    if isinstance(cells, (str, bytes)):
        raise ArrayShapeError(f"cells must be a 1-D array of flat cell indices, got {cells!r}")
    try:
        idx = np.asarray(cells)
    except (TypeError, ValueError):
        raise ArrayShapeError("cells must be a 1-D array of flat cell indices") from None
    rows, cols = shape
    if idx.ndim != 1 or (idx.size and (not np.issubdtype(idx.dtype, np.integer)
                                       or idx.dtype == np.bool_)):
        raise ArrayShapeError(f"cells must be a 1-D array of flat cell indices, got "
                              f"{idx.dtype} {idx.shape}")
    idx = idx.astype(np.int64, copy=False)
    if idx.size and (idx.min() < 0 or idx.max() >= rows * cols):
        raise ArrayShapeError(f"cell indices must lie in 0..{rows * cols - 1}")
    if not increasing(idx) and np.unique(idx).size != idx.size:
        raise ArrayShapeError("cell indices must not repeat")
    return idx


def increasing(idx: np.ndarray) -> bool:
    """Whether ``idx`` is strictly increasing (so unique and in row-major order): the
    common case, checked with one bool per cell instead of a sorted copy."""
    return idx.size < 2 or bool(np.all(idx[1:] > idx[:-1]))


def bool_mask(mask: Any, shape: tuple[int, int]) -> np.ndarray:
    """A boolean mask of ``shape``."""
    try:
        m = np.asarray(mask)
    except (TypeError, ValueError):
        m = np.asarray(None)
    if m.shape != tuple(shape) or m.dtype != bool:
        raise ArrayShapeError(f"mask must be a boolean array of shape {tuple(shape)}, "
                              f"got {m.dtype} {m.shape}")
    return m


def float_array(values: Any, what: str) -> np.ndarray:
    """Numbers as a float array (finiteness is the guard's to check)."""
    if isinstance(values, (str, bytes)):
        raise ArgumentError(f"{what} must be numbers, got {values!r}")
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ArgumentError(f"{what} must be numbers") from None
