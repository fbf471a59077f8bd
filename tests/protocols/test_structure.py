"""The shape of the code in protocols/: short functions, each phase its own."""

from __future__ import annotations

import ast
from pathlib import Path

PROTOCOLS = Path(__file__).resolve().parents[2] / "protocols"
MAX_LINES = 60


def functions():
    """(where, lines) of every def in protocols/, decorators aside, docstring included."""
    for path in sorted(PROTOCOLS.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                where = f"{path.relative_to(PROTOCOLS.parent)}:{node.lineno} {node.name}"
                yield where, node.end_lineno - node.lineno + 1


def test_no_function_in_protocols_is_longer_than_60_lines():
    found = dict(functions())
    assert len(found) > 50  # the walk saw the package
    too_long = {where: n for where, n in found.items() if n > MAX_LINES}
    assert not too_long, too_long


def test_the_loop_is_in_named_phases():
    from protocols.write_verify.loop import _Loop

    for phase in ("program", "touch_up", "_verify", "_confirm", "_judge", "_pilot", "_pulse"):
        assert callable(getattr(_Loop, phase)), phase
