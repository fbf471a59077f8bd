"""A simulated wafer: a die map, systematic radial gradients, dead dies.

Each die's chip is seeded from (wafer seed, die id), so the same die is the
same chip every time it is loaded; within one SimWafer a visited die keeps its
programmed state, as silicon does.
"""

from __future__ import annotations

import math
import numbers
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim_backend.chip import DieModifiers, SimChip
from sim_backend.clock import VirtualClock
from sim_backend.resources import wafer_preset_path
from sim_backend.spec import ChipSpec
from sim_backend.units import UnitError, parse_quantity


class WaferSpecError(ValueError):
    """A wafer description is malformed, or a die id does not exist."""


@dataclass(frozen=True)
class WaferSpec:
    """Wafer geometry (millimetres) and systematic variation."""

    name: str
    diameter_mm: float
    die_width_mm: float
    die_height_mm: float
    edge_exclusion_mm: float
    g_max_edge_drop: float  # fraction by which median g_max falls at the rim
    stuck_edge_gain: float  # stuck fraction x (1 + gain r^2)
    dead_fraction: float  # fraction of dies with no working cell


@dataclass(frozen=True)
class Die:
    """One die on the map: id, grid column/row (x right, y down), centre in mm."""

    id: int
    x: int
    y: int
    center_mm: tuple[float, float]
    radius: float  # centre distance / wafer radius, 0..1
    dead: bool


_WAFER_FIELDS = {
    "wafer": {"name": "str", "diameter": "length", "die_width": "length",
              "die_height": "length", "edge_exclusion": "length"},
    "gradient": {"g_max_edge_drop": "fraction", "stuck_edge_gain": "nonneg"},
    "defects": {"dead_fraction": "fraction"},
}


def load_wafer(name_or_path: str | Path = "default") -> WaferSpec:
    """Load a bundled wafer map (``"default"``) or a TOML file."""
    text = str(name_or_path)
    path = Path(text) if text.endswith(".toml") or "/" in text else wafer_preset_path(text)
    if path is None:
        raise WaferSpecError(f"unknown wafer preset {text!r}; give 'default' or a .toml path")
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise WaferSpecError(f"{path}: no such wafer file") from None
    except tomllib.TOMLDecodeError as exc:
        raise WaferSpecError(f"{path}: not valid TOML ({exc})") from None
    values: dict[str, object] = {}
    for section, fields in _WAFER_FIELDS.items():
        table = doc.get(section)
        if not isinstance(table, dict):
            raise WaferSpecError(f"[{section}]: missing section in {path}")
        for key in table:
            if key not in fields:
                raise WaferSpecError(f"{section}.{key}: unknown field; known: {', '.join(fields)}")
        for key, kind in fields.items():
            if key not in table:
                raise WaferSpecError(f"{section}.{key}: missing")
            values[key] = _wafer_value(f"{section}.{key}", kind, table[key])
    for key in doc:
        if key not in _WAFER_FIELDS:
            raise WaferSpecError(f"[{key}]: unknown section in {path}")
    spec = WaferSpec(
        name=values["name"], diameter_mm=values["diameter"], die_width_mm=values["die_width"],
        die_height_mm=values["die_height"], edge_exclusion_mm=values["edge_exclusion"],
        g_max_edge_drop=values["g_max_edge_drop"], stuck_edge_gain=values["stuck_edge_gain"],
        dead_fraction=values["dead_fraction"],
    )
    for key in ("diameter_mm", "die_width_mm", "die_height_mm"):
        if getattr(spec, key) <= 0:
            raise WaferSpecError(f"wafer.{key.removesuffix('_mm')}: must be positive")
    if 2 * spec.edge_exclusion_mm >= spec.diameter_mm:
        raise WaferSpecError("wafer.edge_exclusion: leaves no usable area")
    return spec


def _wafer_value(path: str, kind: str, raw: object):
    if kind == "str":
        if not isinstance(raw, str):
            raise WaferSpecError(f"{path}: expected text")
        return raw
    if kind in ("fraction", "nonneg"):
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
            raise WaferSpecError(f"{path}: expected a plain number, got {raw!r}")
        if raw < 0 or (kind == "fraction" and raw > 1):
            raise WaferSpecError(f"{path}: out of range, got {raw}")
        return float(raw)
    try:
        value = parse_quantity(raw, kind)
    except UnitError as exc:
        raise WaferSpecError(f"{path}: {exc}") from None
    if value < 0:
        raise WaferSpecError(f"{path}: must not be negative")
    return value


def check_seed(seed: object) -> int:
    """A wafer seed: a whole number >= 0 (what numpy's SeedSequence takes)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise WaferSpecError(f"seed {seed!r}: must be a whole number >= 0")
    return int(seed)


def die_map(spec: WaferSpec, seed: int) -> tuple[Die, ...]:
    """Dies fully inside the usable radius, numbered from 1 in raster order."""
    radius = spec.diameter_mm / 2
    usable = radius - spec.edge_exclusion_mm
    w, h = spec.die_width_mm, spec.die_height_mm
    nx, ny = int(math.ceil(spec.diameter_mm / w)) + 1, int(math.ceil(spec.diameter_mm / h)) + 1
    placed = []
    for y in range(ny):
        for x in range(nx):
            cx, cy = (x - (nx - 1) / 2) * w, ((ny - 1) / 2 - y) * h
            far_x, far_y = abs(cx) + w / 2, abs(cy) + h / 2
            if math.hypot(far_x, far_y) <= usable:
                placed.append((x, y, cx, cy))
    if not placed:
        raise WaferSpecError("no die fits on the wafer; check die size and edge exclusion")
    x0 = min(p[0] for p in placed)
    y0 = min(p[1] for p in placed)
    rng = np.random.default_rng(np.random.SeedSequence([check_seed(seed), 0xDEAD]))
    n_dead = int(round(spec.dead_fraction * len(placed)))
    dead = set(rng.choice(len(placed), size=n_dead, replace=False).tolist()) if n_dead else set()
    return tuple(
        Die(id=i + 1, x=x - x0, y=y - y0, center_mm=(cx, cy),
            radius=math.hypot(cx, cy) / radius, dead=i in dead)
        for i, (x, y, cx, cy) in enumerate(placed)
    )


class SimWafer:
    """A wafer of dies of one chip type; ``die(id)`` gives the chip on that die."""

    def __init__(
        self,
        spec: ChipSpec,
        seed: int = 0,
        wafer: WaferSpec | str | Path = "default",
        clock: VirtualClock | None = None,
    ) -> None:
        self.chip_spec = spec
        self.seed = check_seed(seed)
        self.spec = wafer if isinstance(wafer, WaferSpec) else load_wafer(wafer)
        self.clock = clock or VirtualClock()
        self.dies = die_map(self.spec, self.seed)
        self._by_id = {d.id: d for d in self.dies}
        self._by_xy = {(d.x, d.y): d for d in self.dies}
        self._chips: dict[int, SimChip] = {}

    def info(self, die_id: int) -> Die:
        try:
            return self._by_id[int(die_id)]
        except (KeyError, TypeError, ValueError):
            raise WaferSpecError(
                f"no die {die_id!r} on wafer {self.spec.name}: ids run 1..{len(self.dies)}"
            ) from None

    def at(self, x: int, y: int) -> Die:
        try:
            return self._by_xy[(int(x), int(y))]
        except KeyError:
            raise WaferSpecError(
                f"no die at column {x}, row {y} on wafer {self.spec.name}"
            ) from None

    def modifiers(self, die: Die) -> DieModifiers:
        g = self.spec
        r2 = die.radius**2
        return DieModifiers(
            g_max_scale=1.0 - g.g_max_edge_drop * r2,
            stuck_scale=1.0 + g.stuck_edge_gain * r2,
            dead=die.dead,
        )

    def die(self, die_id: int, fresh: bool = False) -> SimChip:
        """The chip on ``die_id``; visited dies keep their state unless ``fresh``."""
        info = self.info(die_id)
        if fresh or info.id not in self._chips:
            self._chips[info.id] = SimChip(
                self.chip_spec, seed=(self.seed, info.id), clock=self.clock,
                modifiers=self.modifiers(info), die_id=info.id,
            )
        return self._chips[info.id]
