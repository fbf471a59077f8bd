"""Temperature calibration of a die: sweep the chuck, fit a model, correct inference.

``sweep`` (:func:`temperature_sweep`: set points, settling, what is measured),
``fit`` (:func:`fit_model`), ``model`` (:class:`TemperatureModel`: per cell, per
level, per column; the artifact a ``tempcal`` run stores), ``correction`` (the
callable ``run_network(..., corrections=(...))`` takes), ``estimate`` (the die
temperature from the chuck or from cells on the die). Guide: ``docs/temperature.md``.
"""

from protocols.tempcal.correction import (
    METHODS,
    TemperatureCorrection,
    layer_inputs,
    temperature_correction,
)
from protocols.tempcal.estimate import TemperatureEstimate, chuck_temperature, estimate_temperature
from protocols.tempcal.fit import fit_model
from protocols.tempcal.model import TemperatureModel, law_variable
from protocols.tempcal.params import (
    LAWS,
    PLANS,
    ChuckNotSettled,
    NoReferenceCells,
    SweepParams,
    TempcalError,
)
from protocols.tempcal.result import TemperatureSweep
from protocols.tempcal.sweep import check_setpoints, plan_visits, settle, temperature_sweep

__all__ = [
    "LAWS", "METHODS", "PLANS", "ChuckNotSettled", "NoReferenceCells", "SweepParams",
    "TempcalError", "TemperatureCorrection", "TemperatureEstimate", "TemperatureModel",
    "TemperatureSweep", "check_setpoints", "chuck_temperature", "estimate_temperature",
    "fit_model", "law_variable", "layer_inputs", "plan_visits", "settle",
    "temperature_correction", "temperature_sweep",
]
