"""Each bundled datasheet (what the host knows) agrees with its simulator preset.

The simulator's chip spec ``data/chips/<name>.toml`` is the datasheet
``data/datasheets/<name>.toml`` plus device physics; on the simulated bench the
host reads the datasheet and the emulators the spec, so the two must say the
same about everything the datasheet states. Both sides read a quantity as the
decimal written (15 significant digits), so the same text is the same float
and values compare exactly.
"""

from __future__ import annotations

import dataclasses

import pytest

import sim_backend
from instruments.datasheet import load_datasheet
from sim_backend.resources import list_presets
from sim_backend.spec import LimitsSection

NAMES = list_presets("datasheets")
PROGRAMMING_FROM_RESPONSE = ("set_threshold", "reset_threshold", "set_reference",
                             "reset_reference", "amplitude_exponent", "reference_width",
                             "width_exponent")


def test_every_preset_has_a_datasheet_and_back():
    assert NAMES and NAMES == list_presets("chips")


@pytest.fixture(params=NAMES)
def pair(request):
    return load_datasheet(request.param), sim_backend.load_chip(request.param)


def test_chip_and_window(pair):
    sheet, spec = pair
    for name in ("name", "technology", "rows", "cols"):
        assert getattr(sheet.chip, name) == getattr(spec.chip, name), f"chip.{name}"
    for name in ("g_min", "g_max", "read_voltage"):
        assert getattr(sheet.window, name) == getattr(spec.window, name), f"window.{name}"


def test_every_limit(pair):
    sheet, spec = pair
    names = [f.name for f in dataclasses.fields(LimitsSection)]
    assert names == [f.name for f in dataclasses.fields(sheet.limits)]
    for name in names:
        assert getattr(sheet.limits, name) == getattr(spec.limits, name), f"limits.{name}"


def test_forming(pair):
    sheet, spec = pair
    assert sheet.forming.required == spec.forming.required
    assert sheet.forming.voltage == spec.forming.voltage
    assert sheet.forming.width == spec.forming.width
    if spec.forming.required:
        # an unformed cell reads below the threshold, and the window lies above it
        assert spec.forming.pristine < sheet.pristine_below < spec.window.g_min


def test_programming_hints_match_the_response(pair):
    sheet, spec = pair
    p, r = sheet.programming, spec.response
    for name in PROGRAMMING_FROM_RESPONSE:
        hint = getattr(p, name)
        if hint is not None:  # None: the host uses its technology default
            assert hint == getattr(r, name), f"programming.{name} vs response.{name}"
    if p.reset is not None:
        assert p.reset == r.reset_mode
    if p.read_noise is not None:
        assert (p.read_noise == "1/f") == (spec.read_noise.model == "pcm_1f")


def test_retention_and_drift_onset(pair):
    sheet, spec = pair
    p = sheet.programming
    drifts = spec.drift.model != "none"
    relaxes = spec.relaxation.model != "none"
    if p.retention is not None:
        assert (p.retention == "drift") == drifts
        assert (p.retention == "relaxation") == relaxes
        assert (p.retention == "stable") == (not drifts and not relaxes)
    if drifts:
        if p.drift_onset is not None:
            assert p.drift_onset == spec.drift.t0
    else:
        assert p.drift_onset is None, "a drift onset for a chip that does not drift"
