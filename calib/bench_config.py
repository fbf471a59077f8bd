"""Bench configuration files: which driver and resource serves each role.

See docs/bench-config.md. With no file, the embedded simulated bench.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim_backend.resources import data_root

ROLES = ("array", "smu", "switch", "thermal", "prober", "clock")
TRANSPORTS = ("inprocess", "tcp")


class BenchConfigError(ValueError):
    """A bench config is malformed; the message names the entry."""


@dataclass(frozen=True)
class RoleConfig:
    driver: str
    resource: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SimulationConfig:
    seed: int = 7
    wafer: str = "default"
    transport: str = "inprocess"
    rows: int | None = None
    cols: int | None = None
    latency: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class BenchConfig:
    chip: str  # chip spec (preset or path): the safety limits, and the simulated chip
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
    return BenchConfig(chip=chip, roles=dict(SIMULATED_ROLES),
                       simulation=SimulationConfig(seed=seed, transport=transport,
                                                   rows=rows, cols=cols))


def bundled_bench(name: str) -> Path | None:
    path = data_root() / "benches" / f"{name}.toml"
    return path if path.is_file() else None


def load_bench_config(path: str | Path) -> BenchConfig:
    """Read a bench config TOML (a path, or the name of a bundled one)."""
    p = Path(path)
    if not p.suffix and not p.exists():
        p = bundled_bench(str(path)) or p
    try:
        with open(p, "rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise BenchConfigError(f"{path}: no such bench config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise BenchConfigError(f"{p}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise BenchConfigError(f"{p}: cannot read ({exc.strerror})") from None
    return config_from_dict(doc, source=str(p))


def config_from_dict(doc: dict, source: str = "<dict>") -> BenchConfig:
    known = {"chip", "simulation", "visa", "roles"}
    for key in doc:
        if key not in known:
            raise BenchConfigError(f"[{key}]: unknown section in {source}; known: "
                                   f"{', '.join(sorted(known))}")
    chip = doc.get("chip", {})
    if not isinstance(chip, dict) or not isinstance(chip.get("spec", "rram"), str):
        raise BenchConfigError("chip.spec: expected a preset name or a chip TOML path")
    chip_spec = chip.get("spec", "rram")
    if chip_spec.endswith(".toml") and not Path(chip_spec).is_absolute() and source[0] != "<":
        chip_spec = str(Path(source).parent / chip_spec)
    sim = None
    if "simulation" in doc:
        s = doc["simulation"]
        allowed = {"seed", "wafer", "transport", "rows", "cols", "latency"}
        for key in s:
            if key not in allowed:
                raise BenchConfigError(f"simulation.{key}: unknown; known: "
                                       f"{', '.join(sorted(allowed))}")
        transport = s.get("transport", "inprocess")
        if transport not in TRANSPORTS:
            raise BenchConfigError(f"simulation.transport: expected one of "
                                   f"{', '.join(TRANSPORTS)}, got {transport!r}")
        for key in ("seed", "rows", "cols"):
            if key in s and (isinstance(s[key], bool) or not isinstance(s[key], int)):
                raise BenchConfigError(f"simulation.{key}: expected a whole number")
        sim = SimulationConfig(seed=s.get("seed", 7), wafer=s.get("wafer", "default"),
                               transport=transport, rows=s.get("rows"), cols=s.get("cols"),
                               latency=dict(s.get("latency", {})))
    roles_doc = doc.get("roles", {})
    if not isinstance(roles_doc, dict):
        raise BenchConfigError("[roles]: expected tables [roles.<role>]")
    roles: dict[str, RoleConfig] = {}
    if sim is not None and not roles_doc:
        roles = dict(SIMULATED_ROLES)
    for role, table in roles_doc.items():
        if role not in ROLES:
            raise BenchConfigError(f"roles.{role}: unknown role; known: {', '.join(ROLES)}")
        if not isinstance(table, dict) or not isinstance(table.get("driver"), str):
            raise BenchConfigError(f"roles.{role}.driver: missing (e.g. driver = "
                                   f"\"{SIMULATED_ROLES[role].driver}\")")
        options = {k: v for k, v in table.items() if k not in ("driver", "resource")}
        resource = table.get("resource")
        if resource is not None and not isinstance(resource, str):
            raise BenchConfigError(f"roles.{role}.resource: expected a VISA resource string")
        if sim is None and resource is None and table["driver"] not in (
                "wall-clock", "smu-switch-array") and not (
                role == "thermal" and table["driver"] == "sentio"):
            raise BenchConfigError(f"roles.{role}.resource: missing; give the VISA resource "
                                   "string, e.g. \"TCPIP::192.168.0.20::5025::SOCKET\"")
        roles[role] = RoleConfig(table["driver"], resource, options)
    visa = doc.get("visa", {})
    return BenchConfig(chip=chip_spec, roles=roles, simulation=sim,
                       visa_library=visa.get("library", "@py"), source=source)
