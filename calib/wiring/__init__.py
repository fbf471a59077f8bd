"""Bench wiring: configs, the Bench and its drivers, the simulated station, bench locks."""

from calib.wiring.bench import Bench, open_bench
from calib.wiring.config import BenchConfig, BenchConfigError, load_bench_config
from calib.wiring.lock import BenchBusyError

__all__ = ["Bench", "BenchBusyError", "BenchConfig", "BenchConfigError", "load_bench_config",
           "open_bench"]
