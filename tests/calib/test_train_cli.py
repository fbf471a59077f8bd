"""`calib train` as a user runs it, kept tiny (a 30-sample blob set, 2 epochs): the run
and its per-epoch series, checkpoints, resume after a bench lost mid-epoch, and every
bad input as one line with nothing written."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from calib.cli import main
from calib.store import DieStore
from instruments.errors import InstrumentIOError
from protocols.training import InSitu
from protocols.training.result import FINAL_PASSES


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def blobs(path, n=40, features=8, classes=3, seed=0, **override):
    rng = np.random.default_rng(seed)
    centres = rng.random((classes, features))
    y = rng.integers(0, classes, n)
    x = np.clip(centres[y] + 0.08 * rng.standard_normal((n, features)), 0, 1)
    parts = {"x_train": x[:30], "y_train": y[:30], "x_test": x[30:], "y_test": y[30:]}
    parts.update(override)
    np.savez(path, **parts)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    data = blobs(tmp / "blobs.npz")
    out = run("train", "--die", 12, "--method", "mixed", "--dataset", data, "--epochs", 2,
              "--lr", 0.5, "--batch", 5, "--results", tmp / "results", "--json")
    assert out.exit_code == 0, out.output
    return tmp, data, json.loads(out.output)


def test_train_records_epochs_checkpoints_and_a_baseline(trained):
    tmp, _, s = trained
    assert s["method"] == "mixed" and s["epochs"] == 2 and s["backward"] == "chip"
    assert [r["epoch"] for r in s["epochs_record"]] == [0, 1, 2]
    assert 0 <= s["test_accuracy"] <= 1 and len(s["float_test_accuracy"]) == 2
    assert s["pulses"] == sum(r["pulses"] for r in s["epochs_record"])
    assert s["transactions_per_sample"] > 0
    # the finished network's score: the mean of several passes of the test split
    assert len(s["final_test_passes"]) == FINAL_PASSES
    assert s["final_test_accuracy"] == pytest.approx(np.mean(s["final_test_passes"]))
    store = DieStore(s["file"])
    runs = {r.run_id: r for r in store.runs()}
    assert runs[s["run"]].status == "complete"
    data = store.read_run(s["run"])
    assert list(data["checkpoints"]["epoch"]) == [1, 2]
    assert data["conductance"].shape == (64, 64) and data["weights"].size == 8 * 20 + 20 * 3
    arrays, meta = store.load_artifact("checkpoint", s["run"])
    assert int(arrays["epoch"]) == 2 and meta["method"] == "mixed"
    store.load_artifact("response_model", s["run"])  # kept for the die's next jobs


def test_bench_lost_mid_epoch_is_interrupted_and_resumes(trained, monkeypatch):
    tmp, data, _ = trained
    results = tmp / "lost"
    calls = {"n": 0}
    original = InSitu.step

    def flaky(self, x, y, rng=None, **kwargs):
        calls["n"] += 1
        if calls["n"] == 9:  # in the second epoch (6 batches of 5 per epoch)
            raise InstrumentIOError("array: no answer to ':MVM? ' within 2 s")
        return original(self, x, y, rng, **kwargs)

    monkeypatch.setattr(InSitu, "step", flaky)
    out = run("train", "--die", 12, "--method", "sgd", "--dataset", data, "--epochs", 3,
              "--lr", 0.5, "--batch", 5, "--results", results, "--json")
    assert out.exit_code != 0
    assert "interrupted" in out.output and "--resume" in out.output
    assert len(out.output.strip().splitlines()) == 1
    store = DieStore(next(results.rglob("die_12.h5")))
    lost = [r for r in store.runs() if r.protocol == "train"][-1]
    assert lost.status == "interrupted"
    arrays, _ = store.load_artifact("checkpoint", lost.run_id)
    assert int(arrays["epoch"]) == 1
    monkeypatch.setattr(InSitu, "step", original)
    # an option that would train another way than the interrupted run is refused
    out = run("train", "--die", 12, "--method", "sgd", "--dataset", data, "--lr", 0.3,
              "--results", results, "--json", "--resume")
    assert out.exit_code != 0 and len(out.output.strip().splitlines()) == 1
    assert "--lr 0.3" in out.output and "0.5" in out.output
    assert [r.run_id for r in store.runs()][-1] == lost.run_id  # nothing written
    # a plain --resume continues with the run's own options (lr 0.5, batch 5, 3 epochs)
    out = run("train", "--die", 12, "--method", "sgd", "--dataset", data,
              "--results", results, "--json", "--resume")
    assert out.exit_code == 0, out.output
    s = json.loads(out.output)
    assert [r["epoch"] for r in s["epochs_record"]] == [0, 1, 2, 3]
    resumed = store.read_run(s["run"])
    assert resumed["params"]["resumed_from"] == lost.run_id
    assert resumed["params"]["lr"] == 0.5 and resumed["params"]["batch"] == 5
    # the resumed run's series is the whole training: the checkpoint's epoch, then its own
    assert list(resumed["checkpoints"]["epoch"]) == [1, 2, 3]


def test_resume_with_nothing_to_resume_is_one_line(tmp_path):
    data = blobs(tmp_path / "b.npz")
    out = run("train", "--die", 3, "--method", "mixed", "--dataset", data, "--resume",
              "--results", tmp_path / "r")
    assert out.exit_code != 0 and "no interrupted mixed training" in out.output
    assert not list((tmp_path / "r").rglob("*.h5"))


@pytest.mark.parametrize("override, args, match", [
    ({"x_test": np.zeros((10, 5))}, (), "differ|features"),
    ({"y_train": -np.ones(30, int)}, (), "labels"),
    ({"x_train": np.full((30, 8), np.nan)}, (), "NaN"),
    ({"x_test": np.zeros((0, 8)), "y_test": np.zeros(0, int)}, (), "empty"),
    ({}, ("--lr", "0"), "^Error: --lr: "),
    ({}, ("--batch", "0"), "batch"),
    ({}, ("--repeats", "0"), "repeats"),
    ({}, ("--sgd-zone", "0"), "--sgd-zone: "),
    ({}, ("--sgd-every", "0"), "--sgd-every: "),
    ({"x_train": np.zeros((30, 200)), "x_test": np.zeros((10, 200))}, (), "rows|fit"),
])
def test_bad_inputs_are_one_line_and_write_nothing(tmp_path, override, args, match):
    data = blobs(tmp_path / "bad.npz", **override)
    out = run("train", "--die", 12, "--dataset", data, "--results", tmp_path / "r", *args)
    assert out.exit_code != 0
    assert len(out.output.strip().splitlines()) == 1, out.output
    assert re.search(match, out.output), out.output
    assert not list((tmp_path / "r").rglob("*.h5"))


def test_a_die_with_no_formed_cells_stops_with_one_line(tmp_path):
    from calib.jobs.train import TrainInputError, TrainOptions, train_die
    from calib.wiring import open_bench

    data = blobs(tmp_path / "b.npz")
    with open_bench() as bench, pytest.raises(TrainInputError, match="did not respond"):
        train_die(bench, 12, TrainOptions(method="mixed", dataset=str(data), form=False,
                                          epochs=1), results=tmp_path / "r")
    store = DieStore(next((tmp_path / "r").rglob("die_12.h5")))
    assert [r.status for r in store.runs() if r.protocol == "train"] == ["failed"]


def test_checkpoint_rows_hold_each_epochs_record(trained):
    _, _, s = trained
    rows = DieStore(s["file"]).read_run(s["run"])["checkpoints"]
    for row, r in zip(rows, s["epochs_record"][1:], strict=True):
        assert row["epoch"] == r["epoch"] and row["step"] == 6 * r["epoch"]  # 6 batches
        for field, key in [("train_accuracy", "train_accuracy"), ("accuracy", "test_accuracy"),
                           ("loss", "loss"), ("pulses", "pulses"),
                           ("transactions", "transactions"), ("bench_time_s", "bench_time_s")]:
            assert row[field] == pytest.approx(r[key]), field
    assert all(rows["transactions"] > 0) and all(0 <= rows["train_accuracy"])


def test_report_plots_accuracy_and_pulses_against_the_float_baseline(trained):
    import matplotlib.image

    tmp, _, s = trained
    out = run("report", s["file"], "--out", tmp / "report", "--json")
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    png = tmp / "report" / f"die_12_{s['run']}.png"
    assert str(png) in report["plots"] and png.stat().st_size > 20_000
    pixels = matplotlib.image.imread(png)
    assert pixels.shape[1] > 1000 and pixels[..., :3].std() > 0.05  # drawn, not blank
    text = (tmp / "report" / "die_12_summary.txt").read_text()
    assert f"against float baseline {s['float_accuracy']:.2%}" in text
    assert f"{s['pulses']} pulses" in text
    for r in s["epochs_record"]:
        assert f"epoch {r['epoch']}: train {r['train_accuracy']:.2%}, test " in text
    assert (f"final: test {s['final_test_accuracy']:.2%} +- {s['final_test_std']:.2%} over "
            f"{FINAL_PASSES} passes") in text


def test_progress_is_a_line_per_epoch_off_a_terminal(tmp_path):
    data = blobs(tmp_path / "b.npz")
    out = CliRunner().invoke(main, [str(a) for a in (
        "train", "--die", 12, "--method", "mixed", "--dataset", data, "--epochs", 2, "--lr",
        0.5, "--batch", 5, "--results", tmp_path / "r")])
    assert out.exit_code == 0, out.output
    lines = out.stderr.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["epoch 0", "epoch 1", "epoch 2"]
    assert all(re.search(r"train \d+\.\d\d%, test \d+\.\d\d%, \d+ pulses$", line)
               for line in lines), lines


def test_progress_is_a_bar_on_a_terminal():
    import io

    from calib.cli.train import epoch_progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    record = {"epoch": 0, "train_accuracy": 0.1, "test_accuracy": 0.125, "pulses": 0}
    term = Terminal()
    with epoch_progress(3, True, term) as show:
        for epoch, pulses in enumerate([0, 340, 120, 60]):
            show({**record, "epoch": epoch, "test_accuracy": 0.5 + epoch / 10,
                  "pulses": pulses})
    text = term.getvalue()
    assert "training" in text and "3/3" in text and "\r" in text  # redrawn in place
    assert "epoch 3: train 10.00%, test 80.00%, 60 pulses" in text
    with epoch_progress(3, False, term) as show:  # --json: nothing
        assert show is None


def test_repeats_and_set_only_updates_reach_the_run(tmp_path):
    data = blobs(tmp_path / "blobs.npz")
    out = run("train", "--die", 12, "--method", "mixed", "--dataset", data, "--epochs", 1,
              "--lr", 0.5, "--batch", 5, "--repeats", 2, "--update", "set-only",
              "--seed", 3, "--results", tmp_path / "r", "--json")
    assert out.exit_code == 0, out.output
    s = json.loads(out.output)
    store = DieStore(s["file"])
    params = store.read_run(s["run"])["params"]
    assert params["repeats"] == 2 and params["update"] == "set-only" and params["seed"] == 3
    _, meta = store.load_artifact("checkpoint", s["run"])
    assert meta["update"] == "set-only" and meta["repeats"] == 2


def test_sgd_options_and_faulty_pairs_reach_the_run(tmp_path):
    data = blobs(tmp_path / "blobs.npz")
    out = run("train", "--die", 12, "--method", "sgd", "--dataset", data, "--epochs", 1,
              "--lr", 0.5, "--batch", 5, "--sgd-zone", 1.0, "--sgd-every", 2,
              "--faulty-pairs", "partner", "--results", tmp_path / "r", "--json")
    assert out.exit_code == 0, out.output
    s = json.loads(out.output)
    store = DieStore(s["file"])
    params = store.read_run(s["run"])["params"]
    assert params["sgd_zone"] == 1.0 and params["sgd_every"] == 2
    assert params["faulty_pairs"] == "partner"
    _, meta = store.load_artifact("checkpoint", s["run"])
    assert meta["lone"] is True  # rram: pair updates, so the partner mode applies
