"""The online read-noise fit."""

from __future__ import annotations

import numpy as np
import pytest

from protocols.write_verify.read_noise import ReadNoise

US = 1e-6


def test_read_noise_is_learned_from_repeat_reads():
    rng = np.random.default_rng(0)
    noise = ReadNoise()
    for _ in range(40):  # in batches, as the loop feeds it
        g = rng.uniform(1 * US, 40 * US, 500)
        sigma = 0.02 * US + 0.01 * g
        noise.add(g, sigma * np.sqrt(2) * rng.standard_normal(g.size))  # r2 - r1
    a, b = noise.fit
    assert a == pytest.approx(0.02 * US, abs=0.02 * US) and b == pytest.approx(0.01, rel=0.05)
    assert noise.count == 20000


def test_round_trip_restores_the_fit_and_its_sums_exactly(tmp_path):
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(1)
    noise = ReadNoise()
    assert ReadNoise.from_arrays(noise.to_arrays()).fit is None  # nothing learned yet
    g = rng.uniform(1 * US, 40 * US, 300)
    noise.add(g, 0.3 * US * rng.standard_normal(g.size))
    with h5py.File(tmp_path / "noise.h5", "w") as f:  # as the calib layer saves artifacts
        for name, value in noise.to_arrays().items():
            f.create_dataset(name, data=value)
    with h5py.File(tmp_path / "noise.h5", "r") as f:
        restored = ReadNoise.from_arrays({name: f[name][()] for name in f})
    assert restored.fit == noise.fit and np.array_equal(restored.sums, noise.sums)
    more = rng.uniform(1 * US, 40 * US, 300), 0.3 * US * rng.standard_normal(300)
    noise.add(*more)
    restored.add(*more)
    assert restored.fit == noise.fit and restored.count == noise.count == 600
