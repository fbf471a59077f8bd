"""First-order thermal models on the virtual clock (chuck, air forcer)."""

from __future__ import annotations

import math

from sim_backend.clock import VirtualClock


class ThermalModel:
    """Temperature approaching its set point exponentially (time constant tau)."""

    def __init__(self, clock: VirtualClock, start_c: float = 25.0, tau_s: float = 60.0,
                 window_c: float = 0.5) -> None:
        self.clock = clock
        self.tau_s = tau_s
        self.window_c = window_c
        self.setpoint_c = start_c
        self._from_c = start_c
        self._since = clock.now

    def temperature(self) -> float:
        dt = self.clock.now - self._since
        return self.setpoint_c + (self._from_c - self.setpoint_c) * math.exp(-dt / self.tau_s)

    def set(self, setpoint_c: float) -> None:
        self._from_c = self.temperature()
        self._since = self.clock.now
        self.setpoint_c = float(setpoint_c)

    def settled(self) -> bool:
        return abs(self.temperature() - self.setpoint_c) <= self.window_c

    def state(self) -> str:
        t = self.temperature()
        if abs(t - self.setpoint_c) <= self.window_c:
            return "Settled"
        return "Heating" if t < self.setpoint_c else "Cooling"
