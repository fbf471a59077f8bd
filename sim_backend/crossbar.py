"""Analog matrix-vector multiply on a resistive crossbar with IR drop.

Word lines are driven from column 0; bit lines are held at virtual ground by
the sense amplifiers after the last row. Cell voltages solve
``v = x - (R_row + R_col)(G v)``, where the wire operators are cumulative sums
of the currents each segment carries. We solve it by damped fixed-point
iteration: the damping comes from a bound on the wire operator's largest
eigenvalue, r * g_max * (rows^2 + cols^2) / 2, so the iteration converges
even where the wires drop most of the input (large arrays, all rows driven).
"""

from __future__ import annotations

import numpy as np

MAX_PASSES = 60
TOLERANCE = 1e-6  # relative change of the cell voltages that ends the iteration
CHUNK_CELLS = 1 << 22  # bound temporaries to ~32 MB of float64


def column_currents(x: np.ndarray, g: np.ndarray, wire_ohm: float) -> np.ndarray:
    """Currents (A) into each bit line for inputs ``x`` (n, rows) in volts."""
    if wire_ohm == 0:
        return x @ g.astype(np.float64)
    rows, cols = g.shape
    per_chunk = max(1, CHUNK_CELLS // (rows * cols))
    out = np.empty((x.shape[0], cols))
    g64 = g.astype(np.float64)
    lam = wire_ohm * float(g64.max()) * (rows**2 + cols**2) / 2
    omega = min(1.0, 1.6 / (1.0 + lam))
    for start in range(0, x.shape[0], per_chunk):
        out[start:start + per_chunk] = _ir_chunk(x[start:start + per_chunk], g64, wire_ohm, omega)
    return out


def _wire_drop(i_cell: np.ndarray, r: float) -> np.ndarray:
    """Voltage lost on both wires at each cell for cell currents ``i_cell``."""
    # Word line: the segment before column j carries the current of cells j..end.
    seg_row = np.flip(np.cumsum(np.flip(i_cell, axis=2), axis=2), axis=2)
    drop = np.cumsum(seg_row, axis=2)
    # Bit line: the segment below row i carries the current of rows 0..i.
    seg_col = np.cumsum(i_cell, axis=1)
    drop += np.flip(np.cumsum(np.flip(seg_col, axis=1), axis=1), axis=1)
    drop *= r
    return drop


def _ir_chunk(x: np.ndarray, g: np.ndarray, r: float, omega: float) -> np.ndarray:
    x3 = x[:, :, None]
    v_cell = np.broadcast_to(x3, (x.shape[0],) + g.shape).copy()
    scale = max(float(np.abs(x).max()), 1e-30)
    for _ in range(MAX_PASSES):
        target = x3 - _wire_drop(v_cell * g, r)
        change = target - v_cell
        v_cell += omega * change
        if float(np.abs(change).max()) <= TOLERANCE * scale:
            break
    return (v_cell * g).sum(axis=1)
