"""Wiring a Bench from a config: drivers, VISA sessions, the safety guard.

``open_bench()`` with no argument gives the embedded simulated bench; a config
naming real instruments gives a real one, with the same roles. On a simulated
bench, ``bench.simulation`` is the ``sim_backend.SimBench`` for scoring
against ground truth; it is never passed to protocols.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pyvisa

import sim_backend
from calib.bench_config import (
    BenchConfig,
    BenchConfigError,
    default_config,
    load_bench_config,
)
from instruments import SafetyGuard, SafetyLimits, VisaSession
from instruments.drivers import DRIVERS, SmuSwitchArray, WallClock
from sim_backend.bench import SimBench
from sim_backend.latency import LatencyModel

SESSION_KEYS = ("timeout_s", "retries", "min_interval_s", "read_termination",
                "write_termination")


class Bench:
    """The instruments of one bench, by role; absent roles are None."""

    def __init__(self, config: BenchConfig) -> None:
        self.config = config
        self.chip_spec = sim_backend.load_chip(config.chip)
        self.limits = SafetyLimits.from_object(self.chip_spec.limits)
        self.guard = SafetyGuard(self.limits)
        self.simulation: SimBench | None = None
        self._servers = None
        self.sessions: dict[str, VisaSession] = {}
        self.array = self.smu = self.switch = self.thermal = self.prober = self.clock = None
        try:
            self._wire()
        except BaseException:
            self.close()
            raise

    # -- wiring ------------------------------------------------------------------
    def _wire(self) -> None:
        cfg = self.config
        resources: dict[str, str] = {}
        if cfg.simulation is not None:
            sim = cfg.simulation
            try:
                latency = LatencyModel(**sim.latency)
            except TypeError as exc:
                raise BenchConfigError(f"simulation.latency: {exc}") from None
            self.simulation = SimBench(self.chip_spec, seed=sim.seed, wafer=sim.wafer,
                                       rows=sim.rows, cols=sim.cols, latency=latency)
            if sim.rows or sim.cols:
                self.chip_spec = self.simulation.spec
            if sim.transport == "tcp":
                self._servers = self.simulation.serve()
                resources = self._servers.resources
                rm = pyvisa.ResourceManager("@py")
            else:
                resources = self.simulation.resources()
                rm = pyvisa.ResourceManager(self.simulation.visa_library())
            resources = {**resources, "thermal": resources["prober"]}
        else:
            try:
                rm = pyvisa.ResourceManager(cfg.visa_library)
            except (OSError, ValueError) as exc:
                raise BenchConfigError(f"visa.library: cannot load {cfg.visa_library!r}: "
                                       f"{exc}") from None
        self._rm = rm
        built: dict[str, Any] = {}
        # plain instruments first, composites (smu-switch-array) after
        order = sorted(cfg.roles.items(), key=lambda kv: kv[1].driver == "smu-switch-array")
        for role, rc in order:
            built[role] = self._build(role, rc, resources, built)
        for role, obj in built.items():
            setattr(self, role, obj)

    def _build(self, role: str, rc, resources: dict[str, str], built: dict[str, Any]):
        cls = DRIVERS.get(rc.driver)
        if cls is None:
            raise BenchConfigError(f"roles.{role}.driver: unknown driver {rc.driver!r}; "
                                   f"known: {', '.join(sorted(DRIVERS))}")
        spec = self.chip_spec
        if cls is WallClock:
            return WallClock(self.guard)
        if cls is SmuSwitchArray:
            if built.get("smu") is None or built.get("switch") is None:
                raise BenchConfigError(f"roles.{role}: smu-switch-array needs [roles.smu] and "
                                       "[roles.switch]")
            opts = {"word_lines": 16, "bit_lines": 16, **rc.options}
            if self.simulation is not None:  # the simulated probe card's wiring
                opts.setdefault("first_bit_column", self.simulation.wiring.word_lines)
            return SmuSwitchArray(
                built["smu"], built["switch"], self.guard,
                read_voltage=spec.window.read_voltage,
                forming_voltage=spec.forming.voltage if spec.forming.required else None,
                forming_width=spec.forming.width if spec.forming.required else None,
                **opts)
        # the chuck of a SENTIO prober serves as thermal controller: one instrument
        if role == "thermal" and rc.driver == "sentio" and isinstance(
                built.get("prober"), DRIVERS["sentio"]) and rc.resource is None:
            return built["prober"]
        resource = rc.resource or resources.get(role)
        if resource is None:
            raise BenchConfigError(f"roles.{role}.resource: missing")
        session_opts = {**getattr(cls, "session_options", {})}
        driver_opts = {}
        for key, value in rc.options.items():
            (session_opts if key in SESSION_KEYS else driver_opts)[key] = value
        if self.simulation is not None and role == "thermal":
            session_opts["min_interval_s"] = 0.0  # virtual instruments need no pacing
        session = VisaSession(self._rm, resource, name=f"{role}:{rc.driver}", **session_opts)
        self.sessions[role] = session
        if cls is DRIVERS["keithley707b"]:
            return cls(session, **driver_opts)
        if cls is DRIVERS["reference-array"]:
            driver_opts.setdefault("read_voltage", spec.window.read_voltage)
            if spec.forming.required:
                driver_opts.setdefault("forming_voltage", spec.forming.voltage)
                driver_opts.setdefault("forming_width", spec.forming.width)
        try:
            return cls(session, self.guard, **driver_opts)
        except TypeError as exc:
            raise BenchConfigError(f"roles.{role}: bad option for {rc.driver}: {exc}") from None

    # -- use -----------------------------------------------------------------------
    def roles(self) -> dict[str, Any]:
        return {r: getattr(self, r) for r in ("array", "smu", "switch", "thermal", "prober",
                                              "clock")}

    def identities(self) -> dict[str, str | None]:
        out = {}
        for role, obj in self.roles().items():
            out[role] = None if obj is None else obj.identity()
        return out

    @property
    def transactions(self) -> int:
        return sum(s.transactions for s in self.sessions.values())

    def close(self) -> None:
        for session in self.sessions.values():
            session.close()
        self.sessions.clear()
        if self._servers is not None:
            self._servers.stop()
            self._servers = None

    def __enter__(self) -> Bench:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_bench(path: str | Path | None = None, *, chip: str | None = None,
               seed: int | None = None, transport: str | None = None,
               rows: int | None = None, cols: int | None = None) -> Bench:
    """Open a bench from a config file, or the embedded simulated bench.

    Keyword overrides apply to the simulation (and ``chip`` to the limits).
    """
    if path is None:
        config = default_config()
    else:
        config = load_bench_config(path)
    if chip is not None:
        config = dataclasses.replace(config, chip=chip)
    if config.simulation is not None:
        sim = config.simulation
        sim = dataclasses.replace(
            sim, seed=sim.seed if seed is None else seed,
            transport=sim.transport if transport is None else transport,
            rows=sim.rows if rows is None else rows, cols=sim.cols if cols is None else cols)
        config = dataclasses.replace(config, simulation=sim)
    return Bench(config)
