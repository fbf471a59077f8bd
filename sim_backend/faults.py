"""Bench faults on demand, for testing that drivers recover or fail clearly."""

from __future__ import annotations

import threading
from dataclasses import dataclass

FAULT_KINDS = ("timeout", "drop", "garble", "compliance", "contact", "reboot")
REBOOT_ROLES = ("array", "smu", "clock")  # the SCPI emulators, which have a power-on state


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
    """One queued fault; ``applied`` (reboot only): the message is processed before it."""

    kind: str
    role: str
    count: int
    after: int
    applied: bool = False


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
    """

    def __init__(self) -> None:
        self._pending: list[Fault] = []
        self._lock = threading.Lock()
        self.fired: list[tuple[str, str]] = []

    def inject(self, kind: str, role: str, count: int = 1, after: int = 0,
               applied: bool = False) -> None:
        if kind not in FAULT_KINDS:
            raise FaultError(f"unknown fault {kind!r}; choose from {', '.join(FAULT_KINDS)}")
        if kind == "reboot" and role not in REBOOT_ROLES:
            raise FaultError(f"a reboot is emulated for {', '.join(REBOOT_ROLES)}, "
                             f"not {role!r}")
        if applied and kind != "reboot":
            raise FaultError(f"applied= is an option of the reboot fault, not of {kind!r}")
        with self._lock:
            self._pending.append(Fault(kind, role, int(count), int(after), bool(applied)))

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()

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
