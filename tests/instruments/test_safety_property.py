"""No protocol-level request puts an out-of-limit command on the wire.

Random requests (many out of limits) go through the drivers; what reaches the
emulators is observed there, on the far side of the wire.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calib import open_bench
from instruments import SafetyError
from instruments.drivers import ArrayShapeError


def num(lo: float, hi: float):
    """Numbers in range, plus the values that break naive checks."""
    return st.one_of(st.floats(lo, hi), st.sampled_from([float("nan"), float("inf"),
                                                         float("-inf"), 0.0, -0.0]))



@pytest.fixture(scope="module")
def bench():
    with open_bench(rows=8, cols=8) as b:
        b.prober.goto(12)
        yield b


def _assert_wire_within_limits(bench):
    seen = bench.simulation.observed.maxima
    lim = bench.limits
    checks = {
        "program_voltage": lim.max_program_voltage, "pulse_width": lim.max_pulse_width,
        "read_voltage": lim.max_read_voltage, "mvm_voltage": lim.max_read_voltage,
        "forming_voltage": lim.max_forming_voltage, "forming_width": lim.max_forming_width,
        "smu_voltage": lim.max_source_voltage,
        "smu_dwell": max(lim.max_pulse_width, lim.max_forming_width),
        "compliance": lim.max_compliance, "temperature": lim.max_temperature,
    }
    for quantity, limit in checks.items():
        assert seen.get(quantity, 0.0) <= limit * (1 + 1e-6), (quantity, seen.get(quantity))
    low = bench.simulation.observed.minima.get("temperature")
    assert low is None or low >= lim.min_temperature


request = st.one_of(
    st.tuples(st.just("pulse"), num(-12, 12), num(-1e-3, 1e-2),
              st.integers(0, 63)),
    st.tuples(st.just("mvm"), num(-2, 2), st.just(0.0), st.integers(0, 7)),
    st.tuples(st.just("read_voltage"), num(-2, 2), st.just(0.0), st.just(0)),
    st.tuples(st.just("form"), num(-1, 12), num(-1e-3, 1e-2),
              st.just(0)),
    st.tuples(st.just("temperature"), num(-300, 400), st.just(0.0), st.just(0)),
    st.tuples(st.just("compliance"), num(-1, 2), st.just(0.0), st.just(0)),
    st.tuples(st.just("smu_voltage"), num(-20, 20), st.just(0.0), st.just(0)),
    st.tuples(st.just("smu_pulse"), num(-20, 20),
              num(-1e-3, 1e-2), st.just(0)),
    st.tuples(st.just("wait"), num(-10, 1e4), st.just(0.0), st.just(0)),
)


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(request, min_size=1, max_size=6))
def test_random_requests_never_exceed_limits_on_the_wire(bench, requests):
    arr, smu = bench.array, bench.smu
    for kind, value, width, index in requests:
        try:
            if kind == "pulse":
                volts = np.zeros(arr.shape)
                volts.flat[index] = value
                arr.pulse(volts, width=width)
            elif kind == "mvm":
                x = np.zeros(arr.shape[0])
                x[index] = value
                arr.mvm(x)
            elif kind == "read_voltage":
                arr.configure_read_voltage(value)
                arr.read()
            elif kind == "form":
                arr.form(value, width)
            elif kind == "temperature":
                bench.thermal.set_temperature(value)
            elif kind == "compliance":
                smu.set_compliance(value)
            elif kind == "smu_voltage":
                smu.set_voltage(value)
            elif kind == "smu_pulse":
                smu.pulse(value, width)
            elif kind == "wait":
                bench.clock.wait(value)
        except (SafetyError, ArrayShapeError, ValueError):
            pass  # refused at the edge: nothing was sent
        _assert_wire_within_limits(bench)


def test_refusals_send_nothing(bench):
    bench.array.read()  # first-use set-up (read voltage, array size) out of the way
    sessions = bench.sessions
    before = {role: s.transactions for role, s in sessions.items()}
    with pytest.raises(SafetyError):
        bench.array.pulse(np.full(bench.array.shape, 4.5))
    with pytest.raises(SafetyError):
        bench.array.mvm(np.full(bench.array.shape[0], 0.31))
    with pytest.raises(SafetyError):
        bench.smu.set_voltage(float("nan"))
    with pytest.raises(SafetyError):
        bench.thermal.set_temperature(-41.0)
    assert {role: s.transactions for role, s in sessions.items()} == before
