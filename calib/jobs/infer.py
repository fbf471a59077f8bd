"""The inference job behind ``calib infer``: program a network onto a die (or find it
there), calibrate its drift compensation, and measure its accuracy on the chip — now and
at later virtual ages — against the float network on the same data.

Everything is checked before the first byte: the model file, the dataset (width, labels,
NaNs), that the network fits the die, the compensation methods, the ages. The network,
its mapping and the drift calibrations are artifacts of the run that programmed them,
so a later ``calib infer`` on the die runs the same network without programming it
again — unless anything pulsed the die since (a ``calib program`` or ``calib map``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from calib.jobs.die import check_die_id, die_store, reach_die, wafer_name
from calib.jobs.form import form_pristine
from calib.jobs.run import check_interrupt, recorded_run
from calib.store import DieStore, DieStoreError
from instruments.errors import UserError
from protocols.inference import (
    METHODS,
    REFERENCE_CELLS,
    DriftCalibration,
    InferenceInputError,
    Mapping,
    Network,
    calibrate,
    correction,
    digits_test_set,
    load_digits_model,
    map_network,
    program_network,
    run_network,
)

JOB = "infer"
PULSING = ("write_verify", "variability", "train")  # jobs that move a die's conductances
AGE_UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0,
             "y": 365.25 * 86400.0}


class InferInputError(UserError, ValueError):
    """A bad model, dataset, method or age, or a die that holds no programmed model."""


def parse_ages(text: str) -> tuple[float, ...]:
    """``"1h,1d,30d,1y"`` -> seconds after programming (``0`` = right after)."""
    out = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        num = part.rstrip("abcdefghijklmnopqrstuvwxyz")
        unit = part[len(num):] or "s"
        try:
            value = float(num)
        except ValueError:
            value = float("nan")
        if unit not in AGE_UNITS or not math.isfinite(value) or value < 0:
            raise InferInputError(f"--at {part!r}: give ages such as 0, 90s, 10min, 1h, 1d, "
                                  "30d, 1y (units " + ", ".join(AGE_UNITS) + ")")
        out.append(value * AGE_UNITS[unit])
    if not out:
        raise InferInputError("--at: give at least one age, e.g. 1h,1d,30d,1y")
    return tuple(sorted(set(out)))


@dataclass(frozen=True)
class InferOptions:
    """What a user may set. Seconds; None = the bundled digits model / its test split."""

    model: str | None = None  # .npz of layers (docs/inference.md)
    dataset: str | None = None  # .npz with X (n, inputs) and y (n,)
    ages_s: tuple[float, ...] = (0.0,)  # after programming
    compensation: tuple[str, ...] = ("none",)
    program: bool | None = None  # None: when the die does not hold the model; True: always
    form: bool | None = None


def load_model(path: str | None) -> tuple[Network, str]:
    if path is None:
        net = load_digits_model()
        return net, "bundled digits model"
    try:
        return Network.from_npz(path), str(path)
    except InferenceInputError as exc:
        raise InferInputError(f"--model {path}: {exc}") from None


def load_dataset(path: str | None, net: Network) -> tuple[np.ndarray, np.ndarray, str]:
    if path is None:
        x, y = digits_test_set()
        source = "digits test split"
    else:
        try:
            with np.load(path, allow_pickle=False) as data:
                if "X" not in data.files or "y" not in data.files:
                    raise InferInputError(f"--dataset {path}: needs arrays X and y, has "
                                          f"{', '.join(data.files) or 'none'}")
                x, y = data["X"], data["y"]
        except (OSError, ValueError) as exc:
            raise InferInputError(f"--dataset {path}: not a readable .npz ({exc})") from None
        source = str(path)
    x = np.asarray(x)
    y = np.asarray(y)
    inputs, outputs = net.layers[0].weights.shape[0], net.layers[-1].weights.shape[1]
    if x.ndim != 2 or x.shape[1] != inputs:
        raise InferInputError(f"dataset {source}: X is {x.shape}, the network takes "
                              f"(n, {inputs})")
    if x.shape[0] == 0 or y.shape != (x.shape[0],):
        raise InferInputError(f"dataset {source}: y must be ({x.shape[0]},) labels, got "
                              f"{y.shape}" if x.shape[0] else f"dataset {source}: X is empty")
    if x.dtype.kind not in "iuf" or not np.all(np.isfinite(x)):
        raise InferInputError(f"dataset {source}: X holds NaN, infinity or non-numbers")
    if y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= outputs:
        raise InferInputError(f"dataset {source}: labels must be whole numbers in "
                              f"0..{outputs - 1}")
    return x.astype(np.float64), y.astype(np.int64), source


def model_digest(net: Network) -> str:
    h = hashlib.sha256()
    for layer in net.layers:
        h.update(np.ascontiguousarray(layer.weights, np.float64).tobytes())
        h.update(np.ascontiguousarray(layer.bias, np.float64).tobytes())
        h.update(layer.activation.encode())
    return h.hexdigest()[:16]


def _programmed(store: DieStore, digest: str):
    """(run id, mapping, calibrations, programmed_at) of the model on the die, or None
    when the die does not hold it (never programmed, another model, or pulsed since)."""
    if not store.path.exists():
        return None
    runs = [r for r in store.runs() if r.status == "complete"]
    last_pulse = max((i for i, r in enumerate(runs) if r.protocol in PULSING), default=-1)
    for i in range(len(runs) - 1, last_pulse, -1):
        r = runs[i]
        if r.protocol != JOB:
            continue
        try:
            arrays, meta = store.load_artifact("mapping", r.run_id)
        except DieStoreError:
            continue
        if meta.get("model_digest") != digest:
            return None
        mapping = Mapping.from_dict(meta["mapping"], arrays["targets"],
                                    arrays.get("corrections"), arrays.get("reference_cells"),
                                    arrays.get("reference_targets"))
        cals = {}
        for method in meta.get("calibrated", []):
            cal_arrays, cal_meta = store.load_artifact(f"drift_{method}", r.run_id)
            cal_arrays.update({k: np.asarray(v) for k, v in cal_meta.get("text", {}).items()})
            cals[method] = DriftCalibration.from_arrays(cal_arrays)
        return r.run_id, mapping, cals, float(meta["programmed_at_s"])
    return None


def infer_die(bench, die: int, options: InferOptions = InferOptions(), *,
              results: str | Path = "calib-results", wafer: str | None = None,
              progress: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Program (if need be), calibrate, and measure accuracy at each age; record the run."""
    if bench.array is None:
        raise InferInputError("this bench has no array controller ([roles.array])")
    die = check_die_id(die, InferInputError)
    for m in options.compensation:
        if m not in METHODS:
            raise InferInputError(f"--compensation {m!r}: choose from {', '.join(METHODS)}")
    if any(a > 0 for a in options.ages_s) and bench.clock is None:
        raise InferInputError("--at needs a clock role to let time pass")
    net, model_source = load_model(options.model)
    sheet = bench.datasheet
    try:
        map_network(net, sheet)  # fits the die? (one line naming both sizes)
    except InferenceInputError as exc:
        raise InferInputError(f"{model_source}: {exc}") from None
    x, y, data_source = load_dataset(options.dataset, net)
    digest = model_digest(net)
    store = die_store(results, wafer_name(bench, wafer), die)
    reach_die(bench, die, InferInputError, store)  # the first bytes to the instruments
    found = None if options.program else _programmed(store, digest)
    if found is None and options.program is False:
        raise InferInputError(f"die {die} holds no programmed {model_source} (never "
                              "programmed, or pulsed since): run calib infer without "
                              "--no-program")
    if found is None and sheet.forming.required and options.form is not False:
        form_pristine(bench, store)
    float_accuracy = float(np.mean(net.predict(x) == y))
    params = {"model": model_source, "model_digest": digest, "dataset": data_source,
              "samples": int(x.shape[0]), "ages_s": list(options.ages_s),
              "compensation": list(options.compensation)}
    with recorded_run(bench, store, JOB, params, die=die) as run:
        if found is None:
            mapping, wv = program_network(bench.array, net, sheet, bench.clock,
                                          reference_cells=REFERENCE_CELLS)
            programmed_at = bench.clock.now() if bench.clock is not None else 0.0
            cals = {m: calibrate(bench.array, mapping, m, clock=bench.clock)
                    for m in options.compensation if m != "none"}
            run.save_artifact("mapping", mapping.arrays(), {
                "mapping": mapping.to_dict(), "model_digest": digest,
                "model": model_source, "programmed_at_s": programmed_at,
                "calibrated": sorted(cals), "in_band_fraction": wv.in_band_fraction})
            for m, cal in cals.items():
                numbers, text = _split(cal.to_arrays())
                run.save_artifact(f"drift_{m}", numbers, {**cal.summary(), "text": text})
            programmed_in = run.id
        else:
            programmed_in, mapping, cals, programmed_at = found
            missing = [m for m in options.compensation if m != "none" and m not in cals]
            if missing:
                raise InferInputError(f"the model on die {die} was calibrated for "
                                      f"{', '.join(sorted(cals)) or 'no'} compensation, not "
                                      f"{', '.join(missing)}: run with --reprogram")
        rows = []
        first = None
        for age in options.ages_s:
            check_interrupt()
            now = bench.clock.now() if bench.clock is not None else programmed_at
            if programmed_at + age > now:
                bench.clock.wait(programmed_at + age - now)
            for method in options.compensation:
                t0 = bench.clock.now() if bench.clock is not None else 0.0
                corrections, cal_tx = (), 0
                if method != "none":
                    gains, cost = correction(bench.array, mapping, cals[method],
                                             clock=bench.clock)
                    corrections, cal_tx = (gains,), cost.mvm_transactions + cost.read_transactions
                res = run_network(bench.array, net, mapping, x, y, clock=bench.clock,
                                  corrections=corrections)
                first = first or res
                t1 = bench.clock.now() if bench.clock is not None else 0.0
                rows.append((age, method, res.accuracy, cal_tx, res.mvm_transactions, t1 - t0))
                if progress is not None:
                    progress({"age_s": age, "method": method, "accuracy": res.accuracy})
        methods = list(options.compensation)
        acc = np.array([[next(r[2] for r in rows if r[0] == a and r[1] == m)
                         for m in methods] for a in options.ages_s], np.float64)
        summary = {
            "die": die, "model": model_source, "dataset": data_source,
            "samples": int(x.shape[0]), "float_accuracy": float_accuracy,
            "programmed_in": programmed_in, "programmed_now": found is None,
            "accuracy": {f"{_age(a)}": {m: float(acc[i, j]) for j, m in enumerate(methods)}
                         for i, a in enumerate(options.ages_s)},
            "layer_mvm_error": [float(e) for e in first.layer_errors] if first else [],
            "calibration_transactions": {m: int(sum(r[3] for r in rows if r[1] == m))
                                         for m in methods},
            "inference_transactions": int(sum(r[4] for r in rows)),
            "inference_bench_time_s": float(sum(r[5] for r in rows)),
            "file": str(store.path), "run": run.id}
        run.finish({"ages_s": np.asarray(options.ages_s, np.float64), "accuracy": acc,
                    "layer_mvm_error": np.asarray(summary["layer_mvm_error"], np.float64)},
                   summary)
    return summary


def _split(arrays: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Numbers for the artifact's datasets, text for its meta (the die file keeps text in
    JSON)."""
    numbers, text = {}, {}
    for k, v in arrays.items():
        a = np.asarray(v)
        if a.dtype.kind in "US":
            text[k] = a.tolist()
        else:
            numbers[k] = a
    return numbers, text


def _age(seconds: float) -> str:
    for unit in ("y", "d", "h", "min"):
        n = seconds / AGE_UNITS[unit]
        if n >= 1 and abs(n - round(n)) < 1e-9:
            return f"{round(n)}{unit}"
    return f"{seconds:g}s"
