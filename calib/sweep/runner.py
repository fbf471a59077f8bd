"""The sweep runner: step to each die, check contact, run the recipe's steps, bin, move on.

It calls jobs (``calib.jobs``) and the role interfaces, never an instrument's commands.
Every die's state goes to the wafer index before and after it is worked on, so a sweep
stopped at any instant — kill -9, Ctrl-C, a power cut, a bench that stops answering —
resumes at the first die not done; a die that was being worked on resumes at its first
step not done (the steps it finished stay, and are not done twice; the interrupted run
stays in its die file, marked interrupted).

What happens to a die that goes wrong, by cause:
- no contact after the recipe's retries: binned (special bin ``contact``), sweep goes on;
- no cell moves (a dead die): binned ``dead``, sweep goes on;
- an instrument refuses or trips (a prober error, a compliance trip): binned ``setup``;
- a user step raises, or a job refuses the die: binned ``error`` with the message;
- the bench stops answering (timeouts, lost connection) or the chuck never settles: the
  sweep stops cleanly, the die stays not done (``pending``) and is first on resume;
- Ctrl-C / SIGTERM: as above, and the command exits 130.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from calib.jobs.die import check_die_id, die_store, wafer_name
from calib.jobs.form import form_pristine
from calib.jobs.map import MapOptions, map_die
from calib.jobs.program import ProgramOptions, die_variability_map, program_die
from calib.jobs.run import check_interrupt, recorded_run, signals_interrupt
from calib.jobs.targets import make_targets
from calib.store import DieStore, DieStoreError
from calib.sweep.contact import OpenLevel, check_cells, check_contact, measure_open
from calib.sweep.figures import step_figures
from calib.sweep.index import WaferIndex, WaferIndexError
from calib.sweep.recipe import Recipe, RecipeError, Step, load_recipe
from calib.sweep.route import DieSite, normalised_radii, plan_route
from instruments.errors import (
    ContactError,
    InstrumentError,
    InstrumentIOError,
    InstrumentTimeout,
    UserError,
)
from protocols.variability import DeadArrayError

LOST = (InstrumentTimeout, InstrumentIOError)  # the bench stopped answering
STEP_PROTOCOL = {"map": "variability", "program": "write_verify", "user": "user_step"}


class SweepError(UserError, RuntimeError):
    """A sweep cannot start (no prober, a die not on the map) — nothing was sent."""


class SweepStopped(UserError, RuntimeError):
    """The sweep stopped cleanly before its end; the die being worked on is not done."""


@dataclass(frozen=True)
class SweepProgress:
    """Where a sweep is. Bench times in seconds of the bench's clock."""

    done: int  # dies finished (any bin), this sweep and earlier ones
    total: int  # dies on the route
    die: int
    x: int | None
    y: int | None
    event: str  # "start", "done", "paused", "retry", "stopped"
    bin: int | None = None
    bin_name: str | None = None
    message: str = ""
    eta_bench_s: float | None = None
    eta_wall_s: float | None = None
    figures: dict = field(default_factory=dict)

    def line(self) -> str:
        where = f"die {self.die}" + (f" ({self.x},{self.y})" if self.x is not None else "")
        if self.event == "done":
            shown = ", ".join(f"{k} {_fmt(v)}" for k, v in list(self.figures.items())[:3])
            eta = ""
            if self.eta_bench_s is not None:
                eta = (f"; ETA bench {_duration(self.eta_bench_s)}, wall "
                       f"{_duration(self.eta_wall_s or 0.0)}")
            return (f"[{self.done}/{self.total}] {where}: bin {self.bin} {self.bin_name}"
                    + (f" ({self.message})" if self.message else "")
                    + (f" - {shown}" if shown else "") + eta)
        return f"[{self.done}/{self.total}] {where}: {self.event}" + (
            f": {self.message}" if self.message else "")


@dataclass(frozen=True)
class SweepResult:
    """What a sweep did; the per-die rows are the wafer summary (``rows``)."""

    wafer: str
    recipe: str
    folder: str
    dies: int  # on the route
    done: int  # finished with a bin (this run or before)
    failed: int  # finished with the error bin (a step raised)
    pending: int  # not done (stopped before them)
    visited: int  # dies worked on by this run
    bins: dict[int, int]  # bin -> dies
    passed: int
    bench_time_s: float  # this run's
    wall_time_s: float
    stopped: str | None
    outputs: dict[str, str]
    rows: list[dict] = field(repr=False, default_factory=list)  # every die of the index

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("rows")
        out["bins"] = {str(k): v for k, v in sorted(self.bins.items())}
        out["yield"] = self.passed / self.done if self.done else None
        return out


# -- the runner ------------------------------------------------------------------------------

def run(bench, recipe: Recipe | str | Path, *, results: str | Path = "calib-results",
        wafer: str | None = None, redo: bool = False,
        progress: Callable[[SweepProgress], None] | None = None,
        outputs: bool = True) -> SweepResult:
    """Sweep the bench's wafer with ``recipe``; resumable (see the module docstring)."""
    started_wall = time.perf_counter()
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    if bench.prober is None:
        raise SweepError("a sweep needs a prober: add [roles.prober] to the bench config")
    if bench.array is None:
        raise SweepError("a sweep needs an array controller: add [roles.array]")
    cond = recipe.conditions
    if cond.temperature_c is not None:
        if bench.thermal is None:
            raise SweepError("the recipe sets conditions.temperature; this bench has no "
                             "thermal controller ([roles.thermal])")
        bench.guard.temperature(cond.temperature_c)  # refused before any byte
    name = wafer_name(bench, wafer)
    targets = {s.name: _check_program_step(bench, s) for s in recipe.steps
               if s.kind == "program"}
    # -- the first bytes: the prober's map (a query) -----------------------------------------
    sites = _sites(bench, recipe)
    route = plan_route(sites, recipe.selection, recipe.route)
    folder = die_store(results, name, route[0].id).path.parent
    with signals_interrupt(), WaferIndex(folder, name).open(recipe, route, redo) as index:
        if hasattr(bench, "bind_results"):
            bench.bind_results(folder)  # the simulated wafer's memory lives with the results
        runner = _Runner(bench, recipe, index, results, name, targets, progress)
        stopped = None
        try:
            runner.prepare()
            for die_id in index.pending():
                check_interrupt()
                runner.die(die_id)
        except SweepStopped as exc:
            stopped = str(exc)
        finally:
            runner.leave()
        rows = index.rows()
        written = write_outputs(folder, index, recipe) if outputs else {}
        mine = set(index.route)
    swept = [r for r in rows if r["die"] in mine]  # the figures below: this recipe's dies
    counts = Counter(r["bin"] for r in swept if r["state"] in ("done", "failed"))
    bins = recipe.bins()
    return SweepResult(
        wafer=name, recipe=recipe.name, folder=str(folder), dies=len(swept),
        done=sum(r["state"] in ("done", "failed") for r in swept),
        failed=sum(r["state"] == "failed" for r in swept),
        pending=sum(r["state"] in ("pending", "running") for r in swept),
        visited=runner.visited, bins=dict(counts),
        passed=sum(n for b, n in counts.items() if bins.get(b, ("", False))[1]),
        bench_time_s=runner.bench_time_s, wall_time_s=time.perf_counter() - started_wall,
        stopped=stopped, outputs=written, rows=rows)


def _sites(bench, recipe: Recipe) -> list[DieSite]:
    die_map = getattr(bench.prober, "die_map", None)
    if callable(die_map):
        return [DieSite(int(i), int(x), int(y)) for i, x, y in die_map()]
    if recipe.selection.mode not in ("list", "range"):
        raise SweepError("this prober cannot report its wafer map: select the dies as a "
                         "list or a range in the recipe's [dies] select")
    return [DieSite(i, None, None) for i in recipe.selection.ids]


def _check_program_step(bench, step: Step):
    """A program step's targets and options, checked before any byte (fault-aware
    placement is built per die, from that die's map)."""
    o = step.options
    options = ProgramOptions(tolerance=o["tolerance"], max_pulses=o.get("max_pulses"),
                             relax_wait_s=o.get("relax_wait_s"),
                             read_averages=o.get("read_averages"))
    options.params(bench.datasheet)
    targets = None
    if o["placement"] != "fault-aware":
        sheet = bench.datasheet
        targets = make_targets(sheet.shape, sheet.window.g_min, sheet.window.g_max,
                               weights=o.get("weights"), target=o.get("target"),
                               pattern=o.get("pattern"), seed=0)
    return options, targets


class _Runner:
    def __init__(self, bench, recipe: Recipe, index: WaferIndex, results, wafer: str,
                 targets: dict, progress) -> None:
        self.bench, self.recipe, self.index = bench, recipe, index
        self.results, self.wafer, self.targets = results, wafer, targets
        self.progress = progress or (lambda p: None)
        self.open_level: OpenLevel | None = None
        self.cells = check_cells(bench.datasheet.shape, recipe.contact.cells)
        self.visited = 0
        self.bench_time_s = 0.0
        self.wall_per_die: list[float] = []
        self.bench_per_die: list[float] = []

    # -- around the dies -----------------------------------------------------------------
    def prepare(self) -> None:
        b, cond = self.bench, self.recipe.conditions
        if cond.temperature_c is not None:
            b.thermal.set_temperature(cond.temperature_c)
        if self.recipe.contact.enabled:
            b.prober.separate()
            self.open_level = measure_open(b.array, self.cells, self.recipe.contact.averages)

    def leave(self) -> None:
        self.bench.at_die = None
        try:
            self.bench.prober.separate()
        except (InstrumentError, OSError):
            pass  # the probes up is a courtesy at the end; a lost bench is reported already

    def _now(self) -> float:
        clock = self.bench.clock
        return clock.now() if clock is not None else time.monotonic()

    def _wait(self, seconds: float) -> None:
        if self.bench.clock is not None:
            self.bench.clock.wait(seconds)
        else:
            time.sleep(seconds)

    def _report(self, die_id: int, event: str, **kw) -> None:
        entry = self.index.die(die_id)
        done = sum(self.index.die(i)["state"] in ("done", "failed")
                   for i in self.index.route)
        self.progress(SweepProgress(done, len(self.index.route), die_id, entry["x"],
                                    entry["y"], event, **kw))

    def _settle(self, die_id: int) -> None:
        """Pause while the chuck is out of its band; stop the sweep if it never settles."""
        cond, thermal = self.recipe.conditions, self.bench.thermal
        if cond.temperature_c is None or thermal.settled():
            return
        self._report(die_id, "paused", message=f"chuck at {thermal.temperature():.2f} degC, "
                     f"set {cond.temperature_c:g} degC: waiting until settled")
        waited = 0.0
        while not thermal.settled():
            if waited >= cond.settle_timeout_s:
                raise SweepStopped(f"the chuck did not settle at {cond.temperature_c:g} degC "
                                   f"within {cond.settle_timeout_s:g} s (reads "
                                   f"{thermal.temperature():.2f} degC); check the chiller")
            check_interrupt()
            self._wait(cond.poll_s)
            waited += cond.poll_s

    # -- one die ------------------------------------------------------------------------
    def die(self, die_id: int) -> None:
        die_id = check_die_id(die_id, SweepError)
        bench, index = self.bench, self.index
        try:
            self._settle(die_id)
        except LOST as exc:
            raise SweepStopped(f"the bench stopped answering ({exc})") from None
        entry = index.die(die_id)
        index.update(die_id, state="running", attempts=entry.get("attempts", 0) + 1,
                     started=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        self._report(die_id, "start")
        store = die_store(self.results, self.wafer, die_id)
        _mark_interrupted(store)
        if "known_runs" not in index.die(die_id):  # a new pass over this die
            index.update(die_id, known_runs=[r.run_id for r in store.runs()])
        t_bench, t_wall = self._now(), time.perf_counter()
        self.visited += 1
        try:
            outcome = self._work(die_id, store)
        except LOST as exc:
            index.update(die_id, state="pending", message=f"not done: bench lost ({exc})")
            raise SweepStopped(f"the bench stopped answering at die {die_id} ({exc}); the "
                               "die is not done: resume with the same command") from None
        except SweepStopped as exc:
            index.update(die_id, state="pending", message=f"not done: {exc}")
            raise
        except BaseException as exc:  # Ctrl-C, a signal, a full disk: the die is not done
            index.update(die_id, state="pending",
                         message=f"not done: {type(exc).__name__}: {exc}"[:300])
            raise
        finally:
            bench.at_die = None
        special, message = outcome
        figures = index.die(die_id)["figures"]
        if special is None:
            number, bin_name, passes = self.recipe.decide(figures)
        else:
            number, bin_name = self.recipe.special[special]
            passes = False
        bench_s = self._now() - t_bench
        try:
            bench.prober.set_bin(number)
        except LOST as exc:
            index.update(die_id, state="pending", message=f"not done: bench lost ({exc})")
            raise SweepStopped(f"the bench stopped answering at die {die_id} ({exc})") from None
        except InstrumentError as exc:
            message = (message + "; " if message else "") + f"prober did not take the bin: {exc}"
        state = "failed" if special == "error" else "done"
        index.update(die_id, state=state, bin=number, bin_name=bin_name, passed=passes,
                     soft_bin=number, message=message, bench_time_s=bench_s,
                     finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        self.bench_time_s += bench_s
        self.bench_per_die.append(bench_s)
        self.wall_per_die.append(time.perf_counter() - t_wall)
        remaining = len(index.pending())
        self._report(die_id, "done", bin=number, bin_name=bin_name, message=message,
                     eta_bench_s=remaining * sum(self.bench_per_die) / len(self.bench_per_die),
                     eta_wall_s=remaining * sum(self.wall_per_die) / len(self.wall_per_die),
                     figures=self._headline(figures))

    def _headline(self, figures: dict) -> dict:
        keys = [k for k in figures if k.endswith((".in_band_fraction", ".stuck_fraction",
                                                  ".pulses_mean", ".yield"))]
        return {k: figures[k] for k in keys}

    def _work(self, die_id: int, store: DieStore) -> tuple[str | None, str]:
        """Reach and contact the die, then its steps; (special outcome or None, message)."""
        bench = self.bench
        try:
            if not self._contact(die_id, first=True):
                return "contact", "no contact after retries"
        except LOST:
            raise
        except InstrumentError as exc:  # the prober refused the move, ...
            return "setup", f"reaching the die: {exc}"
        self._settle(die_id)  # a step can upset the chuck: measure only once it is back
        bench.at_die = die_id
        done = self.index.die(die_id)["steps"]
        for step in self.recipe.steps:
            if done.get(step.name, {}).get("state") == "done":
                continue  # finished before an interruption: not done twice
            if self._adopt(die_id, step, store):
                continue  # finished, but killed before the index heard of it
            check_interrupt()
            try:
                figures, extra = self._step(step, die_id, store)
            except LOST:
                raise
            except DeadArrayError as exc:
                self._record(die_id, step, "dead", {}, str(exc))
                return "dead", str(exc).split(":")[0]
            except ContactError as exc:
                self._record(die_id, step, "contact", {}, str(exc))
                return "contact", str(exc)
            except InstrumentError as exc:
                self._record(die_id, step, "setup", {}, str(exc))
                return "setup", f"{step.name}: {exc}"
            except (DieStoreError, WaferIndexError, RecipeError, SweepError):
                raise  # the results cannot be kept, or the sweep is misconfigured: stop
            except UserError as exc:
                self._record(die_id, step, "failed", {}, str(exc))
                return "error", f"{step.name}: {exc}"
            except (KeyboardInterrupt, SystemExit, MemoryError, OSError):
                raise
            except Exception as exc:  # noqa: BLE001 - a user step may raise anything
                if step.kind != "user":
                    raise
                self._record(die_id, step, "failed", {}, f"{type(exc).__name__}: {exc}")
                return "error", f"{step.name} raised {type(exc).__name__}: {exc}"[:300]
            self._record(die_id, step, "done", figures, "", **extra)
        return None, ""

    def _adopt(self, die_id: int, step: Step, store: DieStore) -> bool:
        """A complete run of ``step`` made in this pass over the die that the index does
        not know (the process died between the die file's write and the index's): take
        it as the step's result instead of running the step again."""
        protocol = STEP_PROTOCOL.get(step.kind)
        if protocol is None or not store.path.exists():
            return False
        entry = self.index.die(die_id)
        taken = set(entry["known_runs"]) | {r.get("run") for r in entry["steps"].values()}
        for info in store.runs():
            if (info.run_id not in taken and info.protocol == protocol
                    and info.status == "complete"):
                summary = store.read_run(info.run_id).get("summary") or {}
                figures = step_figures(step.kind if step.kind != "user" else "user", summary)
                self._record(die_id, step, "done", figures, "", run=info.run_id,
                             adopted=True)
                return True
        return False

    def _record(self, die_id: int, step: Step, state: str, figures: dict, message: str,
                **extra) -> None:
        self.index.step_done(die_id, step.name, {"state": state, "kind": step.kind,
                                                 "figures": figures, "message": message[:300],
                                                 **extra})

    def _contact(self, die_id: int, first: bool) -> bool:
        """Step to the die (first) and check continuity; re-contact up to the retries."""
        prober, spec = self.bench.prober, self.recipe.contact
        attempts = spec.retries + 1
        for attempt in range(attempts):
            try:
                if attempt == 0 and first:
                    prober.goto(die_id)
                else:
                    prober.separate()
                    prober.contact()
            except ContactError as exc:
                self._report(die_id, "retry", message=str(exc))
                continue
            if not spec.enabled:
                return True
            result = check_contact(self.bench.array, self.cells, spec.averages,
                                   self.open_level, self.bench.datasheet.window.g_min)
            self.index.step_done(die_id, "contact", {
                "state": "done" if result.ok else "failed", "kind": "contact",
                "figures": {"contact_ratio": result.ratio, "contact_attempts": attempt + 1},
                "message": ""})
            if result.ok:
                return True
            self._report(die_id, "retry", message=f"reads open circuit (ratio "
                         f"{result.ratio:.2f}): re-contacting")
        return False

    def _step(self, step: Step, die_id: int, store: DieStore) -> tuple[dict, dict]:
        b, o = self.bench, step.options
        if step.kind == "contact":
            if not self._contact(die_id, first=False):
                raise ContactError("the contact check failed again mid-die")
            fig = self.index.die(die_id)["steps"]["contact"]["figures"]
            return fig, {}
        if step.kind == "form":
            formed = form_pristine(b, store) if b.datasheet.forming.required else 0
            return {"cells_formed": formed}, {}
        if step.kind == "map":
            summary = map_die(b, die_id, MapOptions(quick=o["quick"], cycles=o.get("cycles"),
                              max_pulses_per_cell=o.get("max_pulses_per_cell")),
                              results=self.results, wafer=self.wafer)
            return step_figures("map", summary), {"run": summary.get("run")}
        if step.kind == "program":
            options, targets = self.targets[step.name]
            if targets is None:  # fault-aware: around this die's newest map
                sheet = b.datasheet
                vmap = die_variability_map(b, die_id, results=self.results, wafer=self.wafer)
                targets = make_targets(sheet.shape, sheet.window.g_min, sheet.window.g_max,
                                       weights=o.get("weights"), seed=die_id,
                                       placement="fault-aware", vmap=vmap)
            summary = program_die(b, die_id, targets, options, results=self.results,
                                  wafer=self.wafer)
            return step_figures("program", summary), {"run": summary.get("run")}
        return self._user(step, die_id, store)

    def _user(self, step: Step, die_id: int, store: DieStore) -> tuple[dict, dict]:
        params = {"function": step.options["function"], "options": step.options["options"]}
        with recorded_run(self.bench, store, "user_step", params, die=die_id) as run:
            got = step.function(self.bench, die_id, run, **step.options["options"])
            if not isinstance(got, dict):
                raise TypeError(f"{step.options['function']} returned "
                                f"{type(got).__name__}, not a dict of figures")
            figures = step_figures("user", got)
            if not run.finished:
                run.finish({}, {k: v for k, v in got.items() if _plain(v)})
        return figures, {"run": run.id}


def _plain(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) or value is None


def _mark_interrupted(store: DieStore) -> None:
    """Runs a killed sweep left 'running' in this die's file, marked interrupted (the
    sweep holds the wafer's lock, so no other sweep is running them)."""
    if not store.path.exists():
        return
    for info in store.runs():
        if info.status == "running":
            store.fail_run(info.run_id, "interrupted: the process ended mid-run (the sweep "
                           "re-runs the die)", "interrupted")


# -- outputs ---------------------------------------------------------------------------------

def write_outputs(folder: Path, index: WaferIndex, recipe: Recipe) -> dict[str, str]:
    """The wafer summary (CSV and JSON), the STDF file and a PNG bin map, beside the
    index. STDF and the PNG need optional extras; without them the summary still is."""
    from calib.sweep.outputs import write_summary, write_wafer_files

    rows = index.rows()
    written = write_summary(folder, rows)
    written.update(write_wafer_files(folder, rows, recipe, index.doc))
    return written


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


__all__ = ["SweepError", "SweepProgress", "SweepResult", "SweepStopped", "normalised_radii",
           "run"]
