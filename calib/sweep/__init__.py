"""Wafer sweeps (``calib sweep``): recipes, the route, the wafer index, bins, the runner.

``calib.sweep.run(bench, recipe, progress=...)`` is the Python form of the command;
docs/sweep.md documents recipes, the index and what happens to a die that goes wrong.
"""

from __future__ import annotations

from pathlib import Path


def bundled_recipes() -> dict[str, Path]:
    """The example recipes shipped in ``data/recipes/``, by name."""
    from instruments.datasheet import data_root

    folder = data_root() / "recipes"
    return {p.stem: p for p in sorted(folder.glob("*.toml"))}


from calib.sweep.recipe import Recipe, RecipeError, load_recipe, parse_recipe  # noqa: E402
from calib.sweep.runner import (  # noqa: E402
    SweepError,
    SweepProgress,
    SweepResult,
    SweepStopped,
    run,
)

__all__ = ["Recipe", "RecipeError", "SweepError", "SweepProgress", "SweepResult",
           "SweepStopped", "bundled_recipes", "load_recipe", "parse_recipe", "run"]
