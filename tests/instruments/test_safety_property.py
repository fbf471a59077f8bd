"""No protocol-level request puts an out-of-limit command on the wire.

Random requests (many out of limits) go through the drivers; what reaches the
emulators is observed there, on the far side of the wire. The switch matrix
holds a cell on the SMU's path throughout, so every SMU level and pulse lands
on a device: each point the SMU sources is checked as a (volts, seconds) pair,
and its DC output after every request.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calib import open_bench
from instruments import InstrumentError, SafetyError
from instruments.drivers.smu_switch_array import channel


def num(lo: float, hi: float):
    """Numbers in range, plus the values that break naive checks."""
    return st.one_of(st.floats(lo, hi), st.sampled_from([float("nan"), float("inf"),
                                                         float("-inf"), 0.0, -0.0]))



@pytest.fixture(scope="module")
def bench():
    with open_bench(rows=8, cols=8) as b:
        b.prober.goto(12)
        yield b


@pytest.fixture(scope="module")
def sourced(bench):
    """Every point the SMU emulator sources: (volts, seconds, onto a cell?)."""
    emulator = bench.simulation.emulators["smu"]
    points: list[tuple[float, float, bool]] = []
    original = emulator._apply

    def recording(volts, seconds):
        points.append((float(volts), float(seconds), emulator._connected() is not None))
        return original(volts, seconds)

    emulator._apply = recording
    yield points
    emulator._apply = original


def _close_cell_path(bench):
    """Word line 0 onto the SMU's HI bus, bit line 0 onto its LO bus: one cell on the SMU."""
    wiring = bench.simulation.wiring
    bench.switch.exclusive_close([channel("A", 0), channel("B", wiring.word_lines)])
    assert bench.simulation.emulators["smu"]._connected() is not None


def _assert_smu_within_limits(bench, points):
    """Above read level only as timed pulses: a program pulse (program limit, pulse
    width), or a forming pulse (positive, forming limits); the DC output at read level."""
    lim = bench.limits
    for volts, seconds, on_cell in points:
        a = abs(volts)
        ok = (a <= lim.max_read_voltage
              or (a <= lim.max_program_voltage and seconds <= lim.max_pulse_width)
              or (0 < volts <= lim.max_forming_voltage and seconds <= lim.max_forming_width))
        assert ok, (volts, seconds, on_cell)
    emulator = bench.simulation.emulators["smu"]
    if emulator.output:
        assert abs(emulator.level) <= lim.max_read_voltage, emulator.level


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


# SMU amplitudes and widths: anywhere, and often near the chip's limits (a few volts,
# microseconds to milliseconds), so that pulses within and just beyond them both occur
AMPLITUDE = st.one_of(num(-20, 20), st.floats(-6.0, 6.0),
                      st.sampled_from([3.0, -3.0, 4.0, -4.0, 4.01, 5.0, 5.01, -5.0]))
WIDTH = st.one_of(num(-1e-3, 20.0), st.floats(-7.0, -2.3).map(lambda e: 10.0 ** e),
                  st.sampled_from([1e-5, 1e-4, 1.01e-4, 2e-3, 2.01e-3]))
LEVEL = st.one_of(num(-20, 20), st.floats(-0.5, 0.5))

request = st.one_of(
    st.tuples(st.just("pulse"), num(-12, 12), num(-1e-3, 1e-2),
              st.integers(0, 63)),
    st.tuples(st.just("mvm"), num(-2, 2), st.just(0.0), st.integers(0, 7)),
    st.tuples(st.just("read_voltage"), num(-2, 2), st.just(0.0), st.just(0)),
    st.tuples(st.just("form"), num(-1, 12), num(-1e-3, 1e-2),
              st.just(0)),
    st.tuples(st.just("temperature"), num(-300, 400), st.just(0.0), st.just(0)),
    st.tuples(st.just("compliance"), num(-1, 2), st.just(0.0), st.just(0)),
    st.tuples(st.just("smu_voltage"), LEVEL, st.just(0.0), st.just(0)),
    st.tuples(st.just("smu_dc"), LEVEL, st.just(0.0), st.just(0)),
    st.tuples(st.just("smu_output"), st.just(0.0), st.just(0.0), st.integers(0, 1)),
    st.tuples(st.just("smu_measure"), st.just(0.0), st.just(0.0), st.just(0)),
    st.tuples(st.just("smu_pulse"), AMPLITUDE, WIDTH, st.just(0)),
    st.tuples(st.just("smu_form_pulse"), AMPLITUDE, WIDTH, st.just(0)),
    st.tuples(st.just("smu_sweep"), AMPLITUDE, WIDTH, st.integers(0, 1)),
    st.tuples(st.just("wait"), num(-10, 1e4), st.just(0.0), st.just(0)),
)


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(request, min_size=1, max_size=6))
def test_random_requests_never_exceed_limits_on_the_wire(bench, sourced, requests):
    arr, smu = bench.array, bench.smu
    _close_cell_path(bench)
    sourced.clear()
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
            elif kind == "smu_dc":  # a level, the output on, a reading: a DC read
                smu.set_voltage(value)
                smu.output(True)
                smu.measure_current()
            elif kind == "smu_output":
                smu.output(bool(index))
            elif kind == "smu_measure":
                smu.measure_current()
            elif kind == "smu_pulse":
                smu.pulse(value, width)
            elif kind == "smu_form_pulse":
                smu.form_pulse(value, width)
            elif kind == "smu_sweep":  # ending on the level, or back at 0 V
                smu.list_sweep(np.array([0.0, value] if index else [value, 0.0]), width)
            elif kind == "wait":
                bench.clock.wait(value)
        except InstrumentError:
            pass  # refused at the edge (nothing sent), or by the instrument, or a trip
        _assert_wire_within_limits(bench)
        _assert_smu_within_limits(bench, sourced)
        sourced.clear()


def test_the_review_case_puts_nothing_on_the_cell(bench, sourced):
    """5 V for 9 s through the SMU onto a closed cell (chip limits: 100 us pulses at
    4 V, forming 2 ms at 5 V) is refused, and nothing reaches the SMU."""
    _close_cell_path(bench)
    bench.smu.set_compliance(1e-4)
    sourced.clear()
    before = bench.sessions["smu"].transactions
    for call in (lambda: bench.smu.pulse(5.0, 9.0), lambda: bench.smu.form_pulse(5.0, 9.0),
                 lambda: bench.smu.set_voltage(5.0),
                 lambda: bench.smu.list_sweep(np.array([5.0, 0.0]), 9.0)):
        with pytest.raises(SafetyError):
            call()
    assert bench.sessions["smu"].transactions == before and sourced == []


def test_timed_pulses_within_limits_reach_the_cell(bench, sourced):
    _close_cell_path(bench)
    bench.smu.set_compliance(2e-4)
    sourced.clear()
    for call in (lambda: bench.smu.pulse(3.0, 50e-6), lambda: bench.smu.form_pulse(5.0, 1e-3)):
        try:
            call()
        except InstrumentError:
            pass  # a compliance trip is the cell's business, not the guard's
    assert [(v, s) for v, s, on_cell in sourced if on_cell and v] == [(3.0, 50e-6),
                                                                        (5.0, 1e-3)]
    _assert_smu_within_limits(bench, sourced)
    sourced.clear()


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
    with pytest.raises(SafetyError):
        bench.smu.set_voltage(0.31)  # DC above read level
    with pytest.raises(SafetyError):
        bench.smu.pulse(3.0, 2e-4)  # a pulse longer than the limit
    with pytest.raises(SafetyError):
        bench.smu.form_pulse(5.5, 1e-3)
    with pytest.raises(SafetyError):
        bench.smu.list_sweep(np.array([0.2, 2.0, 0.0]), 1e-3)
    assert {role: s.transactions for role, s in sessions.items()} == before
