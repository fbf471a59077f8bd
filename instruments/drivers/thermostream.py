"""inTEST ThermoStream-style temperature forcing system, ThermalController role.

The instrument needs >= 50 ms between commands; the session enforces it.
"""

from __future__ import annotations

from instruments.safety import SafetyGuard
from instruments.session import VisaSession


class ThermoStream:
    role = "thermal"
    session_options = {"error_query": "EROR?", "no_error": lambda r: r.strip() == "0",
                       "min_interval_s": 0.05}

    def __init__(self, session: VisaSession, guard: SafetyGuard, window_c: float = 0.5) -> None:
        self.session = session
        self.guard = guard
        self.window_c = window_c
        self._started = False

    @property
    def transactions(self) -> int:
        return self.session.transactions

    def identity(self) -> str:
        return self.session.query("*IDN?").strip()

    def start(self) -> None:
        self.session.write("HEAD down")
        self.session.write(f"WNDW {self.window_c:.1f}")
        self.session.write("FLOW 1")
        self.session.check_errors("starting air flow")
        self._started = True

    def stop(self) -> None:
        self.session.write("FLOW 0")
        self.session.write("HEAD up")
        self._started = False

    def set_temperature(self, celsius: float) -> None:
        t = self.guard.temperature(celsius)
        self.session.write("SETN 0")
        self.session.write(f"SETP {t:.1f}")
        self.session.check_errors("setting the set point")
        if not self._started:
            self.start()

    def temperature(self) -> float:
        return self.session.query("TEMP?", parse=float)

    def setpoint(self) -> float:
        return self.session.query("SETP?", parse=float)

    def settled(self) -> bool:
        return bool(self.session.query("TECR?", parse=int) & 1)

    def check(self) -> None:
        self.session.check_errors()
