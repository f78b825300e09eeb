"""2 workers against 1, same run: the issue-15 speedup of the server (``server_seconds``).

Run ``python -m bench.workers_pair [--clients N] [--dim M] [--dropout D] [--seed S]
[--engines process,ray] [--repeats K] [--out FILE]``. Each session is a fresh
``secagg simulate ... --json`` process (same seed, so the same dropped clients):
``--workers 1`` (in process, the default threads), ``--workers 1 --threads 1`` (one
core), then ``--workers 2`` on each engine,
repeated K times in that order; the load average (``os.getloadavg``) is recorded at
the start and end of each. Reports the best server time of each setting and the
ratios 1-worker / 2-worker (``speedup``; target: at least 1.7, issue 15) and
one-core / 2-worker (``speedup_vs_one_core``). Wall times on a shared
machine are only as good as its load: quote the ratio with the load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any


def _session(args: list[str]) -> dict[str, Any]:
    load0 = os.getloadavg()
    done = subprocess.run([sys.executable, "-m", "secagg", "simulate", *args, "--json"],
                          capture_output=True, text=True, check=False)
    load1 = os.getloadavg()
    if done.returncode not in (0, 3):
        raise SystemExit(f"simulate failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    report = json.loads(done.stdout)
    return {"args": args, "exact": report["exact"], "server_seconds": report["server_seconds"],
            "full_floor_seconds": report.get("full_floor_seconds"),
            "wall_seconds": report.get("wall_seconds"),
            "load_start": [round(x, 2) for x in load0], "load_end": [round(x, 2) for x in load1]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=500)
    p.add_argument("--dim", type=int, default=100_000)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--engines", default="process")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out")
    a = p.parse_args(argv)
    base = ["--clients", str(a.clients), "--dim", str(a.dim), "--dropout", str(a.dropout),
            "--drop-at", "masked-input", "--graph", "complete", "--seed", str(a.seed)]
    # one worker with the default threads (both cores for keystream, additions and
    # libsodium agreements), and one worker on one core (--threads 1)
    settings = {"1 worker": ["--workers", "1"],
                "1 worker 1 thread": ["--workers", "1", "--threads", "1"]}
    for engine in a.engines.split(","):
        settings[f"2 workers {engine}"] = ["--workers", "2", "--engine", engine]
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in settings}
    for _ in range(a.repeats):
        for name, extra in settings.items():
            run = _session([*base, *extra])
            runs[name].append(run)
            print(f"{name}: server {run['server_seconds']:.2f} s, full floor "
                  f"{run['full_floor_seconds']:.2f} s, exact {run['exact']}, load "
                  f"{run['load_start']} -> {run['load_end']}", file=sys.stderr)
    best = {k: min(r["server_seconds"] for r in v) for k, v in runs.items()}
    two = [k for k in best if k.startswith("2 workers")]
    ratios = {k: best["1 worker"] / best[k] for k in two}
    one_core = {k: best["1 worker 1 thread"] / best[k] for k in two}
    result = {"base": base, "best_server_seconds": best, "speedup": ratios,
              "speedup_vs_one_core": one_core, "runs": runs}
    text = json.dumps(result, indent=2)
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
