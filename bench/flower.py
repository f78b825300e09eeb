"""Flower suite: the same sessions through our library and through Flower 1.42's SecAgg+.

Run ``secagg bench flower`` (full, ~30 minutes: Flower's n = 100 SecAgg case
alone takes ~6) or ``--quick`` (seconds). ``--no-flower`` runs only our side.

Flower runs in its own virtual environment, ``.venv-flower`` at the repository
root, which this command creates on first use (``python -m venv`` and
``pip install flwr==1.42.0``; ``--no-setup`` refuses instead), so Flower's
pinned dependencies never touch ours. Its side is ``bench/flower_runner.py``,
run there as a subprocess: Flower's own client mod (``secaggplus_mod``) and
server workflow stages (``SecAggWorkflow`` for the complete graph,
``SecAggPlusWorkflow`` with ``num_shares = k + 1`` and
``reconstruction_threshold = t`` for SecAgg+: Flower counts the client itself in
its neighbourhood and keeps one share of its own, we do not) over an in-memory
grid that serializes every message as Flower's transport would.

Both sides get the same integer inputs (quantized updates with Flower's
2**22 levels, generated from the same seed) and the same dropped clients
(dropped after ShareKeys, i.e. before sending the masked input, unless the case
says otherwise). Correctness is checked three ways: each side against the
plaintext sum of the clients it included, and Flower's aggregate against ours.

Speedups are Flower's time divided by ours, measured in the same run on the
same machine: server compute, and mean compute per client. Our server runs with
``--threads`` (default: all cores) and once more with one thread, since
Flower's server is single-threaded; both ratios are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import common
from bench.common import fmt

FLOWER_VERSION = "1.42.0"
DEFAULT_VENV = common.REPO_ROOT / ".venv-flower"
RUNNER = Path(__file__).resolve().parent / "flower_runner.py"


@dataclass(frozen=True)
class Case(common.SessionCase):
    """One session configuration run on both sides."""

    kind: str = "cost"  # "cost" rows are timed and plotted; "drop-round" rows check completion


def full_cases() -> list[Case]:
    cases = [Case(f"secagg n={n} {d:.0%}", n, 100_000, d)
             for n in (10, 50) for d in (0.0, 0.1, 0.3)]
    cases.append(Case("secagg n=100 30%", 100, 100_000, 0.3))
    cases += [Case(f"secagg+ n={n} 10%", n, 100_000, 0.1, graph="harary")
              for n in (100, 500, 1000)]
    cases += drop_round_cases(10, 1_000)
    return cases


def quick_cases() -> list[Case]:
    return [
        Case("secagg n=10 10%", 10, 1_000, 0.1),
        Case("secagg+ n=20 10%", 20, 1_000, 0.1, graph="harary"),
        *drop_round_cases(10, 100, rounds=("advertise", "masked-input")),
    ]


def drop_round_cases(n: int, m: int, rounds: Sequence[str] = (
        "advertise", "share-keys", "masked-input", "unmask")) -> list[Case]:
    """One client in ten drops at each round: does each implementation still finish?"""
    return [Case(f"drop at {r}, secagg n={n}", n, m, 0.1, drop_at=r, kind="drop-round")
            for r in rounds]


# -- the Flower environment -----------------------------------------------------------------


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def flower_version(venv: Path) -> str | None:
    """flwr's version inside ``venv``, or None if there is no usable Flower there."""
    python = venv_python(venv)
    if not python.exists():
        return None
    proc = subprocess.run([str(python), "-c", "import flwr; print(flwr.__version__)"],
                          capture_output=True, text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def ensure_flower(venv: Path, create: bool) -> str:
    """Return the venv's Flower version, creating the venv first if allowed.

    Raises RuntimeError with the reason when Flower is missing and may not be installed.
    """
    version = flower_version(venv)
    if version == FLOWER_VERSION:
        return version
    if not create:
        raise RuntimeError(
            f"no flwr {FLOWER_VERSION} in {venv} (found {version}); run "
            "'secagg bench flower --setup-only' to create it, or pass --no-flower")
    print(f"creating {venv} with flwr=={FLOWER_VERSION} (one time)...", file=sys.stderr)
    if not venv_python(venv).exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv_python(venv)), "-m", "pip", "install", "--quiet",
                    f"flwr=={FLOWER_VERSION}"], check=True)
    version = flower_version(venv)
    if version != FLOWER_VERSION:
        raise RuntimeError(f"installing flwr=={FLOWER_VERSION} into {venv} failed")
    return version


def run_flower(venv: Path, spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One session through Flower's code, in the Flower venv; its JSON result."""
    proc = subprocess.run([str(venv_python(venv)), str(RUNNER)], input=json.dumps(spec),
                          capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-3:]
        raise RuntimeError(f"Flower runner failed ({proc.returncode}): {' | '.join(tail)}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- one case -------------------------------------------------------------------------------


def run_case(case: Case, *, seed: int, threads: int | None, venv: Path | None,
             timeout: float, tmp: Path) -> dict[str, Any]:
    """Our session (all threads, then one thread), then Flower's; the comparison row."""
    config = common.make_config(case.n, case.m, case.graph, dropout=0.1)
    dropped = common.drop_exact(case.n, case.dropout,
                                np.random.default_rng([seed, case.n, round(case.dropout * 1000)]))
    row, report = common.run_ours(config, dropped, case.drop_at, seed=seed, threads=threads,
                                  measure_memory=False)
    row = {"case": case.name, "kind": case.kind, **row, "completed": not report.aborted}
    if case.kind == "cost":
        one, _ = common.run_ours(config, dropped, case.drop_at, seed=seed, threads=1,
                                 measure_memory=False)
        row["server_seconds_1thread"] = one["server_seconds"]
        row["floor_seconds_1thread"] = one["floor_seconds"]
    if venv is None:
        return row
    sum_path = tmp / f"flower-sum-{case.n}-{case.m}-{case.graph}-{case.drop_at}.npy"
    spec = {"n": case.n, "m": case.m, "seed": seed, "graph": case.graph,
            "k": config.degree if case.graph == "harary" else None, "t": config.threshold,
            "dropped": dropped, "drop_at": case.drop_at, "sum_path": str(sum_path)}
    fl = run_flower(venv, spec, timeout)
    row.update({
        "flower_completed": fl["completed"],
        "flower_exact": fl["exact"],
        "flower_failed_stage": fl["failed_stage"],
        "flower_client_errors": fl["client_error_count"],
        "flower_first_error": (fl["client_errors"] or [None])[0],
        "flower_num_shares": fl["num_shares"],
        "flower_threshold": fl["threshold"],
        "flower_server_seconds": fl["server_seconds"],
        "flower_server_seconds_by_stage": fl["server_seconds_by_stage"],
        "flower_client_seconds_mean": fl["client_seconds_mean"],
        "flower_bytes_up_per_client": fl["bytes_up_per_client"],
        "flower_bytes_down_per_client": fl["bytes_down_per_client"],
        "flower_masked_bytes_per_element": fl["masked_bytes_per_element"],
    })
    agree = None
    if fl["completed"] and report.sum is not None and sum_path.exists():
        theirs = np.load(sum_path)
        agree = bool(fl["included_ids"] == report.included_ids
                     and np.array_equal(theirs, report.sum.astype(np.int64)))
        sum_path.unlink()
    row["sums_agree"] = agree
    if case.kind == "cost" and fl["completed"]:
        row["server_speedup"] = fl["server_seconds"] / row["server_seconds"]
        row["server_speedup_1thread"] = fl["server_seconds"] / row["server_seconds_1thread"]
        row["client_speedup"] = fl["client_seconds_mean"] / row["client_seconds_mean"]
        row["upload_ratio"] = fl["bytes_up_per_client"] / row["bytes_up_per_client"]
    return row


def print_tables(rows: Sequence[dict[str, Any]]) -> None:
    cost = [r for r in rows if r["kind"] == "cost"]
    print(f"{'case':<34} {'k':>4} {'t':>3} {'ours srv s':>10} {'1thr s':>7} "
          f"{'Flower srv s':>12} {'x srv':>7} {'x srv 1t':>8} {'ours cli ms':>11} "
          f"{'Flower cli ms':>13} {'x cli':>6} {'B/el ours':>9} {'B/el Fl':>7} {'exact':>11}")
    for r in cost:
        fl_cli = r.get("flower_client_seconds_mean")
        exact = f"{_yn(r['exact'])}/{_yn(r.get('flower_exact'))}/{_yn(r.get('sums_agree'))}"
        print(f"{r['case']:<34} {r['k']:>4} {r['t']:>3} {r['server_seconds']:>10.3f} "
              f"{r['server_seconds_1thread']:>7.3f} "
              f"{fmt(r.get('flower_server_seconds'), '.2f'):>12} "
              f"{fmt(r.get('server_speedup'), '.0f'):>7} "
              f"{fmt(r.get('server_speedup_1thread'), '.0f'):>8} "
              f"{r['client_seconds_mean'] * 1e3:>11.1f} "
              f"{fmt(fl_cli * 1e3 if fl_cli is not None else None, '.1f'):>13} "
              f"{fmt(r.get('client_speedup'), '.0f'):>6} {r['masked_bytes_per_element']:>9.3f} "
              f"{fmt(r.get('flower_masked_bytes_per_element'), '.3f'):>7} {exact:>11}")
    print("(exact = ours / Flower / both aggregates identical)")
    drops = [r for r in rows if r["kind"] == "drop-round"]
    if drops:
        print(f"\n{'case':<32} {'ours':<14} {'Flower':<14} Flower's first client error")
        for r in drops:
            ours = "exact" if r["exact"] else ("aborted" if r["aborted"] else "WRONG")
            fl = ("-" if "flower_completed" not in r else "exact" if r["flower_exact"] else
                  f"failed@{r['flower_failed_stage']}" if not r["flower_completed"] else "WRONG")
            print(f"{r['case']:<32} {ours:<14} {fl:<14} {r.get('flower_first_error') or ''}")


def _yn(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "NO")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``secagg bench flower``; 0 unless a completed session summed wrongly.

    ``--engine deployment`` runs :mod:`bench.flower_deployment_suite` instead (a real
    SuperLink and SuperNodes, our mod and workflow against Flower's, side by side).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    engine = argparse.ArgumentParser(add_help=False)
    engine.add_argument("--engine", choices=["inprocess", "deployment"], default="inprocess")
    chosen, rest = engine.parse_known_args(argv)
    if chosen.engine == "deployment":
        from bench import flower_deployment_suite

        return flower_deployment_suite.main(rest)
    parser = common.suite_parser("flower", __doc__)
    parser.add_argument("--engine", choices=["inprocess", "deployment"], default="inprocess",
                        help="inprocess (default): the sessions below; deployment: a "
                             "SuperLink and SuperNodes on 127.0.0.1 (see --engine "
                             "deployment --help)")
    parser.add_argument("--flower-venv", default=str(DEFAULT_VENV),
                        help="virtual environment holding flwr (default .venv-flower)")
    parser.add_argument("--no-flower", action="store_true",
                        help="run only our side of every case (no Flower venv needed)")
    parser.add_argument("--no-setup", action="store_true",
                        help="fail instead of creating the Flower venv when it is missing")
    parser.add_argument("--setup-only", action="store_true",
                        help="create the Flower venv and exit")
    parser.add_argument("--only", default=None, help="run only cases whose name contains this")
    parser.add_argument("--flower-timeout", type=float, default=1800.0,
                        help="seconds one Flower session may take (default 1800)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    venv: Path | None = None
    version = None
    if not args.no_flower:
        venv = Path(args.flower_venv)
        try:
            version = ensure_flower(venv, create=not args.no_setup)
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            print(f"secagg bench flower: {exc}", file=sys.stderr)
            return 2
        if args.setup_only:
            print(f"{venv}: flwr {version}")
            return 0
    cases = quick_cases() if args.quick else full_cases()
    if args.only:
        cases = [c for c in cases if args.only in c.name]
    out = common.output_dir(args, "flower")
    bar = common.Progress(len(cases), "flower", quiet=args.quiet)
    rows = []
    with tempfile.TemporaryDirectory(prefix="secagg-flower-") as tmp:
        for case in cases:
            start = time.perf_counter()
            row = run_case(case, seed=args.seed, threads=args.threads, venv=venv,
                           timeout=args.flower_timeout, tmp=Path(tmp))
            row["case_wall_seconds"] = time.perf_counter() - start
            rows.append(row)
            bar.step(case.name)
    print_tables(rows)
    payload = {"flower_version": version, "rows": rows}
    files = common.finish(args, out, "flower", payload, rows, argv)
    print(f"wrote {', '.join(str(f) for f in files)}", file=sys.stderr)
    wrong = [r for r in rows if (r["completed"] and not r["exact"])
             or (r.get("flower_completed") and not r.get("flower_exact"))
             or r.get("sums_agree") is False]
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
