"""`calib infer` as a user runs it: the bundled digits model on die 12, its run and
artifacts, reuse of a programmed die, and every bad input as one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from calib.cli import main
from calib.jobs.infer import InferInputError, parse_ages
from calib.store import DieStore
from protocols.inference import Layer, Network, digits_test_set


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def programmed(tmp_path_factory):
    results = tmp_path_factory.mktemp("infer")
    out = run("infer", "--die", 12, "--results", results, "--at", "0,1d",
              "--compensation", "none,column", "--json")
    assert out.exit_code == 0, out.output
    return results, json.loads(out.output)


def test_digits_on_die_12_against_float(programmed):
    results, s = programmed
    assert s["programmed_now"] and s["samples"] == 359
    assert s["float_accuracy"] == pytest.approx(0.9833, abs=1e-3)
    now = s["accuracy"]["0s"]
    assert now["none"] > s["float_accuracy"] - 0.04  # on the chip, die 12, 8-bit inputs
    assert set(s["accuracy"]) == {"0s", "1d"} and set(now) == {"none", "column"}
    assert len(s["layer_mvm_error"]) == 2 and all(0 < e < 0.3 for e in s["layer_mvm_error"])
    assert s["calibration_transactions"]["column"] > 0
    store = DieStore(s["file"])
    data = store.read_run(s["run"])
    assert data["status"] == "complete" and data["accuracy"].shape == (2, 2)
    arrays, meta = store.load_artifact("mapping", s["run"])
    assert arrays["targets"].shape == (64, 64)
    assert meta["calibrated"] == ["column", "global", "reference"]  # a later infer may ask any


def test_a_programmed_die_is_reused_and_a_pulsed_one_is_not(programmed, tmp_path):
    results, first = programmed
    out = run("infer", "--die", 12, "--results", results, "--no-program",
              "--compensation", "column", "--json")
    assert out.exit_code == 0, out.output
    s = json.loads(out.output)
    assert not s["programmed_now"] and s["programmed_in"] == first["run"]
    out = run("infer", "--die", 12, "--results", results, "--no-program",
              "--compensation", "global", "--json")  # every method was calibrated
    assert out.exit_code == 0 and json.loads(out.output)["programmed_in"] == first["run"]
    out = run("program", "--die", 12, "--results", results, "--pattern", "random")
    assert out.exit_code == 0, out.output
    out = run("infer", "--die", 12, "--results", results, "--no-program")
    assert out.exit_code != 0 and "holds no programmed" in out.output
    assert len(out.output.strip().splitlines()) == 1


def test_report_plots_accuracy_against_age(programmed, tmp_path):
    results, s = programmed
    out = run("report", s["file"], "--out", tmp_path / "rep")
    assert out.exit_code == 0, out.output
    assert (tmp_path / "rep" / f"die_12_{s['run']}.png").stat().st_size > 1000
    text = "".join(p.read_text() for p in (tmp_path / "rep").glob("*.txt"))
    assert "at 1d: none" in text


def test_parse_ages():
    assert parse_ages("1y,0,1h,30d,1d") == (0.0, 3600.0, 86400.0, 2592000.0, 31557600.0)
    for bad in ("", "1 fortnight", "-1h", "nan"):
        with pytest.raises(InferInputError):
            parse_ages(bad)


def test_bad_inputs_are_one_line(tmp_path):
    x, y = digits_test_set()
    wide = tmp_path / "wide.npz"
    Network((Layer(np.zeros((100, 20)), np.zeros(20), "relu"),
             Layer(np.zeros((20, 10)), np.zeros(10), "none"))).to_npz(wide)
    narrow = tmp_path / "narrow.npz"
    np.savez(narrow, X=x[:, :32], y=y)
    nan = tmp_path / "nan.npz"
    xn = x.copy()
    xn[3, 5] = np.nan
    np.savez(nan, X=xn, y=y)
    labels = tmp_path / "labels.npz"
    np.savez(labels, X=x, y=y + 10)
    empty = tmp_path / "empty.npz"
    np.savez(empty, Z=x)
    cases = [
        (["--model", wide], "100 rows"),
        (["--dataset", narrow], "the network takes (n, 64)"),
        (["--dataset", nan], "NaN"),
        (["--dataset", labels], "labels must be whole numbers in 0..9"),
        (["--dataset", empty], "needs arrays X and y"),
        (["--compensation", "magic"], "choose from"),
        (["--at", "soon"], "--at 'soon'"),
        (["--reprogram", "--no-program"], "not both"),
        (["--no-program"], "holds no programmed"),
    ]
    for extra, message in cases:
        out = run("infer", "--die", 12, "--results", tmp_path / "r", *extra)
        assert out.exit_code != 0, extra
        assert message in out.output, (extra, out.output)
        assert "Traceback" not in out.output


def test_drifted_pcm_is_read_with_more_conversions(tmp_path):
    """A month on, PCM's signal fell by the drift and the output noise did not: the column
    compensation converts each vector more often (one transaction still)."""
    bench = tmp_path / "pcm.toml"
    bench.write_text('[chip]\ndatasheet = "pcm"\n[simulation]\nseed = 7\n')
    out = run("infer", "--die", 12, "--results", tmp_path / "r", "--bench", bench,
              "--at", "0,30d", "--compensation", "none,column", "--json")
    assert out.exit_code == 0, out.output
    s = json.loads(out.output)
    assert s["most_repeats"]["column"] >= 2
    assert s["accuracy"]["30d"]["column"] > s["accuracy"]["30d"]["none"] + 0.03
    assert s["programming"]["pulses"] > 0 and s["programming"]["reference_cells"] == 256
