"""The Keithley 2600B driver (TSP): exact bytes for every command, then the driver on the
simulated bench (its own emulator) over both transports, scored against ground truth."""

from __future__ import annotations

import numpy as np
import pytest
import pyvisa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import protocols
from calib.wiring.bench import Bench
from calib.wiring.config import BenchConfigError, config_from_dict
from instruments import (
    ArgumentError,
    ComplianceTrip,
    DriverOptionError,
    InstrumentError,
    InstrumentReportedError,
    SafetyError,
    VisaSession,
    WrongInstrumentError,
)
from instruments.drivers import ReferenceArrayController
from instruments.drivers.keithley2600b import Keithley2600B
from instruments.drivers.smu_switch_array import channel
from protocols.profiles import write_verify_params
from tests.harness import dc_read, expected_protocol, guard, scripted_session

US = 1e-6
IDN = "Keithley Instruments Inc., Model 2636B, 04512345, 4.0.5"
EMPTY = "0.00000e+00\tQueue Is Empty\t0.00000e+00\t0.00000e+00"
SMUB_MISSING = ("-2.86000e+02\tTSP Runtime error at line 1: attempt to index global `smub' "
                "(a nil value)\t2.00000e+01\t1.00000e+00")


def configure(smu="smua"):
    """What the first configuring or sourcing command sends before its own bytes."""
    return [("*IDN?", IDN),
            (f"{smu}.source.func = {smu}.OUTPUT_DCVOLTS; "
             f"{smu}.source.autorangev = {smu}.AUTORANGE_ON; "
             f"{smu}.measure.autorangei = {smu}.AUTORANGE_ON", None),
            ("print(errorqueue.next())", EMPTY)]


def sweep_setup(smu="smua"):
    """The trigger model, set once before the first sweep."""
    return [(f"{smu}.trigger.arm.count = 1; {smu}.trigger.arm.stimulus = 0; "
             f"{smu}.trigger.source.stimulus = 0; {smu}.trigger.measure.stimulus = 0; "
             f"{smu}.trigger.endpulse.stimulus = 0; "
             f"{smu}.trigger.source.action = {smu}.ENABLE; "
             f"{smu}.trigger.source.limiti = {smu}.LIMIT_AUTO; "
             f"{smu}.trigger.measure.action = {smu}.ENABLE; "
             f"{smu}.trigger.measure.i({smu}.nvbuffer1); "
             f"{smu}.trigger.endpulse.action = {smu}.SOURCE_HOLD; "
             f"{smu}.trigger.endsweep.action = {smu}.SOURCE_IDLE; "
             f"{smu}.nvbuffer1.appendmode = 0", None),
            ("print(errorqueue.next())", EMPTY)]


def run(table, n, delay, switch=True, smu="smua"):
    """The one line that loads, runs and reads back a sweep."""
    on = [f"{smu}.source.output = {smu}.OUTPUT_ON"] if switch else []
    off = [f"{smu}.source.output = {smu}.OUTPUT_OFF"] if switch else []
    return "; ".join([f"{smu}.trigger.source.listv({table})", f"{smu}.trigger.count = {n}",
                      f"{smu}.source.delay = {delay}", f"{smu}.nvbuffer1.clear()", *on,
                      f"{smu}.trigger.initiate()", "waitcomplete()", *off,
                      f"printbuffer(1, {n}, {smu}.nvbuffer1.readings, "
                      f"{smu}.nvbuffer1.statuses)"])


def protocol(script, **options):
    return expected_protocol(lambda s: Keithley2600B(s, guard(), **options), script,
                             **Keithley2600B.session_options)


# -- exact bytes --------------------------------------------------------------------------
def test_dc_source_measure_and_a_compliance_trip():
    with protocol([*configure(),
                   ("smua.source.limiti = 0.0001", None),
                   ("smua.source.levelv = 0.2", None),
                   ("smua.source.output = smua.OUTPUT_ON", None),
                   ("print(smua.measure.i(), smua.source.compliance)", "2.00000e-06\tfalse"),
                   ("print(smua.measure.i(), smua.source.compliance)", "1.00000e-04\ttrue"),
                   ("smua.source.output = smua.OUTPUT_OFF", None)]) as drv:
        assert dc_read(drv, 1e-4, 0.2) == pytest.approx(2e-6)
        with pytest.raises(ComplianceTrip, match="compliance tripped at 0.0001 A"):
            drv.measure_current()
        drv.output(False)


def test_output_on_first_sets_zero_volts_and_the_chips_compliance():
    """Never on at a level or a limit someone else left on the instrument."""
    with protocol([*configure(),
                   ("smua.source.levelv = 0", None),
                   ("smua.source.limiti = 0.0002", None),  # the datasheet's max_compliance
                   ("smua.source.output = smua.OUTPUT_ON", None),
                   ("smua.source.output = smua.OUTPUT_ON", None)]) as drv:
        drv.output(True)
        drv.output(1)  # numeric booleans too; nothing re-sent but the state


def test_averaging_filter_and_nplc():
    with protocol([*configure(),
                   ("smua.measure.filter.type = smua.FILTER_REPEAT_AVG; "
                    "smua.measure.filter.count = 16; smua.measure.filter.enable = smua.FILTER_ON",
                    None),
                   ("print(errorqueue.next())", EMPTY),
                   ("smua.measure.filter.enable = smua.FILTER_OFF", None),
                   ("print(errorqueue.next())", EMPTY),
                   ("smua.measure.nplc = 0.01", None)]) as drv:
        drv.set_averaging(16)
        drv.set_averaging(1)
        drv.set_nplc(0.01)


def test_pulses_run_on_the_trigger_model_in_one_line():
    with protocol([*configure(), *sweep_setup(),
                   ("smua.source.levelv = 0", None),  # the idle level, before the output is on
                   ("smua.source.limiti = 0.0002", None),
                   (run("{1.5, 0}", 2, "1e-05"), "1.50000e-05, 4.00000e+00, 1.0e-12, 4.00000e+00"),
                   (run("{5, 0}", 2, "0.001"), "2.00000e-04, 6.80000e+01, 0.0, 4.00000e+00"),
                   ("smua.source.output = smua.OUTPUT_ON", None),
                   # the output already on: the sweep leaves it on, at the idle level
                   (run("{-2, 0}", 2, "5e-05", switch=False), "-1.0e-05, 4.0, 0.0, 4.0")]) as drv:
        assert drv.pulse(1.5, 10e-6) == pytest.approx(1.5e-5)
        # held at the limit while forming is the limit doing its job, not a trip
        assert drv.form_pulse(5.0, 1e-3) == pytest.approx(2e-4)
        drv.output(True)
        assert drv.pulse(-2.0, 50e-6) == pytest.approx(-1e-5)


def test_list_sweep_reads_and_a_trip_at_read_level():
    with protocol([*configure(), *sweep_setup(),
                   ("smua.source.levelv = 0", None),
                   ("smua.source.limiti = 0.0002", None),
                   (run("{0.1, 0.2, 0}", 3, "0.01"),
                    "1.0e-06, 4.0, 2.0e-06, 4.0, 0.0, 4.0"),
                   (run("{0.2, 0.1}", 2, "0.001"), "2.0e-04, 68, 1.0e-04, 4.0")]) as drv:
        out = drv.list_sweep(np.array([0.1, 0.2, 0.0]), 10e-3)  # read level: any dwell
        assert np.allclose(out, [1e-6, 2e-6, 0.0])
        with pytest.raises(ComplianceTrip, match="read level"):
            drv.list_sweep([0.2, 0.1], 1e-3)


def test_a_long_list_is_assembled_in_chunks_then_checked_before_it_runs():
    volts = np.full(150, 0.1)
    volts[-1] = 0.0
    first = "aimc_sweep = {" + ", ".join(["0.1"] * 100) + "}"
    rest = ("aimc_chunk = {" + ", ".join(["0.1"] * 49 + ["0"]) + "}; "
            "for i = 1, 50 do aimc_sweep[100 + i] = aimc_chunk[i] end")
    readings = ", ".join(["1.00000e-06, 4.00000e+00"] * 150)
    with protocol([*configure(), *sweep_setup(),
                   ("smua.source.levelv = 0", None),
                   ("smua.source.limiti = 0.0002", None),
                   (first, None), (rest, None), ("print(errorqueue.next())", EMPTY),
                   (run("aimc_sweep", 150, "0.001"), readings)]) as drv:
        out = drv.list_sweep(volts, 1e-3)
    assert out.shape == (150,) and np.allclose(out, 1e-6)


def test_channel_b_drives_smub():
    with protocol([*configure("smub"),
                   ("smub.source.limiti = 5e-05", None),
                   ("smub.source.levelv = -0.1", None),
                   ("smub.source.output = smub.OUTPUT_ON", None),
                   ("print(smub.measure.i(), smub.source.compliance)", "-1.00000e-06\tfalse"),
                   *sweep_setup("smub"),
                   (run("{2, 0}", 2, "1e-06", switch=False, smu="smub"), "1e-05, 4, 0, 4")],
                  channel="b") as drv:
        assert dc_read(drv, 5e-5, -0.1) == pytest.approx(-1e-6)
        assert drv.pulse(2.0, 1e-6) == pytest.approx(1e-5)
        assert drv.configuration()["channel"] == "b"


def test_the_guard_refuses_before_any_byte():
    with protocol([]) as drv:
        with pytest.raises(SafetyError, match="program limit"):
            drv.pulse(5.0, 1e-6)  # forming amplitudes only through form_pulse
        with pytest.raises(SafetyError, match="width"):
            drv.pulse(1.0, 1.0)
        with pytest.raises(SafetyError, match="forming voltage"):
            drv.form_pulse(6.0, 1e-3)
        with pytest.raises(SafetyError, match="forming width"):
            drv.form_pulse(5.0, 0.01)
        with pytest.raises(SafetyError, match="read limit"):
            drv.set_voltage(0.5)  # DC stays at read level
        with pytest.raises(SafetyError, match="dwell"):
            drv.list_sweep([1.0, 0.0], 1.0)  # a point above read level is a pulse
        with pytest.raises(SafetyError, match="end at read level"):
            drv.list_sweep([0.0, 1.0], 1e-6)
        with pytest.raises(SafetyError, match="compliance"):
            drv.set_compliance(1.0)
        with pytest.raises(SafetyError):
            drv.pulse(float("nan"), 1e-6)
        with pytest.raises(ArgumentError):
            drv.list_sweep(np.zeros((2, 2)), 1e-3)
        with pytest.raises(ArgumentError):
            drv.list_sweep([], 1e-3)
        with pytest.raises(ArgumentError, match="averaging"):
            drv.set_averaging(0)
        with pytest.raises(ArgumentError, match="NPLC"):
            drv.set_nplc(100)
        with pytest.raises(ArgumentError):
            drv.output("yes")


@pytest.mark.parametrize("bad", ["c", "smua", "", 1, None, True])
def test_a_channel_that_does_not_exist_is_refused_when_built(bad):
    session, instrument = scripted_session([], **Keithley2600B.session_options)
    with pytest.raises(DriverOptionError, match="channel") as info:
        Keithley2600B(session, guard(), channel=bad)
    assert info.value.option == "channel"
    assert instrument.step == 0  # nothing sent


def test_a_channel_is_named_either_case():
    session, _ = scripted_session([], **Keithley2600B.session_options)
    assert Keithley2600B(session, guard(), channel="B").smu == "smub"


def test_a_tsp_error_reply_is_the_instruments_message():
    with protocol([("*IDN?", IDN),
                   ("smub.source.func = smub.OUTPUT_DCVOLTS; "
                    "smub.source.autorangev = smub.AUTORANGE_ON; "
                    "smub.measure.autorangei = smub.AUTORANGE_ON", None),
                   ("print(errorqueue.next())", SMUB_MISSING),
                   ("print(errorqueue.next())", EMPTY)], channel="b") as drv:
        with pytest.raises(InstrumentReportedError) as info:
            drv.set_voltage(0.1)
    message = str(info.value)
    assert "-286, TSP Runtime error at line 1: attempt to index global `smub' (a nil value)" \
        in message
    assert "\t" not in message  # one readable line, not the queue's raw fields


def test_a_query_the_instrument_refuses_reports_its_error():
    """No reply to a print(): the session asks the queue once and reports its entry."""
    with protocol([*configure(),
                   ("print(smua.measure.i(), smua.source.compliance)", None),
                   ("print(errorqueue.next())",
                    "1.10100e+03\tParameter too big\t2.00000e+01\t1.00000e+00")]) as drv:
        with pytest.raises(InstrumentReportedError, match="1101, Parameter too big"):
            drv.measure_current()


def test_another_instrument_at_the_resource_gets_nothing_but_idn():
    with protocol([("*IDN?", "KEITHLEY INSTRUMENTS,MODEL 2450,04512345,1.7.12b")]) as drv:
        with pytest.raises(WrongInstrumentError, match="MODEL 2450.*Keithley2600B"):
            drv.output(True)


def test_after_a_renewed_link_the_instrument_is_set_up_again_before_the_next_command():
    """A reply that never came (the instrument may have restarted): the next command
    first restores function, limit, level, filter, NPLC and output, then goes out."""
    restore = configure()[1:]  # no second *IDN?
    with protocol([*configure(),
                   ("smua.source.limiti = 0.0001", None),
                   ("smua.source.levelv = 0.2", None),
                   ("smua.measure.nplc = 0.1", None),
                   ("smua.measure.filter.type = smua.FILTER_REPEAT_AVG; "
                    "smua.measure.filter.count = 4; smua.measure.filter.enable = smua.FILTER_ON",
                    None), ("print(errorqueue.next())", EMPTY),
                   ("smua.source.output = smua.OUTPUT_ON", None),
                   ("print(smua.measure.i(), smua.source.compliance)", None),  # no reply
                   ("print(errorqueue.next())", EMPTY),  # nothing queued: a timeout
                   *restore,
                   ("smua.source.limiti = 0.0001", None),
                   ("smua.source.levelv = 0.2", None),
                   ("smua.measure.nplc = 0.1", None),
                   ("smua.measure.filter.type = smua.FILTER_REPEAT_AVG; "
                    "smua.measure.filter.count = 4; smua.measure.filter.enable = smua.FILTER_ON",
                    None),
                   ("smua.source.output = smua.OUTPUT_ON", None),
                   ("print(errorqueue.next())", EMPTY),
                   ("smua.source.levelv = 0.1", None)]) as drv:
        drv.set_compliance(1e-4)
        drv.set_voltage(0.2)
        drv.set_nplc(0.1)
        drv.set_averaging(4)
        drv.output(True)
        with pytest.raises(InstrumentError, match="no answer"):
            drv.measure_current()
        drv.set_voltage(0.1)


def test_identity_is_checked_once():
    with protocol([*configure(), ("smua.source.levelv = 0.1", None),
                   ("smua.source.levelv = 0.2", None)]) as drv:
        drv.set_voltage(0.1)
        drv.set_voltage(0.2)


# -- on the simulated bench ------------------------------------------------------------------
def bench_doc(transport, smu=None):
    return {"chip": {"datasheet": "rram"},
            "simulation": {"transport": transport, "rows": 8, "cols": 8},
            "roles": {"array": {"driver": "smu-switch-array", "word_lines": 8, "bit_lines": 8},
                      "smu": {"driver": "keithley2600b", **(smu or {})},
                      "switch": {"driver": "keithley707b"},
                      "prober": {"driver": "sentio"},
                      "clock": {"driver": "virtual-clock"}}}


def open_sim(transport, smu=None) -> Bench:
    bench = Bench(config_from_dict(bench_doc(transport, smu)))
    bench.prober.goto(12)
    return bench


@pytest.fixture(params=["inprocess", "tcp"])
def transport(request):
    return request.param


def reference_controller(bench) -> ReferenceArrayController:
    """The reference array controller of the same simulated station (in-process)."""
    sim = bench.simulation
    rm = pyvisa.ResourceManager(sim.visa_library())
    session = VisaSession(rm, sim.resources()["array"], name="reference",
                          **ReferenceArrayController.session_options)
    return ReferenceArrayController(session, bench.guard, bench.datasheet)


def test_a_cell_measured_through_the_switch_matrix_is_its_conductance(transport):
    with open_sim(transport) as bench:
        sim = bench.simulation
        sim.chip.form()
        assert "2636B" in bench.smu.identity()
        bench.switch.exclusive_close([channel("A", 2), channel("B", sim.wiring.word_lines + 5)])
        bench.smu.set_compliance(1e-4)
        bench.smu.set_voltage(0.2)
        bench.smu.output(True)
        g = bench.smu.measure_current() / 0.2
        bench.smu.output(False)
        truth = sim.chip.truth().g[2, 5]
        assert g == pytest.approx(truth, rel=0.05)  # read noise ~1 %
        mask = np.zeros((8, 8), bool)
        mask[2, 5] = True
        assert g == pytest.approx(reference_controller(bench).read(mask)[2, 5], rel=0.05)
        bench.smu.check()  # nothing left on the error queue


def test_the_array_read_cell_by_cell_agrees_with_the_reference_controller(transport):
    with open_sim(transport) as bench:
        sim = bench.simulation
        sim.chip.form()
        g = bench.array.read()
        ref = reference_controller(bench).read()
        truth = sim.chip.truth()
        ok = ~truth.stuck
        assert np.median(np.abs(g[ok] / truth.g[ok] - 1)) < 0.02
        assert np.median(np.abs(g[ok] / ref[ok] - 1)) < 0.03  # both within read noise
        assert list(sim.emulators["keithley2600b"].errors) == []


def test_write_verify_programs_the_array_through_the_smu_and_switch(transport):
    with open_sim(transport) as bench:
        assert bench.array.form() == 64  # forming pulses through form_pulse
        target = np.random.default_rng(1).uniform(1 * US, 40 * US, bench.array.shape)
        result = protocols.write_verify(bench.array, target, clock=bench.clock,
                                        params=write_verify_params(bench.datasheet))
        truth = bench.simulation.chip.truth()
        responsive = ~truth.stuck & (target >= truth.g_min) & (target <= truth.g_max)
        in_band = np.abs(truth.g - target) <= 1 * US
        assert responsive.sum() >= 48
        assert in_band[responsive].mean() >= 0.95
        assert result.iterations > 1
        assert list(bench.simulation.emulators["keithley2600b"].errors) == []


def test_channel_b_reaches_the_cells_when_it_is_the_one_on_the_matrix(transport):
    with open_sim(transport, {"channel": "b"}) as bench:
        sim = bench.simulation
        sim.chip.form()
        emulator = sim.emulators["keithley2600b"]
        bench.switch.exclusive_close([channel("A", 1), channel("B", sim.wiring.word_lines + 3)])
        bench.smu.set_compliance(1e-4)
        bench.smu.set_voltage(0.2)
        bench.smu.output(True)
        assert abs(bench.smu.measure_current()) < 1e-9  # channel A is the one on the matrix
        emulator.matrix_channel = "b"
        g = bench.smu.measure_current() / 0.2
        bench.smu.output(False)
        assert g == pytest.approx(sim.chip.truth().g[1, 3], rel=0.05)
        assert emulator.channels["a"].output == 0  # channel A never touched


@pytest.mark.parametrize("after", [0, 2, 3, 5])
def test_an_smu_that_restarts_mid_read_is_set_up_again_and_reads_stay_right(transport, after):
    """A reboot brings the 2600B back at its defaults (output off, a 100 mA limit): the
    driver restores its limit and output and re-takes the reading caught in it."""
    with open_sim(transport) as bench:
        sim = bench.simulation
        sim.chip.form()
        bench.array.read()
        sim.faults.inject("reboot", "smu", after=after)
        g = bench.array.read()
        assert ("smu", "reboot") in sim.faults.fired
        truth = sim.chip.truth()
        ok = ~truth.stuck
        assert np.all(np.abs(g[ok] / truth.g[ok] - 1) < 0.1)
        emulator = sim.emulators["keithley2600b"]
        assert emulator.channels["a"].limiti == pytest.approx(bench.array.compliance)
        assert list(emulator.errors) == []


def test_a_pulse_caught_in_a_restart_is_not_repeated_and_the_next_one_is_limited(transport):
    with open_sim(transport) as bench:
        sim = bench.simulation
        sim.chip.form()
        bench.switch.exclusive_close([channel("A", 0), channel("B", sim.wiring.word_lines)])
        bench.smu.set_compliance(5e-5)
        bench.smu.pulse(1.5, 10e-6)
        sim.faults.inject("reboot", "smu")
        with pytest.raises(InstrumentError):
            bench.smu.pulse(1.5, 10e-6)  # lost with the restart: never sent twice
        bench.smu.pulse(1.5, 10e-6)
        assert sim.emulators["keithley2600b"].channels["a"].limiti == pytest.approx(5e-5)


def test_a_channel_that_does_not_exist_in_a_bench_config_names_role_and_option():
    with pytest.raises(BenchConfigError, match="roles.smu.*option channel.*'c'"):
        Bench(config_from_dict(bench_doc("inprocess", {"channel": "c"})))


def test_a_tsp_error_from_the_instrument_surfaces_with_its_message(transport):
    """Channel B on a one-channel 2635B: the instrument has no smub."""
    with open_sim(transport, {"channel": "b"}) as bench:
        emulator = bench.simulation.emulators["keithley2600b"]
        emulator.set_model("2635B")
        with pytest.raises(InstrumentReportedError,
                           match="-286, TSP Runtime error at line 1: attempt to index global "
                                 "`smub' \\(a nil value\\)"):
            bench.smu.set_voltage(0.2)
        assert emulator.channels["a"].output == 0
        assert list(emulator.errors) == []  # the driver read the queue empty


def wrong_instrument(bench, transport) -> tuple[Keithley2600B, object]:
    """A 2600B driver whose resource is the bench's 2450 (the emulator serving "smu")."""
    sim = bench.simulation
    if transport == "tcp":
        servers = sim.serve()
        rm, resource = pyvisa.ResourceManager("@py"), servers.resources["smu"]
    else:
        servers = None
        rm, resource = pyvisa.ResourceManager(sim.visa_library()), sim.resources()["smu"]
    session = VisaSession(rm, resource, name="smu:keithley2600b", timeout_s=0.5,
                          **Keithley2600B.session_options)
    return Keithley2600B(session, bench.guard, bench.datasheet), servers


def test_an_instrument_answering_another_idn_gets_nothing_before_any_output(transport):
    with open_sim(transport) as bench:
        sim = bench.simulation
        sim.chip.form()
        bench.switch.exclusive_close([channel("A", 0), channel("B", sim.wiring.word_lines)])
        drv, servers = wrong_instrument(bench, transport)
        try:
            for call in (lambda: drv.output(True), lambda: drv.set_voltage(0.2),
                         lambda: drv.pulse(2.0, 10e-6), lambda: drv.measure_current()):
                with pytest.raises(WrongInstrumentError, match="MODEL 2450"):
                    call()
            k2450 = sim.emulators["smu"]
            # the 2450 understood every message it got (only *IDN?: TSP would be -113 there)
            assert list(k2450.errors) == [] and not k2450.output and k2450.level == 0.0
            assert sim.observed.maxima.get("smu_voltage", 0.0) == 0.0
            assert drv.session.transactions == 4  # one *IDN? per refused call
        finally:
            drv.session.close()
            if servers is not None:
                servers.stop()


def test_the_same_resource_in_a_bench_config_is_refused_at_first_use():
    """roles.smu.resource naming the 2450: the bench builds (no I/O), first use refuses."""
    with open_sim("inprocess", {"resource": "TCPIP::127.0.0.1::5026::SOCKET"}) as bench:
        with pytest.raises(WrongInstrumentError, match="answers \\*IDN\\? with"):
            bench.array.read()
        assert not bench.simulation.emulators["smu"].output


# -- the safety property, at the far side of the wire ----------------------------------------
@pytest.fixture(scope="module")
def guarded():
    """A bench whose SMU is the 2600B, a cell closed on its path, every point recorded."""
    bench = open_sim("inprocess")
    sim = bench.simulation
    emulator = sim.emulators["keithley2600b"]
    points: list[tuple[float, float]] = []
    original = emulator._apply

    def recording(smu, volts, seconds, **kw):
        points.append((float(volts), float(seconds)))
        return original(smu, volts, seconds, **kw)

    emulator._apply = recording
    bench.switch.exclusive_close([channel("A", 0), channel("B", sim.wiring.word_lines)])
    yield bench, emulator, points
    emulator._apply = original
    bench.close()


def num(lo, hi):
    return st.one_of(st.floats(lo, hi), st.sampled_from([float("nan"), float("inf"), 0.0]))


REQUEST = st.one_of(
    st.tuples(st.just("compliance"), num(-1, 2), st.just(0.0)),
    st.tuples(st.just("voltage"), st.one_of(num(-20, 20), st.floats(-0.5, 0.5)), st.just(0.0)),
    st.tuples(st.just("output"), st.just(0.0), st.sampled_from([0.0, 1.0])),
    st.tuples(st.just("measure"), st.just(0.0), st.just(0.0)),
    st.tuples(st.just("pulse"), st.one_of(num(-8, 8), st.sampled_from([4.0, 4.01, -4.0])),
              st.one_of(num(-1e-3, 5.0), st.sampled_from([1e-4, 1.01e-4, 1e-6]))),
    st.tuples(st.just("form"), st.one_of(num(-1, 8), st.sampled_from([5.0, 5.01])),
              st.one_of(num(-1e-3, 5.0), st.sampled_from([2e-3, 2.01e-3]))),
    st.tuples(st.just("sweep"), num(-8, 8), st.one_of(num(-1e-3, 5.0), st.just(1e-5))),
)


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(REQUEST, min_size=1, max_size=5))
def test_random_requests_never_put_an_out_of_limit_point_on_a_cell(guarded, requests):
    bench, emulator, points = guarded
    smu, lim = bench.smu, bench.limits
    points.clear()
    for kind, value, width in requests:
        try:
            if kind == "compliance":
                smu.set_compliance(value)
            elif kind == "voltage":
                smu.set_voltage(value)
            elif kind == "output":
                smu.output(bool(width))
            elif kind == "measure":
                smu.measure_current()
            elif kind == "pulse":
                smu.pulse(value, width)
            elif kind == "form":
                smu.form_pulse(value, width)
            else:
                smu.list_sweep(np.array([value, 0.0]), width)
        except InstrumentError:
            pass  # refused before sending, or a trip
        for volts, seconds in points:
            a = abs(volts)
            assert (a <= lim.max_read_voltage
                    or (a <= lim.max_program_voltage and seconds <= lim.max_pulse_width)
                    or (0 < volts <= lim.max_forming_voltage
                        and seconds <= lim.max_forming_width)), (volts, seconds)
        points.clear()
        channel_a = emulator.channels["a"]
        if channel_a.output:
            assert abs(channel_a.present) <= lim.max_read_voltage
        assert bench.simulation.observed.maxima.get("compliance", 0.0) <= lim.max_compliance
    assert list(emulator.errors) == []  # the driver never sent a command the SMU refused
