"""An example user step for sweeps (``function = "calib.sweep.examples:read_spread"``).

A user step is any function ``step(bench, die, run, **options) -> dict``: it gets the
bench (its roles), the die id (the die is contacted), the recorded run it may add to
(``run.finish(arrays, summary)``, artifacts), and the recipe's ``options`` as keywords.
The numbers of the dict it returns are the step's figures, which bin rules test as
``<step name>.<key>``. Anything it raises bins the die as failed and the sweep goes on.
"""

from __future__ import annotations

import numpy as np


def read_spread(bench, die: int, run, repeats: int = 4) -> dict:
    """Read the array ``repeats`` times: the median relative spread of each cell's reads
    (read noise plus instability), and the mean conductance. No pulse is sent."""
    if not isinstance(repeats, int) or not 2 <= repeats <= 64:
        raise ValueError(f"repeats {repeats!r}: a whole number in 2..64")
    reads = np.stack([bench.array.read() for _ in range(repeats)])
    mean = reads.mean(axis=0)
    spread = reads.std(axis=0, ddof=1) / np.maximum(mean, 1e-12)
    lit = mean > bench.datasheet.window.g_min / 2
    return {"median_relative_spread": float(np.median(spread[lit])) if lit.any() else 1.0,
            "mean_conductance_siemens": float(mean.mean()), "repeats": repeats}
