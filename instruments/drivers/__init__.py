"""Instrument drivers, each implementing one role for one instrument model."""

from instruments.drivers.clocks import VirtualClock, WallClock
from instruments.drivers.keithley707b import Keithley707B
from instruments.drivers.keithley2450 import Keithley2450
from instruments.drivers.reference_array import ArrayShapeError, ReferenceArrayController
from instruments.drivers.sentio import SentioProber
from instruments.drivers.smu_switch_array import SmuSwitchArray
from instruments.drivers.thermostream import ThermoStream

# Names used in bench config files ([roles.X] driver = "...").
DRIVERS = {
    "reference-array": ReferenceArrayController,
    "keithley2450": Keithley2450,
    "keithley707b": Keithley707B,
    "smu-switch-array": SmuSwitchArray,
    "sentio": SentioProber,
    "thermostream": ThermoStream,
    "virtual-clock": VirtualClock,
    "wall-clock": WallClock,
}

__all__ = [
    "DRIVERS", "ArrayShapeError", "Keithley2450", "Keithley707B", "ReferenceArrayController",
    "SentioProber", "SmuSwitchArray", "ThermoStream", "VirtualClock", "WallClock",
]
