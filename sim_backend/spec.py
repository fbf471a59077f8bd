"""Chip specification: the physics and the safe operating limits of one chip type.

A spec is read from TOML (``data/chips/*.toml`` or a user file) into frozen
dataclasses holding SI values (siemens, volts, amperes, seconds; temperatures
in degrees Celsius). Every dimensional value in the file carries its unit as
text; see ``docs/chip-spec.md`` for each field, its unit and its source.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim_backend.resources import chip_preset_path
from sim_backend.units import UnitError, parse_quantity


class ChipSpecError(ValueError):
    """A chip spec is malformed; the message names the offending field."""


def _q(dimension: str, doc: str = "", signed: bool = False) -> Any:
    return field(metadata={"kind": ("signed:" if signed else "") + dimension, "doc": doc})


def _k(kind: str, doc: str = "") -> Any:
    return field(metadata={"kind": kind, "doc": doc})


@dataclass(frozen=True)
class ChipSection:
    name: str = _k("str", "preset or chip name")
    technology: str = _k("choice:rram|pcm", "device technology")
    rows: int = _k("int", "word lines")
    cols: int = _k("int", "bit lines")
    description: str = _k("str", "free text")


@dataclass(frozen=True)
class WindowSection:
    """The usable conductance window that targets are chosen from."""

    g_min: float = _q("conductance", "lowest usable target, S")
    g_max: float = _q("conductance", "highest usable target, S")
    read_voltage: float = _q("voltage", "read voltage, V")


@dataclass(frozen=True)
class BoundsSection:
    """Each cell's physical conductance bounds (lognormal device-to-device)."""

    g_min_median: float = _q("conductance", "median of the per-cell lower bound, S")
    g_max_median: float = _q("conductance", "median of the per-cell upper bound, S")
    d2d_sigma: float = _k("nonneg", "lognormal sigma of both bounds")


@dataclass(frozen=True)
class ResponseSection:
    """Pulse response: how far one pulse moves a cell toward its bound."""

    law: str = _k("choice:exp_saturating|soft_bounds", "pulse-response law")
    set_threshold: float = _q("voltage", "SET amplitude below which nothing happens, V")
    reset_threshold: float = _q("voltage", "RESET amplitude magnitude threshold, V")
    set_reference: float = _q("voltage", "SET amplitude with drive 1, V")
    reset_reference: float = _q("voltage", "RESET amplitude magnitude with drive 1, V")
    set_rate: float = _k("fraction", "fraction of the distance to g_max per reference SET")
    reset_rate: float = _k("fraction", "fraction of the distance to g_min per reference RESET")
    amplitude_exponent: float = _k("positive", "drive = ((|V|-Vth)/(Vref-Vth))**p")
    reference_width: float = _q("time", "pulse width with drive 1, s")
    width_exponent: float = _k("nonneg", "drive scales as (width/ref)**q")
    rate_d2d_sigma: float = _k("nonneg", "lognormal sigma of per-cell rates")
    c2c_relative: float = _k("nonneg", "cycle-to-cycle sigma relative to the mean step")
    c2c_absolute: float = _q("conductance", "cycle-to-cycle sigma floor per pulse, S")
    reset_mode: str = _k("choice:gradual|abrupt", "abrupt = melt-quench to the cell's g_min")
    programming_noise: tuple = _k(
        "list:signed:conductance", "sigma polynomial in x=G/g_max, per programming event, S"
    )
    set_compliance: float = _q(
        "current", "1T1R: current the access transistor passes during SET, A; a SET grows "
        "a cell to at most set_compliance / set_threshold (0 A: no limit)")


@dataclass(frozen=True)
class ReadNoiseSection:
    model: str = _k("choice:relative|pcm_1f", "read-noise law")
    relative: float = _k("nonneg", "sigma/G per read (relative model)")
    absolute: float = _q("conductance", "sigma floor per read, S")
    q_scale: float = _k("nonneg", "pcm_1f: Q = min(q_scale * x**q_exponent, q_max)")
    q_exponent: float = _k("float", "pcm_1f exponent")
    q_max: float = _k("nonneg", "pcm_1f cap on Q")
    t_read: float = _q("time", "pcm_1f read duration t_r, s")


@dataclass(frozen=True)
class FaultsSection:
    stuck_fraction: float = _k("fraction", "fraction of stuck cells")
    stuck_high_share: float = _k("fraction", "share of stuck cells stuck high")
    stuck_low: float = _q("conductance", "median conductance of a stuck-low cell, S")
    stuck_high: float = _q("conductance", "median conductance of a stuck-high cell, S")


@dataclass(frozen=True)
class FormingSection:
    required: bool = _k("bool", "fresh cells must be formed before they switch")
    voltage: float = _q("voltage", "default forming amplitude, V")
    width: float = _q("time", "default forming width, s")
    threshold_median: float = _q("voltage", "median per-cell forming voltage, V")
    threshold_sigma: float = _q("voltage", "normal sigma of the forming voltage, V")
    pristine: float = _q("conductance", "conductance of an unformed cell, S")
    formed_state: float = _q("conductance", "median conductance just after forming, S")


@dataclass(frozen=True)
class RelaxationSection:
    """RRAM relaxation after a programming event (t in s since that event).

    The deviation from the mean is a walk in ln t with independent increments whose
    variance at t is (scale * sigma(t))^2, so early reads do not determine it; the
    scale shrinks with the cell's programming events n: (1 + (n - 1)/cycle_n0)^-a.
    """

    model: str = _k("choice:none|log", "relaxation law")
    mean_per_ln: float = _q("conductance", "mean shift per ln(t/1 s), S", signed=True)
    sigma_0: float = _q("conductance", "sigma at t = 1 s, S")
    sigma_per_ln: float = _q("conductance", "sigma growth per ln(t/1 s), S")
    t_min: float = _q("time", "earlier reads see the state at t_min, s (assumption)")
    cycle_n0: float = _k("positive", "programming events over which the spread shrinks")
    cycle_exponent: float = _k("nonneg", "a in the spread scale (1 + (n-1)/cycle_n0)^-a; 0: none")


@dataclass(frozen=True)
class DriftSection:
    """PCM drift G(t) = G(t0) (t/t0)^-nu, nu per cell and per programming event."""

    model: str = _k("choice:none|power", "drift law")
    t0: float = _q("time", "drift reference time, s")
    nu_mean_a: float = _k("float", "nu mean = clip(a ln x + b, lo, hi)")
    nu_mean_b: float = _k("float", "")
    nu_mean_lo: float = _k("nonneg", "")
    nu_mean_hi: float = _k("nonneg", "")
    nu_sigma_a: float = _k("float", "nu sigma = clip(a ln x + b, lo, hi)")
    nu_sigma_b: float = _k("float", "")
    nu_sigma_lo: float = _k("nonneg", "")
    nu_sigma_hi: float = _k("nonneg", "")


@dataclass(frozen=True)
class TemperatureSection:
    """How temperature acts on the cells, the read-out chain, the time laws and the die.

    See docs/simulator.md ("Temperature") for each law and its source. At the
    reference temperature, with the chuck at ambient = reference, nothing here acts.
    """

    model: str = _k("choice:none|two_state|arrhenius", "temperature law")
    reference: float = _q("temperature", "temperature at which the window is defined, degC")
    coeff_low: float = _k("float", "two_state: dlnG/dT at g_low, 1/K")
    coeff_high: float = _k("float", "two_state: dlnG/dT at g_high, 1/K")
    g_low: float = _q("conductance", "two_state: conductance of coeff_low, S")
    g_high: float = _q("conductance", "two_state: conductance of coeff_high, S")
    ea_low: float = _q("energy", "arrhenius: activation energy at x=0, eV")
    ea_high: float = _q("energy", "arrhenius: activation energy at x=1, eV")
    # device to device and die to die
    coeff_sigma: float = _k("nonneg", "two_state: per-cell normal sigma added to dlnG/dT, 1/K")
    ea_sigma: float = _q("energy", "arrhenius: per-cell normal sigma added to Ea, eV")
    die_sigma: float = _k("nonneg", "lognormal sigma of a per-die scale of the law (coeff or Ea)")
    # the read-out chain (per column, drawn per die; gain 1 and offset 0 at reference)
    adc_gain_tc: float = _k("float", "mean column gain temperature coefficient, 1/K")
    adc_gain_tc_sigma: float = _k("nonneg", "column-to-column sigma of the gain coefficient, 1/K")
    adc_offset_tc: float = _k("float", "mean column offset drift, full scale per K")
    adc_offset_tc_sigma: float = _k("nonneg", "column-to-column sigma of the offset drift, "
                                              "full scale per K")
    # Arrhenius acceleration of the time laws
    relaxation_ea: float = _q("energy", "activation energy accelerating relaxation, eV")
    drift_ea: float = _q("energy", "activation energy accelerating drift, eV")
    # the die on the chuck
    ambient: float = _q("temperature", "room temperature the die loses heat to, degC")
    die_tau: float = _q("time", "first-order lag of the die behind the chuck, s")
    die_offset: float = _k("fraction", "median share of (chuck - ambient) the die falls short by")
    die_offset_sigma: float = _k("nonneg", "lognormal sigma of that share across dies")


@dataclass(frozen=True)
class LinesSection:
    wire_resistance: float = _q("resistance", "word/bit-line resistance per cell pitch, ohm")


@dataclass(frozen=True)
class AdcSection:
    read_bits: int = _k("int", "resolution of the read path")
    read_full_scale: float = _q("conductance", "read range, as conductance at read voltage, S")
    mvm_bits: int = _k("int", "resolution of the column ADCs in MVM")
    mvm_full_scale: float = _q("current", "column ADC range, A")
    mvm_output_noise: float = _k("nonneg", "column output noise sigma / full scale")


@dataclass(frozen=True)
class LimitsSection:
    """Safe operating limits; the instrument safety guard enforces these."""

    max_read_voltage: float = _q("voltage", "V")
    max_program_voltage: float = _q("voltage", "V, magnitude, SET and RESET")
    max_pulse_width: float = _q("time", "s")
    max_forming_voltage: float = _q("voltage", "V")
    max_forming_width: float = _q("time", "s")
    max_compliance: float = _q("current", "A")
    min_temperature: float = _q("temperature", "degC")
    max_temperature: float = _q("temperature", "degC")


SECTIONS: dict[str, type] = {
    "chip": ChipSection,
    "window": WindowSection,
    "bounds": BoundsSection,
    "response": ResponseSection,
    "read_noise": ReadNoiseSection,
    "faults": FaultsSection,
    "forming": FormingSection,
    "relaxation": RelaxationSection,
    "drift": DriftSection,
    "temperature": TemperatureSection,
    "lines": LinesSection,
    "adc": AdcSection,
    "limits": LimitsSection,
}


@dataclass(frozen=True)
class ChipSpec:
    """A whole chip type. Values in SI units; temperatures in degrees Celsius."""

    chip: ChipSection
    window: WindowSection
    bounds: BoundsSection
    response: ResponseSection
    read_noise: ReadNoiseSection
    faults: FaultsSection
    forming: FormingSection
    relaxation: RelaxationSection
    drift: DriftSection
    temperature: TemperatureSection
    lines: LinesSection
    adc: AdcSection
    limits: LimitsSection
    sources: dict = field(default_factory=dict, compare=False)

    @property
    def name(self) -> str:
        return self.chip.name

    @property
    def technology(self) -> str:
        return self.chip.technology

    @property
    def shape(self) -> tuple[int, int]:
        return (self.chip.rows, self.chip.cols)

    def with_geometry(self, rows: int | None = None, cols: int | None = None) -> ChipSpec:
        """The same device on another array size."""
        chip = dataclasses.replace(
            self.chip,
            rows=self.chip.rows if rows is None else rows,
            cols=self.chip.cols if cols is None else cols,
        )
        spec = dataclasses.replace(self, chip=chip)
        _check_spec(spec)
        return spec


def _parse_value(path: str, kind: str, raw: Any) -> Any:
    def fail(msg: str) -> ChipSpecError:
        return ChipSpecError(f"{path}: {msg}")

    if kind == "str":
        if not isinstance(raw, str):
            raise fail(f"expected text, got {raw!r}")
        return raw
    if kind == "bool":
        if not isinstance(raw, bool):
            raise fail(f"expected true or false, got {raw!r}")
        return raw
    if kind.startswith("choice:"):
        options = kind.split(":", 1)[1].split("|")
        if raw not in options:
            raise fail(f"expected one of {', '.join(options)}; got {raw!r}")
        return raw
    if kind == "int":
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise fail(f"expected a whole number, got {raw!r}")
        if raw < 1:
            raise fail(f"must be at least 1, got {raw}")
        return raw
    if kind.startswith("list:"):
        if not isinstance(raw, list) or not raw:
            raise fail(f"expected a non-empty list, got {raw!r}")
        return tuple(_parse_value(f"{path}[{i}]", kind[5:], v) for i, v in enumerate(raw))
    if kind in ("float", "nonneg", "positive", "fraction"):
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise fail(f"expected a plain number (no unit), got {raw!r}")
        value = float(raw)
        if not math.isfinite(value):
            raise fail(f"must be finite, got {raw!r}")
        if kind == "nonneg" and value < 0:
            raise fail(f"must be >= 0, got {value}")
        if kind == "positive" and value <= 0:
            raise fail(f"must be > 0, got {value}")
        if kind == "fraction" and not 0.0 <= value <= 1.0:
            raise fail(f"must be between 0 and 1, got {value}")
        return value
    signed = kind.startswith("signed:")
    kind = kind.removeprefix("signed:")
    try:  # a dimensional quantity
        value = parse_quantity(raw, kind)
    except UnitError as exc:
        raise fail(str(exc)) from None
    if not math.isfinite(value):
        raise fail(f"must be finite, got {raw!r}")
    if not signed and kind not in ("temperature", "voltage") and value < 0:
        raise fail(f"must not be negative, got {raw!r}")
    return value


def _build_section(name: str, cls: type, table: Any) -> Any:
    if not isinstance(table, dict):
        raise ChipSpecError(f"[{name}]: expected a table")
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in table:
        if key not in known:
            raise ChipSpecError(
                f"{name}.{key}: unknown field; known fields of [{name}] are "
                f"{', '.join(sorted(known))}"
            )
    values = {}
    for fname, f in known.items():
        if fname not in table:
            raise ChipSpecError(f"{name}.{fname}: missing ({f.metadata['doc']})")
        values[fname] = _parse_value(f"{name}.{fname}", f.metadata["kind"], table[fname])
    return cls(**values)


def _merge(base: dict, over: dict) -> dict:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def _read_toml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise ChipSpecError(f"{path}: no such chip file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ChipSpecError(f"{path}: not valid TOML ({exc})") from None
    base = doc.pop("base", None)
    if base is None:
        return doc
    if not isinstance(base, str):
        raise ChipSpecError(f"{path}: base: expected a preset name or a path")
    base_path = _resolve(base, relative_to=path.parent)
    if base_path in seen:
        raise ChipSpecError(f"{path}: base: circular reference to {base_path}")
    return _merge(_read_toml(base_path, seen + (path,)), doc)


def _resolve(name_or_path: str | Path, relative_to: Path | None = None) -> Path:
    text = str(name_or_path)
    if text.endswith(".toml") or "/" in text or "\\" in text:
        path = Path(text)
        if not path.is_absolute() and relative_to is not None:
            path = relative_to / path
        return path
    path = chip_preset_path(text)
    if path is None:
        raise ChipSpecError(
            f"unknown chip preset {text!r}; give a preset name (rram, pcm) or a .toml path"
        )
    return path


def spec_from_dict(doc: dict, origin: str = "<dict>") -> ChipSpec:
    """Build and validate a spec from a parsed TOML document."""
    doc = dict(doc)
    sources = doc.pop("sources", {})
    for key in doc:
        if key not in SECTIONS:
            raise ChipSpecError(
                f"[{key}]: unknown section in {origin}; known sections are "
                f"{', '.join(SECTIONS)}, sources"
            )
    for name in SECTIONS:
        if name not in doc:
            raise ChipSpecError(f"[{name}]: missing section in {origin}")
    parts = {name: _build_section(name, cls, doc[name]) for name, cls in SECTIONS.items()}
    if not isinstance(sources, dict):
        raise ChipSpecError("[sources]: expected a table of field = citation")
    for key, text in sources.items():
        section, _, fname = key.partition(".")
        if section not in SECTIONS or (
            fname and fname not in {f.name for f in dataclasses.fields(SECTIONS[section])}
        ):
            raise ChipSpecError(f"sources.{key}: names no field of the spec")
        if not isinstance(text, str):
            raise ChipSpecError(f"sources.{key}: expected a citation string")
    spec = ChipSpec(**parts, sources=dict(sources))
    _check_spec(spec)
    return spec


def _check_spec(spec: ChipSpec) -> None:
    """Cross-field checks: values that parse but describe an impossible chip."""

    def need(ok: bool, path: str, msg: str) -> None:
        if not ok:
            raise ChipSpecError(f"{path}: {msg}")

    w, b, r, lim = spec.window, spec.bounds, spec.response, spec.limits
    need(spec.chip.rows <= 8192 and spec.chip.cols <= 8192, "chip.rows",
         "arrays above 8192 x 8192 are not supported")
    need(w.g_min < w.g_max, "window.g_min", "must be below window.g_max")
    need(w.read_voltage > 0, "window.read_voltage", "must be positive")
    need(w.read_voltage <= lim.max_read_voltage, "window.read_voltage",
         "exceeds limits.max_read_voltage")
    need(b.g_min_median < b.g_max_median, "bounds.g_min_median", "must be below g_max_median")
    need(b.g_max_median >= w.g_max, "bounds.g_max_median",
         "must be at least window.g_max (cells must be able to reach the window)")
    for pol in ("set", "reset"):
        th, ref = getattr(r, f"{pol}_threshold"), getattr(r, f"{pol}_reference")
        need(th > 0, f"response.{pol}_threshold", "must be positive (a magnitude)")
        need(ref > th, f"response.{pol}_reference", f"must exceed response.{pol}_threshold")
        need(th <= lim.max_program_voltage, f"response.{pol}_threshold",
             "exceeds limits.max_program_voltage: the chip could never switch")
    need(r.reference_width > 0, "response.reference_width", "must be positive")
    need(spec.faults.stuck_low < spec.faults.stuck_high, "faults.stuck_low",
         "must be below faults.stuck_high")
    f = spec.forming
    if f.required:
        need(f.voltage <= lim.max_forming_voltage, "forming.voltage",
             "exceeds limits.max_forming_voltage")
        need(f.width <= lim.max_forming_width, "forming.width",
             "exceeds limits.max_forming_width")
    need(lim.min_temperature < lim.max_temperature, "limits.min_temperature",
         "must be below limits.max_temperature")
    need(lim.min_temperature >= -273.15, "limits.min_temperature", "below absolute zero")
    need(lim.max_read_voltage > 0, "limits.max_read_voltage", "must be positive")
    need(lim.max_program_voltage > 0, "limits.max_program_voltage", "must be positive")
    need(lim.max_pulse_width > 0, "limits.max_pulse_width", "must be positive")
    need(lim.max_compliance > 0, "limits.max_compliance", "must be positive")
    t = spec.temperature
    need(lim.min_temperature <= t.reference <= lim.max_temperature, "temperature.reference",
         "must lie within the limits' temperature range")
    need(t.g_low < t.g_high or t.model != "two_state", "temperature.g_low",
         "must be below temperature.g_high")
    need(t.ambient > -273.15, "temperature.ambient", "below absolute zero")
    need(t.die_tau > 0, "temperature.die_tau", "must be positive (a time constant)")
    need(t.die_offset < 1, "temperature.die_offset",
         "must be below 1 (the die cannot sit beyond ambient)")
    need(t.die_offset * math.exp(4 * t.die_offset_sigma) < 1, "temperature.die_offset_sigma",
         "too wide: a die 4 sigma out would sit beyond ambient")
    span = max(abs(lim.max_temperature - t.reference), abs(lim.min_temperature - t.reference))
    need((abs(t.adc_gain_tc) + 4 * t.adc_gain_tc_sigma) * span < 0.5, "temperature.adc_gain_tc",
         "the column gain would move by more than 50 % (4 sigma) within the temperature "
         "limits; give the coefficient in 1/K, e.g. -1e-4")
    need((abs(t.adc_offset_tc) + 4 * t.adc_offset_tc_sigma) * span < 0.5,
         "temperature.adc_offset_tc",
         "the column offset would reach half the full scale (4 sigma) within the "
         "temperature limits; give it as full scale per K, e.g. 5e-5")
    for key in ("relaxation_ea", "drift_ea"):
        need(getattr(t, key) <= 3.0, f"temperature.{key}",
             "above 3 eV: no solid-state relaxation process is that slow to activate")
    need(t.ea_sigma <= 0.2, "temperature.ea_sigma", "above 0.2 eV per cell is not a device")
    need(t.coeff_sigma <= 0.05, "temperature.coeff_sigma", "above 5 %/K per cell is not a device")
    need(1 <= spec.adc.read_bits <= 24, "adc.read_bits", "must be between 1 and 24")
    need(1 <= spec.adc.mvm_bits <= 24, "adc.mvm_bits", "must be between 1 and 24")
    need(spec.adc.read_full_scale >= w.g_max, "adc.read_full_scale",
         "must cover window.g_max")
    need(spec.adc.mvm_full_scale > 0, "adc.mvm_full_scale", "must be positive")
    need(spec.drift.t0 > 0 or spec.drift.model == "none", "drift.t0", "must be positive")
    rx = spec.relaxation
    if rx.model != "none":
        need(rx.t_min > 0, "relaxation.t_min", "must be positive")
        need(rx.sigma_0 + rx.sigma_per_ln * math.log(rx.t_min) >= 0, "relaxation.t_min",
             "the law's sigma (sigma_0 + sigma_per_ln ln t) is negative there: raise t_min")
    if r.set_compliance > 0:
        need(r.set_compliance / r.set_threshold >= w.g_max, "response.set_compliance",
             f"caps SET at {r.set_compliance / r.set_threshold * 1e6:.3g} uS "
             "(set_compliance / set_threshold), below window.g_max: no cell could reach "
             "the top of the window")


def load_chip(
    name_or_path: str | Path = "rram", rows: int | None = None, cols: int | None = None
) -> ChipSpec:
    """Load a preset (``"rram"``, ``"pcm"``) or a TOML file, optionally re-sized.

    A file may start with ``base = "rram"`` and override only what differs.
    """
    path = _resolve(name_or_path)
    spec = spec_from_dict(_read_toml(path), origin=str(path))
    for label, value in (("rows", rows), ("cols", cols)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ChipSpecError(f"chip.{label}: must be a whole number >= 1, got {value!r}")
    if rows is not None or cols is not None:
        spec = spec.with_geometry(rows, cols)
    return spec
