"""STDF V4 export of a wafer sweep: written through Semi-ATE-STDF, read back record by record."""

from __future__ import annotations

import importlib.util
import struct
import sys

import numpy as np
import pytest

from calib.sweep.stdf import INSTALL_HINT, StdfError, read_stdf, write_stdf
from instruments.errors import UserError

# everything but the missing-extra test needs the library (it comes with the 'test' extra)
requires_stdf = pytest.mark.skipif(importlib.util.find_spec("Semi_ATE.STDF") is None,
                                   reason="Semi-ATE-STDF comes with the 'stdf' and 'test' extras")

BINS = {1: ("good", True), 2: ("stuck cells", False), 3: ("program out of band", False),
        9: ("unused", False)}
META = {"lot": "LOT7", "wafer": "W03", "part_type": "rram-64x64", "job": "map+program",
        "operator": "ada", "station": "probe-2", "tester": "sim bench", "started": 1.7e9,
        "finished": 1.7e9 + 3600, "units": {"map.g_max_median_s": "S", "bench_time_s": "s"}}


def small_wafer():
    return [
        {"die": 12, "x": 5, "y": 3, "state": "done", "bin": 1, "bin_name": "good",
         "soft_bin": 1, "bench_time_s": 6.4, "map.stuck_fraction": 0.022,
         "map.g_max_median_s": 3.9e-05, "program.in_band_fraction": 0.9844,
         "program.pulses_mean": 2.61},
        {"die": 13, "x": 6, "y": 3, "state": "done", "bin": 2, "soft_bin": 21,
         "bench_time_s": np.float64(7.25), "map.stuck_fraction": 0.31,
         "map.g_max_median_s": float("nan"), "program.in_band_fraction": None,
         "program.pulses_mean": np.float32(4.5), "note": "text is not a figure",
         "retried": True},
        {"die": 14, "x": -2, "y": -7, "state": "pending", "bin": None},
        {"die": 15, "x": 7, "y": 3, "state": "failed", "bin": 3, "bench_time_s": 1.0,
         "map.stuck_fraction": 0.05, "program.pulses_mean": 40},
    ]


FIGURES = ["bench_time_s", "map.g_max_median_s", "map.stuck_fraction",
           "program.in_band_fraction", "program.pulses_mean"]


def f32(value) -> float:
    return float(np.float32(value))


@requires_stdf
def test_record_sequence_follows_the_spec(tmp_path):
    path = write_stdf(tmp_path / "w03.stdf", small_wafer(), BINS, META)
    kinds = [kind for kind, _ in read_stdf(path)]
    # FAR first, MIR right after it, WIR before the parts, one PIR..PRR bracket per
    # tested die with its PTRs inside, WRR after the wafer's parts, the bin and part
    # count summaries before the MRR, and the MRR last
    assert kinds == (["FAR", "MIR", "WIR"]
                     + ["PIR"] + ["PTR"] * 5 + ["PRR"]
                     + ["PIR"] + ["PTR"] * 3 + ["PRR"]
                     + ["PIR"] + ["PTR"] * 3 + ["PRR"]
                     + ["WRR"] + ["HBR"] * 4 + ["SBR"] * 5 + ["PCR", "MRR"])


@requires_stdf
def test_parts_bins_and_figures_read_back(tmp_path):
    rows = small_wafer()
    records = read_stdf(write_stdf(tmp_path / "w03.stdf", rows, BINS, META))
    far = records[0][1]
    assert far["CPU_TYPE"] == 2 and far["STDF_VER"] == 4
    mir = records[1][1]
    assert (mir["LOT_ID"], mir["PART_TYP"], mir["JOB_NAM"], mir["OPER_NAM"],
            mir["NODE_NAM"], mir["TSTR_TYP"]) == ("LOT7", "rram-64x64", "map+program",
                                                  "ada", "probe-2", "sim bench")
    assert mir["SETUP_T"] == mir["START_T"] == 1_700_000_000
    assert records[2][1]["WAFER_ID"] == "W03"

    parts, ptrs = [], []
    for kind, fields in records:
        if kind == "PIR":
            ptrs = []
        elif kind == "PTR":
            ptrs.append(fields)
        elif kind == "PRR":
            parts.append((fields, ptrs))
    tested = [r for r in rows if r["bin"] is not None]
    assert [p["PART_ID"] for p, _ in parts] == [str(r["die"]) for r in tested]
    for (prr, results), row in zip(parts, tested, strict=True):
        assert (prr["X_COORD"], prr["Y_COORD"]) == (row["x"], row["y"])
        assert prr["HARD_BIN"] == row["bin"]
        assert prr["SOFT_BIN"] == row.get("soft_bin", row["bin"])
        assert prr["TEST_T"] == round(float(row["bench_time_s"]) * 1000)
        assert prr["NUM_TEST"] == len(results)
        failed = not BINS[row["bin"]][1]
        assert bool(prr["PART_FLG"] & 0x08) == failed and not prr["PART_FLG"] & 0x10
        assert bool(prr["PART_FLG"] & 0x04) == (row["state"] != "done")
        expect = {n: row[n] for n in FIGURES
                  if row.get(n) is not None and np.isfinite(row[n])}
        assert {p["TEST_TXT"]: p["RESULT"] for p in results} == {
            n: f32(v) for n, v in expect.items()}
        for p in results:  # stable numbers from the sorted names; units from meta only
            assert p["TEST_NUM"] == FIGURES.index(p["TEST_TXT"]) + 1
            assert p["UNITS"] == META["units"].get(p["TEST_TXT"], "")
            assert p["TEST_FLG"] == 0x40  # no limits: no pass/fail indication

    wrr = next(f for k, f in records if k == "WRR")
    assert (wrr["PART_CNT"], wrr["GOOD_CNT"], wrr["FINISH_T"]) == (3, 1, 1_700_003_600)
    assert "1 die(s) not done" in wrr["EXC_DESC"]
    hbr = {f["HBIN_NUM"]: (f["HBIN_CNT"], f["HBIN_PF"], f["HBIN_NAM"])
           for k, f in records if k == "HBR"}
    assert hbr == {1: (1, "P", "good"), 2: (1, "F", "stuck cells"),
                   3: (1, "F", "program out of band"), 9: (0, "F", "unused")}
    sbr = {f["SBIN_NUM"]: (f["SBIN_CNT"], f["SBIN_PF"], f["SBIN_NAM"])
           for k, f in records if k == "SBR"}
    assert sbr == {1: (1, "P", "good"), 2: (0, "F", "stuck cells"),
                   3: (1, "F", "program out of band"), 9: (0, "F", "unused"),
                   21: (1, " ", "")}
    assert all(f["HEAD_NUM"] == 255 for k, f in records if k in ("HBR", "SBR", "PCR"))
    pcr = next(f for k, f in records if k == "PCR")
    assert (pcr["PART_CNT"], pcr["GOOD_CNT"]) == (3, 1)
    assert records[-1][1]["FINISH_T"] == 1_700_003_600


@requires_stdf
def test_bytes_read_by_hand_match(tmp_path):
    """Not only the library's own reader: the raw bytes say little-endian V4, and the
    failing die's PRR carries PART_FLG 0x08 and its coordinates where the spec puts them."""
    data = write_stdf(tmp_path / "w.stdf", small_wafer(), BINS, META).read_bytes()
    assert data[:6] == b"\x02\x00\x00\x0a\x02\x04"  # FAR: REC_LEN 2, (0, 10), CPU 2, V4
    offset, prrs = 0, []
    while offset < len(data):
        length, typ, sub = struct.unpack("<HBB", data[offset:offset + 4])
        if (typ, sub) == (5, 20):
            prrs.append(data[offset + 4:offset + 4 + length])
        offset += 4 + length
    assert offset == len(data)
    head, site, flags, num_test, hard, soft, x, y, test_t = struct.unpack(
        "<BBBHHHhhI", prrs[1][:17])
    assert (head, site, flags, num_test, hard, soft, x, y, test_t) == (
        1, 1, 0x08, 3, 2, 21, 6, 3, 7250)
    assert prrs[1][17:20] == b"\x0213"  # PART_ID "13"


@requires_stdf
def test_same_inputs_give_the_same_bytes(tmp_path):
    a = write_stdf(tmp_path / "a.stdf", small_wafer(), BINS, META).read_bytes()
    b = write_stdf(tmp_path / "b.stdf", small_wafer(), BINS, META).read_bytes()
    assert a == b


@requires_stdf
def test_round_trip_of_a_full_wafer(tmp_path):
    rng = np.random.default_rng(2024)
    names = [f"fig.{i:02d}" for i in range(10)]
    bins = {1: ("good", True), 2: ("marginal", True), 5: ("stuck", False),
            7: ("open", False)}
    rows = []
    for die in range(241):
        row = {"die": die, "x": int(die % 17) - 8, "y": int(die // 17) - 7, "state": "done",
               "bin": int(rng.choice(list(bins))), "bench_time_s": float(rng.uniform(1, 9))}
        row["soft_bin"] = row["bin"] * 10 + int(rng.integers(0, 3))
        row.update({n: float(rng.lognormal(-8, 3)) * (-1) ** k for k, n in enumerate(names)})
        rows.append(row)
    records = read_stdf(write_stdf(tmp_path / "wafer.stdf", rows, bins, {"wafer": "W9"}))
    prrs = [f for k, f in records if k == "PRR"]
    assert len(prrs) == 241
    assert [(p["X_COORD"], p["Y_COORD"], p["HARD_BIN"], p["SOFT_BIN"], p["PART_ID"])
            for p in prrs] == [(r["x"], r["y"], r["bin"], r["soft_bin"], str(r["die"]))
                               for r in rows]
    results = [f["RESULT"] for k, f in records if k == "PTR"]
    expect = [f32(r[n]) for r in rows for n in sorted(names + ["bench_time_s"])]
    assert results == expect
    counts = {f["HBIN_NUM"]: f["HBIN_CNT"] for k, f in records if k == "HBR"}
    assert counts == {b: sum(r["bin"] == b for r in rows) for b in bins}
    soft = {f["SBIN_NUM"]: f["SBIN_CNT"] for k, f in records if k == "SBR" and f["SBIN_CNT"]}
    assert soft == {s: sum(r["soft_bin"] == s for r in rows) for s in {r["soft_bin"]
                                                                        for r in rows}}
    wrr = next(f for k, f in records if k == "WRR")
    assert wrr["GOOD_CNT"] == sum(bins[r["bin"]][1] for r in rows)


def test_missing_extra_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "Semi_ATE.STDF", None)  # makes the import fail
    with pytest.raises(StdfError) as err:
        write_stdf(tmp_path / "w.stdf", small_wafer(), BINS, META)
    assert str(err.value) == INSTALL_HINT
    assert "pip install 'aimc-calib[stdf]'" in str(err.value)
    assert isinstance(err.value, UserError) and isinstance(err.value, ValueError)
    assert not list(tmp_path.iterdir())
    with pytest.raises(StdfError, match="Semi-ATE-STDF"):
        read_stdf(tmp_path / "w.stdf")


@requires_stdf
@pytest.mark.parametrize("change, message", [
    (lambda rows: rows[0].update(bin=4), "bin 4 is not in the bin table"),
    (lambda rows: rows[0].pop("y"), "missing key"),
    (lambda rows: rows[0].update(x=40000), "x is a wafer coordinate"),
    (lambda rows: rows[0].update(x=1.5), "x is a wafer coordinate"),
    (lambda rows: rows[1].update(soft_bin=-1), "soft_bin"),
])
def test_bad_rows_are_refused_and_leave_the_old_file(tmp_path, change, message):
    path = write_stdf(tmp_path / "w.stdf", small_wafer(), BINS, META)
    before = path.read_bytes()
    rows = small_wafer()
    change(rows)
    with pytest.raises(StdfError, match=message) as err:
        write_stdf(path, rows, BINS, META)
    assert "\n" not in str(err.value)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.stdf"]


@requires_stdf
def test_unwritable_place_is_a_one_line_error(tmp_path):
    with pytest.raises(StdfError, match="cannot write the STDF file"):
        write_stdf(tmp_path / "no-such-folder" / "w.stdf", small_wafer(), BINS, META)


@requires_stdf
def test_truncated_or_foreign_files_are_errors(tmp_path):
    data = write_stdf(tmp_path / "w.stdf", small_wafer(), BINS, META).read_bytes()
    cut = tmp_path / "cut.stdf"
    cut.write_bytes(data[:-3])  # the library's own records_from_file would just stop
    with pytest.raises(StdfError, match="truncated"):
        read_stdf(cut)
    other = tmp_path / "other.stdf"
    other.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    with pytest.raises(StdfError, match="not an STDF file"):
        read_stdf(other)


@requires_stdf
def test_empty_sweep_is_still_a_valid_file(tmp_path):
    records = read_stdf(write_stdf(tmp_path / "w.stdf", [], {1: ("good", True)}, {}))
    assert [k for k, _ in records] == ["FAR", "MIR", "WIR", "WRR", "HBR", "SBR", "PCR",
                                       "MRR"]
    assert records[3][1]["PART_CNT"] == 0
