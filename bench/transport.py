"""What the gRPC transport costs over the in-process simulator, for the same session.

    python -m bench.transport                      # n = 50, m = 1,000,000
    python -m bench.transport --clients 10 --dim 100000 --json

Runs the session twice on this machine: in-process (``secagg.sim.simulate``)
and over gRPC + mTLS with one server process and n client processes on
127.0.0.1. Reports, per client per session:

* bytes on the wire (TCP payload both ways, from the kernel's TCP_INFO
  counters: TLS records, HTTP/2 frames and protobuf included) against the
  protocol's own messages (the packed masked vector plus key, share and
  unmasking messages), and against the packed masked vector alone;
* the session's wall time on the server (SessionOpen to result; process
  start-up excluded) against the in-process simulator's wall time, and the
  whole run's wall time with process start-up.

All n + 1 processes share this machine's cores, as the simulator's n
clients share one process: the comparison is the transport's overhead, not a
deployment's latency.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from secagg.config import SessionConfig
from secagg.sim import simulate
from secagg.transport.client import demo_input
from secagg.transport.framing import masked_input_length
from secagg.transport.local import run_simulation


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--dim", type=int, default=1_000_000)
    p.add_argument("--modulus-bits", type=int, default=32)
    p.add_argument("--round-timeout", type=float, default=120.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    n, dim, R = args.clients, args.dim, 1 << args.modulus_bits

    config = SessionConfig.create(range(1, n + 1), dim, R, min_cohort=min(10, n))
    start = time.perf_counter()
    sim = simulate(config, lambda u: demo_input(args.seed, u, 0, dim, R))
    inproc_wall = time.perf_counter() - start
    if not sim.exact:
        print("in-process session failed", file=sys.stderr)
        return 1

    grpc_run = run_simulation(clients=n, dim=dim, modulus_bits=args.modulus_bits,
                              server_args=["--min-cohort", min(10, n)], seed=args.seed,
                              round_timeout=args.round_timeout, join_timeout=900)
    if not grpc_run["exact"]:
        print(f"gRPC session failed: {grpc_run.get('abort_reason')}", file=sys.stderr)
        return 1
    protocol_bytes = grpc_run["bytes_up_per_client"] + grpc_run["bytes_down_per_client"]
    wire = grpc_run["bytes_on_wire_per_client"]
    masked = masked_input_length(config)
    report = {
        "clients": n, "dim": dim, "modulus_bits": args.modulus_bits,
        "inproc_wall_seconds": inproc_wall,
        "inproc_server_seconds": sim.server_seconds,
        "grpc_session_seconds": grpc_run["wall_seconds"],
        "grpc_server_seconds": grpc_run["server_seconds"],
        "grpc_run_seconds_with_startup": grpc_run["wall_seconds_total"],
        "session_wall_ratio": grpc_run["wall_seconds"] / inproc_wall,
        "protocol_bytes_per_client": protocol_bytes,
        "inproc_protocol_bytes_per_client": sim.bytes_up_per_client + sim.bytes_down_per_client,
        "masked_input_bytes": masked,
        "wire_bytes_per_client": wire,
        "wire_to_protocol_ratio": None if wire is None else wire / protocol_bytes,
        "wire_to_masked_vector_ratio": None if wire is None else wire / masked,
        "server_peak_rss_mb": grpc_run["peak_rss_mb"],
    }
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        for k, v in report.items():
            print(f"{k:<34} {v:,.3f}" if isinstance(v, float) else f"{k:<34} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
