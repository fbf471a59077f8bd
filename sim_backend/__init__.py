"""Simulated analog in-memory-computing bench: the far side of the wire.

Imports no other package of this project. Protocols reach it only through
instrument drivers; tests and benchmarks use :meth:`SimChip.truth` to score.
"""

from sim_backend.chip import ChipInputError, ChipTruth, DieModifiers, SimChip
from sim_backend.clock import VirtualClock
from sim_backend.spec import ChipSpec, ChipSpecError, load_chip
from sim_backend.wafer import Die, SimWafer, WaferSpec, WaferSpecError, load_wafer

__all__ = [
    "ChipInputError", "ChipSpec", "ChipSpecError", "ChipTruth", "Die", "DieModifiers",
    "SimChip", "SimWafer", "VirtualClock", "WaferSpec", "WaferSpecError", "load_chip",
    "load_wafer",
]
