"""Emulator of a Keysight B2902A precision SMU (SCPI), wired to the probe card.

Two channels, addressed as the B2900 does: a suffix on the subsystem
(``:SOUR2:VOLT``, ``:SENS2:CURR:PROT``, ``:OUTP2``, ``:TRIG2:TIM``; none means
channel 1, ``[:SOURce]`` may be left out) or a channel list (``:MEAS:CURR? (@2)``,
``:INIT (@1,2)``). Channel 1's HI reaches the word lines closed on switch-matrix
row A, its LO the bit lines closed on row B, as the Keithley 2450's; channel 2
is not wired to the card (it sources into an open circuit and reads its noise).

Physics: a spot measurement (``:MEAS:CURR?``) sources the DC level (the
immediate level) over the integration time, averaging one conversion per 0.1
PLC of aperture (the reset value, so white read noise falls as the aperture
grows). A triggered run (``:INIT``) outputs ``:TRIG:COUN`` points: the list
points (``:SOUR:VOLT:MODE LIST``) or the triggered level (``FIX``). In DC shape
each point lasts the timer period (``:TRIG:SOUR TIM``), stretched if its
measurement (``:TRIG:ACQ:DEL`` + aperture) does not fit; in pulse shape
(``:SOUR:FUNC:SHAP PULS``) each point is a pulse of ``:SOUR:PULS:WIDT`` from
the base (the immediate level), measured at the peak if the acquisition starts
inside the pulse. Either way a point above the switching threshold is a
programming pulse of that width on the connected cell.

Timing settings outside the instrument's range are set to its minimum or
maximum, as the B2900 does (aperture 8 us..2 s, NPLC 4e-4..100 at 50 Hz, pulse
width 50 us..100 ks, trigger timer 20 us..100 ks); levels and limits outside it
are refused (``-222``). Sourced values go on the bench's WireLog as the 2450
emulator's do.

The cell-connection and apply physics are the SMU emulators' shared ones
(:mod:`sim_backend.emulators.smu_physics`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from sim_backend.emulators.smu_physics import (
    accepted,
    connected_cells,
    list_values,
    source_point,
)
from sim_backend.scpi import (
    DATA_TYPE,
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

MAX_VOLTS = 210.0  # the B2902A's largest voltage range
MAX_AMPS = 3.03  # its largest DC current limit
MIN_AMPS = 1e-9
MAX_LIST = 2500
MAX_COUNT = 100000  # trigger count
CHANNELS = (1, 2)
APERTURE = (8e-6, 2.0)
PULSE_WIDTH = (50e-6, 1e5)
PULSE_DELAY = (0.0, 1e5)
TIMER = (20e-6, 1e5)  # B2901A/B2902A; the B2911A/B2912A go down to 10 us
TRIGGER_DELAY = (0.0, 1e5)
CONVERSION_PLC = 0.1  # one read-noise conversion per 0.1 PLC of integration
MAX_CONVERSIONS = 100
SUFFIX_OUT_OF_RANGE = -114
DATA_STALE = -230
TRIGGER_PARTS = ("ACQ", "TRAN")
_PART_NAMES = {"ACQ": "ACQ", "ACQUIRE": "ACQ", "TRAN": "TRAN", "TRANSIENT": "TRAN"}


@dataclass
class _Trigger:
    source: str = "AINT"
    timer: float = 1e-4
    count: int = 1
    delay: float = 0.0


@dataclass
class _Channel:
    """One channel's settings and last results (the power-on state)."""

    function: str = "VOLT"
    shape: str = "DC"
    mode: str = "FIX"
    level: float = 0.0  # immediate amplitude: the DC level, the pulse base
    triggered: float = 0.0  # :VOLT:TRIG, the level a FIX-mode trigger outputs
    current_level: float = 0.0  # :SOUR:CURR (stored; sourcing current is not emulated)
    sweep: list[float] = field(default_factory=list)
    pulse_delay: float = 0.0
    pulse_width: float = 1e-4
    compliance: float = 1e-4
    voltage_limit: float = 2.0  # :SENS:VOLT:PROT, the limit when sourcing current
    aperture: float = CONVERSION_PLC / 50.0
    output: bool = False
    auto_on: bool = True
    auto_off: bool = False
    remote_sense: bool = False
    sense: tuple[str, ...] = ("VOLT", "CURR")
    tripped: bool = False
    held: float | None = None  # what a DC-shape run left on the output (None: the level)
    trigger: dict[str, _Trigger] = field(
        default_factory=lambda: {p: _Trigger() for p in TRIGGER_PARTS})
    results: list[tuple[float, float]] = field(default_factory=list)  # (source, current)


class KeysightB2900Emulator(ScpiInstrument):
    """A B2902A: two channels, channel 1 on the probe card's switch matrix."""

    idn = "Keysight Technologies,B2902A,MY51140001,3.4.2011.5100"
    role = "smu"

    def __init__(self, bench) -> None:
        super().__init__(bench)
        # each channel's current-noise floor (channel 1's seeded as the 2450 emulator's)
        self._rngs = {1: np.random.default_rng(2450), 2: np.random.default_rng(2900)}
        self._channel = 1  # the channel the command being executed addresses
        self._trigger_part: tuple[str, ...] = TRIGGER_PARTS
        self.reset()

    def reset(self) -> None:
        self.channels = {c: _Channel() for c in CHANNELS}
        self.line_hz = 50.0

    # channel 1 as the 2450 emulator exposes its state (for bench-wide safety checks)
    @property
    def output(self) -> bool:
        return self.channels[1].output

    @property
    def level(self) -> float:
        return self._dc_level(self.channels[1])

    # -- headers: channel suffixes, trigger parts ------------------------------------------
    def _execute(self, part: str, path: list[str], block: bytes | None):
        header, sep, rest = part.partition(" ")
        if not header.lstrip(":").startswith("*"):
            suffixes = re.findall(r"[A-Za-z](\d+)(?=:|\?|$)", header)
            if suffixes:
                channel = int(suffixes[0])
                if channel not in CHANNELS:
                    raise ScpiError(SUFFIX_OUT_OF_RANGE, "Header suffix out of range")
                self._channel = channel
            elif header.startswith(":") or not path:
                self._channel = 1
            header = self._trigger_header(header)
        return super()._execute(header + sep + rest, path, block)

    def _trigger_header(self, header: str) -> str:
        """``:TRIG[c]:ACQ|TRAN|ALL:<node>`` -> ``:TRIG:<node>`` for the parts named."""
        nodes = header.split(":")
        self._trigger_part = TRIGGER_PARTS
        for i, node in enumerate(nodes[:-1]):
            if re.sub(r"\d+$", "", node.upper()) in ("TRIG", "TRIGGER"):
                name = nodes[i + 1].rstrip("?").upper()
                if name in _PART_NAMES:
                    self._trigger_part = (_PART_NAMES[name],)
                    del nodes[i + 1]
                elif name == "ALL" and i + 2 < len(nodes):
                    del nodes[i + 1]
                break
        return ":".join(nodes)

    def _channels(self, args: list[str]) -> list[int]:
        """The channel list argument ``(@1)``, ``(@1,2)``, ``(@1:2)``; none: channel 1."""
        if not args:
            return [1]
        text = args[-1].replace(" ", "")
        match = re.fullmatch(r"\(@(\d+)(?:([,:])(\d+))?\)", text)
        if not match:
            raise ScpiError(DATA_TYPE, "Data type error; expected a channel list (@1)")
        first, last = int(match.group(1)), int(match.group(3) or match.group(1))
        found = [first, last] if match.group(2) == "," else list(range(first, last + 1))
        if not found or any(c not in CHANNELS for c in found):
            raise ScpiError(ILLEGAL_VALUE, "Illegal parameter value; channel list")
        return found

    @property
    def _ch(self) -> _Channel:
        return self.channels[self._channel]

    # -- physics -------------------------------------------------------------------------
    def _connected(self, channel: int = 1) -> np.ndarray | None:
        """Mask of the cells on ``channel``'s path (channel 2 reaches none)."""
        return connected_cells(self.bench) if channel == 1 else None

    def _apply(self, volts: float, seconds: float, channel: int = 1,
               plc: float = 0.0) -> tuple[float, bool]:
        """Source ``volts`` on ``channel`` for ``seconds`` (integrating ``plc`` power-line
        cycles): (current, compliance hit). Channel 2 reaches an open circuit: the noise
        floor, charged like any point."""
        point = source_point(self.bench, volts, seconds, ilim=self.channels[channel].compliance,
                             nplc=plc, rng=self._rngs[channel], role=self.role,
                             mask=self._connected(channel))
        return point.current, point.tripped

    def _dc_level(self, ch: _Channel) -> float:
        return ch.level if ch.held is None else ch.held

    def _switch_on(self, channel: int) -> None:
        """What a measurement or trigger finds: the output on (auto-on), or an error."""
        ch = self.channels[channel]
        if ch.output:
            return
        if not ch.auto_on:
            raise ScpiError(EXECUTION, "Execution error; output is off")
        ch.output = True
        self.bench.observed.note("smu_voltage", abs(self._dc_level(ch)))

    def _spot(self, channel: int) -> float:
        """One spot measurement at the DC level over the aperture."""
        self._switch_on(channel)
        ch = self.channels[channel]
        plc = ch.aperture * self.line_hz
        n = int(min(MAX_CONVERSIONS, max(1, round(plc / CONVERSION_PLC))))
        v = self._dc_level(ch)
        conversions = [self._apply(v, ch.aperture / n, channel, plc / n) for _ in range(n)]
        current = sum(c for c, _ in conversions) / n
        ch.tripped = any(t for _, t in conversions)  # the state of the latest measurement
        ch.results = [(v, current)]
        return current

    def _run(self, channel: int) -> None:
        """A triggered run: ``:TRIG:COUN`` points (list or triggered level), timed."""
        self._switch_on(channel)
        ch = self.channels[channel]
        tran, acq = ch.trigger["TRAN"], ch.trigger["ACQ"]
        if ch.mode == "LIST" and not ch.sweep:
            raise ScpiError(EXECUTION, "Execution error; the list is empty")
        ch.results = []
        plc = ch.aperture * self.line_hz
        measured = acq.delay + ch.aperture
        for k in range(tran.count):
            v = ch.sweep[k % len(ch.sweep)] if ch.mode == "LIST" else ch.triggered
            if ch.shape == "PULS":
                start, width = tran.delay + ch.pulse_delay, ch.pulse_width
                reading = self._apply(v, width, channel, plc)  # the pulse, read at its peak
                if not start <= acq.delay < start + width:  # read at the base instead
                    reading = self._apply(ch.level, ch.aperture, channel, plc)
                point = max(start + width, measured)
                if tran.source == "TIM":
                    point = max(point, tran.timer)
            else:
                point = max(measured, tran.delay + 1e-6)
                if tran.source == "TIM":  # the next trigger ends the point, if it is done
                    point = max(point, tran.timer)
                reading = self._apply(v, point, channel, plc)
                ch.held = v
            ch.results.append((v, reading[0]))
            ch.tripped = reading[1]  # the state of the latest measurement
            self.bench.clock.advance(point)
        if ch.held is not None:
            self.bench.observed.note("smu_voltage", abs(ch.held))
        if ch.auto_off:
            ch.output = False

    # -- source -------------------------------------------------------------------------------
    @command("[:SOURce]:FUNCtion:MODE")
    def set_function(self, args, block):
        need(args, 1)
        if args[0].upper() not in ("VOLT", "VOLTAGE"):
            raise ScpiError(ILLEGAL_VALUE, "Illegal parameter value; emulated: VOLT only")
        self._ch.function = "VOLT"

    @command("[:SOURce]:FUNCtion:MODE?")
    def get_function(self, args, block):
        return self._ch.function

    @command("[:SOURce]:FUNCtion:SHAPe")
    def set_shape(self, args, block):
        need(args, 1)
        shape = args[0].upper()
        if shape not in ("DC", "PULS", "PULSE"):
            raise ScpiError(ILLEGAL_VALUE, "Illegal parameter value; DC|PULSe")
        self._ch.shape = shape[:4]
        self._ch.held = None

    @command("[:SOURce]:FUNCtion:SHAPe?")
    def get_shape(self, args, block):
        return self._ch.shape

    @command("[:SOURce]:VOLTage[:LEVel][:IMMediate][:AMPLitude]")
    def set_level(self, args, block):
        ch = self._ch
        ch.level = self._volts(args)
        ch.held = None
        if ch.output:
            self.bench.observed.note("smu_voltage", abs(ch.level))

    @command("[:SOURce]:VOLTage[:LEVel][:IMMediate][:AMPLitude]?")
    def get_level(self, args, block):
        return f"{self._ch.level:+.6E}"

    @command("[:SOURce]:VOLTage[:LEVel]:TRIGgered[:AMPLitude]")
    def set_triggered(self, args, block):
        self._ch.triggered = self._volts(args)

    @command("[:SOURce]:VOLTage[:LEVel]:TRIGgered[:AMPLitude]?")
    def get_triggered(self, args, block):
        return f"{self._ch.triggered:+.6E}"

    @command("[:SOURce]:VOLTage:MODE")
    def set_mode(self, args, block):
        need(args, 1)
        mode = args[0].upper()
        if mode not in ("FIX", "FIXED", "LIST"):
            raise ScpiError(ILLEGAL_VALUE, "Illegal parameter value; emulated: FIXed|LIST")
        self._ch.mode = "LIST" if mode == "LIST" else "FIX"
        self._ch.held = None

    @command("[:SOURce]:VOLTage:MODE?")
    def get_mode(self, args, block):
        return self._ch.mode

    @command("[:SOURce]:VOLTage:RANGe[:UPPer]")
    def set_range(self, args, block):
        need(args, 1)
        self._volts(args)

    set_range_auto = accepted("[:SOURce]:VOLTage:RANGe:AUTO")

    @command("[:SOURce]:CURRent[:LEVel][:IMMediate][:AMPLitude]")
    def set_current_level(self, args, block):
        need(args, 1)
        i = number(args[0], "current")
        if abs(i) > MAX_AMPS:
            raise ScpiError(OUT_OF_RANGE, "Data out of range; current")
        self._ch.current_level = i

    @command("[:SOURce]:CURRent[:LEVel][:IMMediate][:AMPLitude]?")
    def get_current_level(self, args, block):
        return f"{self._ch.current_level:+.6E}"

    @command("[:SOURce]:LIST:VOLTage")
    def set_list(self, args, block):
        self._ch.sweep = list_values(args, MAX_VOLTS, MAX_LIST)

    @command("[:SOURce]:LIST:VOLTage?")
    def get_list(self, args, block):
        return ",".join(f"{v:+.6E}" for v in self._ch.sweep)

    @command("[:SOURce]:LIST:VOLTage:APPend")
    def append_list(self, args, block):
        values = list_values(args, MAX_VOLTS, MAX_LIST)
        if len(self._ch.sweep) + len(values) > MAX_LIST:
            raise ScpiError(OUT_OF_RANGE, "Data out of range; list too long")
        self._ch.sweep += values

    @command("[:SOURce]:LIST:VOLTage:POINts?")
    def list_points(self, args, block):
        return str(len(self._ch.sweep))

    @command("[:SOURce]:PULSe:DELay")
    def set_pulse_delay(self, args, block):
        self._ch.pulse_delay = self._timing(args, PULSE_DELAY, 0.0)

    @command("[:SOURce]:PULSe:DELay?")
    def get_pulse_delay(self, args, block):
        return f"{self._ch.pulse_delay:+.6E}"

    @command("[:SOURce]:PULSe:WIDTh")
    def set_pulse_width(self, args, block):
        self._ch.pulse_width = self._timing(args, PULSE_WIDTH, 1e-4)

    @command("[:SOURce]:PULSe:WIDTh?")
    def get_pulse_width(self, args, block):
        return f"{self._ch.pulse_width:+.6E}"

    def _volts(self, args) -> float:
        need(args, 1)
        v = number(args[0], "voltage")
        if abs(v) > MAX_VOLTS:
            raise ScpiError(OUT_OF_RANGE, "Data out of range; voltage")
        return v

    @staticmethod
    def _timing(args, span: tuple[float, float], default: float) -> float:
        """A time setting: MIN|MAX|DEF or a number, set to MIN or MAX beyond them."""
        need(args, 1)
        word = args[0].upper()
        if word in ("MIN", "MINIMUM"):
            return span[0]
        if word in ("MAX", "MAXIMUM"):
            return span[1]
        if word in ("DEF", "DEFAULT"):
            return default
        return min(max(number(args[0], "time"), span[0]), span[1])

    # -- sense ----------------------------------------------------------------------------
    @command(":SENSe:FUNCtion[:ON]")
    def set_sense(self, args, block):
        need(args, 1)
        names = []
        for arg in args:
            name = arg.strip("\"'").upper().split(":")[0]
            if name not in ("CURR", "CURRENT", "VOLT", "VOLTAGE", "RES", "RESISTANCE"):
                raise ScpiError(ILLEGAL_VALUE, "Illegal parameter value; measurement function")
            names.append(name[:4] if name != "RESISTANCE" else "RES")
        self._ch.sense = tuple(dict.fromkeys((*self._ch.sense, *names)))

    @command(":SENSe:FUNCtion[:ON]?")
    def get_sense(self, args, block):
        return ",".join(f'"{name}"' for name in self._ch.sense)

    @command(":SENSe:CURRent[:DC]:PROTection[:LEVel]")
    def set_compliance(self, args, block):
        need(args, 1)
        i = number(args[0], "current limit")
        if not MIN_AMPS <= abs(i) <= MAX_AMPS:
            raise ScpiError(OUT_OF_RANGE, "Data out of range; current limit")
        self.bench.observed.note("compliance", abs(i))
        self._ch.compliance = abs(i)

    @command(":SENSe:CURRent[:DC]:PROTection[:LEVel]?")
    def get_compliance(self, args, block):
        return f"{self._ch.compliance:+.6E}"

    @command(":SENSe:CURRent[:DC]:PROTection:TRIPped?")
    def get_trip(self, args, block):
        return "1" if self._ch.tripped else "0"

    @command(":SENSe:VOLTage[:DC]:PROTection[:LEVel]")
    def set_voltage_limit(self, args, block):
        self._ch.voltage_limit = abs(self._volts(args))

    @command(":SENSe:VOLTage[:DC]:PROTection[:LEVel]?")
    def get_voltage_limit(self, args, block):
        return f"{self._ch.voltage_limit:+.6E}"

    @command(":SENSe:CURRent[:DC]:APERture")
    def set_aperture(self, args, block):
        self._ch.aperture = self._timing(args, APERTURE, CONVERSION_PLC / self.line_hz)

    @command(":SENSe:CURRent[:DC]:APERture?")
    def get_aperture(self, args, block):
        return f"{self._ch.aperture:+.6E}"

    @command(":SENSe:VOLTage[:DC]:APERture")
    def set_voltage_aperture(self, args, block):  # one integration time for every item
        self.set_aperture(args, block)

    @command(":SENSe:CURRent[:DC]:NPLCycles")
    def set_nplc(self, args, block):
        need(args, 1)
        lo, hi = (span * self.line_hz for span in APERTURE)
        word = args[0].upper()
        n = {"MIN": lo, "MINIMUM": lo, "MAX": hi, "MAXIMUM": hi, "DEF": CONVERSION_PLC,
             "DEFAULT": CONVERSION_PLC}.get(word)
        if n is None:
            n = min(max(number(args[0], "NPLC"), lo), hi)
        self._ch.aperture = n / self.line_hz

    @command(":SENSe:CURRent[:DC]:NPLCycles?")
    def get_nplc(self, args, block):
        return f"{self._ch.aperture * self.line_hz:+.6E}"

    @command(":SENSe:VOLTage[:DC]:NPLCycles")
    def set_voltage_nplc(self, args, block):
        self.set_nplc(args, block)

    set_aperture_auto = accepted(":SENSe:CURRent[:DC]:APERture:AUTO")
    set_nplc_auto = accepted(":SENSe:CURRent[:DC]:NPLCycles:AUTO")
    set_current_range = accepted(":SENSe:CURRent[:DC]:RANGe[:UPPer]", "range")
    set_current_range_auto = accepted(":SENSe:CURRent[:DC]:RANGe:AUTO")

    @command(":SENSe:REMote")
    def set_remote(self, args, block):
        need(args, 1)
        self._ch.remote_sense = boolean(args[0])

    @command(":SENSe:REMote?")
    def get_remote(self, args, block):
        return "1" if self._ch.remote_sense else "0"

    # -- output -------------------------------------------------------------------------
    @command(":OUTPut[:STATe]")
    def set_output(self, args, block):
        need(args, 1)
        ch = self._ch
        ch.output = boolean(args[0])
        if ch.output:
            ch.tripped = False
            self.bench.observed.note("smu_voltage", abs(self._dc_level(ch)))
        else:
            ch.held = None

    @command(":OUTPut[:STATe]?")
    def get_output(self, args, block):
        return "1" if self._ch.output else "0"

    @command(":OUTPut:ON:AUTO")
    def set_auto_on(self, args, block):
        need(args, 1)
        self._ch.auto_on = boolean(args[0])

    @command(":OUTPut:ON:AUTO?")
    def get_auto_on(self, args, block):
        return "1" if self._ch.auto_on else "0"

    @command(":OUTPut:OFF:AUTO")
    def set_auto_off(self, args, block):
        need(args, 1)
        self._ch.auto_off = boolean(args[0])

    @command(":OUTPut:OFF:AUTO?")
    def get_auto_off(self, args, block):
        return "1" if self._ch.auto_off else "0"

    # -- trigger (``:TRIG[c][:ALL]``, ``:TRIG[c]:ACQ``, ``:TRIG[c]:TRAN``) -----------------
    def _set_trigger(self, name: str, value) -> None:
        for part in self._trigger_part:
            setattr(self._ch.trigger[part], name, value)

    def _get_trigger(self, name: str):
        return getattr(self._ch.trigger[self._trigger_part[-1]], name)

    @command(":TRIGger:SOURce")
    def set_trigger_source(self, args, block):
        need(args, 1)
        source = args[0].upper()
        names = {"AINT": "AINT", "AUTO": "AINT", "BUS": "BUS", "TIM": "TIM", "TIMER": "TIM"}
        if source not in names:
            raise ScpiError(ILLEGAL_VALUE, "Illegal parameter value; emulated: AINT|BUS|TIM")
        self._set_trigger("source", names[source])

    @command(":TRIGger:SOURce?")
    def get_trigger_source(self, args, block):
        return self._get_trigger("source")

    @command(":TRIGger:TIMer")
    def set_trigger_timer(self, args, block):
        self._set_trigger("timer", self._timing(args, TIMER, 1e-4))

    @command(":TRIGger:TIMer?")
    def get_trigger_timer(self, args, block):
        return f"{self._get_trigger('timer'):+.6E}"

    @command(":TRIGger:COUNt")
    def set_trigger_count(self, args, block):
        need(args, 1)
        word = args[0].upper()
        n = {"MIN": 1, "MINIMUM": 1, "MAX": MAX_COUNT, "MAXIMUM": MAX_COUNT, "DEF": 1,
             "DEFAULT": 1}.get(word)
        if n is None:
            n = number(args[0], "count")
            if n != int(n) or not 1 <= n <= MAX_COUNT:
                raise ScpiError(OUT_OF_RANGE, "Data out of range; trigger count")
        self._set_trigger("count", int(n))

    @command(":TRIGger:COUNt?")
    def get_trigger_count(self, args, block):
        return str(self._get_trigger("count"))

    @command(":TRIGger:DELay")
    def set_trigger_delay(self, args, block):
        self._set_trigger("delay", self._timing(args, TRIGGER_DELAY, 0.0))

    @command(":TRIGger:DELay?")
    def get_trigger_delay(self, args, block):
        return f"{self._get_trigger('delay'):+.6E}"

    # -- measurements and triggered runs --------------------------------------------------
    @command(":MEASure:CURRent[:DC]?")
    def measure_current(self, args, block):
        return ",".join(f"{self._spot(c):+.6E}" for c in self._channels(args))

    @command(":MEASure:VOLTage[:DC]?")
    def measure_voltage(self, args, block):
        out = []
        for c in self._channels(args):
            self._spot(c)
            out.append(f"{self._dc_level(self.channels[c]):+.6E}")
        return ",".join(out)

    @command(":MEASure:RESistance?")
    def measure_resistance(self, args, block):
        out = []
        for c in self._channels(args):
            current = self._spot(c)
            volts = self._dc_level(self.channels[c])
            out.append(f"{volts / current if current else 9.91e37:+.6E}")
        return ",".join(out)

    @command(":INITiate[:IMMediate][:ALL]")
    def initiate(self, args, block):
        for c in self._channels(args):
            self._run(c)

    @command(":INITiate[:IMMediate]:TRANsient")
    def initiate_transient(self, args, block):
        self.initiate(args, block)

    @command(":INITiate[:IMMediate]:ACQuire")
    def initiate_acquire(self, args, block):
        self.initiate(args, block)

    @command(":ABORt[:ALL]")
    def abort(self, args, block):
        return None

    def _fetched(self, args, element: int) -> str:
        out = []
        for c in self._channels(args):
            results = self.channels[c].results
            if not results:
                raise ScpiError(DATA_STALE, "Data corrupt or stale; no data")
            out += [f"{r[element]:+.6E}" for r in results]
        return ",".join(out)

    @command(":FETCh:ARRay:CURRent[:DC]?")
    def fetch_currents(self, args, block):
        return self._fetched(args, 1)

    @command(":FETCh:ARRay:SOURce?")
    def fetch_sources(self, args, block):
        return self._fetched(args, 0)

    @command(":FETCh[:SCALar]:CURRent[:DC]?")
    def fetch_current(self, args, block):
        latest = []
        for c in self._channels(args):
            results = self.channels[c].results
            if not results:
                raise ScpiError(DATA_STALE, "Data corrupt or stale; no data")
            latest.append(f"{results[-1][1]:+.6E}")
        return ",".join(latest)

    # -- system ------------------------------------------------------------------------------
    @command(":SYSTem:ERRor[:NEXT]?")
    def _syst_err(self, args, block):  # Keysight's form: +0,"No error"
        if not self.errors:
            return '+0,"No error"'
        code, message = self.errors.popleft()
        return f'{code:+d},"{message}"'

    @command(":SYSTem:LFRequency")
    def set_line_frequency(self, args, block):
        need(args, 1)
        hz = number(args[0], "line frequency")
        if hz not in (50, 60):
            raise ScpiError(ILLEGAL_VALUE, "Illegal parameter value; 50|60")
        self.line_hz = float(hz)

    @command(":SYSTem:LFRequency?")
    def get_line_frequency(self, args, block):
        return str(int(self.line_hz))

    @command(":FORMat[:DATA]")
    def set_format(self, args, block):
        need(args, 1)
        if args[0].upper() not in ("ASC", "ASCII"):
            raise ScpiError(ILLEGAL_VALUE, "Illegal parameter value; emulated: ASCii")
