"""Instrument drivers, each implementing one role for one instrument model.

Bench configs name them through :mod:`instruments.registry`.
"""

from instruments.drivers.base import Driver
from instruments.drivers.clocks import VirtualClock, WallClock
from instruments.drivers.keithley707b import Keithley707B
from instruments.drivers.keithley2450 import Keithley2450
from instruments.drivers.reference_array import ArrayShapeError, ReferenceArrayController
from instruments.drivers.sentio import SentioProber
from instruments.drivers.smu_switch_array import SmuSwitchArray
from instruments.drivers.thermostream import ThermoStream

__all__ = [
    "ArrayShapeError", "Driver", "Keithley2450", "Keithley707B", "ReferenceArrayController",
    "SentioProber", "SmuSwitchArray", "ThermoStream", "VirtualClock", "WallClock",
]
