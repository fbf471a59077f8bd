"""Emulator of an inTEST ThermoStream-style temperature forcing system.

While the head is down and air flows, the die follows the forcer's
temperature instead of the chuck's.
"""

from __future__ import annotations

AIR_RANGE_C = (-80.0, 225.0)


class ThermoStreamEmulator:
    idn = "inTEST,ThermoStream ATS-710,SIM-0002,2.1"
    role = "thermostream"

    def __init__(self, bench) -> None:
        self.bench = bench
        self.setpoints = {0: 25.0, 1: 25.0, 2: 25.0}
        self.selected = 0
        self.flow = False
        self.head_down = False
        self.error = 0
        self.limits = AIR_RANGE_C

    def handle(self, message: bytes) -> bytes | None:
        return self.bench.transact(self, message, self.process)

    def _update(self) -> None:
        self.bench.forcer_active = self.flow and self.head_down

    def process(self, message: bytes) -> bytes | None:
        text = message.decode("ascii", errors="replace").strip()
        name, _, arg = text.partition(" ")
        name = name.upper()
        forcer = self.bench.forcer
        try:
            if name == "*IDN?":
                return (self.idn + "\n").encode()
            if name == "SETN":
                n = int(arg)
                if n not in self.setpoints:
                    raise ValueError
                self.selected = n
            elif name == "SETP":
                t = float(arg)
                if not self.limits[0] <= t <= self.limits[1]:
                    raise ValueError
                self.setpoints[self.selected] = t
                self.bench.observed.note("temperature", t)
                forcer.set(t)
            elif name == "SETP?":
                return f"{self.setpoints[self.selected]:.1f}\n".encode()
            elif name == "TEMP?":
                return f"{forcer.temperature():.1f}\n".encode()
            elif name == "TECR?":
                at = forcer.settled() and self.bench.forcer_active
                return f"{1 if at else 2}\n".encode()
            elif name == "WNDW":
                forcer.window_c = float(arg)
            elif name == "SOAK":
                float(arg)
            elif name == "FLOW":
                self.flow = arg.strip() == "1"
                self._update()
            elif name == "HEAD":
                self.head_down = arg.strip().lower() == "down"
                self._update()
            elif name in ("LLIM", "ULIM"):
                value = float(arg)
                lo, hi = self.limits
                self.limits = (value, hi) if name == "LLIM" else (lo, value)
            elif name == "EROR?":
                err, self.error = self.error, 0
                return f"{err}\n".encode()
            else:
                self.error = 1
        except ValueError:
            self.error = 2
        return None
