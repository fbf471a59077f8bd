"""Quantities with units read as the decimal value written, without binary noise."""

from __future__ import annotations

import pytest

import sim_backend
from sim_backend.units import UnitError, parse_quantity


@pytest.mark.parametrize("text, dimension, value", [
    ("100 us", "time", 1e-4),
    ("2 ms", "time", 2e-3),
    ("10 us", "time", 1e-5),
    ("250 ns", "time", 2.5e-7),
    ("0.3 V", "voltage", 0.3),
    ("-1.5 V", "voltage", -1.5),
    ("200 uA", "current", 2e-4),
    ("40 uS", "conductance", 4e-5),
    ("0.089 uS", "conductance", 8.9e-8),
    ("2 ohm", "resistance", 2.0),
    ("25 degC", "temperature", 25.0),
])
def test_a_quantity_is_exactly_the_decimal_written(text, dimension, value):
    assert parse_quantity(text, dimension) == value  # exact, not approx


def test_a_pulse_at_the_limit_is_not_above_it(rram_spec):
    # "100 us" in a limit and "100 us" in a request are the same number
    assert rram_spec.limits.max_pulse_width == 1e-4
    assert not parse_quantity("100 us", "time") > rram_spec.limits.max_pulse_width
    assert sim_backend.load_chip("rram").limits.max_compliance == 2e-4


def test_units_are_still_checked():
    with pytest.raises(UnitError, match="which is a voltage"):
        parse_quantity("0.3 V", "time")
    with pytest.raises(UnitError, match="needs a unit"):
        parse_quantity(1e-4, "time")
