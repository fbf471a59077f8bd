"""Retention-aware write-verify (``hold_s``), scored against the simulator's ground truth
an hour after programming ends; the loop itself sees only the datasheet and its reads."""

from __future__ import annotations

import numpy as np
import pytest

import protocols
from calib import open_bench
from protocols.profiles import write_verify_params
from protocols.write_verify import RelaxationLaw, WriteVerifyError
from protocols.write_verify.hold import RelaxationFit, log_age

US = 1e-6
HOUR = 3600.0


def program(hold_s=None, size=64, seed=7, **kw):
    """Program uniform targets on a fresh die 12; truth in band right after and one hour
    after programming ends, over responsive cells."""
    with open_bench(rows=size, cols=size, chip="rram", seed=seed) as bench:
        bench.prober.goto(12)
        bench.array.form()
        w = bench.datasheet.window
        target = np.random.default_rng(size).uniform(w.g_min, w.g_max, bench.array.shape)
        given = target.copy()
        extra = {} if hold_s is None else {"hold_s": hold_s}
        result = protocols.write_verify(bench.array, target, clock=bench.clock,
                                        params=write_verify_params(bench.datasheet),
                                        **extra, **kw)
        truth = bench.simulation.chip.truth()
        ok = ~truth.stuck & (target >= truth.g_min) & (target <= truth.g_max)
        now = float((np.abs(truth.g - target) <= 1 * US)[ok].mean())
        bench.clock.wait(HOUR)
        later = bench.simulation.chip.truth()
        hour = float((np.abs(later.g - target) <= 1 * US)[ok].mean())
        assert np.array_equal(target, given)  # the caller's targets are not touched
        return result, now, hour


@pytest.fixture(scope="module")
def plain():
    return program()


@pytest.fixture(scope="module")
def held():
    return program(hold_s=HOUR)


def test_hold_keeps_cells_in_band_an_hour_later(plain, held):
    _, _, plain_hour = plain
    result, now, hour = held
    # issue 14: >= 95 % of responsive cells in +-1 uS one hour after programming ends;
    # the plain loop, which accepts a cell when it reads in band, keeps about two thirds
    assert plain_hour < 0.75
    assert hour >= 0.95
    assert hour >= plain_hour + 0.2
    assert now >= 0.9  # the price: aimed cells sit off target right after programming


def test_the_hold_prediction_matches_the_truth(held):
    result, _, hour = held
    assert result.hold_s == HOUR and result.hold_rounds >= 2
    assert abs(result.in_band_hold_predicted - hour) <= 0.02
    s = result.summary()
    assert s["hold_s"] == HOUR and s["in_band_hold_predicted"] == result.in_band_hold_predicted
    assert 0.9 <= s["in_band_now_fraction"] <= 1.0


def test_the_law_is_learned_from_re_reads(held):
    """rram relaxes down, by a fraction of a uS per unit ln t, with a spread growing in ln t."""
    law = held[0].relaxation
    assert isinstance(law, RelaxationLaw) and law.samples >= 1000
    shift_1h = float(law.shift(np.array(40 * US), log_age(0.0), log_age(HOUR)))
    assert -1.2 * US < shift_1h < -0.3 * US
    spread_1h = float(np.sqrt(law.variance(log_age(0.0), log_age(HOUR))))
    assert 0.3 * US < spread_1h < 1.0 * US
    assert law.variance(log_age(600.0), log_age(HOUR + 600)) < law.variance(0.0, log_age(HOUR))
    assert RelaxationLaw.from_arrays(law.to_arrays()) == law


def test_hold_zero_is_the_plain_loop_bit_for_bit(plain):
    result, _, _ = program(hold_s=0.0)
    ref = plain[0]
    assert np.array_equal(result.pulses, ref.pulses)
    assert np.array_equal(result.final, ref.final, equal_nan=True)
    assert result.relaxation is None and result.in_band_hold_predicted is None
    assert "hold_s" not in result.summary()


def test_a_law_learned_before_aims_the_first_pass(held):
    """Handed the law, the first pass is pre-compensated: fewer cells need a second
    programming, and the prediction is there after the first re-read."""
    law = held[0].relaxation
    result, _, hour = program(hold_s=HOUR, relaxation=law, hold_rounds=3)
    assert hour >= 0.9
    assert result.in_band_hold_predicted is not None


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "1h", True, None])
def test_bad_hold_times_are_refused_before_any_byte(bad):
    with open_bench(rows=16, cols=16, chip="rram", seed=7) as bench:
        target = np.full(bench.array.shape, 20 * US)
        sent = sum(bench.simulation.transactions.values())  # opening the bench asked its shape
        with pytest.raises(WriteVerifyError, match="hold_s"):
            protocols.write_verify(bench.array, target, clock=bench.clock, hold_s=bad)
        assert sum(bench.simulation.transactions.values()) == sent


@pytest.mark.parametrize("knob, bad", [("hold_rounds", 1), ("hold_touch_probability", 1.0),
                                       ("hold_wait_fraction", 0.0), ("hold_min_gain", -1.0)])
def test_bad_hold_knobs_are_named(knob, bad):
    with open_bench(rows=16, cols=16, chip="rram", seed=7) as bench:
        target = np.full(bench.array.shape, 20 * US)
        with pytest.raises(WriteVerifyError, match=knob):
            protocols.write_verify(bench.array, target, clock=bench.clock, hold_s=HOUR,
                                   **{knob: bad})


def test_hold_without_a_clock_is_refused_before_any_byte():
    with open_bench(rows=16, cols=16, chip="rram", seed=7) as bench:
        target = np.full(bench.array.shape, 20 * US)
        sent = sum(bench.simulation.transactions.values())  # opening the bench asked its shape
        with pytest.raises(WriteVerifyError, match="clock"):
            protocols.write_verify(bench.array, target, hold_s=HOUR)
        assert sum(bench.simulation.transactions.values()) == sent


def test_the_fit_recovers_a_known_law():
    """Synthetic re-reads of a walk with sigma(L) = a + b L and a mean slope m."""
    rng = np.random.default_rng(3)
    m, a, b, noise = -0.09 * US, 0.4 * US, 0.04 * US, 0.05 * US
    fit = RelaxationFit()
    n = 5000
    g0 = rng.uniform(5 * US, 80 * US, n)
    l_prev = np.zeros(n)
    g_prev_true = g0
    g_prev_read = g0 + noise * rng.standard_normal(n)
    for wait in (300.0, 600.0, 900.0):
        l_now = np.full(n, np.log(wait))
        var = (a + b * l_now) ** 2 - (a + b * l_prev) ** 2
        g_true = g_prev_true + m * (l_now - l_prev) + np.sqrt(var) * rng.standard_normal(n)
        g_read = g_true + noise * rng.standard_normal(n)
        fit.add(l_prev, l_now, g_prev_read, g_read, np.full(n, 2 * noise ** 2))
        l_prev, g_prev_true, g_prev_read = l_now, g_true, g_read
    law = fit.law()
    assert law.shift_per_ln_s == pytest.approx(m, rel=0.05)
    assert law.var_per_ln_s2 == pytest.approx(2 * a * b, rel=0.3)
    assert law.var_per_ln2_s2 == pytest.approx(b * b, rel=0.3)


def test_one_look_is_not_enough_to_fit():
    fit = RelaxationFit()
    fit.add(np.zeros(500), np.full(500, 6.0), np.full(500, 20 * US),
            np.full(500, 19.5 * US), np.zeros(500))
    assert fit.law() is None


def test_a_dead_die_is_not_watched_for_an_hour():
    """Die 5 is dead: nothing is accepted, so there is nothing to wait for."""
    with open_bench(rows=32, cols=32, chip="rram", seed=7) as bench:
        bench.prober.goto(5)
        bench.array.form()
        target = np.random.default_rng(3).uniform(5 * US, 40 * US, bench.array.shape)
        result = protocols.write_verify(bench.array, target, clock=bench.clock,
                                        params=write_verify_params(bench.datasheet),
                                        hold_s=HOUR)
    assert result.unresponsive.all()
    assert result.relax_wait_time_s == 0 and result.in_band_hold_predicted is None


def test_a_look_is_sampled_before_it_is_copied():
    """RelaxationFit keeps SAMPLES_PER_LOOK re-reads of a look; taking them before the
    per-sample rows are built keeps a look of a million cells from copying every cell
    five times (it was most of hold mode's peak at 1024^2: 209 -> 161 B per cell)."""
    import tracemalloc

    from protocols.write_verify.hold import SAMPLES_PER_LOOK

    n = 1_000_000
    rng = np.random.default_rng(0)
    l1, l2 = np.zeros(n), np.full(n, 3.0)
    g1 = rng.uniform(5e-6, 40e-6, n).astype(np.float32)
    g2 = g1 - 0.3e-6
    fit = RelaxationFit(seed=0)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        fit.add(l1, l2, g1, g2, 1e-14)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert fit.count == SAMPLES_PER_LOOK
    assert peak / n < 16, f"{peak / n:.1f} B per cell"
