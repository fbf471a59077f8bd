"""A simulated wafer's memory: each die's full state in a folder, so it outlives the process.

A real wafer keeps what was done to it between two commands, two shells and a crash;
the simulated one does so through a state folder:

- ``wafer.json``: the format, the fingerprint of the wafer the folder belongs to (chip
  spec name, geometry and a digest of its physics, wafer map, seed) and the virtual
  clock, in seconds.
- ``die_<id>.npz``: one die, saved generically from ``vars(chip)``: every numpy array,
  numpy scalar and plain scalar, and each numpy Generator's ``bit_generator.state``, so
  attributes added to :class:`SimChip` later are covered without edits here. What is
  rebuilt from the seed and the wafer map (``REBUILT``) is not saved; any other kind of
  attribute is refused by name rather than silently dropped.
- ``lock``: ``fcntl.flock``-ed by the one process using the folder (the kernel drops it
  when that process dies, even by ``kill -9``); it holds that process's pid.

Every file is written atomically: a temporary file beside it, flushed to the disk
(``fsync``), swapped in with ``os.replace``, then the folder synced; a crash at any
instant leaves the previous state whole. A folder made for another wafer, or by a
simulator whose chip state differs, is refused with a one-line error, never used.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import io
import json
import os
import re
import secrets
import signal
import threading
import weakref
import zipfile
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

# 2: the relaxation walk (relax_dev, relax_ln_t, _relax_rng) and cycle counts replaced
# z_relax; a format-1 folder cannot say where each cell's walk stood, so it is refused
FORMAT = 2
WAFER_FILE = "wafer.json"
LOCK_FILE = "lock"
META = "__state__"  # the npz entry holding a die's scalars and generator states (JSON)
# not saved: rebuilt from the seed and the wafer map (spec, modifiers), the wafer's clock,
# and the bench's thermal path, which the bench attaches again on the next contact
REBUILT = frozenset({"spec", "clock", "modifiers", "_thermal"})
_DIE_FILE = re.compile(r"die_(\d+)\.npz")
_HELD = (signal.SIGINT, signal.SIGTERM)


class StateError(ValueError):
    """A state folder cannot be used (another wafer's, damaged, unwritable)."""


class StateBusyError(StateError):
    """Another process (or another bench of this one) is using the state folder."""


# -- what identifies a wafer ---------------------------------------------------------
def _digest(value) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprint(chip_spec, wafer_spec, seed: int) -> dict:
    """What a state folder must match: chip, geometry, physics, wafer map and seed."""
    physics = dataclasses.asdict(chip_spec)
    physics.pop("sources", None)
    physics["chip"].pop("description", None)
    return {"chip": chip_spec.name, "technology": chip_spec.technology,
            "rows": chip_spec.chip.rows, "cols": chip_spec.chip.cols,
            "chip_physics": _digest(physics), "wafer": wafer_spec.name,
            "wafer_map": _digest(dataclasses.asdict(wafer_spec)), "seed": int(seed)}


def _describe(fp: dict) -> str:
    return (f"chip {fp.get('chip')} {fp.get('rows')}x{fp.get('cols')}, wafer {fp.get('wafer')}, "
            f"seed {fp.get('seed')}")


def _mismatch(where, saved: dict, ours: dict) -> StateError:
    if _describe(saved) != _describe(ours):
        why = f"was made for {_describe(saved)}; this bench has {_describe(ours)}"
    else:
        changed = [k for k in ("technology", "chip_physics", "wafer_map")
                   if saved.get(k) != ours.get(k)]
        what = {"technology": "chip technology", "chip_physics": "chip spec's physics",
                "wafer_map": "wafer map"}
        why = (f"was made for {_describe(ours)} with another "
               f"{' and '.join(what[k] for k in changed) or 'fingerprint'}")
    return StateError(f"simulated wafer state {where} {why}: use another results folder, or "
                      "remove that folder to start the wafer afresh")


# -- one die: capture and restore ------------------------------------------------------
def _encode(value):
    """A generator state as JSON: arrays (MT19937's key) tagged with their dtype."""
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return {"__array__": value.dtype.str, "values": value.tolist()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _decode(value):
    if isinstance(value, dict):
        if "__array__" in value:
            return np.asarray(value["values"], dtype=np.dtype(value["__array__"]))
        return {k: _decode(v) for k, v in value.items()}
    return value


def _plain(value) -> bool:
    if isinstance(value, (tuple, list)):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def capture(chip) -> tuple[dict[str, np.ndarray], dict]:
    """A chip's state: its arrays (by attribute name) and the rest as JSON-ready meta."""
    arrays: dict[str, np.ndarray] = {}
    meta: dict = {"scalars": {}, "tuples": [], "numpy_scalars": [], "generators": {}}
    for name, value in vars(chip).items():
        if name in REBUILT:
            continue
        if isinstance(value, np.ndarray):
            arrays[name] = value
        elif isinstance(value, np.generic):
            arrays[name] = np.asarray(value)
            meta["numpy_scalars"].append(name)
        elif isinstance(value, np.random.Generator):
            meta["generators"][name] = _encode(value.bit_generator.state)
        elif _plain(value):
            meta["scalars"][name] = list(value) if isinstance(value, tuple) else value
            if isinstance(value, tuple):
                meta["tuples"].append(name)
        else:
            raise StateError(f"SimChip.{name}: a {type(value).__name__} cannot be saved; keep "
                             "die state in numpy arrays, numpy Generators or plain scalars, or "
                             "list it in sim_backend.state.REBUILT if it is rebuilt from the seed")
    return arrays, meta


def signature(chip) -> str:
    """A cheap fingerprint of a chip's non-array state: every pulse, forming, read or MVM
    draws from its generator, so a change of state changes this."""
    _, meta = capture(chip)
    return json.dumps(meta, sort_keys=True)


def restore(chip, arrays: dict[str, np.ndarray], meta: dict, where) -> None:
    """Overwrite a freshly built chip with a saved state; StateError if they disagree."""
    ours = {name for name in vars(chip) if name not in REBUILT}
    saved = set(arrays) | set(meta["scalars"]) | set(meta["generators"])
    if saved != ours:
        missing, unknown = sorted(ours - saved), sorted(saved - ours)
        raise StateError(f"{where}: saved by a simulator with other die state (missing: "
                         f"{', '.join(missing) or '-'}; unknown: {', '.join(unknown) or '-'}): "
                         "remove the state folder to start the wafer afresh")
    for name, value in arrays.items():
        current = getattr(chip, name)
        if name in meta["numpy_scalars"]:
            setattr(chip, name, value[()])
            continue
        if not isinstance(current, np.ndarray) or current.dtype != value.dtype \
                or current.ndim != value.ndim:
            raise StateError(f"{where}: {name} is saved as {value.dtype} {value.shape}, the "
                             "simulator holds another kind: remove the state folder to start "
                             "the wafer afresh")
        setattr(chip, name, np.require(value, requirements=["C", "W"]))
    for name, value in meta["scalars"].items():
        setattr(chip, name, tuple(value) if name in meta["tuples"] else value)
    for name, state in meta["generators"].items():
        getattr(chip, name).bit_generator.state = _decode(state)


def die_bytes(chip, clock_s: float, fp: dict) -> bytes:
    """One die's state as the bytes of an uncompressed ``.npz`` (fast to write and read)."""
    arrays, meta = capture(chip)
    meta.update(format=FORMAT, die=chip.die_id, clock_s=float(clock_s), fingerprint=fp)
    buf = io.BytesIO()
    payload = {META: np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays}
    np.savez(buf, **payload)
    return buf.getvalue()


# -- files ---------------------------------------------------------------------------------
def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` so that a crash at any instant leaves one of the two."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable (not every file system allows it)
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def held_signals():
    """SIGINT and SIGTERM wait until the block ends (main thread only): an instrument
    finishes the operation in hand whatever happens to its host, so neither a chip nor
    its saved state is left half-changed by a signal."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class StateFolder:
    """One wafer's state folder, held by this process from construction to :meth:`close`."""

    def __init__(self, path: str | Path, fp: dict) -> None:
        self.path = Path(path)
        self.fingerprint = fp
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot make the simulated wafer state folder {self.path}: "
                             f"{exc.strerror or exc}") from None
        self._fd: int | None = self._lock()
        self._release = weakref.finalize(self, os.close, self._fd)  # dropped unclosed: let go
        try:
            for tmp in self.path.glob(".*.tmp"):  # a writer killed mid-write (we hold the lock)
                tmp.unlink(missing_ok=True)
            self.saved = {int(_DIE_FILE.fullmatch(p.name).group(1)) for p in self.saved_files()}
            self.clock_s = self._check()
        except BaseException:
            self.close()
            raise

    def _lock(self) -> int:
        where = self.path / LOCK_FILE
        try:
            fd = os.open(where, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise StateError(f"cannot open {where}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 100, 0).decode(errors="replace").strip() or "pid unknown"
            os.close(fd)
            ours = holder == f"pid {os.getpid()}"
            who, what = (("another bench of this process", "close that bench first") if ours
                         else ("another process", "wait for it to end"))
            raise StateBusyError(f"simulated wafer state {self.path} is in use by {who} "
                                 f"({holder}); {what}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        return fd

    def _check(self) -> float:
        """The saved virtual clock; StateError if the folder is another wafer's."""
        where = self.path / WAFER_FILE
        try:
            doc = json.loads(where.read_text())
            saved_format, fp, clock_s = doc["format"], doc["fingerprint"], float(doc["clock_s"])
        except FileNotFoundError:
            if self.saved:
                raise StateError(f"simulated wafer state {self.path} has die files but no "
                                 f"{WAFER_FILE}: remove that folder to start the wafer "
                                 "afresh") from None
            self.write_wafer(0.0)
            return 0.0
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StateError(f"{where} is damaged ({exc}): remove {self.path} to start the "
                             "wafer afresh") from None
        if saved_format != FORMAT:
            raise StateError(f"{where} has state format {saved_format!r}, this simulator "
                             f"reads {FORMAT}: remove {self.path} to start the wafer afresh")
        if fp != self.fingerprint:
            raise _mismatch(self.path, fp, self.fingerprint)
        return clock_s

    def saved_files(self) -> list[Path]:
        return sorted(p for p in self.path.iterdir() if _DIE_FILE.fullmatch(p.name))

    def die_file(self, die_id: int) -> Path:
        return self.path / f"die_{int(die_id)}.npz"

    def has(self, die_id: int) -> bool:
        return int(die_id) in self.saved

    def load(self, chip) -> float:
        """Restore ``chip`` (freshly built for its die) from its file; the file's clock."""
        where = self.die_file(chip.die_id)
        try:
            with np.load(where, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            meta = json.loads(arrays.pop(META).tobytes())
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise StateError(f"{where} is damaged ({exc}): remove it to start die "
                             f"{chip.die_id} afresh") from None
        if meta.get("format") != FORMAT or meta.get("die") != chip.die_id:
            raise StateError(f"{where} is not die {chip.die_id}'s state in format {FORMAT}: "
                             "remove it to start that die afresh")
        if meta.get("fingerprint") != self.fingerprint:
            raise _mismatch(where, meta.get("fingerprint") or {}, self.fingerprint)
        restore(chip, arrays, meta, where)
        return float(meta["clock_s"])

    def save_die(self, chip, clock_s: float) -> None:
        write_atomic(self.die_file(chip.die_id), die_bytes(chip, clock_s, self.fingerprint))
        self.saved.add(int(chip.die_id))

    def write_wafer(self, clock_s: float) -> None:
        doc = {"format": FORMAT, "fingerprint": self.fingerprint, "clock_s": float(clock_s),
               "dies": sorted(self.saved),
               "saved": datetime.now(UTC).isoformat(timespec="seconds")}
        write_atomic(self.path / WAFER_FILE, (json.dumps(doc, indent=1) + "\n").encode())
        self.clock_s = float(clock_s)

    def close(self) -> None:
        """Let go of the folder (the kernel would, at exit or kill -9)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        self._release.detach()
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
