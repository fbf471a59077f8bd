"""`calib analyze` and ``wafer_table``: the table of many die files, its cache, bad input,
Dask (serial and cluster give the same table; the local cluster listens on loopback only)
and the report's PNGs."""

from __future__ import annotations

import builtins
import json
import math
import os
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from calib.analysis import wafer_table as wt
from calib.analysis.wafer_table import AnalysisError, build_table, flatten, wafer_table
from calib.analysis.wafermap import WaferMapError, wafer_map_png
from calib.cli import main
from calib.store import DieStore, die_path
from calib.store.summaries import read_summaries

WAFER = "w1"
PNG = b"\x89PNG\r\n\x1a\n"
GRID = {1: (1, 0), 2: (0, 1), 3: (1, 1), 4: (2, 1), 5: (1, 2)}  # a small round wafer


def write_die(results: Path, die: int, *, wafer: str = WAFER, g_max: float = 80e-6,
              stuck: int = 1, in_band: float = 0.99, pulses: float = 6.0) -> Path:
    """A die file made through DieStore: a variability run and a write_verify run."""
    store = DieStore(die_path(results, wafer, die), wafer, die)
    run = store.start_run("variability", {"cycles": 2}, {"array": "SIM"}, 25.0, "rram")
    store.finish_run(run, {"fault": np.zeros((4, 4), np.uint8)}, {
        "die": die, "cells": 16, "yield": (16 - stuck) / 16,
        "faults": {"healthy": 16 - stuck, "stuck_low": stuck, "stuck_high": 0, "unformed": 0,
                   "narrow": 0, "unresponsive": 0},
        "usable_window_s": [1e-6, 40e-6], "read_noise": {"a_s": 2e-8, "b": 0.01, "c": 1.0},
        "d2d": {"g_max": {"median": g_max, "q25": 0.9 * g_max}}, "final_state": "reset",
        "slow_cells": None, "file": str(store.path), "run": run})
    run = store.start_run("write_verify", {"tolerance": 1e-6}, {"array": "SIM"}, 25.0, "rram")
    store.finish_run(run, {"pulses": np.full((4, 4), int(pulses))}, {
        "die": die, "cells": 16, "in_band_fraction": in_band, "pulses_mean": pulses,
        "artifacts": ["response_model"]})
    return store.path


def write_index(folder: Path, dies: dict[int, dict], wafer: str = WAFER) -> None:
    doc = {"format": "aimc-calib wafer index", "version": 1, "wafer": wafer,
           "dies": {str(d): e for d, e in dies.items()}}
    (folder / "wafer-index.json").write_text(json.dumps(doc))


@pytest.fixture
def wafer(tmp_path) -> Path:
    """Five dies on a small round wafer; the edge dies have a lower g_max, more stuck cells."""
    for die in GRID:
        edge = die != 3
        write_die(tmp_path, die, g_max=70e-6 if edge else 80e-6, stuck=2 if edge else 0,
                  in_band=0.97 if edge else 1.0, pulses=8.0 if edge else 5.0)
    folder = tmp_path / WAFER
    write_index(folder, {d: {"x": x, "y": y, "state": "done", "bin": 1 if d == 3 else 2,
                             "bin_name": "good" if d == 3 else "edge", "run": "0002"}
                         for d, (x, y) in GRID.items()})
    return folder


@pytest.fixture
def opens(monkeypatch):
    """The names of die files opened (every read of a die file goes through open())."""
    seen: list[str] = []
    real = builtins.open

    def counting(file, *args, **kwargs):
        if isinstance(file, str | os.PathLike) and \
                wt.DIE_FILE.fullmatch(os.path.basename(os.fspath(file))):
            seen.append(os.path.basename(os.fspath(file)))
        return real(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting)
    return seen


def run(args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result, *needles):
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output and result.exception.__class__ is SystemExit
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for needle in needles:
        assert needle in lines[0], result.output
    return lines[0]


# -- the table -----------------------------------------------------------------------------

def test_flatten_keeps_every_number_under_the_jobs_prefix():
    flat = flatten({"die": 3, "cells": 16, "yield": 0.9, "ok": True, "none": None,
                    "faults": {"stuck_low": 2}, "window": [1e-6, 4e-5], "name": "reset",
                    "long": [1, 2, 3, 4, 5], "tags": ["a"]}, "variability")
    assert flat == {"variability.cells": 16.0, "variability.yield": 0.9, "variability.ok": 1.0,
                    "variability.none": flat["variability.none"],
                    "variability.faults.stuck_low": 2.0, "variability.window.0": 1e-6,
                    "variability.window.1": 4e-5}
    assert math.isnan(flat["variability.none"])


def test_table_rows_columns_and_values(wafer):
    frame = wafer_table(wafer)
    assert list(frame.columns[:11]) == list(wt.COLUMNS)
    assert list(frame["die"]) == [1, 2, 3, 4, 5] and set(frame["wafer"]) == {WAFER}
    centre = frame.set_index("die").loc[3]
    assert (centre["x"], centre["y"], centre["bin"], centre["bin_name"]) == (1, 1, 1, "good")
    assert centre["radius"] == 0 and frame.set_index("die").loc[1, "radius"] == 1
    assert centre["variability.d2d.g_max.median"] == 80e-6
    assert centre["write_verify.in_band_fraction"] == 1.0
    assert centre["write_verify.pulses_mean"] == 5.0
    assert centre["variability.run"] == "0001_variability"
    assert centre["write_verify.run"] == "0002_write_verify"
    edge = frame.set_index("die").loc[1]
    assert edge["variability.stuck_fraction"] == pytest.approx(2 / 16)
    assert edge["variability.usable_window_s.1"] == 40e-6
    assert math.isnan(edge["variability.slow_cells"])  # JSON null: NaN, not dropped
    assert frame["error"].isna().all() and (frame["runs"] == 2).all()
    assert "variability.die" not in frame and "variability.final_state" not in frame
    for col in frame.columns:  # numbers are float64, text object: the same on every path
        assert frame[col].dtype in (np.float64, object) or col == "die"


def test_newest_complete_run_of_each_job(wafer):
    path = wafer / "die_3.h5"
    store = DieStore(path)
    newer = store.start_run("write_verify", {}, {}, 25.0, "rram")
    store.finish_run(newer, {}, {"in_band_fraction": 0.5, "pulses_mean": 9.0})
    store.start_run("write_verify", {}, {}, 25.0, "rram")  # running: not complete
    failed = store.start_run("write_verify", {}, {}, 25.0, "rram")
    store.fail_run(failed, "contact lost")
    row = wafer_table(wafer).set_index("die").loc[3]
    assert row["write_verify.run"] == newer and row["write_verify.in_band_fraction"] == 0.5
    assert row["runs"] == 5 and row["variability.run"] == "0001_variability"


def test_the_fast_reader_agrees_with_the_die_store(wafer):
    path = wafer / "die_2.h5"
    found = read_summaries(path, WAFER, 2)
    store = DieStore(path)
    runs = store.runs()
    assert [r.run_id for r in found.runs] == [r.run_id for r in runs]
    for fast in found.latest().values():
        assert fast.summary == store.read_run(fast.run_id)["summary"]
    assert found.seal and len(found.seal) == 64 and found.size_bytes == path.stat().st_size


def test_table_of_jobs_run_on_the_simulated_bench(tmp_path):
    from calib.jobs.map import MapOptions, map_die
    from calib.jobs.program import program_die
    from calib.jobs.targets import make_targets
    from calib.wiring import open_bench

    with open_bench(rows=16, cols=16) as b:
        wafer_name = b.wafer_name
        sheet = b.datasheet
        for die in (12, 60):
            map_die(b, die, MapOptions(quick=True), results=tmp_path)
            targets = make_targets(sheet.shape, sheet.window.g_min, sheet.window.g_max,
                                   pattern="random", seed=die)
            program_die(b, die, targets, results=tmp_path)
    frame = wafer_table(tmp_path / wafer_name)
    assert list(frame["die"]) == [12, 60] and frame["error"].isna().all()
    assert frame["x"].isna().all()  # no wafer index: no positions, still analysed
    for row in frame.itertuples(index=False):
        store = DieStore(row.file)
        latest = {r.protocol: r for r in store.runs() if r.status == "complete"}
        vmap = store.read_run(latest["variability"].run_id)["summary"]
        wv = store.read_run(latest["write_verify"].run_id)["summary"]
        got = dict(zip(frame.columns, row, strict=True))
        assert got["variability.yield"] == vmap["yield"]
        assert got["variability.d2d.g_max.median"] == vmap["d2d"]["g_max"]["median"]
        assert got["variability.read_noise.b"] == vmap["read_noise"]["b"]
        assert got["write_verify.in_band_fraction"] == wv["in_band_fraction"]
        assert got["write_verify.pulses_mean"] == wv["pulses_mean"]
        stuck = sum(vmap["faults"][k] for k in wt.STUCK_FAULTS) / vmap["cells"]
        assert got["variability.stuck_fraction"] == pytest.approx(stuck)


def test_index_dies_without_a_file_and_a_wafer_without_index(tmp_path, wafer):
    write_index(wafer, {**{d: {"x": x, "y": y, "state": "done"} for d, (x, y) in GRID.items()},
                        6: {"x": 3, "y": 1, "state": "done", "bin": 9, "bin_name": "contact"},
                        7: {"x": 4, "y": 1, "state": "pending"}})
    frame = wafer_table(wafer).set_index("die")
    assert "die_6.h5 missing" in frame.loc[6, "error"] and frame.loc[6, "bin"] == 9
    assert frame.loc[7, "file"] is None and frame.loc[7, "error"] is None
    assert frame.loc[7, "state"] == "pending" and math.isnan(frame.loc[7, "runs"])
    (wafer / "wafer-index.json").unlink()
    frame = wafer_table(wafer)
    assert len(frame) == 5 and frame[["x", "y", "bin", "radius"]].isna().all().all()


# -- the cache -----------------------------------------------------------------------------

def test_second_build_reads_no_die_file(wafer, opens):
    first = build_table(wafer)
    assert sorted(opens) == sorted(f"die_{d}.h5" for d in GRID)
    assert (wafer / ".analysis" / "summary.parquet").is_file()
    assert first.wafers[0].read == 5 and first.wafers[0].cache == "new"
    opens.clear()
    second = build_table(wafer)
    assert opens == [] and second.wafers[0].reused == 5 and second.wafers[0].cache == "used"
    pd.testing.assert_frame_equal(first.frame, second.frame)
    assert [p.name for p in (wafer / ".analysis").iterdir()] == ["summary.parquet"]


def test_only_changed_new_and_removed_files_are_read_again(wafer, opens):
    fresh = build_table(wafer)
    os.utime(wafer / "die_2.h5", ns=(1, 1))  # touched: re-read, found unchanged
    store = DieStore(wafer / "die_4.h5")  # changed: a new complete run
    r = store.start_run("write_verify", {}, {}, 25.0, "rram")
    store.finish_run(r, {}, {"in_band_fraction": 0.25, "pulses_mean": 11.0})
    (wafer / "die_5.h5").unlink()
    write_die(wafer.parent, 8, g_max=60e-6)
    opens.clear()
    table = build_table(wafer)
    assert sorted(opens) == ["die_2.h5", "die_4.h5", "die_8.h5"]
    s = table.wafers[0]
    assert (s.read, s.reused, s.removed, s.unchanged, s.cache) == (3, 2, 1, 1, "updated")
    frame = table.frame.set_index("die")
    assert frame.loc[4, "write_verify.in_band_fraction"] == 0.25 and 5 in frame.index
    assert 8 in frame.index and frame.loc[5, "file"] is None  # the index still names die 5
    opens.clear()
    again = build_table(wafer)
    assert opens == []
    pd.testing.assert_frame_equal(again.frame, table.frame)
    opens.clear()
    rebuilt = build_table(wafer, rebuild=True)
    assert len(opens) == 5 and rebuilt.wafers[0].cache == "rebuilt"
    pd.testing.assert_frame_equal(rebuilt.frame, table.frame)
    assert not fresh.frame.equals(table.frame)


def test_a_damaged_or_unwritable_cache_is_never_trusted(wafer, opens):
    first = build_table(wafer)
    (wafer / ".analysis" / "summary.parquet").write_bytes(b"PAR1 not really")
    opens.clear()
    table = build_table(wafer)
    assert len(opens) == 5 and table.wafers[0].cache.startswith("unreadable cache rebuilt")
    pd.testing.assert_frame_equal(first.frame, table.frame)
    shutil.rmtree(wafer / ".analysis")
    (wafer / ".analysis").write_text("a file in the way")
    table = build_table(wafer)
    assert table.wafers[0].cache.startswith("cache not written")
    pd.testing.assert_frame_equal(first.frame, table.frame)
    opens.clear()
    off = build_table(wafer, cache=False)
    assert len(opens) == 5 and off.wafers[0].cache == "off"


# -- bad input -----------------------------------------------------------------------------

def _bad_files(wafer: Path) -> None:
    with h5py.File(wafer / "die_7.h5", "w") as f:  # a foreign HDF5 file
        f["x"] = np.arange(3)
    (wafer / "die_8.h5").write_bytes(b"not HDF5 at all" * 100)
    damaged = bytearray((wafer / "die_1.h5").read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # a bit flip: the seal check sees it
    (wafer / "die_9.h5").write_bytes(bytes(damaged))
    shutil.copy(wafer / "die_2.h5", wafer / "die_10.h5")  # another die's file
    with h5py.File(wafer / "notes.h5", "w") as f:  # not named die_<id>.h5: ignored
        f["x"] = 1


def test_foreign_damaged_and_misplaced_files_are_rows_with_their_error(wafer):
    _bad_files(wafer)
    table = build_table(wafer)
    frame = table.frame.set_index("die")
    assert frame.loc[[1, 2, 3, 4, 5], "error"].isna().all()
    assert "not an aimc-calib die file" in frame.loc[7, "error"]
    assert "die_8.h5" in frame.loc[8, "error"]
    assert "damaged die file" in frame.loc[9, "error"]
    assert "holds wafer 'w1' die 2, not wafer 'w1' die 10" in frame.loc[10, "error"]
    assert frame.loc[[7, 8, 9, 10], "write_verify.in_band_fraction"].isna().all()
    s = table.wafers[0]
    assert s.errors == 4 and s.ignored == ("notes.h5",)
    again = build_table(wafer)  # damage is cached with the file's manifest, like a result
    assert again.wafers[0].read == 0
    pd.testing.assert_frame_equal(again.frame, table.frame)


def test_cli_lists_per_die_errors_without_a_traceback(wafer):
    _bad_files(wafer)
    result = run(["analyze", wafer, "--no-report"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "4 with an error" in result.output and "die 7: " in result.output
    assert "ignored (not named die_<id>.h5): notes.h5" in result.output
    s = json.loads(run(["analyze", wafer, "--no-report", "--json"]).output)
    assert {e["die"] for e in s["errors"]} == {7, 8, 9, 10}


def test_an_unreadable_die_file_is_recorded_and_not_cached(wafer, monkeypatch):
    real = builtins.open

    def refusing(file, *args, **kwargs):  # what chmod 0 does (root reads any file)
        if os.path.basename(os.fspath(file)) == "die_2.h5":
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return real(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing)
    frame = wafer_table(wafer).set_index("die")
    assert "Permission denied" in frame.loc[2, "error"]
    assert frame.loc[[1, 3, 4, 5], "error"].isna().all()
    monkeypatch.setattr(builtins, "open", real)
    table = build_table(wafer)  # not cached: read again once readable, though unchanged
    assert table.wafers[0].read == 1 and table.frame.set_index("die").loc[2, "error"] is None


@pytest.mark.parametrize("make, needles", [
    (lambda d: d / "nowhere", ("no such folder",)),
    (lambda d: (d / "file.txt").write_text("x") and d / "file.txt", ("not a folder",)),
    (lambda d: (d / "empty").mkdir() or d / "empty", ("not a wafer folder",)),
    (lambda d: d, ("not a wafer folder", "holds the wafer folders w1")),
])
def test_not_a_wafer_folder_is_one_line(wafer, make, needles):
    one_line_error(run(["analyze", make(wafer.parent), "--no-report"]), *needles)


@pytest.mark.parametrize("text, needle", [
    ("{not json", "damaged wafer index (not JSON"),
    ('{"format": "other"}', "not an aimc-calib wafer index"),
    ('{"format": "aimc-calib wafer index", "version": 2}', "upgrade aimc-calib"),
    ('{"format": "aimc-calib wafer index", "version": 1, "wafer": "w9"}', "refusing to mix"),
    ('{"format": "aimc-calib wafer index", "version": 1, "dies": {"3": {"x": "left"}}}',
     "die 3 x is 'left'"),
])
def test_a_bad_wafer_index_is_one_line(wafer, text, needle):
    (wafer / "wafer-index.json").write_text(text)
    one_line_error(run(["analyze", wafer, "--no-report"]), "wafer-index.json", needle)


def test_two_wafers_of_one_name_are_refused(wafer, tmp_path):
    other = tmp_path / "elsewhere"
    write_die(other, 1)
    one_line_error(run(["analyze", wafer, other / WAFER, "--no-report"]),
                   "two wafer folders named 'w1'")


@pytest.mark.parametrize("missing", ["pandas", "pyarrow"])
def test_a_missing_extra_is_one_line(wafer, monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # import raises ImportError
    line = one_line_error(run(["analyze", wafer]))
    assert line == ("Error: calib analyze needs pandas and pyarrow: pip install "
                    "'aimc-calib[analysis]'")
    assert not (wafer / ".analysis").exists()


def test_bad_dask_addresses_are_one_line(wafer, monkeypatch):
    one_line_error(run(["analyze", wafer, "--dask", "somewhere", "--no-report"]),
                   "--dask 'somewhere'", "tcp://HOST:PORT")
    monkeypatch.setattr(wt, "CONNECT_TIMEOUT_S", 1.0)
    one_line_error(run(["analyze", wafer, "--dask", "tcp://127.0.0.1:9", "--no-report",
                        "--rebuild"]), "cannot reach the Dask scheduler at tcp://127.0.0.1:9")


# -- Dask ----------------------------------------------------------------------------------

def _listening() -> set[tuple[int, str, int]]:
    """LISTEN sockets (pid, ip, port) of this process and its children (psutil: a
    dependency of dask.distributed, so present wherever a local cluster can start)."""
    import psutil

    me = psutil.Process()
    out = set()
    for proc in (me, *me.children(recursive=True)):
        try:
            for c in proc.net_connections(kind="inet"):
                if c.status == psutil.CONN_LISTEN:
                    out.add((proc.pid, c.laddr.ip, c.laddr.port))
        except psutil.Error:
            pass  # a child that just ended
    return out


def test_local_cluster_gives_the_serial_table_and_listens_on_loopback_only(wafer):
    _bad_files(wafer)  # the error rows too
    serial = wafer_table(wafer, cache=False)
    before = _listening()
    client, close = wt.dask_client("local")
    try:
        assert client.scheduler.address.startswith("tcp://127.0.0.1:")
        assert len(client.scheduler_info()["workers"]) == 2
        opened = _listening() - before
        # scheduler, its HTTP endpoint, 2 nannies, 2 workers (+ their HTTP endpoints)
        assert len(opened) >= 6, opened
        assert {ip for _, ip, _ in opened} == {"127.0.0.1"}, opened
        table = build_table(wafer, client, cache=False)
        assert table.wafers[0].read == 9
        pd.testing.assert_frame_equal(serial, table.frame)
    finally:
        close()


def test_cli_dask_local_equals_serial(wafer):
    serial = json.loads(run(["analyze", wafer, "--json", "--no-cache", "--no-report"]).output)
    result = run(["analyze", wafer, "--json", "--no-cache", "--no-report", "--dask", "local"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == serial


def test_many_files_go_in_batches_of_200():
    assert [len(b) for b in wt._batches(list(range(10_000)), wt.BATCH_FILES)] == [200] * 50


# -- the report ----------------------------------------------------------------------------

def test_cli_report_writes_the_pngs_and_the_table(wafer):
    result = run(["analyze", wafer, "--json"])
    assert result.exit_code == 0, result.output
    s = json.loads(result.output)
    w = s["wafers"][0]
    assert w["bins"] == [{"bin": "1", "name": "good", "dies": 1, "share": 0.2},
                         {"bin": "2", "name": "edge", "dies": 4, "share": 0.8}]
    g = w["figures"]["variability.d2d.g_max.median"]
    assert g["median"] == pytest.approx(70e-6) and g["iqr"] == pytest.approx(0)
    ring = w["radial"]["variability.d2d.g_max.median"]
    assert ring[0]["median"] == pytest.approx(80e-6) and ring[-1]["median"] == pytest.approx(70e-6)
    out = Path(s["report"]["folder"])
    assert out == wafer.parent / "analysis"
    names = {Path(p).name for p in s["report"]["plots"]}
    assert {"bin_map.png", "yield.png", "radial.png", "map_g_max_median.png",
            "map_stuck_fraction.png", "map_in_band.png", "map_pulses_per_cell.png",
            "map_read_noise_b.png"} <= names
    for p in s["report"]["plots"]:
        assert Path(p).read_bytes()[:8] == PNG and Path(p).parent == out / WAFER
    table = pd.read_parquet(out / "table.parquet")
    assert list(table["die"]) == [1, 2, 3, 4, 5]
    assert json.loads((out / "summary.json").read_text())["wafers"][0]["wafer"] == WAFER
    human = run(["analyze", wafer])
    assert "yield: bin 1 good 1 (20.0%), bin 2 edge 4 (80.0%)" in human.output
    assert "g_max median: median 70 uS, IQR 0 uS (5 dies)" in human.output
    assert f"report: {out}" in human.output


def test_two_wafers_are_compared(wafer, tmp_path):
    for die in GRID:
        write_die(tmp_path, die, wafer="w2", g_max=60e-6)
    write_index(tmp_path / "w2", {d: {"x": x, "y": y, "state": "done", "bin": 1}
                                  for d, (x, y) in GRID.items()}, wafer="w2")
    out = tmp_path / "report"
    result = run(["analyze", wafer, tmp_path / "w2", "--out", out, "--json"])
    assert result.exit_code == 0, result.output
    s = json.loads(result.output)
    assert [w["wafer"] for w in s["wafers"]] == ["w1", "w2"] and s["dies"] == 10
    assert (out / "comparison.png").read_bytes()[:8] == PNG
    assert (out / "radial_comparison.png").read_bytes()[:8] == PNG
    assert (out / "w2" / "bin_map.png").is_file()


def test_no_index_no_maps_but_the_figures(wafer):
    (wafer / "wafer-index.json").unlink()
    result = run(["analyze", wafer])
    assert result.exit_code == 0, result.output
    assert "wafer index: none (no x, y, bin)" in result.output
    assert "no die has a position (x, y come from the wafer index): no maps" in result.output
    assert not list((wafer.parent / "analysis" / WAFER).glob("*.png"))


def test_wafer_map_png_from_plain_rows(tmp_path):
    rows = [{"x": x, "y": y, "bin": 1 if (x + y) % 3 else 2,
             "bin_name": "good" if (x + y) % 3 else "fail", "g": x * 1e-6}
            for x in range(5) for y in range(4)]
    rows.append({"x": None, "y": None, "bin": 1})  # no position: left out, counted
    rows.append({"x": 6, "y": 0, "bin": math.nan})  # no bin: grey
    path = wafer_map_png(tmp_path / "sub" / "bins.png", rows, "bin", title="sweep w1")
    assert path == tmp_path / "sub" / "bins.png" and path.read_bytes()[:8] == PNG
    assert wafer_map_png(tmp_path / "g.png", rows, "g", scale=1e-6, label="uS").is_file()
    assert wafer_map_png(tmp_path / "df.png", pd.DataFrame(rows[:-2]), "bin").is_file()
    with pytest.raises(WaferMapError, match="no die has an x, y position"):
        wafer_map_png(tmp_path / "none.png", [{"bin": 1}], "bin")


def test_empty_names_and_bad_out_are_refused(wafer):
    one_line_error(run(["analyze", " "]), "wafer folder")
    (wafer.parent / "afile").write_text("x")
    one_line_error(run(["analyze", wafer, "--out", wafer.parent / "afile"]), "--out")
    with pytest.raises(AnalysisError, match="give one or more wafer folders"):
        wafer_table([])
