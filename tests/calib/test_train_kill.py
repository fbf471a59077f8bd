"""``calib train`` killed by SIGKILL right after its first checkpoint (no handler runs,
the run stays ``running``), then ``--resume``: the training ends with every epoch
recorded once, from the last checkpoint, and the die file reads whole."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from calib.store import DieStore, DieStoreError

ROOT = Path(__file__).resolve().parents[2]
EPOCHS = 4


def _train(results: Path, data: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "calib.cli", "train", "--die", "12",
                             "--method", "mixed", "--dataset", str(data), "--epochs",
                             str(EPOCHS), "--lr", "0.5", "--batch", "5", "--results",
                             str(results), "--json", *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)


def _blobs(path: Path) -> Path:
    """300 training samples: 60 batches, an epoch of about a second on the simulated bench
    (the kill lands between two checkpoints, not after the last)."""
    rng = np.random.default_rng(1)
    centres = rng.random((3, 8))
    y = rng.integers(0, 3, 340)
    x = np.clip(centres[y] + 0.08 * rng.standard_normal((340, 8)), 0, 1)
    np.savez(path, x_train=x[:300], y_train=y[:300], x_test=x[300:], y_test=y[300:])
    return path


def _first_checkpoint(results: Path, proc: subprocess.Popen, timeout_s: float = 20.0):
    """(die file, run id) once the running train run has a checkpoints row."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and proc.poll() is None:
        for path in results.rglob("die_12.h5"):
            try:
                store = DieStore(path)
                for r in store.runs():
                    if r.protocol == "train" and "checkpoints" in store.read_run(r.run_id):
                        return path, r.run_id
            except DieStoreError:  # not there yet
                pass
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint within {timeout_s} s: {proc.poll()}")


def test_kill_9_after_a_checkpoint_then_resume(tmp_path):
    data, results = _blobs(tmp_path / "blobs.npz"), tmp_path / "results"
    proc = _train(results, data)
    try:
        path, killed = _first_checkpoint(results, proc)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    store = DieStore(path)
    before = store.read_run(killed)
    assert before["status"] == "running"  # no handler ran: visibly not complete
    done = [int(e) for e in before["checkpoints"]["epoch"]]
    assert done and done == list(range(1, len(done) + 1)) and len(done) < EPOCHS
    arrays, _ = store.load_artifact("checkpoint", killed)
    assert int(arrays["epoch"]) >= done[-1]  # saved before its row

    resumed = _train(results, data, "--resume")
    out, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, err
    s = json.loads(out)
    assert [r["epoch"] for r in s["epochs_record"]] == list(range(EPOCHS + 1))
    run = store.read_run(s["run"])
    assert run["status"] == "complete" and run["params"]["resumed_from"] == killed
    assert [int(e) for e in run["checkpoints"]["epoch"]] == list(range(1, EPOCHS + 1))
    # the epochs the killed run finished are the resumed run's first rows, unchanged
    ours = run["checkpoints"][:len(done)]
    assert np.array_equal(ours["pulses"], before["checkpoints"]["pulses"])
    assert np.array_equal(ours["accuracy"], before["checkpoints"]["accuracy"])
    assert run["weights"].size == 8 * 20 + 20 * 3
    for r in store.runs():  # the whole file reads
        store.read_run(r.run_id)
