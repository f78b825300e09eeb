"""Soak test of the gRPC transport: back-to-back sessions for a fixed time.

    python -m bench.soak                 # 50 clients, 120 s
    python -m bench.soak --quick         # 8 clients, ~10 s of sessions
    python -m bench.soak --clients 20 --seconds 60 --dim 10000

One server process and N client processes on 127.0.0.1 (mTLS, fresh dev CA).
The server runs sessions back to back until SIGTERM, which the soak sends once
the time is up (the server then finishes the session in progress). Reports
failed sessions (aborted or wrong sum: must be 0), p50/p95 session latency,
and the server's open file descriptors and RSS after the first and the last
session (a leak shows as growth proportional to the number of sessions).
Exit status 0 only if every session finished with the exact sum.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

import numpy as np

from secagg.transport.local import LocalCluster, Proc, TransportError, expected_sum


def _proc_stats(pid: int) -> dict[str, float | int | None]:
    """Open descriptors and resident memory of a process, from /proc (Linux)."""
    fds: int | None
    try:
        fds = len(list(Path(f"/proc/{pid}/fd").iterdir()))
    except OSError:
        fds = None
    rss = None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    except OSError:
        pass
    return {"fds": fds, "rss_mb": rss}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seconds", type=float, default=120.0, help="time spent running sessions")
    p.add_argument("--dim", type=int, default=1000)
    p.add_argument("--round-timeout", type=float, default=10.0)
    p.add_argument("--quick", action="store_true", help="8 clients, 10 s")
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.clients, args.seconds = 8, 10.0
    n, dim = args.clients, args.dim
    started = time.perf_counter()
    with LocalCluster(range(1, n + 1)) as cluster:
        server = cluster.start_server(
            "--clients", n, "--dim", dim, "--round-timeout", args.round_timeout,
            "--join-timeout", 600, "--sessions", 1_000_000, "--min-cohort", min(10, n),
            "--out", cluster.dir / "last.npz")
        for u in range(1, n + 1):
            cluster.start_client(u, "--seed", args.seed, "--connect-timeout", 60)
        first = server.wait_event(lambda e: e.get("event") == "session-end", 600)
        startup = time.perf_counter() - started
        pid = server.popen.pid
        at_start = _proc_stats(pid)
        soak_start = time.perf_counter()
        ends = [first]
        while time.perf_counter() - soak_start < args.seconds:
            left = args.seconds - (time.perf_counter() - soak_start)
            try:
                ends.append(server.wait_event(lambda e: e.get("event") == "session-end",
                                              max(left, 0.1) + 6 * args.round_timeout))
            except TransportError:  # a stall is a failure to report, not a crash
                break
        at_end = _proc_stats(pid)
        server.popen.send_signal(signal.SIGTERM)
        ends.extend(e for e in [_maybe_last(server, args.round_timeout)] if e is not None)
        code = server.wait(6 * args.round_timeout + 30)
        last_ok = True
        last = [e for e in ends if not e["aborted"]]
        if last and (cluster.dir / "last.npz").exists():
            end = last[-1]
            with np.load(cluster.dir / "last.npz") as data:
                got = data["sum"]
            want = expected_sum(args.seed, end["included_ids"], end["round_index"], dim, 1 << 32)
            last_ok = bool(np.array_equal(got, want))
        clients_alive = sum(1 for c in cluster.clients.values() if c.popen.poll() is None)
    latencies = sorted(e["wall_seconds"] for e in ends)
    failed = sum(1 for e in ends if e["aborted"] or len(e["included_ids"]) != n)
    report = {
        "clients": n, "dim": dim, "soak_seconds": args.seconds, "startup_seconds": startup,
        "sessions": len(ends), "failed_sessions": failed + (0 if last_ok else 1),
        "last_sum_exact": last_ok, "server_exit_status": code,
        "latency_p50_s": float(np.percentile(latencies, 50)) if latencies else None,
        "latency_p95_s": float(np.percentile(latencies, 95)) if latencies else None,
        "latency_max_s": latencies[-1] if latencies else None,
        "server_fds_start": at_start["fds"], "server_fds_end": at_end["fds"],
        "server_rss_mb_start": at_start["rss_mb"], "server_rss_mb_end": at_end["rss_mb"],
        "clients_alive_at_end": clients_alive,
    }
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        for k, v in report.items():
            print(f"{k:<22} {v:.3f}" if isinstance(v, float) else f"{k:<22} {v}")
    ok = report["failed_sessions"] == 0 and code == 0 and len(ends) > 0
    return 0 if ok else 1


def _maybe_last(server: Proc, round_timeout: float) -> dict | None:
    """The session in progress when SIGTERM arrived finishes; collect its end event."""
    try:
        return server.wait_event(lambda e: e.get("event") == "session-end",
                                 6 * round_timeout + 10)
    except TransportError:  # the server may have been between sessions
        return None


if __name__ == "__main__":
    sys.exit(main())
