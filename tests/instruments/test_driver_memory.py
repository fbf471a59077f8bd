"""The reference controller's driver does not copy the array more than the wire needs.

The write-verify loop's peak memory per cell (issue 14: <= 150 B at 1024 x 1024) includes
the driver's buffers; measured as the benchmark measures it (``HostMemory``: tracemalloc,
the in-process simulator's own allocations taken out at the wire). Before the driver built
its blocks in place: read_cells 19.5 B per cell, pulse_cells 41 (one width) and 65 (a
width per cell) at 1024 x 1024; after: 11.5, 24, 48 (pyvisa's own copies of the block
are most of what is left).
"""

from __future__ import annotations

import numpy as np

from benchmarks.bench_program import HostMemory
from calib import open_bench

SIZE = 512


def _peak_per_cell(call) -> float:
    with HostMemory() as memory:
        call()
    return memory.host_peak / SIZE**2


def test_whole_array_cell_lists_cost_little_more_than_their_block():
    with open_bench(chip="rram", rows=SIZE, cols=SIZE, seed=7) as bench:
        bench.prober.goto(12)
        array = bench.array
        array.form()
        cells = np.arange(SIZE**2)
        volts = np.full(cells.size, 0.5, np.float32)
        widths = np.full(cells.size, 1e-6, np.float32)
        read = _peak_per_cell(lambda: array.read_cells(cells))
        one_width = _peak_per_cell(lambda: array.pulse_cells(cells, volts, 1e-6))
        per_cell = _peak_per_cell(lambda: array.pulse_cells(cells, volts, widths))
        # and an unsorted list is still answered in its own order
        shuffled = np.random.default_rng(0).permutation(cells)[:1000]
        again = array.read_cells(shuffled)
        whole = array.read().ravel()
        # read noise apart, each value is its own cell's (neighbours differ by tens of uS)
        assert np.corrcoef(again, whole[shuffled])[0, 1] > 0.99
    # the reply as float64 (8 B) and its block (4 B)
    assert read <= 14, f"read_cells {read:.1f} B per cell"
    # float64 amplitudes (8 B, from float32), the block (4 B) and pyvisa's copies of it
    assert one_width <= 30, f"pulse_cells, one width: {one_width:.1f} B per cell"
    assert per_cell <= 56, f"pulse_cells, per-cell widths: {per_cell:.1f} B per cell"
