"""Injected faults at the emulators: what a driver sees on the wire.

The reboot fault: the array controller restarts during a transaction, so the
connection is lost and the board answers afterwards from its power-on state.
"""

from __future__ import annotations

import socket

import numpy as np
import pytest

from sim_backend.bench import SimBench
from sim_backend.faults import FaultError
from sim_backend.framing import block

pyvisa = pytest.importorskip("pyvisa")


class _Visa:
    """The array controller through the in-process VISA library."""

    def __init__(self, bench: SimBench) -> None:
        self.rm = pyvisa.ResourceManager(bench.visa_library())
        self.resource = bench.resources()["array"]
        self.open()

    def open(self) -> None:
        self.inst = self.rm.open_resource(self.resource, read_termination="\n",
                                          write_termination="\n", timeout=500)

    def reconnect(self) -> None:
        self.inst.close()
        self.open()

    def ask(self, text: str) -> str:
        return self.inst.query(text)

    def write(self, text: str) -> None:
        self.inst.write(text)

    def pulse(self, volts: np.ndarray, width: float) -> str:
        self.inst.write_raw(f":PULS:ARR? {width:.9g},".encode()
                            + block(volts.astype("<f4").tobytes()) + b"\n")
        return self.inst.read()

    def close(self) -> None:
        self.inst.close()
        self.rm.close()


class _Tcp:
    """The array controller over a loopback socket."""

    lost = (ConnectionError, TimeoutError)

    def __init__(self, bench: SimBench) -> None:
        self.servers = bench.serve()
        self.port = int(self.servers.resources["array"].split("::")[2])
        self.open()

    def open(self) -> None:
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=2.0)
        self.buf = b""

    def reconnect(self) -> None:
        self.sock.close()
        self.open()

    def _line(self) -> str:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("connection closed by the instrument")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()

    def ask(self, text: str) -> str:
        self.sock.sendall(text.encode() + b"\n")
        return self._line()

    def write(self, text: str) -> None:
        self.sock.sendall(text.encode() + b"\n")

    def pulse(self, volts: np.ndarray, width: float) -> str:
        self.sock.sendall(f":PULS:ARR? {width:.9g},".encode()
                          + block(volts.astype("<f4").tobytes()) + b"\n")
        return self._line()

    def close(self) -> None:
        self.sock.close()
        self.servers.stop()


_Visa.lost = (pyvisa.errors.VisaIOError,)


@pytest.fixture(params=["inprocess", "tcp"])
def board(request):
    bench = SimBench(rows=8, cols=8)
    bench.die_id, bench.in_contact = 12, True
    bench.chip.form()
    link = (_Visa if request.param == "inprocess" else _Tcp)(bench)
    yield bench, link
    link.close()


def _configure(link) -> None:
    link.write(":CONF:READ:VOLT 0.25")
    link.write(":CONF:READ:AVER 4")
    assert link.ask(":CONF:READ:VOLT?") == "0.25"
    assert link.ask(":CONF:READ:AVER?") == "4"


def _set_volts(bench) -> np.ndarray:
    return np.full(bench.spec.shape, 1.5, np.float32)


@pytest.mark.parametrize("applied", [False, True])
def test_reboot_mid_batch_loses_the_link_and_resets_the_board(board, applied):
    bench, link = board
    chip = bench.chip
    _configure(link)
    assert int(link.pulse(_set_volts(bench), 1e-6)) > 0
    link.write(":BOGUS")  # an error waiting in the queue
    assert link.ask(":PULS:COUN?") == "1"
    g_before, pulses_before = chip.truth().g_programmed, chip.pulses_applied

    bench.faults.inject("reboot", "array", applied=applied)
    with pytest.raises(link.lost):
        link.pulse(_set_volts(bench), 1e-6)
    assert ("array", "reboot") in bench.faults.fired

    link.reconnect()
    # back from power-on: the batch counter is not before + 1, settings are the defaults
    assert link.ask(":PULS:COUN?") == "0"
    assert float(link.ask(":CONF:READ:VOLT?")) == pytest.approx(bench.spec.window.read_voltage)
    assert link.ask(":CONF:READ:AVER?") == "1"
    assert link.ask(":SYST:ERR?") == '0,"No error"'  # the queue did not survive either
    # the batch in flight reached the cells only if the board applied it before rebooting
    moved = not np.array_equal(chip.truth().g_programmed, g_before)
    assert moved is applied
    assert chip.pulses_applied > pulses_before if applied else \
        chip.pulses_applied == pulses_before
    # and the board works on: one more batch counts from zero
    assert int(link.pulse(_set_volts(bench), 1e-6)) >= 0
    assert link.ask(":PULS:COUN?") == "1"


def test_a_drop_keeps_the_boards_state_a_reboot_does_not(board):
    bench, link = board
    _configure(link)
    link.pulse(_set_volts(bench), 1e-6)
    bench.faults.inject("drop", "array")
    with pytest.raises(link.lost):
        link.pulse(_set_volts(bench), 1e-6)
    link.reconnect()
    assert link.ask(":PULS:COUN?") == "1"  # unchanged: the batch never arrived
    assert link.ask(":CONF:READ:AVER?") == "4"


def test_reboot_after_some_transactions(board):
    bench, link = board
    _configure(link)
    bench.faults.inject("reboot", "array", after=2)
    assert link.ask(":PULS:COUN?") == "0"
    assert link.ask(":CONF:READ:AVER?") == "4"
    with pytest.raises(link.lost):
        link.ask(":CONF:READ:AVER?")
    link.reconnect()
    assert link.ask(":CONF:READ:AVER?") == "1"


def test_reboot_at_the_transaction_level_resets_the_smu():
    bench = SimBench(rows=8, cols=8)
    smu = bench.emulators["smu"]
    smu.handle(b":OUTP ON")
    smu.handle(b":SOUR:VOLT 0.1")
    assert smu.output and smu.level == 0.1
    bench.faults.inject("reboot", "smu")
    from sim_backend.faults import EndpointFault

    with pytest.raises(EndpointFault) as info:
        smu.handle(b":SOUR:VOLT 0.2")
    assert info.value.kind == "reboot" and info.value.drops_connection
    assert not smu.output and smu.level == 0.0  # power-on: output off, not sourcing 0.2 V


def test_reboot_is_refused_where_it_is_not_emulated():
    bench = SimBench(rows=8, cols=8)
    with pytest.raises(FaultError, match="reboot is emulated for"):
        bench.faults.inject("reboot", "prober")
    with pytest.raises(FaultError, match="applied"):
        bench.faults.inject("drop", "array", applied=True)
    with pytest.raises(FaultError, match="unknown fault"):
        bench.faults.inject("brownout", "array")
