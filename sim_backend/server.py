"""Loopback TCP servers for the simulated instruments (pyvisa-py ``::SOCKET``).

Each instrument listens on its own port of 127.0.0.1 (never another address)
and frames messages exactly as the in-process library does. Whatever bytes a
client sends, the instrument answers them as it answers any bad command (an
error on its error queue) and the connection stays usable; only a message
beyond the framing buffer's maximum size closes it.
"""

from __future__ import annotations

import numbers
import socket
import socketserver
import threading

from sim_backend.faults import EndpointFault
from sim_backend.framing import FramingError, MessageBuffer

LOOPBACK = ("127.0.0.1", "localhost", "::1")
BACKLOG = 128  # pending connections per port: a burst of clients connects without stalling


class ServerError(RuntimeError):
    """A server could not start (port in use or out of range, non-loopback address)."""


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        endpoint = self.server.endpoint
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = MessageBuffer()
        quickack = getattr(socket, "TCP_QUICKACK", None)
        while True:
            try:
                data = sock.recv(1 << 20)
                if quickack is not None:  # ACK at once: clients that write twice in a row
                    sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)  # are not held by Nagle
            except OSError:
                return
            if not data:
                return
            try:
                messages = buffer.feed(data)
            except FramingError:  # a message beyond the buffer's maximum size
                return
            for message in messages:
                try:
                    reply = endpoint.handle(message)
                except EndpointFault as fault:
                    if fault.drops_connection:  # "drop", "reboot"
                        sock.shutdown(socket.SHUT_RDWR)
                        return
                    continue  # timeout: never answer this message
                if reply:
                    try:
                        sock.sendall(reply)
                    except OSError:
                        return


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = BACKLOG

    def __init__(self, address, endpoint) -> None:
        self.endpoint = endpoint
        super().__init__(address, _Handler)


class SimServers:
    """One TCP server per instrument of a :class:`SimBench`."""

    def __init__(self, bench, host: str = "127.0.0.1", ports: dict[str, int] | None = None):
        if host not in LOOPBACK:
            raise ServerError(f"the simulator serves on loopback only, not {host!r}")
        self.bench = bench
        self.host = "127.0.0.1" if host == "localhost" else host
        self.ports = dict(ports or {})
        for role, port in self.ports.items():
            if (isinstance(port, bool) or not isinstance(port, numbers.Integral)
                    or not 1 <= port <= 65535):
                raise ServerError(f"cannot serve {role} on port {port!r}: "
                                  "a TCP port is a whole number from 1 to 65535")
            self.ports[role] = int(port)
        self._servers: dict[str, _Server] = {}
        self._threads: list[threading.Thread] = []

    def start(self) -> SimServers:
        for role, endpoint in self.bench.emulators.items():
            port = self.ports.get(role, 0)
            try:
                server = _Server((self.host, port), endpoint)
            except OSError as exc:
                self.stop()
                raise ServerError(f"cannot serve {role} on {self.host}:{port}: {exc}") from None
            self._servers[role] = server
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                                      name=f"sim-{role}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    @property
    def resources(self) -> dict[str, str]:
        return {role: f"TCPIP::{self.host}::{s.server_address[1]}::SOCKET"
                for role, s in self._servers.items()}

    def stop(self) -> None:
        for server in self._servers.values():
            server.shutdown()
            server.server_close()
        self._servers.clear()

    def __enter__(self) -> SimServers:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
