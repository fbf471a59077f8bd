"""Reliability figures of the die file and the safety guard, scored against the files.

Run: python benchmarks/bench_reliability.py [--quick] [--kill-files N] [--kills-per-file N] ...

Every figure is what the die file (or the emulators, on the far side of the wire)
holds afterwards, not what the program says it did:

1. kill -9 at random moments of ``calib program --die 12 --pattern random`` on a
   256x256 simulated bench (delays uniform from 0.3 s to the measured typical run
   time). Per die file: one complete run, then the killed ones, then one more
   complete one. Counts die files left unreadable (``DieStore(...).runs()``
   raising, or a run that cannot be read at the end), earlier runs lost or
   changed (run id, status, end time before and after each kill), runs left
   ``running`` (expected after kill -9: the documented behaviour, not a loss).
2. SIGTERM and SIGINT the same way: runs left ``running`` (must be 0), exits
   other than 0 or 130, tracebacks in stderr.
3. Concurrency: trials of 2 and 4 processes on one die file (``--no-form``):
   runs lost (run ids printed by the processes vs runs in the file), ids
   repeated, non-zero exits.
4. Guard: random requests (seeded numpy RNG; in and out of the chip's limits,
   NaN, inf, negative, huge) through the embedded bench's drivers, with a cell
   closed onto the SMU's path: requests sent, refused (SafetyError, another
   InstrumentError), and let through beyond the chip's limits as observed at the
   emulators (must be 0).

Prints one table and, for every figure that is not 0 where it should be, what
happened (which trial, which run, the exit status, the last stderr line).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from calib import open_bench  # noqa: E402
from calib.store import DieStore  # noqa: E402
from instruments import InstrumentError, SafetyError  # noqa: E402
from instruments.drivers.smu_switch_array import channel  # noqa: E402

BENCH_TOML = '[chip]\ndatasheet = "rram"\n[simulation]\nrows = 256\ncols = 256\n'
MIN_DELAY_S = 0.3
WAIT_S = 120.0  # a signalled process that takes longer than this to end counts as hung


# -- running `calib program` ---------------------------------------------------------------

def launch(bench: Path | None, results: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "calib.cli", "program", "--die", "12", "--pattern", "random",
           "--results", str(results), "--json", *extra]
    if bench is not None:
        cmd += ["--bench", str(bench)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env=env)


def finish(proc: subprocess.Popen) -> tuple[int | None, str, str]:
    """Wait for the process; (returncode, stdout, stderr); None if it hung (then killed)."""
    try:
        out, err = proc.communicate(timeout=WAIT_S)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return None, out, err


def summary_of(out: str) -> dict | None:
    for line in reversed(out.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def last_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    return lines[-1].strip()[:160] if lines else "(no stderr)"


def snapshot(path: Path) -> dict[str, tuple[str, str, str | None]]:
    """run id -> (protocol, status, ended); raises what DieStore raises for a bad file."""
    return {r.run_id: (r.protocol, r.status, r.ended) for r in DieStore(path).runs()}


def read_everything(path: Path) -> None:
    store = DieStore(path)
    for r in store.runs():
        store.read_run(r.run_id)


def temp_copies(path: Path) -> list[str]:
    prefix = f".{path.name}."
    return sorted(p.name for p in path.parent.iterdir()
                  if p.name.startswith(prefix) and p.name.endswith((".tmp", ".part")))


def run_numbers_repeated(ids) -> int:
    numbers = [int(i.split("_", 1)[0]) for i in ids]
    return len(numbers) - len(set(numbers))


# -- 1 and 2: signals at random moments ---------------------------------------------------

@dataclass
class SignalStats:
    name: str
    expected_running: bool
    sent: int = 0
    finished_first: int = 0
    phases: Counter = field(default_factory=Counter)
    damaged: int = 0
    earlier_lost: int = 0
    earlier_changed: int = 0
    left_running: int = 0
    interrupted: int = 0
    bad_exits: int = 0
    tracebacks: int = 0
    hung: int = 0
    reused_numbers: int = 0
    stale_temp: int = 0
    mid_write: int = 0
    lost: int = 0
    complete_failed: int = 0
    files: int = 0
    problems: list[str] = field(default_factory=list)


def _phase(new: dict[str, tuple[str, str, str | None]]) -> str:
    if not new:
        return "start-up (no run recorded yet)"
    for _, (protocol, status, _ended) in sorted(new.items()):
        if status != "complete":
            return f"inside {protocol}"
    protocols = {p for p, _, _ in new.values()}
    return "after the last run" if "write_verify" in protocols else "between runs"


def complete_run(bench: Path, results: Path, stats: SignalStats, where: str) -> Path | None:
    rc, out, err = finish(launch(bench, results))
    s = summary_of(out)
    if rc != 0 or s is None:
        stats.complete_failed += 1
        stats.problems.append(f"{where}: complete run exited {rc}: {last_line(err)}")
        return None
    if "Traceback" in err:
        stats.tracebacks += 1
        stats.problems.append(f"{where}: complete run printed a traceback: {last_line(err)}")
    return Path(s["file"])


def signal_group(name: str, signum: int, bench: Path, files: int, per_file: int,
                 typical_s: float, rng: np.random.Generator, work: Path) -> SignalStats:
    stats = SignalStats(name, expected_running=signum == signal.SIGKILL)
    hi = max(typical_s, MIN_DELAY_S + 0.1)
    for f in range(files):
        results = work / f"{name.replace(' ', '').replace('-', '')}-{f}"
        path = complete_run(bench, results, stats, f"file {f}, first run")
        if path is None:
            continue
        stats.files += 1
        damaged = False
        seen_temp: set[str] = set()
        for k in range(per_file):
            where = f"file {f}, signal {k + 1}"
            before = snapshot(path)
            delay = float(rng.uniform(MIN_DELAY_S, hi))
            proc = launch(bench, results)
            try:
                proc.wait(timeout=delay)
                finished_first = True
            except subprocess.TimeoutExpired:
                finished_first = False
                proc.send_signal(signum)
            rc, out, err = finish(proc)
            stats.sent += 0 if finished_first else 1
            stats.finished_first += finished_first
            if rc is None:
                stats.hung += 1
                stats.problems.append(f"{where} at {delay:.2f} s: still running {WAIT_S:.0f} s "
                                      "after the signal (killed)")
            try:
                after = snapshot(path)
            except Exception as exc:  # noqa: BLE001 - any failure to read is the figure
                stats.damaged += 1
                stats.problems.append(f"{where} at {delay:.2f} s: die file unreadable: "
                                      f"{type(exc).__name__}: {exc}")
                damaged = True
                break
            for run_id, old in before.items():
                if run_id not in after:
                    stats.earlier_lost += 1
                    stats.problems.append(f"{where} at {delay:.2f} s: earlier run {run_id} "
                                          f"({old[1]}) lost")
                elif after[run_id] != old:
                    stats.earlier_changed += 1
                    stats.problems.append(f"{where} at {delay:.2f} s: earlier run {run_id} "
                                          f"changed {old[1:]} -> {after[run_id][1:]}")
            new = {i: v for i, v in after.items() if i not in before}
            phase = "finished before the signal" if finished_first else _phase(new)
            if not finished_first and _lost_in_callback(err):
                if rc == 0:
                    phase = "lost in a callback (the run went on)"
                    stats.lost += 1
                else:
                    phase = f"swallowed in a callback, exit {rc}"
            fresh = set(temp_copies(path)) - seen_temp  # the signal caught it writing a copy
            seen_temp |= fresh
            stats.mid_write += bool(fresh)
            stats.phases[phase] += 1
            running = [i for i, v in new.items() if v[1] == "running"]
            stats.left_running += len(running)
            stats.interrupted += sum(v[1] == "interrupted" for v in new.values())
            if running and not stats.expected_running:
                stats.problems.append(f"{where} at {delay:.2f} s: {', '.join(running)} left "
                                      f"running (exit {rc}): {last_line(err)}")
            if not stats.expected_running:
                if rc not in (0, 130):
                    stats.bad_exits += 1
                    printed = "printed" if summary_of(out) else "no summary printed"
                    stats.problems.append(f"{where} at {delay:.2f} s ({phase}): exit {rc}, "
                                          f"new runs {_show(new)}, {printed}: {last_line(err)}")
                if "Traceback" in err:
                    stats.tracebacks += 1
                    stats.problems.append(f"{where} at {delay:.2f} s ({phase}): traceback in "
                                          f"stderr, exit {rc}: {last_line(err)}")
        if damaged:
            continue
        before = snapshot(path)
        final = complete_run(bench, results, stats, f"file {f}, last run")
        if final is None:
            continue
        try:
            after = snapshot(path)
            read_everything(path)
        except Exception as exc:  # noqa: BLE001
            stats.damaged += 1
            stats.problems.append(f"file {f}, after the last run: unreadable: "
                                  f"{type(exc).__name__}: {exc}")
            continue
        for run_id, old in before.items():
            if after.get(run_id) != old:
                stats.earlier_changed += 1
                stats.problems.append(f"file {f}, last run: earlier run {run_id} changed "
                                      f"{old[1:]} -> {after.get(run_id)}")
        new = {i: v for i, v in after.items() if i not in before}
        if not new or any(v[1] != "complete" for v in new.values()):
            stats.complete_failed += 1
            stats.problems.append(f"file {f}, last run: new runs {_show(new)}")
        repeated = run_numbers_repeated(after)
        stats.reused_numbers += repeated
        if repeated:
            stats.problems.append(f"file {f}: run numbers repeated: {sorted(after)}")
        left = temp_copies(path)
        stats.stale_temp += len(left)
        if left:
            stats.problems.append(f"file {f}: temporary copies left after the last run: {left}")
    return stats


def _lost_in_callback(err: str) -> bool:
    """The interrupt was raised where Python cannot raise (a weakref callback, a __del__):
    printed as 'Exception ignored in ...' and dropped, so the process carried on."""
    return "Exception ignored in" in err and ("KeyboardInterrupt" in err
                                              or "JobInterrupted" in err)


def _show(runs: dict[str, tuple[str, str, str | None]]) -> str:
    return "{" + ", ".join(f"{i}: {v[1]}" for i, v in sorted(runs.items())) + "}"


def signal_line(s: SignalStats) -> str:
    where = ", ".join(f"{n} {p}" for p, n in s.phases.most_common())
    parts = [f"{s.sent} {'kills' if s.expected_running else 'signals'} sent "
             f"({where})" if where else f"{s.sent} sent",
             f"{s.mid_write} caught mid-write (temp copy left)",
             f"{s.damaged} files damaged (of {s.files})",
             f"{s.earlier_lost} earlier runs lost, {s.earlier_changed} changed"]
    if s.expected_running:
        parts.append(f"{s.left_running} runs left running (expected)")
    else:
        parts += [f"{s.left_running} runs left running", f"{s.interrupted} interrupted",
                  f"{s.lost} signals lost (run went on)",
                  f"{s.bad_exits} exits not 0/130", f"{s.tracebacks} tracebacks"]
    parts += [f"{s.hung} hung", f"{s.complete_failed} complete runs failed",
              f"{s.reused_numbers} run numbers repeated", f"{s.stale_temp} temp copies left"]
    return ", ".join(parts)


# -- 3: concurrency ----------------------------------------------------------------------

@dataclass
class ConcurrencyStats:
    processes: int
    trials: int = 0
    printed: int = 0
    lost: int = 0
    extra: int = 0
    repeated: int = 0
    nonzero: int = 0
    not_complete: int = 0
    damaged: int = 0
    problems: list[str] = field(default_factory=list)


def concurrency_group(processes: int, trials: int, bench: Path | None,
                      work: Path) -> ConcurrencyStats:
    stats = ConcurrencyStats(processes)
    for t in range(trials):
        where = f"{processes} processes, trial {t + 1}"
        results = work / f"conc{processes}-{t}"
        procs = [launch(bench, results, "--no-form") for _ in range(processes)]
        finished = [finish(p) for p in procs]
        stats.trials += 1
        ids, files = [], set()
        for i, (rc, out, err) in enumerate(finished):
            s = summary_of(out)
            if rc != 0 or s is None:
                stats.nonzero += 1
                stats.problems.append(f"{where}: process {i} exited {rc}: {last_line(err)}")
                continue
            ids.append(s["run"])
            files.add(s["file"])
        stats.printed += len(ids)
        found = sorted(results.rglob("die_*.h5"))
        if len(files) > 1 or len(found) != 1:
            stats.problems.append(f"{where}: expected one die file, got {sorted(files)} / "
                                  f"{[str(p) for p in found]}")
        if not found:
            stats.lost += len(ids)
            continue
        try:
            stored = DieStore(found[0]).runs()
        except Exception as exc:  # noqa: BLE001
            stats.damaged += 1
            stats.lost += len(ids)
            stats.problems.append(f"{where}: die file unreadable: {type(exc).__name__}: {exc}")
            continue
        stored_ids = [r.run_id for r in stored]
        lost = sorted(set(ids) - set(stored_ids))
        extra = sorted(set(stored_ids) - set(ids))
        repeated = (len(ids) - len(set(ids)) + len(stored_ids) - len(set(stored_ids))
                    + run_numbers_repeated(set(stored_ids)))
        bad = [f"{r.run_id}: {r.status}" for r in stored if r.status != "complete"]
        stats.lost += len(lost)
        stats.extra += len(extra)
        stats.repeated += repeated
        stats.not_complete += len(bad)
        if lost or extra or repeated or bad:
            stats.problems.append(f"{where}: printed {sorted(ids)}, file holds "
                                  f"{sorted(stored_ids)}; not complete: {bad}")
    return stats


def concurrency_line(c: ConcurrencyStats) -> str:
    return (f"{c.processes} processes: {c.trials} trials, {c.printed} runs printed, "
            f"{c.lost} lost, {c.repeated} ids repeated, {c.nonzero} non-zero exits, "
            f"{c.extra} unclaimed runs, {c.not_complete} not complete, {c.damaged} files damaged")


# -- 4: the guard ------------------------------------------------------------------------

SPECIAL = [math.nan, math.inf, -math.inf, 0.0, -0.0]


def number(rng: np.random.Generator, limit: float, low: float | None = None) -> float:
    """A value around ``limit``: within, at, just beyond, far beyond, special, huge."""
    low = -limit if low is None else low
    pick = rng.random()
    if pick < 0.30:
        return float(rng.uniform(min(low, 0.0), limit))  # mostly within
    if pick < 0.50:
        return float(rng.uniform(1.5 * min(low, -limit), 1.5 * limit))
    if pick < 0.65:
        edge = limit if rng.random() < 0.7 else low
        return float(edge * rng.choice([1.0, 1 + 1e-9, 1 + 1e-6, 1.001, 1.01, 1.1, 2.0]))
    if pick < 0.75:
        return float(rng.choice(SPECIAL))
    if pick < 0.85:
        return float(rng.choice([-1.0, 1.0]) * 10.0 ** rng.uniform(1, 308))
    return float(-rng.uniform(0, 3 * limit))  # negative


def width(rng: np.random.Generator, limit: float) -> float:
    if rng.random() < 0.4:
        return float(10.0 ** rng.uniform(-9, 1))  # nanoseconds to seconds
    return number(rng, limit, low=0.0)


@dataclass
class GuardStats:
    sent: int = 0
    refused_guard: int = 0
    refused_other: int = 0
    accepted: int = 0
    beyond: int = 0
    escaped: int = 0
    refused_but_sent: int = 0
    kinds: Counter = field(default_factory=Counter)
    other_errors: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)


KINDS = ["pulse", "pulse_cells", "mvm", "read_voltage", "read_cells", "form", "temperature",
         "compliance", "smu_voltage", "smu_dc", "smu_output", "smu_measure", "smu_pulse",
         "smu_form_pulse", "smu_sweep", "wait"]


def _close_cell_path(bench) -> None:
    wiring = bench.simulation.wiring
    bench.switch.exclusive_close([channel("A", 0), channel("B", wiring.word_lines)])


def guard_group(requests: int, seed: int) -> GuardStats:
    stats = GuardStats()
    rng = np.random.default_rng(seed)
    with open_bench() as bench:
        bench.prober.goto(12)
        arr, lim = bench.array, bench.limits
        emulator = bench.simulation.emulators["smu"]
        observed = bench.simulation.observed
        points: list[tuple[float, float, bool]] = []
        original = emulator._apply

        def recording(volts, seconds):
            points.append((float(volts), float(seconds), emulator._connected() is not None))
            return original(volts, seconds)

        emulator._apply = recording
        wire_limits = {
            "program_voltage": lim.max_program_voltage, "pulse_width": lim.max_pulse_width,
            "read_voltage": lim.max_read_voltage, "mvm_voltage": lim.max_read_voltage,
            "forming_voltage": lim.max_forming_voltage, "forming_width": lim.max_forming_width,
            "smu_voltage": lim.max_source_voltage,
            "smu_dwell": max(lim.max_pulse_width, lim.max_forming_width),
            "compliance": lim.max_compliance, "temperature": lim.max_temperature,
        }
        try:
            _close_cell_path(bench)
            arr.read()  # first-use set-up out of the way
            rows, cols = arr.shape
            for n in range(requests):
                if n % 25 == 0 and emulator._connected() is None:
                    _close_cell_path(bench)
                kind = KINDS[int(rng.integers(len(KINDS)))]
                request = _make_request(kind, rng, lim, rows, cols)
                observed.maxima.clear()
                observed.minima.clear()
                points.clear()
                before = sum(s.transactions for s in bench.sessions.values())
                stats.sent += 1
                stats.kinds[kind] += 1
                try:
                    _send(bench, kind, request)
                    stats.accepted += 1
                except SafetyError:
                    stats.refused_guard += 1
                    if sum(s.transactions for s in bench.sessions.values()) != before:
                        stats.refused_but_sent += 1
                        if stats.refused_but_sent <= 5:
                            stats.problems.append(f"request {n} {kind} {_brief(request)}: "
                                                  "refused by the guard after bytes were sent")
                except InstrumentError as exc:
                    stats.refused_other += 1
                    stats.other_errors[type(exc).__name__] += 1
                except Exception as exc:  # noqa: BLE001 - nothing else may escape a driver
                    stats.escaped += 1
                    stats.problems.append(f"request {n} {kind} {_brief(request)}: escaped "
                                          f"{type(exc).__name__}: {exc}")
                found = _beyond(observed, wire_limits, lim, points, emulator)
                if found:
                    stats.beyond += 1
                    stats.problems.append(f"request {n} {kind} {_brief(request)}: beyond the "
                                          f"limits at the emulators: {'; '.join(found)}")
        finally:
            emulator._apply = original
    return stats


def _make_request(kind: str, rng: np.random.Generator, lim, rows: int, cols: int) -> dict:
    cells = rows * cols
    if kind == "pulse":
        n = int(rng.integers(1, 9))
        volts = np.zeros((rows, cols))
        volts.flat[rng.integers(0, cells, n)] = [number(rng, lim.max_program_voltage)
                                                 for _ in range(n)]
        w = (width(rng, lim.max_pulse_width) if rng.random() < 0.7 else
             np.array([[width(rng, lim.max_pulse_width) for _ in range(cols)]
                       for _ in range(rows)]))
        return {"volts": volts, "width": w}
    if kind == "pulse_cells":
        n = int(rng.integers(1, 9))
        return {"cells": np.sort(rng.choice(cells, n, replace=False)),
                "volts": np.array([number(rng, lim.max_program_voltage) for _ in range(n)]),
                "width": width(rng, lim.max_pulse_width)}
    if kind == "mvm":
        x = np.zeros(rows)
        x[rng.integers(0, rows, int(rng.integers(1, 5)))] = number(rng, lim.max_read_voltage)
        return {"x": x}
    if kind in ("read_voltage", "smu_voltage", "smu_dc"):
        return {"volts": number(rng, lim.max_read_voltage)}
    if kind == "read_cells":
        return {"cells": np.sort(rng.choice(cells, int(rng.integers(1, 9)), replace=False)),
                "averages": int(rng.choice([1, 2, 8, 0, -1, 5000]))}
    if kind == "form":
        mask = rng.random((rows, cols)) < 0.05 if rng.random() < 0.5 else None
        return {"volts": number(rng, lim.max_forming_voltage, low=0.0),
                "width": width(rng, lim.max_forming_width), "mask": mask}
    if kind == "temperature":
        mid = (lim.max_temperature + lim.min_temperature) / 2
        half = (lim.max_temperature - lim.min_temperature) / 2
        return {"celsius": mid + number(rng, half)}
    if kind == "compliance":
        return {"amps": number(rng, lim.max_compliance, low=0.0)}
    if kind == "smu_output":
        return {"on": bool(rng.random() < 0.5)}
    if kind == "smu_measure":
        return {}
    if kind in ("smu_pulse", "smu_sweep"):
        return {"volts": number(rng, lim.max_program_voltage),
                "width": width(rng, lim.max_pulse_width), "end": bool(rng.random() < 0.5)}
    if kind == "smu_form_pulse":
        return {"volts": number(rng, lim.max_forming_voltage),
                "width": width(rng, lim.max_forming_width)}
    if kind == "wait":
        return {"seconds": number(rng, 1e3, low=0.0)}
    raise ValueError(kind)


def _send(bench, kind: str, r: dict) -> None:
    arr, smu = bench.array, bench.smu
    if kind == "pulse":
        arr.pulse(r["volts"], width=r["width"])
    elif kind == "pulse_cells":
        arr.pulse_cells(r["cells"], r["volts"], r["width"])
    elif kind == "mvm":
        arr.mvm(r["x"])
    elif kind == "read_voltage":
        arr.configure_read_voltage(r["volts"])
        arr.read()
    elif kind == "read_cells":
        arr.read_cells(r["cells"], averages=r["averages"])
    elif kind == "form":
        arr.form(r["volts"], r["width"], r["mask"])
    elif kind == "temperature":
        bench.thermal.set_temperature(r["celsius"])
    elif kind == "compliance":
        smu.set_compliance(r["amps"])
    elif kind == "smu_voltage":
        smu.set_voltage(r["volts"])
    elif kind == "smu_dc":  # a level, the output on, a reading: a DC read
        smu.set_voltage(r["volts"])
        smu.output(True)
        smu.measure_current()
    elif kind == "smu_output":
        smu.output(r["on"])
    elif kind == "smu_measure":
        smu.measure_current()
    elif kind == "smu_pulse":
        smu.pulse(r["volts"], r["width"])
    elif kind == "smu_form_pulse":
        smu.form_pulse(r["volts"], r["width"])
    elif kind == "smu_sweep":  # ending back at 0 V, or on the level
        v = r["volts"]
        smu.list_sweep(np.array([0.0, v] if r["end"] else [v, 0.0]), r["width"])
    elif kind == "wait":
        bench.clock.wait(r["seconds"])


def _brief(r: dict) -> str:
    def show(v):
        if isinstance(v, np.ndarray):
            if v.dtype == bool:
                return f"mask[{int(v.sum())}]"
            nz = v[v != 0] if v.size > 16 else v
            return f"[{', '.join(f'{x:.4g}' for x in nz.flat[:6])}{'...' if nz.size > 6 else ''}]"
        return f"{v:.6g}" if isinstance(v, float) else repr(v)
    return "(" + ", ".join(f"{k}={show(v)}" for k, v in r.items()) + ")"


def _beyond(observed, wire_limits: dict, lim, points, emulator) -> list[str]:
    found = []
    for quantity, limit in wire_limits.items():
        seen = observed.maxima.get(quantity)
        if seen is not None and seen > limit * (1 + 1e-6):
            found.append(f"{quantity} {seen:.6g} > {limit:g}")
    low = observed.minima.get("temperature")
    if low is not None and low < lim.min_temperature - 1e-6:
        found.append(f"temperature {low:.6g} < {lim.min_temperature:g}")
    for volts, seconds, on_cell in points:
        a = abs(volts)
        ok = (a <= lim.max_read_voltage
              or (a <= lim.max_program_voltage and seconds <= lim.max_pulse_width)
              or (0 < volts <= lim.max_forming_voltage and seconds <= lim.max_forming_width))
        if not ok:
            found.append(f"SMU sourced {volts:.6g} V for {seconds:.6g} s "
                         f"({'onto a cell' if on_cell else 'no cell'})")
    if emulator.output and abs(emulator.level) > lim.max_read_voltage:
        found.append(f"SMU output left on at {emulator.level:.6g} V")
    return found


def guard_line(g: GuardStats) -> str:
    others = ", ".join(f"{n} {k}" for k, n in g.other_errors.most_common())
    return (f"{g.sent} requests: {g.refused_guard} refused by the guard (SafetyError), "
            f"{g.refused_other} other InstrumentErrors ({others}), {g.accepted} "
            f"carried out; {g.beyond} let through beyond the chip limits at the emulators, "
            f"{g.escaped} non-InstrumentError exceptions, {g.refused_but_sent} refusals "
            "that sent bytes")


# -- main --------------------------------------------------------------------------------

def typical_run_time(bench: Path, work: Path, runs: int) -> tuple[float, list[float]]:
    """Median wall time of complete runs (launch to exit) on one die file."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        rc, _, err = finish(launch(bench, work / "typical"))
        times.append(time.perf_counter() - t0)
        if rc != 0:
            raise SystemExit(f"a complete run failed (exit {rc}): {last_line(err)}")
    return statistics.median(times), times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Small counts (about 2 minutes).")
    parser.add_argument("--kill-files", type=int, help="Die files for kill -9 (default 8).")
    parser.add_argument("--kills-per-file", type=int, help="Kills per die file (default 5).")
    parser.add_argument("--signal-files", type=int,
                        help="Die files for SIGTERM and for SIGINT each (default 5).")
    parser.add_argument("--signals-per-file", type=int, help="Signals per die file (default 5).")
    parser.add_argument("--trials", type=int, help="Concurrency trials per process count "
                                                   "(default 20).")
    parser.add_argument("--processes", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--concurrency-bench", choices=["256", "default"], default="256",
                        help="Concurrency on the 256x256 bench or the embedded 64x64 one.")
    parser.add_argument("--requests", type=int, help="Guard requests (default 50000).")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="Keep the die files.")
    args = parser.parse_args()
    quick = args.quick
    kill_files = args.kill_files or (2 if quick else 8)
    kills = args.kills_per_file or (4 if quick else 5)
    signal_files = args.signal_files or (2 if quick else 5)
    per_signal = args.signals_per_file or (3 if quick else 5)
    trials = args.trials or (4 if quick else 20)
    requests = args.requests or (5000 if quick else 50000)

    t_start = time.perf_counter()
    # a shell's background job (`cmd &`, nohup) starts with SIGINT ignored, and its children
    # inherit that: give them the default, so a SIGINT is what Ctrl-C is in a terminal
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        print("note: SIGINT was ignored (a background job); restored for the runs", flush=True)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    work = Path(tempfile.mkdtemp(prefix="bench_reliability."))
    bench = work / "bench256.toml"
    bench.write_text(BENCH_TOML)
    rng = np.random.default_rng(args.seed)
    rows: list[tuple[str, str, float]] = []
    problems: list[tuple[str, list[str]]] = []
    try:
        typical, times = typical_run_time(bench, work, 3)
        print(f"typical complete run (256x256, form + write-verify): {typical:.2f} s "
              f"({', '.join(f'{t:.2f}' for t in times)}); signal delays uniform "
              f"{MIN_DELAY_S} .. {max(typical, MIN_DELAY_S + 0.1):.2f} s; work folder {work}",
              flush=True)
        for name, signum, files, each in (("kill -9", signal.SIGKILL, kill_files, kills),
                                          ("SIGTERM", signal.SIGTERM, signal_files, per_signal),
                                          ("SIGINT", signal.SIGINT, signal_files, per_signal)):
            t0 = time.perf_counter()
            s = signal_group(name, signum, bench, files, each, typical, rng, work)
            rows.append((name, signal_line(s), time.perf_counter() - t0))
            problems.append((name, s.problems))
            print(f"{name}: done in {rows[-1][2]:.1f} s", flush=True)
        t0 = time.perf_counter()
        conc_bench = bench if args.concurrency_bench == "256" else None
        lines = []
        for n in args.processes:
            c = concurrency_group(n, trials, conc_bench, work)
            lines.append(concurrency_line(c))
            problems.append((f"concurrency {n}", c.problems))
        rows.append(("concurrency", "; ".join(lines), time.perf_counter() - t0))
        print(f"concurrency: done in {rows[-1][2]:.1f} s", flush=True)
        t0 = time.perf_counter()
        g = guard_group(requests, args.seed)
        rows.append(("guard", guard_line(g), time.perf_counter() - t0))
        problems.append(("guard", g.problems))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"{'group':<12} {'wall s':>7}  figures (scored against the die files / the emulators)")
    for name, line, seconds in rows:
        print(f"{name:<12} {seconds:7.1f}  {line}")
    print(f"{'total':<12} {time.perf_counter() - t_start:7.1f}")
    listed = [(name, p) for name, p in problems if p]
    if listed:
        print("\ndetails:")
        for name, items in listed:
            for item in items[:40]:
                print(f"  {name}: {item}")
            if len(items) > 40:
                print(f"  {name}: ... {len(items) - 40} more")


if __name__ == "__main__":
    main()
