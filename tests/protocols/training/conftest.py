"""Shared fixtures of the training tests."""

from __future__ import annotations

import pytest

from calib.wiring import open_bench


@pytest.fixture
def bench():
    """The embedded simulated bench on die 12, formed."""
    with open_bench() as b:
        b.prober.goto(12)
        b.array.form()
        yield b
