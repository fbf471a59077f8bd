"""The die file's layout as data: format, attributes, and the datasets of every job.

Everything a die file may hold is declared here, in one module, so a reader finds
the whole layout in one place (docs/die-file.md explains it) and a job cannot
write a dataset that is not declared: :func:`check_arrays` and :func:`check_rows`
refuse unknown jobs, unknown dataset names and the wrong kind of values before
anything is written. :func:`check_structure` is the check every open makes.

To add a job or a dataset, add it to ``JOBS`` below (and to docs/die-file.md).
A new dataset needs no new format version; a change to the meaning of an
existing attribute or dataset does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from calib.store.errors import DieStoreError

FORMAT = "aimc-calib die file"
FORMAT_VERSION = 2  # what this toolkit writes
READABLE_VERSIONS = (1, 2)  # what it opens (a version-1 file becomes version 2 at its first change)
STATUSES = ("running", "complete", "failed", "interrupted")
ARTIFACTS = "artifacts"  # the group of a run that holds its artifacts
RUN_NAME = re.compile(r"^(\d{4,})_([A-Za-z][A-Za-z0-9_]*)$")  # NNNN_<protocol>
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")  # artifacts and their arrays


@dataclass(frozen=True)
class Attr:
    """One attribute of the root, of a run or of an artifact."""

    name: str
    kind: str  # "str" | "int" | "float" | "json" (a JSON text)
    doc: str
    required: bool = False  # the structure check refuses a file without it
    since: int = 1  # the format version that introduced it


ROOT_ATTRS: tuple[Attr, ...] = (
    Attr("format", "str", f'always "{FORMAT}"', required=True),
    Attr("format_version", "int", "layout version: 2 is written, 1 and 2 are read", required=True),
    Attr("wafer", "str", "the wafer's name ('' if not given)", required=True),
    Attr("die", "int", "the die's id (-1 if not given)", required=True),
    Attr("created", "str", "when the file was made, ISO 8601 UTC"),
    Attr("last_run_number", "int", "the newest run number ever given out; numbers never repeat",
         since=2),
)

RUN_ATTRS: tuple[Attr, ...] = (
    Attr("protocol", "str", "the job that made the run (a key of JOBS)", required=True),
    Attr("status", "str", "running | complete | failed | interrupted", required=True),
    Attr("started", "str", "ISO 8601 UTC", required=True),
    Attr("ended", "str", "ISO 8601 UTC, once finished or failed"),
    Attr("toolkit_version", "str", "aimc-calib version that made the run"),
    Attr("host", "str", "the computer that ran the job", since=2),
    Attr("pid", "int", "the process that ran the job", since=2),
    Attr("chip", "str", "the chip type (datasheet name)"),
    Attr("die", "int", "the die id, as the job saw it"),
    Attr("temperature_c", "float", "chuck temperature at the start (NaN: no thermal controller)"),
    Attr("params_json", "json", "the job's parameters"),
    Attr("instruments_json", "json", "role -> instrument identity (*IDN?)"),
    Attr("configuration_json", "json", "role -> the instrument's settings", since=2),
    Attr("datasheet_json", "json", "the chip datasheet the job used", since=2),
    Attr("summary_json", "json", "the run's summary, once finished"),
    Attr("error", "str", "what went wrong (failed / interrupted runs)"),
    Attr("fallback", "str", "where the results went when the die file could not take them",
         since=2),
    Attr("bench_time_s", "float", "bench time the job took"),
    Attr("wall_time_s", "float", "wall-clock time the job took"),
)

ARTIFACT_ATTRS: tuple[Attr, ...] = (
    Attr("saved", "str", "ISO 8601 UTC", required=True),
    Attr("meta_json", "json", "what the arrays mean (model kind, units, fit quality)",
         required=True),
)

#: attributes a caller may not set through ``**attrs`` (the store keeps them)
RESERVED_RUN_ATTRS = frozenset(a.name for a in RUN_ATTRS
                               if a.kind == "json" or a.name in (
                                   "protocol", "status", "started", "ended", "toolkit_version",
                                   "host", "pid", "error", "fallback"))

# value kinds of plain datasets -> numpy dtype kinds accepted (ints go into float as float64)
KINDS = {"float": "fiu", "int": "iu", "bool": "b"}


@dataclass(frozen=True)
class Dataset:
    """One dataset a job writes in its run group."""

    name: str
    dtype: str | np.dtype  # "float" | "int" | "bool" | a numpy (compound) dtype
    doc: str
    appendable: bool = False  # a time series: resizable along axis 0, grown by store.append

    def describe(self) -> str:
        if isinstance(self.dtype, np.dtype):
            return "compound (" + ", ".join(self.dtype.names or ()) + ")"
        return self.dtype


@dataclass(frozen=True)
class Job:
    """A job and every dataset it may write."""

    name: str
    doc: str
    datasets: tuple[Dataset, ...]

    def dataset(self, name: str) -> Dataset:
        for ds in self.datasets:
            if ds.name == name:
                return ds
        raise DieStoreError(
            f"job {self.name!r} declares no dataset {name!r} (declared: "
            f"{', '.join(d.name for d in self.datasets)}; add it to calib/store/schema.py)")


# -- compound dtypes -----------------------------------------------------------------------

HISTORY = np.dtype([("iteration", "i4"), ("phase", "S10"), ("active", "i4"), ("pulsed", "i4"),
                    ("converged", "i4"), ("transactions", "i4"), ("bench_time_s", "f8")])
PROGRESS = np.dtype([("step", "i4"), ("done", "i4"), ("total", "i4"), ("bench_time_s", "f8"),
                     ("wall_time_s", "f8")])
TEMPERATURE_PROGRESS = np.dtype([("setpoint_c", "f8"), ("measured_c", "f8"),
                                 ("settled_s", "f8"), ("bench_time_s", "f8")])
# a train run's epochs: accuracy is the test split's, step the batches trained so far
CHECKPOINTS = np.dtype([("epoch", "i4"), ("step", "i4"), ("loss", "f8"),
                        ("train_accuracy", "f8"), ("accuracy", "f8"), ("pulses", "i8"),
                        ("transactions", "i8"), ("bench_time_s", "f8"), ("wall_time_s", "f8")])
SWEEP_PROGRESS = np.dtype([("die", "i4"), ("status", "S12"), ("run", "S40"),
                           ("in_band_fraction", "f8"), ("wall_time_s", "f8")])

# -- the jobs ------------------------------------------------------------------------------

JOBS: dict[str, Job] = {job.name: job for job in (
    Job("form", "forming of the cells that read pristine", (
        Dataset("formed_mask", "bool", "the cells that read pristine and got a forming pulse"),
    )),
    Job("write_verify", "programming targets by write-verify", (
        Dataset("target", "float", "target conductance per cell, S (NaN: not targeted)"),
        Dataset("final", "float", "verify estimate per cell at the end, S (NaN: not targeted)"),
        Dataset("pulses", "int", "pulses per cell, touch-ups included"),
        Dataset("converged", "bool", "in band at the end"),
        Dataset("unresponsive", "bool", "did not move under the strongest pulse"),
        Dataset("unreachable", "bool", "moves, but cannot reach its target"),
        Dataset("exhausted", "bool", "ran out of pulses"),
        Dataset("history", HISTORY, "one row per iteration of the loop", appendable=True),
        Dataset("weights_target", "float", "the weights asked for (weight targets only)"),
        Dataset("weights_achieved", "float", "the weights the final conductances stand for"),
    )),
    Job("map", "conductance map of the array (repeated reads)", (
        Dataset("conductance", "float", "mean read per cell, S"),
        Dataset("conductance_std", "float", "spread of the repeated reads per cell, S"),
        Dataset("progress", PROGRESS, "progress while mapping", appendable=True),
    )),
    # fault codes (uint8, protocols.variability.Fault): 0 healthy, 1 stuck-low, 2 stuck-high,
    # 3 unformed, 4 narrow (moves, cannot reach the chip window), 5 unresponsive within limits
    Job("variability", "variability map: every cell's window, thresholds, rates, fault class", (
        Dataset("g_min", "float", "reachable bottom per cell, S (non-moving cells: their read)"),
        Dataset("g_max", "float", "reachable top per cell, S (non-moving cells: their read)"),
        Dataset("g_min_c2c", "float", "cycle-to-cycle spread of the bottom, S (NaN: not moving)"),
        Dataset("g_max_c2c", "float", "cycle-to-cycle spread of the top, S (NaN: not moving)"),
        Dataset("set_threshold", "float", "smallest SET amplitude that moved the cell, V "
                "(NaN: none up to the reference)"),
        Dataset("reset_threshold", "float", "smallest RESET amplitude that moved it, V "
                "(magnitude)"),
        Dataset("set_rate", "float", "share of the distance to g_max one reference SET removes"),
        Dataset("reset_rate", "float", "share of the distance to g_min one reference RESET "
                "removes"),
        Dataset("fault", "int", "fault class, uint8: 0 healthy, 1 stuck-low, 2 stuck-high, "
                "3 unformed, 4 narrow, 5 unresponsive within limits"),
        Dataset("read_noise_points", "float", "binned repeat reads: rows (G S, sigma S, cells)"),
        Dataset("progress", PROGRESS, "one row per phase of the map", appendable=True),
    )),
    Job("infer", "a network on the chip: programmed (artifacts: mapping, drift "
        "calibrations) or found there, and its accuracy at virtual ages", (
        Dataset("ages_s", "float", "ages after programming the accuracy was measured at, s"),
        Dataset("accuracy", "float", "test accuracy per age (rows) and compensation method "
                "(columns, the run's params.compensation order)"),
        Dataset("layer_mvm_error", "float", "relative RMS error of each layer's MVM against "
                "the float product of the intended weights, at the first age"),
    )),
    Job("tempcal", "conductance against chuck temperature (artifact: temperature_model)", (
        Dataset("setpoint_c", "float", "the visits' set points in visiting order, degC"),
        Dataset("conductance", "float", "each visit's mean whole-array read, S (visits first)"),
        Dataset("coefficients", "float", "fitted temperature coefficient per cell, law units"),
        Dataset("progress", TEMPERATURE_PROGRESS, "one row per visit",
                appendable=True),
    )),
    Job("train", "in-situ training of a network on the array (artifacts: checkpoint, "
        "replaced every epoch; response_model, at the end)", (
        Dataset("checkpoints", CHECKPOINTS, "one row per finished epoch (a resumed run starts "
                "with the epochs of the checkpoint it continues)", appendable=True),
        Dataset("weights", "float", "every layer's weights as read at the end, layer 0 "
                "row-major, then layer 1"),
        Dataset("conductance", "float", "the array as read at the end, S (NaN: unused)"),
    )),
    Job("user_step", "a lab's own step in a wafer sweep (module:function); its summary is "
        "the dict the function returned", (
        Dataset("values", "float", "numbers the step chose to keep (run.finish arrays)"),
    )),
    Job("sweep", "a job over many dies (the runs themselves live in each die's file)", (
        Dataset("progress", SWEEP_PROGRESS, "one row per die done", appendable=True),
    )),
)}

if any(d.name == ARTIFACTS for j in JOBS.values() for d in j.datasets):
    raise AssertionError(f"{ARTIFACTS!r} is the name of a run's artifacts group")


def job(name: str) -> Job:
    """The declaration of job ``name``; DieStoreError if no such job is declared."""
    try:
        return JOBS[name]
    except (KeyError, TypeError):
        raise DieStoreError(f"unknown job {name!r}: declared jobs are {', '.join(JOBS)} "
                            "(add it to calib/store/schema.py)") from None


def check_arrays(job_name: str, arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Arrays ready to write for ``job_name``: every name declared, every value of its kind.

    Returns them as numpy arrays (integers for a float dataset become float64,
    compound rows take the declared dtype). DieStoreError on the first problem.
    """
    declared = job(job_name)
    if not isinstance(arrays, Mapping):
        raise DieStoreError(f"{job_name}: arrays must be a dict of name -> array")
    return {name: conform(declared.dataset(name), value, job_name)
            for name, value in arrays.items()}


def check_rows(job_name: str, name: str, rows: Any) -> np.ndarray:
    """Rows to append to the time series ``name`` of ``job_name`` (at least 1-D)."""
    ds = job(job_name).dataset(name)
    if not ds.appendable:
        raise DieStoreError(f"{job_name}: dataset {name!r} is not appendable (declare it "
                            "appendable=True in calib/store/schema.py)")
    arr = conform(ds, rows, job_name)
    return arr.reshape(1) if arr.ndim == 0 else arr


def conform(ds: Dataset, value: Any, job_name: str) -> np.ndarray:
    """``value`` as an array of ``ds``'s kind; DieStoreError if it is of another kind."""
    where = f"{job_name}: dataset {ds.name!r}"
    declared = ds.dtype
    try:
        if isinstance(declared, np.dtype) and not isinstance(value, np.ndarray | np.void):
            arr = np.array(value, dtype=declared)  # a list of tuples
        else:
            arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise DieStoreError(f"{where}: cannot be made an array ({exc})") from None
    if isinstance(declared, np.dtype):
        if arr.dtype.names != declared.names:
            got = f"({', '.join(arr.dtype.names)})" if arr.dtype.names else str(arr.dtype)
            raise DieStoreError(f"{where}: expected fields ({', '.join(declared.names)}), "
                                f"got {got}")
        for field in declared.names:
            want, got = declared.fields[field][0], arr.dtype.fields[field][0]
            ok = {"f": "fiu", "i": "iu", "u": "iu", "b": "b", "S": "S"}.get(want.kind, want.kind)
            if got.kind not in ok or got.shape != want.shape:
                raise DieStoreError(f"{where}: field {field!r} is declared {want}, got {got}")
            if want.kind == "S" and got.itemsize > want.itemsize:
                raise DieStoreError(f"{where}: field {field!r} holds up to {got.itemsize} bytes, "
                                    f"declared {want.itemsize}")
        return arr.astype(declared)
    if arr.dtype.kind not in KINDS[declared]:
        raise DieStoreError(f"{where}: declared {declared}, got {arr.dtype}")
    if declared == "float" and arr.dtype.kind in "iu":
        arr = arr.astype(np.float64)
    return arr


# -- the structure every open checks -------------------------------------------------------

def text(value: Any) -> str | None:
    """An attribute as text (h5py gives str or bytes); None if it is no text."""
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    return None


def run_number(run_id: str) -> int | None:
    match = RUN_NAME.match(run_id)
    return int(match.group(1)) if match else None


def check_structure(f: h5py.File, where: Any) -> int:
    """Check the layout of an open die file; returns its format version.

    Raises DieStoreError naming ``where`` (the file) and what is wrong.
    """
    fmt = text(f.attrs.get("format"))
    if fmt != FORMAT:
        raise DieStoreError(f"{where}: not an aimc-calib die file (format attribute {fmt!r})")
    raw = f.attrs.get("format_version")
    try:
        version = int(raw)
        if version != raw:
            raise ValueError
    except (TypeError, ValueError):
        raise DieStoreError(f"{where}: damaged die file: format_version {raw!r} is not a "
                            "whole number") from None
    if version > FORMAT_VERSION:
        raise DieStoreError(f"{where}: format version {version} is newer than this toolkit reads "
                            f"({FORMAT_VERSION}); upgrade aimc-calib")
    if version not in READABLE_VERSIONS:
        raise DieStoreError(f"{where}: damaged die file: format_version {version}")
    for attr in ROOT_ATTRS:
        if attr.required and attr.since <= version and attr.name not in f.attrs:
            raise DieStoreError(f"{where}: damaged die file: root attribute {attr.name!r} missing")
    _check_int(f.attrs["die"], f"{where}: damaged die file: root attribute 'die'")
    if "last_run_number" in f.attrs:
        _check_int(f.attrs["last_run_number"],
                   f"{where}: damaged die file: root attribute 'last_run_number'")
    runs = f.get("runs")
    if not isinstance(runs, h5py.Group):
        raise DieStoreError(f"{where}: damaged die file: no 'runs' group")
    for name in runs:
        if RUN_NAME.match(name) is None:
            raise DieStoreError(f"{where}: damaged die file: run {name!r} is not named "
                                "NNNN_<protocol>")
        g = runs.get(name)
        if not isinstance(g, h5py.Group):
            raise DieStoreError(f"{where}: damaged die file: run {name!r} is not a group")
        for attr in RUN_ATTRS:
            if attr.required and attr.name not in g.attrs:
                raise DieStoreError(f"{where}: damaged die file: run {name!r} has no "
                                    f"{attr.name!r} attribute")
            if attr.required and text(g.attrs[attr.name]) is None:
                raise DieStoreError(f"{where}: damaged die file: run {name!r} attribute "
                                    f"{attr.name!r} is not text")
        status = text(g.attrs["status"])
        if status not in STATUSES:
            raise DieStoreError(f"{where}: damaged die file: run {name!r} has status "
                                f"{status!r} (not one of {', '.join(STATUSES)})")
    return version


def _check_int(value: Any, what: str) -> int:
    try:
        number = int(value)
        if number != value:
            raise ValueError
    except (TypeError, ValueError):
        raise DieStoreError(f"{what} is {value!r}, not a whole number") from None
    return number
