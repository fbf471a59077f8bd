"""An in-process PyVISA library: resources answered by emulators, no sockets.

``pyvisa.ResourceManager(SimVisaLibrary(endpoints))`` gives resources that
carry exactly the bytes a TCP socket would, handed straight to an endpoint's
``handle(message) -> reply`` method. Drivers cannot tell it from pyvisa-py.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from pyvisa import constants, highlevel, rname
from pyvisa.constants import ResourceAttribute, StatusCode

from sim_backend.faults import EndpointFault
from sim_backend.framing import FramingError, MessageBuffer


class _Session:
    def __init__(self, name: str, endpoint: Any) -> None:
        self.name = name
        self.endpoint = endpoint
        self.inbox = MessageBuffer()
        self.outbox = bytearray()
        self.attrs: dict[int, Any] = {
            ResourceAttribute.timeout_value: 2000,
            ResourceAttribute.termchar: ord("\n"),
            ResourceAttribute.termchar_enabled: True,
            ResourceAttribute.send_end_enabled: True,
            ResourceAttribute.resource_name: name,
            ResourceAttribute.interface_type: constants.InterfaceType.tcpip,
            ResourceAttribute.resource_class: "SOCKET",
        }
        self.alive = True


class SimVisaLibrary(highlevel.VisaLibraryBase):
    """A VISA library whose resources are in-process emulator endpoints.

    ``endpoints`` maps a resource string (``"TCPIP::127.0.0.1::5025::SOCKET"``)
    to an object with ``handle(bytes) -> bytes | None``, or a factory for one.
    """

    _counter = itertools.count(1)

    def __new__(cls, endpoints: dict[str, Any] | None = None):
        # VisaLibraryBase caches instances by library path; each bench needs its own,
        # so each gets a unique path and is set up as the base class would.
        obj = super().__new__(cls, f"aimc-sim-{next(cls._counter)}")
        obj._endpoints = {_key(k): v for k, v in (endpoints or {}).items()}
        return obj

    def __init__(self, endpoints: dict[str, Any] | None = None) -> None:
        pass

    def _init(self) -> None:
        self.sessions: dict[int, _Session | str] = {}
        self._ids = itertools.count(1)

    @staticmethod
    def get_library_paths():
        return ()

    @staticmethod
    def get_debug_info():
        return {"backend": "aimc-calib in-process simulator"}

    # -- resource manager -------------------------------------------------------
    def open_default_resource_manager(self):
        sid = next(self._ids)
        self.sessions[sid] = "RM"
        return sid, StatusCode.success

    def list_resources(self, session, query: str = "?*::INSTR"):
        return tuple(self._endpoints)

    def parse_resource(self, session, resource_name):
        return self.parse_resource_extended(session, resource_name)

    def parse_resource_extended(self, session, resource_name):
        parsed = rname.parse_resource_name(resource_name)
        return (highlevel.ResourceInfo(parsed.interface_type_const, parsed.board,
                                       parsed.resource_class, str(parsed), None),
                StatusCode.success)

    def open(self, session, resource_name, access_mode=constants.AccessModes.no_lock,
             open_timeout=constants.VI_TMO_IMMEDIATE):
        key = _key(resource_name)
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            return 0, self.handle_return_value(session, StatusCode.error_resource_not_found)
        if isinstance(endpoint, Callable) and not hasattr(endpoint, "handle"):
            endpoint = endpoint()
        sid = next(self._ids)
        self.sessions[sid] = _Session(key, endpoint)
        return sid, StatusCode.success

    def close(self, session):
        self.sessions.pop(session, None)
        return StatusCode.success

    # -- attributes -----------------------------------------------------------
    def get_attribute(self, session, attribute):
        sess = self.sessions.get(session)
        if not isinstance(sess, _Session):
            return 0, StatusCode.error_invalid_object
        if attribute in sess.attrs:
            return sess.attrs[attribute], StatusCode.success
        return 0, StatusCode.error_nonsupported_attribute

    def set_attribute(self, session, attribute, attribute_state):
        sess = self.sessions.get(session)
        if not isinstance(sess, _Session):
            return StatusCode.error_invalid_object
        sess.attrs[attribute] = attribute_state
        return StatusCode.success

    # -- I/O --------------------------------------------------------------------
    def write(self, session, data: bytes):
        sess = self.sessions.get(session)
        if not isinstance(sess, _Session):
            return 0, StatusCode.error_invalid_object
        if not sess.alive:
            return 0, self.handle_return_value(session, StatusCode.error_connection_lost)
        try:
            messages = sess.inbox.feed(bytes(data))
        except FramingError:  # beyond the buffer's size: the link gives up, as over TCP
            sess.alive = False
            return 0, self.handle_return_value(session, StatusCode.error_connection_lost)
        for message in messages:
            try:
                reply = sess.endpoint.handle(message)
            except EndpointFault as fault:
                if fault.drops_connection:  # "drop", "reboot"
                    sess.alive = False
                    return 0, self.handle_return_value(session,
                                                       StatusCode.error_connection_lost)
                continue  # "timeout": the instrument never answers
            if reply:
                sess.outbox += reply
        return len(data), StatusCode.success

    def read(self, session, count: int):
        sess = self.sessions.get(session)
        if not isinstance(sess, _Session):
            return b"", StatusCode.error_invalid_object
        if not sess.alive:
            return b"", self.handle_return_value(session, StatusCode.error_connection_lost)
        if not sess.outbox:
            return b"", self.handle_return_value(session, StatusCode.error_timeout)
        term = sess.attrs[ResourceAttribute.termchar]
        use_term = sess.attrs[ResourceAttribute.termchar_enabled]
        chunk = bytes(sess.outbox[:count])
        if use_term:
            idx = chunk.find(bytes([term]))
            if idx >= 0:
                chunk = chunk[: idx + 1]
                del sess.outbox[: len(chunk)]
                return chunk, StatusCode.success_termination_character_read
        del sess.outbox[: len(chunk)]
        if len(chunk) == count:
            return chunk, StatusCode.success_max_count_read
        return chunk, StatusCode.success

    def clear(self, session):
        sess = self.sessions.get(session)
        if isinstance(sess, _Session):
            sess.outbox.clear()
            sess.inbox = MessageBuffer()
        return StatusCode.success

    def flush(self, session, mask):
        return StatusCode.success

    def read_stb(self, session):
        return 0, StatusCode.success

    def lock(self, session, lock_type, timeout, requested_key=None):
        return "", StatusCode.success

    def unlock(self, session):
        return StatusCode.success

    def disable_event(self, session, event_type, mechanism):
        return StatusCode.success

    def discard_events(self, session, event_type, mechanism):
        return StatusCode.success

    def get_last_status_in_session(self, session):
        return StatusCode.success


def _key(resource: str) -> str:
    return str(rname.parse_resource_name(resource))
