"""The report of a ``train`` run: test and train accuracy per epoch against the float
baseline of the same budget (and the ex-situ network a transfer method starts from),
and the device pulses each epoch sent — what the chip paid for what it learned."""

from __future__ import annotations

from pathlib import Path

import numpy as np

TRANSFERS = ("hybrid", "chip-in-loop")  # compared with the ex-situ network they transfer


def _epochs(run: dict) -> list[dict]:
    """The per-epoch records: the summary's (epoch 0 included), else the series'."""
    records = (run.get("summary") or {}).get("epochs_record")
    if records:
        return records
    rows = run.get("checkpoints")
    if rows is None:
        return []
    return [{"epoch": int(r["epoch"]), "train_accuracy": float(r["train_accuracy"]),
             "test_accuracy": float(r["accuracy"]), "loss": float(r["loss"]),
             "pulses": int(r["pulses"]), "transactions": int(r["transactions"]),
             "bench_time_s": float(r["bench_time_s"])} for r in np.atleast_1d(rows)]


def train_lines(run: dict) -> list[str]:
    s = run.get("summary") or {}
    nan = float("nan")
    reference = ("float ex-situ network" if s.get("method") in TRANSFERS
                 else "float baseline")
    out = [f"    {s.get('method')} on {s.get('dataset')}, {s.get('epochs')} epochs, backward "
           f"{s.get('backward')}: test {s.get('test_accuracy', nan):.2%} against "
           f"{reference} {s.get('float_accuracy', nan):.2%} (gap "
           f"{s.get('gap_to_float', nan) * 100:+.1f} pt), after programming "
           f"{s.get('transfer_accuracy', nan):.2%}"
           + (f", float baseline {s['float_test_accuracy'][-1]:.2%}"
              if s.get("method") in TRANSFERS and s.get("float_test_accuracy") else ""),
           *([f"    final: test {s['final_test_accuracy']:.2%} +- {s['final_test_std']:.2%} "
              f"over {len(s['final_test_passes'])} passes of the test split through the chip"]
             if s.get("final_test_passes") else []),
           f"    {s.get('pulses')} pulses ({s.get('pulses_per_weight', nan):.1f} per weight), "
           f"{s.get('transactions_per_sample', nan):.2f} transactions and "
           f"{s.get('bench_time_per_sample_s', nan) * 1e3:.2f} ms bench per training sample"]
    for r in _epochs(run):
        out.append(f"    epoch {r['epoch']}: train {r['train_accuracy']:.2%}, test "
                   f"{r['test_accuracy']:.2%}, {r['pulses']} pulses, "
                   f"{r['transactions']} transactions")
    return out


def plot_train(run: dict, title: str, path: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    s = run.get("summary") or {}
    records = _epochs(run)
    epoch = np.array([r["epoch"] for r in records])
    fig, (acc, pulses) = plt.subplots(1, 2, figsize=(12, 4.5))
    acc.plot(epoch, [r["test_accuracy"] * 100 for r in records], "o-", label="chip, test")
    acc.plot(epoch, [r["train_accuracy"] * 100 for r in records], "s--", ms=4,
             label="chip, train")
    if s.get("final_test_passes") and epoch.size:  # the finished network, K passes
        acc.errorbar([epoch[-1] + 0.15], [s["final_test_accuracy"] * 100],
                     yerr=[s["final_test_std"] * 100], fmt="D", color="tab:green", ms=5,
                     capsize=3, label=f"chip, test: {len(s['final_test_passes'])} final passes")
    baseline = np.asarray(s.get("float_test_accuracy") or [], np.float64)
    if baseline.size:  # the float network of the same budget, after each epoch
        acc.plot(np.arange(1, baseline.size + 1), baseline * 100, "k:", marker=".",
                 label="float baseline")
    if s.get("method") in TRANSFERS and "float_accuracy" in s:
        acc.axhline(s["float_accuracy"] * 100, color="k", ls="--", lw=0.8,
                    label="float ex situ (transferred)")
    acc.set(xlabel="epoch (0: after programming)", ylabel="accuracy (%)",
            title="accuracy per epoch")
    acc.legend(fontsize=8)
    pulses.bar(epoch, [max(r["pulses"], 0) for r in records], color="tab:orange")
    pulses.set(xlabel="epoch", ylabel="device pulses", title="pulses per epoch")
    for ax in (acc, pulses):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"{title}: {s.get('method', 'train')}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
