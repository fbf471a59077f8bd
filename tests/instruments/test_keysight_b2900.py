"""Keysight B2900 SMU driver: exact bytes for every command, then the driver against its
emulator over both transports (a cell through the matrix, write-verify of an 8x8 array),
and bad input (a channel that does not exist, an SCPI error reply, another instrument)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import pyvisa

import protocols
from calib.wiring.bench import Bench
from calib.wiring.config import BenchConfigError, config_from_dict
from instruments import (
    ComplianceTrip,
    DriverOptionError,
    InstrumentReportedError,
    InstrumentTimeout,
    SafetyError,
    VisaSession,
    WrongInstrumentError,
)
from instruments.drivers.keysight_b2900 import MIN_PULSE_WIDTH_S, KeysightB2900
from instruments.drivers.smu_switch_array import channel as matrix_channel
from instruments.errors import ArgumentError
from instruments.registry import driver_class
from protocols.profiles import write_verify_params
from sim_backend.bench import SimBench
from tests.harness import datasheet, dc_read, expected_protocol, guard, scripted_session

US = 1e-6
IDN = "Keysight Technologies,B2902A,MY51140001,3.4.2011.5100"
OK = '+0,"No error"'


def smu(channel=1):
    return lambda session: KeysightB2900(session, guard(), datasheet(), channel=channel)


def setup(c=1, nplc="0.1"):
    """What the first command is preceded by: identity, then the channel's set-up."""
    return [("*IDN?", IDN),
            (f':SOUR{c}:FUNC:MODE VOLT;:SOUR{c}:FUNC:SHAP DC;:SOUR{c}:VOLT:MODE FIX;'
             f':SENS{c}:FUNC "CURR";:SENS{c}:CURR:NPLC {nplc};:TRIG{c}:TRAN:DEL 0;'
             f':OUTP{c}:ON:AUTO OFF', None),
            (":SYST:ERR?", OK)]


# -- exact bytes ---------------------------------------------------------------------------
def test_registered_under_its_name():
    assert driver_class("keysight-b2900") is KeysightB2900
    assert KeysightB2900.role == "smu" and KeysightB2900.stresses_device


def test_compliance_level_and_output():
    with expected_protocol(smu(), setup() + [
        (":SENS1:CURR:PROT 0.0001", None),
        (":SOUR1:VOLT 0.2", None),
        (":OUTP1 ON", None),
        (":OUTP1 OFF", None),
        (":SOUR1:VOLT -0.15", None),
    ]) as drv:
        drv.set_compliance(1e-4)
        drv.set_voltage(0.2)
        drv.output(True)
        drv.output(False)
        drv.set_voltage(-0.15)


def test_output_on_without_a_level_sets_zero_volts_first():
    with expected_protocol(smu(), setup() + [(":SOUR1:VOLT 0", None), (":OUTP1 ON", None),
                                             (":OUTP1 ON", None)]) as drv:
        drv.output(True)
        drv.output(1)  # numeric boolean; the level is known now


def test_measure_current_and_compliance_trip():
    with expected_protocol(smu(), setup() + [
        (":MEAS:CURR? (@1);:SENS1:CURR:PROT:TRIP?", "+5.123400E-06;0"),
        (":MEAS:CURR? (@1);:SENS1:CURR:PROT:TRIP?", "+1.000000E-04;1"),
    ]) as drv:
        assert drv.measure_current() == pytest.approx(5.1234e-6)
        with pytest.raises(ComplianceTrip, match="compliance tripped"):
            drv.measure_current()


def test_integration_time_nplc_times_averaging():
    with expected_protocol(smu(), setup() + [
        (":SENS1:CURR:NPLC 1", None),
        (":SENS1:CURR:NPLC 8", None), (":SYST:ERR?", OK),
        (":SENS1:CURR:NPLC 4", None),  # base 0.5 x 8
        (":SENS1:CURR:NPLC 0.5", None), (":SYST:ERR?", OK),
    ]) as drv:
        drv.set_nplc(1)
        drv.set_averaging(8)
        drv.set_nplc(0.5)
        drv.set_averaging(1)
        for bad in (0, 101, 2.5, True, "8"):
            with pytest.raises(ArgumentError, match="averaging"):
                drv.set_averaging(bad)
        with pytest.raises(ArgumentError, match="NPLC"):
            drv.set_nplc(200)
    assert drv.settings() == {"channel": 1, "nplc": 0.5, "averages": 1}


def test_averaging_beyond_the_longest_integration_is_refused_before_sending():
    with expected_protocol(smu(), setup() + [(":SENS1:CURR:NPLC 10", None)]) as drv:
        drv.set_nplc(10)
        with pytest.raises(ArgumentError, match="100 PLC"):
            drv.set_averaging(20)


PULSE_SETUP = (":SOUR1:FUNC:SHAP PULS;:SOUR1:VOLT:MODE FIX;:SOUR1:VOLT 0;:SOUR1:VOLT:TRIG {v};"
               ":SOUR1:PULS:DEL 0;:SOUR1:PULS:WIDT {w};:SENS1:CURR:APER {a};"
               ":TRIG1:SOUR AINT;:TRIG1:COUN 1;:TRIG1:ACQ:DEL {d}")
FETCH = ":INIT (@1);*WAI;:FETC:ARR:CURR? (@1)"


def pulse_script(v, w: str, a: str, d: str, reply, switch=True, more=()):
    """A pulse-mode pulse on channel 1: its set-up (the output switched on, if it was off),
    the trigger and fetch (then ``more``), the channel back to DC (and off again)."""
    on, off = (";:OUTP1 ON", ";:OUTP1 OFF") if switch else ("", "")
    return [(PULSE_SETUP.format(v=v, w=w, a=a, d=d) + on, None), (FETCH, reply), *more,
            (":SOUR1:FUNC:SHAP DC;:SENS1:CURR:NPLC 0.1" + off, None)]


def test_pulse_is_a_pulse_mode_pulse_from_and_back_to_zero_volts():
    with expected_protocol(smu(), setup() + pulse_script(2, "0.0001", "5e-05", "2.5e-05",
                                                         "+8.000000E-05")) as drv:
        assert drv.pulse(2.0, 100e-6) == pytest.approx(8e-5)


def test_pulse_with_the_output_on_leaves_it_on_at_zero_volts():
    with expected_protocol(smu(), setup() + [
        (":SOUR1:VOLT 0.2", None), (":OUTP1 ON", None),
        # a pulse's reading is limited at the compliance
        *pulse_script(-2.5, "5e-05", "2.5e-05", "1.25e-05", "-1.000000E-04", switch=False),
        (":OUTP1 ON", None),  # the level is 0 V now: known, so no level is sent
    ]) as drv:
        drv.set_voltage(0.2)
        drv.output(True)
        assert drv.pulse(-2.5, MIN_PULSE_WIDTH_S) == pytest.approx(-1e-4)
        drv.output(True)


def test_form_pulse_within_the_forming_limits():
    with expected_protocol(smu(), setup() + pulse_script(5, "0.001", "0.0005", "0.00025",
                                                         "+1.000000E-04")) as drv:
        assert drv.form_pulse(5.0, 1e-3) == pytest.approx(1e-4)


def test_pulses_outside_the_limits_or_the_instrument_send_nothing():
    with expected_protocol(smu(), []) as drv:
        with pytest.raises(SafetyError, match="program limit"):
            drv.pulse(4.5, 100e-6)
        with pytest.raises(SafetyError, match="pulse width"):
            drv.pulse(2.0, 1e-3)
        with pytest.raises(ArgumentError, match="shortest pulse"):
            drv.pulse(2.0, 10e-6)  # within the chip's limits, below the B2900's
        with pytest.raises(SafetyError, match="forming voltage"):
            drv.form_pulse(6.0, 1e-3)
        with pytest.raises(SafetyError, match="forming width"):
            drv.form_pulse(5.0, 5e-3)
        with pytest.raises(ArgumentError, match="shortest pulse"):
            drv.form_pulse(5.0, 1e-6)
        with pytest.raises(SafetyError, match="read limit"):
            drv.set_voltage(2.0)
        with pytest.raises(SafetyError, match="compliance"):
            drv.set_compliance(1.0)
        with pytest.raises(ArgumentError):
            drv.pulse("2 V", 1e-4)


def sweep_script(points: str, n: int, aperture: str, timer: str, delay: str, reply: str,
                 more=()):
    return [
        (f":SOUR1:FUNC:SHAP DC;:SOUR1:VOLT:MODE FIX;:SOUR1:VOLT 0;:SOUR1:LIST:VOLT {points}",
         None),
        *[(f":SOUR1:LIST:VOLT:APP {chunk}", None) for chunk in more],
        (f":SOUR1:VOLT:MODE LIST;:SENS1:CURR:APER {aperture};:TRIG1:SOUR TIM;"
         f":TRIG1:TIM {timer};:TRIG1:COUN {n};:TRIG1:ACQ:DEL {delay};:OUTP1 ON", None),
        (FETCH + ";:SENS1:CURR:PROT:TRIP?", reply),
        (":SOUR1:VOLT:MODE FIX;:SENS1:CURR:NPLC 0.1;:OUTP1 OFF", None),
    ]


def test_list_sweep_timer_triggered_with_the_measurement_inside_each_point():
    with expected_protocol(smu(), setup() + sweep_script(
            "0.1,2.5,0", 3, "5e-05", "0.0001", "2.5e-05",
            "+2.000000E-06,+9.000000E-05,+0.000000E+00;0")) as drv:
        out = drv.list_sweep(np.array([0.1, 2.5, 0.0]), 100e-6)
    assert np.allclose(out, [2e-6, 9e-5, 0.0])


def test_list_sweep_at_read_level_measures_over_the_dc_integration_time():
    # 1 s points: the 0.1 PLC aperture (2 ms) fits, centred in each point
    with expected_protocol(smu(), setup() + sweep_script(
            "0.2,0.1", 2, "0.002", "1", "0.499", "+4.0E-06,+2.0E-06;0")) as drv:
        assert np.allclose(drv.list_sweep([0.2, 0.1], 1.0), [4e-6, 2e-6])


def test_long_list_sweeps_are_uploaded_in_chunks():
    volts = np.full(150, 0.1)
    reply = ",".join(["+1.0E-06"] * 150) + ";0"
    chunk = ",".join(["0.1"] * 100)
    with expected_protocol(smu(), setup() + sweep_script(
            chunk, 150, "0.002", "0.01", "0.004", reply,
            more=[",".join(["0.1"] * 50)])) as drv:
        assert drv.list_sweep(volts, 0.01).shape == (150,)


def test_a_trip_at_the_sweeps_last_point_raises_after_the_channel_is_put_back():
    with expected_protocol(smu(), setup() + sweep_script(
            "0.2", 1, "0.002", "0.1", "0.049", "+1.000000E-04;1")) as drv:
        with pytest.raises(ComplianceTrip, match="last point"):
            drv.list_sweep([0.2], 0.1)


def test_list_sweeps_outside_the_limits_send_nothing():
    with expected_protocol(smu(), []) as drv:
        with pytest.raises(SafetyError, match="dwell"):
            drv.list_sweep([2.0, 0.0], 1e-3)  # a point above read level dwelling 1 ms
        with pytest.raises(SafetyError, match="end at read level"):
            drv.list_sweep([0.0, 2.0], 1e-4)
        with pytest.raises(SafetyError, match="program limit"):
            drv.list_sweep([5.0, 0.0], 1e-4)
        with pytest.raises(ArgumentError, match="trigger interval"):
            drv.list_sweep([0.1, 0.0], 1e-6)  # shorter than the B2900 can trigger
        with pytest.raises(ArgumentError, match="1-D"):
            drv.list_sweep(np.zeros((2, 2)), 1e-3)
        with pytest.raises(ArgumentError, match="points"):
            drv.list_sweep([], 1e-3)
        with pytest.raises(ArgumentError, match="points"):
            drv.list_sweep(np.zeros(2501), 1e-3)
        with pytest.raises(ArgumentError, match="dwell"):
            drv.list_sweep([0.1], 20.0)


def test_channel_two_addresses_its_own_nodes_and_list():
    with expected_protocol(smu(2), setup(2) + [
        (":SENS2:CURR:PROT 5e-05", None),
        (":SOUR2:VOLT 0.1", None), (":OUTP2 ON", None),
        (":MEAS:CURR? (@2);:SENS2:CURR:PROT:TRIP?", "+1.0E-06;0"),
        (":SOUR2:FUNC:SHAP PULS;:SOUR2:VOLT:MODE FIX;:SOUR2:VOLT 0;:SOUR2:VOLT:TRIG 3;"
         ":SOUR2:PULS:DEL 0;:SOUR2:PULS:WIDT 0.0001;:SENS2:CURR:APER 5e-05;"
         ":TRIG2:SOUR AINT;:TRIG2:COUN 1;:TRIG2:ACQ:DEL 2.5e-05", None),
        (":INIT (@2);*WAI;:FETC:ARR:CURR? (@2)", "+1.0E-05"),
        (":SOUR2:FUNC:SHAP DC;:SENS2:CURR:NPLC 0.1", None),
        (":OUTP2 OFF", None),
    ]) as drv:
        assert dc_read(drv, 5e-5, 0.1) == pytest.approx(1e-6)
        assert drv.pulse(3.0, 1e-4) == pytest.approx(1e-5)
        drv.output(False)
    assert drv.configuration()["channel"] == 2


@pytest.mark.parametrize("bad", [3, 0, -1, True, 1.0, "1", None])
def test_a_channel_that_does_not_exist_is_refused_when_built(bad):
    session, instrument = scripted_session([])
    with pytest.raises(DriverOptionError, match="channel") as info:
        KeysightB2900(session, guard(), datasheet(), channel=bad)
    assert info.value.option == "channel"
    assert instrument.step == 0


def test_the_identity_is_checked_once_before_the_first_command():
    with expected_protocol(smu(), setup() + [(":SOUR1:VOLT 0.1", None),
                                             (":SOUR1:VOLT 0.2", None)]) as drv:
        drv.set_voltage(0.1)
        drv.set_voltage(0.2)


def test_another_instrument_is_refused_before_anything_else_is_sent():
    other = "KEITHLEY INSTRUMENTS,MODEL 2450,04512345,1.7.12b"
    with expected_protocol(smu(), [("*IDN?", other), ("*IDN?", other)]) as drv:
        with pytest.raises(WrongInstrumentError, match="2450"):
            drv.output(True)
        with pytest.raises(WrongInstrumentError):
            drv.pulse(2.0, 1e-4)  # still refused: asked again, nothing else sent


@pytest.mark.parametrize("idn", ["Keysight Technologies,B2912A,MY1,3.4",
                                 "Agilent Technologies,B2901A,MY1,2.0",
                                 "Keysight Technologies,B2902B,MY1,5.0",
                                 "Keysight Technologies,B2910BL,MY1,5.0"])
def test_the_b2900_models_are_recognised(idn):
    with expected_protocol(smu(), [("*IDN?", idn), *setup()[1:], (":OUTP1 OFF", None)]) as drv:
        drv.output(False)


def test_an_error_the_instrument_reports_at_set_up_is_raised():
    with expected_protocol(smu(), [*setup()[:2], (":SYST:ERR?", '-113,"Undefined header"'),
                                   (":SYST:ERR?", OK)]) as drv:
        with pytest.raises(InstrumentReportedError, match="-113"):
            drv.set_voltage(0.1)


def test_a_refused_query_reports_the_queued_error():
    with expected_protocol(smu(), setup() + [
        (":MEAS:CURR? (@1);:SENS1:CURR:PROT:TRIP?", None),
        (":SYST:ERR?", '-200,"Execution error; output is off"'),
    ]) as drv:
        with pytest.raises(InstrumentReportedError, match="output is off"):
            drv.measure_current()


def test_a_pulse_that_gets_no_answer_is_not_repeated_and_the_channel_is_put_back():
    with expected_protocol(smu(), setup() + pulse_script(2, "0.0001", "5e-05", "2.5e-05", None,
                                                         more=[(":SYST:ERR?", OK)])) as drv:
        with pytest.raises(InstrumentTimeout):
            drv.pulse(2.0, 1e-4)


# -- against the emulator, over both transports ----------------------------------------------
def bench_doc(transport: str, **smu_options) -> dict:
    return {"chip": {"datasheet": "rram"},
            "simulation": {"transport": transport, "rows": 8, "cols": 8},
            "roles": {"array": {"driver": "smu-switch-array", "word_lines": 8, "bit_lines": 8},
                      "smu": {"driver": "keysight-b2900", **smu_options},
                      "switch": {"driver": "keithley707b"},
                      "prober": {"driver": "sentio"},
                      "clock": {"driver": "virtual-clock"}}}


@pytest.fixture(params=["inprocess", "tcp"])
def bench(request):
    with Bench(config_from_dict(bench_doc(request.param))) as b:
        b.prober.goto(12)
        yield b


def emulator(bench):
    """The B2900 emulator, once it has acted on everything sent (over TCP a write returns
    before the far side has read it)."""
    bench.sessions["smu"].query("*OPC?")
    return bench.simulation.emulators["keysight-b2900"]


def test_the_bench_wires_the_b2900_as_its_smu(bench):
    assert isinstance(bench.smu, KeysightB2900)
    assert "B2902A" in bench.identities()["smu"]
    if bench.config.simulation.transport == "inprocess":  # over TCP: an ephemeral port
        assert bench.sessions["smu"].resource.endswith("::5031::SOCKET")


def test_a_cell_through_the_matrix_reads_the_simulators_truth(bench):
    chip = bench.simulation.chip
    chip.form()
    word_lines = bench.simulation.wiring.word_lines
    for i, j in [(0, 0), (3, 5), (7, 7)]:
        bench.switch.exclusive_close([matrix_channel("A", i),
                                      matrix_channel("B", word_lines + j)])
        bench.smu.set_compliance(1e-4)
        bench.smu.set_voltage(0.2)
        bench.smu.output(True)
        current = bench.smu.measure_current()
        bench.smu.output(False)
        assert current / 0.2 == pytest.approx(chip.truth().g[i, j], rel=0.05)  # read noise
    assert list(emulator(bench).errors) == []


def test_the_array_reads_cell_by_cell_within_read_noise(bench):
    bench.simulation.chip.form()
    g = bench.array.read(averages=8)  # 8 x 0.1 PLC of integration per cell
    truth = bench.simulation.chip.truth()
    ok = ~truth.stuck
    assert np.median(np.abs(g[ok] / truth.g[ok] - 1)) < 0.02
    assert emulator(bench).channels[1].aperture == pytest.approx(0.8 / 50)
    assert not emulator(bench).output  # the read switched it off again


def test_a_pulse_programs_the_connected_cell_for_its_width(bench):
    chip = bench.simulation.chip
    chip.form()
    word_lines = bench.simulation.wiring.word_lines
    bench.switch.exclusive_close([matrix_channel("A", 2), matrix_channel("B", word_lines + 3)])
    before = chip.truth().g.copy()
    bench.smu.set_compliance(2e-4)
    bench.smu.pulse(-2.5, 100e-6)  # a RESET
    after = chip.truth().g
    assert after[2, 3] < before[2, 3]
    others = np.ones_like(after, bool)
    others[2, 3] = False
    assert np.array_equal(after[others], before[others])
    seen = bench.simulation.observed.maxima
    assert seen["smu_dwell"] == pytest.approx(100e-6)
    assert not emulator(bench).output and emulator(bench).level == 0.0
    assert emulator(bench).channels[1].shape == "DC"


def test_a_list_sweep_reads_each_point(bench):
    chip = bench.simulation.chip
    chip.form()
    word_lines = bench.simulation.wiring.word_lines
    bench.switch.exclusive_close([matrix_channel("A", 1), matrix_channel("B", word_lines + 1)])
    bench.smu.set_compliance(1e-4)
    t0 = bench.clock.now()
    out = bench.smu.list_sweep(np.array([0.1, 0.2, 0.1]), 10e-3)
    assert bench.clock.now() - t0 >= 0.03  # three 10 ms points
    g = chip.truth().g[1, 1]
    assert np.allclose(out / np.array([0.1, 0.2, 0.1]), g, rtol=0.08)
    assert emulator(bench).channels[1].mode == "FIX" and not emulator(bench).output


def test_write_verify_programs_the_array_through_the_smu_and_switch(bench):
    chip = bench.simulation.chip
    assert bench.array.form() == 64
    params = write_verify_params(bench.datasheet)
    # the datasheet's nominal widths start at 1 us; the B2900's shortest pulse is 50 us
    model = dataclasses.replace(params.pulse_model, width_reference=MIN_PULSE_WIDTH_S)
    params = dataclasses.replace(params, pulse_model=model)
    target = np.random.default_rng(1).uniform(1 * US, 40 * US, bench.array.shape)
    result = protocols.write_verify(bench.array, target, clock=bench.clock, params=params)
    truth = chip.truth()
    responsive = ~truth.stuck & (target >= truth.g_min) & (target <= truth.g_max)
    in_band = np.abs(truth.g - target) <= 1 * US
    assert in_band[responsive].mean() >= 0.95
    assert result.pulses.sum() > 0
    assert list(emulator(bench).errors) == []
    lim, seen = bench.limits, bench.simulation.observed.maxima
    assert seen["smu_dwell"] <= max(lim.max_pulse_width, lim.max_forming_width)
    assert seen["smu_voltage"] <= lim.max_source_voltage


def test_one_microsecond_pulses_are_refused_not_lengthened(bench):
    """The driver never turns a 1 us request into a 50 us pulse; write-verify, told the
    controller's shortest pulse (``min_pulse_width_s``), never asks for one."""
    bench.array.form()
    with pytest.raises(ArgumentError, match="shortest pulse"):
        bench.smu.pulse(2.0, 1e-6)
    assert bench.array.min_pulse_width_s == KeysightB2900.min_pulse_width_s
    target = np.full(bench.array.shape, 20 * US)
    result = protocols.write_verify(bench.array, target, clock=bench.clock,
                                    params=write_verify_params(bench.datasheet))
    assert result.cells == target.size


def test_channel_two_works_and_reaches_no_cell(bench):
    sim = bench.simulation
    sim.chip.form()
    rm = pyvisa.ResourceManager(sim.visa_library())
    session = VisaSession(rm, sim.resources()["keysight-b2900"], name="ch2", retries=0)
    ch2 = KeysightB2900(session, bench.guard, bench.datasheet, channel=2)
    word_lines = sim.wiring.word_lines
    bench.switch.exclusive_close([matrix_channel("A", 0), matrix_channel("B", word_lines)])
    ch2.set_compliance(1e-4)
    ch2.set_voltage(0.2)
    ch2.output(True)
    assert abs(ch2.measure_current()) < 1e-9  # channel 2 is not wired to the probe card
    state = emulator(bench).channels
    assert state[2].output and state[2].level == 0.2
    assert not state[1].output and state[1].level == 0.0
    ch2.output(False)
    session.close()


# -- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize("transport", ["inprocess", "tcp"])
def test_channel_three_in_a_bench_config_names_role_and_option(transport):
    with pytest.raises(BenchConfigError, match="roles.smu.*channel"):
        Bench(config_from_dict(bench_doc(transport, channel=3)))


def test_an_scpi_error_reply_reaches_the_caller(bench):
    # the driver switched automatic output-on off: a reading with the output off is refused
    bench.smu.set_voltage(0.2)
    with pytest.raises(InstrumentReportedError, match="-200.*output is off"):
        bench.smu.measure_current()
    assert list(emulator(bench).errors) == []  # the session drained the queue


@pytest.mark.parametrize("transport", ["inprocess", "tcp"])
def test_an_instrument_answering_another_idn_is_refused_before_output(transport):
    servers = None
    if transport == "inprocess":  # the bench's own 2450, at its in-process resource
        resource = "TCPIP::127.0.0.1::5026::SOCKET"
    else:  # a 2450 emulator on a loopback port of its own station
        station = SimBench(rows=8, cols=8)
        servers = station.serve()
        resource = servers.resources["smu"]
    try:
        with Bench(config_from_dict(bench_doc(transport, resource=resource))) as bench:
            sim = bench.simulation if servers is None else station
            keithley = sim.emulators["smu"]
            seen = []
            original = keithley.process
            keithley.process = lambda message: (seen.append(message), original(message))[1]
            bench.prober.goto(12)
            for call in (lambda: bench.smu.output(True), lambda: bench.smu.set_voltage(0.2),
                         lambda: bench.smu.pulse(2.0, 1e-4)):
                with pytest.raises(WrongInstrumentError, match="MODEL 2450"):
                    call()
            with pytest.raises(WrongInstrumentError):  # the array's reads stop there too
                bench.array.read()
            assert set(seen) == {b"*IDN?"}  # nothing but the question who it is
            assert not keithley.output and keithley.level == 0.0
    finally:
        if servers is not None:
            servers.stop()


def test_the_contracts_bad_arguments_against_the_b2900s_own_emulator(bench):
    """The meta-test runs every smu driver against the 2450 emulator, where this one stops
    at its identity check; here the same bad calls reach the B2900 emulator."""
    from tests.instruments.test_driver_contract import bad_argument_sweep

    sim = bench.simulation
    rm = pyvisa.ResourceManager(sim.visa_library())
    session = VisaSession(rm, sim.resources()["keysight-b2900"], name="b2900", retries=0,
                          timeout_s=0.05)
    drv = KeysightB2900(session, bench.guard, bench.datasheet)
    escaped, accepted = bad_argument_sweep(drv)
    assert not escaped, escaped
    assert not accepted, accepted
    lim, seen = bench.limits, sim.observed.maxima
    assert seen.get("smu_voltage", 0) <= lim.max_source_voltage
    assert seen.get("compliance", 0) <= lim.max_compliance
    session.close()
