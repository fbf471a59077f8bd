"""Bench configuration files: the chip's datasheet and which driver serves each role.

Layout and examples: docs/bench.md. With no file, the embedded simulated bench.
Every key and type is checked here, before any instrument is opened: an
unknown key or a wrong type is an error that names it, never silently ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instruments.datasheet import bundled_datasheet, data_root
from instruments.errors import UserError
from instruments.tomlfile import read_toml

ROLES = ("array", "smu", "switch", "thermal", "prober", "clock")
TRANSPORTS = ("inprocess", "tcp")
# VisaSession settings a role table may give: key -> (type check, description)
SESSION_KEYS = {
    "timeout_s": (lambda v: _number(v) and 0 < v <= 3600, "seconds in (0, 3600]"),
    "retries": (lambda v: _whole(v) and 0 <= v <= 10, "a whole number 0..10"),
    "min_interval_s": (lambda v: _number(v) and 0 <= v <= 10, "seconds in [0, 10]"),
    "read_termination": (lambda v: isinstance(v, str), "text such as \"\\n\""),
    "write_termination": (lambda v: isinstance(v, str), "text such as \"\\n\""),
    "exclusive": (lambda v: isinstance(v, bool), "true or false"),
}
LATENCY_KEYS = ("transaction_s", "byte_s", "smu_point_s", "relay_s", "die_step_s",
                "contact_s", "array_overhead_s")


class BenchConfigError(UserError, ValueError):
    """A bench config is malformed; the message names the entry."""


def _number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def _whole(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, int)


@dataclass(frozen=True)
class RoleConfig:
    driver: str
    resource: str | None = None
    session: dict[str, Any] = field(default_factory=dict)  # VisaSession settings
    options: dict[str, Any] = field(default_factory=dict)  # the driver's own options


@dataclass(frozen=True)
class SimulationConfig:
    chip: str = "rram"  # the simulator's chip spec: preset or path (physics included)
    seed: int = 7
    wafer: str = "default"
    transport: str = "inprocess"
    rows: int | None = None
    cols: int | None = None
    latency: dict[str, float] = field(default_factory=dict)  # seconds, LatencyModel fields
    state: bool = True  # the wafer remembers its dies in <results>/<wafer>/sim-state/


@dataclass(frozen=True)
class BenchConfig:
    datasheet: str  # the chip's datasheet (bundled name or path): limits, window, forming
    roles: dict[str, RoleConfig]
    simulation: SimulationConfig | None = None
    visa_library: str = "@py"
    source: str = "<built-in>"


SIMULATED_ROLES = {
    "array": RoleConfig("reference-array"),
    "smu": RoleConfig("keithley2450"),
    "switch": RoleConfig("keithley707b"),
    "prober": RoleConfig("sentio"),
    "thermal": RoleConfig("sentio"),
    "clock": RoleConfig("virtual-clock"),
}


def default_config(chip: str = "rram", seed: int = 7, transport: str = "inprocess",
                   rows: int | None = None, cols: int | None = None) -> BenchConfig:
    """The embedded simulated bench: every role, served by the simulator."""
    return BenchConfig(datasheet=chip, roles=dict(SIMULATED_ROLES),
                       simulation=SimulationConfig(chip=chip, seed=seed, transport=transport,
                                                   rows=rows, cols=cols))


def bundled_bench(name: str) -> Path | None:
    path = data_root() / "benches" / f"{name}.toml"
    return path if path.is_file() else None


def load_bench_config(path: str | Path) -> BenchConfig:
    """Read a bench config TOML (a path, or the name of a bundled one)."""
    p = Path(path)
    if not p.suffix and not p.exists():
        p = bundled_bench(str(path)) or p
    doc = read_toml(p, BenchConfigError, "bench config")
    return config_from_dict(doc, source=str(p))


def _table(doc: dict, key: str, allowed: tuple[str, ...], where: str) -> dict:
    table = doc.get(key, {})
    if not isinstance(table, dict):
        raise BenchConfigError(f"{where}: expected a table [{where}], got {table!r}")
    for name in table:
        if name not in allowed:
            raise BenchConfigError(f"{where}.{name}: unknown key; known: {', '.join(allowed)}")
    return table


def _relative(value: str, source: str) -> str:
    """A relative .toml path in a config file is relative to that file."""
    if value.endswith(".toml") and not Path(value).is_absolute() and source[0] != "<":
        return str(Path(source).parent / value)
    return value


def _check_datasheet(datasheet: str) -> None:
    """The datasheet a config names exists: a bundled name or a file (read when wired)."""
    if not datasheet.endswith(".toml") and "/" not in datasheet and "\\" not in datasheet:
        if bundled_datasheet(datasheet) is None:
            known = sorted(p.stem for p in (data_root() / "datasheets").glob("*.toml"))
            raise BenchConfigError(f"chip.datasheet: unknown datasheet {datasheet!r}; give a "
                                   f"bundled one ({', '.join(known)}) or a datasheet .toml path")
        return
    path = Path(datasheet)
    if path.is_dir():
        raise BenchConfigError(f"chip.datasheet: {datasheet} is a folder, not a datasheet file")
    if not path.exists():
        raise BenchConfigError(f"chip.datasheet: no such datasheet file {datasheet}")


def _text(table: dict, key: str, where: str, default: str | None) -> str | None:
    value = table.get(key, default)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise BenchConfigError(f"{where}.{key}: expected text, got {value!r}")
    return value


def _simulation(doc: dict, datasheet: str, source: str) -> SimulationConfig | None:
    if "simulation" not in doc:
        return None
    s = _table(doc, "simulation", ("chip", "seed", "wafer", "transport", "rows", "cols",
                                   "latency", "state"), "simulation")
    chip = _text(s, "chip", "simulation", None)
    if chip is None:
        if datasheet.endswith(".toml") or "/" in datasheet:
            raise BenchConfigError("simulation.chip: missing; name the simulator's chip spec "
                                   "(a preset such as \"rram\", or a chip TOML with physics)")
        chip = datasheet
    transport = s.get("transport", "inprocess")
    if transport not in TRANSPORTS:
        raise BenchConfigError(f"simulation.transport: expected one of "
                               f"{', '.join(TRANSPORTS)}, got {transport!r}")
    seed = s.get("seed", 7)
    if not _whole(seed) or not 0 <= seed < 2**32:
        raise BenchConfigError(f"simulation.seed: expected a whole number 0..{2**32 - 1}, "
                               f"got {seed!r}")
    for key in ("rows", "cols"):
        if key in s and (not _whole(s[key]) or not 1 <= s[key] <= 8192):
            raise BenchConfigError(f"simulation.{key}: expected a whole number 1..8192, "
                                   f"got {s[key]!r}")
    state = s.get("state", True)
    if not isinstance(state, bool):
        raise BenchConfigError(f"simulation.state: expected true or false, got {state!r}")
    latency = _table(s, "latency", LATENCY_KEYS, "simulation.latency")
    for key, value in latency.items():
        if not _number(value) or value < 0:
            raise BenchConfigError(f"simulation.latency.{key}: expected seconds >= 0, "
                                   f"got {value!r}")
    return SimulationConfig(chip=_relative(chip, source), seed=seed,
                            wafer=_text(s, "wafer", "simulation", "default"),
                            transport=transport, rows=s.get("rows"), cols=s.get("cols"),
                            latency={k: float(v) for k, v in latency.items()}, state=state)


def _role(role: str, table: Any, simulated: bool) -> RoleConfig:
    where = f"roles.{role}"
    if role not in ROLES:
        raise BenchConfigError(f"{where}: unknown role; known: {', '.join(ROLES)}")
    example = f"driver = \"{SIMULATED_ROLES[role].driver}\""
    if not isinstance(table, dict):
        raise BenchConfigError(f"{where}: expected a table [{where}] (e.g. {example}), "
                               f"got {table!r}")
    if "driver" not in table:
        raise BenchConfigError(f"{where}.driver: missing (e.g. {example})")
    driver = table["driver"]
    if not isinstance(driver, str) or not driver.strip():
        raise BenchConfigError(f"{where}.driver: expected a driver name (e.g. {example}), "
                               f"got {driver!r}")
    resource = table.get("resource")
    if resource is not None and (not isinstance(resource, str) or not resource.strip()):
        raise BenchConfigError(f"{where}.resource: expected a VISA resource string such as "
                               "\"TCPIP::192.168.0.20::5025::SOCKET\"")
    session, options = {}, {}
    for key, value in table.items():
        if key in ("driver", "resource"):
            continue
        if key in SESSION_KEYS:
            ok, what = SESSION_KEYS[key]
            if not ok(value):
                raise BenchConfigError(f"{where}.{key}: expected {what}, got {value!r}")
            session[key] = value
        else:
            options[key] = value  # checked by the driver's constructor, before any I/O
    return RoleConfig(table["driver"], resource, session, options)


def _check_resources(roles: dict[str, RoleConfig]) -> None:
    """On a real bench every instrument needs its resource string, except drivers that
    need none (the wall clock, composites) and a second role of one instrument."""
    from instruments.registry import driver_class

    for role, rc in roles.items():
        if rc.resource is not None:
            continue
        try:
            cls = driver_class(rc.driver)
        except UserError as exc:
            raise BenchConfigError(f"roles.{role}.driver: {exc}") from None
        shared = any(o.driver == rc.driver and o.resource for r, o in roles.items() if r != role)
        if cls.uses_session and not (shared and role != cls.role):
            raise BenchConfigError(f"roles.{role}.resource: missing; give the VISA resource "
                                   "string, e.g. \"TCPIP::192.168.0.20::5025::SOCKET\"")


def config_from_dict(doc: dict, source: str = "<dict>") -> BenchConfig:
    """Check a parsed bench config document and build the config."""
    known = ("chip", "simulation", "visa", "roles")
    if "window" in doc or "limits" in doc:
        raise BenchConfigError(f"{source}: a chip datasheet, not a bench config; a bench config "
                               "names it: [chip] datasheet = \"<this file>\" (docs/bench.md)")
    for key in doc:
        if key not in known:
            raise BenchConfigError(f"[{key}]: unknown section in {source}; known: "
                                   f"{', '.join(known)}")
    chip = _table(doc, "chip", ("datasheet", "spec"), "chip")
    if "spec" in chip:
        raise BenchConfigError("chip.spec: renamed chip.datasheet (the chip's datasheet: a "
                               "bundled name such as \"rram\" or a datasheet .toml)")
    datasheet = _relative(_text(chip, "datasheet", "chip", "rram"), source)
    _check_datasheet(datasheet)
    sim = _simulation(doc, datasheet, source)
    visa = _table(doc, "visa", ("library",), "visa")
    library = _text(visa, "library", "visa", "@py")
    roles_doc = doc.get("roles", {})
    if not isinstance(roles_doc, dict):
        raise BenchConfigError("[roles]: expected tables [roles.<role>]")
    roles = {role: _role(role, table, sim is not None) for role, table in roles_doc.items()}
    if sim is not None and not roles:
        roles = dict(SIMULATED_ROLES)
    if sim is None:
        _check_resources(roles)
    if "array" not in roles:
        raise BenchConfigError(f"roles.array: missing in {source}; a bench needs an array "
                               "controller (e.g. [roles.array] driver = \"reference-array\")")
    return BenchConfig(datasheet=datasheet, roles=roles, simulation=sim,
                       visa_library=library, source=source)
