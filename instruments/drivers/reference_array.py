"""Driver of the reference array controller (our SCPI set, docs/array-controller-scpi.md).

One bus transaction per array operation: whole arrays move as IEEE-488.2
definite-length blocks of little-endian float32 (uint8 for masks).
"""

from __future__ import annotations

import numpy as np

from instruments.errors import BadReply, InstrumentError, InstrumentReportedError
from instruments.safety import SafetyGuard
from instruments.session import VisaSession

BYTES_PER_SECOND = 1e6  # worst-case link speed used to scale timeouts
MAX_READ_AVERAGES = 1024  # the reference board's limit (docs/array-controller-scpi.md)
# one entry of :PULS:ARR:LIST?: cell index (row-major), signed volts, width (s)
LIST_ENTRY = np.dtype([("index", "<u4"), ("volts", "<f4"), ("width", "<f4")])


class ArrayShapeError(InstrumentError, ValueError):
    """An array argument does not match the controller's array."""


class ReferenceArrayController:
    """ArrayController role for boards that implement our reference SCPI set."""

    role = "array"
    session_options = {"error_query": ":SYST:ERR?"}

    def __init__(self, session: VisaSession, guard: SafetyGuard, *,
                 forming_voltage: float | None = None, forming_width: float | None = None,
                 read_voltage: float | None = None) -> None:
        self.session = session
        self.guard = guard
        self.forming_voltage = forming_voltage
        self.forming_width = forming_width
        self.read_voltage = read_voltage
        self._shape: tuple[int, int] | None = None
        self._batches: int | None = None
        self._configured = False
        self._averages = 1  # the board's state after power-on / *RST

    # -- identity and set-up ------------------------------------------------------
    @property
    def limits(self):
        return self.guard.limits

    @property
    def transactions(self) -> int:
        return self.session.transactions

    def identity(self) -> str:
        return self.session.query("*IDN?").strip()

    @property
    def shape(self) -> tuple[int, int]:
        if self._shape is None:
            self._shape = self.session.query(":ARR:SIZE?", parse=_pair)
        return self._shape

    def _setup(self) -> None:
        if self._configured:
            return
        self._configured = True
        if self.read_voltage is not None:
            self.configure_read_voltage(self.read_voltage)
        self._batches = self.session.query(":PULS:COUN?", parse=int)

    def configure_read_voltage(self, volts: float) -> None:
        v = self.guard.read_voltage(volts)
        self.session.write(f":CONF:READ:VOLT {v:.6g}")
        self.session.check_errors("setting the read voltage")
        self.read_voltage = v
        self._configured = True

    def configure_read_averages(self, count: int) -> None:
        """Conversions the board averages per cell in every read (1 = none)."""
        count = _averages(count)
        self.session.write(f":CONF:READ:AVER {int(count)}")
        try:
            self.session.check_errors("setting read averaging")
        except InstrumentReportedError as exc:
            raise InstrumentReportedError(
                f"{exc} (a board without :CONF:READ:AVER reads with averages=1 only; "
                f"calib program --read-averages 1)") from None
        self._averages = int(count)

    def set_mvm_range(self, amps: float) -> None:
        if not 0 < amps <= 0.1:
            raise ArrayShapeError(f"MVM range {amps!r} A must be in (0, 0.1]")
        self.session.write(f":MVM:RANG {amps:.6g}")
        self.session.check_errors("setting the MVM range")

    def _timeout(self, nbytes: int) -> float:
        return self.session.timeout_s + nbytes / BYTES_PER_SECOND

    def _mask(self, mask) -> np.ndarray:
        mask = np.asarray(mask)
        if mask.shape != self.shape or mask.dtype != bool:
            raise ArrayShapeError(f"mask must be a boolean array of shape {self.shape}, "
                                  f"got {mask.dtype} {mask.shape}")
        return mask

    # -- array operations -----------------------------------------------------------
    def _cells(self, cells) -> np.ndarray:
        idx = np.asarray(cells)
        rows, cols = self.shape
        if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
            raise ArrayShapeError(f"cells must be a 1-D array of flat cell indices, got "
                                  f"{idx.dtype} {idx.shape}")
        idx = idx.astype(np.int64, copy=False)
        if idx.size and (idx.min() < 0 or idx.max() >= rows * cols):
            raise ArrayShapeError(f"cell indices must lie in 0..{rows * cols - 1}")
        if np.unique(idx).size != idx.size:
            raise ArrayShapeError("cell indices must not repeat")
        return idx

    def _use_averages(self, averages: int | None) -> None:
        if averages is not None and _averages(averages) != self._averages:
            self.configure_read_averages(averages)

    def read(self, mask: np.ndarray | None = None, averages: int | None = None) -> np.ndarray:
        """Conductances in siemens; NaN outside ``mask``. One transaction.

        ``averages``: conversions the board averages per cell (None: as configured);
        a change costs one configuration write before the read.
        """
        self._setup()
        self._use_averages(averages)
        rows, cols = self.shape
        if mask is None:
            values = self.session.query_block(
                ":MEAS:ARR?", "f", timeout_s=self._timeout(4 * rows * cols),
                parse=_expect(rows * cols))
            return values.astype(np.float64).reshape(rows, cols)
        idx = np.flatnonzero(self._mask(mask))
        out = np.full(rows * cols, np.nan)
        out[idx] = self.read_cells(idx, averages=averages)
        return out.reshape(rows, cols)

    def read_cells(self, cells: np.ndarray, averages: int | None = None) -> np.ndarray:
        """Conductances (S) of flat cell indices, in their order. One transaction: a
        list of indices when it moves fewer bytes than a mask, else a mask."""
        idx = self._cells(cells)
        self._setup()
        self._use_averages(averages)
        rows, cols = self.shape
        count = idx.size
        if count == 0:
            return np.empty(0)
        order = np.argsort(idx, kind="stable")  # the board takes and answers row-major order
        if 4 * count < rows * cols:
            values = self.session.query_block(
                ":MEAS:ARR:LIST? ", "f", payload=idx[order].astype("<u4"),
                payload_dtype="I", timeout_s=self._timeout(8 * count), parse=_expect(count))
        else:
            mask = np.zeros(rows * cols, bool)
            mask[idx] = True
            values = self.session.query_block(
                ":MEAS:ARR:MASK? ", "f", payload=mask.astype(np.uint8),
                payload_dtype="B", timeout_s=self._timeout(5 * rows * cols),
                parse=_expect(count))
        out = np.empty(count)
        out[order] = values
        return out

    def pulse(self, volts: np.ndarray, width: float | np.ndarray = 1e-6) -> int:
        """Apply one pulse batch (signed volts per cell, 0 = none). One transaction.

        A batch is never sent twice: if the link fails mid-transaction the
        driver reconnects and asks the board how many batches it applied.
        """
        volts = np.asarray(volts, dtype=np.float64)
        if volts.shape != self.shape:
            raise ArrayShapeError(f"volts must have shape {self.shape}, got {volts.shape}")
        self.guard.pulses(volts, width)
        return self._send_pulses(np.flatnonzero(volts), volts.ravel(),
                                 np.asarray(width, dtype=np.float64))

    def pulse_cells(self, cells: np.ndarray, volts: np.ndarray,
                    width: float | np.ndarray = 1e-6) -> int:
        """One pulse on each listed cell (signed volts, width per cell or one). One
        transaction, as :meth:`pulse`."""
        idx = self._cells(cells)
        v = np.asarray(volts, dtype=np.float64)
        w = np.asarray(width, dtype=np.float64)
        if v.shape != idx.shape or (w.ndim and w.shape != idx.shape):
            raise ArrayShapeError(f"{idx.size} cells need {idx.size} amplitudes (and one "
                                  f"width or {idx.size}), got {v.shape} and {w.shape}")
        self.guard.pulses(v, w)
        keep = v != 0
        idx, v = idx[keep], v[keep]
        if w.ndim:
            w = w[keep]
        rows, cols = self.shape
        full = np.zeros(rows * cols)
        full[idx] = v
        if w.ndim:
            widths = np.full(rows * cols, float(w.min()) if w.size else 1e-6)
            widths[idx] = w
            w = widths
        return self._send_pulses(idx, full, w)

    def _send_pulses(self, active: np.ndarray, volts: np.ndarray, w: np.ndarray) -> int:
        """One batch: ``volts`` and ``w`` (scalar, or per cell) over the whole array,
        ``active`` the cells with a non-zero amplitude."""
        self._setup()
        if w.ndim:
            w = w.ravel()
        full_bytes = 4 * volts.size * (1 if w.ndim == 0 else 2)
        if LIST_ENTRY.itemsize * active.size < full_bytes:  # few cells: send a list
            command, dtype = ":PULS:ARR:LIST? ", "B"
            entries = np.empty(active.size, LIST_ENTRY)
            entries["index"] = active
            entries["volts"] = volts[active]
            entries["width"] = np.broadcast_to(w, volts.shape)[active]
            payload = entries.view(np.uint8)
        elif w.ndim == 0:
            command, dtype = f":PULS:ARR? {float(w):.9g},", "f"
            payload = volts.astype("<f4")
        else:
            command, dtype = ":PULS:ARR:WIDT? ", "f"
            payload = np.concatenate([volts, w]).astype("<f4")
        before = self._batches
        try:
            count = self.session.query_with_block(
                command, payload, dtype, parse=int, retry=False,
                timeout_s=self._timeout(payload.nbytes))
        except InstrumentError:
            self.session.reconnect()
            applied = self.session.query(":PULS:COUN?", parse=int)
            if applied == before:  # the batch never arrived: send it once more
                count = self.session.query_with_block(
                    command, payload, dtype, parse=int, retry=False,
                    timeout_s=self._timeout(payload.nbytes))
            else:
                self._batches = applied
                self.session.check_errors("a pulse batch whose reply was lost")
                return -1  # applied; the board's count of switched cells was lost
        self._batches = before + 1
        return count

    def mvm(self, x_volts: np.ndarray) -> np.ndarray:
        """Column currents (A) for row voltages (V), (rows,) or (n, rows). One transaction."""
        x = self.guard.input_voltages(x_volts)
        rows, cols = self.shape
        single = x.ndim == 1
        x2 = np.atleast_2d(x)
        if x2.ndim != 2 or x2.shape[1] != rows:
            raise ArrayShapeError(f"x_volts must have shape ({rows},) or (n, {rows}), "
                                  f"got {x.shape}")
        self._setup()
        out = self.session.query_block(
            ":MVM? ", "f", payload=x2.astype("<f4").ravel(), payload_dtype="f",
            timeout_s=self._timeout(4 * x2.size + 4 * x2.shape[0] * cols),
            parse=_expect(x2.shape[0] * cols))
        out = out.astype(np.float64).reshape(x2.shape[0], cols)
        return out[0] if single else out

    def form(self, voltage: float | None = None, width: float | None = None,
             mask: np.ndarray | None = None) -> int:
        """Forming pulses on the array (or ``mask``); returns cells formed."""
        v = self.forming_voltage if voltage is None else voltage
        w = self.forming_width if width is None else width
        if v is None or w is None:
            raise ArrayShapeError("no forming voltage/width given and none configured "
                                  "(chips whose spec needs no forming are not formed)")
        self.guard.forming(v, w)
        command = f":FORM:ARR? {v:.6g},{w:.6g}"
        if mask is None:
            count = self.session.query(command, parse=int, timeout_s=self._timeout(0) + 10)
        else:
            mask = self._mask(mask)
            count = self.session.query_with_block(
                command + ",", mask.astype(np.uint8).ravel(), "B", parse=int,
                timeout_s=self._timeout(mask.size) + 10)
        return count

    def check(self) -> None:
        self.session.check_errors()


def _pair(reply: str) -> tuple[int, int]:
    a, b = reply.strip().split(",")
    return int(a), int(b)


def _expect(count: int):
    def check(values: np.ndarray) -> np.ndarray:
        if values.size != count:
            raise BadReply(f"expected {count} values, got {values.size}")
        if not np.all(np.isfinite(values)):
            raise BadReply("reply holds NaN or infinity")
        return values

    return check


def _averages(count) -> int:
    if (isinstance(count, bool) or not isinstance(count, (int, float, np.integer))
            or int(count) != count or not 1 <= count <= MAX_READ_AVERAGES):
        raise ArrayShapeError(f"read averages {count!r} must be an integer in "
                              f"1..{MAX_READ_AVERAGES}")
    return int(count)
