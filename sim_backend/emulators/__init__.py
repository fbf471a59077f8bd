"""One emulator per instrument; each speaks its instrument's own command set."""

from sim_backend.emulators.array_controller import ArrayControllerEmulator
from sim_backend.emulators.clock import ClockEmulator
from sim_backend.emulators.keithley707b import Keithley707BEmulator
from sim_backend.emulators.keithley2450 import Keithley2450Emulator
from sim_backend.emulators.keithley2600b import Keithley2600BEmulator
from sim_backend.emulators.keysight_b2900 import KeysightB2900Emulator
from sim_backend.emulators.sentio import SentioEmulator
from sim_backend.emulators.thermostream import ThermoStreamEmulator
from sim_backend.emulators.velox import VeloxEmulator

EMULATORS = {
    "array": ArrayControllerEmulator,
    "smu": Keithley2450Emulator,
    "switch": Keithley707BEmulator,
    "prober": SentioEmulator,
    "thermostream": ThermoStreamEmulator,
    "clock": ClockEmulator,
    # more instruments a lab may own, on the same simulated station (named as their drivers)
    "keithley2600b": Keithley2600BEmulator,
    "keysight-b2900": KeysightB2900Emulator,
    "velox": VeloxEmulator,
}

__all__ = ["EMULATORS"]
