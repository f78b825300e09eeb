"""Cost model of a simulated SecAgg+ session: per-client and per-dropout costs, fitted here.

Run ``python -m bench.costmodel`` (a few minutes on 2 quiet cores) or ``--quick``. It
runs small SecAgg+ sessions (m = 10^3) on one worker (clients in process) and on
``--workers`` workers (clients and unmasking on worker processes), fits

* ``c_client``: a client's compute per session, per neighbour (seconds / k; one core),
* ``s_client``: the server's serial cost per client (receiving, routing, one Shamir
  reconstruction, its self mask) and ``s_pair``: its cost per pairwise mask removed
  (one X25519 agreement, HKDF, a mask of m words: what each dropped client costs,
  k times over), by least squares on ``server_seconds`` against (n, pairs),
* ``o_client``: the coordinator's cost per client not in the above (encoding, decoding,
  moving messages), from the 1-worker wall time, and a fixed start-up ``F``,

then predicts every run's wall time from the 1-worker fit alone,

    wall(n, W) = F + n (o_client + s_client) + n k c_client / W + pairs s_pair / W,

and prints the prediction next to each measured point (1 and W workers), then the
extrapolation to 10^5, 10^6 and 10^7 clients at 5% dropout and 1, 2, 8 and 64 workers
(k from the parameter finder). A first, discarded run pays the one-time costs
(imports, kernel compilation). Memory is not fitted here: ``ru_maxrss`` only grows
within a process, so it comes from separate ``secagg simulate --json`` runs
(``session_rss_mb``, ``workers_rss_mb``; see bench/README.md). Times on a loaded
machine stretch every term: print ``uptime`` beside the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass

import numpy as np

from secagg.config import SessionConfig
from secagg.engine import make_engine
from secagg.graph import find_harary_params
from secagg.sim import random_schedule, simulate
from secagg.simclients import SeededInputs

DIM = 1000
DECLARED = 0.2  # declared dropout rate of the model runs (scheduled rates stay below it)


@dataclass(frozen=True)
class Run:
    n: int
    dropout: float
    workers: int
    k: int
    pairs: int
    wall: float
    server: float
    client_total: float
    session_rss_mb: float
    workers_rss_mb: float
    exact: bool


def measure(n: int, dropout: float, workers: int, seed: int) -> Run:
    config = SessionConfig.create(range(1, n + 1), DIM, 1 << 32, graph="harary",
                                  dropout_rate=DECLARED, corruption_rate=0.05)
    schedule = random_schedule(config.cohort, dropout, "masked-input",
                               np.random.default_rng(seed))
    engine = make_engine(workers)
    try:
        start = time.perf_counter()
        report = simulate(config, SeededInputs(seed, DIM, config.modulus), schedule,
                          engine=engine)
        wall = time.perf_counter() - start
    finally:
        if engine is not None:
            engine.close()
    # every client computes at least its first rounds: the mean is over all n
    return Run(n, dropout, workers, config.degree, report.server_work.get("pairwise_masks", 0),
               wall, report.server_seconds, report.client_seconds_mean * n,
               report.session_rss_mb, report.workers_rss_mb, report.exact)


@dataclass(frozen=True)
class Model:
    fixed: float
    o_client: float
    s_client: float
    s_pair: float
    c_client: float  # per client per neighbour

    def wall(self, n: int, k: int, pairs: float, workers: int) -> float:
        return (self.fixed + n * (self.o_client + self.s_client)
                + n * k * self.c_client / workers + pairs * self.s_pair / workers)


def fit(runs: list[Run]) -> Model:
    """Fit on the 1-worker runs (clients in process: every term on one core)."""
    one = [r for r in runs if r.workers == 1]
    c_client = sum(r.client_total for r in one) / sum(r.n * r.k for r in one)
    a = np.array([[r.n, r.pairs] for r in one], dtype=float)
    s_client, s_pair = np.linalg.lstsq(a, np.array([r.server for r in one]), rcond=None)[0]
    rest = np.array([r.wall - r.server - r.client_total for r in one])
    b = np.array([[1.0, r.n] for r in one])
    fixed, o_client = np.linalg.lstsq(b, rest, rcond=None)[0]
    # on a noisy machine a term can come out negative: no cost is below zero
    return Model(max(0.0, float(fixed)), max(0.0, float(o_client)), max(0.0, float(s_client)),
                 max(0.0, float(s_pair)), c_client)


def report(runs: list[Run], model: Model, workers: int) -> str:
    lines = [f"model (fitted on the 1-worker runs, m = {DIM}, SecAgg+):",
             f"  fixed F = {model.fixed:.2f} s; per client: coordinator "
             f"{model.o_client * 1e3:.3f} ms, server {model.s_client * 1e3:.3f} ms, "
             f"client compute {model.c_client * 1e3:.4f} ms x k (one core); "
             f"per pairwise mask (dropped client x surviving neighbour) "
             f"{model.s_pair * 1e3:.3f} ms",
             "", "| n | dropout | workers | k | pairs | measured wall s | predicted s | "
             "error |", "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        pred = model.wall(r.n, r.k, r.pairs, r.workers)
        lines.append(f"| {r.n} | {r.dropout:.2f} | {r.workers} | {r.k} | {r.pairs} | "
                     f"{r.wall:.1f} | {pred:.1f} | {100 * (pred - r.wall) / r.wall:+.0f}% |")
    lines += ["", "extrapolated (5% dropout, SecAgg+ k from the finder, m = 1000):", "",
              "| n | k | " + " | ".join(f"W={w}" for w in (1, 2, 8, 64)) + " |",
              "|---|---|" + "---|" * 4]
    for n in (10**5, 10**6, 10**7):
        k = find_harary_params(n, 0.05, 0.05).k
        pairs = 0.05 * n * k * 0.95
        cells = " | ".join(_human(model.wall(n, k, pairs, w)) for w in (1, 2, 8, 64))
        lines.append(f"| {n:.0e} | {k} | {cells} |")
    return "\n".join(lines)


def _human(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.costmodel", description=__doc__)
    p.add_argument("--quick", action="store_true", help="n = 200, 400 (seconds)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print the runs and the model")
    p.add_argument("--out", default=None, help="also write the runs and the model (JSON) here")
    args = p.parse_args(argv)
    sizes = (200, 400) if args.quick else (1000, 2000)
    measure(sizes[0], 0.0, 1, args.seed)  # one-time costs: imports, kernel compilation
    runs = [measure(n, d, 1, args.seed) for n in sizes for d in (0.0, DECLARED)]
    runs += [measure(sizes[-1], d, args.workers, args.seed) for d in (0.0, DECLARED)]
    model = fit(runs)
    data = json.dumps({"runs": [r.__dict__ for r in runs], "model": model.__dict__})
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(data + "\n")
    if args.json:
        print(data)
    else:
        print(report(runs, model, args.workers))
    return 0 if all(r.exact for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
