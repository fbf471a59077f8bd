"""The Keithley 2600B emulator on its own: TSP as the instrument parses and answers it, its
error queue, and the probe-card physics it shares with the 2450 emulator."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import pyvisa

from sim_backend.bench import SimBench
from sim_backend.emulators.keithley2600b import STEP_BUDGET, Keithley2600BEmulator

EMPTY = "0.00000e+00\tQueue Is Empty\t0.00000e+00\t0.00000e+00"


@pytest.fixture
def bench():
    """A 16x16 die in contact, formed; word line 2 and bit line 5 closed onto the SMUs."""
    b = SimBench(rows=16, cols=16)
    b.die_id, b.in_contact = 12, True
    b.chip.form()
    b.closed_channels.update({"1A03", "2B10"})  # bit line 5 is matrix column 16 + 5
    return b


@pytest.fixture
def smu(bench) -> Keithley2600BEmulator:
    return bench.emulators["keithley2600b"]


def tsp(emulator, line: str) -> str | None:
    """Send one line; the reply without its final newline (None: no reply)."""
    reply = emulator.handle(line.encode())
    return None if reply is None else reply.decode("ascii", "replace")[:-1]


def next_error(emulator) -> tuple[int, str, int, int]:
    code, message, severity, node = tsp(emulator, "print(errorqueue.next())").split("\t")
    return int(float(code)), message, int(float(severity)), int(float(node))


def on_cell(emulator, volts=0.2, limit=1e-4, smu="smua"):
    tsp(emulator, f"{smu}.source.func = {smu}.OUTPUT_DCVOLTS; {smu}.source.limiti = {limit}; "
                  f"{smu}.source.levelv = {volts}; {smu}.source.output = {smu}.OUTPUT_ON")


# -- identity, printing, the error queue ------------------------------------------------------
def test_identity_and_the_node(smu):
    assert tsp(smu, "*IDN?") == "Keithley Instruments Inc., Model 2636B, 04512345, 4.0.5"
    assert tsp(smu, "print(localnode.model)") == "2636B"
    assert tsp(smu, "print(localnode.serialno, localnode.linefreq)") == "04512345\t6.00000e+01"
    assert tsp(smu, "*OPC?") == "1"


def test_print_formats_numbers_with_the_ascii_precision_and_tabs_between_values(smu):
    assert tsp(smu, "print(1)") == "1.00000e+00"
    assert tsp(smu, "print(-0.000123456789, true, nil, 'text')") == \
        "-1.23457e-04\ttrue\tnil\ttext"
    assert tsp(smu, "print(smua.OUTPUT_DCVOLTS, smua.source.output)") == \
        "1.00000e+00\t0.00000e+00"
    tsp(smu, "format.asciiprecision = 10")
    assert tsp(smu, "print(2.54)") == "2.540000000e+00"
    assert tsp(smu, "print(tostring(2.5), 1 .. '')") == "2.5\t1"
    assert tsp(smu, "smua.source.levelv = 0.1") is None  # a setting sends nothing back


def test_the_error_queue_reads_like_the_instruments(smu):
    assert tsp(smu, "print(errorqueue.next())") == EMPTY
    tsp(smu, "x = = 1")
    tsp(smu, "smuc.source.levelv = 1")
    assert tsp(smu, "print(errorqueue.count)") == "2.00000e+00"
    assert next_error(smu) == (-285, "TSP Syntax error at line 1: unexpected symbol near `='",
                               20, 1)
    assert next_error(smu) == (-286, "TSP Runtime error at line 1: attempt to index global "
                                     "`smuc' (a nil value)", 20, 1)
    assert tsp(smu, "print(errorqueue.next())") == EMPTY
    tsp(smu, "bad bad")
    tsp(smu, "errorqueue.clear()")
    assert tsp(smu, "print(errorqueue.count)") == "0.00000e+00"
    tsp(smu, "bad bad")
    tsp(smu, "*CLS")
    assert tsp(smu, "print(errorqueue.count)") == "0.00000e+00"


def test_a_failing_statement_stops_its_line_and_prints_nothing(smu):
    assert tsp(smu, "smua.source.levelv = 0.1; smuc.x = 1; smua.source.levelv = 0.2; "
                    "print(1)") is None
    assert tsp(smu, "print(smua.source.levelv)") == "1.00000e-01"  # ran up to the error
    assert next_error(smu)[0] == -286
    # a syntax error anywhere: nothing of the line runs
    assert tsp(smu, "smua.source.levelv = 0.15 print(1) smua.source.levelv = = 2") is None
    assert tsp(smu, "print(smua.source.levelv)") == "1.00000e-01"
    assert next_error(smu)[0] == -285


@pytest.mark.parametrize("line, code, words", [
    ("smua.source.levelv = 300", 1101, "Parameter too big"),
    ("smua.source.limiti = 0", 1102, "Parameter too small"),
    ("smua.measure.nplc = 30", 1101, "Parameter too big"),
    ("smua.source.func = 5", 1115, "Parameter error"),
    ("smua.source.output = 7", 1115, "Parameter error"),
    ("smua.measure.filter.count = 2.5", 1115, "whole number"),
    ("smua.source.levelv = 'high'", -286, "number expected, got string"),
    ("smua.source.levelv = 0/0", 1115, "finite"),
    ("smua.source.compliance = true", -286, "read-only field `compliance'"),
    ("smua.source.levelx = 1", -286, "unknown field `levelx' of smua.source"),
    ("smua.measure.q()", -286, "attempt to call field `q' (a nil value)"),
    ("print(smua.foo.bar)", -286, "attempt to index field `foo' (a nil value)"),
    ("x = 1 + {}", -286, "attempt to perform arithmetic"),
    ("print('a' .. nil)", -286, "attempt to concatenate"),
    ("print(\"unterminated)", -285, "unfinished string"),
    ("for i = 1, 3 print(i) end", -285, "`do' expected"),
    ("if true then print(1)", -285, "`end' expected"),
    ("*FOO?", -285, "unexpected symbol"),
])
def test_bad_statements_queue_the_instruments_error(smu, line, code, words):
    assert tsp(smu, line) is None
    got_code, message, severity, node = next_error(smu)
    assert got_code == code and words in message, message
    assert (severity, node) == (20, 1)
    assert tsp(smu, "print(errorqueue.count)") == "0.00000e+00"


def test_junk_bytes_and_a_runaway_loop_leave_the_instrument_usable(smu):
    assert smu.handle(b"\xff\xfe smua \x00\n") is None
    assert next_error(smu)[0] in (-285, -286)
    assert tsp(smu, "while true do end") is None
    code, message, _, _ = next_error(smu)
    assert code == -286 and "step budget" in message
    assert tsp(smu, f"n = 0 for i = 1, {STEP_BUDGET // 4} do n = n + 1 end print(n)") == \
        f"{STEP_BUDGET // 4:.5e}"
    assert tsp(smu, "print(1)") == "1.00000e+00"


# -- models and channels ----------------------------------------------------------------------
def test_both_channels_are_independent(smu):
    tsp(smu, "smua.source.levelv = 0.1; smub.source.levelv = -0.2; smub.source.limiti = 1e-5")
    assert tsp(smu, "print(smua.source.levelv, smub.source.levelv)") == \
        "1.00000e-01\t-2.00000e-01"
    assert tsp(smu, "print(smua.source.limiti, smub.source.limiti)") == \
        "1.00000e-01\t1.00000e-05"
    tsp(smu, "smub.reset()")
    assert tsp(smu, "print(smua.source.levelv, smub.source.levelv)") == \
        "1.00000e-01\t0.00000e+00"


def test_a_one_channel_model_has_no_smub(smu):
    smu.set_model("2635B")
    assert "Model 2635B" in tsp(smu, "*IDN?")
    assert tsp(smu, "print(localnode.model)") == "2635B"
    assert tsp(smu, "smub.source.levelv = 1") is None
    assert next_error(smu)[1] == ("TSP Runtime error at line 1: attempt to index global `smub' "
                                  "(a nil value)")
    smu.set_model("2602B")  # two channels, 40 V
    tsp(smu, "smub.source.levelv = 41")
    assert next_error(smu)[0] == 1101


def test_reset_restores_the_defaults(smu):
    tsp(smu, "smua.source.levelv = 0.1; smua.source.limiti = 1e-6; format.asciiprecision = 3")
    tsp(smu, "reset()")
    assert tsp(smu, "print(smua.source.levelv, smua.source.limiti, smua.source.output)") == \
        "0.00000e+00\t1.00000e-01\t0.00000e+00"
    tsp(smu, "smua.source.levelv = 0.1")
    tsp(smu, "*RST")
    assert tsp(smu, "print(smua.source.levelv)") == "0.00000e+00"


def test_a_restart_comes_back_at_power_on(bench, smu):
    tsp(smu, "smua.source.limiti = 1e-6; x = 5")
    tsp(smu, "bad bad")
    smu.power_on()
    assert tsp(smu, "print(smua.source.limiti, x, errorqueue.count)") == \
        "1.00000e-01\tnil\t0.00000e+00"


# -- physics ----------------------------------------------------------------------------------
def test_channel_a_measures_the_connected_cell_and_channel_b_an_open_circuit(bench, smu):
    g = bench.chip.truth().g[2, 5]
    on_cell(smu)
    on_cell(smu, smu="smub")
    i_a = float(tsp(smu, "print(smua.measure.i())"))
    i_b = float(tsp(smu, "print(smub.measure.i())"))
    assert i_a / 0.2 == pytest.approx(g, rel=0.05)
    assert abs(i_b) < 1e-10
    smu.matrix_channel = "b"  # the other channel wired to the matrix
    assert float(tsp(smu, "print(smub.measure.i())")) / 0.2 == pytest.approx(g, rel=0.05)
    assert abs(float(tsp(smu, "print(smua.measure.i())"))) < 1e-10


def test_output_off_or_probes_up_puts_nothing_on_the_cell(bench, smu):
    tsp(smu, "smua.source.levelv = 0.2")
    assert abs(float(tsp(smu, "print(smua.measure.i())"))) < 1e-10  # off: 0 V at the terminals
    on_cell(smu)
    bench.in_contact = False
    assert abs(float(tsp(smu, "print(smua.measure.i())"))) < 1e-10


def test_the_2450_and_the_2600b_see_the_same_cell(bench, smu):
    """One physics (smu_physics) behind both SMU emulators."""
    k2450 = bench.emulators["smu"]
    k2450.handle(b":SOUR:VOLT:ILIM 1e-4;:SOUR:VOLT 0.2;:OUTP ON")
    via_2450 = float(k2450.handle(b":MEAS:CURR?"))
    on_cell(smu)
    via_2600b = float(tsp(smu, "print(smua.measure.i())"))
    assert via_2600b == pytest.approx(via_2450, rel=0.05)


def test_compliance_clamps_and_is_reported_three_ways(bench, smu):
    on_cell(smu, volts=0.2, limit=1e-6)  # the cell wants ~5 uA
    assert tsp(smu, "print(smua.measure.i(), smua.source.compliance)") == "1.00000e-06\ttrue"
    assert tsp(smu, "print(status.measurement.instrument.smua.condition)") == "2.00000e+00"
    tsp(smu, "smua.source.limiti = 1e-4")
    assert tsp(smu, "print(smua.measure.i(), smua.source.compliance)").endswith("\tfalse")
    bench.faults.inject("compliance", "smu")
    assert tsp(smu, "print(smua.measure.i(), smua.source.compliance)") == "1.00000e-04\ttrue"


def test_the_repeat_filter_averages_conversions(smu):
    on_cell(smu)

    def spread(n):
        tsp(smu, f"smua.measure.filter.count = {n}; smua.measure.filter.type = "
                 "smua.FILTER_REPEAT_AVG; smua.measure.filter.enable = smua.FILTER_ON")
        return np.std([float(tsp(smu, "print(smua.measure.i())")) for _ in range(40)])

    assert spread(16) < 0.5 * spread(1)


def sweep(emulator, points, delay, smu="smua", extra=""):
    table = ", ".join(f"{p:g}" for p in points)
    tsp(emulator, f"{smu}.trigger.source.listv({{{table}}}); {smu}.trigger.source.action = "
                  f"{smu}.ENABLE; {smu}.trigger.measure.action = {smu}.ENABLE; "
                  f"{smu}.trigger.measure.i({smu}.nvbuffer1); {smu}.trigger.count = "
                  f"{len(points)}; {smu}.source.delay = {delay}; {extra}"
                  f"{smu}.nvbuffer1.clear(); {smu}.trigger.initiate(); waitcomplete()")
    reply = tsp(emulator, f"printbuffer(1, {len(points)}, {smu}.nvbuffer1.readings, "
                          f"{smu}.nvbuffer1.statuses)")
    values = np.array([float(x) for x in reply.split(", ")])
    return values[0::2], values[1::2].astype(int)


def test_a_list_sweep_is_a_pulse_train_of_the_source_delay(bench, smu):
    chip = bench.chip
    on_cell(smu, volts=0.0)
    before = chip.truth().g[2, 5]
    sweep(smu, [0.2, 0.1, 0.0], 1e-3)  # read level: nothing moves
    assert chip.truth().g[2, 5] == before
    pulses = chip.pulses_applied
    readings, statuses = sweep(smu, [2.0, 2.0, 0.2], 20e-6)  # two SET pulses of 20 us
    assert chip.pulses_applied - pulses == 2
    assert bench.observed.maxima["smu_dwell"] == pytest.approx(20e-6)
    after = chip.truth().g[2, 5]
    assert after > before or chip.truth().stuck[2, 5]
    assert readings[2] / 0.2 == pytest.approx(after, rel=0.05)
    assert not np.any(statuses & 0x40)
    readings, _ = sweep(smu, [-2.5, 0.0], 20e-6)  # a RESET pulse
    assert chip.truth().g[2, 5] < after or chip.truth().stuck[2, 5]


def test_a_sweep_with_the_output_off_sources_nothing(bench, smu):
    pulses = bench.chip.pulses_applied
    readings, _ = sweep(smu, [3.0, 0.0], 50e-6)
    assert bench.chip.pulses_applied == pulses and np.all(np.abs(readings) < 1e-10)


def test_sweep_points_at_the_limit_carry_the_compliance_status(smu):
    on_cell(smu, volts=0.0, limit=1e-6)
    readings, statuses = sweep(smu, [0.2, 0.0], 1e-3)
    assert readings[0] == pytest.approx(1e-6) and statuses[0] & 0x40
    assert not statuses[1] & 0x40


def test_the_output_idles_after_a_sweep_unless_told_to_hold(bench, smu):
    on_cell(smu, volts=0.1)
    sweep(smu, [0.25, 0.2], 1e-3)
    assert smu.channels["a"].present == 0.1  # back at levelv
    sweep(smu, [0.25, 0.2], 1e-3, extra="smua.trigger.endsweep.action = smua.SOURCE_HOLD; ")
    assert smu.channels["a"].present == 0.2


def test_what_is_sourced_is_on_the_wire_log(bench, smu):
    tsp(smu, "smua.source.limiti = 2e-4")
    on_cell(smu, volts=0.1, limit=1e-4)
    sweep(smu, [3.5, 0.0], 10e-6)
    seen = bench.observed.maxima
    assert seen["smu_voltage"] == pytest.approx(3.5)
    assert seen["smu_dwell"] == pytest.approx(10e-6)
    assert seen["compliance"] == pytest.approx(2e-4)


def test_trigger_count_zero_is_an_endless_sweep_and_refused(smu):
    tsp(smu, "smua.trigger.count = 0; smua.trigger.initiate()")
    assert "endless" in next_error(smu)[1]


# -- buffers and binary output -----------------------------------------------------------------
def test_buffers_recall_readings_statuses_and_source_values(smu):
    on_cell(smu)
    sweep(smu, [0.1, 0.2, 0.0], 1e-3)
    assert tsp(smu, "print(smua.nvbuffer1.n)") == "3.00000e+00"
    i2 = float(tsp(smu, "print(smua.nvbuffer1.readings[2])"))
    assert float(tsp(smu, "print(smua.nvbuffer1[2])")) == i2
    assert tsp(smu, "printbuffer(1, 3, smua.nvbuffer1.sourcevalues)") == \
        "1.00000e-01, 2.00000e-01, 0.00000e+00"
    assert tsp(smu, "print(smua.nvbuffer1.readings[9])") == "nil"
    tsp(smu, "smua.nvbuffer1.clear()")
    assert tsp(smu, "print(smua.nvbuffer1.n)") == "0.00000e+00"


def test_measurements_into_a_buffer_append_in_append_mode(smu):
    on_cell(smu)
    tsp(smu, "smua.nvbuffer2.clear(); smua.nvbuffer2.appendmode = 1")
    for _ in range(3):
        tsp(smu, "smua.measure.i(smua.nvbuffer2)")
    assert tsp(smu, "print(smua.nvbuffer2.n)") == "3.00000e+00"
    tsp(smu, "smua.measure.count = 4; smua.measure.v(smua.nvbuffer2)")
    assert tsp(smu, "print(smua.nvbuffer2.n, smua.nvbuffer2.readings[7])") == \
        "7.00000e+00\t2.00000e-01"


def test_printbuffer_binary_formats_and_byte_order(smu):
    tsp(smu, "t = {1.5, -2.25, 1e-6}")
    assert tsp(smu, "printbuffer(1, 3, t)") == "1.50000e+00, -2.25000e+00, 1.00000e-06"
    tsp(smu, "format.data = format.REAL32")
    raw = smu.handle(b"printbuffer(1, 3, t)")
    assert raw[:2] == b"#0" and raw[-1:] == b"\n"
    assert struct.unpack("<3f", raw[2:-1]) == pytest.approx((1.5, -2.25, 1e-6))
    tsp(smu, "format.data = format.REAL64; format.byteorder = format.NORMAL")
    raw = smu.handle(b"printnumber(1.5, 2)")
    assert struct.unpack(">2d", raw[2:-1]) == (1.5, 2.0)
    assert tsp(smu, "print(3)") == "3.00000e+00"  # print() stays ASCII


# -- the Lua a client may send ---------------------------------------------------------------------
def test_scripts_sent_line_by_line(smu):
    for line in ("loadandrunscript\r", "for i = 1, 2 do\r", "  print(i * 10)\r", "end\r"):
        assert tsp(smu, line) is None  # nothing runs before endscript
    assert tsp(smu, "endscript") == "1.00000e+01\n2.00000e+01"
    for line in ("loadscript twice", "function double(x) return 2 * x end",
                 "print(double(21))", "endscript"):
        assert tsp(smu, line) is None
    assert tsp(smu, "twice()") == "4.20000e+01"
    assert tsp(smu, "twice.run()") == "4.20000e+01"
    for line in ("loadandrunscript", "x = 1", "y = = 2", "endscript"):
        tsp(smu, line)
    assert next_error(smu)[1].startswith("TSP Syntax error at line 2:")


def test_the_lua_subset(smu):
    assert tsp(smu, "local a, b = 1, 2 if a < b then print('lt') else print('ge') end") == "lt"
    assert tsp(smu, "local n = 0 repeat n = n + 2 until n >= 7 print(n)") == "8.00000e+00"
    assert tsp(smu, "local t = {x = 3, 4, 5} local s = 0 for k, v in pairs(t) do "
                    "s = s + v end print(s, t.x, t[2])") == \
        "1.20000e+01\t3.00000e+00\t5.00000e+00"
    assert tsp(smu, "local f = function(...) return 7 end print(f(), type(f), type(smua))") == \
        "7.00000e+00\tfunction\tuserdata"
    assert tsp(smu, "print(string.format('%d|%s|%.2f', 3, 'ab', 2.5), math.max(1, 4), 2^3)") == \
        "3|ab|2.50\t4.00000e+00\t8.00000e+00"
    assert tsp(smu, "x = {} table.insert(x, 'a') table.insert(x, 'b') "
                    "print(table.getn(x), x[2], tonumber('12') + 1, not nil)") == \
        "2.00000e+00\tb\t1.30000e+01\ttrue"
    assert tsp(smu, "print(-2^2, 7 - 2 - 1, 1 == 1.0, 'a' < 'b', nil == false)") == \
        "-4.00000e+00\t4.00000e+00\ttrue\ttrue\tfalse"
    assert tsp(smu, "-- a comment\nprint(1) --[[ a long\ncomment ]] print(2)") == \
        "1.00000e+00\n2.00000e+00"


def test_prompts(smu):
    tsp(smu, "localnode.prompts = 1")
    assert tsp(smu, "print(1)") == "1.00000e+00\nTSP>"
    assert tsp(smu, "x = = 1") == "TSP?"  # an error is waiting
    tsp(smu, "errorqueue.clear()")
    assert tsp(smu, "loadandrunscript") == ">>>>"
    assert tsp(smu, "endscript") == "TSP>"


# -- over the wire ---------------------------------------------------------------------------------
def test_served_over_loopback_tcp(bench, smu):
    servers = bench.serve()
    try:
        rm = pyvisa.ResourceManager("@py")
        res = rm.open_resource(servers.resources["keithley2600b"], read_termination="\n",
                               write_termination="\n", timeout=2000)
        assert "2636B" in res.query("*IDN?")
        res.write("smua.source.limiti = 1e-4; smua.source.levelv = 0.2; "
                  "smua.source.output = smua.OUTPUT_ON")
        current = float(res.query("print(smua.measure.i())"))
        assert current / 0.2 == pytest.approx(bench.chip.truth().g[2, 5], rel=0.05)
        res.write("format.data = format.REAL32; t = {1, 2}")
        res.write("printbuffer(1, 2, t)")
        raw = res.read_raw()
        assert raw == b"#0" + struct.pack("<2f", 1.0, 2.0) + b"\n"
        assert res.query("print(errorqueue.next())") == EMPTY
        res.close()
    finally:
        servers.stop()
