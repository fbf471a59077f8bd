"""Emulator of a FormFactor Velox prober's message server (TCP port 1412), with its chuck.

One message per line. ``FCN=<n>:<function>:<args>`` goes to the message server itself
(``RegisterProberApp``); ``Cmd=<id>:<Name>:<args>`` is a remote command (SCI), its
arguments separated by spaces, and is answered ``Rsp=<id>:<code>:<values>``: code 0 and
the command's values, or a non-zero error code and the prober's message.

It drives the same shared prober state as the SENTIO emulator (the contacted die, the
contact flag, the bins, the chuck's thermal model), refuses XY moves while the chuck is
in contact, fails a contact move when a ``contact`` fault is injected, makes a contact
without continuity on an ``open`` fault and disturbs the chuck on a ``chuck`` fault. Die
numbers are the wafer's die ids (1.., raster order), columns and rows its grid ``x`` and
``y``; every die is selected, so ``GetDieDataAsNum n`` for n = 1..``GetNumSelectedDies``
is the whole map.
The error code numbers are this emulator's own unless docs/drivers/velox.md says
otherwise; registration is accepted but not required (see that page).
"""

from __future__ import annotations

from sim_backend.wafer import WaferSpecError

ERR_MESSAGE = 1  # not a message-server message
ERR_UNKNOWN_COMMAND = 2
ERR_PARAMETER = 3
ERR_IN_CONTACT = 10  # an XY move asked while the chuck is at contact height
ERR_CONTACT_FAILED = 11
ERR_TEMPERATURE = 12  # set point out of the chuck's range, or a unit the emulator lacks
ERR_NO_DIE = 701  # the die is not on the wafer map
ERR_END_OF_WAFER = 703  # StepNextDie past the last die of the route
CHUCK_RANGE_C = (-60.0, 300.0)
STATUS_BITS = {"Heating": 1, "Cooling": 2, "Settled": 4}  # ReadTemperatureChuckStatus
KERNEL_VERSION = "3.3 Velox Kernel (simulated)"


class _Refused(Exception):
    """A command the prober refuses: its error code and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class VeloxEmulator:
    idn = "FormFactor Velox,SIM-0002,3.3"
    role = "prober"

    def __init__(self, bench) -> None:
        self.bench = bench
        self.route_pos: int | None = None  # index into the wafer's dies of the current die
        self.registered: list[str] = []  # applications that registered (not enforced)
        self.table = {name.lower(): fn for name, fn in {
            "StepFirstDie": self._first, "StepNextDie": self._step_next,
            "StepToDie": self._step_to, "ReadMapPosition": self._map_position,
            "ReadMapPosition2": self._map_position2, "BinMapDie": self._bin,
            "GetDieDataAsNum": self._die_data, "GetNumSelectedDies": self._num_dies,
            "MoveChuckContact": self._contact, "MoveChuckSeparation": self._separate,
            "SetHeaterTemp": self._set_temp, "GetHeaterTemp": self._get_temp,
            "GetTargetTemp": self._get_target, "StopHeatChuck": self._stop_heat,
            "ReadTemperatureChuckStatus": self._thermo_status,
            "ReportKernelVersion": self._kernel_version,
        }.items()}

    def handle(self, message: bytes) -> bytes | None:
        return self.bench.transact(self, message, self.process)

    def process(self, message: bytes) -> bytes | None:
        text = message.decode("ascii", errors="replace").strip()  # stray bytes echo as "?"
        if text.upper() == "*IDN?":
            return (self.idn + "\n").encode()
        kind, _, rest = text.partition("=")
        number, sep, body = rest.partition(":")
        if kind not in ("Cmd", "FCN") or not number.isdigit() or not sep:
            return _reply(0, ERR_MESSAGE, f"not a message server message: {text[:40]!r}; "
                                          "expected Cmd=<id>:<command>:<parameters>")
        name, _, args = body.partition(":")
        if kind == "FCN":
            return self._function(int(number), name, args.split())
        handler = self.table.get(name.lower())
        if handler is None:
            return _reply(int(number), ERR_UNKNOWN_COMMAND, f"Unknown command {name}")
        try:
            return _reply(int(number), 0, handler(args.split()))
        except _Refused as exc:
            return _reply(int(number), exc.code, exc.message)
        except (ValueError, IndexError):
            return _reply(int(number), ERR_PARAMETER, f"Invalid parameters for {name}: "
                                                      f"{args.strip()!r}")

    def _function(self, number: int, name: str, args: list[str]) -> bytes:
        if name.lower() != "registerproberapp" or not args:
            return _reply(number, ERR_UNKNOWN_COMMAND, f"Unknown function {name}")
        self.registered.append(args[0])
        return _reply(number, 0, "")

    # -- wafer map ---------------------------------------------------------------
    def _separated(self) -> None:
        """Every XY move is refused at contact height, before it looks at anything else."""
        if self.bench.in_contact:
            raise _Refused(ERR_IN_CONTACT, "Chuck is at contact height; move it to "
                                           "separation before stepping")

    def _goto(self, die) -> str:
        bench = self.bench
        self._separated()
        self.route_pos = bench.step_to(die, self.role)
        return f"{die.x} {die.y} 0 0"  # column, row, current subdie, last subdie index

    def _die(self, die_id: int):
        try:
            return self.bench.wafer.info(die_id)
        except WaferSpecError:
            raise _Refused(ERR_NO_DIE, f"Die {die_id} is not on the wafer map (dies 1.."
                                       f"{len(self.bench.wafer.dies)})") from None

    def _die_at(self, col: int, row: int):
        try:
            return self.bench.wafer.at(col, row)
        except WaferSpecError:
            raise _Refused(ERR_NO_DIE, f"No die at column {col}, row {row} on the wafer "
                                       "map") from None

    def _next(self) -> str:
        dies = self.bench.wafer.dies
        pos = -1 if self.route_pos is None else self.route_pos
        if pos + 1 >= len(dies):
            raise _Refused(ERR_END_OF_WAFER, "EndOfWafer")
        return self._goto(dies[pos + 1])

    def _first(self, args):
        self._separated()
        if not args or args[0] == "1":  # ClearBins, 1 by default
            self.bench.bins.clear()
        return self._goto(self.bench.wafer.dies[0])

    def _step_next(self, args):
        self._separated()
        if not args:
            return self._next()
        return self._goto(self._die_at(int(args[0]), int(args[1])))

    def _step_to(self, args):
        self._separated()
        if not args or int(args[0]) == -1:  # no die number: the next die of the route
            return self._next()
        return self._goto(self._die(int(args[0])))

    def _position_fields(self, site: int) -> str:
        bench = self.bench
        die, home = bench.wafer.info(bench.die_id), bench.wafer.dies[0]
        dx_um = (die.center_mm[0] - home.center_mm[0]) * 1000
        dy_um = (home.center_mm[1] - die.center_mm[1]) * 1000
        n = len(bench.wafer.dies)
        # column row x y (microns from the home die) site last-site die dies cluster clusters
        return f"{die.x} {die.y} {dx_um:.1f} {dy_um:.1f} {site} 0 {die.id} {n} {die.id} {n}"

    def _map_position(self, args):
        return self._position_fields(site=1)  # legacy form: subdies counted from 1

    def _map_position2(self, args):
        return self._position_fields(site=0)  # subdies counted from 0

    def _bin(self, args):
        bin_ = int(args[0])
        if not 0 <= bin_ <= 255:
            raise _Refused(ERR_PARAMETER, f"Bin {bin_} is outside the bin table (0..255)")
        if len(args) >= 2:
            die = self._die_at(int(args[1]), int(args[2]))
        else:
            die = self.bench.wafer.info(self.bench.die_id)
        self.bench.bins[die.id] = bin_
        return f"{die.x} {die.y}"

    def _die_data(self, args):
        die = self._die(int(args[0])) if args else self.bench.wafer.info(self.bench.die_id)
        return f"{die.id} {die.x} {die.y} {self.bench.bins.get(die.id, 0)}"

    def _num_dies(self, args):
        return str(len(self.bench.wafer.dies))

    # -- chuck -------------------------------------------------------------------
    def _contact(self, args):
        if not self.bench.contact(self.role):
            raise _Refused(ERR_CONTACT_FAILED, "Contact failed: chuck did not reach contact "
                                               "height")
        return ""

    def _separate(self, args):
        self.bench.separate()
        return ""

    # -- thermal chuck -------------------------------------------------------------
    @staticmethod
    def _unit(args, index: int) -> None:
        if len(args) > index and args[index].upper() not in ("C", "CELSIUS"):
            raise _Refused(ERR_TEMPERATURE, f"Temperature unit {args[index]} is not "
                                            "supported by this emulator (C only)")

    def _set_temp(self, args):
        t = float(args[0])
        self._unit(args, 1)
        if not CHUCK_RANGE_C[0] <= t <= CHUCK_RANGE_C[1]:
            raise _Refused(ERR_TEMPERATURE, f"Target temperature {t:g} C is outside the "
                                            f"chuck's range {CHUCK_RANGE_C[0]:g}.."
                                            f"{CHUCK_RANGE_C[1]:g} C")
        self.bench.observed.note("temperature", t)
        self.bench.chuck.set(t)
        return f"{t:.2f} C"

    def _status(self) -> int:
        return STATUS_BITS[self.bench.chuck.state()]

    def _get_temp(self, args):
        self._unit(args, 0)
        return f"{self.bench.chuck.temperature():.2f} C {self._status()}"

    def _get_target(self, args):
        self._unit(args, 0)
        return f"{self.bench.chuck.setpoint_c:.2f} C"

    def _stop_heat(self, args):
        chuck = self.bench.chuck
        if not chuck.settled():  # the temperature reached so far becomes the target
            chuck.set(chuck.temperature())
        return ""

    def _thermo_status(self, args):
        return f"{self._status()} 0 0 0"  # status, dew-point sensor, soak time left, eco mode

    def _kernel_version(self, args):
        return KERNEL_VERSION


def _reply(number: int, code: int, values: str) -> bytes:
    return f"Rsp={number}:{code}:{values}\n".encode("ascii", "replace")
