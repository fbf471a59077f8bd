"""An ArrayController built from an SMU and a switch matrix, cell by cell.

For labs that probe small arrays without an array controller: each cell is
reached by closing its word line onto the SMU's force bus (matrix row A) and
its bit line onto the SMU's low bus (row B). This is the slow path by nature
(a few transactions per cell); the reference controller moves whole arrays.
MVM is computed on the host from cell reads, since one SMU cannot sense
every column at once.
"""

from __future__ import annotations

import numpy as np

from instruments.drivers.reference_array import ArrayShapeError
from instruments.errors import InstrumentError
from instruments.safety import SafetyGuard

CHANNELS_PER_CARD = 12


def channel(bus: str, index: int) -> str:
    """Matrix channel of line ``index`` (counted across 12-column cards) on ``bus``."""
    return f"{index // CHANNELS_PER_CARD + 1}{bus}{index % CHANNELS_PER_CARD + 1:02d}"


class SmuSwitchArray:
    role = "array"

    def __init__(self, smu, switch, guard: SafetyGuard, *, word_lines: int, bit_lines: int,
                 read_voltage: float = 0.2, compliance: float = 1e-4,
                 forming_voltage: float | None = None, forming_width: float | None = None,
                 forming_compliance: float | None = None,
                 first_bit_column: int | None = None) -> None:
        """``first_bit_column``: matrix column (0-based, across cards) of bit line 0,
        as the probe card is wired; word line i is matrix column i."""
        self.first_bit_column = word_lines if first_bit_column is None else first_bit_column
        if self.first_bit_column < word_lines:
            raise InstrumentError("bit lines overlap the word lines on the matrix")
        if self.first_bit_column + bit_lines > 6 * CHANNELS_PER_CARD:
            raise InstrumentError(f"{word_lines} word and {bit_lines} bit lines do not fit "
                                  f"the matrix's {6 * CHANNELS_PER_CARD} columns")
        self.smu = smu
        self.switch = switch
        self.guard = guard
        self._shape = (word_lines, bit_lines)
        self.read_voltage = read_voltage
        self.compliance = compliance
        self.forming_voltage = forming_voltage
        self.forming_width = forming_width
        self.forming_compliance = forming_compliance or compliance
        self._averages = 1  # the SMU's filter after reset: off

    @property
    def shape(self) -> tuple[int, int]:
        return self._shape

    @property
    def limits(self):
        return self.guard.limits

    @property
    def transactions(self) -> int:
        return self.smu.transactions + self.switch.transactions

    def identity(self) -> str:
        return f"SMU+switch array [{self.smu.identity()} | {self.switch.identity()}]"

    def _cells(self, mask) -> list[tuple[int, int]]:
        if mask is None:
            mask = np.ones(self.shape, bool)
        mask = np.asarray(mask)
        if mask.shape != self.shape or mask.dtype != bool:
            raise ArrayShapeError(f"mask must be a boolean array of shape {self.shape}")
        return [tuple(ix) for ix in np.argwhere(mask)]

    def _connect(self, i: int, j: int) -> None:
        self.switch.exclusive_close([channel("A", i), channel("B", self.first_bit_column + j)])

    def read(self, mask: np.ndarray | None = None, averages: int | None = None) -> np.ndarray:
        """Cell by cell through the matrix; ``averages`` sets the SMU's repeat filter."""
        v = self.guard.read_voltage(self.read_voltage)
        if averages is not None and averages != self._averages:
            self.smu.set_averaging(averages)
            self._averages = int(averages)
        out = np.full(self.shape, np.nan)
        self.smu.set_compliance(self.compliance)
        self.smu.set_voltage(v)
        self.smu.output(True)
        try:
            for i, j in self._cells(mask):
                self._connect(i, j)
                out[i, j] = self.smu.measure_current() / v
        finally:
            self.smu.output(False)
            self.switch.open_all()
        return out

    def pulse(self, volts: np.ndarray, width: float | np.ndarray = 1e-6) -> int:
        volts = np.asarray(volts, dtype=np.float64)
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
        idx = np.asarray(cells, dtype=np.int64)
        mask = np.zeros(self.shape[0] * self.shape[1], bool)
        mask[idx] = True
        return self.read(mask.reshape(self.shape), averages=averages).ravel()[idx]

    def pulse_cells(self, cells: np.ndarray, volts: np.ndarray,
                    width: float | np.ndarray = 1e-6) -> int:
        idx = np.asarray(cells, dtype=np.int64)
        full = np.zeros(self.shape[0] * self.shape[1])
        full[idx] = volts
        w = np.asarray(width, dtype=np.float64)
        if w.ndim:
            widths = np.full(full.size, float(w.min()) if w.size else 1e-6)
            widths[idx] = w
            w = widths.reshape(self.shape)
        return self.pulse(full.reshape(self.shape), width=w)

    def mvm(self, x_volts: np.ndarray) -> np.ndarray:
        x = self.guard.input_voltages(x_volts)
        if x.shape[-1] != self.shape[0]:
            raise ArrayShapeError(f"x_volts must end in {self.shape[0]} rows")
        return x @ self.read()

    def form(self, voltage: float | None = None, width: float | None = None,
             mask: np.ndarray | None = None) -> int:
        v = self.forming_voltage if voltage is None else voltage
        w = self.forming_width if width is None else width
        if v is None or w is None:
            raise ArrayShapeError("no forming voltage/width given and none configured")
        self.guard.forming(v, w)
        self.smu.set_compliance(self.forming_compliance)
        count = 0
        try:
            for i, j in self._cells(mask):
                self._connect(i, j)
                self.smu.pulse(v, w)
                count += 1
        finally:
            self.switch.open_all()
        return count
