"""ACME TC-1, a made-up thermal chuck controller: ThermalController role.

Its command set, as its (imaginary) manual gives it: ``*IDN?``; ``SP <degC>`` sets the
set point; ``SP?``, ``T?`` read set point and chuck temperature; ``STAB?`` answers 1
once the chuck is within its band. A driver for a lab's own instrument needs only
this: derive from ``Driver``, ask the guard before sourcing anything, raise the
toolkit's own errors, and register through the ``aimc_calib.drivers`` entry point.
"""

from __future__ import annotations

from instruments.drivers.base import Driver, option_number


class AcmeTC1(Driver):
    """ThermalController for the ACME TC-1 (``[roles.thermal] driver = "acme-tc1"``)."""

    role = "thermal"
    session_options = {"error_query": None}
    stresses_device = True  # it heats the chip
    idn_pattern = r"^ACME,TC-1"

    def __init__(self, session, guard, datasheet=None, *, parts=None,
                 band_c: float = 0.5) -> None:
        super().__init__(session, guard, datasheet, parts=parts)
        self.band_c = option_number("band_c", band_c, 0.01, 10.0)

    def settings(self) -> dict:
        return {"band_c": self.band_c}

    def set_temperature(self, celsius: float) -> None:
        t = self.guard.temperature(celsius)  # the chip's limits, before any byte
        self.verify_identity()
        self.session.write(f"SP {t:.2f}")

    def temperature(self) -> float:
        return self.session.query("T?", parse=float)

    def setpoint(self) -> float:
        return self.session.query("SP?", parse=float)

    def settled(self) -> bool:
        return self.session.query("STAB?", parse=lambda r: r.strip() == "1")
