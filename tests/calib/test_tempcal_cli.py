"""`calib tempcal` and `calib infer --temperature` as a user runs them: the bundled model on
die 12, a chuck sweep fitting its temperature model, inference at 85 degC compensated, a
stale model, a chuck that never settles, and every bad input as one line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from calib import open_bench
from calib.cli import main
from calib.jobs.infer import InferOptions, infer_die
from calib.jobs.tempcal import TempcalInputError, parse_temps
from calib.store import DieStore
from protocols.tempcal import TemperatureModel


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    results = tmp_path_factory.mktemp("tempcal")
    out = run("infer", "--die", 12, "--results", results, "--json")
    assert out.exit_code == 0, out.output
    out = run("tempcal", "--die", 12, "--results", results, "--temps", "25,45,65,85", "--json")
    assert out.exit_code == 0, out.output
    return results, json.loads(out.output)


def test_the_sweep_is_a_run_with_its_model_as_an_artifact(calibrated):
    _, s = calibrated
    assert s["temps_c"] == [25, 45, 65, 85] and s["reference_c"] == 25
    assert [v["setpoint_c"] for v in s["visits"]] == [25, 85, 25, 65, 25, 45, 25]
    store = DieStore(s["file"])
    data = store.read_run(s["run"])
    assert data["status"] == "complete" and data["protocol"] == "tempcal"
    assert data["conductance"].shape == (7, 64, 64) and data["coefficients"].shape == (64, 64)
    assert data["progress"].shape == (7,)
    assert np.all(np.abs(data["progress"]["measured_c"] - data["progress"]["setpoint_c"]) < 1)
    arrays, meta = store.load_artifact("temperature_model", s["run"])
    model = TemperatureModel.from_arrays({**arrays, **{k: np.asarray(v) for k, v in
                                                       meta["text"].items()}})
    assert model.shape == (64, 64) and model.law in ("linear", "arrhenius")
    assert s["model"]["cells_measured"] > 0.5 * 64 * 64
    assert s["sweep"]["bench_time_s"] > 6 * 120  # settled and soaked at every visit


def test_inference_at_85_degC_is_compensated(calibrated, tmp_path):
    results, _ = calibrated
    copy = tmp_path / "r"
    shutil.copytree(results, copy)
    with open_bench() as b:
        s = infer_die(b, 12, InferOptions(compensation=("none", "temperature"),
                                          temperature_c=85.0), results=copy)
        assert b.thermal.setpoint() == 25.0  # the chuck went home
    acc = s["accuracy"]["0s"]
    t = s["temperature"]
    home = t["ages"][0]["home_accuracy"]
    assert t["home_c"] == 25 and t["setpoint_c"] == 85 and t["drift_stacked"]
    assert acc["temperature"] >= home - 0.015  # 5 test images of 359
    assert acc["none"] < acc["temperature"]
    die = t["ages"][0]["die_c"]
    assert die["source"] == "reference cells" and abs(die["temperature_c"] - 84) < 2
    assert t["corrections"][0]["method"] == "tile"
    assert not s["programmed_now"]
    stored = DieStore(s["file"]).read_run(s["run"])
    assert stored["status"] == "complete" and stored["params"]["temperature_c"] == 85


def test_a_chuck_that_never_settles_fails_the_run_in_one_line(calibrated, tmp_path):
    results, _ = calibrated
    copy = tmp_path / "r"
    shutil.copytree(results, copy)
    out = run("infer", "--die", 12, "--results", copy, "--temperature", 85,
              "--compensation", "temperature", "--settle-timeout", 1)
    assert out.exit_code == 1 and "did not settle at 85 degC within 1 s" in out.output
    assert "Traceback" not in out.output
    runs = DieStore(copy / "sim-w200-seed7" / "die_12.h5").runs()
    assert runs[-1].protocol == "infer" and runs[-1].status == "failed"
    out = run("tempcal", "--die", 12, "--results", copy, "--settle-timeout", 1)
    assert out.exit_code == 1 and "did not settle" in out.output


def test_a_model_made_stale_by_programming_is_refused(calibrated, tmp_path):
    results, _ = calibrated
    copy = tmp_path / "r"
    shutil.copytree(results, copy)
    out = run("infer", "--die", 12, "--results", copy, "--reprogram")
    assert out.exit_code == 0, out.output
    out = run("infer", "--die", 12, "--results", copy, "--compensation", "temperature")
    assert out.exit_code == 1 and "is stale" in out.output and "calib tempcal" in out.output


def test_parse_temps():
    assert parse_temps("25, 45,65C,85") == (25.0, 45.0, 65.0, 85.0)
    for bad in ("25,warm", "25,nan", "25,45,25"):
        with pytest.raises(TempcalInputError):
            parse_temps(bad)


def test_bad_inputs_are_one_line(calibrated, tmp_path):
    results, _ = calibrated
    fresh = tmp_path / "fresh"
    cases = [
        (["tempcal", "--results", fresh, "--temps", "25,200"], "outside [-40, 125]"),
        (["tempcal", "--results", fresh, "--temps", "25"], "at least two set points"),
        (["tempcal", "--results", fresh, "--temps", "25,45", "--reference", 30],
         "must be one of --temps"),
        (["tempcal", "--results", fresh], "holds nothing programmed"),
        (["tempcal", "--results", fresh, "--soak", -1], "--soak"),
        (["infer", "--results", fresh, "--temperature", 200], "outside [-40, 125]"),
        (["infer", "--results", fresh, "--temperature", 85, "--soak", -5], "--soak"),
        (["infer", "--results", fresh, "--temperature", 85, "--settle-timeout", 0],
         "--settle-timeout"),
        (["infer", "--results", fresh, "--compensation", "temperature"],
         "holds no programmed"),
        (["infer", "--results", results, "--compensation", "temperature", "--reprogram"],
         "stale"),
        (["infer", "--results", fresh, "--compensation", "warmth"], "choose from"),
    ]
    for extra, message in cases:
        out = run(extra[0], "--die", 12, *extra[1:])
        assert out.exit_code != 0, extra
        assert message in out.output, (extra, out.output)
        assert "Traceback" not in out.output
    assert not fresh.exists()  # nothing was sent, nothing written


def test_no_temperature_model_is_one_line(tmp_path):
    out = run("infer", "--die", 12, "--results", tmp_path, "--json")
    assert out.exit_code == 0, out.output
    out = run("infer", "--die", 12, "--results", tmp_path, "--compensation", "temperature")
    assert out.exit_code == 1 and "no temperature model" in out.output
