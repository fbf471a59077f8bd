"""Per-technology write-verify defaults, from the chip datasheet alone."""

from __future__ import annotations

import dataclasses
import math

import pytest

from instruments.datasheet import Programming, load_datasheet
from protocols.profiles import DEFAULTS, programming, pulse_model, write_verify_params
from protocols.write_verify import PulseModel, WriteVerifyError, WriteVerifyParams

# What calib.programming.params_for(sim_backend.load_chip(preset)) gave for the bundled
# chips before the defaults moved here: facts about the two datasheets, every field.
COMMON = {
    "tolerance": 1e-06, "accept_fraction": 0.8, "read_averages": 8, "reads_per_verify": 1,
    "confirm": True, "accept_confidence": 1.3, "accept_max_fraction": 0.95,
    "doubt_confidence": 1.0, "doubt_rounds": 3, "max_pulses": 60, "max_iterations": 400,
    "stall_pulses": 3, "move_fraction": 0.5, "touchup_rounds": 2, "initial_gain": 2e-06,
    "pilot_fraction": 0.05, "pilot_min_cells": 64, "pilot_max_cells": None, "seed": 0,
    "verify_noise": 4e-07,
    "accept_min_fraction": 0.5, "accept_relax": 1.0, "accept_confidence_min": 1.0,
    "overshoot_cost": 1.0, "reread_weight": 1.0, "touchup_rounds_max": 6,
    "touchup_more_share": 0.08, "change_weight": 0.1, "budget_confidence": None,
    "deadline_factor": None, "deadline_share": 0.99, "deadline_confidence": 0.5,
    "escalate_pulses": None,
}
EXPECTED = {
    "rram": {**COMMON, "max_confirm_reads": 4, "max_confirm_reads_reset": 4, "aim": 1.0,
             "relax_wait_s": 3.0, "relax_wait_factor": 1.0,
             "pulse_model": {"set_threshold": 0.9, "reset_threshold": 1.0,
                             "set_reference": 2.0, "reset_reference": 2.2,
                             "amplitude_exponent": 2.0, "width_reference": 1e-06,
                             "width_exponent": 0.5, "v_max": 4.0, "w_max": 100e-6,
                             "set_width_max": None, "v_min_over": 0.05}},
    # issue 14 part 3: strict sequential confirmation (1/f reads), SETs aimed short
    # (abrupt RESET), no touch-up before drift sets in; the soft deadline and the
    # escalation of stuck-low cells (1/f reads: the tail they make)
    "pcm": {**COMMON, "max_confirm_reads": 16, "max_confirm_reads_reset": 24, "aim": 0.95,
            "relax_wait_s": 5.0, "relax_wait_factor": 0.0, "touchup_rounds": 0,
            "accept_confidence": 2.5, "accept_min_fraction": 0.0, "accept_relax": 0.7,
            "accept_confidence_min": 0.5, "overshoot_cost": 3.0, "deadline_factor": 1.6,
            "escalate_pulses": 10,
            "pulse_model": {"set_threshold": 0.8, "reset_threshold": 1.5,
                            "set_reference": 1.2, "reset_reference": 2.0,
                            "amplitude_exponent": 2.0, "width_reference": 100e-9,
                            "width_exponent": 0.5, "v_max": 2.5, "w_max": 10e-6,
                            "set_width_max": None, "v_min_over": 0.05}},
}


def approx(d: dict):
    """Floats to 1e-12 (a unit parser may leave the last binary digit either way)."""
    return {k: approx(v) if isinstance(v, dict) else
            v if v is None or isinstance(v, (bool, int, str)) else pytest.approx(v, rel=1e-12)
            for k, v in d.items()}


@pytest.mark.parametrize("preset", ["rram", "pcm"])
def test_the_bundled_chips_get_the_parameters_they_always_had(preset):
    sheet = load_datasheet(preset).with_geometry(256, 256)
    params = write_verify_params(sheet)
    assert isinstance(params, WriteVerifyParams)
    assert dataclasses.asdict(params) == approx(EXPECTED[preset])
    assert dataclasses.asdict(pulse_model(sheet)) == approx(EXPECTED[preset]["pulse_model"])
    assert params.pulse_model == pulse_model(sheet)


@pytest.mark.parametrize("preset", ["rram", "pcm"])
def test_a_datasheet_without_programming_hints_gets_its_technologys_defaults(preset):
    """The defaults table equals what the bundled datasheets state."""
    sheet = load_datasheet(preset)
    stated = {k: v for k, v in dataclasses.asdict(sheet.programming).items() if v is not None}
    assert len(stated) >= 10
    assert approx(stated) == {k: getattr(DEFAULTS[preset], k) for k in stated}
    bare = dataclasses.replace(sheet, programming=Programming())
    assert programming(bare) == DEFAULTS[preset]
    assert dataclasses.asdict(write_verify_params(bare)) == approx(EXPECTED[preset])


def test_each_hint_is_read_from_the_datasheet_not_the_technology():
    sheet = load_datasheet("pcm")
    hints = dataclasses.replace(sheet.programming, reset="gradual", read_noise="white",
                                retention="relaxation", set_threshold=0.7)
    params = write_verify_params(dataclasses.replace(sheet, programming=hints))
    plain = WriteVerifyParams()
    assert (params.aim, params.max_confirm_reads, params.max_confirm_reads_reset) == (
        plain.aim, plain.max_confirm_reads, plain.max_confirm_reads_reset)
    assert (params.relax_wait_s, params.relax_wait_factor) == (3.0, 1.0)
    assert (params.deadline_factor, params.escalate_pulses) == (None, None)  # white reads
    assert params.pulse_model.set_threshold == 0.7
    # RRAM that drifts (onset 40 s) with 1/f reads but a gradual RESET
    rram = load_datasheet("rram")
    hints = dataclasses.replace(rram.programming, retention="drift", drift_onset=40.0,
                                read_noise="1/f")
    params = write_verify_params(dataclasses.replace(rram, programming=hints))
    assert (params.relax_wait_s, params.relax_wait_factor) == (10.0, 0.0)
    assert (params.max_confirm_reads, params.max_confirm_reads_reset, params.aim) == (16, 16, 1.0)
    assert (params.touchup_rounds, params.accept_confidence, params.overshoot_cost) == (
        0, 2.5, 1.0)
    assert (params.deadline_factor, params.escalate_pulses) == (1.6, 10)  # from the 1/f reads


def test_the_pulse_model_is_capped_at_the_datasheets_limits():
    sheet = load_datasheet("rram")
    lim = dataclasses.replace(sheet.limits, max_program_voltage=3.0, max_pulse_width=5e-6)
    model = pulse_model(dataclasses.replace(sheet, limits=lim))
    assert isinstance(model, PulseModel) and (model.v_max, model.w_max) == (3.0, 5e-6)


def test_options_override_the_defaults():
    sheet = load_datasheet("pcm")
    params = write_verify_params(sheet, tolerance=2e-6, max_pulses=5, relax_wait_s=0.0,
                                 read_averages=16)
    assert (params.tolerance, params.max_pulses, params.read_averages) == (2e-6, 5, 16)
    assert (params.relax_wait_s, params.relax_wait_factor) == (0.0, 0.0)  # no touch-up
    assert write_verify_params(sheet, relax_wait_s=7.5).relax_wait_s == 7.5
    # a wait asked for on a drifting chip brings back the touch-ups it is for
    assert write_verify_params(sheet).touchup_rounds == 0
    assert write_verify_params(sheet, relax_wait_s=7.5).touchup_rounds == 2


@pytest.mark.parametrize("option, value", [
    ("relax_wait_s", -1.0), ("relax_wait_s", math.inf), ("relax_wait_s", math.nan),
    ("relax_wait_s", "3"), ("max_pulses", 0), ("max_pulses", -3), ("read_averages", 0),
    ("read_averages", 1025),
])
def test_bad_options_name_the_parameter(option, value):
    with pytest.raises(WriteVerifyError, match=option):
        write_verify_params(load_datasheet("rram"), **{option: value})


def test_write_verify_errors_are_user_errors():
    from instruments.errors import UserError

    assert issubclass(WriteVerifyError, UserError) and issubclass(WriteVerifyError, ValueError)
