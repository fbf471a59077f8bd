"""Which dies a sweep visits and in what order: the recipe's selection over the prober's
wafer map, on a serpentine route (as probe stations step) or in the recipe's order."""

from __future__ import annotations

import math
from dataclasses import dataclass

from calib.sweep.recipe import DieSelection, RecipeError


@dataclass(frozen=True)
class DieSite:
    """A die of the prober's map: its id (what ``Prober.goto`` takes) and grid position
    (column x, row y; None when the prober cannot tell)."""

    id: int
    x: int | None
    y: int | None


def normalised_radii(sites: list[DieSite]) -> dict[int, float]:
    """Distance of each die from the centre of the die grid, divided by the largest one.

    The grid centre stands in for the wafer centre (the prober's map does not say where
    the wafer's centre is); on a symmetric map the two agree to a fraction of a die.
    """
    placed = [s for s in sites if s.x is not None and s.y is not None]
    if not placed:
        return {}
    cx = (min(s.x for s in placed) + max(s.x for s in placed)) / 2
    cy = (min(s.y for s in placed) + max(s.y for s in placed)) / 2
    dist = {s.id: math.hypot(s.x - cx, s.y - cy) for s in placed}
    far = max(dist.values()) or 1.0
    return {k: v / far for k, v in dist.items()}


def plan_route(sites: list[DieSite], selection: DieSelection, route: str) -> list[DieSite]:
    """The dies to visit, in order. Raises RecipeError naming a die not on the map."""
    by_id = {s.id: s for s in sites}
    if selection.mode in ("list", "range"):
        missing = [i for i in selection.ids if i not in by_id]
        if missing:
            lo, hi = (min(by_id), max(by_id)) if by_id else (0, -1)
            raise RecipeError(f"dies.select: die {missing[0]} is not on the prober's wafer "
                              f"map (ids {lo}..{hi}, {len(by_id)} dies)")
        chosen = [by_id[i] for i in dict.fromkeys(selection.ids)]
    elif selection.mode == "inner":
        radii = normalised_radii(sites)
        if not radii:
            raise RecipeError("dies.select = \"inner\" needs die positions; this prober "
                              "gives none: select a list or a range")
        chosen = [s for s in sites if radii.get(s.id, 2.0) <= selection.inner_radius]
    else:
        chosen = list(sites)
    for i in selection.exclude:
        if i not in by_id:
            raise RecipeError(f"dies.exclude: die {i} is not on the prober's wafer map")
    excluded = set(selection.exclude)
    chosen = [s for s in chosen if s.id not in excluded]
    if route == "serpentine":
        chosen = serpentine(chosen)
    elif selection.mode not in ("list",):
        chosen = sorted(chosen, key=lambda s: s.id)
    chosen = chosen[::selection.every]
    if not chosen:
        raise RecipeError("dies: the selection leaves no die to visit")
    return chosen


def serpentine(sites: list[DieSite]) -> list[DieSite]:
    """Row by row (top to bottom), every other row backwards: the shortest stepping path
    on a grid. Dies without a position keep their order, after the placed ones."""
    placed = [s for s in sites if s.x is not None and s.y is not None]
    rest = [s for s in sites if s.x is None or s.y is None]
    out: list[DieSite] = []
    for k, row in enumerate(sorted({s.y for s in placed})):
        line = sorted((s for s in placed if s.y == row), key=lambda s: s.x, reverse=k % 2 == 1)
        out.extend(line)
    return out + rest
