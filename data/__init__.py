"""Bundled data: chip presets, wafer maps, bench configs, example weights.

Installed as the ``aimc_data`` package so the files are found after a plain
``pip install .``; it holds no code.
"""
