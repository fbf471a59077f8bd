"""The front of the toolkit: CLI, configs, bench wiring, die store, analysis."""

__version__ = "0.1.0"
