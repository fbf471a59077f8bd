"""One table of the die files of one or many wafers: a row per die (docs/analysis.md).

Each row holds the die's position and bin from the wafer index (if the wafer has
one) and the summary figures of the newest *complete* run of every job in its die
file, flattened to ``<job>.<key>`` columns. A die file that cannot be used
(damaged, foreign, another die's) is a row with its ``error``, never a traceback
and never a silently missing die.

Reading 10,000 files is the cost, so every wafer folder keeps a cache
(``<wafer>/.analysis/summary.parquet``: the rows read from its die files and, per
file, the manifest they were read under: size, mtime_ns, inode, seal digest). A
rebuild reads only files that are new or whose size, mtime or inode changed, and
drops removed ones; the cache is replaced atomically. Files are read in batches
(:data:`BATCH_FILES`), in this process or on a Dask cluster (``dask=``); the table
is the same either way.

pandas and pyarrow (the ``analysis`` extra) are imported only when a table is
built; dask.distributed only for ``dask=``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calib import __version__
from calib.store import DieStoreError
from calib.store.summaries import read_summaries
from instruments.errors import UserError

__all__ = ["AnalysisError", "MissingExtraError", "WaferStats", "WaferTable", "build_table",
           "dask_client", "flatten", "read_batch", "read_index", "wafer_table"]

INDEX_FILE = "wafer-index.json"
INDEX_FORMAT = "aimc-calib wafer index"
INDEX_VERSION = 1
CACHE_DIR = ".analysis"
CACHE_FILE = "summary.parquet"
CACHE_FORMAT = "aimc-calib analysis cache"
CACHE_VERSION = 1
BATCH_FILES = 200  # die files per task: 10,000 files are 50 tasks, not 10,000
CONNECT_TIMEOUT_S = 10.0  # to reach a running Dask scheduler
LIST_MAX = 4  # a summary list of up to this many numbers becomes <key>.0, <key>.1, ...
DIE_FILE = re.compile(r"die_(0|[1-9][0-9]*)\.h5")
#: faults that leave a cell unusable: stuck-low, stuck-high, unformed, unresponsive
STUCK_FAULTS = ("stuck_low", "stuck_high", "unformed", "unresponsive")

#: the table's first columns, in order; then ``<job>.run`` and ``<job>.<figure>`` by job
COLUMNS = ("wafer", "die", "x", "y", "radius", "state", "bin", "bin_name", "file", "runs",
           "error")
TEXT_COLUMNS = frozenset({"wafer", "state", "bin_name", "file", "error"})
MANIFEST = ("manifest.size", "manifest.mtime_ns", "manifest.inode")  # what a rebuild compares
INT_COLUMNS = frozenset({"die", *MANIFEST})

EXTRA = "calib analyze needs pandas and pyarrow: pip install 'aimc-calib[analysis]'"
DASK_EXTRA = "calib analyze --dask needs dask.distributed: pip install 'aimc-calib[analysis]'"


class AnalysisError(UserError, ValueError):
    """The analysis cannot run as asked (not a wafer folder, a bad wafer index, the cluster)."""


class MissingExtraError(AnalysisError, ImportError):
    """An optional dependency of the analysis is not installed."""


def require_extra() -> None:
    """pandas and pyarrow, or one line on how to install them."""
    try:
        import pandas  # noqa: F401
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise MissingExtraError(EXTRA) from None


# -- the wafer folder ----------------------------------------------------------------------

@dataclass(frozen=True)
class _Wafer:
    path: Path  # absolute
    name: str
    files: dict[str, tuple[int, tuple[int, int, int]]]  # file name -> (die, (size, mtime_ns, ino))
    index: dict[int, dict] | None
    ignored: tuple[str, ...]  # .h5 files not named die_<id>.h5


def _open_wafer(path: str | Path) -> _Wafer:
    folder = Path(path).expanduser()
    if not str(path).strip():
        raise AnalysisError("give a wafer folder (RESULTS/WAFER), not an empty name")
    if not folder.exists():
        raise AnalysisError(f"{folder}: no such folder (give a wafer folder, RESULTS/WAFER)")
    if not folder.is_dir():
        raise AnalysisError(f"{folder}: not a folder (give a wafer folder, RESULTS/WAFER)")
    folder = folder.resolve()
    files: dict[str, tuple[int, tuple[int, int, int]]] = {}
    ignored: list[str] = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                match = DIE_FILE.fullmatch(entry.name)
                if match is None:
                    if entry.name.lower().endswith((".h5", ".hdf5")):
                        ignored.append(entry.name)
                    continue
                try:
                    st = entry.stat()
                    key = (st.st_size, st.st_mtime_ns, st.st_ino)
                except OSError:
                    key = (-1, -1, -1)  # read anyway: the reader says what is wrong
                files[entry.name] = (int(match.group(1)), key)
    except OSError as exc:
        raise AnalysisError(f"cannot read the folder {folder}: {exc.strerror or exc}") from None
    index = read_index(folder)
    if not files and index is None:
        hint = _wafer_folders_in(folder)
        raise AnalysisError(f"{folder}: not a wafer folder (no die_<id>.h5 files, no "
                            f"{INDEX_FILE})" + (f"; it holds the wafer folders {hint}: give "
                                                "RESULTS/WAFER" if hint else ""))
    return _Wafer(folder, folder.name, files, index, tuple(sorted(ignored)))


def _wafer_folders_in(folder: Path) -> str:
    try:
        names = sorted(p.name for p in folder.iterdir() if p.is_dir() and (
            (p / INDEX_FILE).exists() or next(p.glob("die_*.h5"), None) is not None))
    except OSError:
        return ""
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def read_index(folder: str | Path) -> dict[int, dict] | None:
    """The wafer index of ``folder`` as {die: {"x", "y", "state", "bin", "bin_name"}};
    None if the folder has none. AnalysisError (one line) for an index that is not one."""
    path = Path(folder) / INDEX_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise AnalysisError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") \
            from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise AnalysisError(f"{path}: damaged wafer index (not JSON: {exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != INDEX_FORMAT:
        raise AnalysisError(f"{path}: not an aimc-calib wafer index (format "
                            f"{doc.get('format') if isinstance(doc, dict) else None!r})")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise AnalysisError(f"{path}: damaged wafer index (version {version!r})")
    if version > INDEX_VERSION:
        raise AnalysisError(f"{path}: wafer index version {version} is newer than this toolkit "
                            f"reads ({INDEX_VERSION}); upgrade aimc-calib")
    wafer = doc.get("wafer")
    if wafer is not None and wafer != Path(folder).name:
        raise AnalysisError(f"{path}: the index is of wafer {wafer!r}, the folder is "
                            f"{Path(folder).name!r}: refusing to mix two wafers")
    dies = doc.get("dies", {})
    if not isinstance(dies, dict):
        raise AnalysisError(f"{path}: damaged wafer index ('dies' is not an object)")
    out: dict[int, dict] = {}
    for key, entry in dies.items():
        if not (isinstance(key, str) and key.isdigit()) or not isinstance(entry, dict):
            raise AnalysisError(f"{path}: damaged wafer index (die {key!r} is not a die id "
                                "with an object)")
        out[int(key)] = {name: _index_value(path, key, name, entry.get(name))
                         for name in ("x", "y", "state", "bin", "bin_name")}
    return out


def _index_value(path: Path, die: str, name: str, value: Any) -> Any:
    if value is None:
        return math.nan if name in ("x", "y", "bin") else None
    if name in ("state", "bin_name"):
        if isinstance(value, str):
            return value
    elif isinstance(value, int | float) and not isinstance(value, bool) and \
            math.isfinite(value) and float(value).is_integer():
        return float(value)
    raise AnalysisError(f"{path}: damaged wafer index (die {die} {name} is {value!r})")


# -- one die file -> one row ---------------------------------------------------------------

def flatten(summary: Mapping[str, Any], prefix: str) -> dict[str, float]:
    """Every number of a run's summary as ``<prefix>.<key>[.<key>...]`` (float; JSON null
    is NaN; booleans 0/1; short lists of numbers ``<key>.0`` ...). Text is left out."""
    out: dict[str, float] = {}

    def walk(value: Any, key: str) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, f"{key}.{k}")
        elif isinstance(value, bool | int | float) or value is None:
            out[key] = math.nan if value is None else float(value)
        elif isinstance(value, list) and 0 < len(value) <= LIST_MAX and all(
                isinstance(v, bool | int | float) or v is None for v in value):
            for i, v in enumerate(value):
                out[f"{key}.{i}"] = math.nan if v is None else float(v)

    for k, v in summary.items():
        if k != "die":  # the die id is the row's
            walk(v, f"{prefix}.{k}")
    return out


def _derived(row: dict) -> None:
    """Figures the summaries imply but do not hold: the stuck fraction of a map."""
    cells = row.get("variability.cells")
    faults = [row.get(f"variability.faults.{name}") for name in STUCK_FAULTS]
    if cells and all(f is not None for f in faults):
        row["variability.stuck_fraction"] = sum(faults) / cells


def read_die_file(path: str, wafer: str, die: int) -> dict:
    """The row of one die file: figures of the newest complete run of each job, or its
    ``error``. ``cacheable`` is False when the file could not be read at all (a
    permission, a vanished file): that may change without the file changing."""
    name = os.path.basename(path)
    row: dict[str, Any] = {"name": name, "die": die, "runs": math.nan, "error": None,
                           "manifest.seal": None, "cacheable": True}
    try:
        st = os.stat(path)  # before reading: a file replaced meanwhile is read again next time
        row.update({"manifest.size": st.st_size, "manifest.mtime_ns": st.st_mtime_ns,
                    "manifest.inode": st.st_ino})
        found = read_summaries(path, wafer, die)
    except DieStoreError as exc:
        row["error"] = str(exc)
        return row
    except FileNotFoundError:
        row.update(error=f"{path}: vanished while reading, or not at this path on this "
                         "computer (Dask workers need the die files at the same paths)",
                   cacheable=False)
        return row
    except OSError as exc:
        row.update(error=f"cannot read {path}: {exc.strerror or exc}", cacheable=False)
        return row
    except Exception as exc:  # a die file must never stop the table; named in its row
        row.update(error=f"{path}: cannot be read ({type(exc).__name__}: {exc})",
                   cacheable=False)
        return row
    row["runs"] = float(len(found.runs))
    row["manifest.seal"] = found.seal
    for job, run in sorted(found.latest().items()):
        row[f"{job}.run"] = run.run_id
        row.update(flatten(run.summary, job))
    _derived(row)
    return row


def read_batch(items: list[tuple[str, str, int]]) -> list[dict]:
    """Rows of a batch of (path, wafer, die): the unit of work a Dask worker runs."""
    return [read_die_file(path, wafer, die) for path, wafer, die in items]


# -- the cache -----------------------------------------------------------------------------

def _cache_path(folder: Path) -> Path:
    return folder / CACHE_DIR / CACHE_FILE


def _load_cache(folder: Path) -> tuple[dict[str, dict], str]:
    """(rows by file name, note); {} with a note if there is no usable cache."""
    import pyarrow.parquet as pq

    path = _cache_path(folder)
    if not path.exists():
        return {}, "new"
    try:
        table = pq.read_table(path)
        info = json.loads((table.schema.metadata or {}).get(b"aimc-calib", b"{}"))
    except Exception as exc:  # a damaged cache is rebuilt, never trusted
        return {}, f"unreadable cache rebuilt ({type(exc).__name__})"
    if info.get("format") != CACHE_FORMAT or info.get("version") != CACHE_VERSION or \
            info.get("toolkit_version") != __version__:
        return {}, "cache of another toolkit version rebuilt"
    # null is a column this row never had (the table is the union of every row's keys)
    rows = [{k: v for k, v in r.items() if v is not None} for r in table.to_pylist()]
    if any(not isinstance(r.get("name"), str) for r in rows):
        return {}, "unreadable cache rebuilt (no file names)"
    return {r["name"]: r for r in rows}, "used"


def _arrow_type(pa, key: str, values: list) -> Any:
    if key in INT_COLUMNS:
        return pa.int64()
    if key in TEXT_COLUMNS or key in ("name", "manifest.seal") or key.endswith(".run") or \
            any(isinstance(v, str) for v in values):
        return pa.string()
    return pa.float64()


def _save_cache(folder: Path, rows: list[dict]) -> str | None:
    """Replace the cache atomically with ``rows``; None, or why it could not be written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    keys = sorted({k for r in rows for k in r} | {"name", "die", "runs", "error",
                                                   "manifest.seal", *MANIFEST})
    schema = pa.schema([(k, _arrow_type(pa, k, [r.get(k) for r in rows])) for k in keys],
                       metadata={"aimc-calib": json.dumps({
                           "format": CACHE_FORMAT, "version": CACHE_VERSION,
                           "toolkit_version": __version__, "wafer": folder.name})})
    table = pa.Table.from_pylist(rows, schema=schema)
    path = _cache_path(folder)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(exist_ok=True)
        with open(tmp, "wb") as fh:
            pq.write_table(table, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        return f"cache not written ({path}: {exc.strerror or exc})"
    return None


# -- reading many files: here or on a Dask cluster -----------------------------------------

def check_dask(spec: Any) -> None:
    """Refuse a ``dask=`` that is no cluster before any file is read."""
    if isinstance(spec, str) and spec != "local" and \
            not re.fullmatch(r"(tcp|tls)://[^\s/]+:\d+", spec):
        raise AnalysisError(f"--dask {spec!r}: give 'local' or the scheduler's address, "
                            "tcp://HOST:PORT")


def dask_client(spec: Any) -> tuple[Any, Callable[[], None]]:
    """(client, close) for ``spec``: "local" starts a LocalCluster on 127.0.0.1 (2 worker
    processes, 1 thread each, no dashboard); "tcp://HOST:PORT" connects to a running
    scheduler; a ``distributed.Client`` is used as it is (and left open)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise MissingExtraError(DASK_EXTRA) from None
    if not isinstance(spec, str):
        if not all(hasattr(spec, name) for name in ("map", "gather", "scheduler_info")):
            raise AnalysisError(f"dask={spec!r}: give 'local', 'tcp://HOST:PORT' or a "
                                "distributed.Client")
        return spec, lambda: None
    if spec == "local":
        # every socket on loopback: the scheduler, the nannies, the workers and the
        # scheduler's HTTP endpoint (dashboard off; port 0: never the shared 8787)
        cluster = LocalCluster(host="127.0.0.1", n_workers=2, threads_per_worker=1,
                               processes=True, dashboard_address=None,
                               scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                               silence_logs=logging.ERROR)
        client = Client(cluster)

        def close() -> None:
            client.close()
            cluster.close()

        return client, close
    check_dask(spec)
    try:
        client = Client(spec, timeout=f"{CONNECT_TIMEOUT_S}s")
    except Exception as exc:
        raise AnalysisError(f"cannot reach the Dask scheduler at {spec}: "
                            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                            ) from None
    return client, client.close


def _batches(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _read_all(items: list[tuple[str, str, int]], dask: Any,
              progress: Callable[[int, int], None] | None) -> list[dict]:
    total = len(items)
    if not items:
        return []
    if dask is None:
        rows: list[dict] = []
        for batch in _batches(items, BATCH_FILES):
            rows += read_batch(batch)
            if progress is not None:
                progress(len(rows), total)
        return rows
    client, close = dask_client(dask)
    try:
        workers = max(1, len(client.scheduler_info().get("workers", {})))
        size = max(1, min(BATCH_FILES, math.ceil(total / (4 * workers))))
        batches = _batches(items, size)
        futures = client.map(read_batch, batches, pure=False)
        if progress is not None:
            from distributed import as_completed

            sizes = {future.key: len(batch) for future, batch in zip(futures, batches,
                                                                      strict=True)}
            done = 0
            for future in as_completed(futures):
                done += sizes[future.key]
                progress(done, total)
        results = client.gather(futures)
    except UserError:
        raise
    except Exception as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise AnalysisError(f"the Dask cluster failed ({text}); its workers need aimc-calib "
                            "installed and the die files at the same paths") from None
    finally:
        close()
    return [row for batch in results for row in batch]


# -- the table -----------------------------------------------------------------------------

@dataclass(frozen=True)
class WaferStats:
    """How the rows of one wafer were obtained."""

    wafer: str
    folder: str
    dies: int  # rows: die files and dies only the index names
    files: int  # die files in the folder
    read: int  # die files read this time
    reused: int  # rows taken from the cache
    unchanged: int  # of the read ones: same seal digest as cached (touched, not changed)
    removed: int  # cached rows whose file is gone
    errors: int  # rows with an error
    ignored: tuple[str, ...]  # .h5 files not named die_<id>.h5
    index: bool  # the wafer has a wafer-index.json
    cache: str  # used | updated | new | rebuilt | off, or why it was not written


@dataclass(frozen=True)
class WaferTable:
    frame: Any  # pandas.DataFrame, one row per die
    wafers: tuple[WaferStats, ...]


def _paths(paths: Any) -> list:
    if isinstance(paths, str | os.PathLike):
        return [paths]
    if isinstance(paths, Iterable):
        out = list(paths)
        if out:
            return out
    raise AnalysisError("give one or more wafer folders (RESULTS/WAFER)")


def build_table(paths: Any, dask: Any = None, *, cache: bool = True, rebuild: bool = False,
                progress: Callable[[int, int], None] | None = None) -> WaferTable:
    """The table of the wafer folders ``paths``, with how each wafer's rows were obtained.

    ``cache``: use and update each wafer's cache; ``rebuild``: read every die file
    (and rewrite the cache); ``progress(done, total)``: die files read so far.
    """
    require_extra()
    check_dask(dask)
    wafers: list[_Wafer] = []
    for path in _paths(paths):
        w = _open_wafer(path)
        if any(o.path == w.path for o in wafers):
            continue
        other = next((o for o in wafers if o.name == w.name), None)
        if other is not None:
            raise AnalysisError(f"two wafer folders named {w.name!r} ({other.path}, {w.path}): "
                                "analyse them separately")
        wafers.append(w)
    plans = []
    work: list[tuple[str, str, int]] = []
    for w in wafers:
        cached, note = ({}, "off") if not cache else ({}, "rebuilt") if rebuild \
            else _load_cache(w.path)
        reuse, todo = {}, []
        for name, (die, key) in sorted(w.files.items(), key=lambda kv: kv[1][0]):
            row = cached.get(name)
            if row is not None and tuple(row.get(k) for k in MANIFEST) == key and key[0] >= 0:
                reuse[name] = row
            else:
                todo.append(name)
                work.append((str(w.path / name), w.name, die))
        plans.append((w, cached, note, reuse, todo))
    fresh = {(row_wafer, row["name"]): row for (_, row_wafer, _), row in
             zip(work, _read_all(work, dask, progress), strict=True)}
    rows: list[dict] = []
    stats = []
    for w, cached, note, reuse, todo in plans:
        new = [fresh[(w.name, name)] for name in todo]
        removed = sum(1 for name in cached if name not in w.files)
        unchanged = sum(1 for r in new if r["manifest.seal"] is not None and
                        cached.get(r["name"], {}).get("manifest.seal") == r["manifest.seal"])
        file_rows = {**reuse, **{r["name"]: r for r in new}}
        if cache and (new or removed or note != "used"):
            keep = [{k: v for k, v in r.items() if k != "cacheable"}
                    for r in file_rows.values() if r.get("cacheable", True)]
            note = _save_cache(w.path, keep) or ("updated" if note == "used" else note)
        wafer_rows = _join_index(w, file_rows)
        rows += wafer_rows
        stats.append(WaferStats(
            wafer=w.name, folder=str(w.path), dies=len(wafer_rows), files=len(w.files),
            read=len(new), reused=len(reuse), unchanged=unchanged, removed=removed,
            errors=sum(1 for r in wafer_rows if r.get("error")), ignored=w.ignored,
            index=w.index is not None, cache=note))
    return WaferTable(_frame(rows), tuple(stats))


def wafer_table(paths: Any, dask: Any = None, *, cache: bool = True,
                rebuild: bool = False) -> Any:
    """One pandas DataFrame of the wafer folders ``paths`` (a path or a list), a row per die.

    ``dask``: None (read here), "local" (a LocalCluster on 127.0.0.1), "tcp://HOST:PORT"
    (a running scheduler) or a ``distributed.Client``; the table is the same.
    """
    return build_table(paths, dask, cache=cache, rebuild=rebuild).frame


def _join_index(w: _Wafer, file_rows: dict[str, dict]) -> list[dict]:
    """Rows of one wafer: every die file, and every die the index names without one."""
    index = w.index or {}
    by_die = {r["die"]: r for r in file_rows.values()}
    rows = []
    for die in sorted(set(by_die) | set(index)):
        src = by_die.get(die)
        row = {k: v for k, v in src.items() if not k.startswith("manifest.")
               and k not in ("name", "cacheable")} if src else {"die": die}
        row["wafer"] = w.name
        row["file"] = str(w.path / src["name"]) if src else None
        entry = index.get(die, {})
        row.update({"x": entry.get("x", math.nan), "y": entry.get("y", math.nan),
                    "state": entry.get("state"), "bin": entry.get("bin", math.nan),
                    "bin_name": entry.get("bin_name")})
        if src is None and row["state"] == "done":
            row["error"] = f"die_{die}.h5 missing (the wafer index says the die is done)"
        rows.append(row)
    _radius(rows)
    return rows


def _radius(rows: list[dict]) -> None:
    """Normalised radius from grid positions: centre = midpoint of the die grid, 1 = the
    die farthest from it (grid units: square dies assumed)."""
    placed = [r for r in rows if _finite(r["x"]) and _finite(r["y"])]
    for r in rows:
        r["radius"] = math.nan
    if not placed:
        return
    xs, ys = [r["x"] for r in placed], [r["y"] for r in placed]
    cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    dist = [math.hypot(r["x"] - cx, r["y"] - cy) for r in placed]
    far = max(dist)
    for r, d in zip(placed, dist, strict=True):
        r["radius"] = d / far if far > 0 else 0.0


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _column_order(keys: set[str]) -> list[str]:
    def key(col: str) -> tuple:
        job, _, rest = col.partition(".")
        return (job, rest != "run", rest)

    return [*COLUMNS, *sorted(keys - set(COLUMNS), key=key)]


def _frame(rows: list[dict]) -> Any:
    """The DataFrame, dtypes fixed so that every way of building it gives the same table:
    text columns object (None: none), ``die`` int64, everything else float64 (NaN)."""
    import numpy as np
    import pandas as pd

    rows = sorted(rows, key=lambda r: (r["wafer"], r["die"]))
    columns = _column_order({k for r in rows for k in r})
    data = {}
    for col in columns:
        values = [r.get(col) for r in rows]
        if col == "die":
            data[col] = np.array(values, dtype=np.int64)
        elif col in TEXT_COLUMNS or col.endswith(".run") or \
                any(isinstance(v, str) for v in values):
            data[col] = pd.Series([v if isinstance(v, str) else None for v in values],
                                  dtype=object)
        else:
            data[col] = np.array([math.nan if v is None else v for v in values],
                                 dtype=np.float64)
    return pd.DataFrame(data, columns=columns).reset_index(drop=True)
