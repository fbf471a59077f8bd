"""The probers' wafer maps (``die_map``): exact bytes and parsing for SENTIO and Velox,
then the map read from the simulated bench against its wafer, over both transports; and
what the drivers see of the simulator's ``open`` and ``chuck`` faults."""

from __future__ import annotations

import numpy as np
import pytest

from calib.wiring.bench import Bench
from calib.wiring.config import config_from_dict
from instruments import ProberError
from instruments.drivers import SentioProber
from instruments.drivers.velox import VeloxProber
from instruments.roles import Prober
from tests.harness import datasheet, expected_protocol, guard

REG = ("FCN=1:RegisterProberApp:aimc-calib aimc-calib 0", "Rsp=1:0:")


def sentio(session):
    return SentioProber(session, guard())


def velox(session):
    return VeloxProber(session, guard(), datasheet())


def velox_protocol(script):
    return expected_protocol(velox, script, **VeloxProber.session_options)


# -- SENTIO: exact bytes -------------------------------------------------------------------
def test_sentio_die_map_counts_the_route_then_asks_each_sequence_number_from_0():
    with expected_protocol(sentio, [
        ("*RCS 1", None),
        ("map:get_num_dies Selected", "0,0,3"),
        ("map:path:get_die 0", "0,0,-1,0"),
        ("map:path:get_die 1", "0,0,0,0"),
        ("map:path:get_die 2", "0,0,1,-2"),
    ]) as drv:
        assert drv.die_map() == ((0, -1, 0), (1, 0, 0), (2, 1, -2))


def test_sentio_die_map_reads_a_route_without_sequence_number_0_from_1():
    with expected_protocol(sentio, [
        ("*RCS 1", None),
        ("map:get_num_dies Selected", "0,0,2"),
        ("map:path:get_die 0", "21,0,no die 0 on wafer default: ids run 1..2"),
        ("map:path:get_die 1", "0,0,4,0"),
        ("map:path:get_die 2", "0,0,5,0"),
    ]) as drv:
        assert drv.die_map() == ((1, 4, 0), (2, 5, 0))


def test_sentio_die_map_of_an_empty_route_and_bad_replies():
    with expected_protocol(sentio, [
        ("*RCS 1", None),
        ("map:get_num_dies Selected", "0,0,0"),
        ("map:get_num_dies Selected", "0,0,many"),
        ("map:get_num_dies Selected", "0,0,1"),
        ("map:path:get_die 0", "0,0,seven,1"),
    ]) as drv:
        assert drv.die_map() == ()
        with pytest.raises(ProberError, match="number of dies 'many'"):
            drv.die_map()
        with pytest.raises(ProberError, match="die position 'seven,1'"):
            drv.die_map()  # a bad reply is not taken for "no sequence number 0"


def test_sentio_position_is_the_column_and_row_after_the_route_index():
    with expected_protocol(sentio, [
        ("*RCS 1", None),
        ("map:die:get_current_index", "0,0,5,6,7"),
        ("map:die:get_current_index", "0,0,6,7"),
    ]) as drv:
        assert drv.position() == (6, 7)
        with pytest.raises(ProberError, match="route index"):
            drv.position()


# -- Velox: exact bytes --------------------------------------------------------------------
def test_velox_die_map_counts_the_selected_dies_then_reads_each():
    with velox_protocol([
        REG,
        ("Cmd=1:GetNumSelectedDies:", "Rsp=1:0:2"),
        ("Cmd=2:GetDieDataAsNum:1", "Rsp=2:0:1 3 0 0"),
        ("Cmd=3:GetDieDataAsNum:2", "Rsp=3:0:2 -4 1 7"),
    ]) as drv:
        assert drv.die_map() == ((1, 3, 0), (2, -4, 1))


def test_velox_die_map_bad_replies_and_refusals():
    with velox_protocol([
        REG,
        ("Cmd=1:GetNumSelectedDies:", "Rsp=1:0:"),
        ("Cmd=2:GetNumSelectedDies:", "Rsp=2:0:1"),
        ("Cmd=3:GetDieDataAsNum:1", "Rsp=3:0:one 3 0"),
        ("Cmd=4:GetNumSelectedDies:", "Rsp=4:0:1"),
        ("Cmd=5:GetDieDataAsNum:1", "Rsp=5:701:Die 1 is not on the wafer map"),
    ]) as drv:
        with pytest.raises(ProberError, match="number of dies"):
            drv.die_map()
        with pytest.raises(ProberError, match="die data 'one 3 0'"):
            drv.die_map()
        with pytest.raises(ProberError, match="not on the wafer map"):
            drv.die_map()


# -- against the simulated bench -----------------------------------------------------------
def bench_config(driver: str, transport: str) -> dict:
    return {"chip": {"datasheet": "rram"}, "simulation": {"transport": transport},
            "roles": {"array": {"driver": "reference-array"}, "prober": {"driver": driver},
                      "thermal": {"driver": driver}, "clock": {"driver": "virtual-clock"}}}


@pytest.fixture(params=[("sentio", "inprocess"), ("sentio", "tcp"), ("velox", "inprocess"),
                        ("velox", "tcp")], ids=lambda p: "-".join(p))
def bench(request):
    with Bench(config_from_dict(bench_config(*request.param))) as b:
        yield b


def test_die_map_is_the_simulated_wafers_map_and_goto_takes_its_ids(bench):
    sim = bench.simulation
    assert isinstance(bench.prober, Prober) and callable(getattr(bench.prober, "die_map", None))
    sent = sim.transactions["prober"]
    dies = bench.prober.die_map()
    assert dies == tuple((d.id, d.x, d.y) for d in sim.wafer.dies)
    assert len(dies) == 241
    assert sim.transactions["prober"] - sent <= len(dies) + 3  # one query per die
    for die_id, col, row in (dies[0], dies[120], dies[-1]):
        assert bench.prober.goto(die_id) == (col, row)
        assert sim.die_id == die_id and bench.prober.position() == (col, row)


def test_an_open_contact_succeeds_and_reads_the_open_level(bench):
    sim = bench.simulation
    bench.prober.goto(12)
    die = bench.array.read(averages=4)
    sim.faults.inject("open", "prober")
    bench.prober.goto(13)  # the contact succeeds: no ContactError, no retry
    assert sim.in_contact and sim.die_id == 13
    open_level = bench.array.read(averages=4)
    assert open_level.max() > 0  # the read-out's noise floor, not exact zeros
    assert open_level.mean() < 0.1 * die.mean()  # a fresh die: pristine cells
    bench.prober.goto(12)  # a new contact: the needles touch again
    assert bench.array.read(averages=4).mean() > 0.5 * die.mean()
    assert sim.faults.fired.count(("prober", "open")) == 1


def test_a_chuck_excursion_on_a_step_unsettles_the_chuck_for_a_while(bench):
    sim = bench.simulation
    bench.prober.goto(12)
    assert bench.thermal.settled()
    sim.faults.inject("chuck", "prober", after=1)
    bench.prober.goto(13)  # the first step is spared
    assert bench.thermal.settled()
    bench.prober.goto(14)
    assert not bench.thermal.settled()
    assert bench.thermal.temperature() == pytest.approx(30.0, abs=0.1)
    assert bench.thermal.setpoint() == pytest.approx(25.0)
    sim.clock.advance(60.0)
    assert not bench.thermal.settled()  # one time constant: still 1.8 degC off
    sim.clock.advance(4 * 60.0)
    assert bench.thermal.settled()
    assert np.isclose(bench.thermal.temperature(), 25.0, atol=0.5)
