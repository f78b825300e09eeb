"""Scaling suite: what a session costs as n, m, dropout rate, drop round and graph vary.

Run ``secagg bench scaling`` (full, ~15 minutes on 2 cores) or ``--quick``
(seconds). Each point is one simulated session (:func:`secagg.sim.simulate`)
reporting server and mean client compute, bytes per client, the masked-input
bytes per element, peak server memory (tracemalloc replay) and the hardware
floor measured beside it in the same run: raw AES-CTR keystream plus vector
additions for exactly the masks this session's server regenerated, on the same
thread count. The floor, not an absolute time, is what makes a point comparable
across machines and across noisy runs on a shared machine.

The sweeps move one parameter at a time around a base point rather than
covering the full grid, which would take hours without telling more.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import common
from bench.common import fmt


@dataclass(frozen=True)
class Point:
    """One session to measure; ``sweep`` names the plot/table it belongs to."""

    sweep: str
    n: int
    m: int
    dropout: float
    drop_at: str = "masked-input"
    graph: str = "complete"


def full_points() -> list[Point]:
    """The report's configurations (the issue's required ones are all here)."""
    pts = [Point("n", n, 100_000, d) for n in (10, 50, 100) for d in (0.0, 0.1, 0.3)]
    pts += [Point("n", n, 100_000, 0.1) for n in (200, 500)]
    pts += [Point("graph", n, 100_000, 0.1, graph="harary") for n in (100, 500, 1000)]
    pts += [Point("m", 100, m, 0.3) for m in (10_000, 1_000_000)]  # m=1e5 is in sweep "n"
    pts += [Point("drop-round", 100, 100_000, 0.1, drop_at=r)
            for r in ("advertise", "share-keys", "unmask")]  # masked-input is in sweep "n"
    pts.append(Point("scale", 10_000, 10_000, 0.05, graph="harary"))
    return pts


def quick_points() -> list[Point]:
    pts = [Point("n", n, 1_000, d) for n in (10, 20) for d in (0.0, 0.3)]
    pts += [Point("graph", 40, 1_000, 0.1, graph="harary")]
    pts += [Point("m", 10, 4_000, 0.3)]
    pts += [Point("drop-round", 10, 1_000, 0.1, drop_at=r) for r in ("advertise", "unmask")]
    return pts


def run_point(p: Point, seed: int, threads: int | None) -> dict[str, Any]:
    """Measure one point; the dropped clients come from the seed, as in Flower's suite."""
    config = common.make_config(p.n, p.m, p.graph, dropout=max(p.dropout, 0.05))
    dropped = common.drop_exact(p.n, p.dropout, np.random.default_rng([seed, p.n]))
    row, _ = common.run_ours(config, dropped, p.drop_at, seed=seed, threads=threads)
    return {"sweep": p.sweep, **row}


def run(points: Sequence[Point], seed: int, threads: int | None,
        quiet: bool = False) -> list[dict[str, Any]]:
    bar = common.Progress(len(points), "scaling", quiet=quiet)
    rows = []
    for p in points:
        rows.append(run_point(p, seed, threads))
        bar.step(f"{p.graph} n={p.n} m={p.m} {p.dropout:.0%} @{p.drop_at}")
    return rows


def previous_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of an earlier run (so ``--only`` refreshes one sweep without losing the rest)."""
    try:
        return list(json.loads(path.read_text())["rows"])
    except (OSError, ValueError, KeyError):
        return []


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    head = (f"{'sweep':<10} {'graph':<8} {'n':>6} {'m':>8} {'drop':>5} {'round':<12} "
            f"{'ok':>3} {'server s':>9} {'floor s':>8} {'x floor':>7} {'x full':>6} "
            f"{'client ms':>9} "
            f"{'kB up':>8} {'B/elem':>6} {'peak MB':>8}")
    print(head)
    for r in rows:
        print(f"{r['sweep']:<10} {r['graph']:<8} {r['n']:>6} {r['m']:>8} {r['dropout']:>5.0%} "
              f"{r['drop_at']:<12} {'yes' if r['exact'] else 'NO':>3} "
              f"{r['server_seconds']:>9.3f} {r['floor_seconds']:>8.3f} "
              f"{fmt(r['server_to_floor'], '.2f'):>7} "
              f"{fmt(r.get('server_to_full_floor'), '.2f'):>6} "
              f"{r['client_seconds_mean'] * 1e3:>9.1f} "
              f"{r['bytes_up_per_client'] / 1e3:>8.1f} {r['masked_bytes_per_element']:>6.2f} "
              f"{r['peak_server_mb']:>8.1f}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``secagg bench scaling``; 0 when every session summed exactly."""
    parser = common.suite_parser("scaling", __doc__)
    parser.add_argument("--only", default=None,
                        help="run only the sweep of this name (n, m, graph, drop-round, scale)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    points = quick_points() if args.quick else full_points()
    if args.only:
        points = [p for p in points if p.sweep == args.only]
    out = common.output_dir(args, "scaling")
    rows = run(points, args.seed, args.threads, quiet=args.quiet)
    print_table(rows)
    if args.only:  # keep the other sweeps of an earlier run in the same folder
        rows = [r for r in previous_rows(out / "scaling.json") if r["sweep"] != args.only] + rows
    files = common.finish(args, out, "scaling", {"rows": rows}, rows, argv)
    print(f"wrote {', '.join(str(f) for f in files)}", file=sys.stderr)
    return 0 if all(r["exact"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
