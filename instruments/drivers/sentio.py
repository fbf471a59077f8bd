"""MPI SENTIO prober driver (remote command set), Prober and ThermalController roles.

Replies are ``<errc|status>,<cmd_id>,<message>``; the low 10 bits of the first
field are the error code. The driver never moves XY while in contact: it
separates first. Commands follow the SENTIO remote command reference
(``map:step_die_seq`` steps by the die's sequence number on the route).
Command strings and their sources: docs/drivers/sentio.md.
"""

from __future__ import annotations

from instruments.datasheet import ChipDatasheet
from instruments.drivers.base import Driver, option_number, whole
from instruments.errors import ArgumentError, BadReply, ContactError, ProberError
from instruments.safety import SafetyGuard
from instruments.session import VisaSession

ERROR_MASK = 0x3FF
END_OF_ROUTE = 1 << 10
CONTACT_ATTEMPTS = 2


class SentioProber(Driver):
    """MPI SENTIO wafer prober: steps dies, makes contact, bins; its chuck is thermal."""

    role = "prober"
    roles = ("prober", "thermal")  # the prober's chuck is the thermal controller
    session_options = {"error_query": None}
    stresses_device = True

    def __init__(self, session: VisaSession, guard: SafetyGuard,
                 datasheet: ChipDatasheet | None = None, *, parts=None,
                 settle_window_c: float = 0.5) -> None:
        super().__init__(session, guard, datasheet, parts=parts)
        self.settle_window_c = option_number("settle_window_c", settle_window_c, 0.01, 50.0,
                                             "degC")
        self._remote = False

    def settings(self) -> dict:
        return {"settle_window_c": self.settle_window_c}

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
        if isinstance(die, tuple):
            if len(die) != 2:
                raise ArgumentError(f"a die position is (column, row), got {die!r}")
            x, y = whole(die[0], "die column"), whole(die[1], "die row")
            step = f"map:step_die {x}, {y}, 0"
        else:
            step = f"map:step_die_seq {whole(die, 'die number', 0)}, 0"
        self.separate()
        col, row = _position(self._cmd(step, timeout_s=30))
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
        # map:die:get_current_index answers "<route index>,<column>,<row>" (MPI's
        # sentio-prober-control, WafermapDieCommandGroup.get_current_index)
        message = self._cmd("map:die:get_current_index")
        fields = message.split(",")
        if len(fields) < 3:
            raise ProberError(f"unexpected current die {message!r} from the prober; "
                              "expected <route index>,<column>,<row>")
        return _position(",".join(fields[1:3]))

    def die_map(self) -> tuple[tuple[int, int, int], ...]:
        """(die id, column, row) of every die on the prober's route, ids as ``goto`` takes
        them: the route's sequence numbers (``map:step_die_seq``).

        ``map:get_num_dies Selected`` counts the route, ``map:path:get_die <seq>`` gives a
        die's column and row (MPI's sentio-prober-control: WafermapCommandGroup.
        get_num_dies, WafermapPathCommandGroup.get_die); one query per die. SENTIO counts
        the route from 0; a prober that has no sequence number 0 (the simulator's, which
        numbers from 1) is read from 1, so the ids are always the ones it steps to.
        """
        message = self._cmd("map:get_num_dies Selected")
        try:
            count = int(message)
        except ValueError:
            count = -1
        if count < 0:
            raise ProberError(f"unexpected number of dies {message!r} from the prober")
        if count == 0:
            return ()
        try:
            reply = self._cmd("map:path:get_die 0")
        except ProberError:  # no sequence number 0: this route counts from 1
            start, dies = 1, []
        else:
            start, dies = 0, [(0, *_position(reply))]
        for seq in range(start + len(dies), start + count):
            dies.append((seq, *_position(self._cmd(f"map:path:get_die {seq}"))))
        return tuple(dies)

    def set_bin(self, bin_number: int) -> None:
        self._cmd(f"map:bins:set_bin {whole(bin_number, 'bin', 0, 255)}")

    # -- ThermalController role (the chuck) -------------------------------------------
    def set_temperature(self, celsius: float) -> None:
        t = self.guard.temperature(celsius)
        self._cmd(f"status:set_chuck_temp {t:.2f}")

    def temperature(self) -> float:
        return _celsius(self._cmd("status:get_chuck_temp"))

    def setpoint(self) -> float:
        return _celsius(self._cmd("status:get_chuck_temp_setpoint"))

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


def _position(message: str) -> tuple[int, int]:
    try:
        col, row = (int(v) for v in message.split(",")[:2])
    except ValueError:
        raise ProberError(f"unexpected die position {message!r} from the prober") from None
    return col, row


def _celsius(message: str) -> float:
    try:
        return float(message)
    except ValueError:
        raise ProberError(f"unexpected temperature {message!r} from the prober") from None
