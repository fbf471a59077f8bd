"""The per-die HDF5 store (layout: docs/die-file.md).

``DieStore`` (:mod:`calib.store.diefile`) reads and writes one die's file;
:mod:`calib.store.schema` declares what each job may write and the format version.
"""

from calib.store.diefile import DieStore, RunInfo, check_die, check_wafer, die_path
from calib.store.errors import DieFileBusy, DieStoreError
from calib.store.fallback import load_fallback
from calib.store.lock import DEFAULT_TIMEOUT_S
from calib.store.schema import (
    FORMAT,
    FORMAT_VERSION,
    JOBS,
    READABLE_VERSIONS,
    STATUSES,
    check_arrays,
)

__all__ = [
    "DEFAULT_TIMEOUT_S", "FORMAT", "FORMAT_VERSION", "JOBS", "READABLE_VERSIONS", "STATUSES",
    "DieFileBusy", "DieStore", "DieStoreError", "RunInfo", "check_arrays", "check_die",
    "check_wafer", "die_path", "load_fallback",
]
