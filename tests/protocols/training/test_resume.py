"""Resume: the continuing training has, right after its checkpoint is loaded, exactly the
digital state the uninterrupted one had at that point, and reads the chip the way the
uninterrupted one did, even on a board that lost its settings (a new process, a power
cycle); a finished run is scored on several passes of the test split."""

from __future__ import annotations

import numpy as np
import pytest

from calib.wiring import open_bench
from protocols.profiles import write_verify_params
from protocols.training import InSitu, TrainParams, begin
from protocols.training.result import FINAL_PASSES, score_passes, training_result
from tests.protocols.training.test_methods import blobs

PARAMS = TrainParams(epochs=2, lr=0.5, batch=5, hidden=6, float_epochs=30)


def _bench():
    b = open_bench()
    b.prober.goto(12)
    b.array.form()
    return b


def digital_state(t: InSitu) -> dict:
    """Everything of a training but the conductances it reads from the chip."""
    state = {"epoch": t.epoch, "rule": t.rule, "update": t.update, "eps": t.eps,
             "lone": t.lone, "layers": t.layers, "refreshes": t.refreshes,
             "read_averages": t.read_averages, "programming_pulses": t.programming_pulses,
             "records": [r.row() for r in t.records], "params": t.params,
             "backward": t.chip.backward, "inference": t.chip.params,
             "mapping": t.chip.mapping.to_dict(), "subset": t.subset, "skip": t.skip,
             "chi": t.acc.chi, "references": t.chip.references}
    for k, b in enumerate(t.chip.biases):
        state[f"bias{k}"] = b
    for k, v in t.response.to_arrays().items():
        state[f"response.{k}"] = v
    return state


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray | float) or isinstance(b, np.ndarray | float):
        return (np.asarray(a).shape == np.asarray(b).shape
                and np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True))
    if isinstance(a, list) and a and isinstance(a[0], tuple):
        return np.array_equal(np.array(a, float), np.array(b, float), equal_nan=True)
    return a == b


@pytest.mark.parametrize("method", ["mixed", "sgd"])
def test_resume_restores_the_whole_digital_state_and_the_reads(method):
    data = blobs()
    with _bench() as b:
        t = begin(b.array, b.datasheet, data, PARAMS, method, clock=b.clock)
        t.run_epoch()
        want = digital_state(t)
        reads = b.array.configuration()["read_averages"]  # how the epoch's reads converted
        arrays, meta = t.to_arrays()
    assert reads == write_verify_params(b.datasheet).read_averages > 1
    with _bench() as b2:  # another process's bench: a board at its power-on settings
        assert b2.array.configuration()["read_averages"] == 1
        back = InSitu.from_arrays(b2.array, data, PARAMS, arrays, meta, clock=b2.clock,
                                  wv_params=write_verify_params(b2.datasheet))
        got = digital_state(back)
        assert sorted(got) == sorted(want)
        differ = [k for k in want if not _same(want[k], got[k])]
        assert differ == []
        # the continuing run's reads convert as the uninterrupted run's did
        assert b2.array.configuration()["read_averages"] == reads
        back.run_epoch()
        assert b2.array.configuration()["read_averages"] == reads and back.epoch == 2


def test_final_score_is_the_mean_of_several_passes_through_the_chip():
    data = blobs()
    with _bench() as b:
        t = begin(b.array, b.datasheet, data, PARAMS, "mixed", clock=b.clock)
        t.run_epoch()
        g, calls = t.chip.g.copy(), []

        def spy(name):
            command = getattr(b.array, name)

            def call(*args, **kwargs):
                calls.append(name)
                return command(*args, **kwargs)
            return call

        for name in ("pulse_cells", "read_cells", "mvm"):
            setattr(b.array, name, spy(name))
        passes = score_passes(t, 3)
        assert len(passes) == 3 and all(0 <= p <= 1 for p in passes)
        assert calls == ["mvm"] * 3 * 2  # one MVM per layer and pass; nothing pulsed, read
        assert np.array_equal(t.chip.g, g, equal_nan=True)
        result = training_result(t, "mixed", [0.9], 0.9)
    assert len(result.final_passes) == FINAL_PASSES
    s = result.summary()
    assert s["final_test_accuracy"] == pytest.approx(np.mean(result.final_passes))
    assert s["final_test_passes"] == list(result.final_passes)
    assert s["test_accuracy"] == t.records[-1].test_accuracy  # the epoch's one pass
    assert training_result(t, "mixed", [0.9], 0.9, passes=0).final_test_accuracy == \
        t.records[-1].test_accuracy
