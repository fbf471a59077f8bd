"""An ArrayController built from an SMU and a switch matrix, cell by cell.

For labs that probe small arrays without an array controller: each cell is
reached by closing its word line onto the SMU's force bus (matrix row A) and
its bit line onto the SMU's low bus (row B). This is the slow path by nature
(a few transactions per cell); the reference controller moves whole arrays.
MVM is computed on the host from cell reads, since one SMU cannot sense
every column at once.
"""

from __future__ import annotations

import logging

import numpy as np

from instruments.datasheet import ChipDatasheet
from instruments.drivers.base import (
    Driver,
    bool_mask,
    flat_cells,
    float_array,
    option_guarded,
    option_whole,
    whole,
)
from instruments.errors import ArrayShapeError, BadReply, DriverOptionError, InstrumentIOError
from instruments.safety import SafetyGuard

log = logging.getLogger("instruments.drivers.smu_switch_array")

CHANNELS_PER_CARD = 12
MATRIX_COLUMNS = 6 * CHANNELS_PER_CARD  # six 8x12 cards


def channel(bus: str, index: int) -> str:
    """Matrix channel of line ``index`` (counted across 12-column cards) on ``bus``."""
    return f"{index // CHANNELS_PER_CARD + 1}{bus}{index % CHANNELS_PER_CARD + 1:02d}"


class SmuSwitchArray(Driver):
    """ArrayController role from the bench's SMU and switch matrix (``parts``).

    Reads source the read voltage as a DC level (read level, as the guard allows)
    and measure cell by cell; a cell whose reading comes back garbled or lost is
    measured once more. Programming pulses go through the SMU's ``pulse`` (program
    limits), forming through its ``form_pulse`` (forming limits); neither is ever
    repeated on an error, since a pulse may have reached the cell.
    """

    role = "array"
    uses_session = False
    needs = ("smu", "switch")
    stresses_device = True

    def __init__(self, session, guard: SafetyGuard, datasheet: ChipDatasheet | None = None, *,
                 parts: dict | None = None, word_lines: int = 16, bit_lines: int = 16,
                 read_voltage: float | None = None, compliance: float = 1e-4,
                 forming_voltage: float | None = None, forming_width: float | None = None,
                 forming_compliance: float | None = None,
                 first_bit_column: int | None = None) -> None:
        """``first_bit_column``: matrix column (0-based, across cards) of bit line 0,
        as the probe card is wired; word line i is matrix column i."""
        super().__init__(session, guard, datasheet, parts=parts)
        missing = [r for r in self.needs if self.parts.get(r) is None]
        if missing:
            raise DriverOptionError("parts", f"smu-switch-array needs the bench's "
                                             f"{' and '.join(missing)}")
        word_lines = option_whole("word_lines", word_lines, 1, MATRIX_COLUMNS)
        bit_lines = option_whole("bit_lines", bit_lines, 1, MATRIX_COLUMNS)
        first = word_lines if first_bit_column is None else option_whole(
            "first_bit_column", first_bit_column, 0, MATRIX_COLUMNS - 1)
        if first < word_lines:
            raise DriverOptionError("first_bit_column", f"{first} puts bit lines on the "
                                    f"word lines' matrix columns 0..{word_lines - 1}")
        if first + bit_lines > MATRIX_COLUMNS:
            raise DriverOptionError("bit_lines", f"{word_lines} word and {bit_lines} bit "
                                    f"lines from column {first} do not fit the matrix's "
                                    f"{MATRIX_COLUMNS} columns")
        read_voltage, forming_voltage, forming_width = self.cell_settings(
            read_voltage, forming_voltage, forming_width)
        compliance = option_guarded("compliance", compliance, guard.compliance)
        if forming_compliance is not None:
            forming_compliance = option_guarded("forming_compliance", forming_compliance,
                                                guard.compliance)
        self.first_bit_column = first
        self.smu = self.parts["smu"]
        self.switch = self.parts["switch"]
        self._shape = (word_lines, bit_lines)
        self.read_voltage = 0.2 if read_voltage is None else read_voltage
        option_guarded("read_voltage", self.read_voltage, guard.read_voltage)
        self.compliance = compliance
        self.forming_voltage = forming_voltage
        self.forming_width = forming_width
        self.forming_compliance = forming_compliance or compliance
        self._averages = 1  # the SMU's filter after reset: off
        self.remeasured = 0  # cells measured twice after a garbled or lost reading

    @property
    def min_pulse_width_s(self) -> float | None:
        """The SMU's shortest pulse (s), if it has one: write-verify starts there."""
        return getattr(self.smu, "min_pulse_width_s", None)

    def settings(self) -> dict:
        return {"word_lines": self._shape[0], "bit_lines": self._shape[1],
                "first_bit_column": self.first_bit_column, "read_voltage": self.read_voltage,
                "compliance": self.compliance, "forming_voltage": self.forming_voltage,
                "forming_width": self.forming_width}

    @property
    def shape(self) -> tuple[int, int]:
        return self._shape

    def identity(self) -> str:
        return f"SMU+switch array [{self.smu.identity()} | {self.switch.identity()}]"

    def _cells(self, mask) -> list[tuple[int, int]]:
        mask = np.ones(self.shape, bool) if mask is None else bool_mask(mask, self.shape)
        return [tuple(ix) for ix in np.argwhere(mask)]

    def _connect(self, i: int, j: int) -> None:
        self.switch.exclusive_close([channel("A", i), channel("B", self.first_bit_column + j)])

    def _measure(self, i: int, j: int) -> float:
        """The current of cell (i, j), measured once more if the reading was garbled or
        lost (a read changes nothing on the cell, so asking again is safe)."""
        try:
            return self.smu.measure_current()
        except (BadReply, InstrumentIOError) as exc:
            log.warning("cell (%d, %d): %s; measuring it once more", i, j, exc)
            self.remeasured += 1
            self._connect(i, j)
            return self.smu.measure_current()

    def read(self, mask: np.ndarray | None = None, averages: int | None = None) -> np.ndarray:
        """Cell by cell through the matrix; ``averages`` sets the SMU's repeat filter."""
        v = self.guard.read_voltage(self.read_voltage)
        if averages is not None:
            averages = whole(averages, "read averages", 1)
        cells = self._cells(mask)
        if averages is not None and averages != self._averages:
            self.smu.set_averaging(averages)
            self._averages = averages
        out = np.full(self.shape, np.nan)
        self.smu.set_compliance(self.compliance)
        self.smu.set_voltage(v)
        self.smu.output(True)
        try:
            for i, j in cells:
                self._connect(i, j)
                out[i, j] = self._measure(i, j) / v
        finally:
            self.smu.output(False)
            self.switch.open_all()
        return out

    def pulse(self, volts: np.ndarray, width: float | np.ndarray = 1e-6) -> int:
        volts = float_array(volts, "volts")
        if volts.shape != self.shape:
            raise ArrayShapeError(f"volts must have shape {self.shape}, got {volts.shape}")
        self.guard.pulses(volts, width)
        w = np.broadcast_to(np.asarray(width, dtype=np.float64), self.shape)
        self.smu.set_compliance(self.compliance)
        count = 0
        try:
            for i, j in self._cells(volts != 0):
                self._connect(i, j)
                self.smu.pulse(float(volts[i, j]), float(w[i, j]))
                count += 1
        finally:
            self.switch.open_all()
        return count

    def read_cells(self, cells: np.ndarray, averages: int | None = None) -> np.ndarray:
        """Flat cell indices, in their order (through :meth:`read`: cell by cell anyway)."""
        idx = flat_cells(cells, self.shape)
        mask = np.zeros(self.shape[0] * self.shape[1], bool)
        mask[idx] = True
        return self.read(mask.reshape(self.shape), averages=averages).ravel()[idx]

    def pulse_cells(self, cells: np.ndarray, volts: np.ndarray,
                    width: float | np.ndarray = 1e-6) -> int:
        idx = flat_cells(cells, self.shape)
        v = float_array(volts, "volts")
        w = float_array(width, "width")
        if v.shape != idx.shape or (w.ndim and w.shape != idx.shape):
            raise ArrayShapeError(f"{idx.size} cells need {idx.size} amplitudes (and one "
                                  f"width or {idx.size}), got {v.shape} and {w.shape}")
        self.guard.pulses(v, w)
        full = np.zeros(self.shape[0] * self.shape[1])
        full[idx] = v
        if w.ndim:
            widths = np.full(full.size, float(w.min()) if w.size else 1e-6)
            widths[idx] = w
            w = widths.reshape(self.shape)
        return self.pulse(full.reshape(self.shape), width=w)

    def mvm(self, x_volts: np.ndarray) -> np.ndarray:
        x = self.guard.input_voltages(x_volts)
        if x.ndim not in (1, 2) or x.shape[-1] != self.shape[0]:
            raise ArrayShapeError(f"x_volts must have shape ({self.shape[0]},) or "
                                  f"(n, {self.shape[0]}), got {x.shape}")
        return x @ self.read()

    def form(self, voltage: float | None = None, width: float | None = None,
             mask: np.ndarray | None = None) -> int:
        v = self.forming_voltage if voltage is None else voltage
        w = self.forming_width if width is None else width
        if v is None or w is None:
            raise ArrayShapeError("no forming voltage/width given and none configured")
        self.guard.forming(v, w)
        cells = self._cells(mask)
        self.smu.set_compliance(self.forming_compliance)
        count = 0
        try:
            for i, j in cells:
                self._connect(i, j)
                self.smu.form_pulse(float(v), float(w))
                count += 1
        finally:
            self.switch.open_all()
        return count
