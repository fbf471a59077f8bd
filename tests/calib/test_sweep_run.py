"""Wafer sweeps on the embedded simulated bench (16 x 16 dies): bins against the truth,
contact checks, faults, pauses, stops and resumes."""

from __future__ import annotations

import json

import h5py
import pytest
from click.testing import CliRunner

from calib.cli import main
from calib.store import DieStore
from calib.sweep import parse_recipe, run
from calib.sweep.index import read_index
from calib.wiring import open_bench

DEAD = 5  # a dead die of the default wafer, seed 7 (checked against the truth below)


def recipe(select, steps=None, rules=None, **extra):
    doc = {"recipe": {"name": "t"}, "dies": {"select": select, "route": "file"},
           "steps": steps or [{"step": "map", "quick": True}],
           "bins": {"rules": rules or [
               {"when": "map.stuck_fraction >= 0.9", "bin": 7, "name": "dead die"},
               {"when": "map.yield >= 0.9", "bin": 1, "name": "good"}]}}
    doc.update(extra)
    return parse_recipe(doc)


@pytest.fixture
def bench():
    with open_bench(rows=16, cols=16) as b:
        yield b


def states(folder):
    return {int(k): (v["state"], v["bin"]) for k, v in read_index(folder)["dies"].items()}


def test_sweep_bins_match_the_truth_and_tells_the_prober(bench, tmp_path):
    sim = bench.simulation
    assert sim.wafer.info(DEAD).dead and not sim.wafer.info(12).dead
    events = []
    result = run(bench, recipe([12, DEAD, 13]), results=tmp_path, progress=events.append)
    assert result.done == 3 and result.pending == 0 and result.stopped is None
    by_die = {r["die"]: r for r in result.rows}
    assert by_die[DEAD]["bin"] == 7 and "no cell moved" in by_die[DEAD]["message"]
    assert by_die[12]["bin"] == 1 and by_die[12]["passed"]
    truth_stuck = sim.wafer.die(12).truth().stuck.mean()
    assert by_die[12]["map.stuck_fraction"] == pytest.approx(truth_stuck, rel=0.5, abs=0.02)
    assert {d: sim.bins.get(d) for d in (12, DEAD, 13)} == {12: 1, DEAD: 7,
                                                            13: by_die[13]["bin"]}
    assert [e.die for e in events if e.event == "done"] == [12, DEAD, 13]
    assert events[-1].eta_bench_s == 0
    folder = tmp_path / bench.wafer_name
    for name in ("wafer-index.json", "wafer-summary.csv", "wafer-summary.json", "wafer.stdf"):
        assert (folder / name).is_file(), name
    assert {r.protocol for r in DieStore(folder / "die_12.h5").runs()} >= {"variability"}
    again = run(bench, recipe([12, DEAD, 13]), results=tmp_path)  # nothing done twice
    assert again.visited == 0 and again.done == 3
    assert len([r for r in DieStore(folder / "die_12.h5").runs()
                if r.protocol == "variability"]) == 1


def test_open_needles_are_retried_then_binned_and_the_sweep_goes_on(bench, tmp_path):
    faults = bench.simulation.faults
    faults.inject("open", "prober", count=1)  # the first contact reads open, the retry works
    result = run(bench, recipe([12]), results=tmp_path)
    entry = read_index(tmp_path / bench.wafer_name)["dies"]["12"]
    assert result.rows[0]["bin"] == 1 and entry["figures"]["contact.contact_attempts"] == 2
    faults.inject("open", "prober", count=3)  # 1 contact + 2 retries open: binned; next die
    result = run(bench, recipe([13, 14]), results=tmp_path)
    by_die = {r["die"]: r for r in result.rows}
    assert by_die[13]["bin"] == 9 and by_die[13]["bin_name"] == "no contact"
    assert by_die[14]["bin"] == 1
    assert not (tmp_path / bench.wafer_name / "die_13.h5").exists()  # no pulse, no run


def test_prober_refusing_contact_is_retried_then_binned(bench, tmp_path):
    bench.simulation.faults.inject("contact", "prober", count=20)
    result = run(bench, recipe([12, 13]), results=tmp_path)
    assert [r["bin"] for r in result.rows] == [9, 9] or result.rows[1]["bin"] == 1


def boom(bench, die, run, **options):
    if die == 12:
        raise RuntimeError("leakage meter not found")
    return {"current": 1e-12, "label": "ok"}


def test_user_step_that_raises_bins_the_die_failed_and_the_sweep_goes_on(bench, tmp_path):
    r = recipe([12, 13], steps=[{"step": "user", "name": "leak",
                                 "function": "tests.calib.test_sweep_run:boom"}],
               rules=[{"when": "leak.current < 1e-9", "bin": 1, "name": "good"}])
    result = run(bench, r, results=tmp_path)
    by_die = {row["die"]: row for row in result.rows}
    assert by_die[12]["state"] == "failed" and by_die[12]["bin"] == 8
    assert "RuntimeError: leakage meter not found" in by_die[12]["message"]
    assert by_die[13]["bin"] == 1 and by_die[13]["leak.current"] == 1e-12
    runs = DieStore(tmp_path / bench.wafer_name / "die_12.h5").runs()
    assert [(x.protocol, x.status) for x in runs] == [("user_step", "failed")]


def test_a_bench_that_stops_answering_stops_cleanly_and_resumes(bench, tmp_path):
    r = recipe([12, 13, 14])
    run(bench, recipe([12]), results=tmp_path)
    bench.simulation.faults.inject("timeout", "array", count=1000, after=40)  # mid-map of 13
    result = run(bench, r, results=tmp_path)
    assert result.stopped and "stopped answering" in result.stopped
    st = states(tmp_path / bench.wafer_name)
    assert st[12] == ("done", 1) and st[13][0] == "pending" and st[14][0] == "pending"
    bench.simulation.faults.clear()
    result = run(bench, r, results=tmp_path)
    assert result.stopped is None and result.visited == 2 and result.done == 3
    runs = DieStore(tmp_path / bench.wafer_name / "die_13.h5").runs()
    assert "interrupted" in {x.status for x in runs} or "failed" in {x.status for x in runs}
    assert [x.status for x in runs if x.protocol == "variability"][-1] == "complete"


def test_chuck_excursion_pauses_the_sweep_until_settled(bench, tmp_path):
    r = recipe([12, 13], conditions={"temperature": "25 degC", "poll": "10 s"})
    bench.simulation.faults.inject("chuck", "prober", count=1)
    events = []
    result = run(bench, r, results=tmp_path, progress=events.append)
    assert result.done == 2 and result.stopped is None
    paused = [e for e in events if e.event == "paused"]
    assert paused and paused[0].die == 12 and "waiting until settled" in paused[0].message
    assert not bench.thermal.settled() or bench.thermal.temperature() == pytest.approx(25, 0.1)


def test_chuck_that_never_settles_stops_the_sweep(bench, tmp_path):
    r = recipe([12], conditions={"temperature": "25 degC", "settle_timeout": "20 s",
                                 "poll": "5 s"})
    bench.simulation.faults.inject("chuck", "prober", count=1)
    result = run(bench, r, results=tmp_path)
    assert result.stopped and "did not settle" in result.stopped
    assert states(tmp_path / bench.wafer_name)[12][0] == "pending"


def test_temperature_outside_the_chip_limits_is_refused_before_any_byte(bench, tmp_path):
    r = recipe([12], conditions={"temperature": "400 degC"})
    before = sum(bench.simulation.transactions.values())
    with pytest.raises(Exception, match="temperature"):
        run(bench, r, results=tmp_path)
    assert sum(bench.simulation.transactions.values()) == before


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text('[chip]\ndatasheet = "rram"\n\n[simulation]\nseed = 7\nrows = 16\n'
                    'cols = 16\n')
    return str(path)


def test_cli_sweep_json_resume_redo_and_bad_input(tmp_path, small):
    rec = tmp_path / "r.toml"
    rec.write_text('[recipe]\nname = "cli"\n[dies]\nselect = "10-12"\n[[steps]]\nstep = "map"\n'
                   'quick = true\n[bins]\n[[bins.rules]]\nwhen = "map.yield >= 0.9"\nbin = 1\n'
                   'name = "good"\n')
    cli = CliRunner()
    args = ["sweep", str(rec), "--bench", small, "--results", str(tmp_path / "res")]
    out = cli.invoke(main, [*args, "--json"])
    assert out.exit_code == 0, out.output
    s = json.loads(out.output)
    assert s["done"] == 3 and s["visited"] == 3 and set(s["bins"]) <= {"1", "2", "3", "7"}
    assert [r["die"] for r in s["rows"]] == [10, 11, 12] and "map.yield" in s["rows"][0]
    out = cli.invoke(main, args)
    assert out.exit_code == 0 and "3 of 3 dies done (0 this run" in out.output
    out = cli.invoke(main, [*args, "--redo", "--json"])
    assert json.loads(out.output)["visited"] == 3
    with h5py.File(tmp_path / "res" / "sim-w200-seed7" / "die_11.h5", "r") as f:
        assert len(f["runs"]) >= 2
    rec.write_text(rec.read_text().replace('step = "map"', 'step = "etch"'))
    out = cli.invoke(main, args)
    assert out.exit_code != 0 and "unknown step" in out.output
    assert len(out.output.strip().splitlines()) == 1 and "Traceback" not in out.output
    bad = tmp_path / "b.toml"
    bad.write_text(rec.read_text().replace('"10-12"', "[10, 9999]").replace("etch", "map"))
    out = cli.invoke(main, ["sweep", str(bad), "--bench", small, "--results",
                            str(tmp_path / "res2")])
    assert out.exit_code != 0 and "die 9999 is not on the prober's wafer map" in out.output
    out = cli.invoke(main, ["sweep", "no-such-recipe", "--bench", small])
    assert out.exit_code != 0 and "bundled recipes" in out.output


def test_a_run_the_index_never_heard_of_is_adopted_not_redone(bench, tmp_path, monkeypatch):
    """Killed between the die file's write and the index's: the resumed sweep takes the
    complete run it finds instead of mapping the die a second time."""
    from calib.sweep.index import WaferIndex

    real = WaferIndex.step_done

    def dies_after_the_run(self, die_id, name, record):
        if name == "map":
            raise KeyboardInterrupt("killed")
        return real(self, die_id, name, record)

    monkeypatch.setattr(WaferIndex, "step_done", dies_after_the_run)
    with pytest.raises(KeyboardInterrupt):
        run(bench, recipe([12]), results=tmp_path)
    monkeypatch.undo()
    store = DieStore(tmp_path / bench.wafer_name / "die_12.h5")
    assert [r.status for r in store.runs() if r.protocol == "variability"] == ["complete"]
    result = run(bench, recipe([12]), results=tmp_path)
    assert result.done == 1 and result.rows[0]["bin"] == 1
    assert [r.status for r in store.runs() if r.protocol == "variability"] == ["complete"]
    entry = read_index(tmp_path / bench.wafer_name)["dies"]["12"]
    assert entry["steps"]["map"]["adopted"] and entry["figures"]["map.yield"] >= 0.9
