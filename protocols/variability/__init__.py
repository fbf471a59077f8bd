"""Variability mapping of a die: every cell's window, thresholds, rates and fault class."""

from protocols.variability.map import map_variability
from protocols.variability.params import (
    DeadArrayError,
    MapProgress,
    VariabilityError,
    VariabilityParams,
)
from protocols.variability.result import PER_CELL, Fault, ReadNoiseLaw, VariabilityMap

__all__ = ["PER_CELL", "DeadArrayError", "Fault", "MapProgress", "ReadNoiseLaw", "VariabilityError",
           "VariabilityMap", "VariabilityParams", "map_variability"]
