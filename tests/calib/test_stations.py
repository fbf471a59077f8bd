"""The bundled stations a lab may own, on the simulated bench over loopback TCP."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from calib import open_bench
from calib.cli import main
from calib.jobs import ProgramOptions, Targets, program_die

STATIONS = {"station-2600b": "Keithley2600B", "station-b2900": "KeysightB2900"}


@pytest.mark.parametrize("station", sorted(STATIONS))
def test_bench_check_on_each_station(station):
    result = CliRunner().invoke(main, ["bench", "check", "--bench", station, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert all(r["status"] == "ok" for r in report["roles"].values()), report
    assert report["roles"]["smu"]["driver"] == STATIONS[station]
    assert report["roles"]["array"]["driver"] == "SmuSwitchArray"


@pytest.mark.parametrize("station", sorted(STATIONS))
def test_programming_through_the_smu_and_matrix_is_truth_scored(station, tmp_path):
    with open_bench(station) as bench:
        w = bench.datasheet.window
        target = np.random.default_rng(8).uniform(w.g_min, w.g_max, bench.datasheet.shape)
        summary = program_die(bench, 12, Targets(target, "test"), ProgramOptions(),
                              results=tmp_path)
        truth = bench.simulation.chip.truth()
    ok = ~truth.stuck & (target >= truth.g_min) & (target <= truth.g_max)
    assert (np.abs(truth.g - target) <= 1e-6)[ok].mean() >= 0.95
    assert summary["transactions"] > 64 * 10  # cell by cell: many transactions per pulse


def test_calib_program_on_the_2600b_station(tmp_path):
    result = CliRunner().invoke(main, ["program", "--die", "12", "--bench", "station-2600b",
                                       "--pattern", "random", "--results", str(tmp_path),
                                       "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["cells"] == 64 and summary["in_band_fraction"] >= 0.95
