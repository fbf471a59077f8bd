"""inTEST ThermoStream-style temperature forcing system, ThermalController role.

The instrument needs >= 50 ms between commands; the session enforces it.
"""

from __future__ import annotations

from instruments.datasheet import ChipDatasheet
from instruments.drivers.base import Driver, option_number
from instruments.errors import BadReply
from instruments.safety import SafetyGuard
from instruments.session import VisaSession


class ThermoStream(Driver):
    """inTEST ThermoStream air forcer: set point, settle window, flow and head."""

    role = "thermal"
    session_options = {"error_query": "EROR?", "no_error": lambda r: r.strip() == "0",
                       "min_interval_s": 0.05}
    stresses_device = True

    def __init__(self, session: VisaSession, guard: SafetyGuard,
                 datasheet: ChipDatasheet | None = None, *, parts=None,
                 window_c: float = 0.5) -> None:
        super().__init__(session, guard, datasheet, parts=parts)
        # WNDW takes 0.1..9.9 degC (sent with one decimal)
        self.window_c = option_number("window_c", window_c, 0.1, 9.9, "degC")
        self._started = False

    def settings(self) -> dict:
        return {"window_c": self.window_c}

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
        return self.session.query("TEMP?", parse=_float)

    def setpoint(self) -> float:
        return self.session.query("SETP?", parse=_float)

    def settled(self) -> bool:
        return bool(self.session.query("TECR?", parse=int) & 1)


def _float(reply: str) -> float:
    value = float(reply)  # a ValueError here is a garbled reply: the session asks again
    if value != value:
        raise BadReply(f"unexpected temperature {reply!r}")
    return value
