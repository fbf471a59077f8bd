"""Drivers by name, as bench configs name them (``[roles.array] driver = "reference-array"``).

The built-in drivers are listed here; a lab adds its own from its own package
through the entry point group ``aimc_calib.drivers`` (name = "module:Class"),
so a new instrument needs no edit of this project. Classes are imported on
first use, so a broken plugin only matters to the bench that names it.
"""

from __future__ import annotations

import importlib
import importlib.metadata

from instruments.errors import UserError

ENTRY_POINT_GROUP = "aimc_calib.drivers"
BUILTIN = {
    "reference-array": "instruments.drivers.reference_array:ReferenceArrayController",
    "keithley2450": "instruments.drivers.keithley2450:Keithley2450",
    "keithley707b": "instruments.drivers.keithley707b:Keithley707B",
    "smu-switch-array": "instruments.drivers.smu_switch_array:SmuSwitchArray",
    "sentio": "instruments.drivers.sentio:SentioProber",
    "thermostream": "instruments.drivers.thermostream:ThermoStream",
    "virtual-clock": "instruments.drivers.clocks:VirtualClock",
    "wall-clock": "instruments.drivers.clocks:WallClock",
    "keithley2600b": "instruments.drivers.keithley2600b:Keithley2600B",
    "keysight-b2900": "instruments.drivers.keysight_b2900:KeysightB2900",
    "velox": "instruments.drivers.velox:VeloxProber",
}
_registered: dict[str, type] = {}


class UnknownDriverError(UserError, LookupError):
    """No driver is registered under a name a bench config uses."""


def register(name: str, cls: type) -> None:
    """Register a driver class in this process (plugins use the entry point instead)."""
    _registered[name] = cls


def _plugins() -> dict[str, object]:
    # looked up at call time, so a test can monkeypatch importlib.metadata.entry_points
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def driver_names() -> list[str]:
    return sorted({*BUILTIN, *_registered, *_plugins()})


def driver_class(name: str) -> type:
    """The driver class registered under ``name``."""
    if name in _registered:
        return _registered[name]
    if name in BUILTIN:
        module, _, attr = BUILTIN[name].partition(":")
        return getattr(importlib.import_module(module), attr)
    plugin = _plugins().get(name)
    if plugin is None:
        raise UnknownDriverError(f"unknown driver {name!r}; known: {', '.join(driver_names())}")
    try:
        return plugin.load()
    except Exception as exc:  # noqa: BLE001 - a broken plugin must name itself
        raise UnknownDriverError(f"driver {name!r} ({plugin.value}) failed to load: "
                                 f"{exc}") from None
