"""The layout as data: every job's datasets declared, values checked before they are written."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from calib.store import JOBS, DieStoreError, check_arrays, schema
from tests.calib.store.helpers import HISTORY, make_v1


def test_every_job_is_declared_with_its_datasets():
    assert {"form", "write_verify", "map", "tempcal", "train", "sweep"} <= set(JOBS)
    wv = JOBS["write_verify"]
    assert wv.dataset("final").dtype == "float" and wv.dataset("pulses").dtype == "int"
    assert wv.dataset("converged").dtype == "bool"
    assert wv.dataset("history").appendable and wv.dataset("history").dtype.names[1] == "phase"
    assert JOBS["form"].dataset("formed_mask").dtype == "bool"
    for job in JOBS.values():
        for ds in job.datasets:
            assert ds.doc and (ds.dtype in schema.KINDS or isinstance(ds.dtype, np.dtype))
            assert ds.name != schema.ARTIFACTS
    assert schema.FORMAT_VERSION == 2 and schema.READABLE_VERSIONS == (1, 2)
    assert {a.name for a in schema.RUN_ATTRS if a.required} == {"protocol", "status", "started"}


def test_check_arrays_converts_and_refuses():
    out = check_arrays("write_verify", {"final": [1, 2], "pulses": np.arange(3, dtype=np.uint8),
                                        "history": [(1, b"coarse", 1, 1, 0, 1, 0.5)]})
    assert out["final"].dtype == np.float64  # ints into a float dataset
    assert out["history"].dtype == schema.HISTORY
    assert check_arrays("write_verify", {"history": np.zeros(2, HISTORY)})["history"].shape == (2,)
    cases = [
        ("dance", {"x": 1}, "unknown job 'dance'"),
        ("form", {"final": np.zeros(2)}, "declares no dataset 'final'"),
        ("write_verify", {"final": np.zeros(2, bool)}, "declared float, got bool"),
        ("write_verify", {"converged": np.zeros(2)}, "declared bool, got float64"),
        ("write_verify", {"pulses": np.zeros(2)}, "declared int, got float64"),
        ("write_verify", {"final": np.array(["a"])}, "declared float"),
        ("write_verify", {"final": np.array([None])}, "declared float, got object"),
        ("write_verify", {"history": np.zeros(2)}, "expected fields"),
        ("write_verify", {"history": np.zeros(1, [("iteration", "i4")])}, "expected fields"),
        ("write_verify", {"history": np.zeros(1, [(n, "S11" if n == "phase" else t)
                                                  for n, t in HISTORY])}, "holds up to 11 bytes"),
        ("write_verify", {"history": np.zeros(1, [(n, "f8" if n == "phase" else t)
                                                  for n, t in HISTORY])}, "field 'phase'"),
        ("write_verify", [1, 2], "must be a dict"),
    ]
    for job, arrays, message in cases:
        with pytest.raises(DieStoreError, match=message):
            check_arrays(job, arrays)


def test_check_rows():
    assert schema.check_rows("write_verify", "history", np.zeros((), HISTORY)).shape == (1,)
    with pytest.raises(DieStoreError, match="not appendable"):
        schema.check_rows("write_verify", "final", np.zeros(3))


@pytest.mark.parametrize("mutate, message", [
    (lambda f: f.attrs.__delitem__("format"), "not an aimc-calib die file"),
    (lambda f: f.attrs.__setitem__("format_version", "two"), "format_version 'two'"),
    (lambda f: f.attrs.__setitem__("format_version", 0), "format_version 0"),
    (lambda f: f.attrs.__setitem__("format_version", 3), "newer than this toolkit"),
    (lambda f: f.attrs.__delitem__("die"), "root attribute 'die' missing"),
    (lambda f: f.attrs.__setitem__("die", "twelve"), "'die' is 'twelve'"),
    (lambda f: f.__delitem__("runs"), "no 'runs' group"),
    (lambda f: f["runs"].create_group("x"), "run 'x' is not named NNNN_<protocol>"),
    (lambda f: f["runs"].create_dataset("0009_form", data=1), "run '0009_form' is not a group"),
    (lambda f: f["runs/0001_write_verify"].attrs.__delitem__("status"), "has no 'status'"),
    (lambda f: f["runs/0001_write_verify"].attrs.__delitem__("started"), "has no 'started'"),
    (lambda f: f["runs/0001_write_verify"].attrs.__setitem__("status", "meh"), "status 'meh'"),
    (lambda f: f["runs/0001_write_verify"].attrs.__setitem__("protocol", 7), "is not text"),
])
def test_structure_check(tmp_path, mutate, message):
    path = make_v1(tmp_path / "d.h5", mutate=mutate)
    with h5py.File(path, "r") as f, pytest.raises(DieStoreError, match=message) as err:
        schema.check_structure(f, path)
    assert str(path) in str(err.value)
