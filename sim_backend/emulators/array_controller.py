"""Emulator of the reference array controller (our SCPI set, docs/array-controller-scpi.md).

Whole arrays move as IEEE-488.2 definite-length blocks of little-endian
float32 (conductances, volts, amperes) or uint8 (masks), row-major.
With no die on the lines (probes up, or an ``open`` fault) reads and MVM return
the read-out's own noise floor through its ADCs, never exact zeros.
"""

from __future__ import annotations

import numpy as np

from sim_backend import devices
from sim_backend.chip import MAX_READ_AVERAGES, MVM_TIME, READ_TIME_PER_ROW
from sim_backend.framing import block as encode_block
from sim_backend.randoms import normals
from sim_backend.scpi import (
    DATA_TYPE,
    HARDWARE,
    OUT_OF_RANGE,
    ScpiError,
    ScpiInstrument,
    command,
    need,
    number,
)

BOARD_MAX_VOLTS = 10.0  # the board's own output range
BOARD_MAX_WIDTH = 10e-3  # s
# The read channel's input-referred current noise with nothing connected (assumption:
# ~1.5 pA/sqrt(Hz) over the ~1 MHz bandwidth of a 1 us conversion) and the spread of
# each bit line's static offset, drawn once per bench seed (assumption).
OPEN_NOISE_A = 1.5e-9
OPEN_OFFSET_A = 0.5e-9
_OPEN_STREAM = 0x0BE9  # seed stream of the open-circuit noise (with the wafer seed)


class ArrayControllerEmulator(ScpiInstrument):
    idn = "AIMC,RefArrayController,SIM0001,1.0"
    role = "array"

    def __init__(self, bench) -> None:
        super().__init__(bench)
        seeds = np.random.SeedSequence([bench.wafer.seed, _OPEN_STREAM]).spawn(2)
        cols = bench.spec.shape[1]
        self._open_offset = OPEN_OFFSET_A * np.random.default_rng(seeds[0]).standard_normal(
            cols)  # A per bit line: the board's, it survives a reboot
        self._open_rng = np.random.default_rng(seeds[1])
        self.reset()

    def reset(self) -> None:
        self.read_voltage = self.bench.spec.window.read_voltage
        self.read_averages = 1
        self.mvm_range = self.bench.spec.adc.mvm_full_scale
        self.pulse_batches = 0

    # -- helpers -----------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return self.bench.spec.shape

    def _floats(self, data: bytes | None, count: int | None, what: str) -> np.ndarray:
        if data is None:
            raise ScpiError(DATA_TYPE, f"Data type error; {what} needs a binary block")
        if len(data) % 4:
            raise ScpiError(DATA_TYPE, f"Data type error; {what} block is not float32")
        values = np.frombuffer(data, dtype="<f4")
        if count is not None and values.size != count:
            raise ScpiError(OUT_OF_RANGE, f"Data out of range; {what} needs {count} values, "
                                          f"got {values.size}")
        if not np.all(np.isfinite(values)):
            raise ScpiError(OUT_OF_RANGE, f"Data out of range; {what} has NaN or infinity")
        return values

    def _mask(self, data: bytes | None) -> np.ndarray:
        n = self.shape[0] * self.shape[1]
        if data is None or len(data) != n:
            raise ScpiError(OUT_OF_RANGE, f"Data out of range; mask needs {n} bytes")
        return np.frombuffer(data, dtype=np.uint8).reshape(self.shape).astype(bool)

    def _indices(self, data: bytes | None, record: int, what: str) -> np.ndarray:
        """Cell indices (row-major) leading each ``record``-byte entry of a list block:
        strictly increasing, within the array."""
        if data is None:
            raise ScpiError(DATA_TYPE, f"Data type error; {what} needs a binary block")
        if len(data) % record:
            raise ScpiError(DATA_TYPE, f"Data type error; {what} block is not a whole "
                                       f"number of {record}-byte entries")
        idx = np.frombuffer(data, dtype="<u4")[:: record // 4].astype(np.int64)
        n = self.shape[0] * self.shape[1]
        if idx.size and (idx[-1] >= n or np.any(np.diff(idx) <= 0)):
            raise ScpiError(OUT_OF_RANGE, f"Data out of range; {what} indices must increase "
                                          f"strictly and stay below {n}")
        return idx

    def _chip(self):
        if self.bench.faults.latched("open"):  # contact reported, needles without continuity
            return None
        return self.bench.chip  # None: probes up, every line open

    def _overhead(self) -> None:
        self.bench.clock.advance(self.bench.latency.array_overhead_s)

    # -- command table -------------------------------------------------------
    @command(":ARRay:SIZE?")
    def size(self, args, block):
        return f"{self.shape[0]},{self.shape[1]}"

    @command(":CONFigure:READ:VOLTage")
    def set_read_voltage(self, args, block):
        need(args, 1)
        v = number(args[0], "read voltage")
        if not 0 < v <= BOARD_MAX_VOLTS:
            raise ScpiError(OUT_OF_RANGE, "Data out of range; read voltage")
        self.read_voltage = v

    @command(":CONFigure:READ:VOLTage?")
    def get_read_voltage(self, args, block):
        return f"{self.read_voltage:.6g}"

    @command(":CONFigure:READ:AVERage")
    def set_read_averages(self, args, block):
        need(args, 1)
        n = number(args[0], "read averages")
        if n != int(n) or not 1 <= n <= MAX_READ_AVERAGES:
            raise ScpiError(OUT_OF_RANGE, "Data out of range; read averages")
        self.read_averages = int(n)

    @command(":CONFigure:READ:AVERage?")
    def get_read_averages(self, args, block):
        return str(self.read_averages)

    @command(":MEASure:ARRay?")
    def read_all(self, args, block):
        return encode_block(self._read(None).astype("<f4").tobytes())

    @command(":MEASure:ARRay:MASK?")
    def read_masked(self, args, block):
        mask = self._mask(block)
        values = self._read(mask)[mask]
        return encode_block(values.astype("<f4").tobytes())

    @command(":MEASure:ARRay:LIST?")
    def read_list(self, args, block):
        idx = self._indices(block, 4, "cell list")
        mask = np.zeros(self.shape[0] * self.shape[1], bool)
        mask[idx] = True
        values = self._read(mask.reshape(self.shape)).ravel()[idx]
        return encode_block(values.astype("<f4").tobytes())

    def _read(self, mask) -> np.ndarray:
        self.bench.observed.note("read_voltage", self.read_voltage)
        self._overhead()
        chip = self._chip()
        if chip is None:
            return self._open_read(mask)
        g = chip.read(mask, voltage=self.read_voltage, averages=self.read_averages)
        return np.nan_to_num(g, nan=0.0)

    def _open_read(self, mask) -> np.ndarray:
        """Open lines: the channel's offset and noise through the read ADC (as the chip's
        reads pass it), per conversion, averaged; the clock charged as for a die."""
        rows, cols = self.shape
        adc, v = self.bench.spec.adc, self.read_voltage
        i_full = adc.read_full_scale * self.bench.spec.window.read_voltage
        offset = np.broadcast_to(self._open_offset.astype(np.float32), (rows, cols)).ravel()
        total = np.zeros(rows * cols)
        for _ in range(self.read_averages):
            current = OPEN_NOISE_A * normals(self._open_rng, rows * cols) + offset
            total += devices.quantize(current.astype(np.float32), i_full, adc.read_bits, False)
        rows_read = rows if mask is None else int(np.count_nonzero(mask.any(axis=1)))
        self.bench.clock.advance(READ_TIME_PER_ROW * rows_read * self.read_averages)
        return (total / (v * self.read_averages)).reshape(rows, cols)

    @command(":PULSe:ARRay?")
    def pulse(self, args, block):
        need(args, 1)
        width = number(args[0], "width")
        volts = self._floats(block, self.shape[0] * self.shape[1], "volts")
        return self._apply(volts, np.float32(width))

    @command(":PULSe:ARRay:WIDTh?")
    def pulse_widths(self, args, block):
        n = self.shape[0] * self.shape[1]
        both = self._floats(block, 2 * n, "volts and widths")
        return self._apply(both[:n], both[n:])

    @command(":PULSe:ARRay:LIST?")
    def pulse_list(self, args, block):
        idx = self._indices(block, 12, "pulse list")
        records = np.frombuffer(block, dtype=[("i", "<u4"), ("v", "<f4"), ("w", "<f4")])
        if not (np.all(np.isfinite(records["v"])) and np.all(np.isfinite(records["w"]))):
            raise ScpiError(OUT_OF_RANGE, "Data out of range; pulse list has NaN or infinity")
        n = self.shape[0] * self.shape[1]
        volts = np.zeros(n, np.float32)
        widths = np.full(n, np.float32(records["w"].min() if idx.size else 1e-6))
        volts[idx] = records["v"]
        widths[idx] = records["w"]
        return self._apply(volts, widths)

    def _apply(self, volts: np.ndarray, width) -> str:
        if np.any(np.abs(volts) > BOARD_MAX_VOLTS):
            raise ScpiError(OUT_OF_RANGE, "Data out of range; amplitude beyond the board's 10 V")
        active = volts != 0
        w = np.broadcast_to(width, volts.shape)
        if np.any(w[active] <= 0) or np.any(w[active] > BOARD_MAX_WIDTH):
            raise ScpiError(OUT_OF_RANGE, "Data out of range; pulse width")
        if active.any():
            self.bench.observed.note("program_voltage", float(np.abs(volts).max()))
            self.bench.observed.note("pulse_width", float(w[active].max()))
        self._overhead()
        self.pulse_batches += 1
        chip = self._chip()
        if chip is None:
            return "0"
        shaped_w = width if np.ndim(width) == 0 else width.reshape(self.shape)
        return str(chip.pulse(volts.reshape(self.shape), width=shaped_w))

    @command(":PULSe:COUNt?")
    def pulse_count(self, args, block):
        return str(self.pulse_batches)

    @command(":MVM?")
    def mvm(self, args, block):
        return self._product(block, self.shape[0], self.shape[1], "inputs", "mvm")

    @command(":MVM:TRANsposed?")
    def mvm_transposed(self, args, block):
        return self._product(block, self.shape[1], self.shape[0], "column inputs",
                             "mvm_transposed")

    def _product(self, block, width: int, outputs: int, what: str, method: str):
        """A forward or transposed product: ``width`` volts per vector in, ``outputs``
        currents out, through the chip's ``method`` (open lines: the ADC's noise alone)."""
        x = self._floats(block, None, what)
        if x.size == 0 or x.size % width:
            raise ScpiError(OUT_OF_RANGE, f"Data out of range; {what} must be n x {width}")
        if np.any(np.abs(x) > BOARD_MAX_VOLTS):
            raise ScpiError(OUT_OF_RANGE, "Data out of range; input voltage")
        self.bench.observed.note("mvm_voltage", float(np.abs(x).max()))
        self._overhead()
        chip = self._chip()
        x2 = x.reshape(-1, width).astype(np.float64)
        if chip is None:  # open lines: the sense chain's output noise alone
            sigma = self.bench.spec.adc.mvm_output_noise * self.mvm_range
            noise = sigma * normals(self._open_rng, x2.shape[0] * outputs)
            out = devices.quantize(noise.reshape(x2.shape[0], -1), self.mvm_range,
                                   self.bench.spec.adc.mvm_bits, True)
            self.bench.clock.advance(MVM_TIME * x2.shape[0])
        else:
            out = getattr(chip, method)(x2, full_scale=self.mvm_range)
        return encode_block(out.astype("<f4").tobytes())

    @command(":MVM:RANGe")
    def set_mvm_range(self, args, block):
        need(args, 1)
        value = number(args[0], "range")
        if not 0 < value <= 0.1:
            raise ScpiError(OUT_OF_RANGE, "Data out of range; MVM range 0-100 mA")
        self.mvm_range = value

    @command(":MVM:RANGe?")
    def get_mvm_range(self, args, block):
        return f"{self.mvm_range:.6g}"

    @command(":FORM:ARRay?")
    def form(self, args, block):
        need(args, 2)
        v, w = number(args[0], "forming voltage"), number(args[1], "forming width")
        if not (0 < v <= BOARD_MAX_VOLTS and 0 < w <= 0.1):
            raise ScpiError(OUT_OF_RANGE, "Data out of range; forming pulse")
        mask = self._mask(block) if block is not None else None
        self.bench.observed.note("forming_voltage", v)
        self.bench.observed.note("forming_width", w)
        self._overhead()
        chip = self._chip()
        if chip is None:
            raise ScpiError(HARDWARE, "Hardware error; no array connected (probes up)")
        return str(chip.form(voltage=v, width=w, mask=mask))
