"""What makes write-verify cheap on a noisy chip (issue 14, part 3: PCM efficiency).

Each behaviour on synthetic cells or a loop over a frozen array (no simulator), and
the benchmark's stress cases against the simulator's ground truth.
"""

from __future__ import annotations

import numpy as np

import protocols
from protocols.write_verify import AdaptiveResponse, CellStatus, WriteVerifyParams
from protocols.write_verify.loop import _Loop
from protocols.write_verify.response import SET
from tests.protocols.write_verify.test_loop import _NoisyFrozenArray
from tests.protocols.write_verify.test_response import MODEL, known_model

US = 1e-6


def observed_small_steps(scatter, n=2000, seed=0):
    """A model that knows the population law, after small SETs of cells that follow it
    exactly (no cell-to-cell spread), from 5 to 30 uS, each landing with 10 %
    cycle-to-cycle noise, an absolute ``scatter`` and 0.2 uS verify noise on both reads."""
    model = known_model(n)
    rng = np.random.default_rng(seed)
    idx, polarity = np.arange(n), np.full(n, SET)
    for _ in range(3):
        g = rng.uniform(5, 30, n) * US
        volts, width = model.pulse_for(idx, polarity, rng.uniform(0.5, 2.0, n) * US, g)
        d = MODEL.drive(polarity, volts, width)
        step = (90 * US - g) * -np.expm1(-0.1 * d)
        moved = (step * (1 + 0.1 * rng.standard_normal(n)) + scatter * rng.standard_normal(n)
                 + 0.2 * US * np.sqrt(2) * rng.standard_normal(n))
        model.observe(idx, polarity, volts, width, moved, g)
    return model


def test_the_steps_absolute_scatter_is_learned_from_small_steps():
    """A landing scatter of 1 uS is seen as about sqrt(1 + 2 x 0.2^2) = 1.04 uS (the
    verify noise of both reads is part of what a step shows); without it, about 0.3."""
    at = np.array([10 * US, 25 * US])
    noisy = observed_small_steps(1.0 * US).step_scatter(SET, at)
    clean = observed_small_steps(0.0).step_scatter(SET, at)
    assert noisy is not None and clean is not None
    assert np.all((0.85 * US < noisy) & (noisy < 1.25 * US)), noisy
    assert np.all(clean < 0.45 * US), clean
    assert AdaptiveResponse(4, MODEL).step_scatter(SET, at) is None  # nothing seen yet


def test_the_step_scatter_round_trips():
    model = observed_small_steps(1.0 * US)
    restored = AdaptiveResponse.from_arrays(model.to_arrays())
    at = np.array([5 * US, 20 * US])
    assert np.array_equal(restored.step_scatter(SET, at), model.step_scatter(SET, at))
    # a model saved before the scatter was learned has none
    old = {k: v for k, v in model.to_arrays().items() if not k.startswith("step_")}
    assert AdaptiveResponse.from_arrays(old).step_scatter(SET, at) is None


def test_a_short_landing_within_the_scatter_steps_up_only_when_it_repeats():
    """With a 1 uS landing scatter, a SET expected to move 1.5 uS that is not seen to
    move may just have landed short: the rate is not halved at once (the next pulse
    would double and overshoot), but from the third such pulse in a row it is, so a
    stuck cell still climbs to the strongest pulse."""
    model = known_model()
    model.step_fit[SET] = (1.0 * US, 0.0)
    idx, polarity, g = np.arange(4), np.full(4, SET), np.full(4, 20 * US)
    for pulse in range(1, 4):
        volts, width = model.pulse_for(idx, polarity, np.full(4, 1.5 * US), g)
        model.observe(idx, polarity, volts, width, np.zeros(4), g)
        assert np.all(model.quiet[SET] == pulse)
        stepped_up = np.all(model.factor[SET, :, 0] < -0.5)
        assert stepped_up == (pulse >= AdaptiveResponse.QUIET_PATIENCE), pulse
    # without a scatter learned, the first quiet pulse steps up (as before)
    plain = known_model()
    volts, width = plain.pulse_for(idx, polarity, np.full(4, 1.5 * US), g)
    plain.observe(idx, polarity, volts, width, np.zeros(4), g)
    assert np.all(plain.factor[SET, :, 0] < -0.5)


def frozen_loop(g, target, sigma=0.0, **knobs):
    array = _NoisyFrozenArray(g, sigma)
    params = WriteVerifyParams(**knobs)
    loop = _Loop(array, None, params, AdaptiveResponse(target.size, params.pulse_model),
                 target.ravel(), np.ones(target.size, bool), target.shape, None)
    return array, loop


def test_sets_aim_short_by_the_scatter_when_an_overshoot_costs_more():
    """With a landing scatter s and read noise sigma, a SET aims mu = (s^2 + sigma^2)
    ln C / (2 tolerance) short of its target (C = overshoot_cost), at most half the
    planned move; RESETs and C = 1 aim as before."""
    target = np.full((1, 4), 10 * US)
    g = np.array([[5.0, 9.0, 12.0, 14.0]]) * US  # two SETs (5 and 1 uS), two RESETs
    for cost in (1.0, 3.0):
        _, loop = frozen_loop(g, target, overshoot_cost=cost)
        loop.g[:] = g.ravel()
        loop.noise.fit = (0.5 * US, 0.0)
        loop.response.step_fit[SET] = (1.0 * US, 0.0)
        todo = np.arange(4)
        polarity = np.where(g.ravel() < target.ravel(), SET, 1).astype(np.int8)
        planned = np.abs(g - target).ravel()
        short = loop._shortfall(todo, polarity, planned)
        mu = (1.0**2 + 0.5**2) * US**2 * np.log(3.0) / (2 * 1 * US)  # 0.69 uS
        if cost == 1.0:
            assert np.all(short == 0)  # (the loop does not even ask)
        else:
            assert np.allclose(short, [mu, 0.5 * US, 0, 0])


def test_the_read_that_starts_a_confirmation_is_not_part_of_its_mean():
    """A read chosen for lying in the band would pull the mean inward: the confirmation
    is decided on the two or more reads after it."""
    target = np.full((4, 4), 10 * US)
    _, loop = frozen_loop(target + 0.2 * US, target, max_iterations=1)
    statuses = []
    for _ in range(3):
        loop.run("program")
        loop.p = WriteVerifyParams(max_iterations=loop.iterations + 1)
        statuses.append(int(loop.status[0]))
    # judged in band, then one read after it (not enough), then accepted on two
    assert statuses == [CellStatus.CONFIRM, CellStatus.CONFIRM, CellStatus.CONVERGED]
    assert np.all(loop.n_reads == 2)


def test_a_touch_up_re_read_keeps_the_reads_of_cells_that_did_not_move():
    """Cells that did not change since they were accepted on 8 reads are worth 10 after
    a 2-read re-read. Cells that relaxed (by 3 +- 1 uS each) are judged on the re-read:
    the population's shift is learned, and the old reads count for little."""
    n = 400
    rng = np.random.default_rng(0)
    target = np.full((1, n), 10 * US)
    sigma = 0.5 * US
    for shift, spread in ((0.0, 0.0), (3.0 * US, 1.0 * US)):
        _, loop = frozen_loop(target, target, max_confirm_reads=16)
        loop.noise.fit = (sigma, 0.0)
        loop.g[:] = target.ravel() + sigma / np.sqrt(8) * rng.standard_normal(n)
        loop.n_reads[:] = 8
        now = target.ravel() + shift + spread * rng.standard_normal(n)  # the truth now
        new = now + sigma / np.sqrt(2) * rng.standard_normal(n)
        g, n_eff = loop._combine(np.arange(n), new)
        err = g - now
        if spread == 0:
            assert np.all(n_eff > 9)
            assert np.std(err) < 0.7 * np.std(new - now)  # better than the re-read alone
        else:
            assert np.all(n_eff < 2.5)
            assert abs(np.mean(err)) < 0.1 * US and np.std(err) < 1.1 * np.std(new - now)


def test_re_opened_cells_go_on_confirming_instead_of_starting_again():
    """After the wait, accepted cells that no longer pass are confirmed from the reads
    so far; cells still sitting where they were accepted are not pulsed."""
    target = np.full((16, 16), 10 * US)
    array = _NoisyFrozenArray(target + 0.3 * US, 0.5 * US, seed=2)
    result = protocols.write_verify(array, target, tolerance=1 * US, max_pulses=5,
                                    relax_wait_s=0.0, touchup_rounds=0)
    assert result.converged.mean() > 0.9
    before = array.pulsed
    params = WriteVerifyParams(max_pulses=5)
    loop = _Loop(array, None, params, result.response, target.ravel(),
                 np.ones(target.size, bool), target.shape, None, result.read_noise)
    loop.status[:] = CellStatus.CONVERGED
    loop.g[:] = (target + 0.3 * US).ravel()
    loop.n_reads[:] = 4
    loop.reopen_drifted()
    reopened = loop.status != CellStatus.CONVERGED
    assert np.all(loop.status[reopened] == CellStatus.CONFIRM)
    loop.run("touch-up")
    assert array.pulsed == before  # frozen cells in band: confirmed, never pulsed
    assert np.mean(loop.status == CellStatus.CONVERGED) > 0.95


def test_confidence_relaxes_after_repeated_rejected_confirmations():
    """A cell whose confirmations keep ending in a pulse is accepted on less confidence
    from the doubt_rounds-th one on (down to accept_confidence_min), so it does not
    hold the whole run; before that, the confidence asked is the full one."""
    target = np.full((1, 3), 10 * US)
    _, loop = frozen_loop(target, target, accept_confidence=2.5, accept_min_fraction=0.0,
                          accept_relax=0.7, accept_confidence_min=0.5, doubt_rounds=3)
    loop.noise.fit = (0.75 * US, 0.0)
    g = np.full(3, 10 * US)
    n = np.full(3, 8)
    zone = loop._accept_zone(g, n, 0.8 * US, np.array([0, 3, 12]))
    full = 1 * US - 2.5 * 0.75 * US / np.sqrt(8)
    assert np.isclose(zone[0], full) and np.isclose(zone[1], full)
    assert np.isclose(zone[2], 1 * US - 0.5 * 0.75 * US / np.sqrt(8))  # at the floor
    plain = frozen_loop(target, target)[1]
    plain.noise.fit = (0.75 * US, 0.0)
    assert np.allclose(plain._accept_zone(g, n, 0.8 * US, np.array([0, 3, 12])),
                       plain._accept_zone(g, n, 0.8 * US))  # accept_relax 1: never relaxes


def test_the_benchmarks_stress_cases_are_the_chips_they_claim(tmp_path):
    """bench_program --chips harsh / strong: the preset with 3 % stuck cells and a 20 %
    Gmax spread (pcm), a 2 uS relaxation spread (rram), on a wafer without gradients."""
    from benchmarks.bench_program import case_chip, one_run

    assert case_chip("pcm", "default", tmp_path) == ("pcm", "default")
    harsh = one_run("pcm", 64, oracle=False, chip=case_chip("pcm", "harsh", tmp_path))
    assert 0.02 < harsh["stuck"] / 64**2 < 0.04
    assert harsh["in_band"] > 0.95 and harsh["gave_up"] >= 0 and harsh["wrong"] >= 0
    with _harsh_bench(tmp_path, 64) as bench:
        bench.prober.goto(12)
        truth = bench.simulation.chip.truth()
    g_max = np.log(truth.g_max[~truth.stuck])
    assert 0.17 < np.std(g_max) < 0.23
    chip, _ = case_chip("rram", "strong", tmp_path)
    assert 'sigma_0 = "2 uS"' in open(chip).read() and 'base = "rram"' in open(chip).read()


class _JumpyArray(_NoisyFrozenArray):
    """Cells that a pulse puts on their target (to 0.1 uS) and that each wait moves by
    ``jump`` (S, Gaussian): a die that relaxes strongly (jump 2 uS) or holds (0)."""

    def __init__(self, target, jump, seed=0):
        super().__init__(target + 3 * US, 0.1 * US, seed=seed)
        self.target, self.jump = target, jump

    def pulse_cells(self, cells, volts, width=1e-6):
        flat = self.g.reshape(-1)
        flat[cells] = self.target.ravel()[cells] + 0.1 * US * self.rng.standard_normal(
            np.size(cells))
        return super().pulse_cells(cells, volts, width)

    def relax(self):
        self.g = self.g + self.jump * self.rng.standard_normal(self.shape)


class _Clock:
    def __init__(self, array):
        self.array, self.t, self.waits = array, 0.0, 0

    def now(self):
        return self.t

    def wait(self, seconds):
        self.t += seconds
        self.waits += 1
        self.array.relax()


def test_touch_up_rounds_go_on_while_a_die_keeps_relaxing_out_of_the_band():
    """Two rounds by default; a die whose cells keep leaving the band (a quarter or more
    of them each wait) gets up to touchup_rounds_max; one that holds stops after the
    first re-read finds nothing to do."""
    target = np.full((32, 32), 10 * US)
    waits = {}
    for jump, most in ((0.0, 4), (2 * US, 4), (2 * US, 2)):
        array = _JumpyArray(target, jump)
        clock = _Clock(array)
        protocols.write_verify(array, target, tolerance=1 * US, clock=clock,
                               touchup_rounds=2, touchup_rounds_max=most, max_pulses=40)
        waits[jump, most] = clock.waits
    assert waits[0.0, 4] == 1  # nothing re-opened: done
    assert waits[2 * US, 2] == 2 and waits[2 * US, 4] == 4


def test_acceptance_allows_for_the_change_seen_at_the_last_re_read():
    """After a re-read that showed the cells changing (relaxation), the acceptance zone
    narrows by change_weight of that variance; before any re-read it is as it was."""
    target = np.full((1, 400), 10 * US)
    _, loop = frozen_loop(target, target, change_weight=0.05, max_confirm_reads=16)
    loop.noise.fit = (0.2 * US, 0.0)
    g, n = np.full(2, 10 * US), np.full(2, 4)
    before = loop._accept_zone(g, n, 0.8 * US)
    loop.g[:] = target.ravel()
    loop.n_reads[:] = 8
    rng = np.random.default_rng(1)
    loop._combine(np.arange(400), target.ravel() + 2 * US * rng.standard_normal(400))
    assert 3.0 * US**2 < loop.change_var < 5.0 * US**2  # (2 uS)^2
    after = loop._accept_zone(g, n, 0.8 * US)
    spread = np.sqrt((0.2 * US) ** 2 / 4 + 0.05 * loop.change_var)
    assert np.allclose(after, np.clip(1 * US - 1.3 * spread, 0.5 * US, 0.95 * US))
    assert np.all(after < before)


def test_a_mean_still_in_the_band_when_the_reads_are_spent_is_kept_not_pulsed():
    """Cells 0.45 uS off target read with 0.3 uS noise: asked for more confidence than 4
    reads can give, they are pulsed when the reads run out, unless budget_confidence
    keeps a mean that is inside the band on that (lower) confidence."""
    target = np.full((16, 16), 10 * US)
    outcome = {}
    for keep in (None, 1.0):
        array = _NoisyFrozenArray(target + 0.45 * US, 0.3 * US, seed=4)
        result = protocols.write_verify(array, target, tolerance=1 * US, max_pulses=2,
                                        max_confirm_reads=4, max_confirm_reads_reset=4,
                                        accept_confidence=5.0, accept_min_fraction=0.0,
                                        budget_confidence=keep)
        outcome[keep] = (array.pulsed, result.converged.mean())
    assert outcome[None][0] > 0.5 * target.size and outcome[None][1] < 0.5
    # (a few are pulsed before the read noise is learned: nothing to judge them on)
    assert outcome[1.0][0] < 0.1 * target.size and outcome[1.0][1] > 0.95


def test_stuck_cells_of_the_harsh_chip_are_classified(tmp_path):
    """bench_program's harsh pcm chip (3 % stuck, 20 % Gmax spread), 128 x 128: stuck
    cells are unresponsive, or converged where their value happens to be in band, but
    for at most 2 % spent on small pulses at the band's edge (exhausted, never
    unreachable), and the loop gives up on no more than 0.05 % of responsive cells.
    With the PCM profile's escalate_pulses 10 the stuck-low cells just outside their
    band are classified too: at most one stuck cell is left exhausted (4 of 484 with
    escalate_pulses None)."""
    from protocols.profiles import write_verify_params

    with _harsh_bench(tmp_path, 128) as bench:
        bench.prober.goto(12)
        target = np.random.default_rng(128).uniform(0, 25 * US, bench.array.shape)
        params = write_verify_params(bench.datasheet)
        assert params.escalate_pulses == 10  # the profile's (1/f reads)
        result = protocols.write_verify(bench.array, target, clock=bench.clock,
                                        params=params)
        truth = bench.simulation.chip.truth()
    stuck = truth.stuck
    assert stuck.sum() > 300
    assert not np.any(result.unreachable & stuck)
    assert np.mean(result.unresponsive[stuck] | result.converged[stuck]) >= 0.98
    assert np.count_nonzero(result.exhausted & stuck) <= 1
    ok = ~stuck & (target >= truth.g_min) & (target <= truth.g_max)
    gave_up = (result.unresponsive | result.unreachable | result.exhausted) & ok
    assert gave_up.sum() <= 0.0005 * ok.sum()


def _straggler_run(**kw):
    """250 cells on target and 6 just outside the band (+1.1 uS), all frozen, read with
    0.3 uS noise: the 250 settle in a few iterations, the 6 are pulsed for ever (they
    do not move, and are never at the strongest drive long enough to be classified
    within max_pulses 40)."""
    target = np.full((16, 16), 10 * US)
    g = target.copy()
    g.flat[:6] += 1.1 * US
    array = _NoisyFrozenArray(g, 0.3 * US, seed=5)
    return protocols.write_verify(array, target, tolerance=1 * US, max_pulses=40,
                                  stall_pulses=100, **kw)


def test_past_the_soft_deadline_what_is_still_in_play_is_settled_on_its_reads():
    """deadline_factor 1.5, deadline_share 0.95: the run ends right after 1.5 x the
    iterations that settled 95 % of the cells; the stragglers are given up (exhausted),
    never accepted (their reads say they are out); the cells on target are accepted.
    Without it, the stragglers hold the run until their pulse budget is spent."""
    free = _straggler_run()
    late = _straggler_run(deadline_factor=1.5, deadline_share=0.95)
    settled = [1 - h.active / 256 for h in late.history]
    k = next(i for i, s in enumerate(settled) if s >= 0.95) + 1
    assert late.iterations <= np.ceil(1.5 * k) + 3 < free.iterations
    stragglers = np.zeros(256, bool)
    stragglers[:6] = True
    assert np.all(late.exhausted.ravel()[stragglers])
    assert np.all(late.converged.ravel()[~stragglers])
    assert late.pulses.ravel()[stragglers].max() < free.pulses.ravel()[stragglers].min()


def _stuck_low_run(**kw):
    """64 cells stuck at 0.05 uS, targets 1.15 uS (just outside the band), read with
    0.1 uS noise; pulses aimed at 0.6 of the error ask for a move (0.66 uS) that read
    noise could hide, so a still pulse never steps the drive up."""
    target = np.full((8, 8), 1.15 * US)
    array = _NoisyFrozenArray(np.full((8, 8), 0.05 * US), 0.1 * US, seed=6)
    return protocols.write_verify(array, target, tolerance=1 * US, max_pulses=40, aim=0.6,
                                  **kw)


def test_a_cell_near_zero_that_never_moved_gets_the_strongest_pulse_and_is_classified():
    """Without escalate_pulses the stuck-low cells spend their 40 pulses and end
    exhausted; with 10, from the 11th pulse on they get the strongest, three of those
    without a move and a probe classify them unresponsive (14-16 pulses: a noisy read
    may send one to a confirmation and back)."""
    free = _stuck_low_run()
    assert np.all(free.exhausted) and np.all(free.pulses == 40)
    fast = _stuck_low_run(escalate_pulses=10)
    assert np.all(fast.unresponsive)
    assert fast.pulses.max() <= 17


def test_only_cells_near_zero_that_never_moved_clearly_are_escalated():
    """A cell that once moved by 3 uS, or one reading 5 uS, keeps the pulse it was given;
    so does one with fewer than escalate_pulses pulses, and a probe."""
    n = 5
    params = WriteVerifyParams(tolerance=1 * US, escalate_pulses=10)
    response = AdaptiveResponse(n, MODEL)
    array = _NoisyFrozenArray(np.zeros(n), 0.1 * US)
    loop = _Loop(array, None, params, response, np.full(n, 1.2 * US), np.ones(n, bool), (n,),
                 None)
    loop.g[:] = [0.05, 0.05, 5.0, 0.05, 0.05]
    loop.g *= US
    loop.pulses[:] = [12, 12, 12, 5, 12]
    loop.max_move[1] = 3 * US
    loop.status[4] = CellStatus.PROBE
    todo, polarity = np.arange(n), np.full(n, SET, np.int8)
    volts, width = loop._escalate(todo, polarity, np.full(n, 1.0), np.full(n, 1e-7))
    strongest = (volts == MODEL.v_max) & (width == MODEL.width_cap(polarity))
    assert strongest.tolist() == [True, False, False, False, False]


def _harsh_bench(tmp_path, size: int):
    """A simulated bench of bench_program's harsh pcm chip, ``size`` x ``size``."""
    import dataclasses

    from benchmarks.bench_program import case_chip
    from calib.wiring.bench import Bench
    from calib.wiring.config import default_config

    chip, wafer = case_chip("pcm", "harsh", tmp_path)
    config = default_config("pcm", rows=size, cols=size)
    return Bench(dataclasses.replace(config, simulation=dataclasses.replace(
        config.simulation, chip=chip, wafer=wafer)))
