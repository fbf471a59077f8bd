"""The exclusive inter-process lock of a die file.

``fcntl.flock`` on a sidecar file next to the die file (``.die_12.h5.lock``), so
two processes on one die file (two terminals, a sweep and a manual run) take
turns: every read-copy-replace and every run-number allocation happens with the
lock held. The kernel drops the lock when its holder dies, even by ``kill -9``,
so a crash never leaves it held. While held, the sidecar holds the owner's pid
(for the "busy" message); the sidecar itself stays (deleting a lock file races
with the next process opening it).

flock works between processes on one computer and, on Linux, on NFS (as a
POSIX lock); on other network file systems it may be local to each computer.
"""

from __future__ import annotations

import errno
import os
import random
import threading
import time
from pathlib import Path

from calib.store.errors import DieFileBusy, DieStoreError

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None  # type: ignore[assignment]

DEFAULT_TIMEOUT_S = 30.0


def lock_path_for(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


class DieLock:
    """Exclusive, re-entrant (within the instance) lock of one die file."""

    def __init__(self, die_file: Path, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.die_file = die_file
        self.path = lock_path_for(die_file)
        self.timeout_s = float(timeout_s)
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    def __enter__(self) -> DieLock:
        if not self._thread_lock.acquire(timeout=max(self.timeout_s, 0.0)):
            raise DieFileBusy(f"die file {self.die_file} busy (held by pid {os.getpid()}, "
                              "another thread)")
        try:
            if self._depth == 0:
                self._fd = self._acquire()
            self._depth += 1
        except BaseException:
            self._thread_lock.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._depth -= 1
            if self._depth == 0 and self._fd is not None:
                fd, self._fd = self._fd, None
                try:
                    os.ftruncate(fd, 0)
                except OSError:
                    pass
                try:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                finally:
                    os.close(fd)
        finally:
            self._thread_lock.release()

    @property
    def held(self) -> bool:
        return self._depth > 0

    def _acquire(self) -> int:
        if fcntl is None:
            raise DieStoreError(f"cannot lock {self.die_file}: file locking needs a POSIX "
                                "system (fcntl)")
        fd = self._open()
        try:
            deadline = time.monotonic() + self.timeout_s
            delay = 0.002
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    pass
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise DieStoreError(f"cannot lock {self.die_file}: "
                                            f"{exc.strerror or exc}") from None
                if time.monotonic() >= deadline:
                    raise DieFileBusy(f"die file {self.die_file} busy (held by pid "
                                      f"{self.holder() or 'unknown'})")
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 1.5, 0.05)
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            except OSError:
                pass  # a read-only lock file (another user's): the lock holds all the same
            return fd
        except BaseException:
            os.close(fd)
            raise

    def _open(self) -> int:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            problem = folder_problem(self.path.parent, exc)
            raise DieStoreError(f"cannot write {self.die_file}: {problem}") from None
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except PermissionError:
            try:  # another user's lock file: flock needs no write access
                return os.open(self.path, os.O_RDONLY)
            except OSError as exc:
                raise DieStoreError(f"cannot write {self.die_file}: cannot open its lock file "
                                    f"{self.path}: {exc.strerror or exc}") from None
        except OSError as exc:
            raise DieStoreError(f"cannot write {self.die_file}: cannot open its lock file "
                                f"{self.path}: {exc.strerror or exc}") from None

    def holder(self) -> int | None:
        """The pid written in the lock file (the holder, while held)."""
        try:
            text = self.path.read_text().strip()
            return int(text) if text else None
        except (OSError, ValueError):
            return None


def folder_problem(folder: Path, exc: OSError) -> str:
    """Why ``folder`` cannot be made: the first part of it that is a file, or the OS reason."""
    for part in (folder, *folder.parents):
        try:
            if part.exists():
                if not part.is_dir():
                    return f"{part} is a file, not a folder"
                break
        except OSError:
            break
    return f"cannot create folder {folder}: {exc.strerror or exc}"
