"""The FormFactor Velox prober driver: its exact bytes, then its behaviour against the
emulator over both transports, and a `calib program` run on a Velox bench."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from calib.cli import main
from calib.store import DieStore
from calib.wiring.bench import Bench
from calib.wiring.config import config_from_dict
from instruments import (
    ArgumentError,
    ContactError,
    DriverOptionError,
    InstrumentIOError,
    ProberError,
    SafetyError,
)
from instruments.drivers.velox import VeloxProber
from tests.harness import datasheet, expected_protocol, guard, scripted_session

REG = ("FCN=1:RegisterProberApp:aimc-calib aimc-calib 0", "Rsp=1:0:")


def velox(session, **options):
    return VeloxProber(session, guard(), datasheet(), **options)


def protocol(script):
    """The driver on a scripted instrument, with the session settings a bench gives it."""
    return expected_protocol(velox, script, **VeloxProber.session_options)


def ok(cmd_id: int, values: str = "") -> str:
    return f"Rsp={cmd_id}:0:{values}"


# -- exact bytes ------------------------------------------------------------------------
def test_goto_registers_separates_steps_and_contacts():
    with protocol([
        REG,
        ("Cmd=1:MoveChuckSeparation:", ok(1)),
        ("Cmd=2:StepToDie:12", ok(2, "7 1 0 0")),
        ("Cmd=3:MoveChuckContact:", ok(3)),
        ("Cmd=4:MoveChuckSeparation:", ok(4)),
        ("Cmd=5:StepNextDie:3 4", ok(5, "3 4 0 0")),
        ("Cmd=6:MoveChuckContact:", ok(6)),
        ("Cmd=7:ReadMapPosition2:", ok(7, "3 4 -5000.0 3000.0 0 0 25 61 25 61")),
        ("Cmd=8:BinMapDie:1", ok(8, "3 4")),
    ]) as drv:
        assert drv.goto(12) == (7, 1)
        assert drv.goto((3, 4)) == (3, 4)
        assert drv.position() == (3, 4)
        drv.set_bin(1)


def test_a_step_that_lands_elsewhere_makes_no_contact():
    with protocol([
        REG,
        ("Cmd=1:MoveChuckSeparation:", ok(1)),
        ("Cmd=2:StepNextDie:3 4", ok(2, "5 5 0 0")),
    ]) as drv:
        with pytest.raises(ProberError, match=r"\(5, 5\) instead of \(3, 4\)"):
            drv.goto((3, 4))


def test_prober_errors_and_contact_retry():
    with protocol([
        REG,
        ("Cmd=1:MoveChuckSeparation:", ok(1)),
        ("Cmd=2:StepToDie:9999", "Rsp=2:701:Die 9999 is not on the wafer map"),
        ("Cmd=3:MoveChuckContact:", "Rsp=3:11:Contact failed"),
        ("Cmd=4:MoveChuckSeparation:", ok(4)),
        ("Cmd=5:MoveChuckContact:", ok(5)),
        ("Cmd=6:MoveChuckContact:", "Rsp=6:11:Contact failed"),
        ("Cmd=7:MoveChuckSeparation:", ok(7)),
        ("Cmd=8:MoveChuckContact:", "Rsp=8:11:Contact failed"),
    ]) as drv:
        with pytest.raises(ProberError, match=r"StepToDie 9999.*not on the wafer map.*701"):
            drv.goto(9999)
        drv.contact()  # the first attempt failed, the second made contact
        with pytest.raises(ContactError, match="Contact failed.*probe card"):
            drv.contact()


def test_thermal_chuck():
    with protocol([
        REG,
        ("Cmd=1:SetHeaterTemp:85.00 C", ok(1, "85.00 C")),
        ("Cmd=2:GetHeaterTemp:C", ok(2, "84.80 C 4")),
        ("Cmd=3:GetTargetTemp:C", ok(3, "85.00 C")),
        ("Cmd=4:ReadTemperatureChuckStatus:", ok(4, "4 0 0 0")),
        ("Cmd=5:GetHeaterTemp:C", ok(5, "84.80 C 4")),
        ("Cmd=6:GetTargetTemp:C", ok(6, "85.00 C")),
        ("Cmd=7:ReadTemperatureChuckStatus:", ok(7, "1 0 0 0")),
        ("Cmd=8:ReadTemperatureChuckStatus:", ok(8, "68 0 12 0")),
    ]) as drv:
        drv.set_temperature(85.0)
        assert drv.temperature() == pytest.approx(84.8)
        assert drv.setpoint() == pytest.approx(85.0)
        assert drv.settled()
        assert not drv.settled()  # heating
        assert not drv.settled()  # at temperature, still soaking


def test_a_set_point_the_prober_changed_is_an_error():
    with protocol([
        REG, ("Cmd=1:SetHeaterTemp:85.00 C", ok(1, "60.00 C")),
        ("Cmd=2:GetHeaterTemp:C", ok(2, "77.0 F 1")),
    ]) as drv:
        with pytest.raises(ProberError, match="60 degC, not 85 degC"):
            drv.set_temperature(85.0)
        with pytest.raises(ProberError, match="not degrees Celsius"):
            drv.temperature()


def test_bad_input_is_refused_before_anything_is_sent():
    with protocol([]) as drv:
        for bad in (150.0, -100.0, float("nan"), "85", None):
            with pytest.raises(SafetyError):
                drv.set_temperature(bad)
        for bad in (0, -3, 1.5, "12", None, True, (1,), (1, 2, 3), ("a", 2)):
            with pytest.raises(ArgumentError):
                drv.goto(bad)
        for bad in (-1, 256, 2.5, "1"):
            with pytest.raises(ArgumentError):
                drv.set_bin(bad)
        assert drv.transactions == 0


def test_a_reply_to_another_command_is_refused_and_the_link_registered_again():
    with protocol([
        REG,
        ("Cmd=1:ReadMapPosition2:", ok(7, "1 2 0 0 0 0 3 61 3 61")),  # a late, stale reply
        REG,  # the session renewed the link: register on the new connection
        ("Cmd=2:ReadMapPosition2:", ok(2, "1 2 0 0 0 0 3 61 3 61")),
    ]) as drv:
        with pytest.raises(InstrumentIOError, match="answers command 7, not 1"):
            drv.position()
        assert drv.position() == (1, 2)


def test_registration_refused_or_answered_by_another_instrument():
    with protocol([
        ("FCN=1:RegisterProberApp:aimc-calib aimc-calib 0", "Rsp=1:5:Application busy"),
    ]) as drv:
        with pytest.raises(ProberError, match="refused to register 'aimc-calib'.*busy"):
            drv.position()
    with protocol([
        ("FCN=1:RegisterProberApp:aimc-calib aimc-calib 0", "2,0,unknown command"),
    ]) as drv:
        with pytest.raises(InstrumentIOError, match="is this a Velox message server"):
            drv.separate()


def test_command_ids_run_to_999_then_start_again():
    with protocol([
        REG,
        ("Cmd=999:MoveChuckSeparation:", ok(999)),
        ("Cmd=1:MoveChuckSeparation:", ok(1)),
    ]) as drv:
        drv._last_id = 998
        drv.separate()
        drv.separate()


def test_identity_is_idn_or_the_kernel_version():
    with protocol([("*IDN?", "FormFactor Velox,SIM-0002,3.3")]) as drv:
        assert drv.identity() == "FormFactor Velox,SIM-0002,3.3"
    with protocol([
        ("*IDN?", None),  # the message server does not answer *IDN?
        REG, ("Cmd=1:ReportKernelVersion:", ok(1, "3.3 Velox Kernel")),
    ]) as drv:
        assert drv.identity() == "FormFactor Velox, kernel 3.3 Velox Kernel"


def test_options_are_checked_when_built_and_recorded():
    for options, option in [({"settle_window_c": 0.0}, "settle_window_c"),
                            ({"settle_window_c": "1"}, "settle_window_c"),
                            ({"app_name": "my app"}, "app_name"),
                            ({"app_name": "a:b"}, "app_name"),
                            ({"app_name": ""}, "app_name"),
                            ({"app_name": 5}, "app_name")]:
        session, instrument = scripted_session([], **VeloxProber.session_options)
        with pytest.raises(DriverOptionError) as info:
            velox(session, **options)
        assert info.value.option == option
        assert instrument.step == 0
    session, _ = scripted_session([], **VeloxProber.session_options)
    config = velox(session, settle_window_c=1, app_name="lab-7").configuration()
    assert config["settle_window_c"] == 1.0 and config["app_name"] == "lab-7"
    assert config["driver"] == "VeloxProber"


# -- against the emulator, over both transports ----------------------------------------------
def velox_config(transport: str) -> dict:
    return {"chip": {"datasheet": "rram"}, "simulation": {"transport": transport},
            "roles": {"array": {"driver": "reference-array"}, "prober": {"driver": "velox"},
                      "thermal": {"driver": "velox"}, "clock": {"driver": "virtual-clock"}}}


@pytest.fixture(params=["inprocess", "tcp"])
def bench(request):
    with Bench(config_from_dict(velox_config(request.param))) as b:
        yield b


def test_one_instrument_serves_prober_and_thermal(bench):
    assert isinstance(bench.prober, VeloxProber) and bench.thermal is bench.prober
    assert "Velox" in bench.identities()["prober"]
    assert bench.configuration()["prober"]["driver"] == "VeloxProber"


def test_goto_contacts_the_die_and_the_array_reads_that_die(bench):
    sim = bench.simulation
    die = sim.wafer.info(12)
    assert bench.prober.goto(12) == (die.x, die.y)
    assert sim.die_id == 12 and sim.in_contact and sim.chip.die_id == 12
    assert bench.prober.position() == (die.x, die.y)
    pristine = bench.datasheet.forming.pristine_below
    truth = sim.chip.truth()
    g = bench.array.read()
    assert np.median(g[~truth.stuck]) < pristine  # a fresh die: unformed cells
    assert bench.array.form() > 0.9 * g.size
    truth = sim.chip.truth()
    ok_cells = truth.formed & ~truth.stuck
    g = bench.array.read()
    assert np.median(g[ok_cells]) > pristine
    assert np.median(np.abs(g[ok_cells] / truth.g[ok_cells] - 1)) < 0.05
    other = sim.wafer.info(13)
    assert bench.prober.goto((other.x, other.y)) == (other.x, other.y)
    assert sim.die_id == 13 and np.median(bench.array.read()) < pristine  # not formed yet
    bench.prober.goto(12)
    assert np.median(bench.array.read()[ok_cells]) > pristine  # die 12 kept its forming


def test_chuck_temperature_is_set_and_settles(bench):
    bench.prober.goto(12)
    bench.thermal.set_temperature(85.0)
    assert bench.simulation.chuck.setpoint_c == 85.0
    assert bench.thermal.setpoint() == pytest.approx(85.0)
    assert not bench.thermal.settled()
    assert bench.thermal.temperature() < 40  # a 60 s time constant
    bench.clock.wait(600.0)
    assert bench.thermal.settled()
    assert bench.thermal.temperature() == pytest.approx(85.0, abs=0.5)
    bench.array.read()  # the die under the probes follows the chuck
    assert bench.simulation.chip.temperature == pytest.approx(85.0, abs=0.5)


def test_bins_reach_the_wafer_map(bench):
    bench.prober.goto(12)
    bench.prober.set_bin(3)
    die = bench.simulation.wafer.info(20)
    bench.prober.goto((die.x, die.y))
    bench.prober.set_bin(0)
    assert bench.simulation.bins == {12: 3, 20: 0}


def test_a_failed_contact_is_retried_then_a_contact_error(bench):
    sim = bench.simulation
    sim.faults.inject("contact", "prober")
    bench.prober.goto(13)
    assert sim.in_contact and sim.die_id == 13
    sim.faults.inject("contact", "prober", count=2)
    with pytest.raises(ContactError, match="probe card"):
        bench.prober.goto(14)
    assert sim.die_id == 14 and not sim.in_contact and sim.chip is None


def test_bad_input_a_missing_die_and_an_unsafe_temperature(bench):
    sim = bench.simulation
    bench.prober.goto(12)
    with pytest.raises(ProberError, match="Die 9999 is not on the wafer map"):
        bench.prober.goto(9999)
    assert sim.die_id == 12 and not sim.in_contact  # separated, stayed put
    with pytest.raises(ProberError, match="No die at column 99"):
        bench.prober.goto((99, 99))
    sent = sim.transactions["prober"]
    for celsius in (500.0, -80.0, math.inf):
        with pytest.raises(SafetyError, match="temperature"):
            bench.thermal.set_temperature(celsius)
    with pytest.raises(ArgumentError):
        bench.prober.goto("twelve")
    assert sim.transactions["prober"] == sent  # refused before anything was sent
    assert sim.chuck.setpoint_c == 25.0 and "temperature" not in sim.observed.maxima


def test_a_garbled_or_dropped_reply_recovers(bench):
    sim = bench.simulation
    bench.prober.goto(12)
    die = sim.wafer.info(12)
    for fault in ("garble", "drop"):
        sim.faults.inject(fault, "prober")
        assert bench.prober.position() == (die.x, die.y)
    assert bench.sessions["prober"].reconnects == 2
    bench.prober.set_bin(4)  # registered again on the renewed link
    assert sim.bins[12] == 4
    assert sim.emulators["velox"].registered.count("aimc-calib") >= 2


# -- the CLI -------------------------------------------------------------------------------
VELOX_BENCH = """\
[chip]
datasheet = "rram"

[simulation]
transport = "inprocess"

[roles.array]
driver = "reference-array"

[roles.prober]
driver = "velox"
settle_window_c = 1.0

[roles.thermal]
driver = "velox"

[roles.clock]
driver = "virtual-clock"
"""


def test_calib_program_runs_on_a_velox_bench(tmp_path):
    config = tmp_path / "velox.toml"
    config.write_text(VELOX_BENCH)
    result = CliRunner().invoke(main, ["program", "--die", "12", "--bench", str(config),
                                       "--results", str(tmp_path / "results"), "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["die"] == 12 and summary["in_band_fraction"] > 0.9
    runs = DieStore(summary["file"]).runs()
    assert [r.status for r in runs] == ["complete"] * len(runs) and runs
