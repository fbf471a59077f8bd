"""STDF V4 export of a wafer sweep, for the fab's yield tools (docs/sweep-stdf.md).

One file per wafer: FAR, MIR, WIR, then per tested die PIR, one PTR per scalar figure
and PRR (X/Y, hard and soft bin, pass/fail), then WRR, HBR and SBR per bin, PCR and MRR.
Only scalars go to STDF; per-cell maps stay in the die files (HDF5). Records are built
with Semi-ATE-STDF (the optional ``stdf`` extra), imported only when a file is written
or read, so the rest of the toolkit runs without it.

Choices (the spec leaves them to the writer):
- dies whose ``bin`` is None (not done) get no PIR/PRR: the spec has one PIR/PRR per
  part *tested* and no "not tested" flag; WRR's EXC_DESC says how many were left out.
  A binned die whose state is not "done" (a failed step binned as such) is written
  with PRR PART_FLG bit 2, "abnormal end of testing";
- a figure that is None, NaN, infinite or beyond float32 gets no PTR for that die (and
  is not counted in NUM_TEST): a placeholder with the "result invalid" flag reads as a
  measured 0.0 in tools that ignore TEST_FLG;
- test numbers are 1, 2, ... over the sorted figure names of all rows; TEST_TXT holds
  the name, so tools should key on it. Units only from ``meta["units"]`` (the summaries
  use ``_s`` for seconds and for siemens alike, so a suffix rule would guess wrong);
- no limits: TEST_FLG says "no pass/fail indication"; pass/fail lives in the bins;
- times are Unix seconds (as testers' ``time(NULL)``); the file is little-endian.

Semi-ATE-STDF 0.1.28 quirks met here (issue numbers: Semi-ATE/STDF), and the workarounds:
- ``record.__repr__()`` returns the packed bytes, so ``repr(record)`` raises TypeError:
  call ``__repr__()`` itself (as the library's tests do; issue #65 shows the idiom);
- ``set_value`` checks ``type(v) in [int]`` / ``[float, int]``: numpy scalars are
  refused; every value is passed through ``int()`` / ``float()``;
- PTR: a field after OPT_FLAG set (UNITS) without OPT_FLAG itself fails at pack with
  TypeError (OPT_FLAG's default is the int 255, not a bit list): OPT_FLAG is always set.
  The optional tail is all or nothing (Semi-ATE/Semi-ATE PR #57): with a unit the whole tail is
  written with "invalid" defaults, without one OPT_FLAG and the tail are left out;
- B*1 bit lists are most significant bit first (list[0] is bit 7), the reverse of the
  spec's numbering, and B*n unpacks least significant first (issue #52): bit fields are
  set as integers, and ``read_stdf`` returns them as integers;
- records take the host's byte order and FAR's CPU_TYPE the host's CPU unless told:
  both are set (little-endian, CPU_TYPE 2), so the bytes do not depend on the host;
- MIR SETUP_T/START_T and MRR FINISH_T default to the time the record object was made:
  always set from ``meta``;
- C*n strings are stripped, non-ASCII characters become spaces and anything past 255
  characters is cut, silently (the library's issue #40 fix);
- REC_LEN is U*2: a record over 65 535 bytes fails with a bare ``struct.error`` (about
  16 k R*4 values in one MPR) -- why per-cell maps are not exported;
- NaN packs silently into R*4 fields: non-finite figures are filtered out first;
- ``records_from_file`` takes a str or an open file but not a ``Path`` (STDFError), ends
  silently at a truncated record and skips record types it does not know (issues #18,
  #31): ``read_stdf`` walks the record headers itself and lets the library decode each
  record, so a truncated file is an error;
- decoding fills fields absent from a short record with their "missing" defaults
  (issue #65: a read-and-rewrite grows): ``read_stdf`` cannot tell absent from default.
"""

from __future__ import annotations

import math
import numbers
import struct
import time
from pathlib import Path

from calib import __version__
from calib.store.image import write_image
from instruments.errors import UserError

INSTALL_HINT = "STDF export needs Semi-ATE-STDF: pip install 'aimc-calib[stdf]'"
ROW_KEYS = ("die", "x", "y", "state", "bin")
NOT_FIGURES = frozenset(ROW_KEYS + ("bin_name", "soft_bin"))
HEAD, SITE, ALL = 1, 1, 255           # one head, one site; 255 = summary over all
MISSING_U4 = 4294967295               # the spec's "missing" for U*4 counts
FLOAT32_MAX = 3.4028234663852886e38
ENDIAN, CPU_TYPE = "<", 2             # little-endian (CPU_TYPE 2: i386 byte order)
PART_FAILED = 0x08                    # PRR PART_FLG bit 3; bit 4 clear = pass/fail valid
PART_ABNORMAL = 0x04                  # PRR PART_FLG bit 2: abnormal end of testing
NO_PASS_FAIL = 0x40                   # PTR TEST_FLG bit 6: no pass/fail indication
UNITS_ONLY = 0xFE                     # PTR OPT_FLAG: RES_SCAL valid (0), no limits/specs
HEADER_FIELDS = ("REC_LEN", "REC_TYP", "REC_SUB")


class StdfError(UserError, ValueError):
    """An STDF file cannot be written or read (extra missing, bad rows, damaged file)."""


def write_stdf(path, rows: list[dict], bins: dict[int, tuple[str, bool]], meta: dict) -> Path:
    """Write the sweep's rows as one STDF V4 file at ``path``, atomically; return the path.

    ``rows``: one dict per die in sweep order; ``bins``: {number: (name, passes)};
    ``meta``: lot, wafer, part_type, job, operator, station, tester, started, finished
    (Unix seconds), units ({figure: unit}) -- all optional.
    """
    stdf = _library()
    path = Path(path)
    meta = dict(meta or {})
    bins = _bin_table(bins)
    tested = [_check_row(i, row, bins) for i, row in enumerate(rows)]
    names = sorted({k for row in rows for k, v in row.items()
                    if k not in NOT_FIGURES and _is_number(v)})
    test_num = {name: i + 1 for i, name in enumerate(names)}
    units = {str(k): str(v) for k, v in (meta.get("units") or {}).items()}
    finished = _time(meta.get("finished"), "finished", int(time.time()))
    started = _time(meta.get("started"), "started", finished)

    out: list[bytes] = []

    def put(kind, **fields):
        rec = getattr(stdf, kind)(endian=ENDIAN)
        try:
            for name, value in fields.items():
                rec.set_value(name, value)
            out.append(rec.__repr__())
        except (stdf.STDFError, struct.error, TypeError) as exc:
            raise StdfError(f"{path}: cannot build the {kind} record: {exc}") from None

    put("FAR", CPU_TYPE=CPU_TYPE, STDF_VER=4)
    put("MIR", SETUP_T=started, START_T=started, STAT_NUM=1, MODE_COD="E",
        LOT_ID=_text(meta, "lot"), PART_TYP=_text(meta, "part_type"),
        NODE_NAM=_text(meta, "station"), TSTR_TYP=_text(meta, "tester"),
        JOB_NAM=_text(meta, "job"), OPER_NAM=_text(meta, "operator"),
        EXEC_TYP="aimc-calib", EXEC_VER=__version__)
    put("WIR", HEAD_NUM=HEAD, SITE_GRP=ALL, START_T=started, WAFER_ID=_text(meta, "wafer"))
    hard_counts: dict[int, int] = {}
    soft_counts: dict[int, int] = {}
    good = 0
    for row, (hard, soft) in zip(rows, tested, strict=True):
        if hard is None:
            continue
        put("PIR", HEAD_NUM=HEAD, SITE_NUM=SITE)
        count = 0
        for name in names:
            value = row.get(name)
            if not _is_number(value) or not _fits_float32(value):
                continue
            fields = dict(TEST_NUM=test_num[name], HEAD_NUM=HEAD, SITE_NUM=SITE,
                          TEST_FLG=NO_PASS_FAIL, PARM_FLG=0, RESULT=float(value),
                          TEST_TXT=name)
            if units.get(name):
                fields.update(OPT_FLAG=UNITS_ONLY, RES_SCAL=0, UNITS=units[name])
            put("PTR", **fields)
            count += 1
        passes = bins[hard][1]
        good += passes
        hard_counts[hard] = hard_counts.get(hard, 0) + 1
        soft_counts[soft] = soft_counts.get(soft, 0) + 1
        flags = (0 if passes else PART_FAILED) | (0 if row["state"] == "done" else PART_ABNORMAL)
        put("PRR", HEAD_NUM=HEAD, SITE_NUM=SITE, PART_FLG=flags,
            NUM_TEST=min(count, 65535), HARD_BIN=hard, SOFT_BIN=soft,
            X_COORD=int(row["x"]), Y_COORD=int(row["y"]), TEST_T=_test_time_ms(row),
            PART_ID=str(row["die"]))
    parts = sum(hard_counts.values())
    left_out = len(rows) - parts
    put("WRR", HEAD_NUM=HEAD, SITE_GRP=ALL, FINISH_T=finished, PART_CNT=parts,
        RTST_CNT=MISSING_U4, ABRT_CNT=MISSING_U4, GOOD_CNT=good, FUNC_CNT=MISSING_U4,
        WAFER_ID=_text(meta, "wafer"),
        EXC_DESC=f"{left_out} die(s) not done, not written" if left_out else "")
    for number in sorted(bins):
        name, passes = bins[number]
        put("HBR", HEAD_NUM=ALL, SITE_NUM=ALL, HBIN_NUM=number,
            HBIN_CNT=hard_counts.get(number, 0), HBIN_PF="P" if passes else "F",
            HBIN_NAM=name)
    for number in sorted(set(bins) | set(soft_counts)):
        name, passes = bins.get(number, ("", None))
        put("SBR", HEAD_NUM=ALL, SITE_NUM=ALL, SBIN_NUM=number,
            SBIN_CNT=soft_counts.get(number, 0),
            SBIN_PF=" " if passes is None else "P" if passes else "F", SBIN_NAM=name)
    put("PCR", HEAD_NUM=ALL, SITE_NUM=ALL, PART_CNT=parts, RTST_CNT=MISSING_U4,
        ABRT_CNT=MISSING_U4, GOOD_CNT=good, FUNC_CNT=MISSING_U4)
    put("MRR", FINISH_T=finished)
    try:
        write_image(path, b"".join(out))
    except OSError as exc:
        raise StdfError(f"{path}: cannot write the STDF file: "
                        f"{exc.strerror or exc}") from None
    return path


def read_stdf(path) -> list[tuple[str, dict]]:
    """Every record of an STDF V4 file in file order, as (type, {field: value}).

    Bit-encoded fields (B*1, e.g. PART_FLG) come back as integers, B*n as bytes; the
    header fields (REC_LEN, REC_TYP, REC_SUB) are left out; record types the library
    does not know are skipped, as the spec asks of readers.
    """
    stdf = _library()
    from Semi_ATE.STDF.STDR import ts_to_id
    from Semi_ATE.STDF.utils import create_record_object

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StdfError(f"{path}: cannot read the STDF file: {exc.strerror or exc}") from None
    if len(data) < 6 or data[2:4] != b"\x00\x0a":
        raise StdfError(f"{path}: not an STDF file (it does not start with a FAR record)")
    endian = {1: ">", 2: "<"}.get(data[4])
    if endian is None or data[5] != 4:
        raise StdfError(f"{path}: not an STDF V4 file (CPU_TYPE {data[4]}, "
                        f"STDF_VER {data[5]}); only V4 with CPU_TYPE 1 or 2 is read")
    kinds = ts_to_id("V4")
    records: list[tuple[str, dict]] = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < 4:
            raise StdfError(f"{path}: truncated: {len(data) - offset} stray byte(s) at the end")
        length, typ, sub = struct.unpack(endian + "HBB", data[offset:offset + 4])
        end = offset + 4 + length
        if end > len(data):
            raise StdfError(f"{path}: truncated: record {len(records) + 1} at byte {offset} "
                            f"needs {length} bytes, {len(data) - offset - 4} left")
        kind = kinds.get((typ, sub))
        if kind is not None:
            try:
                rec = create_record_object("V4", endian, (typ, sub), data[offset:end])
            except (stdf.STDFError, struct.error, UnicodeDecodeError, IndexError) as exc:
                raise StdfError(f"{path}: cannot decode the {kind} record at byte "
                                f"{offset}: {exc}") from None
            records.append((kind, {name: _plain(f["Type"], f["Value"])
                                   for name, f in rec.fields.items()
                                   if name not in HEADER_FIELDS}))
        offset = end
    return records


def _library():
    """The Semi-ATE-STDF package, or StdfError with the install hint."""
    try:
        import Semi_ATE.STDF as stdf
    except ImportError:
        raise StdfError(INSTALL_HINT) from None
    return stdf


def _bin_table(bins) -> dict[int, tuple[str, bool]]:
    table = {}
    for number, entry in (bins or {}).items():
        try:
            name, passes = entry
        except (TypeError, ValueError):
            raise StdfError(f"bin {number}: give (name, passes), not {entry!r}") from None
        table[_bin_number(number, f"bin table entry {number!r}")] = (str(name), bool(passes))
    return table


def _bin_number(value, where) -> int:
    if not _is_int(value) or not 0 <= int(value) <= 32767:
        raise StdfError(f"{where}: a bin number is an integer 0..32767, not {value!r}")
    return int(value)


def _check_row(index, row, bins) -> tuple[int | None, int | None]:
    """(hard bin, soft bin) of a row, None for a die not done; StdfError if malformed."""
    missing = [k for k in ROW_KEYS if k not in row]
    if missing:
        raise StdfError(f"row {index}: missing key(s) {', '.join(missing)}")
    where = f"die {row['die']}"
    for axis in ("x", "y"):
        if not _is_int(row[axis]) or not -32767 <= int(row[axis]) <= 32767:
            raise StdfError(f"{where}: {axis} is a wafer coordinate -32767..32767, "
                            f"not {row[axis]!r}")
    if row["bin"] is None:
        return None, None
    hard = _bin_number(row["bin"], where)
    if hard not in bins:
        known = ", ".join(str(n) for n in sorted(bins)) or "none"
        raise StdfError(f"{where}: bin {hard} is not in the bin table (known: {known}); "
                        "add it with its name and pass/fail")
    soft = row.get("soft_bin")
    return hard, hard if soft is None else _bin_number(soft, f"{where} soft_bin")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    """int or float (numpy scalars too), not bool: a scalar figure, NaN included."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _fits_float32(value) -> bool:
    return math.isfinite(value) and abs(value) <= FLOAT32_MAX


def _time(value, name, default) -> int:
    if value is None:
        return int(default)
    if not _is_number(value) or not math.isfinite(value) or not 0 <= value < 2**32:
        raise StdfError(f"meta {name}: give Unix seconds, not {value!r}")
    return int(value)


def _text(meta, key) -> str:
    value = meta.get(key)
    return "" if value is None else str(value)


def _test_time_ms(row) -> int:
    """PRR TEST_T: bench time in milliseconds; 0 (the spec's "missing") if unknown."""
    seconds = row.get("bench_time_s")
    if not _is_number(seconds) or not math.isfinite(seconds) or seconds < 0:
        return 0
    return min(round(seconds * 1000), MISSING_U4)


def _plain(kind: str, value):
    """A decoded field as plain Python: bit lists to int (B*1, MSB first) or bytes (B*n)."""
    if kind.startswith("B*") and isinstance(value, list):
        if kind == "B*n":  # the library unpacks B*n least significant bit first
            return bytes(sum(int(b) << i for i, b in enumerate(value[j:j + 8]))
                         for j in range(0, len(value), 8))
        return int("".join(value), 2) if value else 0
    return value
