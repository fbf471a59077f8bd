"""The emulators parse SCPI as real instruments do."""

from __future__ import annotations

import pytest

from sim_backend.bench import SimBench


@pytest.fixture
def smu():
    return SimBench().emulators["smu"]


def ask(em, text: str) -> str | None:
    reply = em.process(text.encode())
    return None if reply is None else reply.decode().strip()


@pytest.mark.parametrize("command", [
    ":SOUR:VOLT 0.5", ":SOURce:VOLTage 0.5", "sour:volt 0.5", "SOUR:VOLT:LEV 0.5",
    ":source:voltage:level:immediate:amplitude 0.5", "SOURCE:VOLT:LEVEL 0.5",
])
def test_short_long_forms_case_and_optional_nodes(smu, command):
    ask(smu, command)
    assert float(ask(smu, ":SOUR:VOLT?")) == 0.5
    assert ask(smu, ":SYST:ERR?") == '0,"No error"'


def test_compound_commands_and_relative_headers(smu):
    # after ":SOUR:VOLT 0.3" the path is SOUR, so "VOLT:ILIM" means :SOUR:VOLT:ILIM
    assert ask(smu, ":SOUR:VOLT 0.3;VOLT:ILIM 2e-5;:SOUR:VOLT?;VOLT:ILIM?") == (
        "3.000000e-01;2.000000e-05")
    assert ask(smu, ":SOUR:VOLT 0.3;ILIM 2e-5") is None  # SOUR:ILIM does not exist
    assert ask(smu, ":SYST:ERR?").startswith("-113")


def test_queries_with_parameters_and_booleans(smu):
    ask(smu, ":OUTP ON")
    assert ask(smu, ":OUTP?") == "1"
    ask(smu, ":SOUR:LIST:VOLT 0.1,0.2")
    ask(smu, ":SOUR:SWE:VOLT:LIST 1, 0.001")
    ask(smu, ":INIT")
    reply = ask(smu, ':TRAC:DATA? 1, 2, "defbuffer1", SOUR, READ')
    assert len(reply.split(",")) == 4 and float(reply.split(",")[2]) == pytest.approx(0.2)


def test_errors_go_to_the_queue_and_bad_queries_do_not_answer(smu):
    assert ask(smu, ":SOUR:VOLTAGEX 1") is None
    assert ask(smu, ":BOGUS?") is None
    assert ask(smu, ":SOUR:VOLT abc") is None
    assert ask(smu, ":SOUR:VOLT 500") is None
    errors = [ask(smu, ":SYST:ERR?") for _ in range(5)]
    assert errors[0].startswith("-113") and errors[1].startswith("-113")
    assert errors[2].startswith("-104") and errors[3].startswith("-222")
    assert errors[4] == '0,"No error"'


def test_ieee488_common_commands(smu):
    assert "2450" in ask(smu, "*IDN?")
    assert ask(smu, "*OPC?") == "1"
    ask(smu, ":SOUR:VOLT 1")
    ask(smu, "*RST")
    assert float(ask(smu, ":SOUR:VOLT?")) == 0.0
    assert ask(smu, "*LANG?") == "SCPI"


def test_third_party_style_commands_work():
    """Commands as widely used open drivers send them (MEASure?, long forms, no colon)."""
    bench = SimBench()
    em = bench.emulators["smu"]
    for text in ("*RST", "SOURce:FUNCtion VOLT", 'SENSe:FUNCtion "CURR"',
                 "SENSe:CURRent:NPLCycles 1", "SENSe:CURRent:RANGe:AUTO ON",
                 "SOURce:VOLTage:RANGe 2", "SOURce:VOLTage:ILIMit 0.001", "OUTPut ON"):
        assert ask(em, text) is None
    assert ask(em, "SYST:ERR?") == '0,"No error"'
    float(ask(em, "MEASure:CURRent?"))
    float(ask(em, "READ?"))


def test_array_controller_rejects_bad_blocks():
    bench = SimBench()
    em = bench.emulators["array"]
    assert em.process(b":PULS:ARR? 1e-6,#18" + b"\0" * 8) is None  # 2 values, not 4096
    assert ask(em, ":SYST:ERR?").startswith("-222")
    assert em.process(b":PULS:ARR? 1e-6") is None  # no block at all
    assert ask(em, ":SYST:ERR?").startswith("-104")


def test_framing_keeps_newlines_inside_blocks():
    from sim_backend.framing import MessageBuffer, block

    buf = MessageBuffer()
    payload = b"\n\n#\n" * 3
    msg = b":PULS:ARR? 1e-6," + block(payload) + b"\n"
    parts = buf.feed(msg[:10]) + buf.feed(msg[10:25]) + buf.feed(msg[25:] + b"*IDN?\n")
    assert parts == [msg[:-1], b"*IDN?"]


def test_read_averaging_settings_are_range_checked():
    bench = SimBench()
    arr, smu = bench.emulators["array"], bench.emulators["smu"]
    ask(arr, ":CONF:READ:AVER 8")
    assert ask(arr, ":CONF:READ:AVER?") == "8"
    for bad in ("0", "2.5", "2000"):
        ask(arr, f":CONFigure:READ:AVERage {bad}")
        assert ask(arr, ":SYST:ERR?").startswith("-222")
    ask(arr, "*RST")
    assert ask(arr, ":CONF:READ:AVER?") == "1"
    ask(smu, ":SENS:CURR:AVER:COUN 101")
    assert ask(smu, ":SYST:ERR?").startswith("-222")
    ask(smu, ":SENS:CURR:AVER:TCON MOV;:SENS:CURR:AVER:COUN 5;:SENS:CURR:AVER ON")
    assert ask(smu, ":SENS:CURR:AVER:COUN?") == "5" and ask(smu, ":SENS:CURR:AVER?") == "1"
    assert ask(smu, ":SYST:ERR?") == '0,"No error"'


def test_array_controller_cell_lists_are_checked():
    import numpy as np

    from sim_backend.framing import block

    bench = SimBench()
    em = bench.emulators["array"]
    ok = em.process(b":MEAS:ARR:LIST? " + block(np.array([3, 9], "<u4").tobytes()))
    assert ok is not None and ask(em, ":SYST:ERR?") == '0,"No error"'
    for bad in (np.array([9, 3], "<u4").tobytes(),  # not increasing
                np.array([5, 5], "<u4").tobytes(),  # repeated
                np.array([64 * 64], "<u4").tobytes(),  # beyond the array
                b"\0\0\0"):  # not whole entries
        assert em.process(b":MEAS:ARR:LIST? " + block(bad)) is None
        assert ask(em, ":SYST:ERR?")[:4] in ("-222", "-104")
    entry = np.array([(7, 1e9, 1e-6)], dtype=[("i", "<u4"), ("v", "<f4"), ("w", "<f4")])
    assert em.process(b":PULS:ARR:LIST? " + block(entry.tobytes())) is None
    assert ask(em, ":SYST:ERR?").startswith("-222")  # beyond the board's 10 V
