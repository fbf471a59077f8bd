"""Quantities with units, as written in chip and wafer TOML files.

Dimensional values in our TOML files carry their unit as text (``"40 uS"``,
``"0.2 V"``, ``"1 us"``) so that a file can be read without a manual and a
wrong unit is caught at load time instead of silently scaling a device by 10^6.
SI case rules apply: ``S`` is siemens, ``s`` is seconds.
"""

from __future__ import annotations

import re

PREFIXES = {
    "p": 1e-12, "n": 1e-9, "u": 1e-6, "µ": 1e-6, "μ": 1e-6, "m": 1e-3,
    "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9,
}
# Base unit symbol -> dimension name used in error messages.
DIMENSIONS = {
    "S": "conductance",
    "V": "voltage",
    "A": "current",
    "s": "time",
    "ohm": "resistance",
    "Ω": "resistance",
    "eV": "energy",
    "degC": "temperature",
    "°C": "temperature",
    "C": "temperature",
    "mm": "length",
    "K": "temperature interval",
}
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PATTERN = re.compile(rf"^\s*({_NUMBER})\s*([^\s\d].*?)?\s*$")


class UnitError(ValueError):
    """A quantity string could not be read, or has the wrong dimension."""


def _split_unit(text: str) -> tuple[float, str]:
    """Return (scale, base) for a unit text such as ``uS`` or ``mm``."""
    if text in DIMENSIONS:  # exact base symbols first: "mm", "eV", "degC", "s"
        return 1.0, text
    for prefix, scale in PREFIXES.items():
        if prefix and text.startswith(prefix) and text[len(prefix):] in DIMENSIONS:
            base = text[len(prefix):]
            if DIMENSIONS[base] in ("temperature", "length", "temperature interval"):
                break  # no prefixed degrees or kilo-millimetres
            return scale, base
    raise UnitError(f"unknown unit {text!r}")


def parse_quantity(value: object, dimension: str) -> float:
    """Parse ``"40 uS"`` into SI (4e-05) and check its dimension.

    Temperatures stay in degrees Celsius; lengths stay in millimetres.
    A bare number is refused for a dimensional quantity: the unit is the point.
    The result is rounded to 15 significant digits, so that scaling by a prefix
    does not leave binary noise: ``"100 us"`` is exactly ``1e-4``, and a pulse
    written as 100 us passes a limit written the same way.
    """
    if isinstance(value, bool) or not isinstance(value, str):
        raise UnitError(
            f"needs a unit, e.g. '{value} {_example_unit(dimension)}' (got {value!r})"
        )
    match = _PATTERN.match(value)
    if not match or match.group(2) is None:
        raise UnitError(
            f"expected a number and a {dimension} unit such as "
            f"'{_example_unit(dimension)}', got {value!r}"
        )
    scale, base = _split_unit(match.group(2))
    if DIMENSIONS[base] != dimension:
        raise UnitError(
            f"expected a {dimension} (e.g. '{_example_unit(dimension)}'), "
            f"got {value!r}, which is a {DIMENSIONS[base]}"
        )
    return float(f"{float(match.group(1)) * scale:.15g}")


def _example_unit(dimension: str) -> str:
    return {
        "conductance": "uS", "voltage": "V", "current": "uA", "time": "us",
        "resistance": "ohm", "energy": "eV", "temperature": "degC",
        "length": "mm", "temperature interval": "K",
    }.get(dimension, "?")
