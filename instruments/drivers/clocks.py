"""Clock role drivers: real time on a bench, virtual time on the simulator."""

from __future__ import annotations

import time

from instruments.drivers.base import Driver


class WallClock(Driver):
    """Real time: ``wait`` sleeps. Needs no instrument."""

    role = "clock"
    uses_session = False

    def identity(self) -> str:
        return "host wall clock"

    def wait(self, seconds: float) -> None:
        time.sleep(self.guard.wait(seconds))

    def now(self) -> float:
        return time.monotonic()


class VirtualClock(Driver):
    """The simulator's virtual clock instrument (``:SYST:WAIT``, ``:SYST:TIME?``)."""

    role = "clock"
    session_options = {"error_query": ":SYST:ERR?"}

    def wait(self, seconds: float) -> None:
        s = self.guard.wait(seconds)
        # a query, so the wait has happened before any other instrument is addressed
        self.session.query(f":SYST:WAIT {s:.9g};*OPC?")

    def now(self) -> float:
        return self.session.query(":SYST:TIME?", parse=float)
