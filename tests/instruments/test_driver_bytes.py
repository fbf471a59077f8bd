"""Exact bytes for each driver command (and what the driver makes of the replies)."""

from __future__ import annotations

import numpy as np
import pytest

from instruments import ComplianceTrip, ContactError, ProberError, SafetyError
from instruments.drivers import (
    Keithley707B,
    Keithley2450,
    ReferenceArrayController,
    SentioProber,
    ThermoStream,
    VirtualClock,
)
from instruments.drivers.keithley707b import ChannelError
from tests.harness import expected_protocol, f32_block, guard, u8_block


def array(session, **kw):
    return ReferenceArrayController(session, guard(), **kw)


def test_array_full_read_is_one_block_query():
    g = np.arange(6, dtype=np.float32) * 1e-6
    with expected_protocol(array, [(":PULS:COUN?", "0"), (":ARR:SIZE?", "2,3"),
                                   (":MEAS:ARR?", f32_block(g))]) as drv:
        out = drv.read()
    assert out.shape == (2, 3) and np.allclose(out.ravel(), g)


def test_array_masked_read_sends_the_mask_as_a_block():
    mask = np.array([[True, False, True], [False, False, True]])
    with expected_protocol(array, [(":PULS:COUN?", "0"), (":ARR:SIZE?", "2,3"),
                                   (b":MEAS:ARR:MASK? " + u8_block(mask.ravel()),
                                    f32_block([1e-6, 2e-6, 3e-6]))]) as drv:
        out = drv.read(mask)
    assert np.allclose(out[mask], [1e-6, 2e-6, 3e-6]) and np.isnan(out[~mask]).all()


def test_array_configures_read_voltage_once():
    with expected_protocol(lambda s: array(s, read_voltage=0.2), [
        (":CONF:READ:VOLT 0.2", None), (":SYST:ERR?", '0,"No error"'),
        (":PULS:COUN?", "0"), (":ARR:SIZE?", "1,2"),
        (":MEAS:ARR?", f32_block([1e-6, 2e-6])),
        (":MEAS:ARR?", f32_block([1e-6, 2e-6])),
    ]) as drv:
        drv.read()
        drv.read()


def test_array_read_averages_configure_only_on_change():
    with expected_protocol(array, [
        (":PULS:COUN?", "0"), (":CONF:READ:AVER 4", None), (":SYST:ERR?", '0,"No error"'),
        (":ARR:SIZE?", "1,2"), (":MEAS:ARR?", f32_block([1e-6, 2e-6])),
        (":MEAS:ARR?", f32_block([1e-6, 2e-6])),
        (":CONF:READ:AVER 1", None), (":SYST:ERR?", '0,"No error"'),
        (":MEAS:ARR?", f32_block([1e-6, 2e-6])),
    ]) as drv:
        drv.read(averages=4)
        drv.read(averages=4)
        drv.read(averages=1)
        for bad in (0, 1.5, 2000, True):
            with pytest.raises(ValueError, match="averages"):
                drv.read(averages=bad)


def test_array_board_without_read_averaging_says_what_to_do():
    from instruments import InstrumentError

    with expected_protocol(array, [
        (":PULS:COUN?", "0"), (":CONF:READ:AVER 8", None),
        (":SYST:ERR?", '-113,"Undefined header"'), (":SYST:ERR?", '0,"No error"'),
    ]) as drv:
        with pytest.raises(InstrumentError, match="--read-averages 1"):
            drv.read(averages=8)


def test_array_sparse_read_and_pulse_send_cell_lists():
    """Few cells: a list of row-major indices (uint32) moves fewer bytes than a mask, and
    pulse entries (uint32 index, float32 volts, float32 width) fewer than whole arrays."""
    from sim_backend.framing import block

    mask = np.zeros((4, 8), bool)
    mask[1, 2] = mask[3, 7] = True
    volts = np.zeros((4, 8))
    volts[0, 5], volts[2, 1] = 1.5, -2.0
    entries = np.array([(5, 1.5, 1e-6), (17, -2.0, 1e-6)],
                       dtype=[("i", "<u4"), ("v", "<f4"), ("w", "<f4")])
    with expected_protocol(array, [
        (":PULS:COUN?", "0"), (":ARR:SIZE?", "4,8"),
        (b":MEAS:ARR:LIST? " + block(np.array([10, 31], "<u4").tobytes()),
         f32_block([1e-6, 2e-6])),
        (b":PULS:ARR:LIST? " + block(entries.tobytes()), "2"),
    ]) as drv:
        out = drv.read(mask)
        assert drv.pulse(volts, width=1e-6) == 2
    assert out[1, 2] == pytest.approx(1e-6) and out[3, 7] == pytest.approx(2e-6)
    assert np.isnan(out[~mask]).all()


def test_array_pulse_scalar_and_per_cell_width():
    v = np.array([[1.5, 0.0, -2.0]])
    widths = np.array([[1e-6, 1e-6, 5e-6]])
    with expected_protocol(array, [
        (":ARR:SIZE?", "1,3"),
        (":PULS:COUN?", "0"),
        (b":PULS:ARR? 1e-06," + f32_block(v.ravel()), "2"),
        (b":PULS:ARR:WIDT? " + f32_block(np.concatenate([v.ravel(), widths.ravel()])), "2"),
    ]) as drv:
        assert drv.pulse(v, width=1e-6) == 2
        assert drv.pulse(v, width=widths) == 2


def test_array_mvm_and_form():
    x = np.array([0.1, 0.2])
    with expected_protocol(array, [
        (":ARR:SIZE?", "2,2"), (":PULS:COUN?", "0"),
        (b":MVM? " + f32_block(x), f32_block([1e-5, 2e-5])),
        (":FORM:ARR? 5,0.001", "4"),
        (b":FORM:ARR? 4.5,0.0005," + u8_block([1, 0, 0, 1]), "2"),
    ]) as drv:
        assert np.allclose(drv.mvm(x), [1e-5, 2e-5])
        assert drv.form(5.0, 1e-3) == 4
        assert drv.form(4.5, 5e-4, mask=np.eye(2, dtype=bool)) == 2


def test_array_guard_refuses_before_any_byte():
    with expected_protocol(array, [(":ARR:SIZE?", "1,2")]) as drv:
        drv.shape  # noqa: B018 - the only byte this test allows
        with pytest.raises(SafetyError, match="program limit"):
            drv.pulse(np.array([[5.0, 0.0]]))
        with pytest.raises(SafetyError, match="width"):
            drv.pulse(np.array([[1.0, 0.0]]), width=1.0)
        with pytest.raises(SafetyError, match="read limit"):
            drv.mvm(np.array([0.5, 0.1]))
        with pytest.raises(SafetyError, match="forming voltage"):
            drv.form(7.0, 1e-3)


def smu(session):
    return Keithley2450(session, guard())


def test_2450_source_measure_and_trip():
    with expected_protocol(smu, [
        (':SOUR:FUNC VOLT;:SENS:FUNC "CURR"', None), (":SYST:ERR?", '0,"No error"'),
        (":SOUR:VOLT:ILIM 0.0001", None),
        (":SOUR:VOLT 0.2", None),
        (":OUTP ON", None),
        (":MEAS:CURR?;:SOUR:VOLT:ILIM:TRIP?", "4.0e-06;0"),
        (":MEAS:CURR?;:SOUR:VOLT:ILIM:TRIP?", "1.0e-04;1"),
        (":OUTP OFF", None),
    ]) as drv:
        drv.set_compliance(1e-4)
        drv.set_voltage(0.2)
        drv.output(True)
        assert drv.measure_current() == pytest.approx(4e-6)
        with pytest.raises(ComplianceTrip, match="compliance"):
            drv.measure_current()
        drv.output(False)


def test_2450_averaging_filter():
    with expected_protocol(smu, [
        (':SOUR:FUNC VOLT;:SENS:FUNC "CURR"', None), (":SYST:ERR?", '0,"No error"'),
        (":SENS:CURR:AVER:TCON REP;:SENS:CURR:AVER:COUN 8;:SENS:CURR:AVER ON", None),
        (":SYST:ERR?", '0,"No error"'),
        (":SENS:CURR:AVER OFF", None), (":SYST:ERR?", '0,"No error"'),
    ]) as drv:
        drv.set_averaging(8)
        drv.set_averaging(1)
        with pytest.raises(ValueError, match="averaging"):
            drv.set_averaging(101)


def test_2450_list_sweep_uploads_in_chunks():
    volts = np.linspace(0.0, 1.0, 150)
    first = ",".join(f"{v:.6g}" for v in volts[:100])
    rest = ",".join(f"{v:.6g}" for v in volts[100:])
    readings = ",".join("1e-06" for _ in volts)
    with expected_protocol(smu, [
        (':SOUR:FUNC VOLT;:SENS:FUNC "CURR"', None), (":SYST:ERR?", '0,"No error"'),
        (f":SOUR:LIST:VOLT {first}", None),
        (f":SOUR:LIST:VOLT:APP {rest}", None),
        (":SOUR:SWE:VOLT:LIST 1, 0.001", None),
        (':INIT;*WAI;:TRAC:DATA? 1, 150, "defbuffer1", READ', readings),
        (":SOUR:VOLT:ILIM:TRIP?", "0"),
    ]) as drv:
        out = drv.list_sweep(volts, 1e-3)
    assert out.shape == (150,) and np.allclose(out, 1e-6)


def test_2450_guard():
    with expected_protocol(smu, []) as drv:
        with pytest.raises(SafetyError, match="compliance"):
            drv.set_compliance(1.0)
        with pytest.raises(SafetyError, match="source voltage"):
            drv.set_voltage(6.0)
        with pytest.raises(SafetyError):
            drv.list_sweep(np.array([0.1, 9.0]), 1e-3)


def switch(session):
    return Keithley707B(session)


def test_707b_refuses_bad_channel_names_before_sending():
    with expected_protocol(switch, []) as drv:
        for bad in (["1A13"], ["7A01"], ["1I01"], [], ["1a01"]):
            with pytest.raises(ChannelError, match="slot 1-6"):
                drv.close(bad)


def test_707b_verification_failure_is_reported():
    with expected_protocol(switch, [
        ("channel.connectrule = channel.BREAK_BEFORE_MAKE", None),
        ('channel.close("1A01")', None), ("*OPC?", "1"),
        ('print(channel.getclose("allslots"))', "nil"),
        ("print(errorqueue.next())", "0\tQueue Is Empty\t0\t0"),
    ], error_query="print(errorqueue.next())", no_error=lambda r: r.startswith("0")) as drv:
        with pytest.raises(Exception, match="expected"):
            drv.close(["1A01"])


def test_707b_exact_sequence():
    with expected_protocol(switch, [
        ("channel.connectrule = channel.BREAK_BEFORE_MAKE", None),
        ('channel.close("1A01,1B12")', None), ("*OPC?", "1"),
        ('print(channel.getclose("allslots"))', "1A01;1B12"),
        ('channel.exclusiveclose("1A02,2B05")', None), ("*OPC?", "1"),
        ('print(channel.getclose("allslots"))', "1A02;2B05"),
        ('channel.open("allslots")', None), ("*OPC?", "1"),
        ('print(channel.getclose("allslots"))', "nil"),
    ]) as drv:
        drv.close(["1A01", "1B12"])
        drv.exclusive_close(["1A02", "2B05"])
        drv.open_all()
        assert drv.closed() == []


def prober(session):
    return SentioProber(session, guard())


def test_sentio_goto_separates_steps_and_contacts():
    with expected_protocol(prober, [
        ("*RCS 1", None),
        ("move_chuck_separation", "0,0,OK"),
        ("map:step_die_seq 12, 0", "0,0,7,1,0"),
        ("move_chuck_contact", "0,0,OK"),
        ("move_chuck_separation", "0,0,OK"),
        ("map:step_die 3, 4, 0", "0,0,3,4,0"),
        ("move_chuck_contact", "0,0,OK"),
        ("map:bins:set_bin 1", "0,0,OK"),
    ]) as drv:
        assert drv.goto(12) == (7, 1)
        assert drv.goto((3, 4)) == (3, 4)
        drv.set_bin(1)


def test_sentio_errors_and_contact_retry():
    with expected_protocol(prober, [
        ("*RCS 1", None),
        ("move_chuck_separation", "0,0,OK"),
        ("map:step_die_seq 999, 0", "21,0,no die 999"),
        ("move_chuck_contact", "23,0,contact failed: no continuity"),
        ("move_chuck_separation", "0,0,OK"),
        ("move_chuck_contact", "23,0,contact failed: no continuity"),
    ]) as drv:
        with pytest.raises(ProberError, match="no die 999"):
            drv.goto(999)
        with pytest.raises(ContactError, match="probe card"):
            drv.contact()


def test_sentio_thermal_chuck():
    with expected_protocol(prober, [
        ("*RCS 1", None),
        ("status:set_chuck_temp 85.00", "0,0,OK"),
        ("status:get_chuck_temp", "0,0,84.80"),
        ("status:get_chuck_thermo_state", "0,0,Settled"),
        ("status:get_chuck_temp", "0,0,84.80"),
        ("status:get_chuck_temp_setpoint", "0,0,85.00"),
    ]) as drv:
        with pytest.raises(SafetyError, match="temperature 150"):
            drv.set_temperature(150.0)
        drv.set_temperature(85.0)
        assert drv.temperature() == pytest.approx(84.8)
        assert drv.settled()


def test_thermostream_sequence():
    with expected_protocol(lambda s: ThermoStream(s, guard()), [
        ("SETN 0", None), ("SETP 60.0", None), ("EROR?", "0"),
        ("HEAD down", None), ("WNDW 0.5", None), ("FLOW 1", None), ("EROR?", "0"),
        ("TEMP?", "58.2"), ("TECR?", "2"),
    ], error_query="EROR?", no_error=lambda r: r.strip() == "0") as drv:
        drv.set_temperature(60.0)
        assert drv.temperature() == pytest.approx(58.2)
        assert not drv.settled()


def test_virtual_clock_wait_completes_before_returning():
    with expected_protocol(lambda s: VirtualClock(s, guard()), [
        (":SYST:WAIT 3600;*OPC?", "1"), (":SYST:TIME?", "3600.5"),
    ]) as drv:
        drv.wait(3600)
        assert drv.now() == pytest.approx(3600.5)
        with pytest.raises(SafetyError):
            drv.wait(-1)
