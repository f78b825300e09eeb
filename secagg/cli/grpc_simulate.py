"""``secagg simulate --transport grpc``: the simulator's session over real processes.

One server process and n client processes on 127.0.0.1 with a fresh dev CA;
the clients the dropout schedule names SIGKILL themselves at their round
(:mod:`secagg.transport.dropout`, the harness's client; the production client has no
dropout injection). The
JSON has the in-process simulator's field names (so scripts read either),
filled from what the processes measured, plus ``transport``,
``wall_seconds`` (the whole run, process start-up included),
``session_seconds`` (session open to result, on the server) and
``bytes_on_wire_per_client`` (TCP payload per client per session: TLS,
HTTP/2 and protobuf included).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Mapping
from typing import Any

from secagg.config import Mode, SessionConfig
from secagg.crypto.prg import mask_dtype
from secagg.floor import measure_floor, measure_full_floor
from secagg.rounds import Round, effective_round
from secagg.server import ServerState
from secagg.session import DropoutSchedule
from secagg.sim import SimulationReport
from secagg.transport.local import TransportError, run_simulation
from secagg.unmask import UnmaskWork

#: public round labels (the simulator's per-round keys) for the server's state names
_LABEL_OF_STATE = {r.state_name: r.label for r in Round}


def run_grpc_simulation(args: argparse.Namespace, config: SessionConfig,
                        schedule: DropoutSchedule, seed: int) -> int:
    """Run, print (JSON or a table) and return the simulator's exit status."""
    if config.mode is not Mode.SEMI_HONEST:
        print("secagg simulate: refused: --transport grpc runs semi-honest sessions only "
              "(active mode needs client identities the CLI does not distribute yet)",
              file=sys.stderr)
        return 2
    drop: dict[int, Round] = {}
    for point, ids in schedule.items():
        at = effective_round(point if isinstance(point, Round) else Round.from_label(point),
                             config.mode)
        for u in ids:
            drop.setdefault(u, at)
    server_args: list[object] = [
        "--graph", config.graph.value, "--threshold", config.threshold,
        "--min-cohort", config.min_cohort,
        "--dropout", config.dropout_ppm / 1e6, "--corruption", config.corruption_ppm / 1e6,
    ]
    if config.graph.value != "complete":
        server_args += ["--degree", config.degree]
    if args.threads is not None:
        server_args += ["--threads", args.threads]
    try:
        r = run_simulation(clients=config.n, dim=config.dim,
                           modulus_bits=(config.modulus - 1).bit_length(),
                           server_args=server_args, drop=drop, seed=seed,
                           round_timeout=args.round_timeout)
    except TransportError as exc:
        print(f"secagg simulate: transport failed: {exc}", file=sys.stderr)
        return 4
    report = to_report(r, config)
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        _print(report)
    if report["aborted"]:
        return 1
    return 0 if report["exact"] else 3


def to_report(r: Mapping[str, Any], config: SessionConfig) -> dict[str, Any]:
    """The simulator's JSON fields from a transport run (plus the transport's own)."""
    included = len(r["included_ids"])
    floor, full, full_parts = 0.0, 0.0, {}
    if not r["aborted"] and r.get("masks_expanded"):
        floor = measure_floor(r["masks_expanded"], included, config.dim,
                              mask_dtype(config.modulus), config.modulus, r["threads"])
        # the same honest floor as in process (§8.5): the server's counted primitives
        full_floor = measure_full_floor(UnmaskWork(**r["server_work"]), keystream_floor=floor,
                                        n=config.n, parallelism=r["threads"],
                                        spread_ids=config.degree < config.n - 1)
        full, full_parts = full_floor.seconds, full_floor.parts
    refusals: dict[str, str] = {}
    for u, events in r["client_events"].items():
        for e in events:
            if e.get("event") == "session-end" and e.get("status") == "refused":
                refusals[str(u)] = e.get("reason") or ""
    values: dict[str, Any] = {
        "exact": r["exact"], "aborted": r["aborted"], "abort_reason": r["abort_reason"],
        "clients": config.n, "dim": config.dim, "graph": config.graph.value,
        "threshold": config.threshold, "degree": config.degree,
        "modulus_bits": (config.modulus - 1).bit_length(), "included": included,
        "included_ids": r["included_ids"], "dropped_ids": r["dropped_ids"],
        "server_seconds": r["server_seconds"], "client_seconds_mean": r["client_seconds_mean"],
        "floor_seconds": floor,
        "server_to_floor": r["server_seconds"] / floor if floor > 0 else None,
        "server_work": r.get("server_work", {}), "full_floor_seconds": full,
        "full_floor_parts": full_parts,
        "server_to_full_floor": r["server_seconds"] / full if full > 0 else None,
        "bytes_up_per_client": r["bytes_up_per_client"],
        "bytes_down_per_client": r["bytes_down_per_client"],
        "bytes_up_per_round": _rename(r["bytes_up_per_round"]),
        "bytes_down_per_round": _rename(r["bytes_down_per_round"]),
        "peak_server_mb": r["peak_rss_mb"], "threads": r["threads"],
        "client_refusals": refusals, "mode": config.mode.value,
    }
    # exactly the simulator's fields (whatever version of it is installed) ...
    report = {f.name: values.get(f.name) for f in dataclasses.fields(SimulationReport)
              if f.name != "sum"}
    # ... plus what only a real transport has
    report.update({
        "transport": "grpc",
        "wall_seconds": r["wall_seconds_total"],
        "session_seconds": r["wall_seconds"],
        "bytes_on_wire_per_client": r["bytes_on_wire_per_client"],
        "server_refusals": r.get("refusals", {}),
    })
    return report


def _rename(per_round: Mapping[str, float]) -> dict[str, float]:
    aborted = ServerState.ABORTED.value
    return {_LABEL_OF_STATE.get(k, k): v for k, v in per_round.items() if k != aborted}


def _print(r: Mapping[str, Any]) -> None:
    status = ("ABORTED: " + (r["abort_reason"] or "")) if r["aborted"] else (
        "exact sum" if r["exact"] else "WRONG SUM")
    wire = r["bytes_on_wire_per_client"]
    rows = [
        ("result", status),
        ("transport", "gRPC + mTLS, one process per client, 127.0.0.1"),
        ("graph", f"{r['graph']} (k={r['degree']}, t={r['threshold']})"),
        ("clients", f"{r['clients']} ({r['included']} included)"),
        ("vector", f"{r['dim']} elements mod 2^{r['modulus_bits']}"),
        ("server compute", f"{r['server_seconds']:.3f} s"),
        ("full floor", "n/a" if not r["full_floor_seconds"] else
         f"{r['full_floor_seconds']:.3f} s (server {r['server_to_full_floor']:.2f}x)"),
        ("session wall time", f"{r['session_seconds']:.2f} s"),
        ("bytes up/client", f"{r['bytes_up_per_client'] / 1e3:.1f} kB (protocol messages)"),
        ("bytes on wire/client", "n/a" if wire is None else f"{wire / 1e3:.1f} kB"),
        ("peak server RSS", f"{r['peak_server_mb']:.1f} MB"),
        ("wall time", f"{r['wall_seconds']:.2f} s (process start-up included)"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")

