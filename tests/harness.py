"""Exact-bytes driver tests: a scripted instrument that fails on any surprise.

Each step is (bytes the driver must send, reply or None). A message that
differs, a message past the end of the script, or script left unconsumed
fails the test. The driver runs over the real PyVISA stack (in-process library);
a step answered with None is a query the instrument never answers (a timeout).
``LockingLibrary`` is the same library with a VISA lock that can be refused.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pyvisa
from pyvisa.constants import StatusCode

import sim_backend
from instruments import SafetyGuard, SafetyLimits, VisaSession
from instruments.datasheet import load_datasheet
from sim_backend.framing import block
from sim_backend.visa_library import SimVisaLibrary

RESOURCE = "TCPIP::127.0.0.1::1::SOCKET"


def guard(chip: str = "rram") -> SafetyGuard:
    return SafetyGuard(SafetyLimits.from_object(sim_backend.load_chip(chip).limits))


def datasheet(chip: str = "rram"):
    return load_datasheet(chip)


def f32_block(values) -> bytes:
    return block(np.asarray(values, dtype="<f4").tobytes())


def u8_block(values) -> bytes:
    return block(np.asarray(values, dtype=np.uint8).tobytes())


class ScriptedInstrument:
    def __init__(self, script) -> None:
        self.script = [(e.encode() if isinstance(e, str) else e,
                        r.encode() if isinstance(r, str) else r) for e, r in script]
        self.step = 0

    def handle(self, message: bytes) -> bytes | None:
        assert self.step < len(self.script), f"unexpected extra message {message!r}"
        expected, reply = self.script[self.step]
        self.step += 1
        assert message == expected, f"step {self.step}: sent {message!r}, expected {expected!r}"
        if reply is None:
            return None
        return reply if reply.endswith(b"\n") else reply + b"\n"

    def finished(self) -> None:
        left = self.script[self.step:]
        assert not left, f"driver did not send: {[e for e, _ in left]}"


def scripted_session(script, library=SimVisaLibrary, **session_options):
    """A VisaSession on a scripted instrument: (session, instrument)."""
    instrument = ScriptedInstrument(script)
    rm = pyvisa.ResourceManager(library({RESOURCE: instrument}))
    options = {"name": "scripted", "retries": 0, "timeout_s": 0.2, **session_options}
    return VisaSession(rm, RESOURCE, **options), instrument


@contextmanager
def expected_protocol(make_driver, script, **session_options):
    """Yield ``make_driver(session)`` wired to a scripted instrument."""
    session, instrument = scripted_session(script, **session_options)
    yield make_driver(session)
    instrument.finished()


def dc_read(smu, amps: float, volts: float) -> float:
    """A SourceMeter driver's DC read: compliance ``amps``, level ``volts``, the output on,
    one measurement (the bytes are the script's to check)."""
    smu.set_compliance(amps)
    smu.set_voltage(volts)
    smu.output(True)
    return smu.measure_current()


class LockingLibrary(SimVisaLibrary):
    """The in-process library with a VISA lock answering ``lock_status``; records calls."""

    lock_status = StatusCode.success

    def _init(self) -> None:
        super()._init()
        self.lock_calls: list[tuple[int, object, int]] = []
        self.unlock_calls = 0

    def lock(self, session, lock_type, timeout, requested_key=None):
        self.lock_calls.append((session, lock_type, timeout))
        return "", self.handle_return_value(session, self.lock_status)

    def unlock(self, session):
        self.unlock_calls += 1
        return StatusCode.success


def locking_library(status):
    """A LockingLibrary class whose lock answers ``status``."""
    return type("Locking", (LockingLibrary,), {"lock_status": status})
