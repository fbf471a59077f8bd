"""Emulator of a Keithley 2450 SMU in SCPI mode, wired to the probe card.

The SMU's HI reaches the word lines closed on switch-matrix row A, its LO the
bit lines closed on row B; the current it measures is the sum over the
connected cells. A list sweep applies each point for the sweep delay, so a
point above the switching threshold is a programming pulse of that width.
"""

from __future__ import annotations

import numpy as np

from sim_backend.emulators.smu_physics import (
    accepted,
    connected_cells,
    list_values,
    source_point,
)
from sim_backend.scpi import (
    EXECUTION,
    ILLEGAL_VALUE,
    OUT_OF_RANGE,
    ScpiError,
    ScpiInstrument,
    boolean,
    command,
    need,
    number,
)

MAX_VOLTS = 200.0  # the 2450's source range
MAX_LIST = 2500


class Keithley2450Emulator(ScpiInstrument):
    idn = "KEITHLEY INSTRUMENTS,MODEL 2450,04512345,1.7.12b"
    role = "smu"

    def __init__(self, bench) -> None:
        super().__init__(bench)
        self._rng = np.random.default_rng(2450)  # the current-noise floor
        self.reset()

    def reset(self) -> None:
        self.source_function = "VOLT"
        self.level = 0.0
        self.ilim = 105e-6
        self.output = False
        self.tripped = False
        self.nplc = 1.0
        self.average_on = False
        self.average_count = 10  # the 2450's default count; used only when the filter is on
        self.sense = "CURR"
        self.sweep_list: list[float] = []
        self.sweep_delay = 0.0
        self.sweep_ready = False
        self.buffer: list[tuple[float, float]] = []  # (source, reading)

    # -- physics (shared with the other SMU emulators: smu_physics) -------------------
    def _connected(self) -> np.ndarray | None:
        """Mask of the cells between the closed word and bit lines."""
        return connected_cells(self.bench)

    def _apply(self, volts: float, seconds: float) -> float:
        """Source ``volts`` on the connected cells for ``seconds``; return the current."""
        point = source_point(self.bench, volts, seconds, ilim=self.ilim, nplc=self.nplc,
                             rng=self._rng, role=self.role, mask=self._connected())
        self.tripped = point.tripped  # state of the last point
        return point.current

    def _measure(self) -> float:
        if not self.output:
            raise ScpiError(EXECUTION, "Execution error; output is off")
        n = self.average_count if self.average_on else 1
        return sum(self._apply(self.level, self.bench.latency.smu_point_s)
                   for _ in range(n)) / n

    # -- source / sense ----------------------------------------------------------
    @command(":SOURce:FUNCtion[:MODE]")
    def set_function(self, args, block):
        need(args, 1)
        value = args[0].upper()
        if value not in ("VOLT", "VOLTAGE"):
            raise ScpiError(ILLEGAL_VALUE, "Illegal parameter value; emulated: VOLT only")
        self.source_function = "VOLT"

    @command(":SOURce:FUNCtion[:MODE]?")
    def get_function(self, args, block):
        return self.source_function

    @command(":SOURce:VOLTage[:LEVel][:IMMediate][:AMPLitude]")
    def set_level(self, args, block):
        need(args, 1)
        v = number(args[0], "voltage")
        if abs(v) > MAX_VOLTS:
            raise ScpiError(OUT_OF_RANGE, "Data out of range; voltage")
        self.level = v
        if self.output:
            self.bench.observed.note("smu_voltage", abs(v))

    @command(":SOURce:VOLTage[:LEVel][:IMMediate][:AMPLitude]?")
    def get_level(self, args, block):
        return f"{self.level:.6e}"

    set_range = accepted(":SOURce:VOLTage:RANGe[:UPPer]", "range")
    set_range_auto = accepted(":SOURce:VOLTage:RANGe:AUTO")

    @command(":SOURce:VOLTage:ILIMit[:LEVel]")
    def set_ilim(self, args, block):
        need(args, 1)
        i = number(args[0], "current limit")
        if not 1e-9 <= i <= 1.05:
            raise ScpiError(OUT_OF_RANGE, "Data out of range; current limit")
        self.bench.observed.note("compliance", i)
        self.ilim = i

    @command(":SOURce:VOLTage:ILIMit[:LEVel]?")
    def get_ilim(self, args, block):
        return f"{self.ilim:.6e}"

    @command(":SOURce:VOLTage:ILIMit[:LEVel]:TRIPped?")
    def get_trip(self, args, block):
        return "1" if self.tripped else "0"

    @command(":SENSe:FUNCtion[:ON]")
    def set_sense(self, args, block):
        need(args, 1)
        if args[0].strip("\"'").upper() not in ("CURR", "CURRENT", "CURR:DC"):
            raise ScpiError(ILLEGAL_VALUE, "Illegal parameter value; emulated: CURR only")
        self.sense = "CURR"

    @command(":SENSe:FUNCtion[:ON]?")
    def get_sense(self, args, block):
        return '"CURR:DC"'

    @command(":SENSe:CURRent:NPLCycles")
    def set_nplc(self, args, block):
        need(args, 1)
        n = number(args[0], "NPLC")
        if not 0.01 <= n <= 10:
            raise ScpiError(OUT_OF_RANGE, "Data out of range; NPLC")
        self.nplc = n

    set_current_range = accepted(":SENSe:CURRent:RANGe[:UPPer]", "range")
    set_current_range_auto = accepted(":SENSe:CURRent:RANGe:AUTO")

    @command(":OUTPut[:STATe]")
    def set_output(self, args, block):
        need(args, 1)
        self.output = boolean(args[0])
        if self.output:
            self.tripped = False
            self.bench.observed.note("smu_voltage", abs(self.level))

    @command(":OUTPut[:STATe]?")
    def get_output(self, args, block):
        return "1" if self.output else "0"

    @command(":READ?")
    def read(self, args, block):
        value = self._measure()
        self.buffer.append((self.level, value))
        return f"{value:.6e}"

    @command(":MEASure[:CURRent][:DC]?")
    def measure(self, args, block):
        return self.read(args, block)

    # -- list sweeps and the reading buffer ---------------------------------------
    @command(":SOURce:LIST:VOLTage")
    def set_list(self, args, block):
        self.sweep_list = list_values(args, MAX_VOLTS, MAX_LIST)

    @command(":SOURce:LIST:VOLTage:APPend")
    def append_list(self, args, block):
        self.sweep_list += list_values(args, MAX_VOLTS, MAX_LIST)
        if len(self.sweep_list) > MAX_LIST:
            raise ScpiError(OUT_OF_RANGE, "Data out of range; list too long")

    @command(":SOURce:LIST:VOLTage:POINts?")
    def list_points(self, args, block):
        return str(len(self.sweep_list))

    @command(":SOURce:SWEep:VOLTage:LIST")
    def configure_sweep(self, args, block):
        need(args, 1)
        start = int(number(args[0], "start index"))
        delay = number(args[1], "delay") if len(args) > 1 else 0.0
        if start < 1 or start > max(1, len(self.sweep_list)) or not 0 <= delay <= 10:
            raise ScpiError(OUT_OF_RANGE, "Data out of range; sweep")
        self.sweep_start = start
        self.sweep_delay = delay
        self.sweep_ready = True

    @command(":INITiate[:IMMediate]")
    def initiate(self, args, block):
        if not self.sweep_ready or not self.sweep_list:
            raise ScpiError(EXECUTION, "Execution error; no sweep configured")
        self.buffer.clear()
        was_on = self.output
        self.output = True
        for v in self.sweep_list[self.sweep_start - 1:]:
            self.level = v
            self.buffer.append((v, self._apply(v, max(self.sweep_delay, 1e-7))))
            self.bench.clock.advance(self.sweep_delay)
        self.output = was_on
        self.level = 0.0 if not was_on else self.level

    @command(":TRACe:DATA?")
    def trace_data(self, args, block):
        need(args, 2)
        start, end = int(number(args[0], "start")), int(number(args[1], "end"))
        if not 1 <= start <= end <= len(self.buffer):
            raise ScpiError(OUT_OF_RANGE, "Data out of range; buffer index")
        elements = [a.strip().upper() for a in args[3:]] or ["READ"]
        out = []
        for source, reading in self.buffer[start - 1:end]:
            for el in elements:
                out.append(f"{source:.6e}" if el.startswith("SOUR") else f"{reading:.6e}")
        return ",".join(out)

    @command(":TRACe:ACTual?")
    def trace_actual(self, args, block):
        return str(len(self.buffer))

    @command(":TRACe:CLEar")
    def trace_clear(self, args, block):
        self.buffer.clear()

    # -- settings accepted for compatibility with common drivers (no effect here) ----
    @command(":ABORt")
    def abort(self, args, block):
        self.sweep_ready = False

    @command(":SOURce:VOLTage:DELay")
    def set_delay(self, args, block):
        need(args, 1)
        self.source_delay = number(args[0], "delay")

    @command(":SOURce:VOLTage:DELay?")
    def get_delay(self, args, block):
        return f"{getattr(self, 'source_delay', 0.0):.6e}"

    set_delay_auto = accepted(":SOURce:VOLTage:DELay:AUTO")

    @command(":SENSe:CURRent:AVERage[:STATe]")
    def set_average(self, args, block):
        need(args, 1)
        self.average_on = boolean(args[0])

    @command(":SENSe:CURRent:AVERage[:STATe]?")
    def get_average(self, args, block):
        return "1" if self.average_on else "0"

    @command(":SENSe:CURRent:AVERage:COUNt")
    def set_average_count(self, args, block):
        need(args, 1)
        n = number(args[0], "count")
        if n != int(n) or not 1 <= n <= 100:
            raise ScpiError(OUT_OF_RANGE, "Data out of range; filter count")
        self.average_count = int(n)

    @command(":SENSe:CURRent:AVERage:COUNt?")
    def get_average_count(self, args, block):
        return str(self.average_count)

    @command(":SENSe:CURRent:AVERage:TCONtrol")
    def set_average_tcon(self, args, block):
        # REPeat and MOVing both average ``count`` conversions into the first reading
        need(args, 1)
        if args[0].strip().upper()[:3] not in ("REP", "MOV"):
            raise ScpiError(ILLEGAL_VALUE, "Illegal parameter value; filter type")

    @command(":OUTPut:VOLTage:SMODe")
    def set_off_mode(self, args, block):
        need(args, 1)

    @command(":ROUTe:TERMinals")
    def set_terminals(self, args, block):
        need(args, 1)
        if args[0].upper() not in ("FRON", "FRONT", "REAR"):
            raise ScpiError(ILLEGAL_VALUE, "Illegal parameter value; FRONt|REAR")

    set_trace_points = accepted(":TRACe:POINts", "points")

    @command(":SYSTem:BEEPer[:IMMediate]")
    def beep(self, args, block):
        return None

    @command("*TRG")
    def trigger(self, args, block):
        return None

    @command("*LANG?")
    def lang(self, args, block):
        return "SCPI"
