"""The Keysight B2900 emulator on its own: SCPI forms, channel suffixes and lists, timing
settings set to the instrument's range, and the physics of the probe card behind channel 1
(spot measurements, pulse mode, list sweeps as pulses), faults and the wire log."""

from __future__ import annotations

import numpy as np
import pytest

from sim_backend.bench import SimBench
from sim_backend.emulators import EMULATORS
from sim_backend.emulators.keysight_b2900 import KeysightB2900Emulator

US = 1e-6


@pytest.fixture
def bench():
    b = SimBench(rows=8, cols=8)
    b.die_id, b.in_contact = 12, True
    b.chip.form()
    return b


def smu(bench) -> KeysightB2900Emulator:
    return bench.emulators["keysight-b2900"]


def ask(bench, text: str) -> str | None:
    reply = smu(bench).handle(text.encode())
    return None if reply is None else reply.decode().rstrip("\n")


def errors(bench) -> list[str]:
    found = []
    while (reply := ask(bench, ":SYST:ERR?")) != '+0,"No error"':
        found.append(reply)
    return found


def connect(bench, i: int, j: int) -> None:
    """Word line i onto matrix row A (channel 1 HI), bit line j onto row B (LO)."""
    wl = i
    bl = bench.wiring.word_lines + j
    bench.closed_channels.clear()
    bench.closed_channels.update({f"{wl // 12 + 1}A{wl % 12 + 1:02d}",
                                  f"{bl // 12 + 1}B{bl % 12 + 1:02d}"})


def test_registered_with_its_port():
    assert EMULATORS["keysight-b2900"] is KeysightB2900Emulator
    bench = SimBench(rows=8, cols=8)
    assert bench.resources()["keysight-b2900"] == "TCPIP::127.0.0.1::5031::SOCKET"


def test_identity_reset_and_the_keysight_error_format(bench):
    assert ask(bench, "*IDN?").split(",")[1] == "B2902A"
    assert ask(bench, ":SYST:ERR?") == '+0,"No error"'
    assert ask(bench, ":NO:SUCH:THING 1") is None
    assert ask(bench, ":SYST:ERR?").startswith('-113,"Undefined header')
    ask(bench, ":SOUR:VOLT 0.25")
    ask(bench, "*RST")
    assert ask(bench, ":SOUR:VOLT?") == "+0.000000E+00"
    assert ask(bench, "*OPC?") == "1"


def test_short_and_long_forms_optional_nodes_and_case(bench):
    ask(bench, ":SOURce1:VOLTage:LEVel:IMMediate:AMPLitude 0.125")
    assert ask(bench, ":SOUR1:VOLT?") == "+1.250000E-01"
    ask(bench, "volt 0.15")  # [:SOURce] left out, lower case, no leading colon
    assert ask(bench, "SOURCE1:VOLT?") == "+1.500000E-01"
    ask(bench, ":SENSe1:CURRent:DC:PROTection:LEVel 2e-5")
    assert ask(bench, ":SENS:CURR:PROT?") == "+2.000000E-05"
    ask(bench, ":SOUR:FUNC:SHAP PULSE;:SOUR:PULS:WIDT 2e-4;PULS:DEL 1e-5")  # ';' keeps the path
    assert ask(bench, ":SOUR:FUNC:SHAP?;:SOUR:PULS:WIDT?;:SOUR:PULS:DEL?") == (
        "PULS;+2.000000E-04;+1.000000E-05")
    assert errors(bench) == []


def test_channel_suffixes_and_channel_lists(bench):
    ask(bench, ":SOUR2:VOLT 0.3;:SENS2:CURR:PROT 1e-5")
    assert ask(bench, ":SOUR1:VOLT?;:SOUR2:VOLT?") == "+0.000000E+00;+3.000000E-01"
    ask(bench, ":SOUR2:VOLT 0.1;VOLT:TRIG 0.2")  # a relative header stays on channel 2
    assert ask(bench, ":SOUR2:VOLT:TRIG?") == "+2.000000E-01"
    assert ask(bench, ":SOUR1:VOLT:TRIG?") == "+0.000000E+00"
    ask(bench, ":OUTP1 ON;:OUTP2 ON")
    both = ask(bench, ":MEAS:CURR? (@1,2)").split(",")
    assert len(both) == 2
    assert ask(bench, ":MEAS:CURR? (@1:2)").count(",") == 1
    assert ask(bench, ":SOUR3:VOLT 1") is None
    assert ask(bench, ":SYST:ERR?").startswith('-114,"Header suffix out of range')
    assert ask(bench, ":MEAS:CURR? (@3)") is None
    assert ask(bench, ":SYST:ERR?").startswith("-224")
    assert errors(bench) == []


def test_trigger_parts(bench):
    ask(bench, ":TRIG1:ACQ:DEL 1e-3;:TRIG1:TRAN:DEL 2e-3")
    assert ask(bench, ":TRIG1:ACQ:DEL?;:TRIG1:TRAN:DEL?") == "+1.000000E-03;+2.000000E-03"
    ask(bench, ":TRIG1:DEL 5e-4;:TRIG:ALL:COUN 3;:TRIGger1:SOURce TIMer;:TRIG1:TIM 1e-3")
    state = smu(bench).channels[1].trigger
    assert state["ACQ"].delay == state["TRAN"].delay == 5e-4
    assert state["ACQ"].count == state["TRAN"].count == 3
    assert state["ACQ"].source == state["TRAN"].source == "TIM"
    ask(bench, ":TRIG2:TRAN:COUN 7")
    assert smu(bench).channels[2].trigger["TRAN"].count == 7
    assert smu(bench).channels[2].trigger["ACQ"].count == 1
    assert errors(bench) == []


def test_timing_settings_are_set_to_the_instruments_range(bench):
    ask(bench, ":SOUR1:PULS:WIDT 1e-6")  # shorter than the B2900 can: its minimum
    assert ask(bench, ":SOUR1:PULS:WIDT?") == "+5.000000E-05"
    ask(bench, ":SOUR1:PULS:WIDT MAX")
    assert ask(bench, ":SOUR1:PULS:WIDT?") == "+1.000000E+05"
    ask(bench, ":TRIG1:TIM 1e-6")
    assert ask(bench, ":TRIG1:TIM?") == "+2.000000E-05"
    ask(bench, ":SENS1:CURR:NPLC 1000")
    assert ask(bench, ":SENS1:CURR:NPLC?") == "+1.000000E+02"
    ask(bench, ":SENS1:CURR:APER 2e-3")  # aperture and NPLC are one setting
    assert ask(bench, ":SENS1:CURR:NPLC?") == "+1.000000E-01"
    ask(bench, ":SENS1:CURR:NPLC DEF")
    assert ask(bench, ":SENS1:CURR:APER?") == "+2.000000E-03"
    assert errors(bench) == []
    ask(bench, ":SOUR1:VOLT 300")  # levels are refused, not clipped
    ask(bench, ":SENS1:CURR:PROT 10")
    assert [e[:4] for e in errors(bench)] == ["-222", "-222"]
    assert ask(bench, ":SOUR1:VOLT?") == "+0.000000E+00"


def test_a_spot_measurement_reads_the_connected_cell(bench):
    connect(bench, 2, 5)
    ask(bench, ":SENS1:CURR:PROT 1e-4;:SOUR1:VOLT 0.2;:OUTP1 ON")
    current = float(ask(bench, ":MEAS:CURR? (@1)"))
    assert current / 0.2 == pytest.approx(bench.chip.truth().g[2, 5], rel=0.05)
    assert float(ask(bench, ":MEAS:VOLT? (@1)")) == pytest.approx(0.2)
    assert float(ask(bench, ":MEAS:RES? (@1)")) == pytest.approx(
        1 / bench.chip.truth().g[2, 5], rel=0.05)
    ask(bench, ":OUTP2 ON;:SOUR2:VOLT 0.2")
    assert abs(float(ask(bench, ":MEAS:CURR? (@2)"))) < 1e-9  # channel 2: not on the card
    bench.closed_channels.clear()
    assert abs(float(ask(bench, ":MEAS:CURR? (@1)"))) < 1e-9  # no lines closed
    assert errors(bench) == []


def test_integration_averages_the_read_noise_down(bench):
    connect(bench, 2, 3)  # a cell in the middle of the window (not stuck)
    ask(bench, ":SOUR1:VOLT 0.2;:OUTP1 ON")
    # an hour after forming: a fresh cell's relaxation still wanders by ~1 % within the
    # seconds these 120 readings take, and would swamp the read noise they compare
    bench.chip.advance(3600.0)
    g = bench.chip.truth().g[2, 3]

    def spread(nplc):
        ask(bench, f":SENS1:CURR:NPLC {nplc}")
        readings = [float(ask(bench, ":MEAS:CURR?")) / 0.2 for _ in range(60)]
        return np.std(np.array(readings) / g)

    short, long = spread(0.1), spread(1.6)  # 1 vs 16 conversions
    assert long < short / 2.5
    t0 = bench.clock.now
    ask(bench, ":MEAS:CURR?")
    assert bench.clock.now - t0 >= 1.6 * bench.latency.smu_point_s  # charged per PLC


def test_output_off_and_automatic_output_on(bench):
    ask(bench, ":SOUR1:VOLT 0.1")
    ask(bench, ":MEAS:CURR?")  # the B2900's default: a measurement switches the output on
    assert ask(bench, ":OUTP1?") == "1"
    ask(bench, ":OUTP1 OFF;:OUTP1:ON:AUTO OFF")
    assert ask(bench, ":MEAS:CURR? (@1)") is None  # refused: no reply, an error queued
    assert ask(bench, ":SYST:ERR?").startswith('-200,"Execution error; output is off')
    assert ask(bench, ":INIT (@1)") is None
    assert errors(bench)[0].startswith("-200")
    assert ask(bench, ":OUTP1?;:OUTP1:ON:AUTO?") == "0;0"


def test_compliance_limits_the_reading_and_trips(bench):
    connect(bench, 0, 0)
    ask(bench, ":SENS1:CURR:PROT 1e-6;:SOUR1:VOLT 0.2;:OUTP1 ON")
    assert float(ask(bench, ":MEAS:CURR? (@1)")) == pytest.approx(1e-6)
    assert ask(bench, ":SENS1:CURR:PROT:TRIP?") == "1"
    ask(bench, ":SENS1:CURR:PROT 1e-4")
    ask(bench, ":MEAS:CURR?")
    assert ask(bench, ":SENS1:CURR:PROT:TRIPped?") == "0"
    bench.faults.inject("compliance", "smu")  # a trip on demand
    ask(bench, ":MEAS:CURR?")
    assert ask(bench, ":SENS1:CURR:PROT:TRIP?") == "1"


def pulse(bench, volts: float, width: float, *, delay: float | None = None) -> float:
    acq = width / 4 if delay is None else delay
    ask(bench, f":SOUR1:FUNC:SHAP PULS;:SOUR1:VOLT 0;:SOUR1:VOLT:TRIG {volts};"
               f":SOUR1:PULS:DEL 0;:SOUR1:PULS:WIDT {width};:SENS1:CURR:APER {width / 2};"
               f":TRIG1:SOUR AINT;:TRIG1:COUN 1;:TRIG1:ACQ:DEL {acq};:OUTP1 ON")
    return float(ask(bench, ":INIT (@1);*WAI;:FETC:ARR:CURR? (@1)"))


def test_pulse_mode_is_a_programming_pulse_of_its_width(bench):
    connect(bench, 3, 4)
    ask(bench, ":SENS1:CURR:PROT 2e-4")
    before = bench.chip.truth().g.copy()
    t0 = bench.clock.now
    current = pulse(bench, 2.5, 100e-6)  # a SET
    after = bench.chip.truth().g
    assert after[3, 4] > before[3, 4]
    others = np.ones(after.shape, bool)
    others[3, 4] = False
    assert np.array_equal(after[others], before[others])
    assert current == pytest.approx(after[3, 4] * 2.5, rel=0.1)  # read at the peak
    assert bench.clock.now - t0 >= 100e-6
    seen = bench.observed.maxima
    assert seen["smu_dwell"] == pytest.approx(100e-6) and seen["smu_voltage"] == 2.5
    assert smu(bench).level == 0.0  # the base: the output rests at 0 V
    assert errors(bench) == []


def test_a_pulse_shorter_than_the_minimum_lasts_the_minimum(bench):
    connect(bench, 0, 1)
    pulse(bench, -2.0, 1e-6)
    assert bench.observed.maxima["smu_dwell"] == pytest.approx(50e-6)


def test_an_acquisition_after_the_pulse_reads_the_base(bench):
    connect(bench, 0, 2)
    assert abs(pulse(bench, 2.0, 100e-6, delay=1e-3)) < 1e-9  # measured at 0 V


def test_a_list_sweep_holds_each_point_for_the_timer_period(bench):
    connect(bench, 5, 6)
    ask(bench, ":SOUR1:VOLT:MODE LIST;:SOUR1:LIST:VOLT 0.1,0.2;:SOUR1:LIST:VOLT:APP 0.1;"
               ":SENS1:CURR:APER 1e-4;:TRIG1:SOUR TIM;:TRIG1:TIM 1e-3;:TRIG1:COUN 3;"
               ":TRIG1:ACQ:DEL 4e-4;:OUTP1 ON")
    assert ask(bench, ":SOUR1:LIST:VOLT:POIN?") == "3"
    t0 = bench.clock.now
    currents = [float(x) for x in ask(bench, ":INIT (@1);:FETC:ARR:CURR? (@1)").split(",")]
    assert bench.clock.now - t0 >= 3e-3
    assert [float(x) for x in ask(bench, ":FETC:ARR:SOUR? (@1)").split(",")] == [0.1, 0.2, 0.1]
    g = bench.chip.truth().g[5, 6]
    assert np.allclose(np.array(currents) / [0.1, 0.2, 0.1], g, rtol=0.08)
    assert float(ask(bench, ":FETC:CURR? (@1)")) == currents[-1]
    assert smu(bench).level == pytest.approx(0.1)  # the last point stays on
    ask(bench, ":SOUR1:VOLT:MODE FIX")
    assert smu(bench).level == 0.0
    assert errors(bench) == []


def test_a_sweep_point_above_threshold_is_a_pulse_and_a_long_measurement_stretches_it(bench):
    connect(bench, 4, 4)
    ask(bench, ":SENS1:CURR:PROT 2e-4")
    before = bench.chip.truth().g[4, 4]
    ask(bench, ":SOUR1:VOLT:MODE LIST;:SOUR1:LIST:VOLT -2.5,0;:TRIG1:SOUR TIM;"
               ":TRIG1:TIM 1e-4;:TRIG1:COUN 2;:SENS1:CURR:APER 2e-3;:OUTP1 ON")
    ask(bench, ":INIT (@1)")
    assert bench.chip.truth().g[4, 4] < before  # a RESET
    # the 2 ms measurement does not fit the 100 us period: the point lasts as long as it
    assert bench.observed.maxima["smu_dwell"] == pytest.approx(2e-3)


def test_fetch_without_data_and_an_empty_list(bench):
    assert ask(bench, ":FETC:ARR:CURR? (@1)") is None
    assert ask(bench, ":SYST:ERR?").startswith("-230")
    ask(bench, ":SOUR1:VOLT:MODE LIST;:OUTP1 ON")
    assert ask(bench, ":INIT") is None
    assert ask(bench, ":SYST:ERR?").startswith("-200")


def test_unemulated_modes_are_refused(bench):
    for text in (":SOUR1:FUNC:MODE CURR", ":SOUR1:VOLT:MODE SWE", ":TRIG1:SOUR EXT"):
        assert ask(bench, text) is None
        assert ask(bench, ":SYST:ERR?").startswith("-224"), text


def test_the_wire_log_records_levels_and_limits(bench):
    ask(bench, ":SENS1:CURR:PROT 1.5e-4;:SOUR1:VOLT 0.3")
    assert "smu_voltage" not in bench.observed.maxima  # not while the output is off
    ask(bench, ":OUTP1 ON")
    assert bench.observed.maxima["smu_voltage"] == pytest.approx(0.3)
    assert bench.observed.maxima["compliance"] == pytest.approx(1.5e-4)
    ask(bench, ":SOUR2:VOLT 1.5;:OUTP2 ON")  # channel 2 sources too, into nothing
    assert bench.observed.maxima["smu_voltage"] == pytest.approx(1.5)


def test_a_reboot_comes_back_in_the_power_on_state(bench):
    ask(bench, ":SOUR1:VOLT 0.2;:OUTP1 ON;:OUTP1:ON:AUTO OFF;:NO:SUCH")
    bench.faults.inject("reboot", "smu", applied=True)
    with pytest.raises(Exception, match="reboot"):
        ask(bench, ":SOUR1:VOLT 0.1")
    assert ask(bench, ":OUTP1?;:OUTP1:ON:AUTO?;:SOUR1:VOLT?") == "0;1;+0.000000E+00"
    assert errors(bench) == []


def test_served_over_loopback_tcp(bench):
    import pyvisa

    servers = bench.serve()
    try:
        rm = pyvisa.ResourceManager("@py")
        res = rm.open_resource(servers.resources["keysight-b2900"], read_termination="\n",
                               write_termination="\n", timeout=2000)
        assert "B2902A" in res.query("*IDN?")
        res.write(":SOUR2:VOLT 0.05")
        assert res.query(":SOUR2:VOLT?") == "+5.000000E-02"
        assert res.query(":SYST:ERR?") == '+0,"No error"'
        res.close()
    finally:
        servers.stop()
