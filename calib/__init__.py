"""The front of the toolkit: CLI, configs, bench wiring, die store, analysis."""

__version__ = "0.1.0"

from calib.wiring import Bench, open_bench  # noqa: E402

__all__ = ["Bench", "open_bench", "__version__"]
