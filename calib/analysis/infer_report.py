"""The report of an ``infer`` run: test accuracy against the age since programming, one
line per drift-compensation method, against the float network's accuracy."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def infer_lines(run: dict) -> list[str]:
    s = run.get("summary", {})
    out = [f"    {s.get('model')} on {s.get('samples')} samples; float "
           f"{s.get('float_accuracy', float('nan')):.2%}"]
    for age, row in (s.get("accuracy") or {}).items():
        out.append(f"    at {age}: " + ", ".join(f"{m} {v:.2%}" for m, v in row.items()))
    return out


def plot_infer(run: dict, title: str, path: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ages = np.asarray(run["ages_s"], np.float64)
    acc = np.atleast_2d(np.asarray(run["accuracy"], np.float64))
    methods = (run.get("params") or {}).get("compensation") or [
        f"method {j}" for j in range(acc.shape[1])]
    s = run.get("summary", {})
    x = np.maximum(ages, 1.0)  # age 0 drawn at 1 s on the log axis
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for j, m in enumerate(methods):
        ax.plot(x, acc[:, j] * 100, "o-", label=m)
    if "float_accuracy" in s:
        ax.axhline(s["float_accuracy"] * 100, color="k", ls="--", lw=0.8, label="float")
    ax.set(xscale="log", xlabel="age since programming (s; 0 drawn at 1 s)",
           ylabel="test accuracy (%)", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
