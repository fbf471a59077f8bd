"""MPI SENTIO prober driver (remote command set), Prober and ThermalController roles.

Replies are ``<errc|status>,<cmd_id>,<message>``; the low 10 bits of the first
field are the error code. The driver never moves XY while in contact: it
separates first. Commands follow the SENTIO remote command reference
(``map:step_die_seq`` steps by the die's sequence number on the route).
"""

from __future__ import annotations

from instruments.errors import BadReply, ContactError, ProberError
from instruments.safety import SafetyGuard
from instruments.session import VisaSession

ERROR_MASK = 0x3FF
END_OF_ROUTE = 1 << 10
CONTACT_ATTEMPTS = 2


class SentioProber:
    role = "prober"
    session_options = {"error_query": None}

    def __init__(self, session: VisaSession, guard: SafetyGuard,
                 settle_window_c: float = 0.5) -> None:
        self.session = session
        self.guard = guard
        self.settle_window_c = settle_window_c
        self._remote = False

    @property
    def transactions(self) -> int:
        return self.session.transactions

    def identity(self) -> str:
        return self.session.query("*IDN?").strip()

    def _cmd(self, text: str, timeout_s: float | None = None) -> str:
        if not self._remote:
            self.session.write("*RCS 1")
            self._remote = True
        code, message = self.session.query(text, parse=_parse, timeout_s=timeout_s)
        if code & ERROR_MASK:
            raise ProberError(f"prober refused {text!r}: {message} (error {code & ERROR_MASK})")
        return message

    # -- Prober role ------------------------------------------------------------
    def goto(self, die) -> tuple[int, int]:
        """Separate, step to ``die`` (id, or (column, row)), make contact."""
        self.separate()
        if isinstance(die, tuple):
            x, y = die
            reply = self._cmd(f"map:step_die {int(x)}, {int(y)}, 0", timeout_s=30)
        else:
            reply = self._cmd(f"map:step_die_seq {int(die)}, 0", timeout_s=30)
        col, row = (int(v) for v in reply.split(",")[:2])
        self.contact()
        return col, row

    def contact(self) -> None:
        for attempt in range(CONTACT_ATTEMPTS):
            try:
                self._cmd("move_chuck_contact", timeout_s=30)
                return
            except ProberError as exc:
                if "contact" not in str(exc) or attempt == CONTACT_ATTEMPTS - 1:
                    raise ContactError(f"{exc}; check the probe card, needle marks and "
                                       "chuck height") from None
                self._cmd("move_chuck_separation", timeout_s=30)

    def separate(self) -> None:
        self._cmd("move_chuck_separation", timeout_s=30)

    def position(self) -> tuple[int, int]:
        col, row = self._cmd("map:die:get_current_index").split(",")[:2]
        return int(col), int(row)

    def set_bin(self, bin_number: int) -> None:
        if not 0 <= int(bin_number) <= 255:
            raise ValueError(f"bin {bin_number!r} must be within 0..255")
        self._cmd(f"map:bins:set_bin {int(bin_number)}")

    # -- ThermalController role (the chuck) -------------------------------------------
    def set_temperature(self, celsius: float) -> None:
        t = self.guard.temperature(celsius)
        self._cmd(f"status:set_chuck_temp {t:.2f}")

    def temperature(self) -> float:
        return float(self._cmd("status:get_chuck_temp"))

    def setpoint(self) -> float:
        return float(self._cmd("status:get_chuck_temp_setpoint"))

    def settled(self) -> bool:
        state = self._cmd("status:get_chuck_thermo_state").strip()
        return state == "Settled" and abs(self.temperature() - self.setpoint()) <= (
            self.settle_window_c)

    def check(self) -> None:
        self.position()


def _parse(reply: str) -> tuple[int, str]:
    parts = reply.strip().split(",", 2)
    if len(parts) < 3 or not parts[0].isdigit() or not parts[1].isdigit():
        raise BadReply(f"unexpected prober reply {reply!r}")
    return int(parts[0]), parts[2]
