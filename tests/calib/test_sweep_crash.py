"""A sweep killed (kill -9, SIGINT) at random moments and resumed: every die done exactly
once, and the same wafer summary as an uninterrupted sweep for the dies not caught
mid-run. (benchmarks/bench_sweep.py does the same with 20 kills.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from calib.store import DieStore
from calib.sweep.index import read_index

ROOT = Path(__file__).resolve().parents[2]
WAFER = "sim-w200-seed7"
RECIPE = """[recipe]
name = "crash"
[dies]
select = [12, 5, 13, 14, 15, 16]
route = "file"
[[steps]]
step = "map"
quick = true
[bins]
[[bins.rules]]
when = "map.yield >= 0.9"
bin = 1
name = "good"
"""
BENCH = '[chip]\ndatasheet = "rram"\n\n[simulation]\nseed = 7\nrows = 16\ncols = 16\n'


def sweep(tmp: Path, results: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "calib.cli", "sweep", str(tmp / "r.toml"),
                             "--bench", str(tmp / "b.toml"), "--results", str(results),
                             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, env=env)


def same(x: dict, y: dict) -> bool:
    """Bin and figures equal, bench times aside: a restarted process identifies its
    instruments again inside the first step it runs (a few bench ms of bus, not the die)."""
    fx = {k: v for k, v in x["figures"].items() if not k.endswith("bench_time_s")}
    fy = {k: v for k, v in y["figures"].items() if not k.endswith("bench_time_s")}
    return x["bin"] == y["bin"] and set(fx) == set(fy) and all(
        np.isclose(fx[k], fy[k], rtol=1e-9, atol=0) for k in fx)


def test_kill_9_at_random_moments_then_resume(tmp_path):
    (tmp_path / "r.toml").write_text(RECIPE)
    (tmp_path / "b.toml").write_text(BENCH)
    t0 = time.monotonic()
    ref = sweep(tmp_path, tmp_path / "ref")
    out, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err
    wall = time.monotonic() - t0
    rng = np.random.default_rng(3)
    crash = tmp_path / "crash"
    for _ in range(3):
        p = sweep(tmp_path, crash)
        try:
            p.wait(timeout=float(rng.uniform(0.3, 1.0)) * wall)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
            p.wait()
        p.communicate()
    p = sweep(tmp_path, crash)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert json.loads(out)["done"] == 6
    a = read_index(tmp_path / "ref" / WAFER)["dies"]
    b = read_index(crash / WAFER)["dies"]
    assert {d: e["state"] for d, e in b.items()} == {d: "done" for d in a}
    for die, entry in b.items():
        runs = DieStore(crash / WAFER / f"die_{die}.h5").runs()
        assert "running" not in {r.status for r in runs}
        complete = [r for r in runs if r.protocol == "variability" and r.status == "complete"]
        if entry["bin"] != 7:  # a dead die's map fails; every live die is mapped once
            assert len(complete) == 1, (die, [(r.protocol, r.status) for r in runs])
        if entry["attempts"] == 1:
            assert same(a[die], entry), die


def test_ctrl_c_stops_with_130_and_the_die_resumes(tmp_path):
    (tmp_path / "r.toml").write_text(RECIPE)
    (tmp_path / "b.toml").write_text(BENCH)
    results = tmp_path / "res"
    p = sweep(tmp_path, results)
    index = results / WAFER / "wafer-index.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # once the first die is done, stop the sweep
        if index.exists() and '"state": "done"' in index.read_text():
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    if p.returncode == 0:  # the sweep ended before the signal: nothing to resume
        return
    assert p.returncode == 130 and "Traceback" not in err, err
    dies = read_index(results / WAFER)["dies"]
    assert "running" not in {e["state"] for e in dies.values()}
    p = sweep(tmp_path, results)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert json.loads(out)["done"] == 6
