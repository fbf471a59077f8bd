"""``calib infer``: a network on a die — its accuracy now and at later virtual ages."""

from __future__ import annotations

import click

from calib.cli.options import (
    bench_option,
    die_option,
    emit,
    json_option,
    results_option,
    wafer_option,
)
from calib.jobs.infer import SOURCES, TEMPERATURE, InferOptions, infer_die, parse_ages
from calib.wiring import open_bench
from protocols.inference import METHODS


def _lines(s: dict) -> list[str]:
    methods = list(next(iter(s["accuracy"].values())).keys()) if s["accuracy"] else []
    out = [f"die {s['die']}: {s['model']} on {s['samples']} samples of {s['dataset']}; float "
           f"accuracy {s['float_accuracy']:.2%}; "
           + ("programmed now" if s["programmed_now"] else f"as programmed in "
              f"{s['programmed_in']}"),
           "age      " + "  ".join(f"{m:>9}" for m in methods)]
    for age, row in s["accuracy"].items():
        out.append(f"{age:<8} " + "  ".join(f"{row[m]:>9.2%}" for m in methods))
    err = ", ".join(f"{e:.1%}" for e in s["layer_mvm_error"])
    out.append(f"layer MVM error {err}; calibration transactions "
               f"{s['calibration_transactions']}; inference {s['inference_transactions']} "
               f"transactions, bench {s['inference_bench_time_s']:.3f} s")
    t = s.get("temperature")
    if t:
        for row in t["ages"]:
            die = row["die_c"]
            where = (f"die {die['temperature_c']:.2f} degC from the {die['source']}"
                     if die else "")
            home = (f"; at home ({t['home_c']:g} degC) {row['home_accuracy']:.2%}"
                    if row["home_accuracy"] is not None else "")
            chuck = f"chuck {row['chuck_c']:.2f} degC" if row["chuck_c"] is not None else ""
            out.append(f"{row['age']}: " + ", ".join(p for p in (chuck, where) if p) + home)
    out.append(f"stored {s['run']} in {s['file']}")
    return out


@click.command("infer")
@die_option()
@click.option("--model", type=click.Path(dir_okay=False), default=None,
              help="A network as an .npz of layers (default: the bundled digits model).")
@click.option("--dataset", type=click.Path(dir_okay=False), default=None,
              help="An .npz with X (n, inputs) and y (n,) (default: the digits test split).")
@click.option("--at", "ages", default="0", show_default=True,
              help="Ages after programming to measure at, e.g. 0,1h,1d,30d,1y (virtual "
                   "time on the simulated bench, real waiting on a bench).")
@click.option("--compensation", default="none", show_default=True,
              help=f"Compensation methods, comma-separated: drift ({', '.join(METHODS)}; "
                   f"'all' for these) and {TEMPERATURE} (needs calib tempcal on the die).")
@click.option("--temperature", "temperature_c", type=float, default=None,
              help="Chuck set point (degC) to measure at; each age is also measured at the "
                   "chuck's home temperature first, and the chuck goes home at the end.")
@click.option("--temperature-source", type=click.Choice(SOURCES), default="auto",
              show_default=True,
              help="The die temperature for the temperature compensation: the reference "
                   "cells on the array (auto, when the mapping has them) or the chuck.")
@click.option("--settle-timeout", type=float, default=1800.0, show_default=True,
              help="Seconds for the chuck to report settled.")
@click.option("--soak", type=float, default=120.0, show_default=True,
              help="Seconds to wait after the chuck settles (the die lags it).")
@click.option("--passes", type=click.IntRange(min=1), default=1, show_default=True,
              help="Passes of the test set per age and method; the accuracy is their mean "
                   "(read noise flips a few borderline samples from pass to pass).")
@click.option("--reprogram", is_flag=True, help="Program the network even if the die holds it.")
@click.option("--no-program", is_flag=True,
              help="Use the network the die holds; fail if it holds none.")
@bench_option
@results_option
@wafer_option
@json_option
def command(die_id, model, dataset, ages, compensation, temperature_c, temperature_source,
            settle_timeout, soak, passes, reprogram, no_program, bench_file, results, wafer,
            as_json) -> None:
    """Run a network on a die's crossbar and measure its accuracy against the float model."""
    if reprogram and no_program:
        raise click.UsageError("give --reprogram or --no-program, not both")
    methods = tuple(METHODS) if compensation.strip() == "all" else tuple(
        m.strip() for m in compensation.split(",") if m.strip())
    options = InferOptions(model=model, dataset=dataset, ages_s=parse_ages(ages),
                           compensation=methods or ("none",),
                           program=True if reprogram else (False if no_program else None),
                           temperature_c=temperature_c, temperature_source=temperature_source,
                           settle_timeout_s=settle_timeout, soak_s=soak, passes=passes)
    with open_bench(bench_file) as b:
        summary = infer_die(b, die_id, options, results=results, wafer=wafer)
    emit(summary, as_json, _lines)
