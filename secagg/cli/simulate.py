"""``secagg simulate``: one in-process session with dropouts, checked and measured.

Options and ``--json`` field names are a public interface (README, "CLI").
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from collections.abc import Callable

import numpy as np

from secagg.cli.plugins import SubParsers
from secagg.config import Mode, SessionConfig
from secagg.crypto.prg import mask_dtype
from secagg.crypto.signatures import SigningKey
from secagg.errors import SecAggError
from secagg.graph import GraphKind
from secagg.identity import TrustStore, generate_identities
from secagg.measure import simulate
from secagg.receipt import ReceiptObserver
from secagg.rounds import Round
from secagg.sim import Schedule, SimulationReport, random_schedule
from secagg.transcript import TranscriptRecorder, hash_vectors


def register(sub: SubParsers) -> None:
    p = sub.add_parser(
        "simulate",
        help="run one secure-aggregation session in-process with dropouts",
        description="Run one SecAgg / SecAgg+ session in-process with n clients and random "
        "dropouts; check the sum against the plaintext sum of the included clients.",
    )
    p.add_argument("--clients", type=int, default=50, help="cohort size n (default 50)")
    p.add_argument("--dim", type=int, default=100_000, help="vector length m (default 100000)")
    p.add_argument("--dropout", type=float, default=0.1,
                   help="fraction of clients that drop (default 0.1)")
    p.add_argument("--drop-at", choices=[r.label for r in Round], default="masked-input",
                   help="round at which they stop sending (default masked-input); "
                   "'consistency' is active mode's extra round (elsewhere the same as unmask)")
    p.add_argument("--mode", choices=[m.value for m in Mode], default=Mode.SEMI_HONEST.value,
                   help="semi-honest (default) or active: malicious-server mode with "
                   "identities, signatures and the ConsistencyCheck round")
    p.add_argument("--graph", choices=[g.value for g in GraphKind], default="complete",
                   help="complete (SecAgg) or harary (SecAgg+)")
    p.add_argument("--threshold", type=int, default=None,
                   help="t; default floor(n/2)+1 (complete) or the parameter finder's (harary)")
    p.add_argument("--degree", type=int, default=None,
                   help="Harary degree k (with --threshold); default from the parameter finder")
    p.add_argument("--corruption", type=float, default=0.05,
                   help="declared fraction of corrupt clients for the Harary finder (0.05)")
    p.add_argument("--modulus-bits", type=int, default=32, help="R = 2**bits (default 32)")
    p.add_argument("--min-cohort", type=int, default=None,
                   help="lower the minimum cohort size (default 10)")
    p.add_argument("--threads", type=int, default=None,
                   help="server worker threads (default: number of cores)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed for inputs and the dropout choice (keys always come from the OS)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--transport", choices=["inproc", "grpc"], default="inproc",
                   help="inproc (default): one process; grpc: a real server process and one "
                   "process per client on 127.0.0.1 with mTLS, dropouts killed with SIGKILL")
    p.add_argument("--round-timeout", type=float, default=10.0,
                   help="grpc transport: seconds the server waits for each round (10)")
    p.add_argument("--transcript", metavar="FILE", default=None,
                   help="write the session's public transcript (every message as sent, the "
                   "config, the result; no secrets) to FILE, for 'secagg audit FILE'")
    p.add_argument("--transcript-vectors", choices=["full", "hash"], default="full",
                   help="with --transcript: masked vectors whole or by their SHA-256 (§18.5)")
    p.add_argument("--receipts", metavar="DIR", default=None,
                   help="with --transcript: every client keeps its receipt in DIR, for "
                   "'secagg audit FILE --receipts DIR' (spec §18.6)")
    p.set_defaults(func=run)


def _simulate_recorded(args: argparse.Namespace, config: SessionConfig,
                       make_input: Callable[[int], np.ndarray], schedule: Schedule,
                       bar: _ProgressBar | None) -> SimulationReport:
    """The in-process run, writing its transcript and receipts when asked (§18.5, §18.6)."""
    recorder = TranscriptRecorder() if args.transcript else None
    receipts = ReceiptObserver(config.session_id, config.cohort) if args.receipts else None
    identities: dict[int, SigningKey] | None = None
    store: TrustStore | None = None
    if receipts is not None and config.mode is Mode.ACTIVE:
        # receipts are signed with the identities, so the CLI makes them here
        identities, store = generate_identities(config.cohort)
    report = simulate(config, make_input, schedule, threads=args.threads,
                      progress=bar.update if bar else None,
                      client_min_cohort=args.min_cohort, transcript=recorder,
                      observers=[receipts] if receipts else [],
                      identities=identities, trust_store=store)
    if recorder is not None:
        _write_transcript(recorder, args.transcript, args.transcript_vectors)
    if receipts is not None:
        for receipt in receipts.receipts(identities):
            receipt.write(args.receipts)
    return report


def _write_transcript(recorder: TranscriptRecorder, path: str, vectors: str) -> None:
    """The recorded transcript, whole or with the masked vectors and sum hashed (§18.5)."""
    transcript = recorder.build()
    if vectors == "hash":
        transcript = hash_vectors(transcript)
    transcript.write(path)


def run(args: argparse.Namespace) -> int:
    try:
        kwargs = {}
        if args.min_cohort is not None:
            kwargs["min_cohort"] = args.min_cohort
        if not 1 <= args.modulus_bits <= 64:
            raise SecAggError("--modulus-bits must be in [1, 64]")
        config = SessionConfig.create(
            range(1, args.clients + 1),
            args.dim,
            1 << args.modulus_bits,
            graph=args.graph,
            threshold=args.threshold,
            degree=args.degree,
            dropout_rate=min(max(args.dropout, 0.0), 0.99),
            corruption_rate=args.corruption,
            mode=args.mode,
            **kwargs,
        )
    except SecAggError as exc:
        print(f"secagg simulate: refused: {exc}", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else secrets.randbits(32)
    rng = np.random.default_rng(seed)
    R, dim = config.modulus, config.dim
    dtype = mask_dtype(R)

    def make_input(u: int) -> np.ndarray:
        # simulated quantized updates: uniform in Z_R, reproducible per client
        g = np.random.default_rng([seed, u])
        return (g.integers(0, R - 1, size=dim, dtype=np.uint64, endpoint=True)).astype(dtype)

    try:
        schedule = random_schedule(config.cohort, args.dropout, args.drop_at, rng)
    except SecAggError as exc:
        print(f"secagg simulate: refused: {exc}", file=sys.stderr)
        return 2
    if args.transcript and args.transport != "inproc":
        print("secagg simulate: refused: --transcript needs --transport inproc", file=sys.stderr)
        return 2
    if args.receipts and not args.transcript:
        print("secagg simulate: refused: --receipts needs --transcript", file=sys.stderr)
        return 2
    if args.transport == "grpc":
        from secagg.transport.simulate import run_grpc_simulation

        return run_grpc_simulation(args, config, schedule, seed)
    show_progress = not args.json and sys.stderr.isatty()
    bar = _ProgressBar() if show_progress else None
    start = time.perf_counter()
    try:
        # the simulated clients accept the cohort floor the operator chose
        report = _simulate_recorded(args, config, make_input, schedule, bar)
    except SecAggError as exc:
        if bar:
            bar.close()
        print(f"secagg simulate: refused: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"secagg simulate: cannot write the transcript: {exc.strerror}", file=sys.stderr)
        return 2
    wall = time.perf_counter() - start
    if bar:
        bar.close()
    if args.json:
        print(report.to_json())
    else:
        _print_table(report, wall, args)
    if report.aborted:
        return 1
    return 0 if report.exact else 3


def _print_table(r: SimulationReport, wall: float, args: argparse.Namespace) -> None:
    status = ("ABORTED: " + (r.abort_reason or "")) if r.aborted else (
        "exact sum" if r.exact else "WRONG SUM")
    ratio = f"{r.server_to_floor:.2f}x floor" if r.server_to_floor else "n/a"
    rows = [
        ("result", status),
        ("graph", f"{r.graph} (k={r.degree}, t={r.threshold}, {r.mode})"),
        ("clients", f"{r.clients} ({r.included} included, dropout {args.dropout:.0%} at "
                    f"{args.drop_at})"),
        ("vector", f"{r.dim} elements mod 2^{r.modulus_bits}"),
        ("server compute", f"{r.server_seconds:.3f} s ({ratio}; floor {r.floor_seconds:.3f} s, "
                           f"{r.threads} threads)"),
        ("client compute", f"{r.client_seconds_mean * 1e3:.1f} ms mean"),
        ("bytes up/client", f"{r.bytes_up_per_client / 1e3:.1f} kB"),
        ("bytes down/client", f"{r.bytes_down_per_client / 1e3:.1f} kB"),
        ("peak server memory", f"{r.peak_server_mb:.1f} MB"),
        ("wall time", f"{wall:.2f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


class _ProgressBar:
    """A one-line progress bar on stderr (only when stderr is a terminal)."""

    def __init__(self) -> None:
        self._last = ""

    def update(self, stage: str, done: int, total: int) -> None:
        if total <= 0 or (done % max(1, total // 50) and done != total - 1):
            return
        frac = (done + 1) / total
        line = f"\r{stage:<13} [{'#' * int(frac * 30):<30}] {done + 1}/{total}"
        if line != self._last:
            sys.stderr.write(line)
            sys.stderr.flush()
            self._last = line

    def close(self) -> None:
        sys.stderr.write("\r" + " " * 60 + "\r")
        sys.stderr.flush()
