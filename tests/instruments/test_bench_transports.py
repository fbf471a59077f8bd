"""Each driver against its emulator, over the in-process library and loopback TCP."""

from __future__ import annotations

import numpy as np
import pytest

from calib import open_bench
from instruments import ArrayController, Clock, Prober, SafetyError, ThermalController
from instruments.drivers import SmuSwitchArray

US = 1e-6


@pytest.fixture(params=["inprocess", "tcp"])
def bench(request):
    with open_bench(transport=request.param) as b:
        b.prober.goto(12)
        yield b


def test_roles_are_wired_and_identify(bench):
    ids = bench.identities()
    assert "RefArrayController" in ids["array"] and "2450" in ids["smu"]
    assert "707B" in ids["switch"] and "SENTIO" in ids["prober"]
    assert isinstance(bench.array, ArrayController) and isinstance(bench.clock, Clock)
    assert isinstance(bench.prober, Prober) and isinstance(bench.thermal, ThermalController)
    assert bench.simulation.chip.die_id == 12


def test_array_read_pulse_mvm_match_ground_truth(bench):
    arr, chip = bench.array, bench.simulation.chip
    assert arr.form() > 4000
    arr.read()  # first use configures the read voltage and asks the array size
    before = arr.transactions
    g = arr.read()
    assert arr.transactions - before == 1  # the whole array in one transaction
    truth = chip.truth()
    ok = ~truth.stuck
    assert np.median(np.abs(g[ok] / truth.g[ok] - 1)) < 0.02  # read noise ~1 %
    before = arr.transactions
    arr.pulse(np.full(arr.shape, -2.5), width=10e-6)
    assert arr.transactions - before == 1
    after = chip.truth().g
    assert np.median(after[ok]) < np.median(truth.g[ok])
    x = np.full(arr.shape[0], 0.1)
    i = arr.mvm(x)
    ideal = x @ chip.truth().g
    assert i.shape == (arr.shape[1],)
    assert np.median(np.abs(i / ideal - 1)) < 0.15  # IR drop + 8-bit ADC
    mask = np.zeros(arr.shape, bool)
    mask[5, :] = True
    sub = arr.read(mask)
    assert np.isnan(sub[~mask]).all() and np.isfinite(sub[mask]).all()


def test_clock_moves_virtual_time_and_latency_is_charged(bench):
    t0 = bench.clock.now()
    bench.clock.wait(3600.0)
    assert bench.clock.now() - t0 == pytest.approx(3600.0, abs=0.1)
    t1 = bench.clock.now()
    bench.array.read()
    spent = bench.clock.now() - t1
    assert 0.002 < spent < 0.1  # transaction latency + row reads, not zero


def test_chuck_temperature_settles_with_a_time_constant(bench):
    bench.thermal.set_temperature(85.0)
    assert not bench.thermal.settled()
    assert bench.thermal.temperature() < 40  # not instantly there
    bench.clock.wait(600.0)  # 10 time constants
    assert bench.thermal.settled()
    assert bench.simulation.chip.temperature == pytest.approx(85.0, abs=0.5)
    with pytest.raises(SafetyError):
        bench.thermal.set_temperature(200.0)


def test_prober_steps_only_when_separated_and_bins(bench):
    assert bench.prober.goto((3, 4)) == (3, 4)
    assert bench.simulation.in_contact
    assert bench.prober.position() == (3, 4)
    bench.prober.set_bin(2)
    assert bench.simulation.bins[bench.simulation.die_id] == 2
    bench.prober.separate()
    assert bench.simulation.chip is None
    g = bench.array.read()  # probes up: open circuits, the read-out's offset and noise only
    pristine = bench.datasheet.pristine_below
    assert g.max() > 0 and 0 <= g.mean() < 0.1 * pristine


def test_smu_and_switch_measure_one_cell(bench):
    chip = bench.simulation.chip
    chip.form()
    # word line 0 is matrix column 1A01; bit line 0 sits at matrix column 16 = card 2, column 05
    bench.switch.exclusive_close(["1A01", "2B05"])
    assert bench.switch.closed() == ["1A01", "2B05"]
    bench.smu.set_compliance(1e-4)
    bench.smu.set_voltage(0.2)
    bench.smu.output(True)
    current = bench.smu.measure_current()
    bench.smu.output(False)
    g = chip.truth().g[0, 0]
    assert current / 0.2 == pytest.approx(g, rel=0.05)


def test_smu_switch_array_agrees_with_reference_controller(bench):
    ref = bench.array
    ref.form()
    cell_by_cell = SmuSwitchArray(None, bench.guard,
                                  parts={"smu": bench.smu, "switch": bench.switch},
                                  word_lines=4, bit_lines=4, read_voltage=0.2,
                                  first_bit_column=bench.simulation.wiring.word_lines)
    mask = np.zeros(ref.shape, bool)
    mask[:4, :4] = True
    a = cell_by_cell.read()
    b = ref.read(mask)[:4, :4]
    truth = bench.simulation.chip.truth()
    ok = ~truth.stuck[:4, :4]
    # both within read noise of each other (1 % each, 12-bit ADC)
    assert np.median(np.abs(a[ok] / b[ok] - 1)) < 0.03
    # the same pulse through either path moves the same cells the same way
    volts = np.zeros((4, 4))
    volts[1, 2] = -3.0
    before = bench.simulation.chip.truth().g[1, 2]
    assert cell_by_cell.pulse(volts, width=10e-6) == 1
    after = bench.simulation.chip.truth().g[1, 2]
    assert after < before or truth.stuck[1, 2]
    x = np.array([0.1, 0.0, 0.05, 0.2])
    assert np.allclose(cell_by_cell.mvm(x), x @ cell_by_cell.read(), rtol=0.05)


def test_averaged_reads_on_both_array_paths(bench):
    """Board averaging and the SMU's repeat filter both cut read noise, one operation each."""
    bench.array.form()
    # an hour on: freshly formed cells still relax by a few tenths of a uS within the
    # seconds these reads take, which would add to the read noise they compare
    bench.clock.wait(3600.0)
    mask = np.zeros(bench.array.shape, bool)
    mask[:4, :4] = True
    truth = bench.simulation.chip.truth()
    ok = ~truth.stuck[:4, :4]

    def spread(read, n):
        return np.median(np.stack([read(n) for _ in range(12)]).std(axis=0)[ok])

    bench.array.read(mask)  # the driver's one-time set-up
    tx = bench.array.transactions
    bench.array.read(mask, averages=16)
    assert bench.array.transactions - tx == 3  # configure, error check, one read
    ref_one = spread(lambda n: bench.array.read(mask, averages=n)[:4, :4], 1)
    ref_avg = spread(lambda n: bench.array.read(mask, averages=n)[:4, :4], 16)
    assert ref_avg < 0.5 * ref_one
    cell_by_cell = SmuSwitchArray(None, bench.guard,
                                  parts={"smu": bench.smu, "switch": bench.switch},
                                  word_lines=4, bit_lines=4, read_voltage=0.2,
                                  first_bit_column=bench.simulation.wiring.word_lines)
    smu_one = spread(lambda n: cell_by_cell.read(averages=n), 1)
    smu_avg = spread(lambda n: cell_by_cell.read(averages=n), 16)
    assert smu_avg < 0.5 * smu_one


def test_sparse_operations_touch_only_their_cells_and_cost_less_bench_time(bench):
    chip = bench.simulation.chip
    bench.array.form()
    bench.array.read()  # the driver's one-time set-up
    mask = np.zeros(bench.array.shape, bool)
    mask[[2, 5, 40], [7, 0, 63]] = True
    volts = np.where(mask, 3.0, 0.0)
    before = chip.truth().g.copy()
    bench.array.pulse(volts, width=10e-6)  # 3 of 4096 cells: sent as a list
    after = chip.truth()
    assert np.array_equal(after.g[~mask], before[~mask])
    assert np.all((after.g[mask] > before[mask]) | after.stuck[mask])
    t0 = bench.clock.now()
    sparse = bench.array.read(mask)
    sparse_s = bench.clock.now() - t0
    t0 = bench.clock.now()
    bench.array.read()
    full_s = bench.clock.now() - t0
    assert np.allclose(sparse[mask], after.g[mask], rtol=0.05)
    assert sparse_s < full_s


def test_thermostream_drives_the_die_when_flowing():
    import pyvisa

    from instruments import VisaSession
    from instruments.drivers import ThermoStream

    with open_bench() as bench:
        sim = bench.simulation
        rm = pyvisa.ResourceManager(sim.visa_library())
        session = VisaSession(rm, sim.resources()["thermostream"], error_query="EROR?",
                              no_error=lambda r: r.strip() == "0")
        forcer = ThermoStream(session, bench.guard)
        bench.prober.goto(5)
        forcer.set_temperature(60.0)
        bench.clock.wait(300)
        assert forcer.settled() and forcer.temperature() == pytest.approx(60.0, abs=0.5)
        bench.array.read()
        assert sim.chip.temperature == pytest.approx(60.0, abs=0.5)
        forcer.stop()
        bench.array.read()
        assert sim.chip.temperature == pytest.approx(25.0, abs=0.5)
