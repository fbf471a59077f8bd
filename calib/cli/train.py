"""``calib train``: a network trained on a die's crossbar by one of four published methods."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from calib.cli.options import (
    bench_option,
    die_option,
    emit,
    json_option,
    results_option,
    wafer_option,
)
from calib.jobs.train import TrainOptions, train_die
from calib.wiring import open_bench
from protocols.training import METHODS
from protocols.training.params import REPEATS, SGD_MOMENTUM, SGD_ZONE


def _lines(s: dict) -> list[str]:
    out = [f"die {s['die']}: {s['method']} on {s['dataset']}, {s['epochs']} epochs, backward "
           f"{s['backward']}: test accuracy {s['test_accuracy']:.2%} (float "
           f"{s['float_accuracy']:.2%}, after programming {s['transfer_accuracy']:.2%})",
           *([f"final: test accuracy {s['final_test_accuracy']:.2%} +- "
              f"{s['final_test_std']:.2%} over {len(s['final_test_passes'])} passes of the "
              "test split through the chip"] if s.get("final_test_passes") else []),
           "epoch  train    test     loss    pulses  transactions  bench s"]
    for r in s["epochs_record"]:
        out.append(f"{r['epoch']:>5}  {r['train_accuracy']:>6.2%}  {r['test_accuracy']:>6.2%}  "
                   f"{r['loss']:>6.3f}  {r['pulses']:>8}  {r['transactions']:>12}  "
                   f"{r['bench_time_s']:>7.2f}")
    out.append(f"{s['pulses_per_weight']:.1f} pulses per weight (programming "
               f"{s['programming_pulses']} pulses), {s['transactions_per_sample']:.2f} "
               f"transactions and {s['bench_time_per_sample_s'] * 1e3:.2f} ms bench per "
               "training sample")
    out.append(f"stored {s['run']} in {s['file']}")
    return out


def epoch_text(r: dict) -> str:
    return (f"epoch {r['epoch']}: train {r['train_accuracy']:.2%}, test "
            f"{r['test_accuracy']:.2%}, {r['pulses']} pulses")


@contextmanager
def epoch_progress(epochs: int, enabled: bool, stream=None) -> Iterator:
    """Each epoch's accuracy and pulses on stderr as it ends: a bar on a terminal, one
    line per epoch otherwise (a log file, a batch job); None when not ``enabled``."""
    stream = sys.stderr if stream is None else stream
    if not enabled:
        yield None
    elif not stream.isatty():
        yield lambda r: click.echo(epoch_text(r), file=stream)
    else:
        with click.progressbar(length=epochs, label="training", file=stream, show_pos=True,
                               item_show_func=lambda r: r and epoch_text(r)) as bar:
            def show(r: dict) -> None:
                bar.update(max(0, r["epoch"] - bar.pos), r)

            yield show


@click.command("train")
@die_option()
@click.option("--method", type=click.Choice(METHODS), default="mixed", show_default=True,
              help="sgd (Li 2018), mixed (mixed precision, Nandakumar 2020), hybrid (Yao "
                   "2020), chip-in-loop (NeuRRAM 2022).")
@click.option("--dataset", type=click.Path(dir_okay=False), default=None,
              help="An .npz with x_train, y_train, x_test, y_test (default: the bundled "
                   "digits split).")
@click.option("--epochs", type=int, default=10, show_default=True)
@click.option("--lr", type=float, default=0.1, show_default=True, help="Learning rate.")
@click.option("--batch", type=int, default=10, show_default=True,
              help="Training samples per update.")
@click.option("--backward", type=click.Choice(["auto", "chip", "digital"]), default="auto",
              show_default=True, help="Backward product: the controller's transposed MVM "
                                      "(chip) or from read conductances (digital).")
@click.option("--repeats", type=int, default=None,
              help="Conversions of each vector per forward MVM, averaged (default: the "
                   "method's: " + ", ".join(f"{m} {n}" for m, n in REPEATS.items()) + ").")
@click.option("--update", type=click.Choice(["auto", "pair", "set-only"]), default="auto",
              show_default=True, help="In-situ pair updates: RESET one device and SET the "
                                      "other (pair), or SETs only with refresh (set-only; "
                                      "auto: where RESET is abrupt, PCM).")
@click.option("--faulty-pairs", type=click.Choice(["floor", "partner"]), default=None,
              help="A pair with one unresponsive device: the other device gives one sign "
                   "(floor) or both, alone around a mid-window reference (partner; pair "
                   "updates). Default: the method's.")
@click.option("--sgd-zone", type=float, default=SGD_ZONE, show_default=True,
              help="sgd: device changes under this share of the granularity are rounded "
                   "stochastically to it (larger: fewer, larger pulses).")
@click.option("--sgd-every", type=int, default=1, show_default=True,
              help="sgd: sum the steps of this many batches on the host and send the sum "
                   "(the float baseline alike).")
@click.option("--sgd-momentum", type=float, default=SGD_MOMENTUM, show_default=True,
              help="sgd: send the host's dampened velocity of the steps, v = b v + (1-b) "
                   "step (0: each step; the float baseline alike).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Training seed: the first weights, the sample order, the rounding draws.")
@click.option("--resume", is_flag=True,
              help="Continue the die's interrupted training of this method.")
@bench_option
@results_option
@wafer_option
@json_option
def command(die_id, method, dataset, epochs, lr, batch, backward, repeats, update,
            faulty_pairs, sgd_zone, sgd_every, sgd_momentum, seed, resume, bench_file,
            results, wafer, as_json) -> None:
    """Train a network on a die's crossbar and score it on the held-out test split."""
    options = TrainOptions(method=method, dataset=dataset, epochs=epochs, lr=lr, batch=batch,
                           backward=backward, resume=resume, repeats=repeats, update=update,
                           faulty_pairs=faulty_pairs, sgd_zone=sgd_zone,
                           sgd_every=sgd_every, sgd_momentum=sgd_momentum, seed=seed)
    with open_bench(bench_file) as b, epoch_progress(epochs, not as_json) as progress:
        summary = train_die(b, die_id, options, results=results, wafer=wafer,
                            progress=progress)
    emit(summary, as_json, _lines)
