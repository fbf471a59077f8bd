"""Project-level checks: lint clean, bundled data found, the CLI's simulator view."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from calib.cli import main
from sim_backend.resources import data_root, list_presets

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_clean():
    if shutil.which("ruff") is None:
        pytest.skip("ruff is not installed (it comes with the 'test' extra)")
    out = subprocess.run(["ruff", "check", str(ROOT)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_bundled_presets_are_found():
    assert {"rram", "pcm"} <= set(list_presets("chips"))
    assert "default" in list_presets("wafers")
    assert (data_root() / "chips" / "rram.toml").is_file()


def _imports(path: Path) -> set[str]:
    """Every module a file imports (absolute names), read from its syntax tree."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _hits(imported: set[str], names: tuple[str, ...]) -> set[str]:
    return {m for m in imported for n in names if m == n or m.startswith(n + ".")}


LAYERS = {
    "sim_backend": ("calib", "protocols", "instruments"),
    "instruments": ("calib", "protocols", "sim_backend"),
    "protocols": ("calib", "sim_backend", "h5py", "click", "pyvisa", "instruments.drivers",
                  "instruments.session", "instruments.registry"),
    "calib": ("sim_backend",),
}
# the one place each rule has an exception, by design (docs/architecture.md)
ALLOWED = {"calib": {"calib/wiring/simulated.py", "calib/cli/sim.py"}}


def test_layering_rule():
    """Arrows point down only; in calib only the simulated wiring and `calib sim` see the
    simulator; protocols see only role interfaces and the datasheet."""
    for package, names in LAYERS.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            bad = _hits(_imports(path), names)
            if rel in ALLOWED.get(package, set()):
                continue
            assert not bad, f"{rel} imports {sorted(bad)}"


def test_only_two_calib_modules_import_the_simulator():
    importers = {str(p.relative_to(ROOT)) for p in (ROOT / "calib").rglob("*.py")
                 if _hits(_imports(p), ("sim_backend",))}
    assert importers == ALLOWED["calib"]


def test_layering_check_reads_imports_not_text(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text('"""import sim_backend"""\nif True:\n    from sim_backend import x\n')
    assert _hits(_imports(sample), ("sim_backend",)) == {"sim_backend", "sim_backend.x"}


def test_calib_sim_summary_and_json():
    runner = CliRunner()
    result = runner.invoke(main, ["sim", "--die", "12"])
    assert result.exit_code == 0, result.output
    assert "die 12" in result.output and "conductance map" in result.output
    result = runner.invoke(main, ["sim", "--chip", "pcm", "--die", "3", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["die"] == 3 and summary["technology"] == "pcm"
    assert summary["read_in_window_fraction"] > 0.9


@pytest.mark.parametrize("args, message", [
    (["sim", "--die", "9999"], "no die 9999"),
    (["sim", "--chip", "flash"], "unknown chip preset"),
    (["sim", "--rows", "0"], "--rows"),
])
def test_calib_sim_bad_input_is_one_line(args, message):
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output


def test_console_script_runs():
    exe = shutil.which("calib")
    if exe is None:
        pytest.skip("package not installed with its console script")
    out = subprocess.run([exe, "sim", "--json"], capture_output=True, text=True)
    assert out.returncode == 0 and json.loads(out.stdout)["die"] == 12
    assert sys.executable


def test_every_package_is_declared_for_installation():
    """A subpackage missing from pyproject works from a checkout but not after pip install."""
    import tomllib

    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())
                   ["tool"]["setuptools"]["packages"])
    found = {str(p.parent.relative_to(ROOT)).replace("/", ".")
             for top in ("calib", "instruments", "protocols", "sim_backend")
             for p in (ROOT / top).rglob("__init__.py")}
    assert found <= declared, sorted(found - declared)
