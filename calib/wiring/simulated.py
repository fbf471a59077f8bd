"""The simulated bench, wired like any other: the one module of the wiring that imports
``sim_backend`` (the other importer in ``calib`` is the ``calib sim`` command).

It builds the simulated probe station named by a config's ``[simulation]``
table and hands back what a real bench has instead: VISA resource strings and
a resource manager. Nothing of the simulator's physics reaches the host: the
host reads the chip's datasheet; ``Bench.simulation`` is kept for scoring only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyvisa

import sim_backend
from calib.wiring.config import BenchConfigError, SimulationConfig
from sim_backend.bench import SimBench
from sim_backend.latency import LatencyModel
from sim_backend.server import ServerError

# The simulator's own errors, as the user sees them (one line, no traceback).
SIM_ERRORS = (sim_backend.ChipSpecError, sim_backend.WaferSpecError,
              sim_backend.ChipInputError, ServerError)


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

    def close(self) -> None:
        if self.servers is not None:
            self.servers.stop()
            self.servers = None


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
        servers=servers)
