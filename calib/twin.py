"""A simulator twin of a measured die: a chip TOML fitted to its variability map.

``twin_toml(vmap, datasheet)`` writes a chip spec in the simulator presets'
format (docs/chip-spec.md) that starts from the technology's preset
(``base = "rram"``) and overrides what the map measured, so a protocol can be
rehearsed on a simulated copy of the die on the bench (docs/twin.md):

- ``[chip]`` the map's geometry; ``[window]``, ``[limits]``, forming pulse and the
  nominal pulse shape from the datasheet (the twin obeys the same envelope);
- ``[bounds]`` medians of the measured per-cell ``g_min``/``g_max`` and the
  lognormal sigma of ``g_max`` (robust: interquartile range / 1.349 of ln g_max),
  over the cells that move (healthy and narrow);
- ``[response]`` rates: the map's rate is the *fraction* of the distance to the
  bound one reference pulse removes, f; the spec's exp_saturating rate is
  ``-ln(1 - f)`` (median, and the lognormal sigma of the two polarities);
  thresholds (medians, never above the datasheet's nominal: a measured threshold is
  where a move becomes *visible*, an upper bound on the physical one);
  ``c2c_absolute`` from the spread of the RESET bound over cycles, less read noise
  and the base preset's relaxation spread, never above the base's floor (that
  spread includes the map's estimation noise: an upper bound too);
- ``[read_noise]`` ``relative = b``, ``absolute = a`` of the measured law a + b G
  (white-noise technologies; per conversion: ``extra["read_averages"]`` undone);
- ``[faults]`` stuck fraction, high share and median stuck values from the fault
  classes (an unresponsive cell counts as stuck, high or low by its value);
- ``[forming]`` the median forming threshold placed so that the map's share of
  unformed cells stays unformed under the datasheet's forming pulse.

What the map did not measure (NaN) keeps the base preset's value. This is the
one module of ``calib`` that writes simulator physics; it writes text and
imports nothing from ``sim_backend`` (tests load the result with
``sim_backend.load_chip``). The base preset is read as a data file only, for the
two values the upper bounds above are compared with.
"""

from __future__ import annotations

import math
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from statistics import NormalDist

import numpy as np

from instruments.datasheet import ChipDatasheet, data_root
from instruments.errors import UserError
from instruments.units import QuantityError, quantity
from protocols.variability.result import Fault, VariabilityMap

US = 1e-6
IQR_SIGMA = 1.3489795  # interquartile range of a unit normal


class TwinError(UserError, ValueError):
    """The map cannot be turned into a simulator twin (no moving cell, wrong shape)."""


def _robust_sigma(values: np.ndarray) -> float | None:
    v = values[np.isfinite(values)]
    if v.size < 8:
        return None
    q25, q75 = np.percentile(v, [25, 75])
    return float((q75 - q25) / IQR_SIGMA)


def _median(values: np.ndarray) -> float | None:
    v = values[np.isfinite(values)]
    return float(np.median(v)) if v.size else None


def _num(x: float) -> str:
    return repr(float(f"{x:.6g}"))


def _q(x: float, unit: str) -> str:
    scale = {"uS": US, "V": 1.0, "us": US, "uA": US, "degC": 1.0, "ms": 1e-3}[unit]
    return f'"{float(f"{x / scale:.6g}"):g} {unit}"'


def _base_value(technology: str, section: str, key: str, dimension: str) -> float | None:
    """A value of the base preset's data file (SI), or None; the relaxation spread is 0
    when the preset has no relaxation."""
    try:
        with open(data_root() / "chips" / f"{technology}.toml", "rb") as fh:
            table = tomllib.load(fh).get(section, {})
        if section == "relaxation" and table.get("model", "none") == "none":
            return 0.0
        return float(quantity(table[key], dimension))
    except (OSError, KeyError, tomllib.TOMLDecodeError, QuantityError):
        return None


def _spec_rate(fraction: np.ndarray) -> np.ndarray:
    """exp_saturating rate of a reference pulse that removes ``fraction`` of the distance."""
    f = np.clip(np.asarray(fraction, dtype=np.float64), 0.0, 1.0 - 1e-9)
    with np.errstate(invalid="ignore"):
        return -np.log1p(-f)


def twin_figures(vmap: VariabilityMap, datasheet: ChipDatasheet) -> dict[str, dict]:
    """The twin's overrides, section -> field -> SI value (None: keep the base preset's)."""
    fault = np.asarray(vmap.fault)
    if fault.ndim != 2 or fault.size == 0:
        raise TwinError(f"the map's fault array has shape {fault.shape}; expected rows x cols")
    moving = np.isin(fault, [int(Fault.HEALTHY), int(Fault.NARROW)])
    if not moving.any():
        raise TwinError("the map has no cell that moves (every cell is stuck, unformed or "
                        "unresponsive): there is no device behaviour to copy")
    tech, prog, win = datasheet.technology, datasheet.programming, datasheet.window

    def pos(a):
        a = np.asarray(a, dtype=np.float64)[moving]
        return a[np.isfinite(a) & (a > 0)]

    g_min, g_max = pos(vmap.g_min), pos(vmap.g_max)
    bounds = {"g_min_median": _median(g_min), "g_max_median": _median(g_max),
              "d2d_sigma": _robust_sigma(np.log(g_max)) if g_max.size else None}
    window = {"g_min": win.g_min, "g_max": win.g_max, "read_voltage": win.read_voltage}
    if bounds["g_max_median"] is not None and bounds["g_max_median"] < win.g_max:
        window["g_max"] = bounds["g_max_median"]  # the median cell cannot reach the top
    if (bounds["g_min_median"] is not None and bounds["g_max_median"] is not None
            and bounds["g_min_median"] >= bounds["g_max_median"]):
        bounds["g_min_median"] = None

    abrupt = (prog.reset or ("abrupt" if tech == "pcm" else "gradual")) == "abrupt"
    set_k, reset_k = _spec_rate(pos(vmap.set_rate)), _spec_rate(pos(vmap.reset_rate))
    sigmas = [s for s in (_robust_sigma(np.log(set_k)) if set_k.size else None,
                          None if abrupt or not reset_k.size else _robust_sigma(np.log(reset_k)))
              if s is not None]
    response: dict[str, float | str | None] = {
        "law": "exp_saturating",
        "set_rate": None if not set_k.size else min(1.0, float(np.median(set_k))),
        "reset_rate": None if abrupt or not reset_k.size else min(1.0, float(np.median(reset_k))),
        "rate_d2d_sigma": float(np.sqrt(np.mean(np.square(sigmas)))) if sigmas else None,
        "set_reference": prog.set_reference, "reset_reference": prog.reset_reference,
        "reference_width": prog.reference_width, "amplitude_exponent": prog.amplitude_exponent,
        "width_exponent": prog.width_exponent,
    }
    # A measured threshold is the smallest amplitude that moves a cell *visibly*: an upper
    # bound on the physical one. The nominal threshold stands unless the die beats it.
    for pol in ("set", "reset"):
        th = _median(pos(getattr(vmap, f"{pol}_threshold")))
        nominal = getattr(prog, f"{pol}_threshold")
        th = nominal if th is None else th if nominal is None else min(th, nominal)
        ref = getattr(prog, f"{pol}_reference")
        if th is not None and ref is not None:
            th = min(th, 0.95 * ref)
        response[f"{pol}_threshold"] = th
    # The spread of the RESET bound over cycles is that of a saturated cell's level (the
    # per-pulse floor, read noise, relaxation) plus the map's estimation noise: an upper
    # bound on the per-pulse floor. The base's floor stands unless the die beats it; a
    # protocol that measures the per-pulse spread passes it in ``extra``.
    c2c = _median(pos(vmap.g_min_c2c))
    if c2c is not None:
        g0 = bounds["g_min_median"] or win.g_min
        read = float(vmap.read_noise.sigma(np.asarray(g0)))
        relax = _base_value(tech, "relaxation", "sigma_0", "conductance") or 0.0
        floor = math.sqrt(max(c2c * c2c - read * read - relax * relax, 0.0))
        base = _base_value(tech, "response", "c2c_absolute", "conductance")
        response["c2c_absolute"] = floor if base is None else min(floor, base)
    for key in ("c2c_relative", "c2c_absolute"):
        if key in vmap.extra:
            response[key] = float(vmap.extra[key])

    read_noise: dict[str, float | str | None] = {}
    white = (prog.read_noise or ("1/f" if tech == "pcm" else "white")) == "white"
    a, b = float(vmap.read_noise.a), float(vmap.read_noise.b)
    linear = getattr(vmap.read_noise, "c", 1.0) == 1.0  # a line a + b G maps onto the spec
    if white and linear and math.isfinite(a) and math.isfinite(b) and (a > 0 or b > 0):
        n = float(vmap.extra.get("read_averages", 1) or 1)
        read_noise = {"model": "relative", "relative": max(b, 0.0) * math.sqrt(n),
                      "absolute": max(a, 0.0) * math.sqrt(n)}

    value = 0.5 * (np.asarray(vmap.g_min, np.float64) + np.asarray(vmap.g_max, np.float64))
    split = math.sqrt(win.g_min * win.g_max) if win.g_min > 0 else 0.5 * win.g_max
    unresponsive = fault == Fault.UNRESPONSIVE
    high = (fault == Fault.STUCK_HIGH) | (unresponsive & (value > split))
    low = (fault == Fault.STUCK_LOW) | (unresponsive & ~(value > split))
    n_stuck = int(high.sum() + low.sum())
    faults: dict[str, float | None] = {
        "stuck_fraction": n_stuck / fault.size,
        "stuck_high_share": float(high.sum() / n_stuck) if n_stuck else None,
        "stuck_low": _median(value[low & (value > 0)]),
        "stuck_high": _median(value[high & (value > 0)]),
    }
    lo_v = faults["stuck_low"]
    hi_v = faults["stuck_high"]
    if lo_v is not None and hi_v is not None and not lo_v < hi_v:
        faults["stuck_low"] = faults["stuck_high"] = None

    fm = datasheet.forming
    forming: dict[str, float | bool | None] = {"required": fm.required}
    if fm.required:
        forming.update(voltage=fm.voltage, width=fm.width)
        unformed = float(np.mean(fault == Fault.UNFORMED))
        if unformed > 0:
            sigma = 0.25  # the base presets' forming-threshold spread, V (assumption)
            z = NormalDist().inv_cdf(min(1.0 - unformed, 1.0 - 1e-9))
            forming.update(threshold_median=fm.voltage - sigma * z, threshold_sigma=sigma)
    lim = datasheet.limits
    limits = {k: getattr(lim, k) for k in (
        "max_read_voltage", "max_program_voltage", "max_pulse_width", "max_forming_voltage",
        "max_forming_width", "max_compliance", "min_temperature", "max_temperature")}
    rows, cols = fault.shape
    return {"chip": {"rows": rows, "cols": cols}, "window": window, "bounds": bounds,
            "response": response, "read_noise": read_noise, "faults": faults,
            "forming": forming, "limits": limits}


UNITS = {  # field -> unit written (SI values in, text with unit out)
    "g_min": "uS", "g_max": "uS", "read_voltage": "V", "g_min_median": "uS",
    "g_max_median": "uS", "set_threshold": "V", "reset_threshold": "V", "set_reference": "V",
    "reset_reference": "V", "reference_width": "us", "c2c_absolute": "uS", "absolute": "uS",
    "stuck_low": "uS", "stuck_high": "uS", "voltage": "V", "width": "us",
    "threshold_median": "V", "threshold_sigma": "V", "max_read_voltage": "V",
    "max_program_voltage": "V", "max_pulse_width": "us", "max_forming_voltage": "V",
    "max_forming_width": "us", "max_compliance": "uA", "min_temperature": "degC",
    "max_temperature": "degC",
}


def _value(key: str, v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, int) and key in ("rows", "cols"):
        return str(v)
    if key in UNITS:
        return _q(float(v), UNITS[key])
    return _num(float(v))


def twin_toml(vmap: VariabilityMap, datasheet: ChipDatasheet, *, name: str | None = None,
              base: str | None = None, source: str = "") -> str:
    """The chip TOML of a simulator twin of the die ``vmap`` describes.

    ``base``: the preset it overrides (default: the datasheet's technology);
    ``source``: where the map came from (a die file and run), for ``[sources]``.
    """
    figures = twin_figures(vmap, datasheet)
    base = base or datasheet.technology
    run = source or str(vmap.extra.get("run", "")) or "a variability map"
    counts = vmap.counts()
    lines = [
        f"# Simulator twin of a measured die, fitted to {run} (calib/twin.py, docs/twin.md).",
        f"# Written {datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}; what the map did not "
        f"measure is the {base!r} preset's.",
        f"# Map: {vmap.fault.size} cells, " + ", ".join(f"{k} {v}" for k, v in counts.items()),
        "# Run it on a wafer without gradients (docs/twin.md): the die's own medians are here.",
        f'base = "{base}"', "",
        "[chip]", f'name = "{name or datasheet.name + "-twin"}"',
        f'technology = "{datasheet.technology}"',
    ]
    chip = figures.pop("chip")
    lines += [f"rows = {chip['rows']}", f"cols = {chip['cols']}",
              f'description = "twin of {run}"']
    notes = {"bounds": _bounds_note(vmap)}
    for section, values in figures.items():
        kept = {k: v for k, v in values.items() if v is not None}
        if not kept:
            continue
        lines += ["", f"[{section}]"]
        if notes.get(section):
            lines.append(notes[section])
        lines += [f"{k} = {_value(k, v)}" for k, v in kept.items()]
    lines += ["", "[sources]"]
    for section in ("bounds", "response", "read_noise", "faults"):
        if any(v is not None for v in figures[section].values()):
            lines.append(f'"{section}" = "measured: {run}"')
    lines += ['"window" = "the chip datasheet"', '"limits" = "the chip datasheet"', ""]
    return "\n".join(lines)


def _bounds_note(vmap: VariabilityMap) -> str:
    moving = np.isin(vmap.fault, [int(Fault.HEALTHY), int(Fault.NARROW)])
    g = np.asarray(vmap.g_min, np.float64)[moving]
    g = g[np.isfinite(g) & (g > 0)]
    s = _robust_sigma(np.log(g)) if g.size else None
    return "" if s is None else f"# measured lognormal sigma of g_min: {s:.3g} (the spec " \
                                "has one sigma for both bounds; g_max's is used)"


def write_twin(vmap: VariabilityMap, datasheet: ChipDatasheet, path: str | Path, **kw) -> Path:
    """Write :func:`twin_toml` to ``path``; returns the path."""
    path = Path(path)
    text = twin_toml(vmap, datasheet, **kw)
    try:
        path.write_text(text)
    except OSError as exc:
        raise TwinError(f"cannot write the twin to {path}: {exc.strerror or exc}") from None
    return path
