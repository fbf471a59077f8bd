"""Exact-bytes driver tests: a scripted instrument that fails on any surprise.

Each step is (bytes the driver must send, reply or None). A message that
differs, a message past the end of the script, or script left unconsumed
fails the test. The driver runs over the real PyVISA stack (in-process library).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pyvisa

import sim_backend
from instruments import SafetyGuard, SafetyLimits, VisaSession
from sim_backend.framing import block
from sim_backend.visa_library import SimVisaLibrary

RESOURCE = "TCPIP::127.0.0.1::1::SOCKET"


def guard(chip: str = "rram") -> SafetyGuard:
    return SafetyGuard(SafetyLimits.from_object(sim_backend.load_chip(chip).limits))


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


@contextmanager
def expected_protocol(make_driver, script, **session_options):
    """Yield ``make_driver(session)`` wired to a scripted instrument."""
    instrument = ScriptedInstrument(script)
    rm = pyvisa.ResourceManager(SimVisaLibrary({RESOURCE: instrument}))
    session = VisaSession(rm, RESOURCE, name="scripted", retries=0, timeout_s=0.2,
                          **session_options)
    yield make_driver(session)
    instrument.finished()
