"""The virtual clock as an instrument, so the Clock role works over the wire too."""

from __future__ import annotations

from sim_backend.scpi import OUT_OF_RANGE, ScpiError, ScpiInstrument, command, need, number

MAX_WAIT_S = 1e8


class ClockEmulator(ScpiInstrument):
    idn = "AIMC,VirtualClock,SIM0003,1.0"
    role = "clock"

    @command(":SYSTem:TIME?")
    def now(self, args, block):
        return f"{self.bench.clock.now:.9f}"

    @command(":SYSTem:WAIT")
    def wait(self, args, block):
        need(args, 1)
        seconds = number(args[0], "seconds")
        if not 0 <= seconds <= MAX_WAIT_S:
            raise ScpiError(OUT_OF_RANGE, "Data out of range; wait")
        self.bench.clock.advance(seconds)
