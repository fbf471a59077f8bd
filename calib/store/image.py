"""The die file as bytes: its seal, and the atomic replace that writes it.

Every change to a die file is made on a copy in memory (h5py on an ``io.BytesIO``),
so the HDF5 library never writes to the disk: the toolkit writes the finished
image itself, to a temporary file beside the die file, flushes it to the disk
(``fsync``) and swaps it in with ``os.replace``. A crash, Ctrl-C or ``kill -9``
at any moment leaves the previous file intact; a full or read-only disk shows
up as one ``OSError`` from a plain write, never inside the HDF5 library.

The seal: format-version-2 files carry a 512-byte HDF5 user block (HDF5 and
h5py skip it) holding a SHA-256 digest and the size of the rest of the file.
Every open checks it before the HDF5 library sees a byte, so bit flips, a
truncated copy or an edit made outside the toolkit are reported as a damaged
die file instead of crashing or hanging the library.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from pathlib import Path

from calib.store.errors import DieStoreError

USERBLOCK = 512
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
SEAL_MAGIC = b"aimc-calib die file\n"


def _header(body) -> bytes:
    return (SEAL_MAGIC + b"format_version 2\n"
            + b"sha256 " + hashlib.sha256(body).hexdigest().encode() + b"\n"
            + b"size " + str(len(body)).encode() + b"\n").ljust(USERBLOCK, b"\0")


def seal(image: bytes) -> bytes:
    """``image`` (an HDF5 file with a 512-byte user block) with its seal written in."""
    body = memoryview(image)[USERBLOCK:]
    if bytes(body[:8]) != HDF5_SIGNATURE:
        raise AssertionError("die file image without its user block")
    return _header(body) + body


def is_sealed(data: bytes) -> bool:
    return data[:len(SEAL_MAGIC)] == SEAL_MAGIC


def verify(data: bytes, where) -> bool:
    """Check the seal; True if sealed, False if the file has none (version 1, foreign).

    DieStoreError if the seal is damaged or does not match the content.
    """
    if not is_sealed(data):
        if data[USERBLOCK:USERBLOCK + 8] == HDF5_SIGNATURE and data[:8] != HDF5_SIGNATURE:
            raise DieStoreError(f"{where}: damaged die file: its header (first 512 bytes) is "
                                "damaged")
        return False
    body = memoryview(data)[USERBLOCK:]
    if data[:USERBLOCK] == _header(body):
        return True
    fields = {}
    for line in data[:USERBLOCK].split(b"\n"):
        key, _, value = line.partition(b" ")
        fields[key] = value
    hint = "DieStore(path, check=False).reseal() accepts an intended edit"
    said = fields.get(b"size", b"").strip()
    if said.isdigit() and int(said) != len(body):
        if len(body) < int(said):
            raise DieStoreError(f"{where}: damaged die file: truncated ({len(data)} of "
                                f"{int(said) + USERBLOCK} bytes)")
        raise DieStoreError(f"{where}: damaged die file: {len(data)} bytes, its header says "
                            f"{int(said) + USERBLOCK} (changed outside aimc-calib? {hint})")
    if fields.get(b"sha256", b"") != hashlib.sha256(body).hexdigest().encode():
        raise DieStoreError(f"{where}: damaged die file: its checksum does not match (bit flips, "
                            f"or changed outside aimc-calib: {hint})")
    raise DieStoreError(f"{where}: damaged die file: its header (first 512 bytes) is damaged")


def read_image(path: Path) -> bytes | None:
    """The file's bytes; None if there is no file. DieStoreError if it cannot be read."""
    try:
        with open(path, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise DieStoreError(f"{path}: not a die file (not a regular file)")
            return fh.read()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise DieStoreError(f"{path}: is a folder, not a die file") from None
    except OSError as exc:
        raise DieStoreError(f"cannot read {path}: {exc.strerror or exc}") from None


def temp_files(path: Path) -> list[Path]:
    """Temporary copies of ``path`` left by writers that were killed mid-write."""
    try:
        return [p for p in path.parent.glob(f".{_glob_escape(path.name)}.*.tmp") if p.is_file()]
    except OSError:
        return []


def clean_temp_files(path: Path) -> list[Path]:
    """Remove every temporary copy of ``path``; call it with the lock held.

    Every writer takes the lock before it makes a temporary copy and removes the
    copy before it lets go, so with the lock held any copy left is a dead
    writer's (``kill -9``, power cut).
    """
    removed = []
    for tmp in temp_files(path):
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


def write_image(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` by ``data`` (OSError if the disk refuses).

    A new file gets mode 0o666 less the umask; a replaced file keeps its mode.
    """
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = None
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # less the umask
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if mode is not None:
                os.fchmod(fd, mode)
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
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)
