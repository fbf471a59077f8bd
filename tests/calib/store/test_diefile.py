"""The die file: layout readable with plain h5py, nothing lost when a run fails, the new API."""

from __future__ import annotations

import json
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

from calib.store import (
    FORMAT_VERSION,
    DieStore,
    DieStoreError,
    die_path,
    load_fallback,
    schema,
)
from tests.calib.store.helpers import HISTORY, make_v1

ROOT = Path(__file__).resolve().parents[3]


def test_layout_with_plain_h5py(tmp_path):
    store = DieStore(die_path(tmp_path, "w1", 12), "w1", 12)
    run = store.start_run("write_verify", {"tolerance": 1e-6}, {"array": "AIMC"}, 25.0, "rram",
                          configuration={"array": {"averages": 4}},
                          datasheet={"chip": {"name": "rram", "rows": 4}})
    store.finish_run(run, {"target": np.ones((4, 4))}, {"cells": 16})
    with h5py.File(tmp_path / "w1" / "die_12.h5", "r") as f:
        assert f.attrs["format"] == "aimc-calib die file" and f.attrs["format_version"] == 2
        assert f.attrs["die"] == 12 and f.attrs["wafer"] == "w1"
        assert f.attrs["last_run_number"] == 1
        g = f["runs"]["0001_write_verify"]
        assert g.attrs["status"] == "complete" and g.attrs["chip"] == "rram"
        assert g["target"].shape == (4, 4)
        assert '"tolerance"' in g.attrs["params_json"]
        assert json.loads(g.attrs["configuration_json"]) == {"array": {"averages": 4}}
        assert json.loads(g.attrs["datasheet_json"])["chip"]["rows"] == 4
        assert g.attrs["host"] and g.attrs["pid"] == os.getpid()
        for key in ("started", "ended", "toolkit_version", "instruments_json", "temperature_c"):
            assert key in g.attrs
    assert FORMAT_VERSION == 2


def test_the_calls_of_the_program_job(tmp_path):
    """calib/programming.py's calls, as it makes them."""
    store = DieStore(die_path(tmp_path, "w", 3), "w", 3)
    form = store.start_run("form", {"voltage": 3.0}, {"array": "AIMC"}, None, "rram")
    store.finish_run(form, {"formed_mask": np.ones((4, 4), bool)}, {"cells_formed": 16})
    run = store.start_run("write_verify", {"tolerance": 1e-6}, {"array": "AIMC"}, 25.0, "rram",
                          die=3)
    history = np.array([(1, b"coarse", 16, 16, 0, 3, 0.5)], dtype=HISTORY)
    arrays = {"target": np.ones((4, 4)), "final": np.ones((4, 4)),
              "pulses": np.zeros((4, 4), np.int32), "converged": np.ones((4, 4), bool),
              "unresponsive": np.zeros((4, 4), bool), "unreachable": np.zeros((4, 4), bool),
              "exhausted": np.zeros((4, 4), bool), "history": history,
              "weights_target": np.zeros((4, 2)), "weights_achieved": np.zeros((4, 2))}
    store.finish_run(run, arrays, {"die": 3, "run": run}, bench_time_s=1.5, wall_time_s=0.1)
    stored = store.read_run(run)
    assert stored["status"] == "complete" and stored["die"] == 3
    assert stored["bench_time_s"] == 1.5 and stored["summary"]["run"] == run
    assert stored["history"]["phase"][0] == b"coarse"
    store.fail_run(store.start_run("write_verify", {}), "KeyboardInterrupt()", "interrupted")
    assert [r.status for r in store.runs()] == ["complete", "complete", "interrupted"]


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
    assert sorted(p.name for p in tmp_path.iterdir()) == [".d.h5.lock", "d.h5"]  # no temp file


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
            s.finish_run(r, {{'final': np.arange(3.0), 'target': big}}, status='complete')
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "started"
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = DieStore(results / "d.h5", lock_timeout_s=2.0)
    runs = store.runs()
    assert runs[0].status == "complete"
    assert np.array_equal(store.read_run(runs[0].run_id)["final"], np.arange(3.0))
    assert runs[1].status == "running"  # visibly not complete
    store.fail_run(runs[1].run_id, "killed")  # the lock died with its holder
    assert not list(results.glob("*.tmp")), "the next change removes a dead writer's copy"


def test_not_a_die_file(tmp_path):
    path = tmp_path / "x.h5"
    path.write_bytes(b"not hdf5 at all")
    with pytest.raises(DieStoreError, match="not a readable HDF5"):
        DieStore(path)
    with h5py.File(tmp_path / "y.h5", "w") as f:
        f.attrs["format"] = "something else"
    with pytest.raises(DieStoreError, match="not an aimc-calib die file"):
        DieStore(tmp_path / "y.h5")


def test_newer_format_is_refused(tmp_path):
    path = make_v1(tmp_path / "d.h5", mutate=lambda f: f.attrs.__setitem__("format_version", 9))
    with pytest.raises(DieStoreError, match="format version 9 is newer.*upgrade aimc-calib"):
        DieStore(path)


def test_version_1_files_open_read_and_upgrade(tmp_path):
    path = make_v1(tmp_path / "die_1.h5")
    store = DieStore(path, "w", 1)
    assert [r.run_id for r in store.runs()] == ["0001_write_verify", "0002_write_verify"]
    old = store.read_run("0002_write_verify")
    assert old["params"] == {"tolerance": 1e-6} and old["final"][0, 0] == 2.0
    assert old["artifacts"] == []
    run = store.start_run("write_verify", {})
    assert run == "0003_write_verify"
    with h5py.File(path, "r") as f:  # upgraded at its first change
        assert f.attrs["format_version"] == 2 and f.attrs["last_run_number"] == 3
    assert np.array_equal(store.read_run("0001_write_verify")["final"], np.ones((4, 4)))
    # a version-1 history is written whole; appending makes it a time series
    assert store.append("0001_write_verify", "history", np.ones(2, HISTORY)) == 5


def test_append_time_series(tmp_path):
    store = DieStore(tmp_path / "d.h5", "w", 1)
    run = store.start_run("train", {"epochs": 3})
    dtype = [("epoch", "i4"), ("step", "i4"), ("loss", "f8"), ("train_accuracy", "f8"),
             ("accuracy", "f8"), ("pulses", "i8"), ("transactions", "i8"),
             ("bench_time_s", "f8"), ("wall_time_s", "f8")]
    for epoch in range(3):
        rows = np.array([(epoch, step, 1.0 / (1 + step), 0.6, 0.5, 10, 3, 0.1, 0.2)
                         for step in range(4)], dtype=dtype)
        assert store.append(run, "checkpoints", rows) == 4 * (epoch + 1)
    assert store.append(run, "checkpoints", [(9, 9, 0.0, 1.0, 1.0, 0, 0, 0.0, 0.0)]) == 13
    store.finish_run(run, {"weights": np.zeros((2, 2))}, {"epochs": 3})
    data = store.read_run(run)
    assert data["checkpoints"].shape == (13,) and list(data["checkpoints"]["epoch"][-2:]) == [2, 9]
    assert data["status"] == "complete"
    with h5py.File(store.path, "r") as f:
        assert f["runs"][run]["checkpoints"].maxshape == (None,)
    with pytest.raises(DieStoreError, match="not appendable"):
        store.append(run, "weights", np.zeros((1, 2)))
    with pytest.raises(DieStoreError, match="declares no dataset 'nonsense'"):
        store.append(run, "nonsense", np.zeros(3))
    with pytest.raises(DieStoreError, match="field 'loss'"):
        bad = np.zeros(1, [(n, "S4" if n == "loss" else t) for n, t in dtype])
        store.append(run, "checkpoints", bad)


def test_append_grows_the_file_by_what_it_adds(tmp_path):
    store = DieStore(tmp_path / "d.h5", "w", 1)
    run = store.start_run("write_verify", {})
    rows = np.zeros(10, HISTORY)
    rows["bench_time_s"] = np.random.default_rng(0).random(10)
    for _ in range(10):
        store.append(run, "history", rows)
    size = store.path.stat().st_size
    for _ in range(100):
        store.append(run, "history", rows)
    assert store.read_run(run)["history"].shape == (1100,)
    # 1000 rows of 38 bytes, in 16 kB chunks: no copy of the whole series per append
    assert store.path.stat().st_size - size < 80_000


def test_artifacts(tmp_path):
    store = DieStore(tmp_path / "d.h5", "w", 1)
    with pytest.raises(DieStoreError, match="no such die file"):
        store.load_artifact("response")
    first = store.start_run("write_verify", {})
    store.save_artifact(first, "response", {"gain": np.ones((4, 4)), "order": 2}, {"kind": "a"})
    store.finish_run(first, {})
    failed = store.start_run("write_verify", {})
    store.save_artifact(failed, "response", {"gain": np.zeros((4, 4))}, {"kind": "failed"})
    store.fail_run(failed, "RuntimeError()")
    arrays, meta = store.load_artifact("response")
    assert meta == {"kind": "a"} and arrays["order"] == 2  # newest from a *complete* run
    assert np.array_equal(arrays["gain"], np.ones((4, 4)))
    assert store.load_artifact("response", failed)[1] == {"kind": "failed"}
    second = store.start_run("write_verify", {})
    store.save_artifact(second, "response", {"gain": np.full((4, 4), 2.0)}, {"kind": "b"})
    store.save_artifact(second, "read_noise", {"sigma": 1e-7}, {"model": "white"})
    store.save_artifact(second, "response", {"gain": np.full((4, 4), 3.0)}, {"kind": "c"})
    assert store.load_artifact("response")[1] == {"kind": "a"}  # second is still running
    store.finish_run(second, {"final": np.ones(3)})
    assert store.load_artifact("response")[1] == {"kind": "c"}  # saved again: replaced
    assert store.load_artifact("response", protocol="write_verify")[1] == {"kind": "c"}
    assert store.read_run(second)["artifacts"] == ["read_noise", "response"]
    with pytest.raises(DieStoreError, match="no complete run holds an artifact 'model'"):
        store.load_artifact("model")
    with pytest.raises(DieStoreError, match="no complete run of job 'train'"):
        store.load_artifact("response", protocol="train")
    with pytest.raises(DieStoreError, match="has no artifact 'model'"):
        store.load_artifact("model", first)
    for name in ("../x", "a/b", "", ".hidden"):
        with pytest.raises(DieStoreError, match="artifact name"):
            store.save_artifact(second, name, {})
    with pytest.raises(DieStoreError, match="store numbers"):
        store.save_artifact(second, "bad", {"x": np.array(["text"])})
    with pytest.raises(DieStoreError, match="JSON"):
        store.save_artifact(second, "bad", {}, {"x": object()})


def test_undeclared_jobs_and_datasets_are_refused(tmp_path):
    store = DieStore(tmp_path / "d.h5", "w", 1)
    with pytest.raises(DieStoreError, match="unknown job 'dance'"):
        store.start_run("dance", {})
    assert not store.path.exists()
    run = store.start_run("form", {})
    with pytest.raises(DieStoreError, match="declares no dataset 'scratch'") as err:
        store.finish_run(run, {"scratch": np.zeros(3)})
    assert "results kept in" in str(err.value)  # nothing of a job is lost, even then
    with pytest.raises(DieStoreError, match="kept by the store"):
        store.start_run("form", {}, status="complete")


def test_reseal_accepts_an_intended_edit(tmp_path):
    store = DieStore(tmp_path / "d.h5", "w", 1)
    run = store.start_run("form", {})
    with h5py.File(store.path, "a") as f:
        f["runs"][run].attrs["operator"] = "ada"
    with pytest.raises(DieStoreError, match="changed outside aimc-calib.*reseal"):
        store.runs()
    store.reseal()
    assert store.runs()[0].attrs["operator"] == "ada"
    store.finish_run(run, {"formed_mask": np.ones(2, bool)})
    assert store.runs()[0].status == "complete"


def test_run_ids_keep_the_numbered_form(tmp_path):
    store = DieStore(tmp_path / "d.h5", "w", 1)
    ids = [store.start_run(p, {}) for p in ("form", "write_verify", "map", "write_verify")]
    assert ids == ["0001_form", "0002_write_verify", "0003_map", "0004_write_verify"]
    for bad in (".", "..", "runs", "0001_form/x", "9999_form", 1):
        with pytest.raises(DieStoreError, match="no run"):
            store.read_run(bad)
        with pytest.raises(DieStoreError, match="no run"):
            store.fail_run(bad, "x")


def test_ctrl_c_while_finishing_keeps_the_results(tmp_path, monkeypatch):
    store = DieStore(tmp_path / "die_4.h5", "w", 4)
    run = store.start_run("form", {})

    def interrupted(job, arrays):
        raise KeyboardInterrupt

    monkeypatch.setattr(schema, "check_arrays", interrupted)
    with pytest.raises(KeyboardInterrupt) as err:
        store.finish_run(run, {"formed_mask": np.ones(3, bool)}, {"cells": 3})
    kept = tmp_path / "die_4.h5.run-0001.fallback.npz"
    assert any(f"results kept in {kept}" in note for note in err.value.__notes__)
    arrays, summary, record = load_fallback(kept)
    assert arrays["formed_mask"].all() and summary == {"cells": 3}
    assert record["run"] == run and record["die"] == 4 and record["wafer"] == "w"
    assert store.runs()[0].status == "running"  # the caller marks it interrupted
