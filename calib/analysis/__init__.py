"""Offline analysis of die files: reports (then wafer maps)."""
