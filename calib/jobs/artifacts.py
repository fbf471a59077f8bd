"""Artifacts with text in them: the die file keeps numbers as datasets and text in JSON meta.

A protocol's ``to_arrays`` may hold strings (a law's name, a method); an artifact's
datasets are numbers, so strings travel in its meta under ``"text"`` and come back
as arrays on load.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def split_text(arrays: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(numbers for the artifact's datasets, text for its meta)."""
    numbers, text = {}, {}
    for k, v in arrays.items():
        a = np.asarray(v)
        if a.dtype.kind in "US":
            text[k] = a.tolist()
        else:
            numbers[k] = a
    return numbers, text


def join_text(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> dict[str, np.ndarray]:
    """The arrays :func:`split_text` split, whole again."""
    return {**arrays, **{k: np.asarray(v) for k, v in meta.get("text", {}).items()}}
