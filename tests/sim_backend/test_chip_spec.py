"""Chip specs load from TOML, in SI units, and bad files fail naming the field."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

import sim_backend
from sim_backend.resources import chip_preset_path
from sim_backend.spec import SECTIONS, ChipSpecError

DOCS = Path(__file__).resolve().parents[2] / "docs" / "chip-spec.md"


def test_presets_load_in_si_units(rram_spec, pcm_spec):
    assert rram_spec.technology == "rram" and pcm_spec.technology == "pcm"
    assert rram_spec.window.g_min == pytest.approx(1e-6)
    assert rram_spec.window.g_max == pytest.approx(40e-6)
    assert rram_spec.window.read_voltage == pytest.approx(0.2)
    assert rram_spec.relaxation.mean_per_ln == pytest.approx(-0.089e-6)
    assert rram_spec.limits.max_pulse_width == pytest.approx(100e-6)
    assert pcm_spec.window.g_max == pytest.approx(25e-6)
    assert pcm_spec.drift.t0 == pytest.approx(20.0)
    assert pcm_spec.response.programming_noise == pytest.approx((0.26348e-6, 1.9650e-6,
                                                                 -1.1731e-6))


def test_geometry_override_keeps_the_device(rram_spec):
    big = sim_backend.load_chip("rram", rows=1024, cols=512)
    assert big.shape == (1024, 512)
    assert big.response == rram_spec.response and big.bounds == rram_spec.bounds


def test_every_preset_value_has_a_source():
    for name in ("rram", "pcm"):
        spec = sim_backend.load_chip(name)
        assert len(spec.sources) >= 10, name


def _write(tmp_path, text):
    path = tmp_path / "chip.toml"
    path.write_text(text)
    return path


def _preset_doc(name="rram"):
    with open(chip_preset_path(name), "rb") as fh:
        return tomllib.load(fh)


def _dump(doc) -> str:
    """Minimal TOML writer for our two-level documents."""
    lines = []
    for section, table in doc.items():
        lines.append(f"[{section}]")
        for key, value in table.items():
            lines.append(f'"{key}" = {_toml_value(value)}')
    return "\n".join(lines) + "\n"


def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


@pytest.mark.parametrize(
    "section, key, value, pattern",
    [
        ("window", "g_max", "40 V", r"window\.g_max: expected a conductance"),
        ("window", "g_max", 40, r"window\.g_max: needs a unit"),
        ("window", "g_max", "forty uS", r"window\.g_max"),
        ("window", "g_max", "40 furlongs", r"window\.g_max: unknown unit"),
        ("window", "g_min", "50 uS", r"window\.g_min: must be below window\.g_max"),
        ("faults", "stuck_fraction", 1.5, r"faults\.stuck_fraction: must be between 0 and 1"),
        ("faults", "stuck_fraction", "1 %", r"faults\.stuck_fraction: expected a plain number"),
        ("bounds", "d2d_sigma", -0.1, r"bounds\.d2d_sigma: must be >= 0"),
        ("chip", "rows", 0, r"chip\.rows: must be at least 1"),
        ("chip", "rows", 12.5, r"chip\.rows: expected a whole number"),
        ("chip", "technology", "flash", r"chip\.technology: expected one of rram, pcm"),
        ("response", "set_reference", "0.5 V", r"response\.set_reference: must exceed"),
        ("response", "set_threshold", "9 V", r"response\.set_(threshold|reference)"),
        ("adc", "read_bits", 40, r"adc\.read_bits: must be between 1 and 24"),
        ("window", "read_voltage", "1 V", r"window\.read_voltage: exceeds limits"),
        ("limits", "min_temperature", "200 degC", r"limits\.min_temperature"),
        ("window", "colour", "blue", r"window\.colour: unknown field"),
        ("relaxation", "sigma_0", "-0.4 uS", r"relaxation\.sigma_0: must not be negative"),
    ],
)
def test_bad_field_is_named(tmp_path, section, key, value, pattern):
    doc = _preset_doc()
    doc[section][key] = value
    with pytest.raises(ChipSpecError, match=pattern):
        sim_backend.load_chip(_write(tmp_path, _dump(doc)))


def test_missing_field_section_and_unknown_section(tmp_path):
    doc = _preset_doc()
    del doc["adc"]["mvm_bits"]
    with pytest.raises(ChipSpecError, match=r"adc\.mvm_bits: missing"):
        sim_backend.load_chip(_write(tmp_path, _dump(doc)))
    doc = _preset_doc()
    del doc["drift"]
    with pytest.raises(ChipSpecError, match=r"\[drift\]: missing section"):
        sim_backend.load_chip(_write(tmp_path, _dump(doc)))
    doc = _preset_doc()
    doc["colours"] = {"a": 1}
    with pytest.raises(ChipSpecError, match=r"\[colours\]: unknown section"):
        sim_backend.load_chip(_write(tmp_path, _dump(doc)))


def test_not_toml_unknown_preset_and_missing_file(tmp_path):
    with pytest.raises(ChipSpecError, match="not valid TOML"):
        sim_backend.load_chip(_write(tmp_path, "[chip\nname="))
    with pytest.raises(ChipSpecError, match="unknown chip preset 'flash'"):
        sim_backend.load_chip("flash")
    with pytest.raises(ChipSpecError, match="no such chip file"):
        sim_backend.load_chip(tmp_path / "absent.toml")
    with pytest.raises(ChipSpecError, match=r"chip\.rows"):
        sim_backend.load_chip("rram", rows=-3)


def test_base_inheritance_overrides_only_what_differs(tmp_path):
    path = _write(tmp_path, 'base = "rram"\n[faults]\nstuck_fraction = 0.12\n'
                            '[chip]\nrows = 32\n')
    spec = sim_backend.load_chip(path)
    assert spec.faults.stuck_fraction == 0.12 and spec.shape == (32, 64)
    assert spec.response == sim_backend.load_chip("rram").response
    bad = _write(tmp_path, 'base = "rram"\n[faults]\nstuck_frac = 0.1\n')
    with pytest.raises(ChipSpecError, match=r"faults\.stuck_frac: unknown field"):
        sim_backend.load_chip(bad)


def test_sources_must_name_real_fields(tmp_path):
    path = _write(tmp_path, 'base = "rram"\n[sources]\n"window.colour" = "me"\n')
    with pytest.raises(ChipSpecError, match=r"sources\.window\.colour"):
        sim_backend.load_chip(path)


def test_docs_describe_every_field():
    """docs/chip-spec.md has a row for every field of every section."""
    text = DOCS.read_text()
    for section, cls in SECTIONS.items():
        assert f"[{section}]" in text, section
        for f in dataclasses.fields(cls):
            assert re.search(rf"`{f.name}`", text), f"{section}.{f.name} undocumented"
