"""PNG wafer maps: one square per die at its grid position (x right, y down).

Used by ``calib analyze`` for its bin and parametric maps and by the sweep runner
for the bin map at the end of a sweep, so it needs only numpy and matplotlib (no
pandas): rows are plain dicts (a DataFrame is taken too). Drawn on matplotlib's Agg
canvas directly, never through pyplot: no display, no global backend switch,
safe in a worker thread.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from instruments.errors import UserError

__all__ = ["DISCRETE", "WaferMapError", "wafer_map_png"]

#: figures drawn as categories with a legend (anything holding text is, too)
DISCRETE = ("bin", "bin_name", "state")
MISSING = "#d9d9d9"  # a die on the map without a value
PALETTE = ("#2ca02c", "#d62728", "#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#17becf", "#bcbd22", "#7f7f7f", "#98df8a", "#ff9896", "#aec7e8", "#ffbb78",
           "#c5b0d5", "#c49c94", "#f7b6d2", "#9edae5", "#dbdb8d", "#393b79")


class WaferMapError(UserError, ValueError):
    """A wafer map that cannot be drawn from the rows given."""


def _records(rows: Any) -> list[Mapping]:
    if hasattr(rows, "to_dict"):  # a pandas DataFrame
        rows = rows.to_dict("records")
    if not isinstance(rows, Iterable):
        raise WaferMapError("wafer map: give rows (dicts with x, y and the figure)")
    out = list(rows)
    if not all(isinstance(r, Mapping) for r in out):
        raise WaferMapError("wafer map: every row must be a dict with x, y and the figure")
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def wafer_map_png(path: str | Path, rows: Any, figure: str = "bin",
                  title: str | None = None, *, label: str | None = None,
                  scale: float = 1.0) -> Path:
    """Draw ``figure`` of every die in ``rows`` (dicts or a DataFrame with "x", "y" and
    ``figure``) as a wafer map PNG at ``path``; returns the path.

    Bins (and any figure of text) get one colour per value and a legend with the
    count of each ("bin 1 good (180)" when rows also hold ``bin_name``); numbers get
    a colour bar (values divided by ``scale``, bar titled ``label``). A die with
    no value is grey; rows without a position are left out and counted in the title.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    records = _records(rows)
    placed = [(int(round(_number(r.get("x")))), int(round(_number(r.get("y")))), r)
              for r in records if _number(r.get("x")) is not None
              and _number(r.get("y")) is not None]
    if not placed:
        raise WaferMapError(f"wafer map of {figure!r}: no die has an x, y position (the "
                            "wafer index gives them)")
    x0, y0 = min(p[0] for p in placed), min(p[1] for p in placed)
    width = max(p[0] for p in placed) - x0 + 1
    height = max(p[1] for p in placed) - y0 + 1
    values = [r.get(figure) for _, _, r in placed]
    discrete = figure in DISCRETE or any(isinstance(v, str) for v in values)

    fig = Figure(figsize=(min(12.0, 4.5 + width * 0.12 + (3.0 if discrete else 1.5)),
                          min(11.0, 3.0 + height * 0.12)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    grid = np.full((height, width), np.nan)
    if discrete:
        names = _category_names(figure, placed)
        order = sorted({v for v in names.values()} - {None}, key=lambda c: c[0])
        code = {c: i for i, c in enumerate(order)}
        colours = [PALETTE[i % len(PALETTE)] for i in range(len(order))] + [MISSING]
        counts = [0] * (len(order) + 1)
        for x, y, r in placed:
            k = code.get(names[id(r)], len(order))
            grid[y - y0, x - x0] = k
            counts[k] += 1
        ax.imshow(np.ma.masked_invalid(grid), cmap=ListedColormap(colours),
                  norm=BoundaryNorm(np.arange(-0.5, len(colours) + 0.5), len(colours)),
                  interpolation="nearest")
        handles = [Patch(color=colours[i], label=f"{c[1]} ({counts[i]})")
                   for i, c in enumerate(order)]
        if counts[-1]:
            handles.append(Patch(color=MISSING, label=f"no {figure} ({counts[-1]})"))
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                  fontsize=8, frameon=False, title=figure)
    else:
        present = np.full((height, width), np.nan)
        for x, y, r in placed:
            present[y - y0, x - x0] = 0.0
            v = _number(r.get(figure))
            if v is not None:
                grid[y - y0, x - x0] = v / scale
        ax.imshow(np.ma.masked_invalid(present), cmap=ListedColormap([MISSING]),
                  interpolation="nearest")
        if np.isfinite(grid).any():
            im = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", interpolation="nearest")
            fig.colorbar(im, ax=ax, label=label or figure, shrink=0.85)
    unplaced = len(records) - len(placed)
    ax.set_title((title or figure) + f"\n{len(placed)} dies"
                 + (f" ({unplaced} without a position, not drawn)" if unplaced else ""),
                 fontsize=10)
    ax.set(xlabel="x (die column)", ylabel="y (die row)")
    ax.set_xticks(_ticks(width))
    ax.set_xticklabels([str(t + x0) for t in _ticks(width)])
    ax.set_yticks(_ticks(height))
    ax.set_yticklabels([str(t + y0) for t in _ticks(height)])
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out


def _ticks(n: int) -> list[int]:
    step = max(1, int(math.ceil(n / 10)))
    return list(range(0, n, step))


def _category_names(figure: str, placed: list) -> dict[int, tuple | None]:
    """Per row (by id): (sort key, legend text), None for no value."""
    out: dict[int, tuple | None] = {}
    for _, _, r in placed:
        value = r.get(figure)
        if _missing(value):
            out[id(r)] = None
            continue
        number = _number(value)
        if number is not None and not isinstance(value, str):
            text = f"{int(number)}" if number.is_integer() else f"{number:g}"
            name = r.get("bin_name") if figure == "bin" else None
            out[id(r)] = ((0, number, ""), f"{text} {name}" if isinstance(name, str) else text)
        else:
            out[id(r)] = ((1, 0.0, str(value)), str(value))
    return out
