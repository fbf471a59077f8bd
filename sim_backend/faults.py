"""Bench faults on demand, for testing that drivers recover or fail clearly."""

from __future__ import annotations

import threading
from dataclasses import dataclass

FAULT_KINDS = ("timeout", "drop", "garble", "compliance", "contact")


class EndpointFault(Exception):
    """Raised by an endpoint to make its transport misbehave."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind  # "timeout" or "drop"


class FaultError(ValueError):
    """An unknown fault kind or role was requested."""


@dataclass
class _Pending:
    kind: str
    role: str
    count: int
    after: int


class FaultInjector:
    """Queue faults for the next transactions to one instrument role.

    - ``timeout``: the instrument never answers the message.
    - ``drop``: the connection is lost instead of the message being processed.
    - ``garble``: the reply's bytes are corrupted.
    - ``compliance``: the SMU trips its current compliance on the next measurement.
    - ``contact``: the prober fails to make contact.
    """

    def __init__(self) -> None:
        self._pending: list[_Pending] = []
        self._lock = threading.Lock()
        self.fired: list[tuple[str, str]] = []

    def inject(self, kind: str, role: str, count: int = 1, after: int = 0) -> None:
        if kind not in FAULT_KINDS:
            raise FaultError(f"unknown fault {kind!r}; choose from {', '.join(FAULT_KINDS)}")
        with self._lock:
            self._pending.append(_Pending(kind, role, int(count), int(after)))

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()

    def take(self, role: str, kinds: tuple[str, ...]) -> str | None:
        """Consume one pending fault of ``kinds`` for ``role``, if due."""
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
                    return p.kind
        return None
