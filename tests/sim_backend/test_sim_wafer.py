"""Wafer map, per-die determinism, radial structure and dead dies."""

from __future__ import annotations

import numpy as np
import pytest

import sim_backend
from sim_backend import WaferSpecError


@pytest.fixture(scope="module")
def small_spec():
    return sim_backend.load_chip("rram", rows=32, cols=32)


def test_die_map_geometry(small_spec):
    wafer = sim_backend.SimWafer(small_spec, seed=7)
    ids = [d.id for d in wafer.dies]
    assert ids == list(range(1, len(ids) + 1))
    assert 200 < len(ids) < 300  # 200 mm wafer, 10 mm dies, 5 mm edge exclusion
    for d in wafer.dies:  # every die fully inside the usable radius
        cx, cy = d.center_mm
        assert np.hypot(abs(cx) + 5, abs(cy) + 5) <= 95 + 1e-9
    assert wafer.at(wafer.info(12).x, wafer.info(12).y).id == 12
    with pytest.raises(WaferSpecError, match="no die 9999"):
        wafer.die(9999)
    with pytest.raises(WaferSpecError, match="no die at column"):
        wafer.at(-1, -1)


def test_same_die_same_chip_and_dies_differ(small_spec):
    a = sim_backend.SimWafer(small_spec, seed=7).die(12).truth()
    b = sim_backend.SimWafer(small_spec, seed=7).die(12).truth()
    c = sim_backend.SimWafer(small_spec, seed=7).die(13).truth()
    d = sim_backend.SimWafer(small_spec, seed=8).die(12).truth()
    assert np.array_equal(a.g_max, b.g_max) and np.array_equal(a.stuck, b.stuck)
    assert not np.array_equal(a.g_max, c.g_max)
    assert not np.array_equal(a.g_max, d.g_max)


def test_same_operations_same_results(small_spec):
    out = []
    for _ in range(2):
        chip = sim_backend.SimWafer(small_spec, seed=7).die(12)
        chip.form()
        chip.pulse(np.full(chip.shape, 1.7))
        out.append(chip.read())
    assert np.array_equal(out[0], out[1])


def test_visited_die_keeps_its_state(small_spec):
    wafer = sim_backend.SimWafer(small_spec, seed=7)
    chip = wafer.die(12)
    chip.form()
    assert wafer.die(12) is chip and wafer.die(12).truth().formed.any()
    assert not wafer.die(12, fresh=True).truth().formed.any()


def test_radial_gradient_and_dead_dies(small_spec):
    wafer = sim_backend.SimWafer(small_spec, seed=7)
    radius, gmax, stuck, dead_ok = [], [], [], []
    for d in wafer.dies:
        t = wafer.die(d.id).truth()
        if d.dead:
            dead_ok.append(bool(t.stuck.all()))
            continue
        radius.append(d.radius)
        gmax.append(np.median(t.g_max[~t.stuck]))
        stuck.append(t.stuck.mean())
    radius, gmax, stuck = map(np.asarray, (radius, gmax, stuck))
    assert dead_ok and all(dead_ok) and 3 <= len(dead_ok) <= 12  # 3 % of ~240 dies
    assert np.corrcoef(radius, gmax)[0, 1] < -0.8  # g_max falls toward the rim
    assert stuck[radius > 0.8].mean() > 2 * stuck[radius < 0.3].mean()
    dead = next(d for d in wafer.dies if d.dead)
    chip = wafer.die(dead.id)
    chip.form()
    assert chip.pulse(np.full(chip.shape, 3.0)) == 0
    assert np.nanmax(chip.read()) < 1e-6


def test_bad_wafer_file(tmp_path, small_spec):
    path = tmp_path / "w.toml"
    path.write_text('[wafer]\nname="x"\ndiameter="200 V"\ndie_width="10 mm"\n'
                    'die_height="10 mm"\nedge_exclusion="5 mm"\n[gradient]\n'
                    'g_max_edge_drop=0.1\nstuck_edge_gain=1\n[defects]\ndead_fraction=0\n')
    with pytest.raises(WaferSpecError, match=r"wafer\.diameter: expected a length"):
        sim_backend.SimWafer(small_spec, wafer=path)
    with pytest.raises(WaferSpecError, match="unknown wafer preset"):
        sim_backend.load_wafer("nope")


@pytest.mark.parametrize("seed", [-1, 1.5, 7.0, "7", None, True])
def test_a_bad_seed_is_a_clear_error_naming_it(small_spec, seed):
    with pytest.raises(WaferSpecError, match="seed") as info:
        sim_backend.SimWafer(small_spec, seed=seed)
    assert repr(seed) in str(info.value)
    from sim_backend.bench import SimBench

    with pytest.raises(WaferSpecError, match="seed") as info:
        SimBench(small_spec, seed=seed)
    assert repr(seed) in str(info.value)


@pytest.mark.parametrize("seed", [-5, 2.5, (3, -1), ("a",), ()])
def test_a_bad_chip_seed_is_a_clear_error(small_spec, seed):
    with pytest.raises(sim_backend.ChipInputError, match="seed"):
        sim_backend.SimChip(small_spec, seed=seed)


def test_numpy_integer_seeds_are_accepted(small_spec):
    a = sim_backend.SimWafer(small_spec, seed=np.int64(7)).die(12).truth()
    b = sim_backend.SimWafer(small_spec, seed=7).die(12).truth()
    assert np.array_equal(a.g_max, b.g_max)
    assert sim_backend.SimChip(small_spec, seed=np.uint32(3)).truth().g.shape == (32, 32)
