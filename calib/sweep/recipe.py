"""A sweep recipe: which dies, in what order, which steps per die, and how dies are binned.

A recipe is a TOML file (``data/recipes/`` ships examples; docs/sweep.md documents every
key). Everything in it is checked when it is loaded — an unknown step or key, a bad bin
rule, a user step that cannot be imported — so a mistake costs a line on the terminal,
not a die: nothing reaches an instrument before the whole recipe is valid.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calib.sweep.figures import STEP_FIGURES
from instruments.errors import UserError
from instruments.tomlfile import read_toml
from instruments.units import QuantityError, quantity


class RecipeError(UserError, ValueError):
    """A recipe is malformed: the message names the key and what to write instead."""


STEP_KINDS = ("contact", "form", "map", "program", "user")
ROUTES = ("serpentine", "file")
OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b, ">": lambda a, b: a > b, "<": lambda a, b: a < b,
}
_CONDITION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(>=|<=|==|!=|>|<)\s*"
                        r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")

# outcomes that no rule decides, with their default bins (recipe [bins.special])
SPECIAL_BINS = {"contact": (9, "no contact"), "dead": (7, "dead die"),
                "setup": (0, "setup fault"), "error": (8, "step failed")}


@dataclass(frozen=True)
class Condition:
    figure: str  # "step.key" (aliases resolved when the recipe is loaded)
    op: str
    value: float

    def holds(self, figures: dict[str, Any]) -> bool:
        """False when the figure is missing or not a finite number (a rule on a figure
        the die does not have does not match it)."""
        got = figures.get(self.figure)
        if isinstance(got, bool) or not isinstance(got, (int, float)) or not math.isfinite(got):
            return False
        return OPS[self.op](float(got), self.value)


@dataclass(frozen=True)
class BinRule:
    """``when`` (conditions joined by ``and``) -> bin number and name; first match wins."""

    when: str
    conditions: tuple[Condition, ...]
    bin: int
    name: str
    passes: bool

    def matches(self, figures: dict[str, Any]) -> bool:
        return all(c.holds(figures) for c in self.conditions)


@dataclass(frozen=True)
class Step:
    """One step per die. ``options`` are the step's own keys, already checked."""

    kind: str
    name: str  # unique within the recipe: figures are "<name>.<key>"
    options: dict = field(default_factory=dict)
    function: Callable | None = None  # user steps: step(bench, die, run) -> dict


@dataclass(frozen=True)
class ContactCheck:
    """The contact check that opens every die: a read of ``cells`` cells against the
    open-circuit level measured with the probes up; ``retries`` re-contacts."""

    enabled: bool = True
    cells: int = 64
    retries: int = 2
    averages: int = 4


@dataclass(frozen=True)
class Conditions:
    """The chuck: a set point (degC) the sweep holds; a die waits until it is settled."""

    temperature_c: float | None = None
    settle_timeout_s: float = 900.0
    poll_s: float = 5.0


@dataclass(frozen=True)
class DieSelection:
    """Which dies of the prober's map: ``all``, ``inner`` (normalised radius <=
    ``inner_radius``), a list, or a range ``"10-40"``; then every N-th along the route;
    ``exclude`` taken out."""

    mode: str = "all"
    ids: tuple[int, ...] = ()
    inner_radius: float = 0.7
    every: int = 1
    exclude: tuple[int, ...] = ()


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    selection: DieSelection
    route: str
    steps: tuple[Step, ...]
    rules: tuple[BinRule, ...]
    default_bin: tuple[int, str]
    special: dict[str, tuple[int, str]]
    contact: ContactCheck
    conditions: Conditions
    source: str  # the file it came from
    digest: str  # sha256 of steps, bins, contact and conditions: a resume runs the same

    def bins(self) -> dict[int, tuple[str, bool]]:
        """Every bin the recipe can give: number -> (name, passes)."""
        out: dict[int, tuple[str, bool]] = {}
        for number, name in self.special.values():
            out.setdefault(number, (name, False))
        out.setdefault(self.default_bin[0], (self.default_bin[1], False))
        for rule in self.rules:
            out[rule.bin] = (rule.name, rule.passes)
        return out

    def decide(self, figures: dict[str, Any]) -> tuple[int, str, bool]:
        for rule in self.rules:
            if rule.matches(figures):
                return rule.bin, rule.name, rule.passes
        return self.default_bin[0], self.default_bin[1], False


_TOP = {"recipe", "dies", "contact", "conditions", "steps", "bins"}


def load_recipe(path: str | Path) -> Recipe:
    """Read and check a recipe file: a bundled name (``data/recipes/<name>.toml``) or a
    path."""
    path = _resolve(path)
    doc = read_toml(path, RecipeError, "recipe")
    return parse_recipe(doc, str(path))


def _resolve(path: str | Path) -> Path:
    text = str(path)
    if text.endswith(".toml") or "/" in text or Path(text).exists():
        return Path(text)
    from calib.sweep import bundled_recipes

    found = bundled_recipes().get(text)
    if found is None:
        raise RecipeError(f"{text}: no such recipe file; bundled recipes: "
                          f"{', '.join(sorted(bundled_recipes()))}")
    return found


def parse_recipe(doc: dict, source: str = "<recipe>") -> Recipe:
    _known(doc, _TOP, "")
    head = _table(doc, "recipe", required=True)
    _known(head, {"name", "description"}, "recipe.")
    name = _text(head, "name", "recipe.", required=True)
    selection, route = _selection(_table(doc, "dies"))
    contact = _contact(_table(doc, "contact"))
    conditions = _conditions(_table(doc, "conditions"))
    steps = _steps(doc.get("steps"))
    if not steps:
        raise RecipeError("steps: a recipe needs at least one [[steps]] entry")
    rules, default_bin, special = _bins(_table(doc, "bins", required=True), steps)
    # what a die's results depend on: not the name, nor which dies (a later sweep of more
    # dies of the wafer with the same steps and bins continues the same record)
    what = {k: v for k, v in doc.items() if k not in ("recipe", "dies")}
    digest = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()
    return Recipe(name=name, description=_text(head, "description", "recipe.") or "",
                  selection=selection, route=route, steps=steps, rules=rules,
                  default_bin=default_bin, special=special, contact=contact,
                  conditions=conditions, source=source, digest=digest)


# -- sections ----------------------------------------------------------------------------

def _selection(t: dict) -> tuple[DieSelection, str]:
    _known(t, {"select", "inner_radius", "every", "exclude", "route"}, "dies.")
    route = t.get("route", "serpentine")
    if route not in ROUTES:
        raise RecipeError(f"dies.route {route!r}: choose {' or '.join(ROUTES)}")
    select = t.get("select", "all")
    ids: tuple[int, ...] = ()
    if isinstance(select, list):
        mode, ids = "list", tuple(_die_id(v, "dies.select") for v in select)
        if not ids:
            raise RecipeError("dies.select: an empty list selects no die")
    elif isinstance(select, str) and select in ("all", "inner"):
        mode = select
    elif isinstance(select, str) and re.fullmatch(r"\s*\d+\s*-\s*\d+\s*", select):
        lo, hi = (int(v) for v in select.split("-"))
        if lo > hi:
            raise RecipeError(f"dies.select {select!r}: the range runs backwards")
        mode, ids = "range", tuple(range(lo, hi + 1))
    else:
        raise RecipeError(f"dies.select {select!r}: give \"all\", \"inner\", a range such "
                          "as \"10-40\", or a list of die ids")
    inner = _number(t, "inner_radius", "dies.", 0.7, 0.0, 1.0)
    every = _integer(t, "every", "dies.", 1, 1, 10_000)
    exclude = t.get("exclude", [])
    if not isinstance(exclude, list):
        raise RecipeError("dies.exclude: expected a list of die ids")
    return DieSelection(mode, ids, inner, every,
                        tuple(_die_id(v, "dies.exclude") for v in exclude)), route


def _contact(t: dict) -> ContactCheck:
    _known(t, {"enabled", "cells", "retries", "averages"}, "contact.")
    enabled = t.get("enabled", True)
    if not isinstance(enabled, bool):
        raise RecipeError("contact.enabled: expected true or false")
    return ContactCheck(enabled, _integer(t, "cells", "contact.", 64, 4, 4096),
                        _integer(t, "retries", "contact.", 2, 0, 10),
                        _integer(t, "averages", "contact.", 4, 1, 1024))


def _conditions(t: dict) -> Conditions:
    _known(t, {"temperature", "settle_timeout", "poll"}, "conditions.")
    temp = None
    if "temperature" in t:
        temp = _quantity(t["temperature"], "temperature", "conditions.temperature")
    timeout = _quantity(t.get("settle_timeout", "900 s"), "time", "conditions.settle_timeout")
    poll = _quantity(t.get("poll", "5 s"), "time", "conditions.poll")
    if not 0 < poll <= timeout:
        raise RecipeError("conditions.poll: must be positive and no longer than "
                          "conditions.settle_timeout")
    return Conditions(temp, timeout, poll)


_STEP_KEYS = {
    "contact": set(),
    "form": set(),
    "map": {"quick", "cycles", "max_pulses_per_cell"},
    "program": {"pattern", "weights", "target", "placement", "tolerance", "max_pulses",
                "relax_wait", "read_averages"},
    "user": {"function", "options"},
}


def _steps(raw: Any) -> tuple[Step, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(s, dict) for s in raw):
        raise RecipeError("steps: write each step as a [[steps]] table")
    steps, names = [], set()
    for i, t in enumerate(raw):
        where = f"steps[{i}]."
        kind = t.get("step")
        if kind not in STEP_KINDS:
            raise RecipeError(f"{where}step {kind!r}: unknown step; choose "
                              f"{', '.join(STEP_KINDS)}")
        _known(t, {"step", "name"} | _STEP_KEYS[kind], where)
        name = t.get("name", kind)
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise RecipeError(f"{where}name {name!r}: a plain identifier, e.g. \"map\"")
        if name in names:
            raise RecipeError(f"{where}name {name!r}: used by an earlier step; name each "
                              "repeated step (name = \"map2\")")
        names.add(name)
        options = {k: v for k, v in t.items() if k not in ("step", "name")}
        function = None
        if kind == "map":
            options = _map_options(options, where)
        elif kind == "program":
            options = _program_options(options, where)
        elif kind == "user":
            function = _user_function(options.get("function"), where)
            extra = options.get("options", {})
            if not isinstance(extra, dict):
                raise RecipeError(f"{where}options: expected a table of the step's options")
            options = {"function": options.get("function"), "options": extra}
        steps.append(Step(kind, name, options, function))
    return tuple(steps)


def _map_options(t: dict, where: str) -> dict:
    quick = t.get("quick", False)
    if not isinstance(quick, bool):
        raise RecipeError(f"{where}quick: expected true or false")
    out: dict[str, Any] = {"quick": quick}
    if "cycles" in t:
        out["cycles"] = _integer(t, "cycles", where, None, 1, 100)
    if "max_pulses_per_cell" in t:
        out["max_pulses_per_cell"] = _integer(t, "max_pulses_per_cell", where, None, 1, 100_000)
    return out


def _program_options(t: dict, where: str) -> dict:
    from calib.jobs.targets import PATTERNS, PLACEMENTS

    out: dict[str, Any] = {}
    sources = [k for k in ("pattern", "weights", "target") if k in t]
    if len(sources) > 1:
        raise RecipeError(f"{where}: give only one of pattern, weights, target")
    if "pattern" in t:
        if t["pattern"] not in PATTERNS:
            raise RecipeError(f"{where}pattern {t['pattern']!r}: choose {', '.join(PATTERNS)}")
        out["pattern"] = t["pattern"]
    for key in ("weights", "target"):
        if key in t:
            if not isinstance(t[key], str) or not Path(t[key]).is_file():
                raise RecipeError(f"{where}{key} {t[key]!r}: no such .npy file")
            out[key] = t[key]
    placement = t.get("placement", "naive")
    if placement not in PLACEMENTS:
        raise RecipeError(f"{where}placement {placement!r}: choose {' or '.join(PLACEMENTS)}")
    if placement == "fault-aware" and ("pattern" in t or "target" in t):
        raise RecipeError(f"{where}placement fault-aware places weights: give weights (or "
                          "none, for the example layer), not a pattern or a target")
    out["placement"] = placement
    tol = _quantity(t.get("tolerance", "1 uS"), "conductance", f"{where}tolerance")
    if not 0 < tol < 1e-3:
        raise RecipeError(f"{where}tolerance: {tol:g} S is not a plausible band")
    out["tolerance"] = tol
    if "max_pulses" in t:
        out["max_pulses"] = _integer(t, "max_pulses", where, None, 1, 10_000)
    if "relax_wait" in t:
        out["relax_wait_s"] = _quantity(t["relax_wait"], "time", f"{where}relax_wait")
    if "read_averages" in t:
        out["read_averages"] = _integer(t, "read_averages", where, None, 1, 1024)
    return out


def _user_function(spec: Any, where: str) -> Callable:
    if not isinstance(spec, str) or not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", spec):
        raise RecipeError(f"{where}function {spec!r}: name it as \"package.module:function\"")
    module_name, func_name = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - a user's module may fail in any way on import
        raise RecipeError(f"{where}function {spec!r}: cannot import {module_name} "
                          f"({type(exc).__name__}: {exc})") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise RecipeError(f"{where}function {spec!r}: {module_name} has no function "
                          f"{func_name}")
    return func


def _bins(t: dict, steps: tuple[Step, ...]) -> tuple[tuple[BinRule, ...], tuple[int, str],
                                                     dict[str, tuple[int, str]]]:
    _known(t, {"rules", "default", "special"}, "bins.")
    known = _figures(steps)
    rules = []
    raw_rules = t.get("rules", [])
    if not isinstance(raw_rules, list) or not all(isinstance(r, dict) for r in raw_rules):
        raise RecipeError("bins.rules: write each rule as a [[bins.rules]] table")
    for i, r in enumerate(raw_rules):
        where = f"bins.rules[{i}]."
        _known(r, {"when", "bin", "name", "pass"}, where)
        when = r.get("when")
        if not isinstance(when, str) or not when.strip():
            raise RecipeError(f"{where}when: give a condition, e.g. "
                              "\"program.in_band_fraction >= 0.99\"")
        conditions = tuple(_condition(part, known, where) for part in
                           re.split(r"\s+and\s+", when.strip()))
        number = _bin_number(r.get("bin"), f"{where}bin")
        passes = r.get("pass", number == 1)
        if not isinstance(passes, bool):
            raise RecipeError(f"{where}pass: expected true or false")
        rules.append(BinRule(when.strip(), conditions, number,
                             _bin_name(r.get("name"), number, where), passes))
    default = t.get("default", {"bin": 2, "name": "fail"})
    if not isinstance(default, dict):
        raise RecipeError("bins.default: expected a table {bin = 2, name = \"fail\"}")
    _known(default, {"bin", "name"}, "bins.default.")
    dnum = _bin_number(default.get("bin", 2), "bins.default.bin")
    default_bin = (dnum, _bin_name(default.get("name", "fail"), dnum, "bins.default."))
    special = dict(SPECIAL_BINS)
    raw_special = t.get("special", {})
    if not isinstance(raw_special, dict):
        raise RecipeError("bins.special: expected a table such as {contact = 9, dead = 7}")
    for key, value in raw_special.items():
        if key not in SPECIAL_BINS:
            raise RecipeError(f"bins.special.{key}: unknown outcome; known: "
                              f"{', '.join(SPECIAL_BINS)}")
        special[key] = (_bin_number(value, f"bins.special.{key}"), SPECIAL_BINS[key][1])
    return tuple(rules), default_bin, special


def _figures(steps: tuple[Step, ...]) -> dict[str, str | None]:
    """Figure names a rule may use: qualified ``step.key``, and bare ``key`` where one
    step has it (None: ambiguous). User steps' figures are unknown until they run."""
    qualified: dict[str, str | None] = {}
    bare: dict[str, str | None] = {}
    for step in steps:
        for key in STEP_FIGURES.get(step.kind, ()):
            full = f"{step.name}.{key}"
            qualified[full] = full
            bare[key] = None if key in bare else full
    return {**bare, **qualified, "__user__": ",".join(s.name for s in steps
                                                      if s.kind == "user")}


def _condition(text: str, known: dict, where: str) -> Condition:
    m = _CONDITION.match(text)
    if not m:
        raise RecipeError(f"{where}when {text!r}: write \"figure op number\", e.g. "
                          "\"map.stuck_fraction > 0.05\" (op: >= <= > < == !=)")
    figure, op, value = m.group(1), m.group(2), float(m.group(3))
    users = [u for u in known["__user__"].split(",") if u]
    if figure.split(".", 1)[0] in users and "." in figure:
        return Condition(figure, op, value)
    if figure not in known or figure == "__user__":
        names = sorted(k for k in known if k != "__user__" and "." in k)
        raise RecipeError(f"{where}when {text!r}: no step of this recipe reports "
                          f"{figure!r}; known: {', '.join(names) or 'none'}"
                          + (f"; user steps' figures are named {users[0]}.<key>"
                             if users else ""))
    resolved = known[figure]
    if resolved is None:
        raise RecipeError(f"{where}when {text!r}: {figure!r} is reported by more than one "
                          "step; name it as step.key")
    return Condition(resolved, op, value)


# -- values --------------------------------------------------------------------------------

def _known(t: dict, keys: set[str], where: str) -> None:
    for key in t:
        if key not in keys:
            raise RecipeError(f"{where}{key}: unknown key; known: {', '.join(sorted(keys))}"
                              if keys else f"{where}{key}: this step takes no options")


def _table(doc: dict, key: str, required: bool = False) -> dict:
    t = doc.get(key)
    if t is None:
        if required:
            raise RecipeError(f"[{key}]: missing section")
        return {}
    if not isinstance(t, dict):
        raise RecipeError(f"[{key}]: expected a table")
    return t


def _text(t: dict, key: str, where: str, required: bool = False) -> str | None:
    value = t.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise RecipeError(f"{where}{key}: expected a non-empty text")
    return value


def _integer(t: dict, key: str, where: str, default, lo: int, hi: int):
    value = t.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise RecipeError(f"{where}{key} {value!r}: expected a whole number in {lo}..{hi}")
    return value


def _number(t: dict, key: str, where: str, default: float, lo: float, hi: float) -> float:
    value = t.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and lo <= value <= hi):
        raise RecipeError(f"{where}{key} {value!r}: expected a number in {lo:g}..{hi:g}")
    return float(value)


def _quantity(value: Any, dimension: str, where: str) -> float:
    try:
        return quantity(value, dimension)
    except QuantityError as exc:
        raise RecipeError(f"{where}: {exc}") from None


def _die_id(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RecipeError(f"{where}: {value!r} is not a die id (a whole number >= 0)")
    return value


def _bin_number(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 32767:
        raise RecipeError(f"{where} {value!r}: a bin is a whole number in 0..32767")
    return value


def _bin_name(value: Any, number: int, where: str) -> str:
    if value is None:
        return f"bin {number}"
    if not isinstance(value, str) or not value.strip():
        raise RecipeError(f"{where}name: expected a non-empty text")
    return value.strip()
