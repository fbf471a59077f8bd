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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from calib.jobs.artifacts import join_text, split_text
from calib.jobs.die import check_die_id, die_store, reach_die, wafer_name
from calib.jobs.form import form_pristine
from calib.jobs.run import check_interrupt, recorded_run
from calib.jobs.tempcal import load_temperature_model
from calib.store import DieStore, DieStoreError
from instruments.errors import UserError
from protocols.inference import (
    METHODS,
    REFERENCE_CELLS,
    DriftCalibration,
    InferenceInputError,
    InferenceParams,
    Mapping,
    ModelDataError,
    Network,
    calibrate,
    correction,
    digits_split,
    digits_test_set,
    load_digits_model,
    map_network,
    program_network,
    run_network,
)
from protocols.tempcal import chuck_temperature, estimate_temperature, layer_inputs, settle

JOB = "infer"
PULSING = ("write_verify", "variability", "train")  # jobs that move a die's conductances
TEMPERATURE = "temperature"  # the temperature model's correction, a compensation method
COMPENSATIONS = (*METHODS, TEMPERATURE)
SOURCES = ("auto", "reference", "chuck")  # where the die temperature comes from
DRIFT_UNDER_TEMPERATURE = "column"  # the drift gains stacked under the temperature correction
STATISTICS = 256  # inputs whose second moments the tile temperature correction weighs by
RANGE_MARGIN = 1.5  # InferenceParams' default headroom of the column range
HOME_READS = 4  # whole-array reads at home the model is rebased on (PCM's 1/f noise)
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
    temperature_c: float | None = None  # chuck set point to measure at (None: leave it)
    temperature_source: str = "auto"  # die temperature: reference cells, else the chuck
    settle_timeout_s: float = 1800.0  # for the chuck to report settled
    soak_s: float = 120.0  # after it settled: the die lags its chuck
    passes: int = 1  # of the test set per age and method; the accuracy is their mean


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
            cals[method] = DriftCalibration.from_arrays(
                join_text(*store.load_artifact(f"drift_{method}", r.run_id)))
        return r.run_id, mapping, cals, float(meta["programmed_at_s"])
    return None


def _checked(bench, die: int, options: InferOptions) -> int:
    """Everything about the options and the bench that needs no file and no byte."""
    if bench.array is None:
        raise InferInputError("this bench has no array controller ([roles.array])")
    die = check_die_id(die, InferInputError)
    for m in options.compensation:
        if m not in COMPENSATIONS:
            raise InferInputError(f"--compensation {m!r}: choose from {', '.join(COMPENSATIONS)}")
    if any(a > 0 for a in options.ages_s) and bench.clock is None:
        raise InferInputError("--at needs a clock role to let time pass")
    if isinstance(options.passes, bool) or not isinstance(options.passes, int) \
            or options.passes < 1:
        raise InferInputError(f"--passes {options.passes!r}: a whole number >= 1")
    if options.temperature_source not in SOURCES:
        raise InferInputError(f"--temperature-source {options.temperature_source!r}: choose "
                              f"{', '.join(SOURCES)}")
    if options.temperature_c is not None:
        if bench.thermal is None or bench.clock is None:
            raise InferInputError("--temperature needs a thermal role and a clock role "
                                  "([roles.thermal], [roles.clock])")
        bench.guard.temperature(options.temperature_c)  # outside the chip's limits: refused
        for flag, value, least in (("--settle-timeout", options.settle_timeout_s, "> 0"),
                                   ("--soak", options.soak_s, ">= 0")):
            if not (math.isfinite(value) and (value > 0 if least == "> 0" else value >= 0)):
                raise InferInputError(f"{flag}: a number of seconds {least}, got {value!r}")
    if TEMPERATURE in options.compensation and options.temperature_source == "chuck" \
            and bench.thermal is None:
        raise InferInputError("--temperature-source chuck needs a thermal role ([roles.thermal])")
    if TEMPERATURE in options.compensation and options.program:
        raise InferInputError("--reprogram with --compensation temperature: programming makes "
                              "the die's temperature model stale; reprogram, run calib tempcal, "
                              "then infer with the temperature compensation")
    return die


def infer_die(bench, die: int, options: InferOptions = InferOptions(), *,
              results: str | Path = "calib-results", wafer: str | None = None,
              progress: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Program (if need be), calibrate, and measure accuracy at each age; record the run.

    With ``options.temperature_c`` every age is measured twice over: once at the chuck's
    home temperature (the temperature model's reference, or where the chuck was), then
    at the set point; the chuck goes home at the end. ``temperature`` compensation maps
    the currents back to the reference with the die's temperature model (the die
    temperature from the mapping's reference cells, or the chuck), stacked with the
    ``column`` drift gains measured at home (a drift gain measured hot would fold the
    temperature change in as well).
    """
    die = _checked(bench, die, options)
    net, model_source = load_model(options.model)
    sheet = bench.datasheet
    try:
        map_network(net, sheet)  # fits the die? (one line naming both sizes)
    except InferenceInputError as exc:
        raise InferInputError(f"{model_source}: {exc}") from None
    x, y, data_source = load_dataset(options.dataset, net)
    digest = model_digest(net)
    store = die_store(results, wafer_name(bench, wafer), die)
    found = None if options.program else _programmed(store, digest)
    if found is None and options.program is False:
        raise InferInputError(f"die {die} holds no programmed {model_source} (never "
                              "programmed, or pulsed since): run calib infer without "
                              "--no-program")
    thermo = None
    if TEMPERATURE in options.compensation:
        if found is None:
            raise InferInputError(
                f"--compensation temperature: die {die} holds no programmed {model_source} "
                f"with a temperature model measured on it; run calib infer --die {die}, then "
                f"calib tempcal --die {die}, then this")
        thermo = load_temperature_model(store, die, sheet.shape).model
    source = options.temperature_source
    if source == "auto":
        source = "reference" if found is not None and found[1].reference_cells.size else "chuck"
    if thermo is not None and source == "reference" and not found[1].reference_cells.size:
        raise InferInputError(f"--temperature-source reference: the mapping on die {die} has "
                              "no reference cells; use --temperature-source chuck")
    if thermo is not None and source == "chuck" and bench.thermal is None:
        raise InferInputError("the die temperature from the chuck needs a thermal role; this "
                              "bench has none ([roles.thermal])")
    reach_die(bench, die, InferInputError, store)  # the first bytes to the instruments
    if found is None and sheet.forming.required and options.form is not False:
        form_pristine(bench, store)
    float_accuracy = float(np.mean(net.predict(x) == y))
    params = {"model": model_source, "model_digest": digest, "dataset": data_source,
              "samples": int(x.shape[0]), "ages_s": list(options.ages_s),
              "compensation": list(options.compensation), "passes": options.passes,
              "temperature_c": options.temperature_c, "temperature_source": source}
    heat = _Heat(bench, options, thermo)
    with recorded_run(bench, store, JOB, params, die=die) as run, heat.home_at_end():
        if found is None:
            mapping, wv = program_network(bench.array, net, sheet, bench.clock,
                                          reference_cells=REFERENCE_CELLS)
            programmed_at = bench.clock.now() if bench.clock is not None else 0.0
            cals = {m: calibrate(bench.array, mapping, m, clock=bench.clock)
                    for m in METHODS if m != "none"}  # all: a later infer may ask any
            run.save_artifact("mapping", mapping.arrays(), {
                "mapping": mapping.to_dict(), "model_digest": digest,
                "model": model_source, "programmed_at_s": programmed_at,
                "calibrated": sorted(cals), "in_band_fraction": wv.in_band_fraction})
            for m, cal in cals.items():
                numbers, text = split_text(cal.to_arrays())
                run.save_artifact(f"drift_{m}", numbers, {**cal.summary(), "text": text})
            programmed_in = run.id
            programming = {"cells": int(wv.target.size), "pulses": int(wv.pulses.sum()),
                           "in_band_fraction": float(wv.in_band_fraction),
                           "reference_cells": int(mapping.reference_cells.size),
                           "transactions": int(wv.transactions),
                           "bench_time_s": float(wv.bench_time_s)}
        else:
            programmed_in, mapping, cals, programmed_at = found
            programming = None
            missing = [m for m in options.compensation
                       if m not in ("none", TEMPERATURE) and m not in cals]
            if missing:
                raise InferInputError(f"the model on die {die} was calibrated for "
                                      f"{', '.join(sorted(cals)) or 'no'} compensation, not "
                                      f"{', '.join(missing)}: run with --reprogram")
        statistics, statistics_source = _statistics(net, options, x)
        rows, first, hot, repeats = [], None, [], {}
        for age in options.ages_s:
            check_interrupt()
            now = bench.clock.now() if bench.clock is not None else programmed_at
            if programmed_at + age > now:
                bench.clock.wait(programmed_at + age - now)
            home = heat.before(mapping, net, x, y, cals.get(DRIFT_UNDER_TEMPERATURE))
            estimate = heat.die_temperature(mapping, source)
            for method in options.compensation:
                t0 = bench.clock.now() if bench.clock is not None else 0.0
                corrections, cal_tx, run_params, fix = (), 0, None, None
                if method == TEMPERATURE:
                    fix, run_params = heat.correction(mapping, estimate, statistics)
                    corrections = (fix,) + ((home.drift,) if home.drift is not None else ())
                elif method != "none":
                    gains, cost = correction(bench.array, mapping, cals[method],
                                             clock=bench.clock)
                    corrections, cal_tx = (gains,), cost.mvm_transactions + cost.read_transactions
                    # the signal fell with the drift, the output noise did not: convert
                    # each vector more often in the same transaction to win it back
                    run_params = InferenceParams(repeats=gains.suggested_repeats())
                    repeats[method] = max(repeats.get(method, 1), run_params.repeats)
                res = [run_network(bench.array, net, mapping, x, y, clock=bench.clock,
                                   corrections=corrections, params=run_params)
                       for _ in range(options.passes)]
                first = first or res[0]
                t1 = bench.clock.now() if bench.clock is not None else 0.0
                rows.append((age, method, float(np.mean([r.accuracy for r in res])), cal_tx,
                             sum(r.mvm_transactions for r in res), t1 - t0))
                if fix is not None:
                    hot.append({"age": _age(age), **fix.summary()})
                if progress is not None:
                    progress({"age_s": age, "method": method, "accuracy": rows[-1][2]})
            if heat.active:
                heat.record(age, home, estimate)
        methods = list(options.compensation)
        acc = np.array([[next(r[2] for r in rows if r[0] == a and r[1] == m)
                         for m in methods] for a in options.ages_s], np.float64)
        summary = {
            "die": die, "model": model_source, "dataset": data_source,
            "samples": int(x.shape[0]), "float_accuracy": float_accuracy,
            "programmed_in": programmed_in, "programmed_now": found is None,
            "programming": programming,
            "accuracy": {f"{_age(a)}": {m: float(acc[i, j]) for j, m in enumerate(methods)}
                         for i, a in enumerate(options.ages_s)},
            "layer_mvm_error": [float(e) for e in first.layer_errors] if first else [],
            "calibration_transactions": {m: int(sum(r[3] for r in rows if r[1] == m))
                                         for m in methods},
            "inference_transactions": int(sum(r[4] for r in rows)) + heat.transactions,
            "most_repeats": repeats,
            "inference_bench_time_s": float(sum(r[5] for r in rows)),
            "file": str(store.path), "run": run.id}
        if heat.active:
            summary["temperature"] = {**heat.summary(), "corrections": hot,
                                      "statistics": statistics_source if hot else None}
        run.finish({"ages_s": np.asarray(options.ages_s, np.float64), "accuracy": acc,
                    "layer_mvm_error": np.asarray(summary["layer_mvm_error"], np.float64)},
                   summary)
    return summary


def _statistics(net: Network, options: InferOptions, x: np.ndarray):
    """Typical inputs of each layer, for the ``tile`` temperature correction: the bundled
    model's training split; a user's dataset's own inputs (no labels are used). None
    (the ``column`` correction) when scikit-learn is missing for the bundled split."""
    if options.model is None and options.dataset is None:
        try:
            return layer_inputs(net, digits_split()["x_train"][:STATISTICS]), "training split"
        except ModelDataError:
            return None, "none (scikit-learn missing): column correction"
    return layer_inputs(net, x[:STATISTICS]), "the dataset's inputs"


@dataclass
class _Home:
    """What one age measured at the chuck's home temperature before heating."""

    accuracy: float | None = None
    ranges_a: tuple | None = None
    drift: Any = None
    chuck_c: float | None = None


class _Heat:
    """The chuck and the temperature model during one ``calib infer``: home, hot, home."""

    def __init__(self, bench, options: InferOptions, model) -> None:
        self.bench, self.options, self.model, self.base = bench, options, model, model
        self.heated = options.temperature_c is not None
        self.active = self.heated or model is not None
        self.home_c = None
        if self.heated:
            self.home_c = model.reference_c if model is not None else round(
                float(bench.thermal.setpoint()), 3)
        self.transactions = 0
        self.rows: list[dict] = []
        self._home: _Home | None = None
        self.drift_stacked = False

    @contextmanager
    def home_at_end(self):
        try:
            yield
        finally:
            if self.heated:
                try:  # leave the chuck at home; a bench that stopped answering keeps its error
                    self.bench.thermal.set_temperature(self.home_c)
                except Exception:  # noqa: BLE001 - the job's own error is the one to report
                    pass

    def _go(self, celsius: float) -> None:
        b, o = self.bench, self.options
        if abs(float(b.thermal.setpoint()) - celsius) < 1e-6 and b.thermal.settled():
            return
        b.thermal.set_temperature(celsius)
        settle(b.thermal, b.clock, celsius, o.settle_timeout_s, 5.0)
        if o.soak_s:
            b.clock.wait(o.soak_s)  # the die lags its chuck

    def before(self, mapping, net, x, y, drift_cal) -> _Home:
        """At home: the drift gains for the temperature correction, one pass of the test
        set (its accuracy is the hot one's baseline, its column ranges the correction's);
        then to the set point."""
        if not self.active:
            return _Home()
        b = self.bench
        if self.heated:
            self._go(self.home_c)
        drift = None
        if drift_cal is not None and self.heated:
            drift, cost = correction(b.array, mapping, drift_cal, clock=b.clock)
            self.transactions += cost.mvm_transactions + cost.read_transactions
        res = [run_network(b.array, net, mapping, x, y, clock=b.clock,
                           corrections=() if drift is None else (drift,))
               for _ in range(self.options.passes if self.heated else 1)]
        self.transactions += sum(r.mvm_transactions for r in res)
        accuracy = float(np.mean([r.accuracy for r in res]))
        home = _Home(accuracy if self.heated else None, res[0].mvm_ranges_a, drift,
                     float(b.thermal.temperature()) if b.thermal is not None else None)
        self._home, self.drift_stacked = home, drift is not None
        if self.heated and self.base is not None:  # the cells' states now, at home
            reads = np.mean([b.array.read(averages=self.base.read_averages)
                             for _ in range(HOME_READS)], axis=0)
            self.model = self.base.rebased(reads, float(b.thermal.temperature()))
            self.transactions += HOME_READS
        if self.heated:
            self._go(float(self.options.temperature_c))
        return home

    def die_temperature(self, mapping, source: str):
        if self.model is None:
            return None
        if source == "reference":
            est = estimate_temperature(self.bench.array, self.model, mapping)
            self.transactions += 1
        else:
            est = chuck_temperature(self.bench.thermal)
        return est

    def correction(self, mapping, estimate, statistics):
        """The temperature correction at the estimated die temperature, and the run's
        params: the column ranges of home scaled by the currents' growth, so the ADC does
        not clip and the offsets (a share of the range) are known."""
        method = "column" if statistics is None else "tile"
        t = estimate.temperature_c
        probe = self.model.correction(t, mapping, method=method, layer_inputs=statistics)
        margin = probe.range_margin(RANGE_MARGIN)
        home = self._home.ranges_a if self._home is not None else None
        ranges = None if home is None or any(r is None for r in home) else tuple(
            r * margin / RANGE_MARGIN for r in home)
        fix = self.model.correction(t, mapping, method=method, layer_inputs=statistics,
                                    mvm_range_a=ranges)
        return fix, InferenceParams(mvm_range=ranges if ranges is not None else "auto",
                                    range_margin=margin)

    def record(self, age: float, home: _Home, estimate) -> None:
        self.rows.append({"age": _age(age), "home_accuracy": home.accuracy,
                          "home_chuck_c": home.chuck_c,
                          "chuck_c": None if self.bench.thermal is None else float(
                              self.bench.thermal.temperature()),
                          "die_c": None if estimate is None else estimate.summary()})

    def summary(self) -> dict[str, Any]:
        return {"setpoint_c": self.options.temperature_c, "home_c": self.home_c,
                "drift_stacked": self.drift_stacked, "ages": self.rows}


def _age(seconds: float) -> str:
    for unit in ("y", "d", "h", "min"):
        n = seconds / AGE_UNITS[unit]
        if n >= 1 and abs(n - round(n)) < 1e-9:
            return f"{round(n)}{unit}"
    return f"{seconds:g}s"
