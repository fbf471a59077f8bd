"""Plots of a ``variability`` run: per-cell maps, histograms and the read-noise law."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from protocols.variability import ReadNoiseLaw

US = 1e-6
FAULT_NAMES = ("healthy", "stuck-low", "stuck-high", "unformed", "narrow", "unresponsive")


def variability_lines(run: dict) -> list[str]:
    """The text summary of one variability run (indented, for the report's summary)."""
    s = run.get("summary", {})
    f = s.get("faults", {})
    lo, hi = (s.get("usable_window_s") or [None, None])[:2]
    noise = s.get("read_noise", {})

    def us(v):
        return "n/a" if v is None else f"{v / US:.3g}"

    return [f"    cells {s.get('cells')}, yield {s.get('yield', 0):.2%}, faults "
            + ", ".join(f"{k} {v}" for k, v in f.items()),
            f"    usable window {us(lo)} - {us(hi)} uS, read noise "
            f"{ReadNoiseLaw.from_summary(noise).describe()}, {s.get('cycles')} cycles, "
            "pulses per cell "
            f"{s.get('pulses_per_cell', 0):.1f}, transactions {s.get('transactions')}, "
            f"bench {s.get('bench_time_s', 0):.2f} s, wall {s.get('wall_time_s', 0):.2f} s"]


def plot_variability(run: dict, title: str, png: str | Path) -> str:
    """One figure: heat maps of g_min, g_max, thresholds and fault classes; histograms
    of the windows and rates; the read-noise law with its fitted curve. Returns ``png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import BoundaryNorm, ListedColormap

    fault = np.asarray(run["fault"])
    healthy = fault == 0
    fig, axes = plt.subplots(3, 3, figsize=(16, 13))
    maps = (("g_min", "g_min (uS)", US), ("g_max", "g_max (uS)", US),
            ("set_threshold", "SET threshold (V)", 1.0),
            ("reset_threshold", "RESET threshold (V)", 1.0))
    for ax, (name, label, scale) in zip(axes.flat[:4], maps, strict=True):
        values = np.asarray(run[name], np.float64) / scale
        good = values[healthy & np.isfinite(values)]
        lims = np.percentile(good, [1, 99]) if good.size else (None, None)
        im = ax.imshow(values, cmap=plt.get_cmap("viridis").with_extremes(bad="white"),
                       interpolation="nearest", vmin=lims[0], vmax=lims[1])
        fig.colorbar(im, ax=ax, label=label + ", colour range: healthy 1-99 %", extend="both")
        ax.set(title=label + " (white: not measured)", xlabel="bit line", ylabel="word line")
    ax = axes.flat[4]
    cmap = ListedColormap(["#2ca02c", "#1f77b4", "#d62728", "#7f7f7f", "#ff7f0e", "#9467bd"])
    im = ax.imshow(fault, cmap=cmap, norm=BoundaryNorm(np.arange(-0.5, 6.5), 6),
                   interpolation="nearest")
    bar = fig.colorbar(im, ax=ax, ticks=range(6))
    bar.ax.set_yticklabels(FAULT_NAMES)
    counts = [int(np.count_nonzero(fault == k)) for k in range(6)]
    ax.set(title="fault class (" + ", ".join(f"{n} {c}" for n, c in zip(FAULT_NAMES, counts,
                                                                            strict=True)
                                             if c) + ")",
           xlabel="bit line", ylabel="word line")
    ax.title.set_fontsize(8)
    ax = axes.flat[5]
    for name, color in (("g_min", "tab:blue"), ("g_max", "tab:red")):
        v = np.asarray(run[name])[healthy] / US
        v = v[np.isfinite(v) & (v > 0)]
        if v.size:
            ax.hist(v, bins=np.geomspace(max(v.min(), 1e-3), v.max() * 1.01, 60),
                    color=color, alpha=0.6, label=name)
    s = run.get("summary", {})
    lo, hi = (s.get("usable_window_s") or [None, None])[:2]
    for x in (lo, hi):
        if x:
            ax.axvline(x / US, color="k", ls="--")
    ax.set(xscale="log", xlabel="conductance (uS), healthy cells", ylabel="cells",
           title="reachable window (dashed: usable window, 99 % of healthy)")
    ax.legend(fontsize=8)
    ax = axes.flat[6]
    for name, color in (("set_rate", "tab:red"), ("reset_rate", "tab:blue")):
        v = np.asarray(run[name])[healthy]
        v = v[np.isfinite(v)]
        if v.size:
            ax.hist(v, bins=60, color=color, alpha=0.6, label=name)
    ax.set(xlabel="share of the distance to the bound per reference pulse (1)",
           ylabel="cells", title="step response at the reference pulse")
    ax.legend(fontsize=8)
    ax = axes.flat[7]
    for name, color in (("g_min_c2c", "tab:blue"), ("g_max_c2c", "tab:red")):
        v = np.asarray(run[name])[healthy] / US
        v = v[np.isfinite(v)]
        if v.size:
            ax.hist(v, bins=60, color=color, alpha=0.6, label=name)
    ax.set(xlabel="cycle-to-cycle spread (uS)", ylabel="cells", title="C2C of the bounds")
    ax.legend(fontsize=8)
    ax = axes.flat[8]
    pts = np.asarray(run.get("read_noise_points", np.empty((0, 3))), np.float64).reshape(-1, 3)
    noise = s.get("read_noise", {})
    if pts.size:
        ax.scatter(pts[:, 0] / US, pts[:, 1] / US, s=np.clip(pts[:, 2] / pts[:, 2].max() * 60,
                                                             4, 60), label="repeat reads")
        g = np.geomspace(pts[:, 0].min(), pts[:, 0].max(), 100)
    else:
        g = np.geomspace(1e-7, 1e-4, 100)
    if noise:
        law = ReadNoiseLaw.from_summary(noise)
        ax.plot(g / US, law.sigma(g) / US, "k-", label=f"fit {law.describe()}")
    ax.set(xscale="log", yscale="log", xlabel="G (uS)", ylabel="sigma of one read (uS)",
           title="read-noise law")
    ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return str(png)
