"""Shared by the store's tests: files made with plain h5py, as older toolkits made them."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

HISTORY = [("iteration", "i4"), ("phase", "S10"), ("active", "i4"), ("pulsed", "i4"),
           ("converged", "i4"), ("transactions", "i4"), ("bench_time_s", "f8")]


def make_v1(path: Path, *, wafer: str = "w", die: int = 1, runs: int = 2, mutate=None) -> Path:
    """A format-version-1 die file (as calib/store.py wrote them), optionally altered."""
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "aimc-calib die file"
        f.attrs["format_version"] = 1
        f.attrs["wafer"] = wafer
        f.attrs["die"] = die
        f.attrs["created"] = "2025-01-01T00:00:00+00:00"
        g = f.create_group("runs")
        for i in range(1, runs + 1):
            r = g.create_group(f"{i:04d}_write_verify")
            r.attrs["protocol"] = "write_verify"
            r.attrs["status"] = "complete"
            r.attrs["started"] = "2025-01-01T00:00:00+00:00"
            r.attrs["ended"] = "2025-01-01T00:01:00+00:00"
            r.attrs["toolkit_version"] = "0.1.0"
            r.attrs["params_json"] = '{"tolerance": 1e-06}'
            r.attrs["instruments_json"] = '{"array": "AIMC"}'
            r.attrs["summary_json"] = '{"cells": 16}'
            r.attrs["temperature_c"] = 25.0
            r.attrs["chip"] = "rram"
            r.create_dataset("final", data=np.full((4, 4), float(i)), compression="gzip")
            r.create_dataset("history", data=np.zeros(3, HISTORY), compression="gzip")
        if mutate is not None:
            mutate(f)
    return path
