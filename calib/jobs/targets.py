"""Targets for a programming job: a weight layer, a conductance map, or a test pattern.

Exactly one source per job; with none, the bundled example layer. Every check
(file, shape, window, finiteness) happens here, before any instrument is used.
Weights are placed naively (top-left, pairs interleaved) unless
``placement="fault-aware"`` and a die's :class:`VariabilityMap` are given
(:mod:`protocols.placement`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from instruments.datasheet import data_root
from instruments.errors import UserError
from protocols.placement import Placement, place_weights
from protocols.variability.result import VariabilityMap
from protocols.weights import WeightMapping, map_weights, place

PATTERNS = ("checkerboard", "random", "gradient")
PLACEMENTS = ("naive", "fault-aware")
NPY_MAGIC = b"\x93NUMPY"


class ProgramInputError(UserError, ValueError):
    """The targets asked for cannot be programmed (file, shape, window)."""


@dataclass(frozen=True)
class Targets:
    values: np.ndarray  # siemens, array shape, NaN = leave alone
    source: str
    mapping: WeightMapping | None = None
    placement: Placement | None = None  # fault-aware placement (None: naive, top-left)
    map_run: str | None = None  # the variability run the placement came from


def example_weights_path() -> Path:
    return data_root() / "examples" / "layer.npy"


def _load_npy(path: str | Path, what: str) -> np.ndarray:
    """A 2-D array of real numbers from a .npy file; ``what`` names it ("--target file")."""
    if not str(path).strip():
        raise ProgramInputError(f"{what.split()[0]}: give a .npy file, got an empty name")
    why = None
    try:
        with open(path, "rb") as fh:
            magic = fh.read(len(NPY_MAGIC))
        if magic != NPY_MAGIC:
            why = "empty file" if not magic else "no .npy header; save it with numpy.save"
        else:
            data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ProgramInputError(f"{what} {path}: not found") from None
    except IsADirectoryError:
        raise ProgramInputError(f"{what} {path}: is a folder, not a .npy file") from None
    except (OSError, ValueError, EOFError) as exc:
        why = getattr(exc, "strerror", None) or str(exc) or "empty file"
    if why is not None:
        raise ProgramInputError(f"{what} {path}: not a readable .npy array ({why})")
    if not isinstance(data, np.ndarray) or data.ndim != 2:
        raise ProgramInputError(f"{what} {path}: expected a 2-D array, got shape "
                                f"{getattr(data, 'shape', '?')}")
    if data.size == 0:
        raise ProgramInputError(f"{what} {path}: holds no values (shape {data.shape})")
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise ProgramInputError(f"{what} {path}: expected real numbers, got {data.dtype}")
    return data.astype(np.float64)


def make_targets(shape: tuple[int, int], g_min: float, g_max: float, *,
                 weights: str | Path | None = None, target: str | Path | None = None,
                 pattern: str | None = None, seed: int = 0, placement: str = "naive",
                 vmap: VariabilityMap | None = None) -> Targets:
    """Targets from exactly one source; the bundled example layer if none is given.

    ``placement="fault-aware"`` places weights with the die's map ``vmap``
    (``protocols.placement.place_weights``, targets within [g_min, g_max]).
    """
    given = [x is not None for x in (weights, target, pattern)]
    if sum(given) > 1:
        raise ProgramInputError("give only one of --weights, --target, --pattern")
    if placement not in PLACEMENTS:
        raise ProgramInputError(f"--placement {placement!r}: choose {' or '.join(PLACEMENTS)}")
    if placement == "fault-aware" and (target is not None or pattern is not None):
        raise ProgramInputError("--placement fault-aware places weights; give --weights (or "
                                "none, for the example layer), not --target or --pattern")
    rows, cols = shape
    span = g_max - g_min
    if pattern is not None:
        if pattern not in PATTERNS:
            raise ProgramInputError(f"--pattern {pattern!r}: unknown; choose "
                                    f"{', '.join(PATTERNS)}")
        if pattern == "checkerboard":
            lo, hi = g_min + 0.2 * span, g_min + 0.8 * span
            values = np.where((np.add.outer(np.arange(rows), np.arange(cols)) % 2) == 0, lo, hi)
        elif pattern == "random":
            values = np.random.default_rng(seed).uniform(g_min, g_max, shape)
        else:
            values = np.broadcast_to(np.linspace(g_min, g_max, cols), shape).copy()
        return Targets(values, f"pattern:{pattern}")
    if target is not None:
        what = f"--target file {target}"
        values = _load_npy(target, "--target file")
        _check_fits(values.shape, shape, what)
        if np.any(np.isinf(values)):
            raise ProgramInputError(f"{what}: holds infinity; use NaN for cells to skip")
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            raise ProgramInputError(f"{what}: every value is NaN, no cell to program")
        if finite.min() < g_min - 1e-12 or finite.max() > g_max + 1e-12:
            raise ProgramInputError(
                f"{what}: targets span {finite.min() * 1e6:.3g} to {finite.max() * 1e6:.3g} uS, "
                f"outside the chip window {g_min * 1e6:g}-{g_max * 1e6:g} uS (targets are in "
                "siemens)")
        return Targets(place(values, shape), f"target:{target}")
    what = "--weights file" if weights is not None else "example weights file"
    path = weights if weights is not None else example_weights_path()
    w = _load_npy(path, what)
    if w.shape[0] > rows or 2 * w.shape[1] > cols:
        raise ProgramInputError(
            f"{what} {path}: weights {w.shape[0]} x {w.shape[1]} need {w.shape[0]} x "
            f"{2 * w.shape[1]} cells (differential pairs); the array is {rows} x {cols}")
    if not np.all(np.isfinite(w)):
        raise ProgramInputError(f"{what} {path}: holds NaN or infinity")
    source = f"weights:{path}" if weights is not None else "example:layer.npy"
    if placement == "fault-aware":
        return _place_fault_aware(w, shape, g_min, g_max, vmap, f"{what} {path}", source)
    with np.errstate(over="ignore", invalid="ignore"):
        block, mapping = map_weights(w, g_min, g_max)
    if not (np.all(np.isfinite(block)) and block.min() >= g_min - 1e-12
            and block.max() <= g_max + 1e-12):
        raise ProgramInputError(f"{what} {path}: weights cannot be scaled onto the window "
                                f"(largest magnitude {np.abs(w).max():g}): too small for "
                                "floating point")
    return Targets(place(block, shape), source, mapping)


def _place_fault_aware(w: np.ndarray, shape, g_min: float, g_max: float,
                       vmap: VariabilityMap | None, what: str, source: str) -> Targets:
    """Weights placed around the faults the die's map found, within the chip window."""
    if vmap is None:
        raise ProgramInputError("--placement fault-aware needs the die's variability map: "
                                "run `calib map` first")
    if tuple(vmap.shape) != tuple(shape):
        raise ProgramInputError(f"the variability map is {vmap.shape[0]} x {vmap.shape[1]} "
                                f"cells, the chip {shape[0]} x {shape[1]}: map this die "
                                "again with `calib map`")
    with np.errstate(over="ignore", invalid="ignore"):
        values, placed = place_weights(w, vmap, window=(g_min, g_max))
    used = np.isfinite(values)
    if not (np.isfinite(placed.scale) and placed.scale > 0 and used.any()):
        raise ProgramInputError(f"{what}: weights cannot be scaled onto the window "
                                f"(largest magnitude {np.abs(w).max():g})")
    mapping = WeightMapping(g_min=placed.g_min, g_max=placed.g_max, w_clip=placed.w_clip,
                            scale=placed.scale, shape=placed.shape, clipped=placed.clipped)
    return Targets(values, source, mapping, placed, vmap.extra.get("run"))


def _check_fits(got, shape, what) -> None:
    if got[0] > shape[0] or got[1] > shape[1]:
        raise ProgramInputError(f"{what}: shape {got[0]} x {got[1]} does not fit the array "
                                f"{shape[0]} x {shape[1]}")
