"""Wiring a Bench from a config: datasheet, safety guard, VISA sessions, drivers by name.

``open_bench()`` with no argument gives the embedded simulated bench; a config
naming real instruments gives a real one, with the same roles. Every role is
built the same way from data (the driver registry, one constructor shape);
nothing here knows any driver by name. On a simulated bench,
``bench.simulation`` is the ``sim_backend.SimBench`` for scoring against
ground truth; it is never passed to protocols.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pyvisa

from calib.wiring.config import (
    ROLES,
    BenchConfig,
    BenchConfigError,
    RoleConfig,
    default_config,
    load_bench_config,
)
from calib.wiring.lock import BenchLock
from instruments import SafetyGuard, VisaSession
from instruments.datasheet import ChipDatasheet, load_datasheet
from instruments.errors import UserError
from instruments.registry import driver_class


class Bench:
    """The instruments of one bench, by role; absent roles are None."""

    def __init__(self, config: BenchConfig) -> None:
        self.config = config
        self.datasheet: ChipDatasheet = load_datasheet(config.datasheet)
        sim = config.simulation
        if sim is not None and (sim.rows or sim.cols):
            self.datasheet = self.datasheet.with_geometry(sim.rows, sim.cols)
        self.limits = self.datasheet.limits
        self.guard = SafetyGuard(self.limits)
        self.simulation = None  # sim_backend.SimBench on a simulated bench: scoring only
        self.wafer_name: str | None = None  # the simulated wafer's name; None on a real bench
        self.sessions: dict[str, VisaSession] = {}
        self._simulated = None
        self._lock: BenchLock | None = None
        self.array = self.smu = self.switch = self.thermal = self.prober = self.clock = None
        self.at_die: int | None = None  # the die a sweep has contacted (calib.jobs.die)
        try:
            self._wire()
        except BaseException:
            self.close()
            raise

    # -- wiring ------------------------------------------------------------------
    def _wire(self) -> None:
        cfg = self.config
        resources: dict[str, str] = {}
        session_overrides: dict[str, Any] = {}
        driver_options: dict[str, dict[str, Any]] = {}
        if cfg.simulation is not None:
            from calib.wiring import simulated

            self._simulated = simulated.connect(cfg.simulation)
            self.simulation = self._simulated.simulation
            self.wafer_name = self._simulated.wafer_name
            rm = self._simulated.resource_manager
            resources = self._simulated.resources
            session_overrides = self._simulated.session_overrides
            driver_options = self._simulated.driver_options
        else:
            rm = self._resource_manager(cfg.visa_library)
            self._lock = BenchLock([rc.resource for rc in cfg.roles.values() if rc.resource])
        classes = {role: self._driver_class(role, rc) for role, rc in cfg.roles.items()}
        built: dict[str, Any] = {}
        # plain instruments first, then those built from other roles (smu-switch-array)
        for role in sorted(cfg.roles, key=lambda r: (len(classes[r].needs), r != classes[r].role)):
            rc = cfg.roles[role]
            built[role] = self._build(role, rc, classes[role], rm, resources, built,
                                      session_overrides, driver_options.get(rc.driver, {}))
        for role, obj in built.items():
            setattr(self, role, obj)

    @staticmethod
    def _resource_manager(library: str) -> pyvisa.ResourceManager:
        try:
            return pyvisa.ResourceManager(library)
        except (OSError, ValueError, pyvisa.Error) as exc:
            raise BenchConfigError(f"visa.library: cannot load {library!r}: {exc}") from None

    @staticmethod
    def _driver_class(role: str, rc: RoleConfig) -> type:
        try:
            cls = driver_class(rc.driver)
        except UserError as exc:
            raise BenchConfigError(f"roles.{role}.driver: {exc}") from None
        if role not in cls.serves():
            raise BenchConfigError(f"roles.{role}.driver: {rc.driver} serves "
                                   f"{', '.join(cls.serves())}, not {role}")
        return cls

    def _build(self, role: str, rc: RoleConfig, cls: type, rm, resources: dict[str, str],
               built: dict[str, Any], session_overrides: dict, extra: dict) -> Any:
        # one instrument serving two roles (a SENTIO prober's chuck as thermal controller)
        if rc.resource is None:
            for other, obj in built.items():
                if self.config.roles[other].driver == rc.driver and role != cls.role:
                    return obj
        missing = [r for r in cls.needs if built.get(r) is None]
        if missing:
            raise BenchConfigError(f"roles.{role}: {rc.driver} is built from the bench's "
                                   f"{' and '.join(missing)}; add [roles.{missing[0]}]")
        session = None
        if cls.uses_session:
            resource = rc.resource or resources.get(rc.driver) or resources.get(role)
            if resource is None:
                raise BenchConfigError(f"roles.{role}.resource: missing; give the VISA resource "
                                       "string, e.g. \"TCPIP::192.168.0.20::5025::SOCKET\"")
            options = {**cls.session_options, **rc.session, **session_overrides}
            session = VisaSession(rm, resource, name=f"{role}:{rc.driver}", **options)
            self.sessions[role] = session
        parts = {r: built[r] for r in cls.needs}
        try:
            return cls(session, self.guard, self.datasheet, parts=parts, **{**extra, **rc.options})
        except TypeError as exc:
            raise BenchConfigError(f"roles.{role}: bad option for {rc.driver}: {exc}") from None
        except UserError as exc:
            raise BenchConfigError(f"roles.{role}: {exc}") from None

    # -- use -----------------------------------------------------------------------
    def roles(self) -> dict[str, Any]:
        return {r: getattr(self, r) for r in ROLES}

    def identities(self) -> dict[str, str | None]:
        return {role: None if obj is None else obj.identity()
                for role, obj in self.roles().items()}

    def configuration(self) -> dict[str, Any]:
        """Each role's driver settings (no I/O), for the run record."""
        out: dict[str, Any] = {"bench": self.config.source, "visa_library":
                               self.config.visa_library, "simulated": self.simulation is not None}
        for role, obj in self.roles().items():
            if obj is not None:
                out[role] = obj.configuration()
        return out

    def bind_results(self, folder: str | Path, die: int | None = None) -> Path | None:
        """Tie the bench's wafer to the wafer's results folder (``<results>/<wafer>``).

        A real wafer remembers what was done to it by itself: a no-op, None. A simulated
        one is remembered in ``<folder>/sim-state/`` from now on (held by this process
        alone; the folder, or None with ``[simulation] state = false``). Jobs call it
        before the prober moves; ``die`` is the die they are about to reach.
        """
        if self._simulated is None:
            return None
        return self._simulated.bind_results(folder, die)

    @property
    def transactions(self) -> int:
        return sum(s.transactions for s in self.sessions.values())

    def close(self) -> None:
        for session in self.sessions.values():
            session.close()
        self.sessions.clear()
        if self._simulated is not None:
            self._simulated.close()
            self._simulated = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Bench:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_bench(path: str | Path | None = None, *, chip: str | None = None,
               seed: int | None = None, transport: str | None = None,
               rows: int | None = None, cols: int | None = None) -> Bench:
    """Open a bench from a config file, or the embedded simulated bench.

    Keyword overrides apply to the simulation; ``chip`` names both the datasheet
    and (on a simulated bench) the simulator's chip.
    """
    config = default_config() if path is None else load_bench_config(path)
    if chip is not None:
        config = dataclasses.replace(config, datasheet=chip)
    if config.simulation is not None:
        sim = config.simulation
        sim = dataclasses.replace(
            sim, chip=sim.chip if chip is None else chip,
            seed=sim.seed if seed is None else seed,
            transport=sim.transport if transport is None else transport,
            rows=sim.rows if rows is None else rows, cols=sim.cols if cols is None else cols)
        config = dataclasses.replace(config, simulation=sim)
    return Bench(config)
