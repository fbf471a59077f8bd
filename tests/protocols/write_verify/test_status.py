"""The per-cell states."""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from protocols.write_verify import CellStatus
from protocols.write_verify.status import IN_PLAY, SETTLED


def test_the_codes_are_the_loops_int8_values():
    assert issubclass(CellStatus, IntEnum)
    assert [(s.name, int(s)) for s in CellStatus] == [
        ("IDLE", 0), ("ACTIVE", 1), ("CONVERGED", 2), ("UNRESPONSIVE", 3), ("UNREACHABLE", 4),
        ("EXHAUSTED", 5), ("CONFIRM", 6), ("PROBE", 7)]
    status = np.array([CellStatus.ACTIVE, CellStatus.PROBE], np.int8)
    assert CellStatus(int(status[1])) is CellStatus.PROBE
    assert list(status == CellStatus.ACTIVE) == [True, False]


def test_every_targeted_state_is_in_play_or_settled_never_both():
    assert set(IN_PLAY).isdisjoint(SETTLED)
    assert set(IN_PLAY) | set(SETTLED) | {CellStatus.IDLE} == set(CellStatus)
