"""A long programming run keeps its per-cell state in the die file as it goes."""

from __future__ import annotations

import numpy as np

from calib import open_bench
from calib.jobs import ProgramOptions, make_targets, program_die
from calib.jobs import program as program_module
from calib.store import DieStore


def test_a_killed_run_leaves_its_latest_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(program_module, "CHECKPOINT_BENCH_S", 0.05)

    class Killed(Exception):
        pass

    calls = {"n": 0}

    def progress(p):  # the bench "dies" in the middle of programming
        calls["n"] += 1
        if calls["n"] == 12:
            raise Killed("power cut")

    with open_bench() as bench:
        w = bench.datasheet.window
        targets = make_targets(bench.datasheet.shape, w.g_min, w.g_max, pattern="random")
        try:
            program_die(bench, 12, targets, ProgramOptions(), results=tmp_path,
                        progress=progress)
        except Killed:
            pass
    store = DieStore(next(tmp_path.rglob("die_12.h5")))
    run = store.runs()[-1]
    assert run.protocol == "write_verify" and run.status == "failed"
    arrays, meta = store.load_artifact("checkpoint", run_id=run.run_id)
    assert meta["iteration"] >= 5
    assert arrays["pulses"].shape == (64, 64) and arrays["pulses"].sum() > 0
    done = arrays["status"] == 1
    assert 0 < done.mean() < 1  # mid-run: some cells converged, some not yet
    assert np.all(np.abs(arrays["estimate"][done] - arrays["target"][done]) <= 1e-6)
