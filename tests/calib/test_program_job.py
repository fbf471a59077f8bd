"""The programming job checks everything before the first byte reaches an instrument."""

from __future__ import annotations

import numpy as np
import pytest

from calib import open_bench
from calib.jobs import ProgramInputError, ProgramOptions, make_targets, program_die
from instruments.errors import UserError


@pytest.mark.parametrize("options", [
    ProgramOptions(max_pulses=0), ProgramOptions(max_pulses=-3),
    ProgramOptions(relax_wait_s=-1.0), ProgramOptions(relax_wait_s=float("nan")),
    ProgramOptions(relax_wait_s=float("inf")), ProgramOptions(read_averages=0),
    ProgramOptions(read_averages=5000), ProgramOptions(tolerance=0.0),
    ProgramOptions(tolerance=float("nan")), ProgramOptions(tolerance=1.0),
])
def test_bad_options_send_nothing_and_form_nothing(tmp_path, options):
    with open_bench() as bench:
        w = bench.datasheet.window
        targets = make_targets(bench.datasheet.shape, w.g_min, w.g_max, pattern="random")
        with pytest.raises(UserError):
            program_die(bench, 12, targets, options, results=tmp_path)
        assert sum(bench.simulation.transactions.values()) == 0  # not one byte sent
        assert bench.simulation.wafer.die(12).truth().formed.sum() == 0
    assert not list(tmp_path.rglob("*.h5"))


def test_targets_of_another_shape_are_refused_before_any_byte(tmp_path):
    with open_bench() as bench:
        targets = make_targets((32, 32), 1e-6, 40e-6, pattern="random")
        with pytest.raises(ProgramInputError, match="the chip is"):
            program_die(bench, 12, targets, results=tmp_path)
        assert sum(bench.simulation.transactions.values()) == 0


def test_a_datasheet_that_disagrees_with_the_array_is_refused_before_forming(tmp_path):
    """The datasheet says 64 x 64; the array controller reports 32 x 32."""
    from calib.wiring.bench import Bench
    from calib.wiring.config import default_config

    config = default_config(rows=32, cols=32)
    bench = Bench(config)
    try:
        bench.datasheet = bench.datasheet.with_geometry(64, 64)
        targets = make_targets((64, 64), 1e-6, 40e-6, pattern="random")
        with pytest.raises(ProgramInputError, match="reports 32 x 32 cells"):
            program_die(bench, 12, targets, results=tmp_path)
        assert bench.simulation.wafer.die(12).truth().formed.sum() == 0
    finally:
        bench.close()
    assert np.isfinite(targets.values).all()


def test_learned_state_that_cannot_be_stored_costs_no_results(tmp_path, monkeypatch):
    """A full disk at the (large) response-model artifact: the results still land."""
    from calib.store import DieStore, DieStoreError

    def full(self, *args, **kwargs):
        raise DieStoreError("cannot write die_12.h5: No space left on device")

    monkeypatch.setattr(DieStore, "save_artifact", full)
    with open_bench() as bench:
        w = bench.datasheet.window
        targets = make_targets(bench.datasheet.shape, w.g_min, w.g_max, pattern="random")
        summary = program_die(bench, 12, targets, results=tmp_path)
    assert "No space left" in summary["artifacts_error"]
    run = DieStore(summary["file"]).read_run(summary["run"])
    assert run["status"] == "complete" and run["final"].shape == (64, 64)


def test_learned_state_is_kept_for_the_next_job(tmp_path):
    from calib.store import DieStore
    from protocols.write_verify.read_noise import ReadNoise
    from protocols.write_verify.response import AdaptiveResponse

    with open_bench() as bench:
        w = bench.datasheet.window
        targets = make_targets(bench.datasheet.shape, w.g_min, w.g_max, pattern="random")
        summary = program_die(bench, 12, targets, results=tmp_path)
    store = DieStore(summary["file"])
    model = AdaptiveResponse.from_arrays(store.load_artifact("response_model")[0])
    noise = ReadNoise.from_arrays(store.load_artifact("read_noise")[0])
    assert not model.needs_pilot() and noise.fit is not None


def test_cells_formed_before_are_never_formed_again(tmp_path, monkeypatch):
    """A formed cell RESET hard can read below the pristine level: no second forming."""
    from calib.jobs.form import form_pristine
    from calib.store import DieStore, die_path

    with open_bench() as bench:
        bench.prober.goto(12)
        store = DieStore(die_path(tmp_path, "w", 12), "w", 12)
        first = form_pristine(bench, store)
        assert first > 4000
        formed = store.read_run(store.runs()[-1].run_id)["formed_mask"]
        low = np.flatnonzero(formed)[:100]
        real_read = bench.array.read

        def deep_reset_read(*args, **kwargs):  # 100 formed cells now read 0.05 uS
            g = real_read(*args, **kwargs)
            g.ravel()[low] = 0.05e-6
            return g

        monkeypatch.setattr(bench.array, "read", deep_reset_read)
        sent = []
        monkeypatch.setattr(bench.array, "form", lambda **kw: sent.append(kw) or 0)
        assert form_pristine(bench, store) == 0 and sent == []
    with open_bench() as fresh:  # a fresh simulated die under the same name: formed again
        fresh.prober.goto(12)
        assert form_pristine(fresh, store) > 4000
        run = store.runs()[-1]
        assert run.protocol == "form"
        assert store.read_run(run.run_id)["params"]["die_reads_unformed_again"] is True
