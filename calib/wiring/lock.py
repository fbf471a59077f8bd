"""Exclusive use of a bench's instruments for the length of a job.

Two processes driving one station interleave their commands: a second
``calib program`` would move the prober under a running one. Each resource
string a bench opens is claimed with an advisory lock file (``fcntl.flock``,
released by the kernel if the process dies, so a killed job never leaves a
bench locked) in one folder of this host, before any byte is sent. VISA
exclusive locks, where a resource supports them, are the session's business
(``exclusive = true``); this guards the hosts-own case, sockets included.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sys
import tempfile
from pathlib import Path

from instruments.errors import UserError


class BenchBusyError(UserError, RuntimeError):
    """Another process holds one of this bench's instruments."""


def lock_dir() -> Path:
    """``$AIMC_CALIB_LOCK_DIR``, or a folder in the system's temp dir."""
    path = Path(os.environ.get("AIMC_CALIB_LOCK_DIR")
                or Path(tempfile.gettempdir()) / "aimc-calib-locks")
    path.mkdir(parents=True, exist_ok=True)
    try:
        path.chmod(0o1777)  # shared by every user of the host, like /tmp
    except OSError:
        pass
    return path


class BenchLock:
    """Holds a lock on each resource string until :meth:`release`."""

    def __init__(self, resources: list[str]) -> None:
        self._held: list[int] = []
        try:
            for resource in sorted(set(resources)):
                self._claim(resource)
        except BaseException:
            self.release()
            raise

    def _claim(self, resource: str) -> None:
        digest = hashlib.sha1(resource.encode()).hexdigest()[:16]
        path = lock_dir() / f"{digest}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise BenchBusyError(f"bench busy: {resource} is in use by {holder}; wait for "
                                 "that job to end") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} ({' '.join(sys.argv[:3])})".encode(), 0)
        self._held.append(fd)

    def release(self) -> None:
        for fd in self._held:
            try:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        self._held.clear()
