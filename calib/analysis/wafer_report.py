"""Statistics and the report folder of a wafer table: yields per bin, parametric figures,
wafer maps, radial profiles and a wafer-to-wafer comparison (docs/analysis.md).

Statistics are in SI units (siemens, fractions) like the summaries they come from;
only plots and printed lines convert (uS, %).
"""

from __future__ import annotations

import json
import math
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from calib.analysis.wafermap import wafer_map_png

RINGS = 5  # radial profile: rings of equal width in normalised radius, 0..1


@dataclass(frozen=True)
class Figure:
    """A main figure of the report: a table column and how to show it."""

    column: str
    label: str
    unit: str  # the unit shown ("": a plain number)

    def axis(self, prefix: str = "") -> str:
        """An axis label: the figure and its unit."""
        text = f"{prefix}{self.label}"
        return f"{text} ({self.unit})" if self.unit else text
    scale: float  # SI value / scale = the value shown
    name: str  # file-name stem of its map


MAIN_FIGURES: tuple[Figure, ...] = (
    Figure("variability.d2d.g_max.median", "g_max median", "uS", 1e-6, "g_max_median"),
    Figure("variability.stuck_fraction", "stuck fraction", "%", 0.01, "stuck_fraction"),
    Figure("variability.yield", "healthy cells", "%", 0.01, "healthy_cells"),
    Figure("variability.read_noise.b", "read noise b (sigma = a + b G^c)", "", 1.0,
           "read_noise_b"),
    Figure("variability.read_noise.a_s", "read noise floor a", "nS", 1e-9, "read_noise_a"),
    Figure("write_verify.in_band_fraction", "in band after write-verify", "%", 0.01,
           "in_band"),
    Figure("write_verify.pulses_mean", "pulses per cell (mean)", "", 1.0,
           "pulses_per_cell"),
)


def _num(value: Any) -> float | None:
    """A JSON-ready number: None for NaN."""
    value = float(value)
    return value if math.isfinite(value) else None


def figures_of(frame: Any) -> list[Figure]:
    """The main figures the table holds values of."""
    return [f for f in MAIN_FIGURES
            if f.column in frame and np.isfinite(frame[f.column].to_numpy(float)).any()]


def _bin_key(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def wafer_stats(frame: Any, wafers: list[str] | None = None) -> list[dict]:
    """Per wafer (``wafers``, default: every wafer of the table): dies, files, errors,
    yield per bin, median and IQR of the main figures, and their radial profile
    (median per ring of normalised radius)."""
    out = []
    figures = figures_of(frame)
    for wafer in sorted(set(frame["wafer"])) if wafers is None else wafers:
        rows = frame[frame["wafer"] == wafer]
        s: dict[str, Any] = {"wafer": wafer, "dies": int(len(rows)),
                             "files": int(rows["file"].notna().sum()),
                             "errors": int(rows["error"].notna().sum())}
        bins = rows["bin"].to_numpy(float)
        binned = np.isfinite(bins)
        s["bins"] = []
        for value in sorted(set(bins[binned].tolist())):
            sel = rows[bins == value]
            names = sorted({n for n in sel["bin_name"] if isinstance(n, str)})
            count = int(len(sel))
            s["bins"].append({"bin": _bin_key(value), "name": "/".join(names) or None,
                              "dies": count, "share": count / int(binned.sum())})
        s["no_bin"] = int((~binned).sum())
        s["figures"] = {}
        s["radial"] = {}
        radius = rows["radius"].to_numpy(float)
        edges = np.linspace(0.0, 1.0, RINGS + 1)
        ring = np.clip(np.searchsorted(edges, radius, side="right") - 1, 0, RINGS - 1)
        for f in figures:
            v = rows[f.column].to_numpy(float)
            ok = np.isfinite(v)
            if ok.any():
                q25, med, q75 = np.percentile(v[ok], [25, 50, 75])
                s["figures"][f.column] = {"n": int(ok.sum()), "median": _num(med),
                                          "q25": _num(q25), "q75": _num(q75),
                                          "iqr": _num(q75 - q25)}
            else:
                s["figures"][f.column] = {"n": 0, "median": None, "q25": None, "q75": None,
                                          "iqr": None}
            placed = ok & np.isfinite(radius)
            if placed.any():
                s["radial"][f.column] = [
                    {"r_lo": float(edges[i]), "r_hi": float(edges[i + 1]),
                     "n": int((placed & (ring == i)).sum()),
                     "median": _num(np.median(v[placed & (ring == i)]))
                     if (placed & (ring == i)).any() else None}
                    for i in range(RINGS)]
        out.append(s)
    return out


def _canvas(width: float, height: float, rows: int = 1, cols: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(width, height))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes.flat


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return str(path)


def _grid(n: int) -> tuple[int, int]:
    cols = min(n, 3)
    return math.ceil(n / cols), cols


def _yield_png(stats: dict, path: Path) -> str:
    fig, axes = _canvas(7, 4.5)
    ax = next(axes)
    labels = [f"{b['bin']} {b['name'] or ''}".strip() for b in stats["bins"]]
    counts = [b["dies"] for b in stats["bins"]]
    bars = ax.bar(range(len(counts)), counts, color="tab:blue")
    for bar, b in zip(bars, stats["bins"], strict=True):
        ax.annotate(f"{b['share']:.1%}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(counts)))
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    extra = f"; {stats['no_bin']} dies without a bin" if stats["no_bin"] else ""
    ax.set(ylabel="dies", title=f"{stats['wafer']}: yield per bin (share of binned dies{extra})")
    return _save(fig, path)


def _radial_png(frame_stats: list[dict], figures: list[Figure], path: Path) -> str | None:
    shown = [f for f in figures if any(f.column in s["radial"] for s in frame_stats)]
    if not shown:
        return None
    rows, cols = _grid(len(shown))
    fig, axes = _canvas(4.6 * cols, 3.6 * rows, rows, cols)
    axes = list(axes)
    for ax, f in zip(axes, shown, strict=False):
        for s in frame_stats:
            prof = s["radial"].get(f.column)
            if not prof:
                continue
            r = [(p["r_lo"] + p["r_hi"]) / 2 for p in prof if p["median"] is not None]
            m = [p["median"] / f.scale for p in prof if p["median"] is not None]
            ax.plot(r, m, "o-", label=s["wafer"])
        ax.set(xlim=(0, 1), xlabel="normalised radius (grid units, 1 = farthest die)",
               ylabel=f.axis("median "), title=f"{f.label} per ring")
        ax.title.set_fontsize(9)
        ax.xaxis.label.set_fontsize(8)
        if len(frame_stats) > 1:
            ax.legend(fontsize=7)
    for ax in axes[len(shown):]:
        ax.set_visible(False)
    return _save(fig, path)


def _comparison_png(frame: Any, stats: list[dict], figures: list[Figure], path: Path) -> str:
    n = len(figures) + 1
    rows, cols = _grid(n)
    fig, axes = _canvas(4.8 * cols, 3.8 * rows, rows, cols)
    axes = list(axes)
    wafers = [s["wafer"] for s in stats]
    for ax, f in zip(axes, figures, strict=False):
        data = []
        for w in wafers:
            v = frame.loc[frame["wafer"] == w, f.column].to_numpy(float) / f.scale
            data.append(v[np.isfinite(v)])
        ax.boxplot(data, showfliers=False)
        ax.set_xticks(range(1, len(wafers) + 1))
        ax.set_xticklabels(wafers, rotation=30, ha="right", fontsize=8)
        ax.set(ylabel=f.axis(), title=f"{f.label} per wafer")
        ax.title.set_fontsize(9)
    ax = axes[len(figures)]
    names = sorted({b["bin"] for s in stats for b in s["bins"]}, key=float)
    bottom = np.zeros(len(wafers))
    for name in names:
        share = np.array([next((b["share"] for b in s["bins"] if b["bin"] == name), 0.0)
                          for s in stats])
        ax.bar(range(len(wafers)), share * 100, bottom=bottom, label=f"bin {name}")
        bottom += share * 100
    ax.set_xticks(range(len(wafers)))
    ax.set_xticklabels(wafers, rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="share of binned dies (%)", title="yield per bin")
    if names:
        ax.legend(fontsize=7)
    for ax in axes[n:]:
        ax.set_visible(False)
    return _save(fig, path)


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_report(frame: Any, out_dir: str | Path, stats: list[dict] | None = None) -> dict:
    """The report folder: per wafer ``<out>/<wafer>/`` a bin map, yield per bin, a map
    and the radial profile of each main figure; with several wafers
    ``comparison.png`` and ``radial_comparison.png``; the whole table as
    ``table.parquet`` and ``table.csv`` and the statistics as ``summary.json``.

    Returns {"folder", "plots": [png files], "files": [other files], "notes": [...]}.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stats = wafer_stats(frame) if stats is None else stats
    figures = figures_of(frame)
    plots: list[str] = []
    notes: list[str] = []
    for s in stats:
        rows = frame[frame["wafer"] == s["wafer"]]
        folder = out / s["wafer"]
        folder.mkdir(exist_ok=True)
        placed = bool((np.isfinite(rows["x"].to_numpy(float))
                       & np.isfinite(rows["y"].to_numpy(float))).any())
        records = rows[["x", "y", "bin", "bin_name", *(f.column for f in figures)]] \
            .to_dict("records") if placed else []
        if not placed:
            notes.append(f"{s['wafer']}: no die has a position (x, y come from the wafer "
                         "index): no maps, no radial profile")
        if placed and s["bins"]:
            plots.append(str(wafer_map_png(folder / "bin_map.png", records, "bin",
                                           f"{s['wafer']}: bin map")))
        if s["bins"]:
            plots.append(_yield_png(s, folder / "yield.png"))
        for f in figures:
            if placed and s["figures"][f.column]["n"]:
                plots.append(str(wafer_map_png(folder / f"map_{f.name}.png", records, f.column,
                                               f"{s['wafer']}: {f.label}", scale=f.scale,
                                               label=f.axis())))
        if placed:
            png = _radial_png([s], figures, folder / "radial.png")
            if png:
                plots.append(png)
    if len(stats) > 1:
        plots.append(_comparison_png(frame, stats, figures, out / "comparison.png"))
        png = _radial_png(stats, figures, out / "radial_comparison.png")
        if png:
            plots.append(png)
    files = [str(out / "table.parquet"), str(out / "table.csv"), str(out / "summary.json")]
    _write_atomic(Path(files[0]), lambda p: frame.to_parquet(p, index=False))
    _write_atomic(Path(files[1]), lambda p: frame.to_csv(p, index=False))
    _write_atomic(Path(files[2]), lambda p: p.write_text(json.dumps(
        {"wafers": stats, "figures": [asdict(f) for f in figures]}, indent=1) + "\n"))
    return {"folder": str(out), "plots": plots, "files": files, "notes": notes}
