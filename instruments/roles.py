"""The roles of a bench: small interfaces a protocol asks for by shape.

A protocol names only the capability it uses (``ArrayController``,
``Clock``, ...); any driver with the same methods serves. Units: siemens,
volts, amperes, seconds, degrees C.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

# every role a bench has, as bench configs name them ([roles.<name>])
ROLE_NAMES = ("array", "smu", "switch", "thermal", "prober", "clock")
# roles whose instruments source voltage, current, pulses or heat into a device
STRESSING_ROLES = ("array", "smu", "thermal")


@runtime_checkable
class ArrayController(Protocol):
    """A crossbar: whole-array reads, pulses, MVM and forming, batched.

    A controller that cannot make short pulses says so with an optional attribute
    ``min_pulse_width_s`` (seconds); write-verify then starts its pulses there.
    A controller that can run the array backwards has the optional method of
    :class:`TransposedMVM`; callers use ``getattr(array, "mvm_transposed", None)``
    and fall back to a digital product from read conductances without it.
    """

    @property
    def shape(self) -> tuple[int, int]: ...

    @property
    def transactions(self) -> int:
        """Bus transactions so far (for accounting)."""
        ...

    @property
    def limits(self):
        """The SafetyLimits this controller enforces, so protocols can plan within them."""
        ...

    def read(self, mask: np.ndarray | None = None, averages: int | None = None) -> np.ndarray:
        """Conductances (S), shape ``shape``; NaN outside ``mask``.

        ``averages``: conversions averaged per cell by the instrument (None: as
        configured, 1 after reset); still one array operation.
        """
        ...

    def pulse(self, volts: np.ndarray, width: float | np.ndarray = 1e-6) -> int:
        """One pulse per cell: signed amplitude (V, + SET, - RESET, 0 none), width (s)."""
        ...

    def read_cells(self, cells: np.ndarray, averages: int | None = None) -> np.ndarray:
        """Conductances (S) of ``cells`` (flat row-major indices), in their order.

        One array operation however many cells; the driver chooses how the
        indices travel (a list or a mask), the caller never converts.
        """
        ...

    def pulse_cells(self, cells: np.ndarray, volts: np.ndarray,
                    width: float | np.ndarray = 1e-6) -> int:
        """One pulse on each of ``cells`` (flat row-major indices): signed volts and
        width (s) per listed cell, or one width for all. One array operation."""
        ...

    def mvm(self, x_volts: np.ndarray) -> np.ndarray:
        """Column currents (A) for row voltages, shape (rows,) or (n, rows)."""
        ...

    def form(self, voltage: float | None = None, width: float | None = None,
             mask: np.ndarray | None = None) -> int:
        """Forming pulses; returns the number of cells formed."""
        ...


@runtime_checkable
class TransposedMVM(Protocol):
    """Optional array capability: the backward product (NeuRRAM's transposable array)."""

    def mvm_transposed(self, v_volts: np.ndarray) -> np.ndarray:
        """Row currents (A) for column voltages (V), shape (cols,) or (n, cols): ``G @ v``."""
        ...


@runtime_checkable
class SourceMeter(Protocol):
    """A source-measure unit. The DC output (``set_voltage`` + ``output(True)``) stays at
    read level; anything above reaches a device only as a timed pulse."""

    def set_compliance(self, amps: float) -> None: ...

    def set_voltage(self, volts: float) -> None:
        """The DC level: within the chip's read limit."""
        ...

    def output(self, on: bool) -> None: ...
    def measure_current(self) -> float: ...
    def set_averaging(self, count: int) -> None: ...

    def list_sweep(self, volts: np.ndarray, dwell_s: float) -> np.ndarray:
        """Source each point for ``dwell_s`` and measure (A). Points above read level
        are pulses (program limit, ``dwell_s`` within the pulse-width limit); the
        sweep ends at read level."""
        ...

    def pulse(self, volts: float, width_s: float) -> float:
        """One programming pulse (program limit, pulse-width limit), then 0 V."""
        ...

    def form_pulse(self, volts: float, width_s: float) -> float:
        """One forming pulse (forming voltage and width limits), then 0 V: the only
        path for amplitudes above the program limit."""
        ...


@runtime_checkable
class SwitchMatrix(Protocol):
    def close(self, channels: list[str]) -> None: ...
    def open(self, channels: list[str]) -> None: ...
    def open_all(self) -> None: ...
    def exclusive_close(self, channels: list[str]) -> None: ...
    def closed(self) -> list[str]: ...


@runtime_checkable
class ThermalController(Protocol):
    def set_temperature(self, celsius: float) -> None: ...
    def temperature(self) -> float: ...
    def setpoint(self) -> float: ...
    def settled(self) -> bool: ...


@runtime_checkable
class Prober(Protocol):
    """A wafer prober: steps to a die by its id or (column, row), contacts, separates, bins.

    A prober that can read its own wafer map says so with an optional method
    ``die_map() -> tuple[tuple[int, int, int], ...]``: (die id, column, row) of every
    die on its map, ids as ``goto`` takes them, so a sweep plans from the prober's map
    rather than from a copy of it. Callers use ``getattr(prober, "die_map", None)``.
    """

    def goto(self, die: int | tuple[int, int]) -> tuple[int, int]:
        """Step to a die (id, or (column, row)) and make contact; returns (x, y)."""
        ...

    def contact(self) -> None: ...
    def separate(self) -> None: ...
    def position(self) -> tuple[int, int]: ...
    def set_bin(self, bin_number: int) -> None: ...


@runtime_checkable
class Clock(Protocol):
    def wait(self, seconds: float) -> None:
        """Let time pass: real on a bench, virtual on the simulator."""
        ...

    def now(self) -> float:
        """Seconds on this clock (monotonic)."""
        ...
