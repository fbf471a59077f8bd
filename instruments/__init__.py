"""The hardware abstraction layer: roles, drivers, VISA sessions, the safety guard.

Imports nothing from ``calib``, ``protocols`` or ``sim_backend``: drivers talk
to real instruments and to the simulator through PyVISA alike.
"""

from instruments.errors import (
    ArgumentError,
    ArrayShapeError,
    ComplianceTrip,
    ContactError,
    ControllerResetError,
    DriverOptionError,
    InstrumentError,
    InstrumentIOError,
    InstrumentReportedError,
    InstrumentTimeout,
    ProberError,
    SafetyError,
    WrongInstrumentError,
)
from instruments.roles import (
    ArrayController,
    Clock,
    Prober,
    SourceMeter,
    SwitchMatrix,
    ThermalController,
)
from instruments.safety import SafetyGuard, SafetyLimits
from instruments.session import VisaSession

__all__ = [
    "ArgumentError", "ArrayController", "ArrayShapeError", "Clock", "ComplianceTrip",
    "ContactError", "ControllerResetError", "DriverOptionError", "InstrumentError",
    "InstrumentIOError", "InstrumentReportedError", "InstrumentTimeout", "Prober",
    "ProberError", "SafetyError", "SafetyGuard", "SafetyLimits", "SourceMeter",
    "SwitchMatrix", "ThermalController", "VisaSession", "WrongInstrumentError",
]
