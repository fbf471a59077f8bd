"""`calib map` as a user at the bench runs it, and the die file it leaves."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from calib.cli import main
from calib.jobs.map import MapOptions, load_map, map_die
from calib.store import DieStore
from calib.wiring import open_bench
from instruments import InstrumentTimeout

KEYS = {"die", "cells", "yield", "faults", "usable_window_s", "read_noise", "d2d", "c2c",
        "cycles", "pulses_per_cell", "transactions", "bench_time_s", "wall_time_s", "file",
        "run"}
DATASETS = {"g_min", "g_max", "g_min_c2c", "g_max_c2c", "set_threshold", "reset_threshold",
            "set_rate", "reset_rate", "fault"}


@pytest.fixture
def small(tmp_path):
    """A bench config: the embedded simulated bench on a 32x32 array."""
    path = tmp_path / "small.toml"
    path.write_text('[chip]\ndatasheet = "rram"\n\n[simulation]\nseed = 7\nrows = 32\n'
                    'cols = 32\n')
    return str(path)


def run(args):
    return CliRunner().invoke(main, args)


def test_map_json_and_datasets_readable_with_plain_h5py(tmp_path, small):
    result = run(["map", "--die", "12", "--bench", small, "--results", str(tmp_path),
                  "--json"])
    assert result.exit_code == 0, result.output
    s = json.loads(result.output)
    assert KEYS <= set(s) and s["die"] == 12 and s["cells"] == 32 * 32
    assert set(s["faults"]) == {"healthy", "stuck_low", "stuck_high", "unformed", "narrow",
                                "unresponsive"}
    assert 0.9 < s["yield"] <= 1 and s["cycles"] == 5 and s["pulses_per_cell"] <= 200
    with h5py.File(s["file"], "r") as f:  # no toolkit in between
        group = f["runs"][s["run"]]
        assert group.attrs["status"] == "complete" and group.attrs["protocol"] == "variability"
        assert DATASETS <= set(group)
        assert group["fault"].dtype == np.uint8 and group["g_max"].shape == (32, 32)
        assert np.nanmedian(group["g_max"][()]) > 40e-6  # siemens
        assert json.loads(group.attrs["summary_json"])["yield"] == s["yield"]
    store = DieStore(s["file"])
    assert [r.protocol for r in store.runs()] == ["form", "variability"]
    m = load_map(store)  # what later jobs load: the newest complete map
    assert m.shape == (32, 32) and m.counts() == s["faults"]
    assert m.read_noise.b == pytest.approx(s["read_noise"]["b"])


def test_human_summary_quick_map_and_report(tmp_path, small):
    result = run(["map", "--die", "12", "--bench", small, "--quick", "--results",
                  str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "yield" in result.output and "2 cycles" in result.output and "stored" in result.output
    file = next(tmp_path.rglob("die_12.h5"))
    out = run(["report", str(file), "--out", str(tmp_path / "rep")])
    assert out.exit_code == 0, out.output
    pngs = list((tmp_path / "rep").glob("*variability.png"))
    assert len(pngs) == 1 and pngs[0].stat().st_size > 20_000
    assert "usable window" in (tmp_path / "rep" / "die_12_summary.txt").read_text()


@pytest.mark.parametrize("args, message", [
    (["--die", "3", "--max-pulses", "40"], "endurance budget 40 pulses per cell is too small"),
    (["--die", "3", "--cycles", "30"], "too small for 30 cycles"),
    (["--die", "3", "--cycles", "0"], "--cycles"),
    (["--die", "-1"], "--die"),
    (["--die", "3", "--bench", "/nope.toml"], "no such bench config"),
])
def test_bad_input_is_one_line_and_touches_nothing(tmp_path, small, args, message):
    if "--bench" not in args:
        args = [*args, "--bench", small]
    result = run(["map", *args, "--results", str(tmp_path)])
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert not list(tmp_path.rglob("*.h5"))  # refused before the first byte


def test_a_dead_die_is_one_line_and_recorded_failed(tmp_path, small):
    result = run(["map", "--die", "5", "--bench", small, "--results", str(tmp_path)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "dead die" in result.output and len(result.output.strip().splitlines()) == 1
    store = DieStore(next(tmp_path.rglob("die_5.h5")))
    last = store.runs()[-1]
    assert last.protocol == "variability" and last.status == "failed"
    assert "no cell moved" in last.attrs["error"]


def test_an_unformed_die_with_no_form_is_refused(tmp_path, small):
    result = run(["map", "--die", "3", "--bench", small, "--no-form", "--results",
                  str(tmp_path)])
    assert result.exit_code != 0 and "not formed" in result.output
    assert "--no-form" in result.output
    assert not list(tmp_path.rglob("*.h5"))


def test_a_bench_that_stops_answering_mid_map(tmp_path):
    with open_bench(rows=16, cols=16) as b:
        for session in b.sessions.values():
            session.timeout_s = 0.2
        first = map_die(b, 12, MapOptions(quick=True), results=tmp_path)
        b.simulation.faults.inject("timeout", "array", count=1000, after=60)
        with pytest.raises(InstrumentTimeout):
            map_die(b, 12, MapOptions(quick=True), results=tmp_path)
        b.simulation.faults.clear()
    store = DieStore(first["file"])
    runs = store.runs()
    assert runs[-1].protocol == "variability" and runs[-1].status == "failed"
    assert "InstrumentTimeout" in runs[-1].attrs["error"]
    # nothing lost: the first map is intact and is still the one later jobs load
    assert store.read_run(first["run"])["status"] == "complete"
    assert load_map(store).counts() == first["faults"]


def test_an_interrupted_map_is_marked(tmp_path, small, monkeypatch):
    import calib.jobs.map as job

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(job, "map_variability", boom)
    result = run(["map", "--die", "12", "--bench", small, "--results", str(tmp_path)])
    assert result.exit_code == 130
    store = DieStore(next(tmp_path.rglob("die_12.h5")))
    assert store.runs()[-1].status == "interrupted"


def test_map_writes_a_simulator_twin_that_loads(tmp_path):
    import sim_backend

    twin = tmp_path / "twin.toml"
    result = CliRunner().invoke(main, ["map", "--die", "12", "--quick", "--results",
                                       str(tmp_path / "r"), "--twin", str(twin), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["twin"] == str(twin)
    spec = sim_backend.load_chip(twin)
    assert spec.technology == "rram" and spec.shape == (64, 64)


def test_a_power_law_read_noise_survives_the_die_file(tmp_path):
    """A PCM map's noise law has an exponent; reloading the map must keep it."""
    with open_bench(chip="pcm", rows=32, cols=32) as bench:
        summary = map_die(bench, 12, MapOptions(quick=True), results=tmp_path)
    vmap = load_map(DieStore(summary["file"]), summary["run"])
    assert vmap.read_noise.c == pytest.approx(summary["read_noise"]["c"])
    assert "read noise" in "\n".join(
        CliRunner().invoke(main, ["report", summary["file"], "--out", str(tmp_path / "rep")])
        .output.splitlines())
