"""The scalar figures of a die's steps: what bin rules test, the wafer summary tabulates
and STDF carries as parametric tests.

Job summaries are nested (a map's fault counts, its D2D quantiles); a sweep needs flat,
named numbers. Names are ``<step name>.<figure>``; units are in the name (``_s`` for
seconds, ``_siemens`` for conductances) and in :data:`UNITS`.
"""

from __future__ import annotations

import math
from typing import Any

# figures each built-in step reports; recipe rules are checked against these when the
# recipe is loaded (tests pin them against real summaries)
STEP_FIGURES: dict[str, tuple[str, ...]] = {
    "contact": ("contact_ratio", "contact_attempts"),
    "form": ("cells_formed", "cells_pristine"),
    "map": ("cells", "yield", "faulty_fraction", "stuck_fraction", "stuck_low", "stuck_high",
            "unformed", "narrow", "unresponsive", "g_min_median_siemens",
            "g_max_median_siemens", "g_max_d2d_log_std", "g_max_c2c_median_siemens",
            "read_noise_a_siemens", "read_noise_b", "read_noise_c", "set_threshold_median_v",
            "reset_threshold_median_v", "pulses_per_cell", "cycles", "bench_time_s"),
    "program": ("cells", "in_band_fraction", "yield", "unresponsive_cells",
                "unresponsive_fraction", "unreachable_cells", "exhausted_cells", "pulses_mean",
                "pulses_median", "pulses_p99", "iterations", "transactions", "bench_time_s"),
}

UNITS = {"_siemens": "S", "_s": "s", "_v": "V"}


def unit_of(name: str) -> str:
    for suffix, unit in UNITS.items():
        if name.endswith(suffix):
            return unit
    return ""


def step_figures(kind: str, summary: dict[str, Any]) -> dict[str, float]:
    """Flat figures of one step's summary (built-in kinds), or a user step's numbers."""
    if kind == "map":
        return _map(summary)
    if kind == "program":
        cells = max(1, int(summary.get("cells", 0)))
        out = {k: summary[k] for k in STEP_FIGURES["program"] if k in summary}
        out["yield"] = summary.get("in_band_fraction")
        out["unresponsive_fraction"] = summary.get("unresponsive_cells", 0) / cells
        return _numbers(out)
    return _numbers(summary)


def _map(s: dict[str, Any]) -> dict[str, float]:
    cells = max(1, int(s.get("cells", 0)))
    faults = s.get("faults") or {}
    d2d = s.get("d2d") or {}
    noise = s.get("read_noise") or {}

    def median(key: str):
        return (d2d.get(key) or {}).get("median")

    out = {
        "cells": s.get("cells"), "yield": s.get("yield"),
        "faulty_fraction": None if s.get("yield") is None else 1.0 - s["yield"],
        "stuck_fraction": (faults.get("stuck_low", 0) + faults.get("stuck_high", 0)) / cells,
        **{k: faults.get(k) for k in ("stuck_low", "stuck_high", "unformed", "narrow",
                                       "unresponsive")},
        "g_min_median_siemens": median("g_min"), "g_max_median_siemens": median("g_max"),
        "g_max_d2d_log_std": (d2d.get("g_max") or {}).get("log_std"),
        "g_max_c2c_median_siemens": median("g_max_c2c"),
        "read_noise_a_siemens": noise.get("a_s"), "read_noise_b": noise.get("b"),
        "read_noise_c": noise.get("c"),
        "set_threshold_median_v": median("set_threshold"),
        "reset_threshold_median_v": median("reset_threshold"),
        "pulses_per_cell": s.get("pulses_per_cell"), "cycles": s.get("cycles"),
        "bench_time_s": s.get("bench_time_s"),
    }
    return _numbers(out)


def _numbers(d: dict[str, Any]) -> dict[str, float]:
    """Keep plain finite numbers (bools and counts included as numbers)."""
    out = {}
    for key, value in d.items():
        if isinstance(value, bool):
            out[key] = float(value)
        elif isinstance(value, (int, float)) and math.isfinite(value):
            out[key] = value
    return out
