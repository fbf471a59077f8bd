"""``calib tempcal``: sweep the chuck over a programmed die and fit its temperature model."""

from __future__ import annotations

import sys

import click

from calib.cli.options import (
    bench_option,
    die_option,
    emit,
    json_option,
    results_option,
    wafer_option,
)
from calib.jobs.tempcal import TempcalInputError, TempcalOptions, parse_temps, tempcal_die
from calib.wiring import open_bench
from protocols.tempcal import LAWS, PLANS, SweepParams, TempcalError


def _lines(s: dict) -> list[str]:
    m, w = s["model"], s["sweep"]
    key = next((k for k in m if k.startswith("column_gain_sigma_at_")), None)
    gain, top = (m[key], key.removeprefix("column_gain_sigma_at_")[:-1]) if key else (None, "")
    temps = ", ".join(f"{t:g}" for t in s["temps_c"])
    out = [f"die {s['die']}: {len(s['visits'])} visits of {temps} degC (reference "
           f"{s['reference_c']:g}); bench {w['bench_time_s']:.0f} s, "
           f"{w['hot_time_s']:.0f} s hot; {w['read_transactions']} reads, "
           f"{w['mvm_transactions']} MVM transactions",
           f"model: {m['law']} law, {m['cells_measured']}/{m['cells']} cells measured, cell "
           f"coefficient median {m['cell_coeff_median']:.4g} sigma {m['cell_coeff_sigma']:.3g}"
           + (f", column gain sigma at {top} degC {gain:.2%}" if gain is not None else ""),
           f"stored {s['run']} in {s['file']}"]
    return out


@click.command("tempcal")
@die_option()
@click.option("--temps", default="25,45,65,85", show_default=True,
              help="Chuck set points in degC, the reference first.")
@click.option("--reference", type=float, default=None,
              help="The reference temperature, one of --temps (default: the first).")
@click.option("--law", type=click.Choice(("auto", *LAWS)), default="auto", show_default=True,
              help="The cells' temperature law; auto: the one that fits better.")
@click.option("--plan", type=click.Choice(PLANS), default="interleaved", show_default=True,
              help="Visit order: the reference after every set point, or once at the end.")
@click.option("--settle-timeout", type=float, default=1800.0, show_default=True,
              help="Seconds for the chuck to report settled at a set point.")
@click.option("--soak", type=float, default=120.0, show_default=True,
              help="Seconds to wait after the chuck settles (the die lags it).")
@bench_option
@results_option
@wafer_option
@json_option
def command(die_id, temps, reference, law, plan, settle_timeout, soak, bench_file, results,
            wafer, as_json) -> None:
    """Measure a die's temperature behaviour on a chuck sweep and store its model."""
    try:
        sweep = SweepParams(reference_c=reference, plan=plan, settle_timeout_s=settle_timeout,
                            soak_s=soak)
    except TempcalError as exc:
        raise TempcalInputError(str(exc).replace("settle_timeout_s", "--settle-timeout")
                                .replace("soak_s", "--soak")) from None
    options = TempcalOptions(temps_c=parse_temps(temps), law=law, sweep=sweep)

    def progress(index: int, total: int, setpoint: float) -> None:
        if not as_json and sys.stderr.isatty():
            click.echo(f"  visit {index + 1}/{total}: {setpoint:g} degC", err=True)

    with open_bench(bench_file) as b:
        summary = tempcal_die(b, die_id, options, results=results, wafer=wafer,
                              progress=progress)
    emit(summary, as_json, _lines)
