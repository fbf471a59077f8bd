"""The prober's bench faults at the emulators (``open``, ``chuck``) and the array
controller's open-circuit reads, spoken in each instrument's own bytes.

Open-circuit levels are scored against the chips' presets (data/chips/*.toml): a
pristine RRAM cell (0.01 uS, read ~13 nS through the ADC), a PCM cell at g_min
(0.1 uS) and stuck-low cells (RRAM 0.3 uS, PCM 0.05 uS).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim_backend.bench import SimBench
from sim_backend.clock import VirtualClock
from sim_backend.faults import CHUCK_EXCURSION_C, FaultError
from sim_backend.framing import block, split_block
from sim_backend.thermal import ThermalModel


class Sentio:
    """The SENTIO emulator, in its remote command set."""

    def __init__(self, bench: SimBench) -> None:
        self.emulator = bench.emulators["prober"]

    def ask(self, text: str) -> tuple[int, str]:
        code, _, message = self.emulator.handle(text.encode()).decode().strip().split(",", 2)
        return int(code) & 0x3FF, message

    def step(self, die_id: int) -> None:
        assert self.ask(f"map:step_die_seq {die_id}, 0")[0] == 0

    def contact(self) -> bool:
        return self.ask("move_chuck_contact")[0] == 0

    def separate(self) -> None:
        assert self.ask("move_chuck_separation")[0] == 0

    def settled(self) -> bool:
        return self.ask("status:get_chuck_thermo_state")[1] == "Settled"


class Velox:
    """The Velox emulator, in the message server's framing."""

    def __init__(self, bench: SimBench) -> None:
        self.emulator = bench.emulators["velox"]
        self.n = 0

    def ask(self, name: str, args: str = "") -> tuple[int, str]:
        self.n += 1
        reply = self.emulator.handle(f"Cmd={self.n}:{name}:{args}".encode()).decode()
        _, code, values = reply.strip().split(":", 2)
        return int(code), values

    def step(self, die_id: int) -> None:
        assert self.ask("StepToDie", str(die_id))[0] == 0

    def contact(self) -> bool:
        return self.ask("MoveChuckContact")[0] == 0

    def separate(self) -> None:
        assert self.ask("MoveChuckSeparation")[0] == 0

    def settled(self) -> bool:
        return int(self.ask("ReadTemperatureChuckStatus")[1].split()[0]) & 4 == 4


PROBERS = {"sentio": Sentio, "velox": Velox}


def read(bench: SimBench, averages: int = 1) -> np.ndarray:
    """A whole-array read through the array controller's SCPI."""
    array = bench.emulators["array"]
    array.handle(f":CONF:READ:AVER {averages}".encode())
    data = split_block(array.handle(b":MEAS:ARR?"))[1]
    return np.frombuffer(data, dtype="<f4").reshape(bench.spec.shape).astype(np.float64)


@pytest.fixture(params=sorted(PROBERS))
def station(request):
    bench = SimBench("rram", seed=7)
    return bench, PROBERS[request.param](bench)


# -- open --------------------------------------------------------------------------------
def test_an_open_contact_succeeds_reads_open_circuit_then_the_die_again(station):
    bench, prober = station
    prober.step(12)
    assert prober.contact()
    truth = bench.chip.truth()
    pristine = read(bench, averages=4)[~truth.stuck].mean()  # unformed cells, ~13 nS
    prober.separate()
    bench.faults.inject("open", "prober", count=2)
    levels = []
    for _ in range(2):  # two contacts without continuity
        assert prober.contact() and bench.in_contact and bench.die_id == 12
        levels.append(read(bench, averages=4))
        prober.separate()
    for level in levels:
        assert level.max() > 0  # not exact zeros
        assert level.mean() < 0.1 * pristine
    assert prober.contact()  # the third touches the die again
    again = read(bench, averages=4)[~truth.stuck].mean()
    assert again > 5 * max(level.mean() for level in levels)
    assert bench.faults.fired.count(("prober", "open")) == 2


def test_a_refused_contact_does_not_spend_an_open_fault(station):
    bench, prober = station
    bench.faults.inject("contact", "prober")
    bench.faults.inject("open", "prober")
    prober.step(12)
    assert not prober.contact() and not bench.in_contact
    assert prober.contact()  # the retry reaches contact height, with no continuity
    assert read(bench).mean() < 2e-9
    prober.separate()
    assert not bench.faults.latched("open")
    assert prober.contact() and read(bench, averages=4).mean() > 5e-9


def test_an_open_contact_leaves_the_die_untouched(station):
    bench, prober = station
    prober.step(12)
    prober.contact()
    before = bench.chip.truth()
    prober.separate()
    bench.faults.inject("open", "prober")
    prober.contact()
    array = bench.emulators["array"]
    assert array.handle(b":FORM:ARR? 5,0.001") is None  # refused: nothing on the lines
    assert b"no array connected" in array.handle(b":SYST:ERR?")
    volts = np.full(bench.spec.shape, 1.5, "<f4").tobytes()
    assert array.handle(b":PULS:ARR? 1e-06," + block(volts)) == b"0\n"
    after = bench.chip.truth()
    assert np.array_equal(before.formed, after.formed)
    assert np.array_equal(before.g_programmed, after.g_programmed)


@pytest.mark.parametrize("chip", ["rram", "pcm"])
def test_open_circuit_reads_sit_far_below_pristine_and_stuck_low_cells(chip):
    bench = SimBench(chip, seed=7)
    prober = Sentio(bench)
    levels = {averages: read(bench, averages) for averages in (1, 4, 16)}  # probes up
    for level in levels.values():
        assert level.min() >= 0 and level.max() > 0  # not exact zeros
        assert level.mean() < 5e-9
    prober.step(12)
    prober.contact()
    die = read(bench, averages=4)
    truth = bench.chip.truth()
    healthy, stuck_low = ~truth.stuck, truth.stuck & ~truth.stuck_high
    assert stuck_low.any()
    assert levels[4].mean() < 0.1 * die[healthy].mean()  # pristine / at g_min
    assert levels[4].mean() < 0.1 * die[stuck_low].mean()


def test_open_circuit_reads_are_deterministic_per_bench_seed():
    a, b, c = (read(SimBench("rram", seed=s), averages=4) for s in (7, 7, 8))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_a_read_at_another_voltage_scales_the_open_level_as_a_current():
    bench = SimBench("pcm", seed=7)
    at_02 = read(bench, averages=16).mean()
    bench.emulators["array"].handle(b":CONF:READ:VOLT 0.1")
    at_01 = read(bench, averages=16).mean()
    assert at_01 == pytest.approx(2 * at_02, rel=0.25)  # the same current, half the volts


def test_mvm_with_the_probes_up_is_the_column_adc_noise():
    bench = SimBench("rram", seed=7)
    array = bench.emulators["array"]
    rows, cols = bench.spec.shape
    x = np.full((8, rows), 0.1, "<f4")
    reply = array.handle(b":MVM? " + block(x.tobytes()))
    out = np.frombuffer(split_block(reply)[1], dtype="<f4").reshape(8, cols)
    full_scale, bits = bench.spec.adc.mvm_full_scale, bench.spec.adc.mvm_bits
    lsb = 2 * full_scale / ((1 << bits) - 1)
    assert np.any(out != 0)
    assert np.all(np.abs(out) <= 4 * lsb)
    assert abs(out.mean()) < 0.2 * lsb
    assert np.allclose(out / lsb, np.rint(out / lsb), atol=1e-3)  # ADC codes


# -- chuck -------------------------------------------------------------------------------
def test_a_chuck_excursion_on_a_step_then_recovery(station):
    bench, prober = station
    prober.step(12)
    assert prober.settled()
    bench.faults.inject("chuck", "prober")
    assert prober.settled()  # nothing happens before the step
    prober.step(13)
    assert not prober.settled()
    assert bench.chuck.temperature() == pytest.approx(25.0 + CHUCK_EXCURSION_C, abs=0.01)
    bench.clock.advance(2 * bench.chuck.tau_s)
    assert not prober.settled()  # 5 degC x e^-2 = 0.68 degC: outside the window
    bench.clock.advance(3 * bench.chuck.tau_s)
    assert prober.settled()
    prober.step(14)
    assert prober.settled()  # one excursion per count


def test_a_chuck_excursion_below_the_set_point_heats_back(station):
    bench, prober = station
    bench.faults.inject("chuck", "prober", delta_c=-3.0)
    prober.step(12)
    assert bench.chuck.temperature() == pytest.approx(22.0, abs=0.01)
    if isinstance(prober, Sentio):
        assert prober.ask("status:get_chuck_thermo_state")[1] == "Heating"
    else:
        assert int(prober.ask("ReadTemperatureChuckStatus")[1].split()[0]) & 1  # heating
    bench.clock.advance(bench.chuck.tau_s * math.log(3.0 / 0.5) + 1.0)
    assert prober.settled()


def test_a_refused_step_does_not_fire_the_chuck_fault():
    bench = SimBench("rram", seed=7)
    prober = Sentio(bench)
    prober.step(12)
    prober.contact()
    bench.faults.inject("chuck", "prober")
    prober.separate()
    assert prober.ask("map:step_die_seq 9999, 0")[0] != 0  # no such die
    prober.contact()
    assert prober.ask("map:step_die_seq 13, 0")[0] != 0  # in contact: refused
    assert bench.chuck.settled() and ("prober", "chuck") not in bench.faults.fired


def test_disturb_jumps_from_the_present_temperature_and_relaxes():
    clock = VirtualClock()
    model = ThermalModel(clock, start_c=25.0, tau_s=60.0, window_c=0.5)
    model.set(85.0)
    clock.advance(60.0)
    now = model.temperature()
    model.disturb(5.0)
    assert model.temperature() == pytest.approx(now + 5.0)
    assert model.setpoint_c == 85.0
    clock.advance(600.0)
    assert model.settled()


# -- the injector --------------------------------------------------------------------------
def test_prober_faults_and_their_options_are_checked():
    bench = SimBench(rows=8, cols=8)
    for kind, role in (("open", "array"), ("chuck", "thermostream"), ("chuck", "velox")):
        with pytest.raises(FaultError, match="prober"):
            bench.faults.inject(kind, role)
    with pytest.raises(FaultError, match="delta_c"):
        bench.faults.inject("contact", "prober", delta_c=2.0)
    for bad in (0.0, math.nan, math.inf):
        with pytest.raises(FaultError, match="delta_c"):
            bench.faults.inject("chuck", "prober", delta_c=bad)
    bench.faults.inject("open", "prober")
    bench.faults.latch("open")
    bench.faults.clear()
    assert not bench.faults.latched("open")
