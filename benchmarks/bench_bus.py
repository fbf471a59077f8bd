"""Bus benchmark: small-query round trip and whole-array transfers, per transport.

Run: python benchmarks/bench_bus.py [--sizes 64 1024] [--queries 500]

For the in-process PyVISA library and loopback TCP (pyvisa-py SOCKET), prints
the median round trip of a small query (*IDN? through the driver session), and
for each array size the transactions and wall time to read and to pulse the
whole array and 1 % of it (sent as cell lists), plus the bench time the latency
model charges (what a real bench would take). Targets (issue 3): a 1024x1024
read in one transaction; in-process <= 0.05 ms per small query; TCP <= 0.2 ms.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from calib import open_bench


def small_query(bench, n: int) -> float:
    session = bench.sessions["array"]
    for _ in range(20):
        session.query("*IDN?")
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        session.query("*IDN?")
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def array_ops(bench, repeats: int) -> dict:
    arr = bench.array
    bench.prober.goto(12)
    arr.form()
    arr.read()  # first-use set-up
    rng = np.random.default_rng(0)
    volts = np.where(rng.random(arr.shape) < 0.5, 1.5, -1.5)
    few = rng.random(arr.shape) < 0.01  # a late write-verify iteration: 1 % of cells left
    few_volts = np.where(few, volts, 0.0)
    out = {}
    for name, op in (("read", arr.read), ("pulse", lambda: arr.pulse(volts, width=1e-6)),
                     ("read 1%", lambda: arr.read(few)),
                     ("pulse 1%", lambda: arr.pulse(few_volts, width=1e-6))):
        tx, walls, bench_s = [], [], []
        for _ in range(repeats):
            clock = bench.simulation.clock  # read directly: a clock query costs latency too
            t_tx, t_clock, t0 = arr.transactions, clock.now, time.perf_counter()
            op()
            walls.append(time.perf_counter() - t0)
            tx.append(arr.transactions - t_tx)
            bench_s.append(clock.now - t_clock)
        out[name] = (max(tx), statistics.median(walls), statistics.median(bench_s))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 1024])
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{'transport':10} {'small query ms':>15}")
    for transport in ("inprocess", "tcp"):
        with open_bench(transport=transport) as bench:
            print(f"{transport:10} {small_query(bench, args.queries) * 1e3:>15.4f}")
    print()
    print(f"{'transport':10} {'size':>9} {'op':8} {'transactions':>12} {'wall ms':>9} "
          f"{'bench ms':>9}")
    for transport in ("inprocess", "tcp"):
        for size in args.sizes:
            with open_bench(transport=transport, rows=size, cols=size) as bench:
                for op, (tx, wall, bench_s) in array_ops(bench, args.repeats).items():
                    print(f"{transport:10} {size:>4}x{size:<4} {op:8} {tx:>12d} "
                          f"{wall * 1e3:>9.2f} {bench_s * 1e3:>9.2f}")
    print("targets: 1024x1024 read = 1 transaction; small query <= 0.05 ms in-process, "
          "<= 0.2 ms TCP")


if __name__ == "__main__":
    main()
