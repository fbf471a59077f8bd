"""CLI for the bench and simulator servers; conventions every driver keeps."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import pyvisa
from click.testing import CliRunner

from calib.cli import main
from calib.wiring.config import BenchConfigError, load_bench_config

ROOT = Path(__file__).resolve().parents[2]


def test_bench_check_reports_every_role():
    result = CliRunner().invoke(main, ["bench", "check", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["simulated"] and set(report["roles"]) == {
        "array", "smu", "switch", "thermal", "prober", "clock"}
    assert all(r["status"] == "ok" for r in report["roles"].values())
    assert report["limits"]["max_program_voltage"] == 4.0
    text = CliRunner().invoke(main, ["bench", "check"]).output
    assert "RefArrayController" in text and "SENTIO" in text


def test_bench_check_over_tcp_bundled_config():
    result = CliRunner().invoke(main, ["bench", "check", "--bench", "simulated-tcp", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["roles"]["array"]["status"] == "ok"


def test_sim_serve_prints_resources_and_serves_loopback_only():
    proc = subprocess.Popen([sys.executable, "-m", "calib.cli", "sim", "serve", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        first = proc.stdout.readline()
        resources = json.loads(first)
        assert set(resources) >= {"array", "smu", "switch", "prober", "clock"}
        assert all(r.startswith("TCPIP::127.0.0.1::") for r in resources.values())
        rm = pyvisa.ResourceManager("@py")
        inst = rm.open_resource(resources["array"], read_termination="\n",
                                write_termination="\n", timeout=2000)
        assert "RefArrayController" in inst.query("*IDN?")
        inst.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_sim_serve_plain_lines(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "calib.cli", "sim", "serve"],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = proc.stdout.readline().split()
        assert line[0] == "array" and line[1].startswith("TCPIP::127.0.0.1::")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("text, message", [
    ('[roles.array]\ndriver = "nope"\nresource = "x"\n', None),
    ('[roles.laser]\ndriver = "x"\n', "roles.laser: unknown role"),
    ('[roles.array]\nresource = "TCPIP::1.2.3.4::5025::SOCKET"\n', "roles.array.driver"),
    ('[roles.array]\ndriver = "reference-array"\n', "roles.array.resource: missing"),
    ('[simulation]\ntransport = "carrier-pigeon"\n', "simulation.transport"),
    ('[colour]\n', r"\[colour\]: unknown section"),
])
def test_bad_bench_configs_name_the_entry(tmp_path, text, message):
    path = tmp_path / "bench.toml"
    path.write_text(text)
    if message is None:  # parses; fails when wired
        from calib import open_bench

        with pytest.raises(BenchConfigError, match="unknown driver 'nope'"):
            open_bench(path)
        return
    with pytest.raises(BenchConfigError, match=message):
        load_bench_config(path)


def test_no_code_calls_list_resources():
    """list_resources() on pyvisa-py's @py backend broadcasts on the network."""
    offenders = []
    for package in ("calib", "instruments", "protocols", "sim_backend", "benchmarks"):
        for path in (ROOT / package).rglob("*.py"):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if ".list_resources(" in line:
                    offenders.append(f"{path}:{n}")
    assert not offenders, offenders
