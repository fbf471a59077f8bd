"""Exact bytes for each driver command (and what the driver makes of the replies)."""

from __future__ import annotations

import numpy as np
import pytest

from instruments import ComplianceTrip, ContactError, InstrumentError, ProberError, SafetyError
from instruments.drivers import (
    Keithley707B,
    Keithley2450,
    ReferenceArrayController,
    SentioProber,
    ThermoStream,
    VirtualClock,
)
from instruments.drivers.keithley707b import ChannelError
from tests.harness import dc_read, expected_protocol, f32_block, guard, u8_block


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
        assert dc_read(drv, 1e-4, 0.2) == pytest.approx(4e-6)
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
    volts = np.linspace(0.0, 0.3, 150)  # read level: any dwell the instrument allows
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
    return Keithley707B(session, guard())


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


# -- the SMU's pulses and DC output: timed, within the chip's limits --------------------
CONFIGURE = [(':SOUR:FUNC VOLT;:SENS:FUNC "CURR"', None), (":SYST:ERR?", '0,"No error"')]


def _sweep_steps(points: str, dwell: str, readings: str):
    n = len(points.split(","))
    return [(f":SOUR:LIST:VOLT {points}", None), (f":SOUR:SWE:VOLT:LIST 1, {dwell}", None),
            (f':INIT;*WAI;:TRAC:DATA? 1, {n}, "defbuffer1", READ', readings),
            (":SOUR:VOLT:ILIM:TRIP?", "0")]


def test_2450_pulse_and_form_pulse_are_two_point_sweeps():
    with expected_protocol(smu, [
        *CONFIGURE,
        *_sweep_steps("-2.5,0", "1e-05", "-5.0e-05,1e-12"),
        *_sweep_steps("5,0", "0.001", "1.0e-07,1e-12"),
        *_sweep_steps("3,0", "0.0005", "1.0e-07,1e-12"),
    ]) as drv:
        assert drv.pulse(-2.5, 1e-5) == pytest.approx(-5e-5)
        assert drv.form_pulse(5.0, 1e-3) == pytest.approx(1e-7)
        assert drv.form_pulse(3.0, 5e-4) == pytest.approx(1e-7)  # forming width, lower volts


@pytest.mark.parametrize("call, match", [
    (lambda d: d.pulse(5.0, 9.0), "program limit"),  # 5 V for 9 s on a cell: the review case
    (lambda d: d.pulse(4.5, 1e-5), "program limit"),
    (lambda d: d.pulse(3.0, 2e-4), "pulse width"),
    (lambda d: d.pulse(3.0, 0.0), "positive"),
    (lambda d: d.pulse(float("nan"), 1e-5), "NaN"),
    (lambda d: d.form_pulse(5.5, 1e-3), "forming voltage"),
    (lambda d: d.form_pulse(5.0, 9.0), "forming width"),
    (lambda d: d.form_pulse(-5.0, 1e-3), "forming voltage"),
    (lambda d: d.set_voltage(0.5), "read limit"),
    (lambda d: d.set_voltage(-0.31), "read limit"),
    (lambda d: d.set_voltage(5.0), "read limit"),
    (lambda d: d.list_sweep(np.array([0.1, 3.0, 0.0]), 1e-3), "pulses"),
    (lambda d: d.list_sweep(np.array([0.0, 4.5, 0.0]), 1e-5), "program limit"),
    (lambda d: d.list_sweep(np.array([0.0, 3.0]), 1e-5), "end at read level"),
    (lambda d: d.list_sweep(np.array([0.0, 3.0, 0.0]), 0.0), "pulses"),
])
def test_2450_refuses_untimed_or_oversized_sourcing_before_any_byte(call, match):
    with expected_protocol(smu, []) as drv:
        with pytest.raises(SafetyError, match=match):
            call(drv)


def test_2450_dc_output_never_comes_on_at_an_unknown_level():
    with expected_protocol(smu, [
        *CONFIGURE, (":SOUR:VOLT 0", None), (":OUTP ON", None), (":OUTP OFF", None),
    ]) as drv:
        drv.output(True)  # whatever level the instrument was left at: 0 V first
        drv.output(False)
        for bad in (float("nan"), "on", None, 2):
            with pytest.raises(InstrumentError, match="output"):
                drv.output(bad)


def test_2450_sweep_with_pulse_points_within_limits_is_sent():
    with expected_protocol(smu, [
        *CONFIGURE, *_sweep_steps("0.2,3,-3,0", "5e-05", "1e-06,1e-05,-1e-05,0"),
    ]) as drv:
        out = drv.list_sweep(np.array([0.2, 3.0, -3.0, 0.0]), 5e-5)
    assert out.shape == (4,)


def test_2450_bad_numbers_are_toolkit_errors():
    with expected_protocol(smu, []) as drv:
        for call in (lambda: drv.set_nplc(float("nan")), lambda: drv.set_nplc("fast"),
                     lambda: drv.set_averaging(float("nan")), lambda: drv.set_averaging("8"),
                     lambda: drv.list_sweep("0.1,0.2", 1e-3),
                     lambda: drv.list_sweep(np.array([0.1]), float("nan"))):
            with pytest.raises(InstrumentError):
                call()


def test_2450_list_sweep_above_read_level_with_a_long_dwell_is_refused():
    with expected_protocol(smu, []) as drv:
        with pytest.raises(SafetyError, match="pulses"):
            drv.list_sweep(np.linspace(0.0, 1.0, 150), 1e-3)


class RecordingSmu:
    """An SMU part that records the role calls a composite driver makes."""

    transactions = 0

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __getattr__(self, name):
        def record(*args):
            self.calls.append((name, *args))
            return 1e-6

        return record


class RecordingSwitch(RecordingSmu):
    pass


def test_smu_switch_array_programs_with_pulse_and_forms_with_form_pulse():
    from instruments.drivers import SmuSwitchArray

    smu_part, switch_part = RecordingSmu(), RecordingSwitch()
    arr = SmuSwitchArray(None, guard(), parts={"smu": smu_part, "switch": switch_part},
                         word_lines=2, bit_lines=2, first_bit_column=2)
    volts = np.array([[2.0, 0.0], [0.0, -3.0]])
    assert arr.pulse(volts, width=1e-5) == 2
    assert [c for c in smu_part.calls if c[0] in ("pulse", "form_pulse")] == [
        ("pulse", 2.0, 1e-5), ("pulse", -3.0, 1e-5)]
    smu_part.calls.clear()
    assert arr.form(5.0, 1e-3, mask=np.eye(2, dtype=bool)) == 2
    assert [c for c in smu_part.calls if c[0] in ("pulse", "form_pulse")] == [
        ("form_pulse", 5.0, 1e-3), ("form_pulse", 5.0, 1e-3)]
    with pytest.raises(SafetyError, match="forming width"):
        arr.form(5.0, 9.0)


def test_2450_role_has_the_timed_paths():
    from instruments import SourceMeter

    for method in ("pulse", "form_pulse"):
        assert hasattr(SourceMeter, method) and hasattr(Keithley2450, method)


def test_707b_takes_the_guard_and_refuses_bad_channel_lists():
    from instruments import DriverOptionError

    with expected_protocol(switch, []) as drv:
        assert drv.guard is not None and drv.limits.max_compliance > 0
        for bad in (None, 5, float("nan"), [1, 2], ["1A01", None]):
            with pytest.raises(ChannelError):
                drv.close(bad)
    with pytest.raises(DriverOptionError, match="guard"):
        with expected_protocol(lambda s: Keithley707B(s, None), []):
            pass


def test_707b_garbled_closed_list_is_asked_again():
    with expected_protocol(switch, [
        ('print(channel.getclose("allslots"))', "#\x1bjkak\x18jo"),
        ('print(channel.getclose("allslots"))', "1A01;1B05"),
    ], error_query="print(errorqueue.next())", no_error=lambda r: r.startswith("0"),
            retries=1) as drv:
        assert drv.closed() == ["1A01", "1B05"]


# -- the array controller reset mid-run ------------------------------------------------
def test_array_counter_below_before_is_a_controller_reset():
    from instruments import ControllerResetError

    v = np.array([[1.5, 0.0]])
    batch = b":PULS:ARR? 1e-06," + f32_block(v.ravel())
    with expected_protocol(array, [
        (":ARR:SIZE?", "1,2"), (":PULS:COUN?", "5"),
        (batch, None), (":SYST:ERR?", '0,"No error"'),  # no reply; nothing queued
        (":PULS:COUN?", "0"),  # the board came back from a reset
    ]) as drv:
        with pytest.raises(ControllerResetError,
                           match=r"reset mid-run \(pulse counter 0, expected 5 or 6\).*"
                                 "may not have been applied: re-read the array"):
            drv.pulse(v)


@pytest.mark.parametrize("counter", ["3", "7", "42"])
def test_array_counter_anything_but_before_or_one_more_is_a_reset(counter):
    from instruments import ControllerResetError

    v = np.array([[1.5, 0.0]])
    batch = b":PULS:ARR? 1e-06," + f32_block(v.ravel())
    with expected_protocol(array, [
        (":ARR:SIZE?", "1,2"), (":PULS:COUN?", "5"),
        (batch, None), (":SYST:ERR?", '0,"No error"'), (":PULS:COUN?", counter),
    ]) as drv:
        with pytest.raises(ControllerResetError, match=f"pulse counter {counter}"):
            drv.pulse(v)


def test_array_counter_one_more_means_applied_and_unchanged_means_resend():
    v = np.array([[1.5, 0.0]])
    batch = b":PULS:ARR? 1e-06," + f32_block(v.ravel())
    with expected_protocol(array, [
        (":ARR:SIZE?", "1,2"), (":PULS:COUN?", "5"),
        (batch, None), (":SYST:ERR?", '0,"No error"'), (":PULS:COUN?", "6"),
        (":SYST:ERR?", '0,"No error"'),
        (batch, None), (":SYST:ERR?", '0,"No error"'), (":PULS:COUN?", "6"),
        (":CONF:READ:AVER?", "1"),  # not reset: the settings are the driver's
        (batch, "1"),
        (batch, "1"),
    ]) as drv:
        assert drv.pulse(v) == -1  # applied, reply lost
        assert drv.pulse(v) == 1  # never arrived: sent once more
        assert drv.pulse(v) == 1  # and the counter is in step (7 -> 8)


def test_array_batch_the_board_refused_is_reported_and_not_sent_again():
    from instruments import InstrumentReportedError

    v = np.array([[1.5, 0.0]])
    batch = b":PULS:ARR? 1e-06," + f32_block(v.ravel())
    with expected_protocol(array, [
        (":ARR:SIZE?", "1,2"), (":PULS:COUN?", "5"),
        (batch, None), (":SYST:ERR?", '-222,"Data out of range; pulse width"'),
        (":PULS:COUN?", "5"),  # not applied
    ]) as drv:
        with pytest.raises(InstrumentReportedError, match="-222.*pulse width"):
            drv.pulse(v)


def test_array_forming_batch_whose_reply_is_lost_is_not_sent_again():
    from instruments import InstrumentTimeout

    with expected_protocol(array, [
        (":FORM:ARR? 5,0.001", None), (":SYST:ERR?", '0,"No error"'),
    ], retries=2) as drv:
        with pytest.raises(InstrumentTimeout, match="FORM"):
            drv.form(5.0, 1e-3)


def test_array_counter_unchanged_but_settings_at_defaults_is_a_reset():
    """A board reset with the counter at 0 before: the counter alone cannot tell; the read
    averaging the driver had set, back at 1, can."""
    from instruments import ControllerResetError

    v = np.array([[1.5, 0.0]])
    batch = b":PULS:ARR? 1e-06," + f32_block(v.ravel())
    with expected_protocol(array, [
        (":PULS:COUN?", "0"), (":CONF:READ:AVER 4", None), (":SYST:ERR?", '0,"No error"'),
        (":ARR:SIZE?", "1,2"), (":MEAS:ARR?", f32_block([1e-6, 2e-6])),
        (batch, None), (":SYST:ERR?", '0,"No error"'), (":PULS:COUN?", "0"),
        (":CONF:READ:AVER?", "1"),
    ]) as drv:
        drv.read(averages=4)
        with pytest.raises(ControllerResetError, match="read settings back at defaults"):
            drv.pulse(v)


def test_array_read_after_a_reconnect_restores_settings_of_a_reset_board():
    """A board that restarted under a read: the session's retry succeeds on a board whose
    settings are back at defaults. Its counter gives it away (3 -> 0); the driver sets
    the board up again and repeats the read (a read changes nothing on the chip)."""
    with expected_protocol(lambda s: array(s, read_voltage=0.25), [
        (":CONF:READ:VOLT 0.25", None), (":SYST:ERR?", '0,"No error"'),
        (":PULS:COUN?", "3"), (":CONF:READ:AVER 8", None), (":SYST:ERR?", '0,"No error"'),
        (":ARR:SIZE?", "1,2"),
        (":MEAS:ARR?", None), (":SYST:ERR?", '0,"No error"'),  # no reply; link renewed
        (":MEAS:ARR?", f32_block([9e-6, 9e-6])),  # ... the retry, on a rebooted board
        (":PULS:COUN?", "0"),  # it restarted
        (":CONF:READ:VOLT 0.25", None), (":CONF:READ:AVER 8", None),
        (":SYST:ERR?", '0,"No error"'), (":PULS:COUN?", "0"),
        (":MEAS:ARR?", f32_block([1e-6, 2e-6])),  # the read, repeated as configured
    ], retries=1) as drv:
        out = drv.read(averages=8)
        assert np.allclose(out, [[1e-6, 2e-6]])
        assert drv.configuration()["read_averages"] == 8


def test_array_read_settings_at_defaults_after_a_reconnect_are_restored():
    """With no batch sent yet the counter cannot tell (0 -> 0); the read averaging the
    driver set, found back at 1, does."""
    with expected_protocol(array, [
        (":PULS:COUN?", "0"), (":CONF:READ:AVER 8", None), (":SYST:ERR?", '0,"No error"'),
        (":ARR:SIZE?", "1,2"),
        (":MEAS:ARR?", None), (":SYST:ERR?", '0,"No error"'),
        (":MEAS:ARR?", f32_block([9e-6, 9e-6])),
        (":PULS:COUN?", "0"), (":CONF:READ:AVER?", "1"),
        (":CONF:READ:AVER 8", None), (":SYST:ERR?", '0,"No error"'), (":PULS:COUN?", "0"),
        (":MEAS:ARR?", f32_block([1e-6, 2e-6])),
        (":MEAS:ARR?", f32_block([1e-6, 2e-6])),  # in step again: nothing more is asked
    ], retries=1) as drv:
        assert np.allclose(drv.read(averages=8), [[1e-6, 2e-6]])
        assert np.allclose(drv.read(averages=8), [[1e-6, 2e-6]])


def test_array_reconnect_with_settings_intact_asks_and_goes_on():
    with expected_protocol(array, [
        (":PULS:COUN?", "2"), (":ARR:SIZE?", "1,2"),
        (":MEAS:ARR?", None), (":SYST:ERR?", '0,"No error"'),
        (":MEAS:ARR?", f32_block([1e-6, 2e-6])),
        (":PULS:COUN?", "2"), (":CONF:READ:AVER?", "1"),  # the same board: nothing redone
    ], retries=1) as drv:
        assert np.allclose(drv.read(), [[1e-6, 2e-6]])


def test_array_bad_arguments_are_toolkit_errors_before_any_byte():
    with expected_protocol(array, [(":ARR:SIZE?", "2,2")]) as drv:
        drv.shape  # noqa: B018 - the only byte this test allows
        for call in (lambda: drv.set_mvm_range("1 mA"), lambda: drv.set_mvm_range(None),
                     lambda: drv.configure_read_averages(float("nan")),
                     lambda: drv.read(averages=float("inf")),
                     lambda: drv.read(averages="4"),
                     lambda: drv.pulse(np.zeros((2, 2)), width="1 us"),
                     lambda: drv.pulse("volts"), lambda: drv.mvm("0.1"),
                     lambda: drv.read_cells([0.5]), lambda: drv.pulse_cells([0], ["x"]),
                     lambda: drv.form(5.0, 1e-3, mask="all")):
            with pytest.raises(InstrumentError):
                call()
