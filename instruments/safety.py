"""The safety guard: chip limits enforced before any byte is sent.

Every driver method that sources a voltage, a current, a pulse or a
temperature asks the guard first; a request outside the limits raises
:class:`SafetyError` and nothing reaches the instrument.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from instruments.errors import SafetyError


@dataclass(frozen=True)
class SafetyLimits:
    """Safe operating limits of a chip. Volts, seconds, amperes, degrees C."""

    max_read_voltage: float
    max_program_voltage: float
    max_pulse_width: float
    max_forming_voltage: float
    max_forming_width: float
    max_compliance: float
    min_temperature: float
    max_temperature: float

    @classmethod
    def from_object(cls, obj) -> SafetyLimits:
        """Copy the same-named attributes (e.g. a chip spec's ``limits`` section)."""
        return cls(**{f.name: float(getattr(obj, f.name)) for f in fields(cls)})

    @property
    def max_source_voltage(self) -> float:
        """The most any SMU output may ever reach on this chip."""
        return max(self.max_program_voltage, self.max_forming_voltage, self.max_read_voltage)


def _finite(value: float, what: str) -> float:
    if isinstance(value, (str, bytes, bool, np.bool_)) or np.ndim(value) != 0:
        raise SafetyError(f"{what} must be a number, got {_show(value)}")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise SafetyError(f"{what} must be a number, got {_show(value)}") from None
    if not math.isfinite(value):
        raise SafetyError(f"{what} must be finite, got {value!r}")
    return value


def _numbers(values, what: str) -> np.ndarray:
    """``values`` as a float array; anything that is not numbers is refused."""
    if isinstance(values, (str, bytes, bool, np.bool_)):
        raise SafetyError(f"{what} must be numbers, got {_show(values)}")
    try:
        out = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise SafetyError(f"{what} must be numbers, got {_show(values)}") from None
    if not np.all(np.isfinite(out)):
        raise SafetyError(f"{what} contain NaN or infinity")
    return out


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def _up_to(value: float, limit: float, what: str, unit: str, why: str = "") -> float:
    """``value`` must lie in (0, limit]."""
    v = _finite(value, what)
    if not 0 < v <= limit:
        raise SafetyError(f"{what} {v:g} {unit} is outside (0, {limit:g}] {unit}{why}")
    return v


class SafetyGuard:
    """Checks requests against :class:`SafetyLimits`; raises before any I/O."""

    def __init__(self, limits: SafetyLimits) -> None:
        self.limits = limits

    def read_voltage(self, volts: float) -> float:
        return _up_to(volts, self.limits.max_read_voltage, "read voltage", "V",
                      " set by the chip's limits")

    def dc_voltage(self, volts: float) -> float:
        """A DC source level (an SMU's output while on): read level at most.

        Anything above the read limit reaches a cell only as a timed pulse
        (:meth:`pulses`, :meth:`forming`, :meth:`sweep`), never as a level left on.
        """
        v = _finite(volts, "DC source voltage")
        if abs(v) > self.limits.max_read_voltage:
            raise SafetyError(f"DC source voltage {v:g} V exceeds the read limit "
                              f"{self.limits.max_read_voltage:g} V; higher levels only as "
                              "timed pulses (pulse, form_pulse)")
        return v

    @staticmethod
    def _peak(values: np.ndarray, what: str) -> float:
        values = _numbers(values, what)
        return float(max(values.max(), -values.min())) if values.size else 0.0  # no |copy|

    def input_voltages(self, x: np.ndarray) -> np.ndarray:
        """MVM inputs are read-level voltages on every row."""
        x = _numbers(x, "MVM inputs")
        peak = self._peak(x, "MVM inputs")
        if peak > self.limits.max_read_voltage:
            raise SafetyError(f"MVM input {peak:g} V exceeds the read limit "
                              f"{self.limits.max_read_voltage:g} V")
        return x

    def pulses(self, volts: np.ndarray, width) -> None:
        volts = _numbers(volts, "pulse amplitudes")
        peak = self._peak(volts, "pulse amplitudes")
        if peak > self.limits.max_program_voltage:
            raise SafetyError(f"pulse amplitude {peak:g} V exceeds the program limit "
                              f"{self.limits.max_program_voltage:g} V")
        if isinstance(width, (str, bytes)):
            raise SafetyError(f"pulse widths must be numbers (seconds), got {_show(width)}")
        try:
            w = np.asarray(width, dtype=np.float64)
        except (TypeError, ValueError):
            raise SafetyError(f"pulse widths must be numbers (seconds), got "
                              f"{_show(width)}") from None
        active = volts != 0
        if w.ndim and w.shape != volts.shape:
            raise SafetyError(f"widths have shape {w.shape}, amplitudes {volts.shape}")
        widths = w if w.ndim == 0 or active.all() else w[active]
        if not np.all(np.isfinite(widths)) or np.any(widths <= 0):
            raise SafetyError("pulse widths must be positive and finite (seconds)")
        longest = float(np.max(widths)) if np.size(widths) else 0.0
        if longest > self.limits.max_pulse_width:
            raise SafetyError(f"pulse width {longest:g} s exceeds the limit "
                              f"{self.limits.max_pulse_width:g} s")

    def forming_voltage(self, volts: float) -> float:
        return _up_to(volts, self.limits.max_forming_voltage, "forming voltage", "V")

    def forming_width(self, width: float) -> float:
        return _up_to(width, self.limits.max_forming_width, "forming width", "s")

    def forming(self, volts: float, width: float) -> None:
        self.forming_voltage(volts)
        self.forming_width(width)

    def sweep(self, volts, dwell_s: float) -> np.ndarray:
        """An SMU list sweep: every point lasts ``dwell_s``.

        Points at read level may dwell as long as the instrument allows; any point
        above it is a pulse: within the program limit, with ``dwell_s`` in
        (0, max_pulse_width]. The last point must be at read level, so the sweep
        never leaves the output above it.
        """
        v = _numbers(volts, "sweep points").ravel()
        dwell = _finite(dwell_s, "sweep dwell")
        lim = self.limits
        peak = float(np.abs(v).max()) if v.size else 0.0
        if peak > lim.max_program_voltage:
            raise SafetyError(f"sweep point {peak:g} V exceeds the program limit "
                              f"{lim.max_program_voltage:g} V (forming amplitudes only "
                              "through form_pulse)")
        if peak > lim.max_read_voltage and not 0 < dwell <= lim.max_pulse_width:
            raise SafetyError(f"sweep points above the read limit {lim.max_read_voltage:g} V "
                              f"are pulses: dwell {dwell:g} s must be in "
                              f"(0, {lim.max_pulse_width:g}] s")
        if v.size and abs(v[-1]) > lim.max_read_voltage:
            raise SafetyError(f"a sweep must end at read level (at most "
                              f"{lim.max_read_voltage:g} V), not {v[-1]:g} V")
        return v

    def source_voltage(self, volts: float) -> float:
        v = _finite(volts, "source voltage")
        if abs(v) > self.limits.max_source_voltage:
            raise SafetyError(f"source voltage {v:g} V exceeds the chip's largest limit "
                              f"{self.limits.max_source_voltage:g} V")
        return v

    def compliance(self, amps: float) -> float:
        return _up_to(amps, self.limits.max_compliance, "compliance", "A")

    def temperature(self, celsius: float) -> float:
        t = _finite(celsius, "temperature")
        lo, hi = self.limits.min_temperature, self.limits.max_temperature
        if not lo <= t <= hi:
            raise SafetyError(f"temperature {t:g} degC is outside [{lo:g}, {hi:g}] degC "
                              "allowed for this chip")
        return t

    def wait(self, seconds: float) -> float:
        s = _finite(seconds, "wait")
        if s < 0:
            raise SafetyError(f"cannot wait a negative time ({s:g} s)")
        return s
