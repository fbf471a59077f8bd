"""What an SMU on the probe card's switch matrix does to the die: shared by the SMU emulators.

The SMU's HI reaches the word lines closed on switch-matrix row A, its LO the
bit lines closed on row B (:func:`connected_cells`); the current it measures is
the sum over the connected cells. A point sourced for some seconds
(:func:`source_point`) above the switching threshold is a programming pulse of
that width (and, on a chip that needs forming, a forming pulse); every point is
recorded on the bench's WireLog (``smu_voltage``, and ``smu_dwell`` for pulses)
so that safety tests see, at the far side of the wire, what reached a cell.
The SCPI emulators (2450, B2900) also share how a voltage list is read (:func:`list_values`)
and the settings they check but that change nothing here (:func:`accepted`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim_backend.scpi import OUT_OF_RANGE, ScpiError, boolean, command, need, number

CHANNELS_PER_CARD = 12  # an 8x12 matrix card: columns 01-12
NOISE_FLOOR_A = 1e-12  # the current noise of a source-measure point


@dataclass(frozen=True)
class SourcedPoint:
    """One source-measure point: the current measured and whether the limit clamped it."""

    current: float
    tripped: bool


def connected_cells(bench) -> np.ndarray | None:
    """Mask of the cells between the word lines closed on row A and the bit lines closed on
    row B of the switch matrix (None: probes up, or no complete path)."""
    chip = bench.chip
    if chip is None or bench.faults.latched("open"):  # probes up, or needles with no contact
        return None
    wiring = bench.wiring
    wl, bl = set(), set()
    for name in bench.closed_channels:
        slot, row, col = int(name[0]), name[1], int(name[2:])
        line = wiring.line_of((slot - 1) * CHANNELS_PER_CARD + col - 1)
        if line is None:
            continue
        kind, index = line
        if row == "A" and kind == "wl" and index < chip.shape[0]:
            wl.add(index)
        elif row == "B" and kind == "bl" and index < chip.shape[1]:
            bl.add(index)
    if not wl or not bl:
        return None
    mask = np.zeros(chip.shape, bool)
    mask[np.ix_(sorted(wl), sorted(bl))] = True
    return mask


def source_point(bench, volts: float, seconds: float, *, ilim: float, nplc: float,
                 rng: np.random.Generator, role: str,
                 mask: np.ndarray | None = None) -> SourcedPoint:
    """Source ``volts`` on the cells of ``mask`` for ``seconds`` and measure the current.

    Charges one SMU point (scaled by ``nplc``) to the virtual clock; a point above the
    chip's switching thresholds pulses the cells (a forming pulse too where the chip
    needs forming); ``mask`` None: nothing connected, only the noise floor. A current
    beyond ``ilim`` (or a ``compliance`` fault injected for ``role``) clamps to the limit.
    """
    bench.observed.note("smu_voltage", abs(volts))
    bench.clock.advance(bench.latency.smu_point_s * nplc)
    spec = bench.spec
    current = 0.0
    if mask is not None:
        chip = bench.chip
        r = spec.response
        if volts >= r.set_threshold and spec.forming.required:
            chip.form(voltage=volts, width=seconds, mask=mask)
        if volts > r.set_threshold or volts < -r.reset_threshold:
            bench.observed.note("smu_dwell", seconds)
            chip.pulse(np.where(mask, volts, 0.0), width=seconds)
        g = chip.read(mask, voltage=max(abs(volts), 1e-3), adc=False)
        current = float(np.nansum(g[mask])) * volts
    current += float(rng.normal(0, NOISE_FLOOR_A))
    forced = bench.faults.take(role, ("compliance",))
    tripped = bool(forced or abs(current) > ilim)  # the state of this point
    if tripped:
        current = float(np.sign(current or 1.0)) * ilim
    return SourcedPoint(current, tripped)


def list_values(args: list[str], max_volts: float, max_points: int) -> list[float]:
    """The voltages of a ``:SOUR:LIST:VOLT`` (or ``:APP``) command: at least one, none
    beyond ``max_volts``, at most ``max_points`` (``-222`` otherwise)."""
    need(args, 1)
    values = [number(a, "list value") for a in args]
    if any(abs(v) > max_volts for v in values) or len(values) > max_points:
        raise ScpiError(OUT_OF_RANGE, "Data out of range; list")
    return values


def accepted(pattern: str, what: str | None = None):
    """The SCPI handler of a setting accepted and checked but with no effect here: one
    argument, a number (``what`` names it in the error) or, with no ``what``, a boolean."""

    @command(pattern)
    def handler(self, args, block):
        need(args, 1)
        if what is None:
            boolean(args[0])
        else:
            number(args[0], what)

    return handler
