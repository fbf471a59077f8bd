"""One emulator per instrument; each speaks its instrument's own command set."""

from sim_backend.emulators.array_controller import ArrayControllerEmulator
from sim_backend.emulators.clock import ClockEmulator
from sim_backend.emulators.keithley707b import Keithley707BEmulator
from sim_backend.emulators.keithley2450 import Keithley2450Emulator
from sim_backend.emulators.sentio import SentioEmulator
from sim_backend.emulators.thermostream import ThermoStreamEmulator

EMULATORS = {
    "array": ArrayControllerEmulator,
    "smu": Keithley2450Emulator,
    "switch": Keithley707BEmulator,
    "prober": SentioEmulator,
    "thermostream": ThermoStreamEmulator,
    "clock": ClockEmulator,
}

__all__ = ["EMULATORS"]
