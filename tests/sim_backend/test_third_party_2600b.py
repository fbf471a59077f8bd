"""Drivers written for the real Keithley 2600B work, unchanged, against our emulator.

PyMeasure's ``Keithley2600`` and QCoDeS's ``Keithley2636B`` (both independent of this
project) talk to the emulator over loopback TCP, as to an instrument on the LAN. Every
line they send is captured at the emulator with its reply, and checked against what the
real instrument answers: a setting gets no reply, a ``print(...)`` one line of
tab-separated values (numbers as ``%.5e``, the instrument's default 6 digits), and
nothing lands on the error queue.
"""

from __future__ import annotations

import logging
import re
import uuid
import warnings

import numpy as np
import pytest

from sim_backend.bench import SimBench

pymeasure = pytest.importorskip("pymeasure", reason="pymeasure comes with the 'test' extra")

log = logging.getLogger(__name__)
IDN = "Keithley Instruments Inc., Model 2636B, 04512345, 4.0.5"
EMPTY = "0.00000e+00\tQueue Is Empty\t0.00000e+00\t0.00000e+00"
NUMBER = r"-?\d\.\d{5}e[+-]\d\d"


@pytest.fixture
def station():
    """A formed die in contact, word line 2 and bit line 5 closed onto channel A, the
    instruments served on loopback TCP; every (line, reply) the 2600B gets is recorded."""
    bench = SimBench(rows=16, cols=16)
    bench.die_id, bench.in_contact = 12, True
    bench.chip.form()
    bench.closed_channels.update({"1A03", "2B10"})  # bit line 5: matrix column 16 + 5
    emulator = bench.emulators["keithley2600b"]
    exchanges: list[tuple[str, str | None]] = []
    process = emulator.process

    def recording(message: bytes):
        reply = process(message)
        exchanges.append((message.decode("ascii", "replace").rstrip("\r"),
                          None if reply is None else reply.decode("ascii", "replace")))
        return reply

    emulator.process = recording
    servers = bench.serve()
    try:
        yield bench, servers.resources["keithley2600b"], exchanges
    finally:
        servers.stop()
        emulator.process = process


def check_answers(exchanges, exact: dict[str, str], patterns: dict[str, str]) -> None:
    """Each line answered as a 2600B answers it: settings silently, ``print`` and
    ``*...?`` with exactly one line (``exact`` replies, ``patterns`` regular expressions
    for measurements, else tab-separated values each a number, a word or a boolean)."""
    for line, reply in exchanges:
        log.info("%-72s -> %r", line, reply)
        query = line.startswith("print(") or (line.startswith("*") and line.endswith("?"))
        if not query:
            assert reply is None, (line, reply)
            continue
        assert reply is not None and reply.endswith("\n") and reply.count("\n") == 1, \
            (line, reply)
        text = reply[:-1]
        if line in exact:
            assert text == exact[line], (line, text)
        elif line in patterns:
            assert re.fullmatch(patterns[line], text), (line, text)
        else:
            for field in text.split("\t"):
                assert re.fullmatch(NUMBER, field) or re.fullmatch(r"[\w .,-]+", field), \
                    (line, field)


def test_pymeasure_keithley2600_measures_a_cell(station):
    from pymeasure.adapters import VISAAdapter
    from pymeasure.instruments.keithley import Keithley2600

    bench, resource, exchanges = station
    adapter = VISAAdapter(resource, visa_library="@py", read_termination="\n",
                          write_termination="\n")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "SCPI support unknown"
            smu = Keithley2600(adapter)
        assert "2636B" in smu.id
        a = smu.ChA
        a.apply_voltage(voltage_range=2, compliance_current=1e-4)
        a.measure_current(nplc=1, current=1e-4, auto_range=True)
        a.source_voltage = 0.2
        a.source_output = "ON"
        current = a.current
        assert (a.source_mode, a.compliance_current, a.source_output) == ("voltage", 1e-4, "ON")
        a.ramp_to_voltage(0.0, steps=3, pause=0)
        a.source_output = "OFF"
        b = smu.ChB  # the second channel: not on the switch matrix, an open circuit
        b.source_voltage = 0.1
        b.source_output = "ON"
        assert abs(b.current) < 1e-10
        b.source_output = "OFF"
        assert smu.check_errors() == []
        assert smu.ask("print(errorqueue.count)").strip() == "0.00000e+00"
    finally:
        adapter.close()
    assert current / 0.2 == pytest.approx(bench.chip.truth().g[2, 5], rel=0.05)
    sent = [line for line, _ in exchanges]
    for statement in ("smua.source.func=1", "smua.source.limiti=0.000100",
                      "smua.source.levelv=0.200000", "smua.source.output=1",
                      "print(smua.measure.i())", "smua.source.output=0"):
        assert statement in sent
    check_answers(exchanges, exact={
        "*IDN?": IDN, "print(errorqueue.next())": EMPTY, "print(errorqueue.count)":
        "0.00000e+00", "print(smua.source.func)": "1.00000e+00",
        "print(smua.source.limiti)": "1.00000e-04", "print(smua.source.output)": "1.00000e+00",
        "print(smua.source.levelv)": "2.00000e-01",
    }, patterns={"print(smua.measure.i())": NUMBER, "print(smub.measure.i())": NUMBER})
    assert list(bench.emulators["keithley2600b"].errors) == []


@pytest.fixture
def qcodes_2636b(station):
    # QCoDeS is optional: without it these tests skip and the PyMeasure one still runs
    pytest.importorskip("qcodes", reason="QCoDeS is an optional test dependency "
                                         "(pip install qcodes)")
    from qcodes.instrument_drivers.Keithley import Keithley2636B

    bench, resource, exchanges = station
    instrument = Keithley2636B(f"k2636b_{uuid.uuid4().hex[:8]}", resource, visalib="@py")
    try:
        yield instrument, bench, exchanges
    finally:
        instrument.close()


def test_qcodes_keithley2636b_measures_a_cell(qcodes_2636b):
    k, bench, exchanges = qcodes_2636b
    idn = k.get_idn()
    assert (idn["vendor"], idn["model"]) == ("Keithley Instruments Inc.", "2636B")
    a = k.smua
    a.mode("voltage")
    a.limiti(1e-4)
    a.volt(0.2)
    a.output("on")
    current = a.curr()
    assert a.curr.measurement_status == "No error occured."  # [sic], QCoDeS's wording
    assert (a.limiti(), a.output(), a.mode()) == (1e-4, True, "voltage")
    a.output("off")
    assert k.ask("errorqueue.count") == "0.00000e+00"
    assert current / 0.2 == pytest.approx(bench.chip.truth().g[2, 5], rel=0.05)
    sent = [line for line, _ in exchanges]
    assert sent[0] == "print(localnode.model)"  # how QCoDeS tells the model
    for statement in ("smua.source.func=1", "smua.source.limiti=0.0001",
                      "smua.source.output=1", "smua.source.output=0"):
        assert statement in sent
    measure = "print(smua.measure.i(), status.measurement.instrument.smua.condition)"
    check_answers(exchanges, exact={
        "*IDN?": IDN, "print(localnode.model)": "2636B", "print(errorqueue.count)":
        "0.00000e+00", "print(smua.source.limiti)": "1.00000e-04",
        "print(smua.source.output)": "1.00000e+00", "print(smua.source.func)": "1.00000e+00",
    }, patterns={measure: NUMBER + r"\t0\.00000e\+00"})
    assert list(bench.emulators["keithley2600b"].errors) == []


def test_qcodes_fastsweep_runs_its_lua_script_and_reads_real32(qcodes_2636b):
    """QCoDeS's fastsweep sends a Lua program (loadandrunscript ... endscript, a for loop,
    delay(), a reading buffer) and reads the buffer back as REAL32 binary."""
    from qcodes.dataset import LinSweep

    k, bench, exchanges = qcodes_2636b
    a = k.smua
    a.limiti(1e-4)
    a.setup_fastsweep(LinSweep(a.volt, 0.05, 0.2, 4, 1e-3))
    data = a.fastsweep()
    a.output("off")
    volts = np.linspace(0.05, 0.2, 4)
    g = bench.chip.truth().g[2, 5]
    assert np.allclose(data / volts, g, rtol=0.05)
    sent = [line for line, _ in exchanges]
    assert "loadandrunscript" in sent and "endscript" in sent
    assert k.ask("errorqueue.count") == "0.00000e+00"
    assert list(bench.emulators["keithley2600b"].errors) == []
