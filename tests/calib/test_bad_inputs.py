"""A sweep of bad inputs (CLI options, bench configs, datasheets, die files).

Every case must end the way a user at the bench needs it to: a non-zero exit, one
message naming the offending option, key or file, no traceback, and nothing changed
in the die file already on disk. A module fixture programs die 12 once on the
embedded simulated bench; every bad ``calib program`` below aims at that results
folder and die (unless the case is about another die or results folder), and after
each case the die file's sha256 and the results folder's listing must be unchanged.

Placeholders in the arguments: ``{R}`` the fixture's results folder, ``{DIE}`` its
die file, ``{D}`` the case's own folder (where its ``files`` are written).
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from calib.cli import main
from calib.store import DieStore, DieStoreError, image
from instruments.datasheet import data_root

RRAM_SHEET = (data_root() / "datasheets" / "rram.toml").read_text()

SIM = '[chip]\ndatasheet = "rram"\n[simulation]\nseed = 7\n'
REAL = '[chip]\ndatasheet = "rram"\n'
ARRAY = '[roles.array]\ndriver = "reference-array"\n'
ARRAY_AT = ARRAY + 'resource = "TCPIP::127.0.0.1::9::SOCKET"\n'
DS_BENCH = '[chip]\ndatasheet = "bad.toml"\n[simulation]\nchip = "rram"\n'

FileContent = str | bytes | Callable[[Path, "Programmed"], None]
CASES: list = []


# -- the die file every case must leave alone -------------------------------------------
@dataclass(frozen=True)
class Programmed:
    results: Path
    die_file: Path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))}


def _contents(folder: Path) -> dict[str, str | None]:
    """Every file and folder under ``folder``: a file's sha256, None for a folder."""
    return {str(p.relative_to(folder)): None if p.is_dir() else _sha(p)
            for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def programmed(tmp_path_factory) -> Programmed:
    results = tmp_path_factory.mktemp("results")
    out = CliRunner().invoke(main, ["program", "--die", "12", "--pattern", "random",
                                    "--results", str(results)], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    (die_file,) = results.rglob("die_12.h5")
    return Programmed(results, die_file)


# -- building cases ---------------------------------------------------------------------
def case(id_: str, args: list[str], expect: str | tuple[str, ...],
         files: dict[str, FileContent] | None = None, xfail: str | None = None) -> None:
    marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
    expect = (expect,) if isinstance(expect, str) else expect
    CASES.append(pytest.param(list(args), expect, files or {}, id=id_, marks=marks))


def prog(*extra: str) -> list[str]:
    """``calib program`` on the fixture's die 12 and results folder."""
    return ["program", "--die", "12", "--results", "{R}", *extra]


def npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


def bench_case(id_: str, text: str | bytes, expect: str | tuple[str, ...],
               name: str = "bench.toml", extra: dict[str, FileContent] | None = None,
               xfail: str | None = None) -> None:
    case(id_, prog("--pattern", "random", "--bench", "{D}/" + name), expect,
         {name: text, **(extra or {})}, xfail)


def sheet(*edits: tuple[str, str]) -> str:
    """The bundled RRAM datasheet with text replaced (each old text must be there)."""
    text = RRAM_SHEET
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def without_section(name: str) -> str:
    text = re.sub(rf"^\[{name}\][^\[]*", "", RRAM_SHEET, flags=re.M)
    assert f"[{name}]" not in text
    return text


def datasheet_case(id_: str, text: str | bytes | None, expect: str | tuple[str, ...],
                   xfail: str | None = None) -> None:
    """A simulated bench whose [chip] datasheet is the bad file bad.toml."""
    files: dict[str, FileContent] = {"ds-bench.toml": DS_BENCH}
    if text is None:  # bad.toml is a folder
        files["bad.toml"] = lambda p, _: p.mkdir()
    else:
        files["bad.toml"] = text
    case(id_, prog("--pattern", "random", "--bench", "{D}/ds-bench.toml"), expect, files, xfail)


# == calib program: options ==============================================================
for value in ("-1", "abc", "1.5", ""):
    case(f"die={value or 'empty'}", ["program", "--die", value, "--pattern", "random",
                                     "--results", "{R}"], "--die")
case("die=999-not-on-wafer", ["program", "--die", "999", "--pattern", "random",
                              "--results", "{R}"], "999")
case("die-missing", ["program", "--pattern", "random", "--results", "{R}"], "--die")
for value in ("0", "-1e-6", "1", "1e-3", "nan", "inf", "-inf", "abc", ""):
    case(f"tolerance={value or 'empty'}", prog("--pattern", "random", "--tolerance", value),
         "--tolerance")
for value in ("0", "-5", "1.5", "100000", "abc"):
    case(f"max-pulses={value}", prog("--pattern", "random", "--max-pulses", value),
         "--max-pulses")
for value in ("-1", "nan", "inf", "abc", "100000"):
    case(f"relax-wait={value}", prog("--pattern", "random", "--relax-wait", value),
         "--relax-wait")
for value in ("0", "5000", "1.5", "-1"):
    case(f"read-averages={value}", prog("--pattern", "random", "--read-averages", value),
         "--read-averages")
case("pattern=nope", prog("--pattern", "nope"), "--pattern")
case("pattern=empty", prog("--pattern", ""), "--pattern")
case("pattern-and-target", prog("--pattern", "random", "--target", "{D}/t.npy"), "--target",
     {"t.npy": npy(np.full((4, 4), 20e-6))})
case("weights-and-target", prog("--weights", "{D}/w.npy", "--target", "{D}/t.npy"),
     "--weights", {"t.npy": npy(np.full((4, 4), 20e-6)), "w.npy": npy(np.ones((4, 4)))})
case("unknown-option", prog("--pattern", "random", "--frobnicate", "3"), "--frobnicate")
case("unexpected-argument", prog("--pattern", "random", "extra"), "extra")

# --target files
case("target-missing", prog("--target", "{D}/missing.npy"), "missing.npy")
case("target-empty-name", prog("--target", ""), "--target")
case("target-folder", prog("--target", "{D}/folder.npy"), "--target",
     {"folder.npy": lambda p, _: p.mkdir()})
case("target-empty-file", prog("--target", "{D}/empty.npy"), "empty.npy", {"empty.npy": b""})
case("target-junk", prog("--target", "{D}/junk.npy"), "junk.npy",
     {"junk.npy": b"\x93NUMPY\x01\x00garbage\xff\xfe" * 10})
case("target-text", prog("--target", "{D}/text.npy"), "text.npy",
     {"text.npy": "20e-6, 20e-6\n"})
case("target-truncated", prog("--target", "{D}/cut.npy"), "cut.npy",
     {"cut.npy": npy(np.full((64, 64), 20e-6))[:300]})
case("target-3d", prog("--target", "{D}/t3.npy"), "t3.npy",
     {"t3.npy": npy(np.full((2, 64, 64), 20e-6))})
case("target-1d", prog("--target", "{D}/t1.npy"), "t1.npy", {"t1.npy": npy(np.full(64, 20e-6))})
case("target-scalar", prog("--target", "{D}/t0.npy"), "t0.npy", {"t0.npy": npy(20e-6)})
case("target-strings", prog("--target", "{D}/ts.npy"), "ts.npy",
     {"ts.npy": npy(np.full((4, 4), "20 uS"))})
case("target-complex", prog("--target", "{D}/tc.npy"), "tc.npy",
     {"tc.npy": npy(np.full((4, 4), 20e-6 + 1e-6j))})
case("target-bool", prog("--target", "{D}/tb.npy"), "tb.npy",
     {"tb.npy": npy(np.ones((4, 4), bool))})
case("target-object-pickle", prog("--target", "{D}/to.npy"), "to.npy",
     {"to.npy": lambda p, _: np.save(p, np.array([[1, "a"]], dtype=object), allow_pickle=True)})
case("target-inf", prog("--target", "{D}/tinf.npy"), "tinf.npy",
     {"tinf.npy": npy(np.array([[20e-6, np.inf]]))})
case("target-outside-window", prog("--target", "{D}/big.npy"), "big.npy",
     {"big.npy": npy(np.full((64, 64), 50e-6))})
case("target-in-microsiemens", prog("--target", "{D}/us.npy"), "us.npy",
     {"us.npy": npy(np.full((8, 8), 20.0))})
case("target-negative", prog("--target", "{D}/neg.npy"), "neg.npy",
     {"neg.npy": npy(np.full((8, 8), -20e-6))})
case("target-too-wide", prog("--target", "{D}/wide.npy"), "wide.npy",
     {"wide.npy": npy(np.full((2, 65), 20e-6))})
case("target-too-tall", prog("--target", "{D}/tall.npy"), "tall.npy",
     {"tall.npy": npy(np.full((65, 2), 20e-6))})
case("target-zero-size", prog("--target", "{D}/zero.npy"), "zero.npy",
     {"zero.npy": npy(np.zeros((0, 64)))})
case("target-all-nan", prog("--target", "{D}/nan.npy"), "nan.npy",
     {"nan.npy": npy(np.full((64, 64), np.nan))})

# --weights files
case("weights-nan", prog("--weights", "{D}/wnan.npy"), "wnan.npy",
     {"wnan.npy": npy(np.array([[0.5, np.nan], [0.1, 0.2]]))})
case("weights-inf", prog("--weights", "{D}/winf.npy"), "winf.npy",
     {"winf.npy": npy(np.array([[0.5, np.inf], [0.1, 0.2]]))})
case("weights-too-big", prog("--weights", "{D}/wbig.npy"), "wbig.npy",
     {"wbig.npy": npy(np.ones((64, 33)))})
case("weights-too-tall", prog("--weights", "{D}/wtall.npy"), "wtall.npy",
     {"wtall.npy": npy(np.ones((65, 2)))})
case("weights-subnormal", prog("--weights", "{D}/wsub.npy"), "wsub.npy",
     {"wsub.npy": npy(np.array([[1e-320, 0.0], [0.0, -1e-321]]))})
case("weights-1d", prog("--weights", "{D}/w1.npy"), "w1.npy", {"w1.npy": npy(np.ones(10))})
case("weights-empty", prog("--weights", "{D}/w0.npy"), "w0.npy",
     {"w0.npy": npy(np.zeros((0, 4)))})
case("weights-empty-file", prog("--weights", "{D}/wempty.npy"), "wempty.npy",
     {"wempty.npy": b""})
case("weights-missing", prog("--weights", "{D}/nowhere.npy"), "nowhere.npy")
case("weights-folder", prog("--weights", "{D}/wdir"), "--weights",
     {"wdir": lambda p, _: p.mkdir()})
case("weights-strings", prog("--weights", "{D}/wstr.npy"), "wstr.npy",
     {"wstr.npy": npy(np.full((2, 2), "x"))})

# --bench, --results, --wafer
case("bench-missing", prog("--pattern", "random", "--bench", "{D}/nobench.toml"),
     "nobench.toml")
case("bench-missing-bare-name", prog("--pattern", "random", "--bench", "nosuchbench"),
     "nosuchbench")
case("bench-folder", prog("--pattern", "random", "--bench", "{D}/benchdir"), "benchdir",
     {"benchdir": lambda p, _: p.mkdir()})
case("bench-empty-name", prog("--pattern", "random", "--bench", ""), "--bench")
case("results-is-a-file", ["program", "--die", "12", "--pattern", "random", "--results",
                           "{D}/afile"], "afile", {"afile": "not a folder\n"})
case("results-dev-null", ["program", "--die", "12", "--pattern", "random", "--results",
                          "/dev/null"], "/dev/null")
case("results-empty", ["program", "--die", "12", "--pattern", "random", "--results", ""],
     "--results")
case("die=0-not-on-wafer", ["program", "--die", "0", "--pattern", "random", "--results", "{R}"],
     "die 0")


def _die_file_as(name: str, change: Callable[[bytes], bytes] = lambda b: b):
    """Put (a changed copy of) the fixture's die file at {D}/res/<wafer>/<name>."""
    def make(path: Path, p: Programmed) -> None:
        target = path / p.die_file.parent.name / name
        target.parent.mkdir(parents=True)
        target.write_bytes(change(p.die_file.read_bytes()))
    return make


case("results-holds-another-dies-file", ["program", "--die", "13", "--pattern", "random",
                                         "--results", "{D}/res"], "die_13.h5",
     {"res": _die_file_as("die_13.h5")})
case("results-holds-a-damaged-die-file", ["program", "--die", "12", "--pattern", "random",
                                          "--results", "{D}/res"], "die_12.h5",
     {"res": _die_file_as("die_12.h5", lambda b: b[: len(b) // 3])})
case("results-die-file-is-a-folder", ["program", "--die", "12", "--pattern", "random",
                                      "--results", "{D}/res"], "die_12.h5",
     {"res": lambda p, fx: (p / fx.die_file.parent.name / "die_12.h5").mkdir(parents=True)})
for value in ("../../x", "/abs", "a/b", "..", ".", "", " "):
    case(f"wafer={value!r}", prog("--pattern", "random", "--wafer", value), "wafer")

# == bench config files (--bench) ========================================================
bench_case("bench-empty-file", "", ("empty.toml", "roles.array"), name="empty.toml")
bench_case("bench-not-utf8", b"[chip]\ndatasheet = \"\xff\xfe\"\n", ("latin.toml", "UTF-8"),
           name="latin.toml")
bench_case("bench-binary", bytes(range(256)), "binary.toml", name="binary.toml")
bench_case("bench-invalid-toml", "[chip\ndatasheet = rram\n", ("broken.toml", "TOML"),
           name="broken.toml")
bench_case("bench-unknown-section", SIM + "[colour]\nhue = 1\n", "[colour]")
bench_case("chip-unknown-key", '[chip]\ndatasheet = "rram"\ntemperature = "85 degC"\n'
           "[simulation]\n", "chip.temperature")
bench_case("chip-spec-renamed", '[chip]\nspec = "rram"\n[simulation]\n', "chip.spec")
bench_case("chip-not-a-table", 'chip = "rram"\n[simulation]\n', "chip")
bench_case("chip-datasheet-number", "[chip]\ndatasheet = 5\n[simulation]\n", "chip.datasheet")
bench_case("chip-datasheet-empty", '[chip]\ndatasheet = ""\n[simulation]\n', "chip.datasheet")
bench_case("chip-datasheet-unknown", '[chip]\ndatasheet = "nochip"\n[simulation]\n'
           'chip = "rram"\n', ("chip.datasheet", "nochip"))
bench_case("chip-datasheet-missing-file", '[chip]\ndatasheet = "gone.toml"\n[simulation]\n'
           'chip = "rram"\n', ("chip.datasheet", "gone.toml"))
bench_case("visa-typo", SIM + '[visa]\nlibary = "@py"\n', "visa.libary")
bench_case("visa-library-number", SIM + "[visa]\nlibrary = 5\n", "visa.library")
bench_case("visa-library-nonexistent", REAL + '[visa]\nlibrary = "@nonexistent"\n' + ARRAY_AT,
           ("visa.library", "@nonexistent"))
bench_case("bench-is-a-datasheet", RRAM_SHEET, "sheet.toml", name="sheet.toml")
bench_case("simulated-role-with-unknown-resource", SIM + ARRAY + 'resource = "TCPIP::1.2.3.4::'
           '5025::SOCKET"\n', "TCPIP::1.2.3.4::5025::SOCKET")
bench_case("simulation-chip-is-a-datasheet", '[chip]\ndatasheet = "rram"\n[simulation]\n'
           'chip = "ds.toml"\n', "ds.toml", extra={"ds.toml": RRAM_SHEET})
bench_case("visa-not-a-table", 'visa = "@py"\n' + SIM, "visa")
for value in ("-1", '"7"', "1.5", "true", "4294967296"):
    bench_case(f"simulation-seed={value}", f"[simulation]\nseed = {value}\n", "simulation.seed")
for key, value in (("rows", "0"), ("rows", "100000"), ("cols", '"64"'), ("rows", "1.5"),
                   ("cols", "true")):
    bench_case(f"simulation-{key}={value}", f"[simulation]\n{key} = {value}\n",
               f"simulation.{key}")
bench_case("simulation-transport-pigeon", '[simulation]\ntransport = "pigeon"\n',
           "simulation.transport")
bench_case("simulation-transport-number", "[simulation]\ntransport = 5\n",
           "simulation.transport")
bench_case("simulation-latency-number", "[simulation]\nlatency = 5\n", "simulation.latency")
bench_case("simulation-latency-unknown", "[simulation.latency]\nfoo = 1\n",
           "simulation.latency.foo")
for value in ("-1", '"2 ms"', "nan", "inf", "true"):
    bench_case(f"simulation-latency-transaction_s={value}",
               f"[simulation.latency]\ntransaction_s = {value}\n",
               "simulation.latency.transaction_s")
bench_case("simulation-chip-flash", '[simulation]\nchip = "flash"\n', "flash")
bench_case("simulation-chip-number", "[simulation]\nchip = 5\n", "simulation.chip")
bench_case("simulation-chip-missing-file", '[simulation]\nchip = "nochip.toml"\n', "nochip.toml")
bench_case("simulation-chip-needed", '[chip]\ndatasheet = "ds.toml"\n[simulation]\nseed = 7\n',
           "simulation.chip", extra={"ds.toml": RRAM_SHEET})
bench_case("simulation-wafer-unknown", '[simulation]\nwafer = "nowafer"\n', "nowafer")
bench_case("simulation-wafer-number", "[simulation]\nwafer = 5\n", "simulation.wafer")
bench_case("simulation-unknown-key", "[simulation]\ntemperature = 85\n",
           "simulation.temperature")
bench_case("simulation-not-a-table", 'simulation = "yes"\n', "simulation")
bench_case("roles-laser", SIM + ARRAY + '[roles.laser]\ndriver = "x"\n', "roles.laser")
bench_case("role-without-driver", SIM + '[roles.array]\nforming_voltage = 5.0\n',
           "roles.array.driver")
bench_case("role-driver-nope", SIM + '[roles.array]\ndriver = "nope"\n',
           ("roles.array.driver", "nope"))
bench_case("role-driver-number", SIM + "[roles.array]\ndriver = 5\n", "roles.array.driver")
bench_case("real-role-driver-nope", REAL + '[roles.array]\ndriver = "nope"\n',
           ("roles.array.driver", "nope"))
bench_case("real-role-without-resource", REAL + ARRAY, "roles.array.resource")
bench_case("real-smu-without-resource", REAL + ARRAY_AT + '[roles.smu]\ndriver = "keithley2450"\n',
           "roles.smu.resource")
bench_case("role-resource-number", REAL + ARRAY + "resource = 5\n", "roles.array.resource")
bench_case("role-resource-empty", REAL + ARRAY + 'resource = " "\n', "roles.array.resource")
for key, value in (("timeout_s", '"5 s"'), ("timeout_s", "-1"), ("timeout_s", "0"),
                   ("timeout_s", "nan"), ("retries", "-1"), ("retries", "1.5"),
                   ("retries", "100"), ("retries", "true"), ("min_interval_s", "-1"),
                   ("read_termination", "5"), ("write_termination", "false"),
                   ("exclusive", '"yes"')):
    bench_case(f"session-{key}={value}", SIM + ARRAY + f"{key} = {value}\n",
               f"roles.array.{key}")
bench_case("option-forming-voltage-beyond-limit", SIM + ARRAY + "forming_voltage = 50.0\n",
           "forming_voltage")
bench_case("option-forming-voltage-text", SIM + ARRAY + 'forming_voltage = "5 V"\n',
           "forming_voltage")
bench_case("option-read-voltage-beyond-limit", SIM + ARRAY + "read_voltage = 1.0\n",
           "read_voltage")
bench_case("option-unknown", SIM + ARRAY + "frobnicate = 1\n", "frobnicate")
bench_case("driver-in-wrong-role", SIM + ARRAY + '[roles.clock]\ndriver = "keithley2450"\n',
           ("roles.clock.driver", "keithley2450"))
bench_case("smu-switch-array-without-smu", SIM + '[roles.array]\ndriver = "smu-switch-array"\n'
           '[roles.switch]\ndriver = "keithley707b"\n', "roles.smu")
bench_case("smu-switch-array-word-lines", SIM + '[roles.array]\ndriver = "smu-switch-array"\n'
           'word_lines = 1.5\n[roles.smu]\ndriver = "keithley2450"\n[roles.switch]\n'
           'driver = "keithley707b"\n', "word_lines")
bench_case("roles-number", "roles = 5\n" + SIM, "[roles]")
bench_case("roles-array-number", SIM + "[roles]\narray = 5\n", "roles.array")
bench_case("roles-without-array", SIM + '[roles.clock]\ndriver = "virtual-clock"\n',
           "roles.array")

# == datasheet files named by a simulated bench config ====================================
datasheet_case("datasheet-missing-limits", without_section("limits"), "[limits]")
datasheet_case("datasheet-limits-not-a-table", "limits = 5\n" + without_section("limits"),
               "[limits]")
datasheet_case("datasheet-physics-section", RRAM_SHEET + '\n[bounds]\ng_floor = "0.1 uS"\n',
               "[bounds]")
datasheet_case("datasheet-unknown-section", RRAM_SHEET + "\n[colour]\nhue = 1\n", "[colour]")
datasheet_case("datasheet-empty", "", "[chip]")
datasheet_case("datasheet-invalid-toml", "[chip\n", "bad.toml")
datasheet_case("datasheet-not-utf8", b'[chip]\nname = "\xff"\n', "bad.toml")
datasheet_case("datasheet-folder", None, "bad.toml")
for key, old, new in (
        ("limits.max_program_voltage", '"4.0 V"', '"400 V"'),
        ("limits.max_program_voltage", '"4.0 V"', '"4.0 uS"'),
        ("limits.max_program_voltage", '"4.0 V"', '"0 V"'),
        ("limits.max_pulse_width", '"100 us"', '"10 s"'),
        ("limits.max_temperature", '"125 degC"', '"1000 degC"'),
        ("limits.min_temperature", '"-40 degC"', '"-300 degC"'),
        ("limits.min_temperature", '"-40 degC"', '"130 degC"'),
        ("limits.max_read_voltage", '"0.3 V"', "0.3"),
        ("limits.max_compliance", '"200 uA"', '"1 A"'),
        ("limits.max_forming_width", '"2 ms"', '"2 parsecs"'),
        ("window.g_min", '"1 uS"', '"50 uS"'),
        ("window.g_min", '"1 uS"', '"1 V"'),
        ("window.g_min", '"1 uS"', '"-1 uS"'),
        ("window.g_max", '"40 uS"', '"nan uS"'),
        ("window.read_voltage", '"0.2 V"', '"0.5 V"'),
        ("chip.technology", '"rram"', '"flash"'),
        ("chip.rows", "64", "0"),
        ("chip.cols", "64", "1.5"),
        ("chip.name", '"rram"', "5"),
        ("forming.voltage", '"5 V"', '"6 V"'),
        ("forming.width", '"1 ms"', '"5 ms"'),
        ("forming.required", "true", '"yes"'),
        ("programming.reset", '"gradual"', '"sudden"'),
        ("programming.read_noise", '"white"', '"pink"'),
        ("programming.set_threshold", '"0.9 V"', '"5 V"'),
        ("programming.set_reference", '"2.0 V"', '"0.5 V"'),
        ("programming.amplitude_exponent", "2.0", "-1"),
        ("programming.width_exponent", "0.5", '"0.5"')):
    field = key.split(".")[1]
    datasheet_case(f"datasheet-{key}={new}", sheet((f"{field} = {old}", f"{field} = {new}")),
                   key)
datasheet_case("datasheet-unknown-field", sheet(('g_max = "40 uS"', 'g_max = "40 uS"\n'
                                                 'g_mid = "20 uS"')), "window.g_mid")
datasheet_case("datasheet-missing-field", sheet(('name = "rram"\n', "")), "chip.name")
datasheet_case("datasheet-sources-number", sheet(('"limits" = "NeuRRAM', '"limits" = 5\n#')),
               "[sources]")
datasheet_case("datasheet-32x32-on-64x64-chip", sheet(("rows = 64", "rows = 32"),
                                                     ("cols = 64", "cols = 32")),
               ("64 x 64", "32 x 32"))


# == die files for calib report ==========================================================
def _h5_without_format(path: Path, _: Programmed) -> None:
    with h5py.File(path, "w") as f:
        f.create_group("runs")
        f.attrs["wafer"] = "w"


def _bad_json(path: Path, p: Programmed) -> None:
    """A sealed die file whose runs' JSON attributes are not JSON. Sealed with the store's
    own ``image.seal``: ``DieStore(path).reseal()`` refuses an edited file (the
    constructor checks the seal before reseal can run)."""
    shutil.copyfile(p.die_file, path)
    with h5py.File(path, "a") as f:
        for run in f["runs"].values():
            run.attrs["summary_json"] = "{not json"
            run.attrs["params_json"] = "[1, 2"
    path.write_bytes(image.seal(path.read_bytes()))


def _truncated(path: Path, p: Programmed) -> None:
    data = p.die_file.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _header_only(path: Path, p: Programmed) -> None:
    path.write_bytes(p.die_file.read_bytes()[:512])


def _flipped(path: Path, p: Programmed) -> None:
    data = bytearray(p.die_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


case("report-missing-file", ["report", "{D}/none.h5"], "none.h5")
case("report-text-file", ["report", "{D}/hello.h5"], "hello.h5", {"hello.h5": "hello\n"})
case("report-empty-file", ["report", "{D}/empty.h5"], "empty.h5", {"empty.h5": b""})
case("report-hdf5-without-format", ["report", "{D}/plain.h5"], "plain.h5",
     {"plain.h5": _h5_without_format})
case("report-bad-json-attributes", ["report", "{D}/json.h5"], "json.h5", {"json.h5": _bad_json})
case("report-folder", ["report", "{D}/dir.h5"], "dir.h5", {"dir.h5": lambda p, _: p.mkdir()})
case("report-dev-null", ["report", "/dev/null"], "/dev/null")
case("report-truncated", ["report", "{D}/cut.h5"], "cut.h5", {"cut.h5": _truncated})
case("report-header-only", ["report", "{D}/head.h5"], "head.h5", {"head.h5": _header_only})
case("report-bit-flip", ["report", "{D}/flip.h5"], "flip.h5", {"flip.h5": _flipped})
case("report-out-is-a-file", ["report", "{DIE}", "--out", "{D}/outfile"], ("--out", "outfile"),
     {"outfile": "a file\n"})
case("report-no-argument", ["report"], "FILE")
case("report-empty-name", ["report", ""], "FILE")
case("report-out-empty", ["report", "{DIE}", "--out", ""], "--out")

# == calib sim, calib sim serve, calib bench check =======================================
case("sim-seed=-1", ["sim", "--seed", "-1"], "--seed")
case("sim-seed=abc", ["sim", "--seed", "abc"], "--seed")
case("sim-rows=0", ["sim", "--rows", "0"], "--rows")
case("sim-cols=100000", ["sim", "--cols", "100000"], "--cols")
case("sim-die=9999", ["sim", "--die", "9999"], "9999")
case("sim-die=-1", ["sim", "--die", "-1"], "--die")
case("sim-chip=flash", ["sim", "--chip", "flash"], "flash")
case("sim-die=0", ["sim", "--die", "0"], "die 0")
case("sim-chip-is-a-datasheet", ["sim", "--chip", "{D}/ds.toml"], "ds.toml",
     {"ds.toml": RRAM_SHEET})
case("sim-chip-missing-file", ["sim", "--chip", "{D}/nochip.toml"], "nochip.toml")
case("sim-chip-invalid-toml", ["sim", "--chip", "{D}/chip.toml"], "chip.toml",
     {"chip.toml": "[chip\n"})
case("sim-serve-port-base=70000", ["sim", "serve", "--port-base", "70000"], "--port-base")
case("sim-serve-port-base=80", ["sim", "serve", "--port-base", "80"], "--port-base")
case("sim-serve-chip=flash", ["sim", "serve", "--chip", "flash"], "flash")
case("sim-serve-seed=-1", ["sim", "serve", "--seed", "-1"], "--seed")
case("bench-check-empty-file", ["bench", "check", "--bench", "{D}/empty.toml"],
     ("empty.toml", "roles.array"), {"empty.toml": ""})
case("bench-check-missing-file", ["bench", "check", "--bench", "{D}/gone.toml"], "gone.toml")
case("bench-check-empty-name", ["bench", "check", "--bench", ""], "--bench")
case("bench-check-bad-datasheet", ["bench", "check", "--bench", "{D}/ds-bench.toml"],
     "limits.max_program_voltage",
     {"ds-bench.toml": DS_BENCH, "bad.toml": sheet(('"4.0 V"', '"400 V"'))})
case("unknown-command", ["frobnicate"], "frobnicate")


# -- the test ---------------------------------------------------------------------------
def _fill(arg: str, subs: dict[str, str]) -> str:
    for key, value in subs.items():
        arg = arg.replace(key, value)
    return arg


def test_sweep_is_big_enough():
    assert len(CASES) >= 110
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), "case ids must be unique"


@pytest.mark.parametrize("args, expect, files", CASES)
def test_bad_input(programmed, tmp_path, monkeypatch, args, expect, files):
    monkeypatch.chdir(tmp_path)  # anything written to the working folder lands here
    work = tmp_path / "case"
    work.mkdir()
    for name, content in files.items():
        target = work / name
        if callable(content):
            content(target, programmed)
        elif isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
    subs = {"{R}": str(programmed.results), "{DIE}": str(programmed.die_file),
            "{D}": str(work)}
    before_hash, before_files = _sha(programmed.die_file), _listing(programmed.results)
    before_inputs = _contents(work)

    result = CliRunner().invoke(main, [_fill(a, subs) for a in args])

    out = result.output
    problems = []
    if not (result.exception is None or isinstance(result.exception, SystemExit)):
        problems.append(f"raised {type(result.exception).__name__}: {result.exception}")
    if result.exit_code == 0:
        problems.append("exit status 0")
    if "Traceback" in out:
        problems.append("a traceback")
    problems += [f"{text!r} not named" for text in expect if text not in out]
    if _sha(programmed.die_file) != before_hash:
        problems.append("the existing die file changed")
    if _listing(programmed.results) != before_files:
        problems.append("the results folder changed")
    if _contents(work) != before_inputs:
        problems.append("the case's own files changed")
    assert not problems, f"{'; '.join(problems)}\noutput: {out}"


def test_reseal_from_a_new_store_accepts_an_intended_edit(programmed, tmp_path):
    """The recovery the 'changed outside aimc-calib' message names (docs/die-file.md)."""
    path = tmp_path / "die_12.h5"
    shutil.copyfile(programmed.die_file, path)
    with h5py.File(path, "a") as f:
        f.attrs["note"] = "edited by hand"
    with pytest.raises(DieStoreError, match=r"check=False\)\.reseal\(\)"):
        DieStore(path)
    DieStore(path, check=False).reseal()
    assert [r.run_id for r in DieStore(path).runs()] == [
        r.run_id for r in DieStore(programmed.die_file).runs()]
