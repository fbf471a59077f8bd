"""The simulated wafer remembers between commands, as a real one does.

``calib map`` then ``calib program`` in two processes act on one die; a second process
is refused while one holds the wafer; a ``kill -9`` mid-program leaves the die as it was
at most about a second before the kill; a state folder of another chip is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import sim_backend
from calib.cli import main
from calib.store import DieStore
from calib.wiring import open_bench
from sim_backend.wafer import SimWafer

ROOT = Path(__file__).resolve().parents[2]
WAFER = "sim-w200-seed7"  # the embedded bench's wafer name, seed 7


def _bench(tmp_path: Path, rows: int, chip: str = "rram", extra: str = "") -> str:
    path = tmp_path / f"{chip}-{rows}.toml"
    path.write_text(f'[chip]\ndatasheet = "{chip}"\n[simulation]\nseed = 7\nrows = {rows}\n'
                    f"cols = {rows}\n{extra}")
    return str(path)


def _calib(*args: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "calib.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env, **popen)


def _ok(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    return json.loads(out)


def _saved_die(folder: Path, die: int, rows: int, chip: str = "rram"):
    """The die as the state folder holds it (the folder let go of again)."""
    wafer = SimWafer(sim_backend.load_chip(chip, rows=rows, cols=rows), seed=7, state=folder)
    try:
        return wafer.load(die)
    finally:
        wafer.close()


def test_map_then_program_in_two_processes_act_on_one_die(tmp_path):
    bench, results = _bench(tmp_path, 32), tmp_path / "r"
    mapped = _ok(_calib("map", "--die", "3", "--quick", "--bench", bench, "--results",
                        str(results), "--json"))
    programmed = _ok(_calib("program", "--die", "3", "--pattern", "random", "--bench", bench,
                            "--results", str(results), "--json"))
    assert programmed["file"] == mapped["file"]
    store = DieStore(mapped["file"])
    runs = store.runs()
    forms = [store.read_run(r.run_id) for r in runs if r.protocol == "form"]
    assert [r.protocol for r in runs if r.protocol != "form"] == ["variability", "write_verify"]
    first = forms[0]["summary"]["cells_formed"]
    assert first > 0.9 * 32 * 32
    for later in forms[1:]:  # the program found the die formed: nothing formed again
        assert later["summary"]["cells_formed"] == 0
        assert later["params"]["die_reads_unformed_again"] is False
    chip = _saved_die(results / WAFER / "sim-state", 3, 32)
    truth = chip.truth()
    assert truth.formed.sum() == first
    final = store.read_run(programmed["run"])
    ok = final["converged"].astype(bool)
    assert ok.mean() > 0.9  # the state holds the programmed die, not a pristine one
    assert np.median(np.abs(truth.g[ok] - final["final"][ok])) < 1e-6


def test_a_second_process_is_refused_before_its_prober_moves(tmp_path):
    bench, results = _bench(tmp_path, 256), tmp_path / "r"
    first = _calib("program", "--die", "12", "--pattern", "random", "--bench", bench,
                   "--results", str(results), "--json")
    lock = results / WAFER / "sim-state" / "lock"
    try:
        deadline = time.monotonic() + 60
        while not (lock.exists() and lock.read_text().startswith("pid")):
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()
            time.sleep(0.02)
        out = CliRunner().invoke(main, ["program", "--die", "13", "--pattern", "random",
                                        "--bench", bench, "--results", str(results)])
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    assert out.exit_code == 1 and "Traceback" not in out.output
    assert out.output.strip() == (f"Error: simulated wafer state {lock.parent} is in use by "
                                  f"another process (pid {first.pid}); wait for it to end")
    assert not (results / WAFER / "die_13.h5").exists()


def test_a_kill_9_mid_program_leaves_the_state_of_a_second_before(tmp_path):
    """The state a new process finds is the killed one's of at most about a second
    before the kill (2 s allowed here: a loaded test machine), and reads back whole."""
    bench, results = _bench(tmp_path, 256), tmp_path / "r"
    state = results / WAFER / "sim-state"
    proc = _calib("program", "--die", "12", "--pattern", "random", "--tolerance", "1e-7",
                  "--bench", bench, "--results", str(results), "--json")
    try:
        deadline = time.monotonic() + 60
        while not (state / "die_12.npz").exists():  # the first save, a second into the die
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.02)
        time.sleep(1.5)
        assert proc.poll() is None, "the program ended before the kill"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    killed_at = time.time()
    assert killed_at - (state / "die_12.npz").stat().st_mtime <= 2.0
    doc = json.loads((state / "wafer.json").read_text())
    chip = _saved_die(state, 12, 256)  # a new owner: no stale lock, the die loads
    assert chip.clock.now == pytest.approx(doc["clock_s"])
    truth = chip.truth()
    assert truth.formed.mean() > 0.9 and chip.pulses_applied > 0  # formed, programming begun
    assert not [p for p in state.iterdir() if p.name.endswith(".tmp")]
    assert DieStore(results / WAFER / "die_12.h5").runs()[-1].protocol == "write_verify"


def test_a_state_folder_of_another_chip_is_refused_and_left_alone(tmp_path):
    results = tmp_path / "r"
    runner = CliRunner()
    first = runner.invoke(main, ["program", "--die", "3", "--pattern", "random", "--bench",
                                 _bench(tmp_path, 32), "--results", str(results)])
    assert first.exit_code == 0, first.output
    state = results / WAFER / "sim-state"
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in state.iterdir()}
    die_file = results / WAFER / "die_3.h5"
    die_before = die_file.read_bytes()
    out = runner.invoke(main, ["program", "--die", "3", "--pattern", "random", "--bench",
                               _bench(tmp_path, 32, "pcm"), "--results", str(results)])
    assert out.exit_code == 1 and len(out.output.strip().splitlines()) == 1
    assert (f"simulated wafer state {state} was made for chip rram 32x32, wafer w200, seed 7; "
            "this bench has chip pcm 32x32") in out.output
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in state.iterdir()} == before
    assert die_file.read_bytes() == die_before


def test_state_false_forgets_and_a_bad_value_is_named(tmp_path):
    results = tmp_path / "r"
    out = CliRunner().invoke(main, ["program", "--die", "3", "--pattern", "random", "--bench",
                                    _bench(tmp_path, 16, extra="state = false\n"),
                                    "--results", str(results)])
    assert out.exit_code == 0, out.output
    assert (results / WAFER / "die_3.h5").exists() and not (results / WAFER / "sim-state").exists()
    bad = tmp_path / "bad.toml"
    bad.write_text('[simulation]\nstate = "yes"\n')
    out = CliRunner().invoke(main, ["bench", "check", "--bench", str(bad)])
    assert out.exit_code == 1 and "simulation.state: expected true or false" in out.output


def test_jobs_in_one_process_share_one_remembered_die(tmp_path):
    """A script's two jobs on one bench and results folder: one binding, one die."""
    from calib.jobs import ProgramOptions, make_targets, program_die

    with open_bench(rows=16, cols=16) as bench:
        w = bench.datasheet.window
        targets = make_targets(bench.datasheet.shape, w.g_min, w.g_max, pattern="random")
        program_die(bench, 6, targets, ProgramOptions(), results=tmp_path)
        again = program_die(bench, 6, targets, ProgramOptions(), results=tmp_path)
        truth = bench.simulation.chip.truth()
        assert bench.simulation.wafer.state_folder == tmp_path / WAFER / "sim-state"
    assert again["in_band_fraction"] > 0.9
    _truths = _saved_die(tmp_path / WAFER / "sim-state", 6, 16).truth()
    assert np.array_equal(_truths.g_programmed, truth.g_programmed)


def test_calib_sim_serve_remembers_its_wafer_in_state(tmp_path):
    state = tmp_path / "served"
    server = _calib("sim", "serve", "--state", str(state), "--json")
    try:
        resources = json.loads(server.stdout.readline())
        second = _calib("sim", "serve", "--state", str(state))
        _, err = second.communicate(timeout=60)
        assert second.returncode == 1 and "is in use by another process" in err
        config = tmp_path / "served.toml"
        config.write_text(f'[chip]\ndatasheet = "rram"\n[roles.array]\n'
                          f'driver = "reference-array"\nresource = "{resources["array"]}"\n'
                          f'[roles.prober]\ndriver = "sentio"\n'
                          f'resource = "{resources["prober"]}"\n')
        with open_bench(config) as bench:  # a real bench to the host: nothing bound here
            assert bench.bind_results(tmp_path) is None
            bench.prober.goto(6)
            formed = bench.array.form()
        assert formed > 3000
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    assert server.returncode in (0, 130), server.stderr.read()
    assert _saved_die(state, 6, 64).truth().formed.sum() == formed
    assert not (tmp_path / "sim-state").exists()
