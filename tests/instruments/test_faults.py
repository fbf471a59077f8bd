"""Injected bench faults end in recovery or a clear error, never a hang or a wrong value."""

from __future__ import annotations

import time

import numpy as np
import pytest
from click.testing import CliRunner

from calib import open_bench
from calib.cli import main
from instruments import ComplianceTrip, ContactError, InstrumentIOError, InstrumentTimeout


@pytest.fixture(params=["inprocess", "tcp"])
def bench(request):
    with open_bench(transport=request.param, rows=16, cols=16) as b:
        for session in b.sessions.values():
            session.timeout_s = 0.3  # keep injected timeouts short
        b.prober.goto(12)
        b.array.form()
        b.array.read()  # first-use set-up done
        yield b


def test_timeout_once_recovers(bench):
    truth = bench.simulation.chip.truth().g
    bench.simulation.faults.inject("timeout", "array")
    g = bench.array.read()
    assert np.median(np.abs(g / truth - 1)) < 0.05
    assert bench.sessions["array"].reconnects == 1


def test_persistent_timeout_is_a_clear_error_in_bounded_time(bench):
    bench.simulation.faults.inject("timeout", "array", count=10)
    t0 = time.monotonic()
    with pytest.raises(InstrumentTimeout, match="no answer to ':MEAS:ARR\\?'"):
        bench.array.read()
    assert time.monotonic() - t0 < 5.0
    bench.simulation.faults.clear()
    assert bench.array.read().shape == (16, 16)  # and the link works again


@pytest.mark.parametrize("fault", ["drop", "garble"])
def test_dropped_or_garbled_reads_recover_with_the_right_values(bench, fault):
    truth = bench.simulation.chip.truth().g
    bench.simulation.faults.inject(fault, "array")
    g = bench.array.read()
    assert np.median(np.abs(g / truth - 1)) < 0.05
    assert ("array", fault) in bench.simulation.faults.fired


@pytest.mark.parametrize("fault", ["drop", "timeout"])
def test_lost_pulse_batch_is_sent_exactly_once(bench, fault):
    emulator = bench.simulation.emulators["array"]
    chip = bench.simulation.chip
    batches, pulses = emulator.pulse_batches, chip.pulses_applied
    bench.simulation.faults.inject(fault, "array")
    volts = np.full(bench.array.shape, 1.5)
    n = bench.array.pulse(volts)
    assert emulator.pulse_batches == batches + 1
    assert chip.pulses_applied - pulses == n > 0


def test_pulse_applied_but_reply_garbled_is_not_repeated(bench):
    emulator = bench.simulation.emulators["array"]
    chip = bench.simulation.chip
    batches, pulses = emulator.pulse_batches, chip.pulses_applied
    bench.simulation.faults.inject("garble", "array")
    n = bench.array.pulse(np.full(bench.array.shape, 1.5))
    assert n == -1  # applied; the count of switched cells was lost with the reply
    assert emulator.pulse_batches == batches + 1
    assert chip.pulses_applied > pulses
    assert bench.array.pulse(np.full(bench.array.shape, 1.5)) > 0  # in step again


def test_garbled_prober_reply_recovers(bench):
    bench.simulation.faults.inject("garble", "prober")
    assert bench.prober.position() == (bench.simulation.wafer.info(12).x,
                                       bench.simulation.wafer.info(12).y)


def test_compliance_trip_is_reported(bench):
    bench.switch.exclusive_close(["1A01", "2B05"])
    bench.smu.set_compliance(1e-4)
    bench.smu.set_voltage(0.2)
    bench.smu.output(True)
    bench.simulation.faults.inject("compliance", "smu")
    with pytest.raises(ComplianceTrip, match="shorted or stuck high"):
        bench.smu.measure_current()
    assert bench.smu.measure_current() > 0  # the trip clears with the next point
    bench.smu.output(False)


def test_contact_failure_is_retried_then_reported(bench):
    bench.simulation.faults.inject("contact", "prober")
    bench.prober.goto(13)
    assert bench.simulation.in_contact and bench.simulation.die_id == 13
    bench.simulation.faults.inject("contact", "prober", count=2)
    with pytest.raises(ContactError, match="probe card"):
        bench.prober.goto(14)
    assert not bench.simulation.in_contact


def test_unreachable_instrument_is_one_clear_line(tmp_path):
    config = tmp_path / "bench.toml"
    config.write_text('[chip]\nspec = "rram"\n[roles.array]\ndriver = "reference-array"\n'
                      'resource = "TCPIP::127.0.0.1::9::SOCKET"\ntimeout_s = 0.3\n'
                      '[roles.clock]\ndriver = "wall-clock"\n')
    with open_bench(config) as bench, pytest.raises(InstrumentIOError, match="cannot open"):
        bench.array.identity()
    result = CliRunner().invoke(main, ["bench", "check", "--bench", str(config)])
    assert result.exit_code != 0
    assert "cannot open TCPIP::127.0.0.1::9::SOCKET" in result.output
    assert "Traceback" not in result.output
