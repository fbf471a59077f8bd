"""The simulated bench: one wafer on a chuck, a probe card, and the instruments.

All emulators share this state: the die the prober has contacted, the chuck
and air-forcer temperatures, the switch-matrix closures, the virtual clock,
the latency model and the fault injector. Every transaction passes
:meth:`SimBench.transact`, which charges latency, fires faults and keeps the
die at the temperature the thermal hardware gives it. Given a state folder
(:meth:`SimBench.bind_state`), the wafer remembers: a die is saved when the probes
leave it, at most once a second while in use, and at :meth:`SimBench.close`.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sim_backend.chip import SimChip
from sim_backend.faults import EndpointFault, FaultInjector
from sim_backend.latency import LatencyModel
from sim_backend.spec import ChipSpec, load_chip
from sim_backend.state import StateError, held_signals
from sim_backend.thermal import DieThermalPath, ThermalModel
from sim_backend.wafer import SimWafer, WaferSpec

DEFAULT_PORTS = {
    "array": 5025, "smu": 5026, "switch": 5027, "prober": 35555, "thermostream": 5028,
    "clock": 5029, "keithley2600b": 5030, "keysight-b2900": 5031, "velox": 1412,
}

@dataclass
class WireLog:
    """The largest values that crossed the wire, per quantity (for safety tests)."""

    maxima: dict[str, float] = field(default_factory=dict)
    minima: dict[str, float] = field(default_factory=dict)

    def note(self, quantity: str, value: float) -> None:
        value = float(value)
        if value > self.maxima.get(quantity, float("-inf")):
            self.maxima[quantity] = value
        if value < self.minima.get(quantity, float("inf")):
            self.minima[quantity] = value


@dataclass(frozen=True)
class SwitchWiring:
    """How the probe card's lines reach the switch matrix.

    Word line i is matrix column i, bit line j is matrix column word_lines + j,
    counted across 12-column cards (column k: slot k // 12 + 1, column k % 12 + 1).
    Matrix row A is the SMU's force (HI) bus, row B its sense/low (LO) bus.
    """

    word_lines: int = 16
    bit_lines: int = 16

    def line_of(self, column_index: int) -> tuple[str, int] | None:
        if column_index < self.word_lines:
            return ("wl", column_index)
        if column_index < self.word_lines + self.bit_lines:
            return ("bl", column_index - self.word_lines)
        return None


def garble(reply: bytes) -> bytes:
    """Corrupt a reply the way a noisy bus does: flipped bytes, same terminator."""
    body = bytearray(reply.rstrip(b"\n") or b"?")
    for i in range(0, len(body), max(1, len(body) // 7)):
        body[i] ^= 0x5A
    body[0] = ord("#") if body[0] != ord("#") else ord("$")
    return bytes(body) + b"\n"


class SimBench:
    """A simulated probe station with every instrument role."""

    def __init__(
        self,
        chip: str | Path | ChipSpec = "rram",
        seed: int = 7,
        wafer: str | Path | WaferSpec = "default",
        rows: int | None = None,
        cols: int | None = None,
        latency: LatencyModel | None = None,
        wiring: SwitchWiring | None = None,
        state: str | Path | None = None,
    ) -> None:
        spec = chip if isinstance(chip, ChipSpec) else load_chip(chip)
        if rows is not None or cols is not None:
            spec = spec.with_geometry(rows, cols)
        self.spec = spec
        self.wafer = SimWafer(spec, seed=seed, wafer=wafer, state=state)
        self.clock = self.wafer.clock
        self.latency = latency or LatencyModel()
        self.wiring = wiring or SwitchWiring(min(16, spec.chip.rows), min(16, spec.chip.cols))
        self.faults = FaultInjector()
        self.observed = WireLog()
        self.transactions: Counter[str] = Counter()
        self.lock = threading.RLock()
        self.chuck = ThermalModel(self.clock, start_c=25.0, tau_s=60.0, window_c=0.5)
        self.forcer = ThermalModel(self.clock, start_c=25.0, tau_s=20.0, window_c=0.5)
        self.forcer_active = False
        # what the dies feel: the chuck through each die's lag and offset (hidden truth)
        self.die_thermal = DieThermalPath(self.clock, self.chuck, self.forcer,
                                          tau_s=spec.temperature.die_tau,
                                          ambient_c=spec.temperature.ambient)
        self.die_id = self.wafer.dies[0].id
        self.in_contact = False
        self.bins: dict[int, int] = {}
        self.closed_channels: set[str] = set()
        from sim_backend.emulators import EMULATORS  # the emulators import this module

        self.emulators = {role: cls(self) for role, cls in EMULATORS.items()}

    # -- the prober's mechanics, shared by the SENTIO and Velox emulators ---------
    def step_to(self, die, role: str) -> int:
        """Move the chuck (separated) under ``die``; a queued ``chuck`` fault fires on the
        way. Returns the die's position on the wafer's route."""
        self.die_id = die.id
        self.clock.advance(self.latency.die_step_s)
        excursion = self.faults.take_fault(role, ("chuck",))
        if excursion is not None:  # the chuck lost its temperature on the way
            self.chuck.disturb(excursion.delta_c)
        return [d.id for d in self.wafer.dies].index(die.id)

    def contact(self, role: str) -> bool:
        """Chuck to contact height; False when a ``contact`` fault makes it fail. An
        ``open`` fault contacts without continuity until the next separation."""
        self.clock.advance(self.latency.contact_s)
        if self.faults.take(role, ("contact",)):
            self.in_contact = False
            self.faults.unlatch("open")
            return False
        self.in_contact = True
        if self.faults.take(role, ("open",)):  # at contact height, needles open
            self.faults.latch("open")
        else:
            self.faults.unlatch("open")
        return True

    def separate(self) -> None:
        self.clock.advance(self.latency.contact_s)
        self.in_contact = False
        self.faults.unlatch("open")

    # -- the die under the probes ----------------------------------------------
    @property
    def chip(self) -> SimChip | None:
        """The contacted die's chip (None while the probes are up): for scoring."""
        if not self.in_contact:
            return None
        return self.wafer.die(self.die_id)

    def die_temperature(self) -> float:
        """The contacted die's true temperature, degC: not what the chuck reads.

        The die lags the chuck by its thermal time constant and sits a per-die
        offset toward ambient; under the air forcer it has the forcer's
        temperature. A die once touched stays on the chuck's thermal path, so
        its relaxation / drift keep the time it spends hot after the probes leave.
        """
        self.die_thermal.forcer_active = self.forcer_active
        chip = self.wafer.die(self.die_id)
        chip.attach_thermal(self.die_thermal)
        return chip.temperature

    # -- every transaction -------------------------------------------------------
    def transact(self, emulator, message: bytes, process) -> bytes | None:
        with self.lock:
            role = emulator.role
            self.transactions[role] += 1
            fault = self.faults.take_fault(role, ("timeout", "drop", "reboot"))
            reboot_after = fault is not None and fault.kind == "reboot" and fault.applied
            if fault and not reboot_after:
                if fault.kind == "reboot":  # the board restarts before acting on the message
                    emulator.power_on()
                raise EndpointFault(fault.kind)
            self.clock.advance(self.latency.transaction(len(message)))
            if self.in_contact:
                self.wafer.die(self.die_id).temperature = self.die_temperature()
            where = (self.in_contact, self.die_id)
            with held_signals():  # a host's signal never leaves a die half-changed
                reply = process(message)
                self._remember(where)
            if reboot_after:  # the board acted on the message, then restarted: no reply
                emulator.power_on()
                raise EndpointFault("reboot")
            if reply:
                self.clock.advance(self.latency.byte_s * len(reply))
                if self.faults.take(role, ("garble",)):
                    reply = garble(reply)
            return reply

    # -- the wafer's memory (sim_backend.state) ----------------------------------------
    def bind_state(self, folder: str | Path) -> None:
        """Remember the wafer in ``folder`` from now on (see :meth:`SimWafer.bind`)."""
        with self.lock:
            self.wafer.bind(folder)

    def _remember(self, where: tuple[bool, int]) -> None:
        """Save a die the probes just left; else at most once a second while in use.

        A failed autosave (a full disk) does not stop the instruments: the next one, and
        :meth:`close`, try again, and close reports the failure.
        """
        left = where[0] and (not self.in_contact or self.die_id != where[1])
        try:
            if left:
                self.wafer.save()
            else:
                self.wafer.autosave()
        except (OSError, StateError):
            pass

    def close(self) -> None:
        """Save what changed on the wafer and let go of its state folder."""
        with self.lock:
            self.wafer.close()

    # -- transports ----------------------------------------------------------------
    def resources(self, ports: dict[str, int] | None = None,
                  host: str = "127.0.0.1") -> dict[str, str]:
        ports = ports or DEFAULT_PORTS
        return {role: f"TCPIP::{host}::{ports[role]}::SOCKET" for role in self.emulators}

    def visa_library(self):
        """An in-process PyVISA library serving this bench's instruments."""
        from sim_backend.visa_library import SimVisaLibrary

        return SimVisaLibrary({self.resources()[r]: e for r, e in self.emulators.items()})

    def serve(self, host: str = "127.0.0.1", ports: dict[str, int] | None = None):
        """Start loopback TCP servers for every instrument (see :mod:`sim_backend.server`)."""
        from sim_backend.server import SimServers

        return SimServers(self, host=host, ports=ports).start()
