"""How long real instruments take, charged to the virtual clock.

Defaults from the bus facts in the project's instrument reference: 2-5 ms per
small SCPI query over GPIB or a LAN socket, 10-30 ms per SMU source+measure
point, raw-socket block transfers at tens of MB/s. Every run on the simulator
thus also reports how long it would take on a bench.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LatencyModel:
    """Seconds charged per operation (virtual time)."""

    transaction_s: float = 2e-3  # one small SCPI transaction, LAN socket
    byte_s: float = 2e-8  # per byte moved (50 MB/s raw socket)
    smu_point_s: float = 20e-3  # one SMU source+measure point at 1 NPLC
    relay_s: float = 5e-3  # switch-matrix relay settling per switching operation
    die_step_s: float = 1.5  # prober XY step to another die
    contact_s: float = 0.3  # chuck to contact or separation height
    array_overhead_s: float = 50e-6  # array controller set-up per array operation

    def transaction(self, nbytes: int) -> float:
        return self.transaction_s + self.byte_s * nbytes
