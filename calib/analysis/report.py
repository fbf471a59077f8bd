"""Reports of a die file: PNG plots per programming run and a text summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from calib.store import DieStore, DieStoreError


def write_report(path: str | Path, out_dir: str | Path | None = None) -> dict:
    """Plots (target vs achieved, error histogram, pulse map) per write-verify run.

    Returns {"summary": text file, "plots": [png files], "runs": n}.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not str(path).strip():
        raise DieStoreError("give a die file, not an empty name")
    store = DieStore(path)
    if not store.path.exists():
        raise DieStoreError(f"{path}: no such die file")
    runs = store.runs()
    # read every run first: a die file that cannot be read leaves no report folder behind
    data = {info.run_id: store.read_run(info.run_id) for info in runs
            if info.protocol in ("write_verify", "variability", "infer", "train")
            and info.status == "complete"}
    out = Path(out_dir) if out_dir else store.path.with_name(store.path.stem + "_report")
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"die file {store.path}", f"wafer {store.wafer}, die {store.die_id}",
             f"{len(runs)} run(s)", ""]
    plots: list[str] = []
    for info in runs:
        lines.append(f"{info.run_id}: {info.protocol}, {info.status}, started {info.started}"
                     + (f", ended {info.ended}" if info.ended else " (not complete)"))
        if info.protocol == "variability" and info.status == "complete":
            from calib.analysis.variability_report import plot_variability, variability_lines

            lines.extend(variability_lines(data[info.run_id]))
            plots.append(plot_variability(data[info.run_id], f"{store.path.name} {info.run_id}",
                                          out / f"{store.path.stem}_{info.run_id}.png"))
            continue
        if info.protocol == "infer" and info.status == "complete":
            from calib.analysis.infer_report import infer_lines, plot_infer

            lines.extend(infer_lines(data[info.run_id]))
            plots.append(plot_infer(data[info.run_id], f"{store.path.name} {info.run_id}",
                                    out / f"{store.path.stem}_{info.run_id}.png"))
            continue
        if info.protocol == "train" and info.status == "complete":
            from calib.analysis.train_report import plot_train, train_lines

            lines.extend(train_lines(data[info.run_id]))
            plots.append(plot_train(data[info.run_id], f"{store.path.name} {info.run_id}",
                                    out / f"{store.path.stem}_{info.run_id}.png"))
            continue
        if info.protocol != "write_verify" or info.status != "complete":
            if info.attrs.get("error"):
                lines.append(f"    error: {info.attrs['error']}")
            continue
        run = data[info.run_id]
        s = run.get("summary", {})
        params = run.get("params", {})
        tol = params.get("tolerance", 1e-6)
        lines.append(
            f"    cells {s.get('cells')}, in band {s.get('in_band_fraction', 0):.2%} "
            f"(+-{tol * 1e6:g} uS), unresponsive {s.get('unresponsive_cells')}, unreachable "
            f"{s.get('unreachable_cells')}, pulses mean {s.get('pulses_mean', 0):.2f} "
            f"p99 {s.get('pulses_p99', 0):.0f}, iterations {s.get('iterations')}, "
            f"transactions {s.get('transactions')}, bench {s.get('bench_time_s', 0):.2f} s, "
            f"wall {s.get('wall_time_s', 0):.2f} s")
        target, final = run["target"] * 1e6, run["final"] * 1e6
        sel = np.isfinite(target) & np.isfinite(final)
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
        ax = axes[0]
        ax.scatter(target[sel], final[sel], s=3, alpha=0.5)
        lo, hi = float(np.nanmin(target)), float(np.nanmax(target))
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
        ax.fill_between([lo, hi], [lo - tol * 1e6, hi - tol * 1e6],
                        [lo + tol * 1e6, hi + tol * 1e6], color="green", alpha=0.15,
                        label=f"+-{tol * 1e6:g} uS")
        bad = sel & (run["unresponsive"] | run["unreachable"])
        ax.scatter(target[bad], final[bad], s=8, c="red", label="unresponsive/unreachable")
        ax.set(xlabel="target (uS)", ylabel="achieved: verify estimate (uS)",
               title="target vs achieved")
        ax.legend(loc="upper left", fontsize=8)
        ax = axes[1]
        err = (final - target)[sel]
        ax.hist(np.clip(err, -5 * tol * 1e6, 5 * tol * 1e6), bins=80)
        for x in (-tol * 1e6, tol * 1e6):
            ax.axvline(x, color="green", ls="--")
        ax.set(xlabel="achieved - target (uS, clipped at 5 bands)", ylabel="cells",
               title="error histogram")
        ax = axes[2]
        pulses = np.where(np.isfinite(run["target"]), run["pulses"], np.nan)
        im = ax.imshow(pulses, cmap="viridis", interpolation="nearest")
        fig.colorbar(im, ax=ax, label="pulses")
        ax.set(title="pulses per cell", xlabel="bit line", ylabel="word line")
        fig.suptitle(f"{store.path.name} {info.run_id}")
        fig.tight_layout()
        png = out / f"{store.path.stem}_{info.run_id}.png"
        fig.savefig(png, dpi=100)
        plt.close(fig)
        plots.append(str(png))
    summary = out / f"{store.path.stem}_summary.txt"
    summary.write_text("\n".join(lines) + "\n")
    return {"summary": str(summary), "plots": plots, "runs": len(runs), "text": lines}
