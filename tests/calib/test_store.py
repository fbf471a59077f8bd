"""The die file: layout readable with plain h5py, and nothing lost when a run fails."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from calib.store import DieStore, DieStoreError, die_path

ROOT = Path(__file__).resolve().parents[2]


def test_layout_with_plain_h5py(tmp_path):
    store = DieStore(die_path(tmp_path, "w1", 12), "w1", 12)
    run = store.start_run("write_verify", {"tolerance": 1e-6}, {"array": "AIMC"}, 25.0, "rram")
    store.finish_run(run, {"target": np.ones((4, 4))}, {"cells": 16})
    with h5py.File(tmp_path / "w1" / "die_12.h5", "r") as f:
        assert f.attrs["format"] == "aimc-calib die file" and f.attrs["format_version"] == 1
        assert f.attrs["die"] == 12 and f.attrs["wafer"] == "w1"
        g = f["runs"]["0001_write_verify"]
        assert g.attrs["status"] == "complete" and g.attrs["chip"] == "rram"
        assert g["target"].shape == (4, 4)
        assert '"tolerance"' in g.attrs["params_json"]
        for key in ("started", "ended", "toolkit_version", "instruments_json", "temperature_c"):
            assert key in g.attrs


def test_failed_and_interrupted_runs_keep_earlier_runs(tmp_path):
    store = DieStore(tmp_path / "d.h5", "w", 1)
    good = store.start_run("write_verify", {})
    store.finish_run(good, {"final": np.arange(4.0)})
    bad = store.start_run("write_verify", {})
    store.fail_run(bad, "RuntimeError('bench died')")
    stopped = store.start_run("write_verify", {})
    store.fail_run(stopped, "KeyboardInterrupt()", status="interrupted")
    runs = {r.run_id: r for r in store.runs()}
    assert runs[good].status == "complete"
    assert runs[bad].status == "failed" and "bench died" in runs[bad].attrs["error"]
    assert runs[stopped].status == "interrupted"
    assert np.array_equal(store.read_run(good)["final"], np.arange(4.0))


def test_crash_in_the_middle_of_a_write_leaves_the_file_intact(tmp_path):
    store = DieStore(tmp_path / "d.h5", "w", 1)
    run = store.start_run("write_verify", {})
    store.finish_run(run, {"final": np.arange(4.0)})
    before = (tmp_path / "d.h5").read_bytes()

    def explode(f):
        f["runs"][run].attrs["status"] = "garbage"
        f.create_dataset("junk", data=np.zeros(10))
        raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        store._update(explode)
    assert (tmp_path / "d.h5").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["d.h5"]  # no temp file left


def test_killed_process_leaves_a_readable_file_and_an_unfinished_run(tmp_path):
    results = tmp_path / "res"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        import numpy as np
        from calib.store import DieStore
        s = DieStore({str(results / 'd.h5')!r}, 'w', 1)
        r = s.start_run('write_verify', {{}})
        s.finish_run(r, {{'final': np.arange(3.0)}})
        s.start_run('write_verify', {{}})
        print('started', flush=True)
        big = np.random.default_rng(0).random((512, 512))
        while True:  # keep rewriting: a kill lands mid-write sooner or later
            s.finish_run(r, {{'final': np.arange(3.0), 'scratch': big}}, status='complete')
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "started"
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = DieStore(results / "d.h5")
    runs = store.runs()
    assert runs[0].status == "complete"
    assert np.array_equal(store.read_run(runs[0].run_id)["final"], np.arange(3.0))
    assert runs[1].status == "running"  # visibly not complete


def test_not_a_die_file(tmp_path):
    path = tmp_path / "x.h5"
    path.write_bytes(b"not hdf5 at all")
    with pytest.raises(DieStoreError, match="not a readable HDF5"):
        DieStore(path)
    with h5py.File(tmp_path / "y.h5", "w") as f:
        f.attrs["format"] = "something else"
    with pytest.raises(DieStoreError, match="not an aimc-calib die file"):
        DieStore(tmp_path / "y.h5")
