"""The training job behind ``calib train``: a network trained on a die's array.

Everything is checked before the first byte: the method, the learning rate and batch,
the dataset (width, labels, NaNs, empty splits), that the network fits the die. The
first weights are programmed by write-verify through the die's stored response model
(the newest ``response_model`` artifact; a fresh one otherwise), then each epoch appends
a row to the run's ``checkpoints`` series and replaces its ``checkpoint`` artifact (the
digital state: biases, accumulators, response model, the per-epoch records). A run
stopped by Ctrl-C, SIGTERM or a bench that stops answering is recorded
``interrupted``; ``--resume`` continues the newest such run of the same method from its
last checkpoint, on the die as it is (the conductances are the chip's, read again).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from calib.jobs.artifacts import join_text, split_text
from calib.jobs.die import check_die_id, die_store, reach_die, wafer_name
from calib.jobs.form import form_pristine
from calib.jobs.run import check_interrupt, recorded_run
from calib.store import DieStore, DieStoreError
from calib.store.schema import CHECKPOINTS
from instruments.errors import InstrumentError, UserError
from protocols.inference import InferenceInputError
from protocols.profiles import write_verify_params
from protocols.training import (
    InSitu,
    TrainData,
    TrainingInputError,
    TrainParams,
    begin,
    check_data,
    check_fits,
    check_method,
    digits_data,
    float_models,
)
from protocols.training.chip_in_loop import ChipInLoop, begin_chip_in_loop
from protocols.training.params import SGD_MOMENTUM, SGD_ZONE
from protocols.training.result import training_result
from protocols.write_verify import AdaptiveResponse

JOB = "train"
TRANSFERS = ("hybrid", "chip-in-loop")  # methods that start from the ex-situ float network
MAX_UNRESPONSIVE = 0.5  # share of the network's cells that may not respond to programming


class TrainInputError(UserError, ValueError):
    """A bad method, dataset or option, a network that does not fit, nothing to resume."""


@dataclass(frozen=True)
class TrainOptions:
    """What a user may set; None dataset = the bundled digits split."""

    method: str = "mixed"
    dataset: str | None = None  # .npz with x_train, y_train, x_test, y_test
    epochs: int = 10
    lr: float = 0.1
    batch: int = 10
    backward: str = "auto"
    seed: int = 0
    resume: bool = False
    form: bool | None = None
    repeats: int | None = None  # conversions per vector in a forward MVM; None: the method's
    update: str = "auto"  # pair, set-only, or auto (set-only where RESET is abrupt)
    faulty_pairs: str | None = None  # one failed device: floor, partner; None: the method's
    sgd_zone: float = SGD_ZONE  # of the granularity: sgd's stochastic rounding zone
    sgd_every: int = 1  # sgd: batches whose steps are summed on the host before a send
    sgd_momentum: float = SGD_MOMENTUM  # sgd: the host's momentum beta of its steps

    def params(self) -> TrainParams:
        try:
            return TrainParams(epochs=self.epochs, lr=self.lr, batch=self.batch,
                               backward=self.backward, seed=self.seed, repeats=self.repeats,
                               update=self.update, faulty_pairs=self.faulty_pairs,
                               sgd_zone=self.sgd_zone, sgd_every=self.sgd_every,
                               sgd_momentum=self.sgd_momentum)
        except TrainingInputError as exc:
            raise TrainInputError(_as_option(str(exc))) from None


def _as_option(message: str) -> str:
    """``field: why`` as the command line's ``--field-name: why`` (the option typed)."""
    name, _, why = message.partition(":")
    if not why or " " in name.strip():
        return message
    return f"--{name.strip().replace('_', '-')}: {why.strip()}"


DATASET_KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_train_data(path: str | None) -> TrainData:
    """The bundled digits split, or a user's ``.npz`` with ``x_train``, ``y_train``,
    ``x_test``, ``y_test``; one line naming what is wrong."""
    if path is None:
        return digits_data()
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in DATASET_KEYS if k not in data.files]
            if missing:
                raise TrainInputError(f"--dataset {path}: needs arrays {', '.join(DATASET_KEYS)};"
                                      f" missing {', '.join(missing)}")
            parts = {k: data[k] for k in DATASET_KEYS}
    except (OSError, ValueError) as exc:
        raise TrainInputError(f"--dataset {path}: not a readable .npz ({exc})") from None
    try:
        return check_data(**parts, source=str(path))
    except TrainingInputError as exc:
        raise TrainInputError(f"--dataset {exc}") from None


def _stored_response(store: DieStore, size: int):
    """The die's newest stored response model (write-verify's or training's), or None."""
    if not store.path.exists():
        return None
    try:
        arrays, _ = store.load_artifact("response_model")
        model = AdaptiveResponse.from_arrays(arrays)
    except (DieStoreError, KeyError, ValueError):
        return None
    return model if model.size == size else None


def _resumable(store: DieStore, method: str):
    """(run id, arrays, meta) of the newest unfinished train run of ``method`` with a
    checkpoint."""
    runs = [r for r in store.runs() if r.protocol == JOB and r.status != "complete"]
    for r in reversed(runs):
        try:
            arrays, meta = store.load_artifact("checkpoint", r.run_id)
        except DieStoreError:
            continue
        if meta.get("method") == method:
            return r.run_id, join_text(arrays, meta), meta
    return None


def _resumed_params(stored: dict, options: TrainOptions, params: TrainParams) -> TrainParams:
    """The resumed run's own parameters, so a plain ``--resume`` continues the training
    it interrupted (its learning rate, seed, ...). An option given on this command line
    that differs from the run's (and from the default) is refused in one line, as it
    would silently train another way; ``--epochs`` may extend the run."""
    defaults, kept = TrainOptions(), {}
    for field in dataclasses.fields(TrainParams):
        if field.name not in stored:
            continue
        value = stored[field.name]
        value = tuple(value) if isinstance(value, list) else value
        given = getattr(options, field.name, None)
        if (field.name != "epochs" and hasattr(options, field.name)
                and given != getattr(defaults, field.name) and given != value):
            raise TrainInputError(f"--{field.name.replace('_', '-')} {given}: the run being "
                                  f"resumed trains with {value}; leave it out to resume, "
                                  "or start a new run without --resume")
        kept[field.name] = value
    if stored and "sgd_momentum" not in stored:  # a run from before sgd had momentum
        kept["sgd_momentum"] = 0.0
    if options.epochs != defaults.epochs:
        kept["epochs"] = options.epochs
    try:
        return dataclasses.replace(params, **kept)
    except (TrainingInputError, TypeError) as exc:
        raise TrainInputError(f"the run to resume has unreadable parameters: {exc}") from None


def train_die(bench, die: int, options: TrainOptions = TrainOptions(), *,
              results: str | Path = "calib-results", wafer: str | None = None,
              progress: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Train ``options.method`` on ``die``'s array (or resume it); record the run."""
    if bench.array is None:
        raise TrainInputError("this bench has no array controller ([roles.array])")
    die = check_die_id(die, TrainInputError)
    try:
        method = check_method(options.method)
    except TrainingInputError as exc:
        raise TrainInputError(f"--method: {exc}") from None
    params = options.params()
    data = load_train_data(options.dataset)
    sheet = bench.datasheet
    try:
        check_fits(sheet, sheet.shape, data, params)
    except InferenceInputError as exc:
        raise TrainInputError(f"{data.source}: {exc}") from None
    store = die_store(results, wafer_name(bench, wafer), die)
    found = _resumable(store, method) if options.resume else None
    if options.resume and found is None:
        raise TrainInputError(f"die {die}: no interrupted {method} training to resume in "
                              f"{store.path}; run calib train without --resume")
    if found is not None:
        params = _resumed_params(store.read_run(found[0]).get("params") or {}, options,
                                 params)
    reach_die(bench, die, TrainInputError, store)  # the first bytes to the instruments
    if sheet.forming.required and options.form is not False and found is None:
        form_pristine(bench, store)
    same, ex_situ = float_models(data, params, method)
    run_params = {"method": method, "dataset": data.summary(), **dataclasses.asdict(params),
                  "resumed_from": found[0] if found else None}
    with recorded_run(bench, store, JOB, run_params, die=die) as run:
        trainer = _start(bench, store, data, params, method, found, run)
        _epochs(bench, run, trainer, params, method, die, progress)
        return _finish(run, trainer, same, ex_situ, method, die, store)


def _start(bench, store, data, params, method, found, run):
    if found is not None:
        _, arrays, meta = found
        if method == "chip-in-loop":
            return ChipInLoop.from_arrays(bench.array, bench.datasheet, data, params, arrays,
                                          meta, clock=bench.clock)
        return InSitu.from_arrays(bench.array, data, params, arrays, meta, clock=bench.clock,
                                  wv_params=write_verify_params(bench.datasheet))
    response = _stored_response(store, int(np.prod(bench.array.shape)))
    if method == "chip-in-loop":
        trainer = begin_chip_in_loop(bench.array, bench.datasheet, data, params,
                                     clock=bench.clock, response=response)
    else:
        trainer = begin(bench.array, bench.datasheet, data, params, method, clock=bench.clock,
                        response=response)
    used = trainer.chip.mapping.used.ravel()
    dead = float(np.mean(trainer.skip[used]))
    if dead > MAX_UNRESPONSIVE:
        raise TrainInputError(f"{dead:.0%} of the network's cells did not respond to "
                              "programming (a die with no formed cells?): form the die "
                              "(calib program forms it) or train another die")
    return trainer


def _epochs(bench, run, trainer: InSitu, params, method, die, progress) -> None:
    steps = -(-trainer.subset.size // params.batch)  # batches per epoch
    if trainer.epoch:  # resumed: the series starts with the epochs already trained
        run.append("checkpoints", _rows(trainer.records[1:], steps))
    shown = 0 if progress is None else _show(progress, trainer.records, 0)
    while trainer.epoch < params.epochs:
        check_interrupt()
        try:
            record = trainer.run_epoch()
        except InstrumentError as exc:
            run.store.fail_run(run.id, f"{type(exc).__name__}: {exc}", "interrupted")
            run.finished = True
            raise TrainInputError(
                f"the bench stopped answering in epoch {trainer.epoch} ({exc}); the run is "
                f"recorded interrupted: calib train --die {die} --method {method} --resume "
                "continues from its last checkpoint") from None
        arrays, meta = trainer.to_arrays()
        numbers, text = split_text(arrays)
        run.save_artifact("checkpoint", numbers, {**meta, "method": method, "text": text})
        run.append("checkpoints", _rows([record], steps))
        if progress is not None:
            shown = _show(progress, trainer.records, shown)


def _rows(records, steps: int) -> np.ndarray:
    """Epoch records as rows of the run's ``checkpoints`` series."""
    return np.array([(r.epoch, r.epoch * steps, r.loss, r.train_accuracy, r.test_accuracy,
                      r.pulses, r.transactions, r.bench_time_s, r.wall_time_s)
                     for r in records], dtype=CHECKPOINTS)


def _show(progress, records, shown: int) -> int:
    """Hand the records not yet shown (epoch 0 too, on a fresh run) to ``progress``."""
    for r in records[shown:]:
        progress(dataclasses.asdict(r))
    return len(records)


def _finish(run, trainer: InSitu, same, ex_situ, method, die, store) -> dict[str, Any]:
    """The summary and final arrays. The gap is to the float network the method is
    measured against: the same training budget (sgd, mixed), or the ex-situ network it
    transfers (hybrid, chip-in-loop)."""
    reference = ex_situ.accuracy if method in TRANSFERS else same.accuracy
    result = training_result(trainer, method, same.test_accuracy, reference)
    summary = {"die": die, **result.summary(), "dataset": trainer.data.source,
               "float_ex_situ_accuracy": float(ex_situ.accuracy), "file": str(store.path),
               "run": run.id}
    try:
        run.save_artifact("response_model", trainer.response.to_arrays())
    except DieStoreError as exc:
        summary["artifacts_error"] = str(exc)
    run.finish(result.arrays(), summary)
    return summary
