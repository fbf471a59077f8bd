"""The chip datasheet: all that the host side knows of a chip.

A lab can write it from what it knows: geometry and technology, the usable
conductance window and read voltage, the safe operating limits, the forming
settings, and optionally the nominal programming behaviour (thresholds, whether
RESET is abrupt, whether reads are 1/f-noisy, whether states relax or drift).
It holds no device physics: no relaxation law, no device-to-device spread.
The safety guard, the drivers, the protocols' defaults and the CLI read only
this. Format: ``docs/datasheet.md``; bundled ones: ``data/datasheets/``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from instruments.errors import UserError
from instruments.safety import SafetyLimits
from instruments.tomlfile import read_toml
from instruments.units import QuantityError, quantity

TECHNOLOGIES = ("rram", "pcm")
# No chip of either technology is specified beyond these; a file that asks for more is a
# typo (a unit or a digit), and would otherwise arm the guard with a harmful limit.
CEILINGS = {
    "max_read_voltage": (2.0, "V"), "max_program_voltage": (20.0, "V"),
    "max_pulse_width": (1.0, "s"), "max_forming_voltage": (20.0, "V"),
    "max_forming_width": (1.0, "s"), "max_compliance": (0.1, "A"),
    "min_temperature": (-200.0, "degC"), "max_temperature": (400.0, "degC"),
}


class DatasheetError(UserError, ValueError):
    """A datasheet is malformed; the message names the field."""


@dataclass(frozen=True)
class ChipInfo:
    name: str
    technology: str  # "rram" or "pcm"
    rows: int  # word lines
    cols: int  # bit lines
    description: str = ""


@dataclass(frozen=True)
class Window:
    """The usable conductance window targets are chosen from. Siemens, volts."""

    g_min: float
    g_max: float
    read_voltage: float


@dataclass(frozen=True)
class Forming:
    """Forming settings. Volts, seconds; ``pristine_below`` in siemens (None: g_min / 10)."""

    required: bool
    voltage: float = 0.0
    width: float = 0.0
    pristine_below: float | None = None


@dataclass(frozen=True)
class Programming:
    """Nominal programming behaviour; None = the technology's default (protocols/profiles.py).

    Volts and seconds. ``reset``: "gradual" or "abrupt" (melt-quench); ``read_noise``:
    "white" or "1/f"; ``retention``: "relaxation", "drift" or "stable"; ``drift_onset``:
    seconds after programming at which drift sets in.
    """

    set_threshold: float | None = None
    reset_threshold: float | None = None
    set_reference: float | None = None
    reset_reference: float | None = None
    amplitude_exponent: float | None = None
    reference_width: float | None = None
    width_exponent: float | None = None
    reset: str | None = None
    read_noise: str | None = None
    retention: str | None = None
    drift_onset: float | None = None


@dataclass(frozen=True)
class ChipDatasheet:
    chip: ChipInfo
    window: Window
    limits: SafetyLimits
    forming: Forming
    programming: Programming = Programming()
    source: str = "<dict>"

    @property
    def name(self) -> str:
        return self.chip.name

    @property
    def technology(self) -> str:
        return self.chip.technology

    @property
    def shape(self) -> tuple[int, int]:
        return (self.chip.rows, self.chip.cols)

    @property
    def pristine_below(self) -> float:
        """Conductance (S) below which a cell reads as not yet formed."""
        p = self.forming.pristine_below
        return self.window.g_min / 10 if p is None else p

    def with_geometry(self, rows: int | None = None, cols: int | None = None) -> ChipDatasheet:
        """The same chip on another array size (a simulated bench's override)."""
        for label, value in (("rows", rows), ("cols", cols)):
            if value is not None:
                _whole(value, f"chip.{label}")
        chip = dataclasses.replace(self.chip, rows=rows or self.chip.rows,
                                   cols=cols or self.chip.cols)
        return dataclasses.replace(self, chip=chip)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, SI units (for run records)."""
        return dataclasses.asdict(self)


# -- the file format: section -> field -> (kind, required) ------------------------------
_FIELDS: dict[str, dict[str, tuple[str, bool]]] = {
    "chip": {"name": ("str", True), "technology": ("technology", True), "rows": ("int", True),
             "cols": ("int", True), "description": ("str", False)},
    "window": {"g_min": ("conductance", True), "g_max": ("conductance", True),
               "read_voltage": ("voltage", True)},
    "limits": {name: ("temperature" if "temperature" in name else
                      "current" if "compliance" in name else
                      "time" if "width" in name else "voltage", True)
               for name in CEILINGS},
    "forming": {"required": ("bool", True), "voltage": ("voltage", False),
                "width": ("time", False), "pristine_below": ("conductance", False)},
    "programming": {
        "set_threshold": ("voltage", False), "reset_threshold": ("voltage", False),
        "set_reference": ("voltage", False), "reset_reference": ("voltage", False),
        "amplitude_exponent": ("number", False), "reference_width": ("time", False),
        "width_exponent": ("number", False), "reset": ("choice:gradual|abrupt", False),
        "read_noise": ("choice:white|1/f", False),
        "retention": ("choice:relaxation|drift|stable", False),
        "drift_onset": ("time", False)},
}
_OPTIONAL_SECTIONS = ("programming", "sources")


def _whole(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 8192:
        raise DatasheetError(f"{where}: expected a whole number from 1 to 8192, got {value!r}")
    return value


def _value(where: str, kind: str, raw: Any) -> Any:
    if kind == "str":
        if not isinstance(raw, str):
            raise DatasheetError(f"{where}: expected text, got {raw!r}")
        return raw
    if kind == "technology":
        kind = "choice:" + "|".join(TECHNOLOGIES)
    if kind.startswith("choice:"):
        options = kind[7:].split("|")
        if raw not in options:
            raise DatasheetError(f"{where}: expected one of {', '.join(options)}, got {raw!r}")
        return raw
    if kind == "bool":
        if not isinstance(raw, bool):
            raise DatasheetError(f"{where}: expected true or false, got {raw!r}")
        return raw
    if kind == "int":
        return _whole(raw, where)
    if kind == "number":
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw) \
                or raw < 0:
            raise DatasheetError(f"{where}: expected a plain number >= 0, got {raw!r}")
        return float(raw)
    try:
        value = quantity(raw, kind)
    except QuantityError as exc:
        raise DatasheetError(f"{where}: {exc}") from None
    if not math.isfinite(value):
        raise DatasheetError(f"{where}: must be finite, got {raw!r}")
    if kind != "temperature" and value < 0:
        raise DatasheetError(f"{where}: must not be negative, got {raw!r}")
    return value


def _section(doc: dict, name: str, origin: str) -> dict[str, Any]:
    table = doc.get(name, {} if name in _OPTIONAL_SECTIONS else None)
    if table is None:
        raise DatasheetError(f"[{name}]: missing section in {origin}")
    if not isinstance(table, dict):
        raise DatasheetError(f"[{name}]: expected a table in {origin}")
    fields = _FIELDS[name]
    for key in table:
        if key not in fields:
            raise DatasheetError(f"{name}.{key}: unknown field in {origin}; known: "
                                 f"{', '.join(fields)}")
    out = {}
    for key, (kind, required) in fields.items():
        if key in table:
            try:
                out[key] = _value(f"{name}.{key}", kind, table[key])
            except DatasheetError as exc:
                raise DatasheetError(f"{exc} ({origin})") from None
        elif required:
            raise DatasheetError(f"{name}.{key}: missing in {origin}")
    return out


def datasheet_from_dict(doc: dict, origin: str = "<dict>") -> ChipDatasheet:
    """Build and check a datasheet from a parsed TOML document."""
    if not isinstance(doc, dict):
        raise DatasheetError(f"{origin}: expected a TOML document")
    known = (*_FIELDS, "sources")
    for key in doc:
        if key not in known:
            hint = (" (a simulator chip spec? give the host its datasheet, e.g. "
                    "data/datasheets/rram.toml)") if key in ("bounds", "response",
                                                             "relaxation", "drift") else ""
            raise DatasheetError(f"[{key}]: unknown section in {origin}; a datasheet has "
                                 f"{', '.join(known)}{hint}")
    sources = doc.get("sources", {})
    if not isinstance(sources, dict) or not all(isinstance(v, str) for v in sources.values()):
        raise DatasheetError(f"[sources]: expected a table of field = citation in {origin}")
    sheet = ChipDatasheet(
        chip=ChipInfo(**_section(doc, "chip", origin)),
        window=Window(**_section(doc, "window", origin)),
        limits=SafetyLimits(**_section(doc, "limits", origin)),
        forming=Forming(**_section(doc, "forming", origin)),
        programming=Programming(**_section(doc, "programming", origin)),
        source=origin)
    _check(sheet, origin)
    return sheet


def _check(sheet: ChipDatasheet, origin: str) -> None:
    def need(ok: bool, where: str, message: str) -> None:
        if not ok:
            raise DatasheetError(f"{where}: {message} ({origin})")

    w, lim, f = sheet.window, sheet.limits, sheet.forming
    for name, (ceiling, unit) in CEILINGS.items():
        value = getattr(lim, name)
        if name == "min_temperature":
            need(value >= ceiling, f"limits.{name}", f"{value:g} {unit} is below the "
                 f"{ceiling:g} {unit} any probe station reaches; check the value and its unit")
        else:
            need(value <= ceiling, f"limits.{name}", f"{value:g} {unit} exceeds the "
                 f"{ceiling:g} {unit} no {sheet.technology} chip is rated for; check the "
                 "value and its unit")
    for name in ("max_read_voltage", "max_program_voltage", "max_pulse_width",
                 "max_compliance"):
        need(getattr(lim, name) > 0, f"limits.{name}", "must be positive")
    need(lim.min_temperature < lim.max_temperature, "limits.min_temperature",
         "must be below limits.max_temperature")
    need(w.g_min < w.g_max, "window.g_min", "must be below window.g_max")
    need(0 < w.read_voltage <= lim.max_read_voltage, "window.read_voltage",
         "must be positive and within limits.max_read_voltage")
    if f.required:
        need(f.voltage > 0 and f.width > 0, "forming", "a chip that needs forming needs its "
             "voltage and width")
        need(f.voltage <= lim.max_forming_voltage, "forming.voltage",
             "exceeds limits.max_forming_voltage")
        need(f.width <= lim.max_forming_width, "forming.width",
             "exceeds limits.max_forming_width")
    p = sheet.programming
    for pol in ("set", "reset"):
        th, ref = getattr(p, f"{pol}_threshold"), getattr(p, f"{pol}_reference")
        if th is not None:
            need(0 < th <= lim.max_program_voltage, f"programming.{pol}_threshold",
                 "must be positive and within limits.max_program_voltage")
        if th is not None and ref is not None:
            need(ref > th, f"programming.{pol}_reference", f"must exceed {pol}_threshold")


def data_root() -> Path:
    """The bundled data (``data/`` of the repository, installed as ``aimc_data``)."""
    try:
        root = Path(str(resources.files("aimc_data")))
        if root.is_dir():
            return root
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parent.parent / "data"


def bundled_datasheet(name: str) -> Path | None:
    """The bundled datasheet of a preset (``rram``, ``pcm``), if there is one."""
    path = data_root() / "datasheets" / f"{name}.toml"
    return path if path.is_file() else None


def load_datasheet(name_or_path: str | Path) -> ChipDatasheet:
    """A bundled datasheet by name, or a datasheet TOML file."""
    text = str(name_or_path)
    path = Path(text)
    if not text.endswith(".toml") and "/" not in text and "\\" not in text:
        found = bundled_datasheet(text)
        if found is None:
            raise DatasheetError(f"unknown chip {text!r}: give a bundled datasheet (rram, pcm) "
                                 "or a datasheet .toml path")
        path = found
    doc = read_toml(path, DatasheetError, "datasheet")
    return datasheet_from_dict(doc, origin=str(path))
