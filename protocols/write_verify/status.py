"""The per-cell states of write-verify."""

from __future__ import annotations

from enum import IntEnum


class CellStatus(IntEnum):
    """Where each cell stands; stored as int8 per cell by the loop.

    CONFIRM: read in the band once, re-read (unpulsed) before it counts as converged,
    so one lucky noisy read cannot end a cell's programming. PROBE: stalled without
    ever moving; one opposite-polarity pulse tells a cell saturated at its bound (it
    moves: unreachable) from a stuck one (it does not: unresponsive).
    """

    IDLE = 0  # not targeted
    ACTIVE = 1  # read and pulsed every iteration
    CONVERGED = 2  # accepted in the band
    UNRESPONSIVE = 3  # never moved (stuck, unformed)
    UNREACHABLE = 4  # moved, but saturated short of its target
    EXHAUSTED = 5  # pulse budget spent without converging
    CONFIRM = 6
    PROBE = 7


IN_PLAY = (CellStatus.ACTIVE, CellStatus.CONFIRM, CellStatus.PROBE)  # read every iteration
SETTLED = (CellStatus.CONVERGED, CellStatus.UNRESPONSIVE, CellStatus.UNREACHABLE,
           CellStatus.EXHAUSTED)  # done: converged or classified
