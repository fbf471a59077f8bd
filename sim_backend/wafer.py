"""A simulated wafer: a die map, systematic radial gradients, dead dies.

Each die's chip is seeded from (wafer seed, die id), so the same die is the
same chip every time it is loaded; within one SimWafer a visited die keeps its
programmed state, as silicon does. Given a state folder (:mod:`sim_backend.state`)
the wafer also remembers between processes: a die is loaded as it was last saved,
and changed dies are saved when :meth:`SimWafer.save` (or a throttled
:meth:`SimWafer.autosave`) is called and when the wafer is closed.
"""

from __future__ import annotations

import math
import numbers
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim_backend.chip import DieModifiers, SimChip
from sim_backend.clock import VirtualClock
from sim_backend.resources import wafer_preset_path
from sim_backend.spec import ChipSpec
from sim_backend.state import StateError, StateFolder, fingerprint, signature
from sim_backend.units import UnitError, parse_quantity

SAVE_INTERVAL_S = 1.0  # wall seconds: a changed die is saved at most this often while in use
SAVE_COST_FACTOR = 10.0  # ... and never more often than this many times the last save's cost


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
        state: str | Path | None = None,
    ) -> None:
        self.chip_spec = spec
        self.seed = check_seed(seed)
        self.spec = wafer if isinstance(wafer, WaferSpec) else load_wafer(wafer)
        self.clock = clock or VirtualClock()
        self.dies = die_map(self.spec, self.seed)
        self._by_id = {d.id: d for d in self.dies}
        self._by_xy = {(d.x, d.y): d for d in self.dies}
        self._chips: dict[int, SimChip] = {}
        self._state: StateFolder | None = None
        self._dirty: set[int] = set()  # dies handed out since they were last saved
        self._signatures: dict[int, str] = {}  # each loaded die's signature when last saved
        self._saved_at = time.monotonic()
        self._save_cost_s = 0.0
        if state is not None:
            self.bind(state)

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
        """The chip on ``die_id``; visited dies keep their state unless ``fresh``.

        With a state folder, a die not yet in memory is loaded as it was last saved;
        ``fresh`` starts it anew from its seed (and the next save overwrites the old state).
        """
        chip = self.load(die_id, fresh)
        self._dirty.add(chip.die_id)  # whoever holds the chip may change it directly
        return chip

    def load(self, die_id: int, fresh: bool = False) -> SimChip:
        """:meth:`die` without marking it changed: a die loaded only to look at it (or to
        find a damaged state file early) is not saved again unless its state moves on."""
        info = self.info(die_id)
        chip = self._chips.get(info.id)
        if fresh or chip is None:
            chip = SimChip(self.chip_spec, seed=(self.seed, info.id), clock=self.clock,
                           modifiers=self.modifiers(info), die_id=info.id)
            if fresh:
                self._dirty.add(info.id)
            if self._state is not None:
                if not fresh and self._state.has(info.id):
                    self._catch_up(self._state.load(chip))
                self._signatures[info.id] = signature(chip)  # as built or loaded: unchanged
            self._chips[info.id] = chip
        return chip

    # -- memory between processes -------------------------------------------------------
    def has_saved(self, die_id: int) -> bool:
        """Whether the state folder holds a saved state of ``die_id``."""
        return self._state is not None and self._state.has(int(die_id))

    @property
    def state_folder(self) -> Path | None:
        """The folder this wafer is remembered in (None: it forgets at exit)."""
        return None if self._state is None else self._state.path

    def fingerprint(self) -> dict:
        return fingerprint(self.chip_spec, self.spec, self.seed)

    def bind(self, folder: str | Path) -> None:
        """Remember this wafer in ``folder`` (made if need be), held by this process alone.

        The virtual clock moves on to the saved one if that is later. Binding another
        folder saves and lets go of the first, and forgets its dies (another wafer is
        on the chuck). Dies used before the first binding are kept and saved, unless
        the folder already holds one of them: then StateError, nothing is lost.
        StateError for a folder made for another chip, geometry, wafer or seed;
        StateBusyError when another process holds it.
        """
        folder = Path(folder)
        if self._state is not None:
            if _same_folder(self._state.path, folder):
                return
            self.close()
            self._chips.clear()
            self._dirty.clear()
            self._signatures.clear()
        state = StateFolder(folder, self.fingerprint())
        clash = sorted(i for i in self._chips if state.has(i))
        if clash:
            state.close()
            raise StateError(f"die {clash[0]} was used on this wafer before its state folder "
                             f"{folder} was bound, and that folder holds another state of it: "
                             "bind the folder before touching a die")
        self._state = state
        self._dirty |= set(self._chips)
        self._catch_up(state.clock_s)
        self._saved_at = time.monotonic()

    def _catch_up(self, clock_s: float) -> None:
        """Virtual time never runs backward: the clock moves on to a saved, later time."""
        if clock_s > self.clock.now:
            self.clock.advance(clock_s - self.clock.now)

    def save(self, changed_only: bool = False) -> list[int]:
        """Save the dies changed since their last save, then the clock; the ids saved.

        A die counts as changed when its generator or scalars moved on (every pulse,
        forming, read or MVM draws noise) or, unless ``changed_only``, when it was
        handed out by :meth:`die` (its holder may have edited an array directly).
        Atomic per file: a crash mid-save leaves each die's previous state whole. A
        process that changed no die writes nothing (virtual time alone is not kept).
        """
        if self._state is None:
            return []
        start = time.monotonic()
        now = self.clock.now
        changed = [die_id for die_id, chip in self._chips.items()
                   if self._signatures.get(die_id) != signature(chip)
                   or (not changed_only and die_id in self._dirty)]
        try:
            for die_id in changed:
                chip = self._chips[die_id]
                self._state.save_die(chip, now)
                self._signatures[die_id] = signature(chip)
                self._dirty.discard(die_id)
            if changed:
                self._state.write_wafer(now)
            if not changed_only:
                self._dirty.clear()
        finally:  # a failed save is retried after the same interval, not at once
            self._saved_at = time.monotonic()
            if changed:
                self._save_cost_s = self._saved_at - start
        return changed

    def autosave(self) -> bool:
        """Save the dies whose state moved on, if a die was handed out since the last
        save and that save is ``SAVE_INTERVAL_S`` old (longer for dies whose save is
        slow); True if it looked. A die only looked at while in contact is not written."""
        if self._state is None or not self._dirty:
            return False
        interval = max(SAVE_INTERVAL_S, SAVE_COST_FACTOR * self._save_cost_s)
        if time.monotonic() - self._saved_at < interval:
            return False
        self.save(changed_only=True)
        return True

    def close(self) -> None:
        """Save what changed and let go of the state folder (a no-op without one)."""
        if self._state is None:
            return
        try:
            self.save()
        finally:
            self._state.close()
            self._state = None


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return a.resolve() == b.resolve()
