"""The simulated wafer remembers: a die saved to a state folder comes back bit for bit.

Saves are atomic (a crash mid-write keeps the previous state), a folder made for another
chip, geometry, wafer or seed is refused, and one process at a time holds a folder.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import sim_backend
from sim_backend import state as state_module
from sim_backend.bench import SimBench
from sim_backend.chip import SimChip
from sim_backend.state import StateBusyError, StateError
from sim_backend.wafer import SimWafer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", params=["rram", "pcm"])
def spec(request):
    return sim_backend.load_chip(request.param, rows=32, cols=32)


@pytest.fixture(scope="module")
def rram():
    return sim_backend.load_chip("rram", rows=16, cols=16)


def _work(chip: SimChip, seed: int = 1) -> None:
    """Forming, a mixed SET/RESET batch on some cells, time passing, a read."""
    chip.form()
    rng = np.random.default_rng(seed)
    volts = np.where(rng.random(chip.shape) < 0.3, rng.choice([-1.8, 1.8], chip.shape), 0.0)
    chip.pulse(volts, width=1e-6)
    chip.advance(3.0)
    chip.read()
    chip.temperature = 40.0


def _same_state(a: SimChip, b: SimChip) -> None:
    """Every attribute of the two chips equal: arrays bit for bit, generators' states."""
    assert set(vars(a)) == set(vars(b))
    for name, value in vars(a).items():
        other = getattr(b, name)
        if isinstance(value, np.ndarray):
            assert value.dtype == other.dtype and np.array_equal(value, other), name
        elif isinstance(value, np.random.Generator):
            assert value.bit_generator.state == other.bit_generator.state, name
        elif name not in state_module.REBUILT:
            assert value == other, name


def _saved(spec, folder: Path, die: int, seed: int = 7) -> SimChip:
    """Die ``die`` as the folder holds it, the folder let go of again."""
    wafer = SimWafer(spec, seed=seed, state=folder)
    try:
        return wafer.load(die)
    finally:
        wafer.close()


def _truths_equal(a, b) -> None:
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert np.array_equal(x, y), f.name
        else:
            assert x == y, f.name


def test_a_saved_die_comes_back_bit_for_bit(tmp_path, spec):
    wafer = SimWafer(spec, seed=7, state=tmp_path / "state")
    chip = wafer.die(12)
    _work(chip)
    assert wafer.save() == [12]
    wafer.close()  # nothing changed since: nothing written again

    again = SimWafer(spec, seed=7, state=tmp_path / "state")
    loaded = again.die(12)
    assert loaded is not chip and again.clock.now == wafer.clock.now
    _same_state(chip, loaded)
    _truths_equal(chip.truth(), loaded.truth())
    # the next operations draw the same noise: the never-saved chip and the loaded one agree
    assert np.array_equal(chip.read(), loaded.read())
    volts = np.full(spec.shape, 1.5)
    assert chip.pulse(volts) == loaded.pulse(volts)
    x = np.full(spec.shape[0], 0.1)
    assert np.array_equal(chip.mvm(x), loaded.mvm(x))
    _truths_equal(chip.truth(), loaded.truth())
    assert loaded.pulses_applied == chip.pulses_applied > 0
    again.close()


def test_attributes_added_to_the_chip_are_saved_without_edits(tmp_path, rram, monkeypatch):
    """Another per-cell array, a numpy scalar and a plain one, added to SimChip later."""
    built = SimChip._init_cells

    def with_more_state(self, rng):
        built(self, rng)
        self.wear = np.zeros(self.size, np.uint16)
        self.scale = np.float32(1.0)
        self.mode = ("a", 1)

    monkeypatch.setattr(SimChip, "_init_cells", with_more_state)
    wafer = SimWafer(rram, seed=7, state=tmp_path)
    chip = wafer.die(5)
    chip.wear[[3, 9]] = 7
    chip.scale, chip.mode = np.float32(0.5), ("b", 2)
    wafer.close()
    loaded = _saved(rram, tmp_path, 5)
    assert loaded.wear.dtype == np.uint16 and loaded.wear[[3, 9]].tolist() == [7, 7]
    assert loaded.scale == np.float32(0.5) and loaded.scale.dtype == np.float32
    assert loaded.mode == ("b", 2)


def test_an_attribute_that_cannot_be_saved_is_named(tmp_path, rram):
    wafer = SimWafer(rram, seed=7, state=tmp_path)
    wafer.die(5).cache = {"k": 1}
    with pytest.raises(StateError, match=r"SimChip\.cache: a dict cannot be saved"):
        wafer.save()


def test_state_saved_by_a_simulator_with_other_state_is_refused(tmp_path, rram, monkeypatch):
    wafer = SimWafer(rram, seed=7, state=tmp_path)
    wafer.die(5).form()
    wafer.close()
    built = SimChip._init_cells
    monkeypatch.setattr(SimChip, "_init_cells",
                        lambda self, rng: (built(self, rng), setattr(self, "wear", np.zeros(3))))
    with pytest.raises(StateError, match=r"missing: wear; unknown: -"):
        _saved(rram, tmp_path, 5)


def test_a_crash_mid_save_keeps_the_previous_state(tmp_path, rram, monkeypatch):
    folder = tmp_path / "state"
    wafer = SimWafer(rram, seed=7, state=folder)
    chip = wafer.die(12)
    chip.form()
    wafer.save()
    saved = chip.truth()
    chip.pulse(np.full(rram.shape, 1.8))  # changed since the save

    def crash(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(state_module.os, "replace", crash)
    with pytest.raises(OSError, match="No space left"):
        wafer.save()
    written = []
    real_write = os.write

    def half_then_killed(fd, data):  # the process dies halfway through the file
        written.append(real_write(fd, bytes(data)[: len(data) // 2]))
        raise KeyboardInterrupt

    monkeypatch.setattr(state_module.os, "write", half_then_killed)
    with pytest.raises(KeyboardInterrupt):
        wafer.close()  # the last save fails too; the folder is let go of all the same
    assert written
    monkeypatch.undo()
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]  # no half file
    _truths_equal(_saved(rram, folder, 12).truth(), saved)


def test_a_temp_file_left_by_a_killed_writer_is_removed(tmp_path, rram):
    wafer = SimWafer(rram, seed=7, state=tmp_path)
    wafer.die(3).form()
    wafer.close()
    (tmp_path / ".die_3.npz.999.abcd.tmp").write_bytes(b"half a file")
    SimWafer(rram, seed=7, state=tmp_path).close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["die_3.npz", "lock", "wafer.json"]


@pytest.mark.parametrize("change, named", [
    ({"seed": 8}, "seed 8"),
    ({"rows": 8}, "chip rram 8x16"),
    ({"chip": "pcm"}, "chip pcm 16x16"),
    ({"wafer": "w100"}, "wafer map"),
    ({"physics": True}, "chip spec's physics"),
])
def test_a_folder_made_for_another_wafer_is_refused(tmp_path, rram, change, named):
    wafer = SimWafer(rram, seed=7, state=tmp_path)
    wafer.die(3).form()
    wafer.close()
    spec = rram
    if "rows" in change:
        spec = rram.with_geometry(change["rows"], 16)
    if "chip" in change:
        spec = sim_backend.load_chip("pcm", rows=16, cols=16)
    if "physics" in change:
        spec = dataclasses.replace(rram, read_noise=dataclasses.replace(
            rram.read_noise, relative=rram.read_noise.relative * 2))
    wafer_spec = sim_backend.load_wafer("default")
    if "wafer" in change:
        wafer_spec = dataclasses.replace(wafer_spec, diameter_mm=150.0)
    with pytest.raises(StateError) as err:
        SimWafer(spec, seed=change.get("seed", 7), wafer=wafer_spec, state=tmp_path)
    message = str(err.value)
    assert "\n" not in message and str(tmp_path) in message and named in message
    assert "use another results folder" in message
    # refused, never used: the folder still serves the wafer it was made for
    assert _saved(rram, tmp_path, 3).truth().formed.any()


def test_a_damaged_die_file_is_refused_not_replaced(tmp_path, rram):
    wafer = SimWafer(rram, seed=7, state=tmp_path)
    wafer.die(3).form()
    wafer.close()
    path = tmp_path / "die_3.npz"
    path.write_bytes(path.read_bytes()[:200])
    again = SimWafer(rram, seed=7, state=tmp_path)
    with pytest.raises(StateError, match=r"die_3\.npz is damaged .*start die 3 afresh"):
        again.die(3)
    again.close()
    assert path.stat().st_size == 200  # left for the user to look at


def test_the_clock_moves_on_to_the_saved_time_never_back(tmp_path, rram):
    wafer = SimWafer(rram, seed=7, state=tmp_path)
    wafer.die(3).form()
    wafer.clock.advance(100.0)
    wafer.die(3).read()
    wafer.close()
    behind = SimWafer(rram, seed=7)
    behind.bind(tmp_path)
    assert behind.clock.now == pytest.approx(wafer.clock.now)
    behind.close()
    ahead = SimWafer(rram, seed=7, clock=sim_backend.VirtualClock(5000.0))
    ahead.bind(tmp_path)
    assert ahead.clock.now == 5000.0
    ahead.close()


def test_dies_used_before_binding_are_kept_unless_the_folder_has_them(tmp_path, rram):
    wafer = SimWafer(rram, seed=7)
    wafer.die(3).form()
    wafer.bind(tmp_path)  # a new folder: die 3 as this process left it is saved
    wafer.close()
    assert _saved(rram, tmp_path, 3).truth().formed.any()
    other = SimWafer(rram, seed=7)
    other.die(3)
    with pytest.raises(StateError, match="die 3 was used on this wafer before"):
        other.bind(tmp_path)
    SimWafer(rram, seed=7, state=tmp_path).close()  # let go of, not held


def test_a_die_only_looked_at_is_not_written(tmp_path, rram):
    wafer = SimWafer(rram, seed=7, state=tmp_path)
    wafer.die(3).form()
    wafer.close()
    before = (tmp_path / "die_3.npz").stat().st_mtime_ns, (tmp_path / "wafer.json").read_text()
    again = SimWafer(rram, seed=7, state=tmp_path)
    again.load(3).truth()
    again.load(4)
    again.close()
    assert ((tmp_path / "die_3.npz").stat().st_mtime_ns,
            (tmp_path / "wafer.json").read_text()) == before
    assert not (tmp_path / "die_4.npz").exists()


def _holder(folder: Path) -> subprocess.Popen:
    code = ("import sys, time, sim_backend\n"
            "from sim_backend.wafer import SimWafer\n"
            "w = SimWafer(sim_backend.load_chip('rram', rows=16, cols=16), seed=7, "
            "state=sys.argv[1])\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE,
                            text=True, env=env, cwd=ROOT)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_a_second_process_is_refused_and_a_killed_one_leaves_no_lock(tmp_path, rram):
    proc = _holder(tmp_path)
    try:
        with pytest.raises(StateBusyError) as err:
            SimWafer(rram, seed=7, state=tmp_path)
        assert str(err.value) == (f"simulated wafer state {tmp_path} is in use by another "
                                  f"process (pid {proc.pid}); wait for it to end")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    SimWafer(rram, seed=7, state=tmp_path).close()  # the kernel let go of the lock


def test_a_second_bench_in_one_process_is_refused(tmp_path, rram):
    first = SimWafer(rram, seed=7, state=tmp_path)
    with pytest.raises(StateBusyError, match="another bench of this process"):
        SimWafer(rram, seed=7, state=tmp_path)
    first.close()


def _contact(bench: SimBench, die: int) -> None:
    prober = bench.emulators["prober"]
    bench.transact(prober, b"x", lambda m: prober._step_seq([str(die)]))
    bench.transact(prober, b"x", lambda m: prober._contact([]))


def _separate(bench: SimBench) -> None:
    prober = bench.emulators["prober"]
    bench.transact(prober, b"x", lambda m: prober._separate([]))


def test_the_bench_saves_a_die_the_probes_leave_and_throttles_while_in_contact(
        tmp_path, monkeypatch):
    from sim_backend import wafer as wafer_module

    bench = SimBench("rram", seed=7, rows=16, cols=16, state=tmp_path)
    array = bench.emulators["array"]
    _contact(bench, 4)
    saves = []
    real_save = bench.wafer.save
    monkeypatch.setattr(bench.wafer, "save",
                        lambda **kw: saves.append(real_save(**kw)) or saves[-1])
    monkeypatch.setattr(wafer_module, "SAVE_INTERVAL_S", 3600.0)
    for _ in range(5):  # transactions in contact, well within the interval: no save
        bench.transact(array, b"x", lambda m: (bench.chip.form(), None)[1])
    assert saves == []
    monkeypatch.setattr(wafer_module, "SAVE_INTERVAL_S", 0.0)
    bench.transact(array, b"x", lambda m: (bench.chip.read(), None)[1])
    assert saves == [[4]]
    monkeypatch.setattr(wafer_module, "SAVE_INTERVAL_S", 3600.0)
    bench.transact(array, b"x", lambda m: (bench.chip.read(), None)[1])
    assert len(saves) == 1
    _separate(bench)  # the probes leave die 4: saved at once
    assert saves[-1] == [4]
    truth = bench.wafer.die(4).truth()
    bench.close()
    _truths_equal(_saved(bench.spec, tmp_path, 4).truth(), truth)


def test_autosave_writes_only_what_moved_on_and_close_what_was_handed_out(
        tmp_path, rram, monkeypatch):
    from sim_backend import wafer as wafer_module

    monkeypatch.setattr(wafer_module, "SAVE_INTERVAL_S", 0.0)
    monkeypatch.setattr(wafer_module, "SAVE_COST_FACTOR", 0.0)
    wafer = SimWafer(rram, seed=7, state=tmp_path)
    wafer.die(3).form()
    assert wafer.autosave() and (tmp_path / "die_3.npz").exists()
    chip = wafer.die(4)  # handed out, not (yet) changed through its methods
    assert wafer.autosave() and not (tmp_path / "die_4.npz").exists()
    chip.g0[:3] = 5e-6  # an edit behind the chip's back: saved when the wafer closes
    wafer.close()
    assert np.allclose(_saved(rram, tmp_path, 4).g0[:3], 5e-6)


def test_saves_are_throttled_by_their_cost(tmp_path, rram, monkeypatch):
    wafer = SimWafer(rram, seed=7, state=tmp_path)
    wafer.die(3).form()
    wafer.save()
    wafer._save_cost_s = 0.5  # a large array: its save took half a second
    wafer._saved_at = time.monotonic() - 2.0
    wafer.die(3).read()
    assert not wafer.autosave()  # 10 x 0.5 s between saves, not 1 s
    wafer._saved_at -= 4.0
    assert wafer.autosave()
    wafer.close()
