"""Emulator of an MPI SENTIO prober's remote command set, with its thermal chuck.

Replies are ``<errc|status>,<cmd_id>,<message>``: the low 10 bits of the first
field are the error code, higher bits status flags (bit 10: end of route).
No XY move is allowed while the chuck is in contact, as on the real prober.
The route is every die of the wafer, and its sequence numbers are the wafer's die
ids (from 1) where a SENTIO counts from 0 (docs/drivers/sentio.md): the simulated
bench keeps one die numbering for every prober.
"""

from __future__ import annotations

END_OF_ROUTE = 1 << 10
ERR_INVALID = 2
ERR_CONTACT_MOVE = 13
ERR_NO_DIE = 21
ERR_CONTACT_FAILED = 23
ERR_PARAM = 5
CHUCK_RANGE_C = (-60.0, 300.0)


class SentioEmulator:
    idn = "MPI Corporation,SENTIO Probe Station,SIM-0001,3.6.2"
    role = "prober"

    def __init__(self, bench) -> None:
        self.bench = bench
        self.remote = False
        self.route_pos: int | None = None
        self.table = {
            "*idn?": self._idn, "*rcs": self._rcs,
            "map:step_die": self._step_die, "map:step_die_seq": self._step_seq,
            "map:step_first_die": self._first, "map:step_next_die": self._next,
            "map:die:get_current_index": self._current, "map:die:get_current_seq": self._seq,
            "map:get_num_dies": self._num_dies, "map:path:get_die": self._path_die,
            "map:bins:set_bin": self._set_bin, "move_chuck_contact": self._contact,
            "move_chuck_separation": self._separate, "move_chuck_home": self._home,
            "get_chuck_xy": self._xy, "status:set_chuck_temp": self._set_temp,
            "status:get_chuck_temp": self._get_temp,
            "status:get_chuck_temp_setpoint": self._get_setpoint,
            "status:get_chuck_thermo_state": self._thermo_state,
        }

    def handle(self, message: bytes) -> bytes | None:
        return self.bench.transact(self, message, self.process)

    def process(self, message: bytes) -> bytes | None:
        text = message.decode("ascii", errors="replace").strip()
        name, _, rest = text.partition(" ")
        handler = self.table.get(name.lower())
        if handler is None:
            return self._reply(ERR_INVALID, f"unknown command {name}")
        args = [a.strip() for a in rest.split(",")] if rest.strip() else []
        try:
            return handler(args)
        except (ValueError, IndexError):
            return self._reply(ERR_PARAM, f"bad parameters for {name}")

    @staticmethod
    def _reply(code: int, message: str) -> bytes:
        return f"{code},0,{message}\n".encode("ascii", "replace")  # a stray byte echoes as "?"

    # -- identity and mode -------------------------------------------------------
    def _idn(self, args):
        return (self.idn + "\n").encode()

    def _rcs(self, args):
        self.remote = args[:1] == ["1"]
        return None  # no reply, like a SCPI setting command

    # -- wafer map ---------------------------------------------------------------
    def _goto(self, die) -> bytes:
        bench = self.bench
        if bench.in_contact:
            return self._reply(ERR_CONTACT_MOVE, "chuck is in contact; separate first")
        self.route_pos = bench.step_to(die, self.role)
        return self._reply(0, f"{die.x},{die.y},0")

    def _step_die(self, args):
        from sim_backend.wafer import WaferSpecError

        try:
            die = self.bench.wafer.at(int(args[0]), int(args[1]))
        except WaferSpecError as exc:
            return self._reply(ERR_NO_DIE, str(exc))
        return self._goto(die)

    def _step_seq(self, args):
        from sim_backend.wafer import WaferSpecError

        try:
            die = self.bench.wafer.info(int(args[0]))
        except WaferSpecError as exc:
            return self._reply(ERR_NO_DIE, str(exc))
        return self._goto(die)

    def _first(self, args):
        return self._goto(self.bench.wafer.dies[0])

    def _next(self, args):
        dies = self.bench.wafer.dies
        pos = -1 if self.route_pos is None else self.route_pos
        if pos + 1 >= len(dies):
            return self._reply(END_OF_ROUTE, "end of route")
        return self._goto(dies[pos + 1])

    def _current(self, args):
        die = self.bench.wafer.info(self.bench.die_id)
        return self._reply(0, f"{die.id},{die.x},{die.y}")  # route index, column, row

    def _num_dies(self, args):
        if args[0].lower() not in ("present", "selected"):
            return self._reply(ERR_PARAM, f"expected Present or Selected, got {args[0]}")
        return self._reply(0, str(len(self.bench.wafer.dies)))  # every die is selected

    def _path_die(self, args):
        from sim_backend.wafer import WaferSpecError

        try:
            die = self.bench.wafer.info(int(args[0]))
        except WaferSpecError as exc:
            return self._reply(ERR_NO_DIE, str(exc))
        return self._reply(0, f"{die.x},{die.y}")

    def _seq(self, args):
        return self._reply(0, str(self.bench.die_id))

    def _set_bin(self, args):
        bin_ = int(args[0])
        if len(args) >= 3:
            die_id = self.bench.wafer.at(int(args[1]), int(args[2])).id
        else:
            die_id = self.bench.die_id
        self.bench.bins[die_id] = bin_
        return self._reply(0, "OK")

    # -- chuck -------------------------------------------------------------------
    def _contact(self, args):
        if not self.bench.contact(self.role):
            return self._reply(ERR_CONTACT_FAILED, "contact failed: no continuity detected")
        return self._reply(0, "OK")

    def _separate(self, args):
        self.bench.separate()
        return self._reply(0, "OK")

    def _home(self, args):
        if self.bench.in_contact:
            return self._reply(ERR_CONTACT_MOVE, "chuck is in contact; separate first")
        return self._reply(0, "OK")

    def _xy(self, args):
        die = self.bench.wafer.info(self.bench.die_id)
        x_um, y_um = die.center_mm[0] * 1000, die.center_mm[1] * 1000
        return self._reply(0, f"{x_um:.1f},{y_um:.1f}")

    # -- thermal chuck -------------------------------------------------------------
    def _set_temp(self, args):
        t = float(args[0])
        if not CHUCK_RANGE_C[0] <= t <= CHUCK_RANGE_C[1]:
            return self._reply(ERR_PARAM, f"set point {t} outside the chuck's range")
        self.bench.observed.note("temperature", t)
        self.bench.chuck.set(t)
        return self._reply(0, "OK")

    def _get_temp(self, args):
        return self._reply(0, f"{self.bench.chuck.temperature():.2f}")

    def _get_setpoint(self, args):
        return self._reply(0, f"{self.bench.chuck.setpoint_c:.2f}")

    def _thermo_state(self, args):
        return self._reply(0, self.bench.chuck.state())
