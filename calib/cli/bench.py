"""``calib bench check``: open every instrument of a bench, print identity and status."""

from __future__ import annotations

import dataclasses

import click

from calib.cli.options import bench_option, emit, json_option
from calib.wiring import open_bench
from instruments import InstrumentError


@click.group("bench")
def command() -> None:
    """Bench wiring: check that every instrument answers."""


def _lines(report: dict) -> list[str]:
    out = [f"bench {report['bench']} (chip {report['chip']}"
           f"{', simulated' if report['simulated'] else ''})"]
    for role, entry in report["roles"].items():
        out.append(f"  {role:8} {entry['status']:6} {entry['driver'] or '-':26} "
                   f"{entry['identity'] or ''}")
    return out


@command.command("check")
@bench_option
@json_option
def check(bench_file: str | None, as_json: bool) -> None:
    """Open every instrument, print its identity and status."""
    with open_bench(bench_file) as b:
        report = {"bench": b.config.source, "chip": b.datasheet.name,
                  "simulated": b.simulation is not None, "roles": {}}
        failed = False
        for role, driver in b.roles().items():
            entry = {"driver": None, "identity": None, "status": "absent"}
            if driver is not None:
                entry["driver"] = type(driver).__name__
                try:
                    entry["identity"] = driver.identity()
                    driver.check()
                    entry["status"] = "ok"
                except InstrumentError as exc:
                    entry["status"] = f"error: {exc}"
                    failed = True
            report["roles"][role] = entry
        report["limits"] = dataclasses.asdict(b.limits)
    emit(report, as_json, _lines)
    if failed:
        raise SystemExit(1)
