"""The contact check that opens every die: are the needles on the pads?

The prober saying "in contact" means the chuck is at contact height, not that there is
continuity: a lifted or dirty probe card reads open circuit. So a sweep first measures
the open-circuit level of a few cells with the probes up (the read-out's offset and
noise), then, at each die, reads the same cells in contact: contact is made when they
read clearly above that level. Even pristine (unformed) RRAM cells pass a few nA at
the read voltage, far above an open input's pA; the margin is stated, not tuned to a die.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# contact: the sample's mean read exceeds the open level's mean by this many standard
# errors of that mean, and by at least FLOOR_FRACTION of the datasheet's g_min
SIGMAS = 8.0
FLOOR_FRACTION = 1e-3


@dataclass(frozen=True)
class OpenLevel:
    """Reads of the check's cells with the probes up. Siemens."""

    mean_s: float
    sigma_s: float  # spread of one cell's read
    cells: int

    def threshold(self, g_min: float) -> float:
        """The mean read above which the sample counts as contacted, S."""
        stderr = self.sigma_s / np.sqrt(max(1, self.cells))
        return self.mean_s + max(SIGMAS * stderr, FLOOR_FRACTION * g_min)


@dataclass(frozen=True)
class ContactResult:
    ok: bool
    ratio: float  # sample mean over the threshold (> 1: contact)
    mean_s: float


def check_cells(shape: tuple[int, int], count: int) -> np.ndarray:
    """Flat indices of ``count`` cells spread over the array (every row and column band),
    the same at every die."""
    rows, cols = shape
    n = min(count, rows * cols)
    step = rows * cols / n
    idx = (np.arange(n) * step).astype(np.int64)
    # skew each row band by a few columns so one dead column cannot hide contact
    return np.unique((idx + (idx // cols) * 7) % (rows * cols))


def measure_open(array, cells: np.ndarray, averages: int) -> OpenLevel:
    """Read ``cells`` with the probes up (the caller separates first)."""
    g = np.asarray(array.read_cells(cells, averages=averages), dtype=np.float64)
    return OpenLevel(float(np.mean(g)), float(np.std(g)), int(g.size))


def check_contact(array, cells: np.ndarray, averages: int, open_level: OpenLevel,
                  g_min: float) -> ContactResult:
    g = np.asarray(array.read_cells(cells, averages=averages), dtype=np.float64)
    mean = float(np.mean(g))
    threshold = open_level.threshold(g_min)
    return ContactResult(mean > threshold, mean / threshold, mean)
