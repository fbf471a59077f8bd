"""`calib program --hold`: durations parsed like `calib infer --at`, bad ones refused in one
line before any byte; the hold run reports in band now and predicted at the hold time."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from calib import open_bench
from calib.cli import main
from calib.jobs import ProgramInputError, ProgramOptions, make_targets, program_die
from calib.jobs.program import parse_hold
from calib.store import DieStore
from protocols.write_verify import RelaxationLaw


def run(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


@pytest.mark.parametrize("text, seconds", [("1h", 3600.0), ("30min", 1800.0), ("90s", 90.0),
                                           ("90", 90.0), ("1d", 86400.0), ("0", 0.0)])
def test_hold_durations(text, seconds):
    assert parse_hold(text) == seconds


@pytest.mark.parametrize("text", ["1x", "-1h", "1h,2h", "nan", "inf", "", "h"])
def test_bad_hold_on_the_command_line_is_one_line_and_sends_nothing(tmp_path, text):
    result = run(["program", "--die", "12", "--hold", text, "--results", str(tmp_path)])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "--hold" in lines[0], result.output
    assert not list(tmp_path.rglob("*.h5"))


@pytest.mark.parametrize("hold", [-1.0, float("nan"), float("inf")])
def test_bad_hold_option_forms_nothing_and_sends_nothing(tmp_path, hold):
    with open_bench() as bench:
        w = bench.datasheet.window
        targets = make_targets(bench.datasheet.shape, w.g_min, w.g_max, pattern="random")
        with pytest.raises(ProgramInputError, match="--hold"):
            program_die(bench, 12, targets, ProgramOptions(hold_s=hold), results=tmp_path)
        assert sum(bench.simulation.transactions.values()) == 0
        assert bench.simulation.wafer.die(12).truth().formed.sum() == 0


def test_program_with_hold_reports_now_and_at_the_hold_time(tmp_path):
    result = run(["program", "--die", "12", "--pattern", "random", "--hold", "1h",
                  "--results", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    s = json.loads(result.output)
    assert s["hold_s"] == 3600.0 and s["hold_rounds"] >= 2
    assert s["in_band_hold_predicted"] > 0.9 and s["in_band_now_fraction"] > 0.9
    assert "relaxation" in s["artifacts"]
    store = DieStore(s["file"])
    run_data = store.read_run(s["run"])
    assert run_data["params"]["hold"]["hold_s"] == 3600.0
    arrays, _ = store.load_artifact("relaxation", s["run"])
    law = RelaxationLaw.from_arrays(arrays)  # what a later job on this die starts from
    assert law.shift_per_ln_s < 0 and law.samples > 0


def test_program_with_hold_prints_the_hold_line(tmp_path):
    result = run(["program", "--die", "12", "--pattern", "random", "--hold", "30min",
                  "--results", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "predicted at the hold time" in result.output
