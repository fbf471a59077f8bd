"""The reliability review's findings, one test (or more) each.

1 concurrent writers, 2 disk full, 3 stale temporary copies, 4 file mode,
5 another die's file, 6 damaged files, 7 results paths that cannot work,
8 Ctrl-C mid-update; and die_path refusing names that leave the results folder.
"""

from __future__ import annotations

import errno
import fcntl
import json
import multiprocessing
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from calib.store import DieFileBusy, DieStore, DieStoreError, die_path
from tests.calib.store.helpers import make_v1

ROOT = Path(__file__).resolve().parents[3]
LINUX = sys.platform.startswith("linux")


def _temp_copies(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".tmp", ".part")))


def _kept_in(message: str) -> Path:
    assert "results kept in " in message, message
    return Path(message.split("results kept in ", 1)[1].split(";", 1)[0].strip())


@pytest.fixture
def system_temp(tmp_path, monkeypatch):
    """The system temporary folder, for fallback files, inside the test's own folder."""
    folder = tmp_path / "system-temp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _mount_tmpfs(folder: Path, options: str) -> None:
    if not LINUX or shutil.which("mount") is None:
        pytest.skip("needs Linux mount(8) for a small tmpfs")
    folder.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({out.stderr.strip() or 'not permitted'}); "
                    "the monkeypatched tests cover the same paths")


def _unmount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


# -- 1: two processes on one die file ------------------------------------------------------

def _writer(path: str, worker: int, runs: int, barrier, out) -> None:
    try:
        store = DieStore(path, "w", 1)
        barrier.wait(10)
        ids = []
        for k in range(runs):
            run = store.start_run("form", {"worker": worker, "k": k})
            store.finish_run(run, {"formed_mask": np.zeros(4, bool)}, {"worker": worker})
            ids.append(run)
        out.put((worker, ids, None))
    except BaseException as exc:  # report, so the test says what went wrong
        out.put((worker, [], repr(exc)))


@pytest.mark.parametrize("processes", [2, 4])
def test_concurrent_writers_lose_no_run_and_repeat_no_id(tmp_path, processes):
    ctx = multiprocessing.get_context("fork")
    runs_each = 3
    for trial in range(20):
        path = tmp_path / f"trial{trial}" / "die_1.h5"
        barrier, out = ctx.Barrier(processes), ctx.Queue()
        procs = [ctx.Process(target=_writer, args=(str(path), i, runs_each, barrier, out))
                 for i in range(processes)]
        for p in procs:
            p.start()
        reports = [out.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(10)
        errors = [r[2] for r in reports if r[2]]
        assert not errors, f"trial {trial}: {errors}"
        returned = sorted(run for r in reports for run in r[1])
        stored = DieStore(path).runs()
        ids = [r.run_id for r in stored]
        assert len(ids) == len(set(ids)) == processes * runs_each, f"trial {trial}: {ids}"
        assert sorted(ids) == returned, f"trial {trial}: a run was lost"
        assert all(r.status == "complete" for r in stored)
        made = {tuple(json.loads(r.attrs["params_json"]).values()) for r in stored}
        assert made == {(i, k) for i in range(processes) for k in range(runs_each)}


def test_run_ids_never_repeat_even_if_runs_go_missing(tmp_path):
    store = DieStore(tmp_path / "d.h5", "w", 1)
    store.start_run("form", {})
    second = store.start_run("form", {})
    store._update(lambda f: f["runs"].__delitem__(second))  # e.g. restored from an older copy
    assert store.start_run("form", {}) == "0003_form"


def test_busy_die_file_waits_then_names_the_holder(tmp_path, system_temp):
    path = tmp_path / "die_1.h5"
    store = DieStore(path, "w", 1)
    run = store.start_run("form", {})
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, os, time
        fd = os.open({str(tmp_path / '.die_1.h5.lock')!r}, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0); os.write(fd, str(os.getpid()).encode())
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        waiting = DieStore(path, "w", 1, lock_timeout_s=0.3)
        t0 = time.monotonic()
        with pytest.raises(DieFileBusy, match=rf"die file {path} busy \(held by pid "
                                              rf"{holder.pid}\)"):
            waiting.start_run("form", {})
        assert 0.25 < time.monotonic() - t0 < 5
        with pytest.raises(DieFileBusy) as err:  # the results of a job are kept all the same
            waiting.finish_run(run, {"formed_mask": np.ones(3, bool)}, {"cells": 3})
        kept = _kept_in(str(err.value))
        assert kept.parent == tmp_path and np.load(kept)["formed_mask"].all()
    finally:
        holder.kill()
        holder.wait()
    DieStore(path, "w", 1, lock_timeout_s=2).fail_run(run, "lock holder gone")  # freed


# -- 2: disk full (and other refusals of the disk) ----------------------------------------

def _failing_fsync(code: int, die_name: str):
    real = os.fsync

    def fsync(fd):
        target = os.readlink(f"/proc/self/fd/{fd}")
        if f".{die_name}." in target and target.endswith(".tmp"):
            raise OSError(code, os.strerror(code), target)
        return real(fd)

    return fsync


def _failing_write(code: int, die_name: str):
    real = os.write

    def write(fd, data):
        target = os.readlink(f"/proc/self/fd/{fd}")
        if f".{die_name}." in target and target.endswith(".tmp"):
            raise OSError(code, os.strerror(code))
        return real(fd, data)

    return write


@pytest.mark.skipif(not LINUX, reason="finds the file behind an fd in /proc")
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT, errno.EIO])
def test_a_disk_that_refuses_a_write_gives_one_store_error(tmp_path, monkeypatch, code):
    path = die_path(tmp_path, "w", 12)
    store = DieStore(path, "w", 12)
    store.finish_run(store.start_run("form", {}), {"formed_mask": np.ones(2, bool)})
    before = path.read_bytes()
    monkeypatch.setattr(os, "fsync", _failing_fsync(code, path.name))
    with pytest.raises(DieStoreError) as err:
        store.start_run("write_verify", {})
    assert str(err.value) == f"cannot write {path}: {os.strerror(code)}"
    assert path.read_bytes() == before and _temp_copies(path.parent) == []


@pytest.mark.skipif(not LINUX, reason="finds the file behind an fd in /proc")
@pytest.mark.parametrize("call", ["fsync", "write"])
def test_disk_full_at_finish_keeps_the_results_beside_the_die_file(tmp_path, monkeypatch, call):
    path = die_path(tmp_path, "w", 12)
    store = DieStore(path, "w", 12)
    store.finish_run(store.start_run("form", {}), {"formed_mask": np.ones(2, bool)})
    run = store.start_run("write_verify", {})
    before = path.read_bytes()
    failing = {"fsync": _failing_fsync, "write": _failing_write}[call]
    monkeypatch.setattr(os, call, failing(errno.ENOSPC, path.name))
    final = np.random.default_rng(1).random((8, 8))
    with pytest.raises(DieStoreError) as err:
        store.finish_run(run, {"final": final}, {"cells": 64}, bench_time_s=2.0)
    message = str(err.value)
    assert message.startswith(f"cannot write {path}: No space left on device; results kept in ")
    kept = _kept_in(message)
    assert kept == path.parent / "die_12.h5.run-0002.fallback.npz"
    monkeypatch.undo()
    with np.load(kept) as npz:
        assert np.array_equal(npz["final"], final) and '"cells": 64' in str(npz["__summary_json__"])
    assert path.read_bytes() == before  # the die file could not even be marked
    assert [r.status for r in DieStore(path).runs()] == ["complete", "running"]
    assert _temp_copies(path.parent) == []


@pytest.fixture
def small_disk(tmp_path):
    folder = tmp_path / "small"
    _mount_tmpfs(folder, "size=600k")
    yield folder
    _unmount(folder)


def test_real_full_disk_keeps_results_in_the_temp_folder(small_disk, system_temp):
    path = die_path(small_disk, "w", 12)
    store = DieStore(path, "w", 12)
    store.finish_run(store.start_run("form", {}), {"formed_mask": np.ones(4, bool)})
    run = store.start_run("write_verify", {})
    final = np.random.default_rng(2).random((300, 300))  # 720 kB, incompressible
    with pytest.raises(DieStoreError) as err:
        store.finish_run(run, {"final": final}, {"cells": final.size})
    message = str(err.value)
    assert message.startswith(f"cannot write {path}: No space left on device; results kept in ")
    kept = _kept_in(message)
    assert kept == system_temp / "w.die_12.h5.run-0002.fallback.npz"  # no room beside it
    with np.load(kept) as npz:
        assert np.array_equal(npz["final"], final)
    assert message.endswith("the run is marked failed in the die file")
    runs = DieStore(path).runs()
    assert runs[0].status == "complete" and runs[1].status == "failed"
    assert runs[1].attrs["fallback"] == str(kept) and "No space left" in runs[1].attrs["error"]
    assert _temp_copies(path.parent) == []


# -- 3: temporary copies left by a killed writer ----------------------------------------

def test_stale_temporary_copies_are_removed_at_the_next_change(tmp_path):
    store = DieStore(tmp_path / "die_1.h5", "w", 1)
    store.start_run("form", {})
    stale = [tmp_path / ".die_1.h5.4242.0badc0de.tmp", tmp_path / ".die_1.h5.k3j4l5m6.tmp"]
    for p in stale:
        p.write_bytes(b"half a copy")
    other = tmp_path / ".die_10.h5.k3j4l5m6.tmp"  # another die's: not ours to remove
    other.write_bytes(b"x")
    store.start_run("form", {})
    assert not any(p.exists() for p in stale) and other.exists()


# -- 4: file mode -------------------------------------------------------------------------

@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_new_die_files_follow_the_umask(tmp_path, umask, mode):
    path = tmp_path / "die_1.h5"
    old = os.umask(umask)
    try:
        DieStore(path, "w", 1).start_run("form", {})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    path.chmod(0o640)
    DieStore(path, "w", 1).start_run("form", {})
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # a replaced file keeps its mode


# -- 5: another die's file ----------------------------------------------------------------

def test_runs_of_one_die_never_go_into_another_dies_file(tmp_path):
    path = tmp_path / "die_12.h5"
    DieStore(path, "w1", 12).start_run("form", {})
    before = path.read_bytes()
    with pytest.raises(DieStoreError, match=r"wafer 'w1' die 12, not wafer 'w1' die 13"):
        DieStore(path, "w1", 13).start_run("form", {})
    with pytest.raises(DieStoreError, match=r"wafer 'w1' die 12, not wafer 'w2' die 12"):
        DieStore(path, "w2", 12).start_run("form", {})
    assert path.read_bytes() == before
    assert DieStore(path).die_id == 12  # left out: read from the file


# -- 6: damaged die files -----------------------------------------------------------------

def _good(tmp_path: Path) -> Path:
    path = tmp_path / "good.h5"
    store = DieStore(path, "w", 1)
    for i in range(3):
        run = store.start_run("write_verify", {"i": i}, {"array": "AIMC"}, 25.0, "rram")
        store.finish_run(run, {"final": np.random.default_rng(i).random((16, 16)),
                               "pulses": np.arange(10)}, {"cells": 256})
    return path


def _read_everything(path: Path) -> None:
    store = DieStore(path)
    for info in store.runs():
        store.read_run(info.run_id)


def _damage(kind: str, tmp_path: Path) -> Path:
    path = tmp_path / "die_1.h5"
    good = _good(tmp_path)
    data = good.read_bytes()
    if kind == "not hdf5":
        path.write_bytes(b"not hdf5 at all")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif kind == "truncated header":
        path.write_bytes(data[:100])
    elif kind == "folder":
        path.mkdir()
    elif kind == "/dev/null":
        return Path("/dev/null")
    elif kind == "no runs group":
        make_v1(path, mutate=lambda f: f.__delitem__("runs"))
    elif kind == "missing status":
        make_v1(path, mutate=lambda f: f["runs/0001_write_verify"].attrs.__delitem__("status"))
    elif kind == "bad status":
        make_v1(path, mutate=lambda f: f["runs/0002_write_verify"].attrs.__setitem__("status",
                                                                                    "finished"))
    elif kind == "bad json":
        make_v1(path, mutate=lambda f: f["runs/0002_write_verify"].attrs.__setitem__(
            "params_json", "{tolerance: 1e-6"))
    elif kind == "bad bytes":
        make_v1(path, mutate=lambda f: f["runs/0002_write_verify"].attrs.__setitem__(
            "summary_json", np.bytes_(b"\xff\xfe{")))
    elif kind == "run is a dataset":
        make_v1(path, mutate=lambda f: f["runs"].create_dataset("0003_write_verify", data=3))
    elif kind == "damaged chunk (version 1)":
        make_v1(path)
        raw = bytearray(path.read_bytes())
        with h5py.File(path, "r") as f:
            offset = f["runs/0001_write_verify/final"].id.get_chunk_info(0).byte_offset
        raw[offset:offset + 16] = b"\x00" * 16  # no checksum in version 1: HDF5 sees it
        path.write_bytes(bytes(raw))
    elif kind == "v2 without its header":
        raw = bytearray(data)
        raw[:512] = b"\0" * 512
        path.write_bytes(bytes(raw))
    else:
        raise AssertionError(kind)
    return path


DAMAGE = ["not hdf5", "empty", "truncated", "truncated header", "folder", "/dev/null",
          "no runs group", "missing status", "bad status", "bad json", "bad bytes",
          "run is a dataset", "damaged chunk (version 1)", "v2 without its header"]


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_die_file_gives_one_store_error(tmp_path, kind):
    path = _damage(kind, tmp_path)
    with pytest.raises(DieStoreError) as err:
        _read_everything(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message, message


@pytest.mark.parametrize("kind", [k for k in DAMAGE if k != "/dev/null"])
def test_a_damaged_die_file_is_not_written_into(tmp_path, kind):
    path = _damage(kind, tmp_path)
    before = path.read_bytes() if path.is_file() else None
    if kind in ("bad json", "bad bytes", "damaged chunk (version 1)"):
        DieStore(path).start_run("form", {})  # the layout is sound: new runs can go in
        return
    with pytest.raises(DieStoreError) as err:
        DieStore(path).start_run("form", {})
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert (path.read_bytes() if path.is_file() else None) == before


def test_every_flipped_byte_is_found(tmp_path):
    """Bit flips anywhere: found by the checksum, before the HDF5 library reads a byte
    (a flipped string length can make HDF5 2.0 loop forever)."""
    good = _good(tmp_path)
    data = good.read_bytes()
    path = tmp_path / "die_1.h5"
    rng = np.random.default_rng(7)
    positions = list(rng.integers(0, len(data), 400)) + list(range(0, 512, 7))
    for position in positions:
        flipped = bytearray(data)
        flipped[position] ^= int(rng.integers(1, 256))
        path.write_bytes(bytes(flipped))
        with pytest.raises(DieStoreError, match="damaged die file|not a readable HDF5") as err:
            _read_everything(path)
        assert "\n" not in str(err.value)


# -- 7: results paths that cannot work ----------------------------------------------------

def test_results_folder_is_a_file(tmp_path):
    results = tmp_path / "results"
    results.write_text("a file where the results folder should be")
    store = DieStore(die_path(results, "w", 1), "w", 1)
    with pytest.raises(DieStoreError, match=rf"{results} is a file, not a folder"):
        store.start_run("form", {})
    (tmp_path / "r2").mkdir()
    (tmp_path / "r2" / "w").write_text("the wafer folder is a file")
    with pytest.raises(DieStoreError, match=rf"{tmp_path / 'r2' / 'w'} is a file, not a folder"):
        DieStore(die_path(tmp_path / "r2", "w", 1), "w", 1).start_run("form", {})


def test_results_folder_without_write_permission(tmp_path, monkeypatch):
    """As root, chmod does not stop a write: the refusal is simulated where it happens."""
    folder = tmp_path / "locked"
    folder.mkdir()
    real_open = os.open

    def refuse(path, flags, *args, **kwargs):
        if str(path).startswith(str(folder)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        if str(path).startswith(str(folder)):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(DieStoreError, match=rf"cannot write {folder / 'die_1.h5'}: .*Permission "
                                            "denied"):
        DieStore(folder / "die_1.h5", "w", 1).start_run("form", {})


def test_read_only_results_folder(tmp_path):
    folder = tmp_path / "ro"
    _mount_tmpfs(folder, "size=100k,ro")
    try:
        with pytest.raises(DieStoreError, match=rf"cannot write {folder / 'die_1.h5'}: .*"
                                                "Read-only file system"):
            DieStore(folder / "die_1.h5", "w", 1).start_run("form", {})
    finally:
        _unmount(folder)


# -- 8: Ctrl-C in the middle of an update -------------------------------------------------

def test_ctrl_c_mid_update_leaves_file_and_lock_good(tmp_path):
    path = tmp_path / "die_1.h5"
    store = DieStore(path, "w", 1)
    store.start_run("form", {})
    before = path.read_bytes()

    def interrupted(f):
        f["runs"].create_group("9999_form")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store._update(interrupted)
    assert path.read_bytes() == before and _temp_copies(tmp_path) == []
    lock = tmp_path / ".die_1.h5.lock"
    if lock.exists():  # not held: another process could take it at once
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        assert lock.read_text() == ""  # no stale owner pid
    assert store.start_run("form", {}) == "0002_form"


def test_sigint_during_appends_leaves_a_good_file(tmp_path):
    path = tmp_path / "die_1.h5"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        import numpy as np
        from calib.jobs.run import check_interrupt, signals_interrupt
        from calib.store import DieStore
        s = DieStore({str(path)!r}, 'w', 1)
        r = s.start_run('map', {{}})
        rows = np.zeros(50, [('step', 'i4'), ('done', 'i4'), ('total', 'i4'),
                             ('bench_time_s', 'f8'), ('wall_time_s', 'f8')])
        s.append(r, 'progress', rows)
        print('appending', flush=True)
        try:
            # as a job does: a stop Python swallowed in a callback is raised at the next
            # safe point (without it, one SIGINT can be lost and the loop runs on)
            with signals_interrupt():
                while True:
                    s.append(r, 'progress', rows)
                    check_interrupt()
        except KeyboardInterrupt:
            s.fail_run(r, 'KeyboardInterrupt()', 'interrupted')
            raise
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "appending"
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    proc.wait(20)
    assert proc.returncode != 0
    store = DieStore(path)
    (run,) = store.runs()
    assert run.status == "interrupted"
    rows = store.read_run(run.run_id)["progress"]
    assert rows.shape[0] % 50 == 0 and rows.shape[0] >= 50
    assert _temp_copies(tmp_path) == []


# -- die_path ----------------------------------------------------------------------------

@pytest.mark.parametrize("wafer", ["../../x", "..", ".", "/etc", "a/b", "a\\b", "", " ", "x\0y"])
def test_die_path_refuses_wafer_names_that_leave_the_results_folder(tmp_path, wafer):
    with pytest.raises(DieStoreError, match="wafer name"):
        die_path(tmp_path, wafer, 1)


@pytest.mark.parametrize("die", [-1, 1.5, "x", "-3", True, None, float("nan"), "1e3"])
def test_die_path_refuses_die_ids_that_are_not_whole_numbers(tmp_path, die):
    with pytest.raises(DieStoreError, match="die id"):
        die_path(tmp_path, "w", die)


def test_die_path_accepts_whole_numbers(tmp_path):
    for die in (0, 12, np.int64(12), "12", 12.0):
        assert die_path(tmp_path, "sim-w200-seed7", die).name in ("die_0.h5", "die_12.h5")
    assert die_path(tmp_path, "w", 3).parent == tmp_path / "w"


@pytest.mark.skipif(not LINUX, reason="finds the file behind an fd in /proc")
def test_a_failure_recorded_after_a_failed_finish_still_says_where_the_results_are(
        tmp_path, monkeypatch):
    """What calib/jobs/run.py does: finish_run fails, then the envelope calls fail_run."""
    path = die_path(tmp_path, "w", 12)
    store = DieStore(path, "w", 12)
    run = store.start_run("form", {})
    monkeypatch.setattr(os, "fsync", _failing_fsync(errno.ENOSPC, path.name))
    with pytest.raises(DieStoreError) as first:
        store.finish_run(run, {"formed_mask": np.ones(3, bool)})
    kept = _kept_in(str(first.value))
    with pytest.raises(DieStoreError, match=rf"No space left on device; results of run {run} "
                                            rf"kept in {kept}"):
        store.fail_run(run, f"DieStoreError: {first.value}")
    monkeypatch.undo()  # the disk has room again
    store.fail_run(run, "DieStoreError: disk full")
    info = store.runs()[0]
    assert info.status == "failed" and info.attrs["fallback"] == str(kept)
    assert f"results kept in {kept}" in info.attrs["error"]
