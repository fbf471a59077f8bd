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
    config.write_text('[chip]\ndatasheet = "rram"\n[roles.array]\ndriver = "reference-array"\n'
                      'resource = "TCPIP::127.0.0.1::9::SOCKET"\ntimeout_s = 0.3\n'
                      '[roles.clock]\ndriver = "wall-clock"\n')
    with open_bench(config) as bench, pytest.raises(InstrumentIOError, match="cannot open"):
        bench.array.identity()
    result = CliRunner().invoke(main, ["bench", "check", "--bench", str(config)])
    assert result.exit_code != 0
    assert "cannot open TCPIP::127.0.0.1::9::SOCKET" in result.output
    assert "Traceback" not in result.output


# -- a board that reboots (the simulator's "reboot" fault) ---------------------------------
@pytest.mark.parametrize("applied", [False, True])
def test_reboot_during_a_pulse_batch_is_reported_not_taken_for_applied(bench, applied):
    from instruments import ControllerResetError

    emulator = bench.simulation.emulators["array"]
    chip = bench.simulation.chip
    volts = np.full(bench.array.shape, 1.5)
    bench.array.pulse(volts)  # the board's counter is 1
    bench.simulation.faults.inject("reboot", "array", applied=applied)
    pulses = chip.pulses_applied
    with pytest.raises(ControllerResetError,
                       match=r"reset mid-run \(pulse counter 0, expected 1 or 2\).*re-read"):
        bench.array.pulse(volts)
    assert emulator.pulse_batches == 0  # the board counts from its reboot
    assert (chip.pulses_applied > pulses) == applied  # either may have happened
    # going on as the message says: re-read, then pulse; the driver is in step again
    assert bench.array.read().shape == bench.array.shape
    before = emulator.pulse_batches
    assert bench.array.pulse(volts) > 0
    assert emulator.pulse_batches == before + 1


def test_reboot_during_a_read_restores_the_read_settings(bench):
    emulator = bench.simulation.emulators["array"]
    truth = bench.simulation.chip.truth().g
    bench.array.read(averages=16)
    assert emulator.read_averages == 16
    bench.simulation.faults.inject("reboot", "array")
    g = bench.array.read(averages=16)
    assert ("array", "reboot") in bench.simulation.faults.fired
    assert emulator.read_averages == 16  # set up again, not silently at the default 1
    assert np.median(np.abs(g / truth - 1)) < 0.05


def test_after_a_reboot_a_lost_pulse_batch_is_still_sent_exactly_once(bench):
    """The reboot reset the board's counter; a later lost batch must be judged against the
    new count, not the one from before the reboot (which would call it applied)."""
    emulator = bench.simulation.emulators["array"]
    chip = bench.simulation.chip
    volts = np.full(bench.array.shape, 1.5)
    bench.array.pulse(volts)
    bench.array.pulse(volts)
    bench.simulation.faults.inject("reboot", "array")
    bench.array.read()  # recovers; the driver learns the counter restarted
    bench.simulation.faults.inject("drop", "array")
    pulses = chip.pulses_applied
    n = bench.array.pulse(volts)
    assert n > 0 and emulator.pulse_batches == 1
    assert chip.pulses_applied - pulses == n


# -- SMU + switch matrix: one garbled reply must not abort the run ----------------------
SMALL_BENCH = """
[simulation]
rows = 4
cols = 4
transport = "{transport}"
[roles.array]
driver = "smu-switch-array"
word_lines = 4
bit_lines = 4
[roles.smu]
driver = "keithley2450"
retries = {retries}
[roles.switch]
driver = "keithley707b"
[roles.prober]
driver = "sentio"
[roles.clock]
driver = "virtual-clock"
"""


@pytest.fixture(params=["inprocess", "tcp"])
def small_bench(request, tmp_path):
    def make(retries=2):
        path = tmp_path / f"bench-{retries}.toml"
        path.write_text(SMALL_BENCH.format(transport=request.param, retries=retries))
        b = open_bench(path)
        b.prober.goto(12)
        b.simulation.chip.form()
        return b

    return make


@pytest.mark.parametrize("role, after", [
    ("smu", 0),  # the error-queue reply after configuring
    ("smu", 1), ("smu", 5),  # a cell's reading
    ("switch", 1), ("switch", 3),  # the closed-channel list read back for verification
    ("switch", 0),  # *OPC? after switching
])
def test_one_garbled_reply_does_not_abort_an_smu_switch_read(small_bench, role, after):
    with small_bench() as bench:
        truth = bench.simulation.chip.truth().g
        bench.simulation.faults.inject("garble", role, after=after)
        g = bench.array.read()
        assert (role, "garble") in bench.simulation.faults.fired
        assert np.median(np.abs(g / truth - 1)) < 0.05


def test_a_garbled_cell_reading_is_measured_once_more(small_bench):
    with small_bench(retries=0) as bench:  # no session retries: the driver's own recovery
        truth = bench.simulation.chip.truth().g
        bench.simulation.faults.inject("garble", "smu", after=3)
        g = bench.array.read()
        assert ("smu", "garble") in bench.simulation.faults.fired
        assert bench.array.remeasured == 1
        assert np.all(np.abs(g / truth - 1) < 0.1)


def test_a_cell_reading_garbled_twice_is_a_clear_error(small_bench):
    with small_bench(retries=0) as bench:
        bench.simulation.faults.inject("garble", "smu", after=3, count=2)
        with pytest.raises(InstrumentIOError, match="MEAS:CURR"):
            bench.array.read()
        assert bench.sessions["smu"].query(":OUTP?") == "0"  # left off after the error
