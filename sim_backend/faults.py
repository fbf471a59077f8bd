"""Bench faults on demand, for testing that drivers recover or fail clearly."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

FAULT_KINDS = ("timeout", "drop", "garble", "compliance", "contact", "reboot", "open", "chuck")
REBOOT_ROLES = ("array", "smu", "clock")  # the SCPI emulators, which have a power-on state
PROBER_FAULTS = ("open", "chuck")  # faults of the prober and its chuck: role "prober" only
CHUCK_EXCURSION_C = 5.0  # degC: the default jump of a ``chuck`` fault, ten settle windows


class EndpointFault(Exception):
    """Raised by an endpoint to make its transport misbehave."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind  # "timeout", "drop" or "reboot"

    @property
    def drops_connection(self) -> bool:
        """The transport loses the connection (else: the message is never answered)."""
        return self.kind in ("drop", "reboot")


class FaultError(ValueError):
    """An unknown fault kind or role was requested."""


@dataclass
class Fault:
    """One queued fault; ``applied`` (reboot only): the message is processed before it;
    ``delta_c`` (chuck only): the temperature jump, degC."""

    kind: str
    role: str
    count: int
    after: int
    applied: bool = False
    delta_c: float = CHUCK_EXCURSION_C


class FaultInjector:
    """Queue faults for the next transactions to one instrument role.

    - ``timeout``: the instrument never answers the message.
    - ``drop``: the connection is lost instead of the message being processed.
    - ``garble``: the reply's bytes are corrupted.
    - ``compliance``: the SMU trips its current compliance on the next measurement.
    - ``contact``: the prober fails to make contact.
    - ``reboot``: the instrument restarts during the message: the connection is
      lost, and the instrument comes back in its power-on state (settings at
      their defaults, error queue empty, the array controller's ``:PULS:COUN?``
      at 0). With ``applied=False`` (the default) the message is not processed
      (a pulse batch in flight is lost); with ``applied=True`` it is, and only
      its reply is lost. For the SCPI instruments: ``array``, ``smu``, ``clock``.
    - ``open``: the prober reports contact but the needles have no continuity (a
      lifted or dirty probe card): each of the next ``count`` contact moves
      succeeds, and until the chuck separates the array controller reads the open
      circuit (its read-out's noise floor) instead of the die. Role ``prober``;
      ``after`` counts successful contact moves.
    - ``chuck``: a chuck temperature excursion on a die step: when the prober has
      stepped, the chuck's temperature jumps by ``delta_c`` (default +5 degC) and
      relaxes back with the chuck's time constant, so the chuck reports "not
      settled" for a while (60 s time constant, 0.5 degC window: 138 s for 5 degC).
      Role ``prober``; ``after`` counts die steps.

    A fault that lasts beyond its transaction (``open``) is *latched* by the emulator
    that fired it (:meth:`latch`) and read by the others (:meth:`latched`).
    """

    def __init__(self) -> None:
        self._pending: list[Fault] = []
        self._latched: set[str] = set()
        self._lock = threading.Lock()
        self.fired: list[tuple[str, str]] = []

    def inject(self, kind: str, role: str, count: int = 1, after: int = 0,
               applied: bool = False, delta_c: float | None = None) -> None:
        if kind not in FAULT_KINDS:
            raise FaultError(f"unknown fault {kind!r}; choose from {', '.join(FAULT_KINDS)}")
        if kind == "reboot" and role not in REBOOT_ROLES:
            raise FaultError(f"a reboot is emulated for {', '.join(REBOOT_ROLES)}, "
                             f"not {role!r}")
        if kind in PROBER_FAULTS and role != "prober":
            raise FaultError(f"the {kind} fault is emulated for the prober (role "
                             f"'prober'), not {role!r}")
        if applied and kind != "reboot":
            raise FaultError(f"applied= is an option of the reboot fault, not of {kind!r}")
        if delta_c is not None and kind != "chuck":
            raise FaultError(f"delta_c= is an option of the chuck fault, not of {kind!r}")
        jump = CHUCK_EXCURSION_C if delta_c is None else float(delta_c)
        if not math.isfinite(jump) or jump == 0:
            raise FaultError(f"delta_c must be a finite, non-zero number of degC, got "
                             f"{delta_c!r}")
        with self._lock:
            self._pending.append(Fault(kind, role, int(count), int(after), bool(applied),
                                       jump))

    def clear(self) -> None:
        """Forget every pending fault and end every latched one."""
        with self._lock:
            self._pending.clear()
            self._latched.clear()

    def latch(self, kind: str) -> None:
        """Keep a fired fault in effect until :meth:`unlatch` (``open``: until separation)."""
        with self._lock:
            self._latched.add(kind)

    def unlatch(self, kind: str) -> None:
        with self._lock:
            self._latched.discard(kind)

    def latched(self, kind: str) -> bool:
        with self._lock:
            return kind in self._latched

    def take(self, role: str, kinds: tuple[str, ...]) -> str | None:
        """Consume one pending fault of ``kinds`` for ``role``, if due; return its kind."""
        fault = self.take_fault(role, kinds)
        return None if fault is None else fault.kind

    def take_fault(self, role: str, kinds: tuple[str, ...]) -> Fault | None:
        """As :meth:`take`, returning the fault itself (with its options)."""
        with self._lock:
            for p in self._pending:
                if p.role == role and p.kind in kinds:
                    if p.after > 0:
                        p.after -= 1
                        return None
                    p.count -= 1
                    if p.count <= 0:
                        self._pending.remove(p)
                    self.fired.append((role, p.kind))
                    return p
        return None
