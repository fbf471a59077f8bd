"""The simulated bench, wired like any other: the one module of the wiring that imports
``sim_backend`` (the other importer in ``calib`` is the ``calib sim`` command).

It builds the simulated probe station named by a config's ``[simulation]``
table and hands back what a real bench has instead: VISA resource strings and
a resource manager. Nothing of the simulator's physics reaches the host: the
host reads the chip's datasheet; ``Bench.simulation`` is kept for scoring only.

A real wafer remembers what was done to it; the simulated one does so in a state
folder beside the wafer's die files, ``<results>/<wafer>/sim-state/``, bound by the
first job that reaches a die (``Bench.bind_results``), unless ``[simulation]
state = false``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyvisa

import sim_backend
from calib.wiring.config import BenchConfigError, SimulationConfig
from calib.wiring.lock import BenchBusyError
from instruments.errors import UserError
from sim_backend.bench import SimBench
from sim_backend.latency import LatencyModel
from sim_backend.server import ServerError
from sim_backend.state import StateBusyError, StateError

STATE_FOLDER = "sim-state"  # inside the wafer's results folder, beside its die files

# The simulator's own errors, as the user sees them (one line, no traceback).
SIM_ERRORS = (sim_backend.ChipSpecError, sim_backend.WaferSpecError,
              sim_backend.ChipInputError, ServerError)


class SimulatedStateError(UserError, RuntimeError):
    """The simulated wafer's state folder cannot be used (another wafer's, damaged)."""


def _state_errors(action):
    """``action()`` with the simulator's state errors as the toolkit's one-line errors."""
    try:
        return action()
    except StateBusyError as exc:
        raise BenchBusyError(str(exc)) from None
    except StateError as exc:
        raise SimulatedStateError(str(exc)) from None
    except OSError as exc:
        raise SimulatedStateError(f"simulated wafer state: {exc.filename or ''}: "
                                  f"{exc.strerror or exc}") from None


@dataclass
class SimulatedBench:
    """What the wiring needs of a simulated station."""

    simulation: SimBench  # ground truth, for tests and benchmarks only
    resource_manager: pyvisa.ResourceManager
    resources: dict[str, str]  # by emulator: array, smu, switch, prober, thermostream, clock
    wafer_name: str
    session_overrides: dict[str, Any] = field(default_factory=dict)
    driver_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    servers: Any = None
    state: bool = True  # remember the wafer in <results>/<wafer>/sim-state/

    def bind_results(self, folder: str | Path, die: int | None = None) -> Path | None:
        """Remember the wafer in ``<folder>/sim-state/`` (``folder``: the wafer's results
        folder); ``die``, if the folder holds its state, is loaded at once, so a damaged
        state file is reported before the prober moves (a die never saved is built when
        the probes reach it, as without a state folder: its cells' ages count from then).
        The folder, or None with ``state = false``."""
        if not self.state:
            return None
        path = Path(folder) / STATE_FOLDER
        sim = self.simulation

        def bind() -> None:
            sim.bind_state(path)
            if (die is not None and any(d.id == die for d in sim.wafer.dies)
                    and sim.wafer.has_saved(die)):
                with sim.lock:
                    sim.wafer.load(die)

        _state_errors(bind)
        return path

    def close(self) -> None:
        if self.servers is not None:
            self.servers.stop()
            self.servers = None
        _state_errors(self.simulation.close)


def connect(cfg: SimulationConfig) -> SimulatedBench:
    """Build the simulated station and its VISA side (in-process or loopback TCP)."""
    try:
        latency = LatencyModel(**cfg.latency)
        sim = SimBench(cfg.chip, seed=cfg.seed, wafer=cfg.wafer, rows=cfg.rows, cols=cfg.cols,
                       latency=latency)
    except SIM_ERRORS as exc:
        raise BenchConfigError(f"simulation: {exc}") from None
    servers = None
    if cfg.transport == "tcp":
        try:
            servers = sim.serve()
        except ServerError as exc:
            raise BenchConfigError(f"simulation.transport: {exc}") from None
        by_emulator = servers.resources
        rm = pyvisa.ResourceManager("@py")
    else:
        by_emulator = sim.resources()
        rm = pyvisa.ResourceManager(sim.visa_library())
    return SimulatedBench(
        simulation=sim, resource_manager=rm, resources=by_emulator,
        wafer_name=f"sim-{sim.wafer.spec.name}-seed{sim.wafer.seed}",
        session_overrides={"min_interval_s": 0.0},  # virtual instruments need no pacing
        # the simulated probe card's wiring onto the switch matrix
        driver_options={"smu-switch-array": {"first_bit_column": sim.wiring.word_lines}},
        servers=servers, state=cfg.state)
