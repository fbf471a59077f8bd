"""A lab's own driver, from its own package, picked by name from a bench config.

The example package ``examples/acme-driver-plugin`` registers the (made-up) ACME
TC-1 thermal controller through the ``aimc_calib.drivers`` entry point; it is
installed here into a scratch folder put on ``sys.path``, as pip would install it
into a lab's environment. Nothing of aimc-calib is edited.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from calib.wiring.bench import Bench
from calib.wiring.config import config_from_dict
from instruments.registry import driver_class, driver_names
from tests.harness import expected_protocol, guard

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "examples" / "acme-driver-plugin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                          "--target", str(site), str(PLUGIN)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    yield site
    sys.path.remove(str(site))
    for name in [m for m in sys.modules if m.startswith("acme_drivers")]:
        del sys.modules[name]


def test_the_plugin_driver_is_found_by_name(installed):
    assert "acme-tc1" in driver_names()
    cls = driver_class("acme-tc1")
    assert cls.__name__ == "AcmeTC1" and cls.__module__ == "acme_drivers.tc1"


def test_a_bench_config_names_the_plugin_driver(installed, tmp_path, monkeypatch):
    monkeypatch.setenv("AIMC_CALIB_LOCK_DIR", str(tmp_path / "locks"))
    config = config_from_dict({
        "chip": {"datasheet": "rram"},
        "roles": {"array": {"driver": "reference-array",
                            "resource": "TCPIP::127.0.0.1::5025::SOCKET"},
                  "thermal": {"driver": "acme-tc1", "resource": "GPIB0::7::INSTR",
                              "band_c": 0.2},
                  "clock": {"driver": "wall-clock"}}})
    bench = Bench(config)  # wiring does no I/O: nothing is sent until a role is used
    try:
        assert type(bench.thermal).__name__ == "AcmeTC1"
        assert bench.configuration()["thermal"]["band_c"] == 0.2
    finally:
        bench.close()


def test_the_plugin_driver_speaks_its_instrument_and_keeps_the_guard(installed):
    from instruments import SafetyError

    cls = driver_class("acme-tc1")
    with expected_protocol(lambda s: cls(s, guard()), [
        ("*IDN?", "ACME,TC-1,0042,1.0"), ("SP 85.00", None), ("T?", "84.7"),
    ]) as tc1:
        tc1.set_temperature(85.0)
        assert tc1.temperature() == 84.7
        with pytest.raises(SafetyError):  # rram allows -40..125 degC: nothing is sent
            tc1.set_temperature(400.0)
