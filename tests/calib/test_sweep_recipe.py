"""Sweep recipes, the route and the wafer index, without a bench."""

from __future__ import annotations

import json
import os

import pytest

from calib.sweep import bundled_recipes, load_recipe, parse_recipe
from calib.sweep.figures import STEP_FIGURES, step_figures
from calib.sweep.index import INDEX_NAME, WaferIndex, WaferIndexError, read_index
from calib.sweep.recipe import RecipeError
from calib.sweep.route import DieSite, normalised_radii, plan_route, serpentine

BASE = {"recipe": {"name": "t"}, "steps": [{"step": "map", "quick": True}],
        "bins": {"rules": [{"when": "map.stuck_fraction > 0.05", "bin": 3, "name": "stuck"}]}}


def recipe(**changes):
    doc = json.loads(json.dumps(BASE))
    for key, value in changes.items():
        doc[key] = value
    return parse_recipe(doc)


def test_bundled_recipes_load():
    names = set(bundled_recipes())
    assert {"quick-map", "map-and-program", "user-step"} <= names
    for name in names:
        r = load_recipe(name)
        assert r.steps and r.bins()
    r = load_recipe("map-and-program")
    assert [s.kind for s in r.steps] == ["map", "program"]
    assert r.steps[1].options["placement"] == "fault-aware"
    assert r.bins()[1] == ("good", True) and r.bins()[9] == ("no contact", False)


@pytest.mark.parametrize("changes, message", [
    ({"steps": [{"step": "etch"}]}, "unknown step"),
    ({"steps": [{"step": "map", "quick": "yes"}]}, "quick: expected true or false"),
    ({"steps": [{"step": "map", "speed": 2}]}, "speed: unknown key"),
    ({"steps": [{"step": "map"}, {"step": "map"}]}, "name each repeated step"),
    ({"steps": []}, "at least one"),
    ({"bins": {"rules": [{"when": "map.stuck_fraction >> 1", "bin": 3}]}}, "figure op number"),
    ({"bins": {"rules": [{"when": "program.yield > 0.5", "bin": 1}]}}, "no step of this"),
    ({"bins": {"rules": [{"when": "map.yield > 0.5", "bin": -1}]}}, "0..32767"),
    ({"bins": {"rules": [{"when": "map.yield > 0.5", "bin": 1, "pass": "y"}]}}, "pass:"),
    ({"bins": {"special": {"lunch": 4}}}, "unknown outcome"),
    ({"dies": {"select": "most"}}, "dies.select"),
    ({"dies": {"select": "40-10"}}, "backwards"),
    ({"dies": {"route": "spiral"}}, "serpentine or file"),
    ({"dies": {"every": 0}}, "dies.every"),
    ({"conditions": {"temperature": 85}}, "needs a unit"),
    ({"conditions": {"settle_timeout": "10 V"}}, "time"),
    ({"contact": {"cells": 1}}, "4..4096"),
    ({"steps": [{"step": "program", "pattern": "plaid"}]}, "pattern 'plaid'"),
    ({"steps": [{"step": "program", "tolerance": "1 mS"}]}, "plausible band"),
    ({"steps": [{"step": "user", "function": "nope"}]}, "package.module:function"),
    ({"steps": [{"step": "user", "function": "no_such_mod_x:f"}]}, "cannot import"),
    ({"steps": [{"step": "user", "function": "json:no_such_function"}]}, "has no function"),
    ({"surprise": {}}, "surprise: unknown key"),
])
def test_bad_recipes_are_one_line_errors(changes, message):
    with pytest.raises(RecipeError, match=message) as info:
        recipe(**changes)
    assert "\n" not in str(info.value)


def test_rule_names_resolve_and_ambiguity_is_refused():
    r = recipe(bins={"rules": [{"when": "stuck_fraction > 0.05 and yield < 1", "bin": 3}]})
    assert [c.figure for c in r.rules[0].conditions] == ["map.stuck_fraction", "map.yield"]
    steps = [{"step": "map"}, {"step": "program", "pattern": "random"}]
    with pytest.raises(RecipeError, match="more than one step"):
        recipe(steps=steps, bins={"rules": [{"when": "yield > 0.9", "bin": 1}]})
    r = recipe(steps=steps, bins={"rules": [{"when": "program.yield > 0.9", "bin": 1}]})
    assert r.decide({"program.yield": 0.95}) == (1, "bin 1", True)
    assert r.decide({"program.yield": 0.5}) == (2, "fail", False)
    assert r.decide({}) == (2, "fail", False)  # a missing figure matches no rule
    user = recipe(steps=[{"step": "user", "name": "leak", "function": "json:dumps"}],
                  bins={"rules": [{"when": "leak.current < 1e-9", "bin": 1}]})
    assert user.rules[0].conditions[0].figure == "leak.current"


def test_step_figures_are_the_declared_ones():
    s = {"cells": 4, "yield": 0.5, "faults": {"stuck_low": 1, "stuck_high": 1, "unformed": 0,
                                             "narrow": 0, "unresponsive": 0},
         "d2d": {"g_max": {"median": 4e-5, "log_std": 0.1}, "g_min": {"median": 1e-6}},
         "read_noise": {"a_s": 1e-8, "b": 0.01, "c": 1.0}, "pulses_per_cell": 50.0,
         "cycles": 2, "bench_time_s": 1.0}
    got = step_figures("map", s)
    assert set(got) <= set(STEP_FIGURES["map"])
    assert got["stuck_fraction"] == 0.5 and got["g_max_median_siemens"] == 4e-5


def grid(n=5):
    return [DieSite(i + 1, i % n, i // n) for i in range(n * n)]


def test_serpentine_reverses_every_other_row():
    order = [(s.x, s.y) for s in serpentine(grid(3))]
    assert order == [(0, 0), (1, 0), (2, 0), (2, 1), (1, 1), (0, 1), (0, 2), (1, 2), (2, 2)]


def test_selection_modes():
    sites = grid(5)
    sel = recipe(dies={"select": [7, 3, 3, 9], "route": "file"}).selection
    assert [s.id for s in plan_route(sites, sel, "file")] == [7, 3, 9]
    sel = recipe(dies={"select": "2-6", "every": 2}).selection
    assert [s.id for s in plan_route(sites, sel, "serpentine")] == [2, 4, 6]
    radii = normalised_radii(sites)
    assert radii[13] == 0 and max(radii.values()) == 1
    sel = recipe(dies={"select": "inner", "inner_radius": 0.4}).selection
    assert {s.id for s in plan_route(sites, sel, "serpentine")} == {8, 12, 13, 14, 18}
    sel = recipe(dies={"select": "all", "exclude": [1, 2]}).selection
    assert len(plan_route(sites, sel, "serpentine")) == 23
    with pytest.raises(RecipeError, match="die 99 is not on the prober's wafer map"):
        plan_route(sites, recipe(dies={"select": [1, 99]}).selection, "file")


def test_index_resumes_refuses_foreign_and_survives_a_failed_write(tmp_path, monkeypatch):
    r, sites = recipe(), grid(2)
    with WaferIndex(tmp_path, "w1").open(r, sites) as index:
        index.update(1, state="done", bin=1)
        index.update(2, state="running")
        assert index.pending() == [2, 3, 4]
        with pytest.raises(WaferIndexError, match="being swept by another process"):
            WaferIndex(tmp_path, "w1").open(r, sites)
        before = (tmp_path / INDEX_NAME).read_text()

        def full_disk(*a, **k):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "replace", full_disk)
        with pytest.raises(OSError):
            index.update(3, state="done")
        monkeypatch.undo()
        assert (tmp_path / INDEX_NAME).read_text() == before  # old index intact
        assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]
    with WaferIndex(tmp_path, "w1").open(r, sites) as index:  # a new process resumes
        assert index.die(1)["state"] == "done" and index.pending() == [2, 3, 4]
    with pytest.raises(WaferIndexError, match="holds wafer 'w1'"):
        WaferIndex(tmp_path, "w2").open(r, sites)
    other = recipe(steps=[{"step": "map", "quick": False}])
    with pytest.raises(WaferIndexError, match="--redo"):
        WaferIndex(tmp_path, "w1").open(other, sites)
    with WaferIndex(tmp_path, "w1").open(other, sites, redo=True) as index:
        assert index.pending() == [1, 2, 3, 4]
    (tmp_path / INDEX_NAME).write_text("{not json")
    with pytest.raises(WaferIndexError, match="not a wafer index"):
        read_index(tmp_path)
