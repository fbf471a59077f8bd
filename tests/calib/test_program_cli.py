"""`calib program` and `calib report` as a user at the bench runs them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from calib.cli import main
from calib.store import DieStore

KEYS = {"die", "cells", "in_band_fraction", "unresponsive_cells", "unreachable_cells",
        "pulses_mean", "pulses_p99", "iterations", "transactions", "bench_time_s",
        "wall_time_s", "file"}


def run(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_program_default_example_layer_json(tmp_path):
    result = run(["program", "--die", "12", "--results", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert KEYS <= set(summary)
    assert summary["die"] == 12 and summary["cells"] == 64 * 64
    assert summary["in_band_fraction"] > 0.95
    store = DieStore(summary["file"])
    runs = store.runs()
    assert [r.protocol for r in runs] == ["form", "write_verify"]
    assert all(r.status == "complete" for r in runs)
    data = store.read_run(runs[1].run_id)
    assert data["weights_achieved"].shape == (64, 32)
    assert data["params"]["target_source"] == "example:layer.npy"


def test_program_human_summary_and_report(tmp_path):
    result = run(["program", "--die", "5", "--pattern", "checkerboard", "--results",
                  str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "die 5:" in result.output and "stored" in result.output
    files = list(tmp_path.rglob("die_5.h5"))
    assert len(files) == 1
    out = run(["report", str(files[0]), "--out", str(tmp_path / "rep")])
    assert out.exit_code == 0, out.output
    pngs = list((tmp_path / "rep").glob("*.png"))
    assert len(pngs) == 1 and pngs[0].stat().st_size > 10_000
    assert (tmp_path / "rep" / "die_5_summary.txt").read_text().count("write_verify") >= 1


def test_relax_wait_zero_skips_touch_up(tmp_path):
    result = run(["program", "--die", "4", "--pattern", "random", "--relax-wait", "0",
                  "--results", str(tmp_path), "--json"])
    summary = json.loads(result.output)
    assert summary["bench_time_s"] < 2.0 and summary["relax_wait_time_s"] == 0.0
    run_data = DieStore(summary["file"]).read_run(summary["run"])
    assert run_data["params"]["relax_wait_s"] == 0.0


def test_read_averages_option_reaches_the_protocol(tmp_path):
    result = run(["program", "--die", "4", "--pattern", "random", "--read-averages", "1",
                  "--results", str(tmp_path), "--json"])
    summary = json.loads(result.output)
    assert DieStore(summary["file"]).read_run(summary["run"])["params"]["read_averages"] == 1


def test_program_target_file_and_weights_file(tmp_path):
    target = np.full((64, 64), np.nan)
    target[:8, :8] = 20e-6
    np.save(tmp_path / "t.npy", target)
    result = run(["program", "--die", "7", "--target", str(tmp_path / "t.npy"), "--results",
                  str(tmp_path), "--json"])
    assert json.loads(result.output)["cells"] == 64
    np.save(tmp_path / "w.npy", np.random.default_rng(0).normal(size=(10, 4)))
    result = run(["program", "--die", "7", "--weights", str(tmp_path / "w.npy"), "--results",
                  str(tmp_path), "--json"])
    assert json.loads(result.output)["cells"] == 80


@pytest.mark.parametrize("args, message", [
    (["--die", "999"], "no die 999"),
    (["--die", "3", "--target", "/nonexistent.npy"], "not found"),
    (["--die", "3", "--pattern", "checkerboard", "--tolerance", "1"], "plausible band"),
    (["--die", "3", "--pattern", "random", "--max-pulses", "0"], "max-pulses"),
    (["--die", "3", "--pattern", "random", "--relax-wait", "-1"], "relax-wait"),
    (["--die", "3", "--pattern", "random", "--read-averages", "0"], "read-averages"),
    (["--die", "3", "--pattern", "random", "--target", "x.npy"], "only one of"),
    (["--die", "3", "--bench", "/nope.toml"], "no such bench config"),
])
def test_bad_input_is_one_line_and_non_zero(tmp_path, args, message):
    result = CliRunner().invoke(main, ["program", *args, "--results", str(tmp_path)])
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output


def test_bad_target_files(tmp_path):
    np.save(tmp_path / "big.npy", np.full((64, 64), 50e-6))
    np.save(tmp_path / "wide.npy", np.ones((65, 2)) * 1e-5)
    (tmp_path / "junk.npy").write_bytes(b"junk")
    for name, message in (("big.npy", "outside the chip window"),
                          ("wide.npy", "does not fit"), ("junk.npy", "not a readable")):
        result = CliRunner().invoke(main, ["program", "--die", "3", "--target",
                                           str(tmp_path / name), "--results", str(tmp_path)])
        assert result.exit_code != 0 and message in result.output, result.output


def test_bench_that_does_not_answer(tmp_path):
    config = tmp_path / "dead.toml"
    config.write_text('[chip]\ndatasheet = "rram"\n[roles.array]\ndriver = "reference-array"\n'
                      'resource = "TCPIP::127.0.0.1::9::SOCKET"\ntimeout_s = 0.3\n'
                      '[roles.clock]\ndriver = "wall-clock"\n')
    result = CliRunner().invoke(main, ["program", "--die", "3", "--bench", str(config),
                                       "--results", str(tmp_path)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "cannot open TCPIP::127.0.0.1::9::SOCKET" in result.output


def test_report_of_a_missing_or_foreign_file(tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path / "none.h5")])
    assert result.exit_code != 0 and "no such die file" in result.output
    (tmp_path / "x.h5").write_text("hello")
    result = CliRunner().invoke(main, ["report", str(tmp_path / "x.h5")])
    assert result.exit_code != 0 and "not a readable HDF5" in result.output


def test_interrupted_program_is_marked(tmp_path, monkeypatch):
    import protocols

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(protocols, "write_verify", boom)
    result = CliRunner().invoke(main, ["program", "--die", "12", "--pattern", "random",
                                       "--results", str(tmp_path)])
    assert result.exit_code != 0
    store = DieStore(next(tmp_path.rglob("die_12.h5")))
    assert store.runs()[-1].status == "interrupted"


def test_a_die_that_never_moves_gets_a_hint(tmp_path):
    result = CliRunner().invoke(main, ["program", "--die", "5", "--pattern", "random",
                                       "--results", str(tmp_path)])
    assert result.exit_code == 0
    assert "most cells never moved" in result.output
