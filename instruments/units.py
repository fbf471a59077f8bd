"""Quantities with their unit as text (``"100 us"``, ``"0.2 V"``), as datasheets write them.

The host reads units the same way the simulator's chip files do, but keeps its
own small parser: ``instruments`` imports nothing from ``sim_backend``. Values
are rounded to 15 significant digits so that ``"100 us"`` is exactly the
float ``1e-4`` a limit check compares against (not 9.999999999999999e-05).
"""

from __future__ import annotations

import re

SCALE = {"p": 1e-12, "n": 1e-9, "u": 1e-6, "µ": 1e-6, "μ": 1e-6, "m": 1e-3, "": 1.0,
         "k": 1e3, "M": 1e6}
# unit symbol -> (dimension, may take a prefix)
UNITS = {"S": ("conductance", True), "V": ("voltage", True), "A": ("current", True),
         "s": ("time", True), "ohm": ("resistance", True), "degC": ("temperature", False),
         "°C": ("temperature", False)}
EXAMPLE = {"conductance": "uS", "voltage": "V", "current": "uA", "time": "us",
           "resistance": "ohm", "temperature": "degC"}
_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(\S+)\s*$")


class QuantityError(ValueError):
    """A quantity has no unit, an unknown unit, or the wrong dimension."""


def _unit(symbol: str) -> tuple[float, str] | None:
    if symbol in UNITS:
        return 1.0, UNITS[symbol][0]
    head, base = symbol[:1], symbol[1:]
    if head in SCALE and base in UNITS and UNITS[base][1]:
        return SCALE[head], UNITS[base][0]
    return None


def quantity(value: object, dimension: str) -> float:
    """SI value of ``"40 uS"`` (temperatures stay in degrees Celsius)."""
    example = EXAMPLE.get(dimension, "?")
    if isinstance(value, bool) or not isinstance(value, str):
        raise QuantityError(f"needs a unit, e.g. \"{value} {example}\" (got {value!r})")
    match = _QUANTITY.match(value)
    found = _unit(match.group(2)) if match else None
    if found is None:
        raise QuantityError(f"expected a number and a {dimension} unit such as "
                            f"\"1 {example}\", got {value!r}")
    scale, got = found
    if got != dimension:
        raise QuantityError(f"expected a {dimension} (e.g. \"1 {example}\"), got {value!r}, "
                            f"which is a {got}")
    return float(f"{float(match.group(1)) * scale:.15g}")
