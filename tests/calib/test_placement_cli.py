"""`calib program --placement fault-aware`: the die's map, its checks, the stored placement."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from calib.cli import main
from calib.store import DieStore, die_path, schema
from protocols.placement import weights_from_placement
from protocols.variability.result import PER_CELL, Fault, ReadNoiseLaw, VariabilityMap

US = 1e-6
WAFER = "w-test"


@pytest.fixture(autouse=True)
def variability_job(monkeypatch):
    """The `variability` job as the mapping job declares it (added here until it is)."""
    if "variability" not in schema.JOBS:
        datasets = tuple(schema.Dataset(n, "float", n) for n in PER_CELL)
        datasets += (schema.Dataset("fault", "int", "fault class"),)
        monkeypatch.setitem(schema.JOBS, "variability",
                            schema.Job("variability", "variability map", datasets))


def truth_map() -> VariabilityMap:
    """The map of die 12 of the embedded bench, from the simulator's truth."""
    from calib import open_bench

    with open_bench() as bench:
        bench.prober.goto(12)
        t = bench.simulation.chip.truth()
    fault = np.zeros(t.g.shape, np.uint8)
    fault[t.g_max < 40 * US] = Fault.NARROW
    fault[t.stuck] = Fault.STUCK_LOW
    fault[t.stuck_high] = Fault.STUCK_HIGH
    g = np.where(t.stuck, t.g, np.nan)
    nan = np.full(t.g.shape, np.nan)
    return VariabilityMap(g_min=np.where(t.stuck, g, t.g_min), g_max=np.where(t.stuck, g, t.g_max),
                          g_min_c2c=nan, g_max_c2c=nan, set_threshold=nan, reset_threshold=nan,
                          set_rate=1 - np.exp(-t.set_rate), reset_rate=1 - np.exp(-t.reset_rate),
                          fault=fault, read_noise=ReadNoiseLaw(2e-8, 0.01),
                          usable_window=(1 * US, 40 * US), pulses_per_cell=100.0,
                          transactions=250, bench_time_s=1.0, wall_time_s=1.0, cycles=5)


def store_for(tmp_path) -> DieStore:
    return DieStore(die_path(tmp_path, WAFER, 12), WAFER, 12)


def add_run(store, job, arrays, summary):
    run_id = store.start_run(job, {}, chip="rram")
    store.finish_run(run_id, arrays, summary)
    return run_id


def add_map(store, vmap):
    return add_run(store, "variability", vmap.arrays(), vmap.summary())


def program(tmp_path, w_file, *extra):
    return CliRunner().invoke(main, ["program", "--die", "12", "--weights", str(w_file),
                                     "--placement", "fault-aware", "--results", str(tmp_path),
                                     "--wafer", WAFER, *extra])


@pytest.fixture
def w_file(tmp_path):
    path = tmp_path / "w.npy"
    np.save(path, np.random.default_rng(0).normal(size=(48, 24)))
    return path


def test_no_map_is_a_one_line_error_naming_calib_map(tmp_path, w_file):
    result = program(tmp_path, w_file)
    assert result.exit_code != 0
    assert "no variability map" in result.output and "calib map --die 12" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not store_for(tmp_path).path.exists()  # nothing was programmed or formed


def test_map_older_than_forming_is_refused(tmp_path, w_file):
    store = store_for(tmp_path)
    map_run = add_map(store, truth_map())
    form_run = add_run(store, "form", {"formed_mask": np.ones((64, 64), bool)},
                       {"cells_pristine": 4096, "cells_formed": 4096})
    result = program(tmp_path, w_file)
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert f"({map_run}) is older than the last forming ({form_run})" in result.output
    assert "calib map --die 12" in result.output
    assert [r.protocol for r in store.runs()] == ["variability", "form"]


def test_forming_that_formed_nothing_keeps_the_map(tmp_path, w_file):
    store = store_for(tmp_path)
    add_map(store, truth_map())
    add_run(store, "form", {"formed_mask": np.zeros((64, 64), bool)},
            {"cells_pristine": 3, "cells_formed": 0})
    from calib.jobs.program import latest_variability_map

    assert latest_variability_map(store).extra["run"].endswith("_variability")


def test_fault_aware_programs_and_stores_the_placement(tmp_path, w_file):
    store = store_for(tmp_path)
    map_run = add_map(store, truth_map())
    result = program(tmp_path, w_file, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    placed = summary["placement"]
    assert placed["method"] == "fault-aware" and placed["map_run"] == map_run
    assert placed["expected_weight_error"] < placed["expected_weight_error_naive"]
    data = store.read_run(summary["run"])
    params = data["params"]["placement"]
    assert len(params["rows"]) == 48 and len(params["cols"]) == 24
    assert "placement" in data["artifacts"]
    arrays, meta = store.load_artifact("placement", summary["run"])
    assert arrays["row_map"].tolist() == params["rows"]
    assert arrays["col_map"].tolist() == params["cols"] and meta["map_run"] == map_run
    # reading the weights back undoes the placement
    from calib.jobs.program import run_placement

    p = run_placement(data)
    w = np.load(w_file)
    assert np.allclose(data["weights_achieved"], weights_from_placement(data["final"], p))
    assert np.linalg.norm(data["weights_achieved"] - w) / np.linalg.norm(w) < 0.15
    assert np.allclose(data["weights_target"], w, atol=0.05 * np.abs(w).max())


def test_fault_aware_needs_weights_not_targets(tmp_path):
    result = CliRunner().invoke(main, ["program", "--die", "12", "--pattern", "random",
                                       "--placement", "fault-aware", "--results",
                                       str(tmp_path)])
    assert result.exit_code != 0 and "places weights" in result.output
    assert "Traceback" not in result.output
