"""Driver of the reference array controller (our SCPI set, docs/array-controller-scpi.md).

One bus transaction per array operation: whole arrays move as IEEE-488.2
definite-length blocks of little-endian float32 (uint8 for masks).
"""

from __future__ import annotations

import logging
import math

import numpy as np

from instruments.datasheet import ChipDatasheet
from instruments.drivers.base import Driver, bool_mask, flat_cells, increasing, whole
from instruments.errors import (
    ArrayShapeError,
    BadReply,
    ControllerResetError,
    InstrumentError,
    InstrumentReportedError,
)
from instruments.safety import SafetyGuard
from instruments.session import VisaSession

log = logging.getLogger("instruments.drivers.reference_array")

BYTES_PER_SECOND = 1e6  # worst-case link speed used to scale timeouts
MAX_READ_AVERAGES = 1024  # the reference board's limit (docs/array-controller-scpi.md)
MAX_MVM_RANGE = 0.1  # A
# one entry of :PULS:ARR:LIST?: cell index (row-major), signed volts, width (s)
LIST_ENTRY = np.dtype([("index", "<u4"), ("volts", "<f4"), ("width", "<f4")])

__all__ = ["ArrayShapeError", "ControllerResetError", "ReferenceArrayController"]


class ReferenceArrayController(Driver):
    """ArrayController role for boards that implement our reference SCPI set.

    Read voltage and forming settings default to the datasheet's; options given
    are checked against the chip's limits when the driver is built. The driver
    remembers what it configured (read voltage, read averaging, MVM range, the
    board's pulse counter): after a reconnect it asks the board whether they
    survived, and a board found reset is set up again before the next read
    (reads change nothing on the chip, so a read made on defaults is repeated);
    a pulse batch caught in a reset raises :class:`ControllerResetError`.
    """

    role = "array"
    session_options = {"error_query": ":SYST:ERR?"}
    stresses_device = True

    def __init__(self, session: VisaSession, guard: SafetyGuard,
                 datasheet: ChipDatasheet | None = None, *, parts=None,
                 forming_voltage: float | None = None, forming_width: float | None = None,
                 read_voltage: float | None = None) -> None:
        super().__init__(session, guard, datasheet, parts=parts)
        read_voltage, forming_voltage, forming_width = self.cell_settings(
            read_voltage, forming_voltage, forming_width)
        self.forming_voltage = forming_voltage
        self.forming_width = forming_width
        self.read_voltage = read_voltage
        self._shape: tuple[int, int] | None = None
        self._batches: int | None = None  # the board's :PULS:COUN? as last known
        self._configured = False
        self._averages = 1  # the board's state after power-on / *RST
        self._mvm_range: float | None = None  # None: the board's default
        self._averages_queryable = True  # False: a board without :CONF:READ:AVER
        self._reconnects_seen = session.reconnects

    # -- identity and set-up ------------------------------------------------------
    def settings(self) -> dict:
        return {"read_voltage": self.read_voltage, "read_averages": self._averages,
                "forming_voltage": self.forming_voltage, "forming_width": self.forming_width}

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
        self._counter()

    def _counter(self) -> int:
        """The board's pulse-batch count as the driver last knew it (asked once)."""
        if self._batches is None:
            self._batches = self.session.query(":PULS:COUN?", parse=int)
        return self._batches

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
        if not isinstance(amps, (int, float, np.number)) or isinstance(amps, bool) or not (
                math.isfinite(amps) and 0 < amps <= MAX_MVM_RANGE):
            raise ArrayShapeError(f"MVM range {amps!r} A must be in (0, {MAX_MVM_RANGE:g}]")
        self.session.write(f":MVM:RANG {amps:.6g}")
        self.session.check_errors("setting the MVM range")
        self._mvm_range = float(amps)

    def _timeout(self, nbytes: int) -> float:
        return self.session.timeout_s + nbytes / BYTES_PER_SECOND

    def _mask(self, mask) -> np.ndarray:
        return bool_mask(mask, self.shape)

    # -- a board that restarted ---------------------------------------------------------
    def _settings_lost(self) -> bool:
        """Ask the board for the read settings the driver made; True if they are gone.

        Only called after a reconnect (nothing is asked otherwise)."""
        if not self._configured:
            return False
        if self._averages_queryable:
            try:
                averages = self.session.query(":CONF:READ:AVER?", parse=_int)
            except InstrumentReportedError:  # a board without read averaging (averages=1)
                self._averages_queryable = False
            else:
                if averages != self._averages:
                    return True
        if self.read_voltage is not None:
            volts = self.session.query(":CONF:READ:VOLT?", parse=float)
            if not math.isclose(volts, self.read_voltage, rel_tol=1e-4, abs_tol=1e-6):
                return True
        if self._mvm_range is not None:
            amps = self.session.query(":MVM:RANG?", parse=float)
            if not math.isclose(amps, self._mvm_range, rel_tol=1e-4):
                return True
        return False

    def _reapply(self) -> None:
        """Set a reset board up again as the driver had it, and learn its new counter."""
        if self.read_voltage is not None:
            self.session.write(f":CONF:READ:VOLT {self.read_voltage:.6g}")
        if self._averages != 1:
            self.session.write(f":CONF:READ:AVER {self._averages}")
        if self._mvm_range is not None:
            self.session.write(f":MVM:RANG {self._mvm_range:.6g}")
        self.session.check_errors("setting up the array controller again after a reset")
        self._batches = self.session.query(":PULS:COUN?", parse=int)

    def _resync(self) -> bool:
        """After a reconnect: if the board restarted (its pulse counter moved while no
        batch was in flight, or the read settings are gone), set it up again and say
        so (True), so a read just made on defaults is repeated."""
        if self.session.reconnects == self._reconnects_seen or not self._configured:
            return False
        count = self.session.query(":PULS:COUN?", parse=int)
        reset = (self._batches is not None and count != self._batches) or self._settings_lost()
        if reset:
            log.warning("%s: the array controller was reset (pulse counter %d, expected %s); "
                        "setting it up again", self.session.name, count, self._batches)
            self._reapply()
        else:
            self._batches = count
        self._reconnects_seen = self.session.reconnects
        return reset

    def _idempotent(self, operation):
        """Run a read-only ``operation``; once more if the board was found reset meanwhile."""
        self._resync()
        out = operation()
        if self._resync():
            out = operation()
        return out

    # -- array operations -----------------------------------------------------------
    def _cells(self, cells) -> np.ndarray:
        return flat_cells(cells, self.shape)

    def _use_averages(self, averages: int | None) -> None:
        if averages is not None and _averages(averages) != self._averages:
            self.configure_read_averages(averages)

    def read(self, mask: np.ndarray | None = None, averages: int | None = None) -> np.ndarray:
        """Conductances in siemens; NaN outside ``mask``. One transaction.

        ``averages``: conversions the board averages per cell (None: as configured);
        a change costs one configuration write before the read.
        """
        if averages is not None:
            _averages(averages)
        self._setup()
        self._use_averages(averages)
        rows, cols = self.shape
        if mask is None:
            values = self._idempotent(lambda: self.session.query_block(
                ":MEAS:ARR?", "f", timeout_s=self._timeout(4 * rows * cols),
                parse=_expect(rows * cols)))
            return values.astype(np.float64).reshape(rows, cols)
        idx = np.flatnonzero(self._mask(mask))
        out = np.full(rows * cols, np.nan)
        out[idx] = self._idempotent(lambda: self._read_cells(idx))
        return out.reshape(rows, cols)

    def read_cells(self, cells: np.ndarray, averages: int | None = None) -> np.ndarray:
        """Conductances (S) of flat cell indices, in their order. One transaction: a
        list of indices when it moves fewer bytes than a mask, else a mask."""
        if averages is not None:
            _averages(averages)
        idx = self._cells(cells)
        self._setup()
        self._use_averages(averages)
        return self._idempotent(lambda: self._read_cells(idx))

    def _read_cells(self, idx: np.ndarray) -> np.ndarray:
        rows, cols = self.shape
        count = idx.size
        if count == 0:
            return np.empty(0)
        # the board takes and answers row-major order; the loop's lists usually are
        order = None if increasing(idx) else np.argsort(idx, kind="stable")
        if 4 * count < rows * cols:
            listed = idx if order is None else idx[order]
            values = self.session.query_block(
                ":MEAS:ARR:LIST? ", "f", payload=listed.astype("<u4"),
                payload_dtype="I", timeout_s=self._timeout(8 * count), parse=_expect(count))
        else:
            mask = np.zeros(rows * cols, np.uint8)
            mask[idx] = 1
            values = self.session.query_block(
                ":MEAS:ARR:MASK? ", "f", payload=mask,
                payload_dtype="B", timeout_s=self._timeout(5 * rows * cols),
                parse=_expect(count))
        if order is None:
            return values.astype(np.float64)
        out = np.empty(count)
        out[order] = values
        return out

    def pulse(self, volts: np.ndarray, width: float | np.ndarray = 1e-6) -> int:
        """Apply one pulse batch (signed volts per cell, 0 = none). One transaction.

        A batch is never sent twice: if the link fails mid-transaction the
        driver reconnects and asks the board how many batches it applied.
        """
        volts = _floats(volts, "volts")
        if volts.shape != self.shape:
            raise ArrayShapeError(f"volts must have shape {self.shape}, got {volts.shape}")
        self.guard.pulses(volts, width)
        return self._pulse_batch(np.flatnonzero(volts), volts.ravel(),
                                 np.asarray(width, dtype=np.float64))

    def pulse_cells(self, cells: np.ndarray, volts: np.ndarray,
                    width: float | np.ndarray = 1e-6) -> int:
        """One pulse on each listed cell (signed volts, width per cell or one). One
        transaction, as :meth:`pulse`."""
        idx = self._cells(cells)
        v = _floats(volts, "volts")
        w = _floats(width, "width")
        if v.shape != idx.shape or (w.ndim and w.shape != idx.shape):
            raise ArrayShapeError(f"{idx.size} cells need {idx.size} amplitudes (and one "
                                  f"width or {idx.size}), got {v.shape} and {w.shape}")
        self.guard.pulses(v, w)
        keep = v != 0
        if not keep.all():
            idx, v = idx[keep], v[keep]
            if w.ndim:
                w = w[keep]
        del keep
        rows, cols = self.shape
        n = rows * cols
        if _listed(idx.size, n, w):
            return self._send_pulses(*_pulse_list(idx, v, w))
        # the whole array, built straight into the 4-byte block (the cells' amplitudes,
        # 0 elsewhere; per-cell widths after them, the shortest elsewhere)
        payload = np.zeros(n if w.ndim == 0 else 2 * n, "<f4")
        payload[idx] = v
        if w.ndim == 0:
            return self._send_pulses(f":PULS:ARR? {float(w):.9g},", payload, "f")
        payload[n:] = float(w.min()) if w.size else 1e-6
        payload[n + idx] = w
        return self._send_pulses(":PULS:ARR:WIDT? ", payload, "f")

    def _pulse_batch(self, active: np.ndarray, volts: np.ndarray, w: np.ndarray) -> int:
        """One batch: ``volts`` and ``w`` (scalar, or per cell) over the whole array,
        ``active`` the cells with a non-zero amplitude."""
        if w.ndim:
            w = w.ravel()
        if _listed(active.size, volts.size, w):
            return self._send_pulses(*_pulse_list(
                active, volts[active], w if w.ndim == 0 else w[active]))
        if w.ndim == 0:
            return self._send_pulses(f":PULS:ARR? {float(w):.9g},", volts.astype("<f4"), "f")
        return self._send_pulses(":PULS:ARR:WIDT? ",
                                 np.concatenate([volts, w]).astype("<f4"), "f")

    def _send_pulses(self, command: str, payload: np.ndarray, dtype: str) -> int:
        """Send one pulse batch, never twice (see :meth:`pulse`)."""
        self._setup()
        self._resync()
        before = self._counter()

        def send() -> int:
            return self.session.query_with_block(
                command, payload, dtype, parse=int, retry=False,
                timeout_s=self._timeout(payload.nbytes))

        try:
            count = send()
        except InstrumentError as exc:
            refused = isinstance(exc, InstrumentReportedError)  # the board said why: no reply
            self.session.reconnect()
            applied = self.session.query(":PULS:COUN?", parse=int)
            if refused and applied == before:  # refused, not applied: nothing to send again
                self._reconnects_seen = self.session.reconnects
                raise
            if applied not in (before, before + 1):
                self._batches = applied  # the board counts from its reset again
                raise ControllerResetError(
                    f"{self.session.name}: the array controller was reset mid-run (pulse "
                    f"counter {applied}, expected {before} or {before + 1}); the batch may "
                    "not have been applied: re-read the array before going on") from None
            # a board reset when the count was 0 looks like "never arrived": its read
            # settings tell (a count of before + 1 cannot follow a reset)
            if applied == before and self._settings_lost():
                self._batches = None
                raise ControllerResetError(
                    f"{self.session.name}: the array controller was reset mid-run (pulse "
                    f"counter {applied}, read settings back at defaults); the batch may "
                    "not have been applied: re-read the array before going on") from None
            self._reconnects_seen = self.session.reconnects
            if applied == before + 1:
                self._batches = applied
                self.session.check_errors("a pulse batch whose reply was lost")
                return -1  # applied; the board's count of switched cells was lost
            try:  # the batch never arrived: send it once more
                count = send()
            except InstrumentError:
                self._batches = None  # unknown now: asked again before the next batch
                raise
        self._batches = before + 1
        return count

    def mvm(self, x_volts: np.ndarray) -> np.ndarray:
        """Column currents (A) for row voltages (V), (rows,) or (n, rows). One transaction."""
        return self._product(":MVM? ", x_volts, "x_volts", *self.shape)

    def mvm_transposed(self, v_volts: np.ndarray) -> np.ndarray:
        """Row currents (A) for column voltages (V), (cols,) or (n, cols). One transaction.

        The backward product ``G @ v`` (``:MVM:TRAN?``), at the same read-level
        limit and ``:MVM:RANG`` as :meth:`mvm`; the array role's optional capability.
        """
        rows, cols = self.shape
        return self._product(":MVM:TRAN? ", v_volts, "v_volts", cols, rows)

    def _product(self, command: str, volts, name: str, width: int, outputs: int) -> np.ndarray:
        """One product transaction: ``width`` input voltages per vector in (guarded),
        ``outputs`` currents per vector back."""
        x = self.guard.input_voltages(volts)
        single = x.ndim == 1
        x2 = np.atleast_2d(x)
        if x2.ndim != 2 or x2.shape[1] != width or x2.shape[0] == 0:
            raise ArrayShapeError(f"{name} must have shape ({width},) or (n, {width}), "
                                  f"got {x.shape}")
        self._setup()
        out = self._idempotent(lambda: self.session.query_block(
            command, "f", payload=x2.astype("<f4").ravel(), payload_dtype="f",
            timeout_s=self._timeout(4 * x2.size + 4 * x2.shape[0] * outputs),
            parse=_expect(x2.shape[0] * outputs)))
        out = out.astype(np.float64).reshape(x2.shape[0], outputs)
        return out[0] if single else out

    def form(self, voltage: float | None = None, width: float | None = None,
             mask: np.ndarray | None = None) -> int:
        """Forming pulses on the array (or ``mask``); returns cells formed. Never sent
        twice: a lost reply is an error (the board counts no forming batches)."""
        v = self.forming_voltage if voltage is None else voltage
        w = self.forming_width if width is None else width
        if v is None or w is None:
            raise ArrayShapeError("no forming voltage/width given and none configured "
                                  "(chips whose spec needs no forming are not formed)")
        self.guard.forming(v, w)
        v, w = float(v), float(w)
        if mask is not None:
            mask = self._mask(mask)
        command = f":FORM:ARR? {v:.6g},{w:.6g}"
        # never repeated blindly: a forming batch whose reply is lost may have been applied
        if mask is None:
            count = self.session.query(command, parse=int, retry=False,
                                       timeout_s=self._timeout(0) + 10)
        else:
            count = self.session.query_with_block(
                command + ",", mask.astype(np.uint8).ravel(), "B", parse=int, retry=False,
                timeout_s=self._timeout(mask.size) + 10)
        return count


def _listed(active: int, cells: int, w: np.ndarray) -> bool:
    """Whether a list of ``active`` cells moves fewer bytes than the whole array."""
    return LIST_ENTRY.itemsize * active < 4 * cells * (1 if w.ndim == 0 else 2)


def _pulse_list(idx: np.ndarray, v: np.ndarray, w: np.ndarray) -> tuple[str, np.ndarray, str]:
    """A ``:PULS:ARR:LIST?`` batch: (index, volts, width) per cell (``w`` one or per cell)."""
    entries = np.empty(idx.size, LIST_ENTRY)
    entries["index"] = idx
    entries["volts"] = v
    entries["width"] = w
    return ":PULS:ARR:LIST? ", entries.view(np.uint8), "B"


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
    try:
        return whole(count, "read averages", 1, MAX_READ_AVERAGES)
    except InstrumentError as exc:
        raise ArrayShapeError(str(exc)) from None


def _int(reply: str) -> int:
    return int(float(reply))


def _floats(values, what: str) -> np.ndarray:
    if isinstance(values, (str, bytes)):
        raise ArrayShapeError(f"{what} must be an array of numbers, got {values!r}")
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ArrayShapeError(f"{what} must be an array of numbers") from None


