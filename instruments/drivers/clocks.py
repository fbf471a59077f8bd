"""Clock role drivers: real time on a bench, virtual time on the simulator."""

from __future__ import annotations

import time

from instruments.safety import SafetyGuard
from instruments.session import VisaSession


class WallClock:
    """Real time: ``wait`` sleeps."""

    role = "clock"

    def __init__(self, guard: SafetyGuard | None = None) -> None:
        self.guard = guard

    def identity(self) -> str:
        return "host wall clock"

    def wait(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"cannot wait a negative time ({seconds!r} s)")
        time.sleep(seconds)

    def now(self) -> float:
        return time.monotonic()


class VirtualClock:
    """The simulator's virtual clock instrument (``:SYST:WAIT``, ``:SYST:TIME?``)."""

    role = "clock"
    session_options = {"error_query": ":SYST:ERR?"}

    def __init__(self, session: VisaSession, guard: SafetyGuard) -> None:
        self.session = session
        self.guard = guard

    @property
    def transactions(self) -> int:
        return self.session.transactions

    def identity(self) -> str:
        return self.session.query("*IDN?").strip()

    def wait(self, seconds: float) -> None:
        s = self.guard.wait(seconds)
        # a query, so the wait has happened before any other instrument is addressed
        self.session.query(f":SYST:WAIT {s:.9g};*OPC?")

    def now(self) -> float:
        return self.session.query(":SYST:TIME?", parse=float)
