"""Protocol benchmark: the configurations of the protocol issue, with the floor beside each.

Run ``python -m bench.protocol`` (full, minutes) or ``--quick`` (seconds, used by
the test suite). Every time is reported next to the hardware floor measured in
the same run (see :mod:`secagg.floor`), so the ratio holds on any machine.
The session's peak server memory comes from a tracemalloc replay (see
:func:`secagg.measure.replay_peak_memory`); resident memory of the whole process
(clients included) is reported too.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from dataclasses import dataclass

import numpy as np

from bench.common import SessionCase, fmt
from secagg.config import SessionConfig
from secagg.engine import Engine, make_engine
from secagg.measure import simulate
from secagg.sim import random_schedule
from secagg.simclients import SeededInputs


@dataclass(frozen=True)
class Case(SessionCase):
    min_cohort: int = 10


FULL = (
    Case("secagg n=100 m=1e5 30% after ShareKeys", 100, 100_000, 0.3),
    Case("secagg n=100 m=1e6 30% after ShareKeys", 100, 1_000_000, 0.3),
    Case("secagg n=500 m=1e5 30%", 500, 100_000, 0.3),
    Case("secagg+ n=10000 m=1e4 5%", 10_000, 10_000, 0.05, graph="harary"),
)
QUICK = (
    Case("secagg n=12 m=1e3 30%", 12, 1_000, 0.3),
    Case("secagg+ n=30 m=1e3 10%", 30, 1_000, 0.1, graph="harary"),
)


def run_case(case: Case, threads: int | None, seed: int,
             engine: Engine | None = None) -> dict[str, object]:
    config = SessionConfig.create(
        range(1, case.n + 1), case.m, 2**32, graph=case.graph,
        dropout_rate=case.dropout, corruption_rate=0.05, min_cohort=case.min_cohort,
    )
    make_input = SeededInputs(seed, case.m, config.modulus)
    schedule = random_schedule(config.cohort, case.dropout, case.drop_at,
                               np.random.default_rng(seed))
    start = time.perf_counter()
    report = simulate(config, make_input, schedule, threads=threads, engine=engine,
                      measure_memory=True)
    wall = time.perf_counter() - start
    masked_bytes = report.bytes_up_per_round["masked-input"] * case.n / max(1, report.included)
    return {
        "case": case.name,
        "n": case.n,
        "m": case.m,
        "graph": case.graph,
        "k": report.degree,
        "t": report.threshold,
        "dropout": case.dropout,
        "exact": report.exact,
        "aborted": report.aborted,
        "server_seconds": report.server_seconds,
        "floor_seconds": report.floor_seconds,
        "server_to_floor": report.server_to_floor,
        "full_floor_seconds": report.full_floor_seconds,
        "server_to_full_floor": report.server_to_full_floor,
        "workers": report.workers,
        "server_work": report.server_work,
        "client_seconds_mean": report.client_seconds_mean,
        "bytes_up_per_client": report.bytes_up_per_client,
        "masked_bytes_per_element": masked_bytes / case.m,
        "wire_bound_bytes_per_element": report.modulus_bits / 8,
        "peak_server_mb": report.peak_server_mb,
        "process_max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "clients_on": report.clients_on,
        "session_rss_mb": report.session_rss_mb,
        "workers_rss_mb": report.workers_rss_mb,
        "session_wall_seconds": wall,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.protocol", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small cases (seconds)")
    p.add_argument("--only", default=None, help="run only cases whose name contains this")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes for the server's unmasking (default 1: threads)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    cases = [c for c in (QUICK if args.quick else FULL) if not args.only or args.only in c.name]
    engine = make_engine(args.workers)
    try:
        rows = [run_case(c, args.threads, args.seed, engine) for c in cases]
    finally:
        if engine is not None:
            engine.close()
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(f"{'case':<42} {'exact':>5} {'server s':>9} {'floor s':>8} {'ratio':>6} "
              f"{'full s':>8} {'x full':>6} "
              f"{'client ms':>9} {'B/elem':>6} {'peak MB':>8} {'wall s':>7}")
        for r in rows:
            ratio = r["server_to_floor"]
            print(f"{r['case']:<42} {r['exact']!s:>5} {r['server_seconds']:>9.3f} "
                  f"{r['floor_seconds']:>8.3f} {ratio if ratio else float('nan'):>6.2f} "
                  f"{r['full_floor_seconds']:>8.3f} {fmt(r['server_to_full_floor'], '.2f'):>6} "
                  f"{r['client_seconds_mean'] * 1e3:>9.1f} {r['masked_bytes_per_element']:>6.2f} "
                  f"{r['peak_server_mb']:>8.1f} {r['session_wall_seconds']:>7.1f}")
    return 0 if all(r["exact"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
