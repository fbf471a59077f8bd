"""A lab's bench: instruments reached by resource string, the chip known by its datasheet only.

The simulated instruments are served over loopback TCP as ``calib sim serve``
serves them; the host is given only a datasheet-only chip file and the
resource strings, as at a real station, and is scored against the simulator's
ground truth.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from calib.cli import main
from calib.store import DieStore
from instruments.datasheet import bundled_datasheet
from sim_backend.bench import SimBench

ROLE_DRIVERS = {"array": "reference-array", "smu": "keithley2450", "switch": "keithley707b",
                "prober": "sentio", "clock": "virtual-clock"}


@pytest.fixture
def lab(tmp_path):
    sim = SimBench("rram", seed=7)
    servers = sim.serve()
    sheet = tmp_path / "my-chip.toml"
    shutil.copy(bundled_datasheet("rram"), sheet)
    lines = ['[chip]', 'datasheet = "my-chip.toml"', '']
    for role, driver in ROLE_DRIVERS.items():
        lines += [f"[roles.{role}]", f'driver = "{driver}"',
                  f'resource = "{servers.resources[role]}"', ""]
    lines += ["[roles.thermal]", 'driver = "sentio"', ""]
    config = tmp_path / "lab.toml"
    config.write_text("\n".join(lines))
    yield sim, config
    servers.stop()


def test_datasheet_only_chip_file_has_no_physics():
    text = bundled_datasheet("rram").read_text()
    for physics in ("[bounds]", "[response]", "[relaxation]", "[drift]", "[read_noise]"):
        assert physics not in text


def test_bench_check_on_a_datasheet_only_lab_bench(lab):
    _, config = lab
    result = CliRunner().invoke(main, ["bench", "check", "--bench", str(config), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert not report["simulated"]
    assert all(r["status"] == "ok" for r in report["roles"].values()), report
    assert report["limits"]["max_pulse_width"] == 100e-6


def test_program_on_a_datasheet_only_lab_bench_is_truth_scored(lab, tmp_path):
    sim, config = lab
    result = CliRunner().invoke(main, ["program", "--die", "12", "--pattern", "random",
                                       "--bench", str(config), "--results",
                                       str(tmp_path / "r"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    run = DieStore(summary["file"]).read_run(summary["run"])
    target = run["target"]
    truth = sim.wafer.die(12).truth()
    responsive = ~truth.stuck & (target >= truth.g_min) & (target <= truth.g_max)
    in_band = np.abs(truth.g - target) <= 1e-6
    assert in_band[responsive].mean() >= 0.995
    assert run["datasheet"]["chip"]["name"] == "rram"


def test_a_second_process_cannot_take_a_bench_in_use(lab, tmp_path, monkeypatch):
    """Exclusive use of the instruments for the length of a job; released when it ends."""
    from calib.wiring import BenchBusyError, open_bench

    monkeypatch.setenv("AIMC_CALIB_LOCK_DIR", str(tmp_path / "locks"))
    _, config = lab
    with open_bench(config):
        with pytest.raises(BenchBusyError, match=r"bench busy: TCPIP::127\.0\.0\.1::\d+::SOCKET "
                                                 r"is in use by pid \d+"):
            open_bench(config)
        result = CliRunner().invoke(main, ["bench", "check", "--bench", str(config)])
        assert result.exit_code != 0 and "bench busy" in result.output
    with open_bench(config) as again:  # the lock went with the first bench
        assert again.array is not None
