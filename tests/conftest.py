"""Shared fixtures. Every random thing has a fixed seed."""

from __future__ import annotations

import pytest

import sim_backend


@pytest.fixture(scope="session")
def rram_spec():
    return sim_backend.load_chip("rram")


@pytest.fixture(scope="session")
def pcm_spec():
    return sim_backend.load_chip("pcm")


@pytest.fixture
def rram_chip(rram_spec):
    """A formed 128x128 RRAM chip off the wafer (no radial effects)."""
    chip = sim_backend.SimChip(rram_spec.with_geometry(128, 128), seed=11)
    chip.form()
    return chip


@pytest.fixture
def pcm_chip(pcm_spec):
    return sim_backend.SimChip(pcm_spec.with_geometry(128, 128), seed=12)
