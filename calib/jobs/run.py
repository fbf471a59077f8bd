"""The recorded-run envelope every job runs in.

One place records, the same way for every job (form, program, map, temperature
calibration, training, a sweep's per-die steps): the instruments' identities
and configuration, the chuck temperature, the parameters, the datasheet, the
toolkit version, start and end, and the status — ``running`` before any work,
then ``complete``, ``failed`` or ``interrupted``. SIGTERM and SIGHUP (what
``timeout``, systemd and batch schedulers send) are handled like Ctrl-C, so a
stopped job is recorded as interrupted instead of staying ``running``.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from calib.store import DieStore


class JobInterrupted(KeyboardInterrupt):
    """The job was stopped by a signal (SIGTERM, SIGHUP) or Ctrl-C."""


_pending: list[int] = []  # a signal whose exception has not reached the job yet
_deferring: list[bool] = []  # inside a die-file write the run's status depends on


@contextmanager
def signals_interrupt() -> Iterator[None]:
    """Within the block, SIGINT, SIGTERM and SIGHUP raise :class:`JobInterrupted`
    (main thread only).

    Python may run a signal handler inside a callback that swallows exceptions (a
    weakref finaliser, say); the signal is then remembered and raised again at the
    job's next safe point (:func:`check_interrupt`) or when the block ends, so a stop
    is never lost.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):  # noqa: ARG001 - the signal API
        _pending.append(signum)
        if not _deferring:  # else raised when the write is done (deferred_interrupts)
            raise JobInterrupted(f"stopped by {signal.Signals(signum).name}")

    def quiet(unraisable, default=sys.unraisablehook):  # the swallowed stop is re-raised
        if not isinstance(unraisable.exc_value, JobInterrupted):
            default(unraisable)

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, stop) for s in signals}
    hook, sys.unraisablehook = sys.unraisablehook, quiet
    try:
        yield
        check_interrupt()
    except KeyboardInterrupt:
        _pending.clear()  # delivered
        raise
    finally:
        sys.unraisablehook = hook
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Within the block a signal is remembered, not raised: a stop landing inside the
    die-file write that starts or ends a run would otherwise leave it ``running``. The
    stop takes effect at the next :func:`check_interrupt`."""
    _deferring.append(True)
    try:
        yield
    finally:
        _deferring.pop()


def check_interrupt() -> None:
    """Raise the interrupt of a signal whose first exception was swallowed."""
    if _pending:
        signum = _pending[-1]
        raise JobInterrupted(f"stopped by {signal.Signals(signum).name}")


def status_for(exc: BaseException) -> str:
    return "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"


@dataclass
class Run:
    """A run being recorded: its id in the die file, and what it may add while it runs."""

    store: DieStore
    id: str
    job: str
    started_wall: float = field(default_factory=time.perf_counter)
    finished: bool = False

    def append(self, name: str, rows: np.ndarray) -> None:
        """Add rows to one of the job's time series (checkpoints, progress)."""
        self.store.append(self.id, name, rows)

    def save_artifact(self, name: str, arrays: dict[str, Any], meta: dict | None = None) -> None:
        """Learned state (a response model, a noise fit) for later jobs to load."""
        self.store.save_artifact(self.id, name, arrays, meta or {})

    def finish(self, arrays: dict[str, np.ndarray], summary: dict, **attrs: Any) -> None:
        with deferred_interrupts():  # complete and known to be, or neither
            self.store.finish_run(self.id, arrays, summary,
                                  wall_time_s=time.perf_counter() - self.started_wall, **attrs)
            self.finished = True


def _temperature(bench) -> float | None:
    return bench.thermal.temperature() if bench.thermal is not None else None


@contextmanager
def recorded_run(bench, store: DieStore, job: str, params: dict, **attrs: Any) -> Iterator[Run]:
    """Record ``job`` on ``store`` around the block; the block calls ``run.finish``.

    A block that ends without finishing is recorded complete with no arrays;
    one that raises is recorded failed (interrupted for Ctrl-C and signals), with
    the error, and the exception goes on.
    """
    with signals_interrupt():
        identities, configuration = bench.identities(), bench.configuration()
        with deferred_interrupts():  # a run in the file is always one this block ends
            run_id = store.start_run(job, params, identities, _temperature(bench),
                                     bench.datasheet.name, configuration=configuration,
                                     datasheet=bench.datasheet.to_dict(), **attrs)
        run = Run(store, run_id, job)
        try:
            check_interrupt()  # a stop that came while the run was being started
            yield run
            if not run.finished:
                run.finish({}, {})
        except BaseException as exc:
            if not run.finished:
                with deferred_interrupts():
                    store.fail_run(run_id, f"{type(exc).__name__}: {exc}", status_for(exc))
            raise
