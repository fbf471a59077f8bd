"""The transposed MVM (``:MVM:TRAN?``): exact bytes of the driver, the emulator scored
against the chip's ground truth, and the role's optional capability."""

from __future__ import annotations

import numpy as np
import pytest

from calib.wiring import open_bench
from instruments.drivers.reference_array import ReferenceArrayController
from instruments.errors import ArrayShapeError, InstrumentError, SafetyError
from instruments.roles import ArrayController, TransposedMVM
from tests.harness import expected_protocol, f32_block, guard


def array(session):
    return ReferenceArrayController(session, guard())


def test_transposed_mvm_bytes():
    v = np.array([[0.1, 0.0, 0.2], [0.0, 0.05, 0.0]])
    with expected_protocol(array, [
        (":ARR:SIZE?", "2,3"), (":PULS:COUN?", "0"),
        (b":MVM:TRAN? " + f32_block(v.ravel()), f32_block([1e-5, 2e-5, 3e-6, 4e-6])),
        (b":MVM:TRAN? " + f32_block(v[0]), f32_block([1e-5, 2e-5])),
    ]) as drv:
        out = drv.mvm_transposed(v)
        assert out.shape == (2, 2) and np.allclose(out, [[1e-5, 2e-5], [3e-6, 4e-6]])
        assert drv.mvm_transposed(v[0]).shape == (2,)


def test_transposed_mvm_refuses_before_any_byte():
    with expected_protocol(array, [(":ARR:SIZE?", "2,3")]) as drv:
        with pytest.raises(SafetyError, match="read limit"):
            drv.mvm_transposed(np.array([0.5, 0.0, 0.0]))
        with pytest.raises(ArrayShapeError, match=r"\(n, 3\)"):
            drv.mvm_transposed(np.array([0.1, 0.1]))


def test_reply_of_wrong_length_is_refused():
    with expected_protocol(array, [
        (":ARR:SIZE?", "2,3"), (":PULS:COUN?", "0"),
        (b":MVM:TRAN? " + f32_block([0.1, 0.1, 0.1]), f32_block([1e-5])),
    ]) as drv, pytest.raises(InstrumentError, match="expected 2 values"):
        drv.mvm_transposed(np.array([0.1, 0.1, 0.1]))


def test_optional_capability_of_the_role():
    assert issubclass(ReferenceArrayController, TransposedMVM)
    with open_bench() as bench:
        assert isinstance(bench.array, ArrayController)
        assert callable(getattr(bench.array, "mvm_transposed", None))


@pytest.mark.parametrize("chip", ["rram", "pcm"])
def test_emulator_transposed_product_against_truth(chip):
    """Row currents through the bench equal the true conductances' ``G @ v`` with the
    wires' IR drop solved exactly (``sim_backend.crossbar`` on ``G.T``).

    Tolerance: 99 % of currents within 3 % plus 2 % of the range, all within 5 % of
    the range (read noise summed over ~32 cells, PCM's 1/f noise, 0.5 % output noise,
    8-bit steps of a 1.5x range set by a few stuck cells on the unprogrammed PCM die).
    The IR drop itself (about 13 % on a freshly formed 64 x 64 RRAM die, half the
    columns driven) matches the forward product's on the same die to 2 points.
    """
    from sim_backend import crossbar

    rng = np.random.default_rng(3)
    with open_bench(chip=chip) as bench:
        bench.prober.goto(12)
        if bench.datasheet.forming.required:
            bench.array.form()
        rows, cols = bench.array.shape
        v = 0.2 * (rng.random((16, cols)) < 0.5)
        truth = bench.simulation.chip.truth()
        wired = crossbar.column_currents(v, truth.g.T, bench.simulation.chip.spec.lines
                                         .wire_resistance)
        fs = float(1.5 * np.abs(wired).max())
        bench.array.set_mvm_range(fs)
        bench.array.mvm(np.zeros(rows))  # the driver's set-up, once
        tx = bench.array.transactions
        out = bench.array.mvm_transposed(v)
        assert bench.array.transactions == tx + 1
        assert out.shape == (16, rows)
        err = np.abs(out - wired)
        assert np.mean(err <= 0.03 * np.abs(wired) + 0.02 * fs) >= 0.99
        assert err.max() <= 0.05 * fs
        drop_t = np.median(out / (v @ truth.g.T))
        drop_f = np.median(bench.array.mvm(v) / (v @ truth.g))
        assert drop_t < 1.0 and abs(drop_t - drop_f) < 0.02


def test_chip_transposed_has_ir_drop_and_row_chains(rram_spec):
    """The physics: with wires the currents fall below G @ v (more with every column
    driven); away from the reference temperature each word line's chain moves them."""
    import sim_backend

    spec = rram_spec.with_geometry(32, 48)
    chip = sim_backend.SimChip(spec, seed=5)
    chip.form()
    g = chip.truth().g
    v = np.full((4, 48), 0.2)
    fs = float(1.5 * (v @ g.T).max())
    out = chip.mvm_transposed(v, full_scale=fs)
    assert out.shape == (4, 32)
    ratio = out.mean(axis=0) / (v @ g.T)[0]
    assert 0.8 < ratio.mean() < 0.999  # IR drop
    with pytest.raises(sim_backend.ChipInputError if hasattr(sim_backend, "ChipInputError")
                       else ValueError, match=r"\(n, 48\)"):
        chip.mvm_transposed(np.zeros(32))
    chip.temperature = spec.temperature.reference + 60.0
    hot = chip.mvm_transposed(v, full_scale=fs).mean(axis=0)
    g_hot = chip.truth().g
    ideal_hot = (v @ g_hot.T)[0] * ratio
    dev = hot / ideal_hot - 1
    assert np.std(dev) > 1e-4  # the chains differ from row to row
    # and are the die's own: the same on the next call
    again = chip.mvm_transposed(v, full_scale=fs).mean(axis=0)
    assert np.allclose(again, hot, rtol=0.02)
