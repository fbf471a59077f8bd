"""Fast float32 standard normals for per-cell noise.

Drawing a million normals costs ~10 ms on our 2-core CI machine (no AVX),
which alone would exceed the 50 ms budget of one 1024x1024 pulse+read
iteration. So large draws come from a shared pool of exact N(0, 1) samples,
read as a contiguous window at an offset chosen by the caller's generator:
each call's values are a fresh uniform-offset sample of the pool, so a cell's
successive draws are independent N(0, 1) samples (the pool has 4 Mi of them).
What this gives up: two calls' windows are shifted copies of each other, so
cell k in one call can share a value with cell k + d in another; no protocol
can see or exploit that. Small draws use the generator directly.
"""

from __future__ import annotations

import numpy as np

POOL_SIZE = 1 << 22
POOL_THRESHOLD = 1 << 14  # below this many values, draw directly
_pool: np.ndarray | None = None


def _get_pool() -> np.ndarray:
    global _pool
    if _pool is None:
        rng = np.random.default_rng(np.random.SeedSequence(0x5EED_AC1D))
        pool = np.empty(2 * POOL_SIZE, np.float32)
        rng.standard_normal(dtype=np.float32, out=pool[:POOL_SIZE])
        pool[POOL_SIZE:] = pool[:POOL_SIZE]  # windows never wrap
        _pool = pool
        _pool.setflags(write=False)
    return _pool


def normals(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` standard normal values as float32 (read-only for large ``n``)."""
    if n <= 0:
        return np.empty(0, np.float32)
    if n < POOL_THRESHOLD or n > POOL_SIZE:
        return rng.standard_normal(n, dtype=np.float32)
    offset = int(rng.integers(0, POOL_SIZE))
    return _get_pool()[offset:offset + n]
