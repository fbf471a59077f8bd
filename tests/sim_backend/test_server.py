"""The transports take any bytes a client sends, as an instrument does, and serve bursts."""

from __future__ import annotations

import socket
import threading

import pytest

from sim_backend.bench import SimBench
from sim_backend.server import ServerError, SimServers, _Server

SCPI_ROLES = ("array", "smu", "clock")
# bad bytes on one line, and the SCPI error an SCPI instrument queues for them
BAD_LINES = [
    (b"\xff\xfe*IDN?\n", -101),  # non-ASCII bytes in a header
    (b"#\xb2\n", -101),  # '#' then a byte that Python's str.isdigit() calls a digit
    (b":PULS:ARR? 1e-6,#2a\xff\n", -161),  # a block header without its length digits
    (b"*IDN? #9\n", -161),  # a block header cut short by the terminator
]


@pytest.fixture(scope="module")
def served():
    bench = SimBench(rows=8, cols=8)
    with bench.serve() as servers:
        yield bench, servers


def _port(servers, role: str) -> int:
    return int(servers.resources[role].split("::")[2])


class _Lines:
    """A raw client socket that reads replies line by line."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=2.0)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def ask(self, text: str) -> str:
        self.send(text.encode() + b"\n")
        return self.line().decode("ascii")

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("bad, code", BAD_LINES)
@pytest.mark.parametrize("role", SCPI_ROLES)
def test_stray_bytes_are_an_scpi_error_and_the_connection_stays(served, role, bad, code):
    bench, servers = served
    link = _Lines(_port(servers, role))
    try:
        link.send(bad)
        assert link.ask("*IDN?") == bench.emulators[role].idn  # same socket, still answering
        error = link.ask(":SYST:ERR?")
        assert error.startswith(f"{code},"), error
        assert link.ask(":SYST:ERR?") == '0,"No error"'
    finally:
        link.close()


@pytest.mark.parametrize("bad, code", BAD_LINES)
@pytest.mark.parametrize("role", ["switch", "prober", "thermostream"])
def test_stray_bytes_do_not_break_the_other_instruments(served, role, bad, code):
    bench, servers = served
    link = _Lines(_port(servers, role))
    try:
        link.send(bad + b"*IDN?\n")
        idn = bench.emulators[role].idn.encode()
        replies = [link.line() for _ in range(2 if role == "prober" else 1)]
        assert replies[-1] == idn  # SENTIO answers the bad line first, with its error code
        assert all(r.isascii() for r in replies)  # a stray byte is never echoed raw
    finally:
        link.close()


@pytest.mark.parametrize("bad, code", BAD_LINES)
def test_stray_bytes_in_process_are_answered_the_same(bad, code):
    pyvisa = pytest.importorskip("pyvisa")
    bench = SimBench(rows=8, cols=8)
    rm = pyvisa.ResourceManager(bench.visa_library())
    inst = rm.open_resource(bench.resources()["array"], read_termination="\n",
                            write_termination="\n", timeout=500)
    try:
        inst.write_raw(bad)
        assert inst.query("*IDN?") == bench.emulators["array"].idn
        assert inst.query(":SYST:ERR?").startswith(f"{code},")
    finally:
        inst.close()
        rm.close()


def test_a_burst_of_connects_waits_in_the_backlog():
    """40 clients connect before the server accepts any: none is refused or stalled."""
    bench = SimBench(rows=8, cols=8)
    server = _Server(("127.0.0.1", 0), bench.emulators["clock"])
    port = server.server_address[1]
    clients = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    try:
        for _ in range(40):
            # a full accept queue drops the SYN: connect() would wait for the 1 s retransmit
            sock = socket.create_connection(("127.0.0.1", port), timeout=0.5)
            clients.append(sock)
        thread.start()
        for sock in clients:
            sock.settimeout(2.0)
            sock.sendall(b"*IDN?\n")
        for sock in clients:
            assert sock.recv(100) == b"AIMC,VirtualClock,SIM0003,1.0\n"
    finally:
        for sock in clients:
            sock.close()
        if thread.is_alive():
            server.shutdown()  # waits for serve_forever: only if it runs
        server.server_close()


def test_forty_concurrent_clients_are_all_answered(served):
    bench, servers = served
    port = _port(servers, "array")
    barrier = threading.Barrier(40)
    answers: list[bytes] = []
    lock = threading.Lock()

    def client() -> None:
        barrier.wait()
        with socket.create_connection(("127.0.0.1", port), timeout=5.0) as sock:
            sock.sendall(b"*IDN?\n")
            reply = sock.recv(100)
        with lock:
            answers.append(reply)

    threads = [threading.Thread(target=client) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10.0)
    assert answers == [bench.emulators["array"].idn.encode() + b"\n"] * 40


def test_servers_bind_to_loopback_only():
    bench = SimBench(rows=8, cols=8)
    for host in ("0.0.0.0", "192.168.1.10", ""):
        with pytest.raises(ServerError, match="loopback only"):
            SimServers(bench, host=host)
    with bench.serve() as servers:
        assert {s.server_address[0] for s in servers._servers.values()} == {"127.0.0.1"}


@pytest.mark.parametrize("port", [70000, 65536, 0, -1, "5025", 5025.0, True])
def test_a_port_outside_the_tcp_range_is_a_one_line_error(port):
    bench = SimBench(rows=8, cols=8)
    with pytest.raises(ServerError) as info:
        bench.serve(ports={"array": port})
    message = str(info.value)
    assert repr(port) in message and "array" in message and "\n" not in message


def test_a_port_base_near_the_top_names_the_first_bad_port():
    bench = SimBench(rows=8, cols=8)
    ports = {role: 65533 + k for k, role in enumerate(bench.emulators)}  # --port-base 65533
    with pytest.raises(ServerError, match="port 65536"):
        bench.serve(ports=ports)
