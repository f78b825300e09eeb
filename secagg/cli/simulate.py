"""``secagg simulate``: one in-process session with dropouts, checked and measured.

Options and ``--json`` field names are a public interface (README, "CLI").
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import secrets
import sys
import time
from collections.abc import Callable

import numpy as np

from secagg.cli.args import writable_file
from secagg.cli.plugins import SubParsers
from secagg.cli.progress import StageBar
from secagg.config import Mode, SessionConfig
from secagg.crypto.prg import PRG_VERSIONS, ranges_addressable
from secagg.crypto.signatures import SigningKey
from secagg.engine import ENGINES, make_engine
from secagg.errors import SecAggError
from secagg.graph import GraphKind
from secagg.identity import TrustStore, generate_identities
from secagg.measure import simulate
from secagg.receipt import ReceiptObserver
from secagg.rounds import Round
from secagg.sim import Schedule, SimulationReport, random_schedule
from secagg.simclients import SeededInputs, peak_rss_bytes
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
    p.add_argument("--modulus-bits", type=int, default=None, help="R = 2**bits (default 32)")
    p.add_argument("--modulus", type=int, default=None, metavar="R",
                   help="R itself, any integer in [2, 2**64] (e.g. a prime); instead of "
                   "--modulus-bits")
    p.add_argument("--prg-version", type=int, choices=list(PRG_VERSIONS), default=1,
                   help="mask PRG (spec §4.6): 1 (default), or 2, the chunked expansion "
                   "that lets --workers unmask by range when R is not a power of two")
    p.add_argument("--min-cohort", type=int, default=None,
                   help="lower the minimum cohort size (default 10)")
    p.add_argument("--threads", type=int, default=None,
                   help="server worker threads (default: number of cores)")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes for the server's unmasking (default 1: in process, "
                   "on --threads threads); K > 1 splits masks by coordinate range and needs "
                   "a power-of-two R or --prg-version 2")
    p.add_argument("--engine", choices=list(ENGINES), default="process",
                   help="what runs the --workers: process (a local process pool, default), "
                   "ray (Ray tasks; a local Ray started here unless --ray-address), inline")
    p.add_argument("--ray-address", default=None,
                   help="join this Ray cluster (e.g. auto, ray://head:10001) with --engine ray")
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


def run(args: argparse.Namespace) -> int:
    try:
        config = _config(args)
    except SecAggError as exc:
        print(f"secagg simulate: refused: {exc}", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else secrets.randbits(32)
    rng = np.random.default_rng(seed)
    # simulated quantized updates: uniform in Z_R, reproducible per client, made by range
    make_input = SeededInputs(seed, config.dim, config.modulus)

    try:
        schedule = random_schedule(config.cohort, args.dropout, args.drop_at, rng)
    except SecAggError as exc:
        print(f"secagg simulate: refused: {exc}", file=sys.stderr)
        return 2
    refusal = _option_refusal(args)
    if refusal:
        print(f"secagg simulate: refused: {refusal}", file=sys.stderr)
        return 2
    if args.transport == "grpc":
        from secagg.cli.grpc_simulate import run_grpc_simulation

        return run_grpc_simulation(args, config, schedule, seed)
    show_progress = not args.json and sys.stderr.isatty()
    bar = StageBar() if show_progress else None
    start = time.perf_counter()
    try:
        report = _run_inproc(args, config, make_input, schedule, bar)
    except SecAggError as exc:
        if bar:
            bar.close()
        print(f"secagg simulate: refused: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"secagg simulate: cannot write the transcript: {exc.strerror}", file=sys.stderr)
        return 2
    wall = time.perf_counter() - start
    report = dataclasses.replace(report, wall_seconds=wall,
                                 peak_rss_mb=report.workers_rss_mb + _own_peak_rss_mb())
    if bar:
        bar.close()
    if args.json:
        print(report.to_json())
    else:
        _print_table(report, wall, args)
    if report.aborted:
        return 1
    return 0 if report.exact else 3


def _config(args: argparse.Namespace) -> SessionConfig:
    """The session's config from the options (SecAggError when refused)."""
    kwargs = {}
    if args.min_cohort is not None:
        kwargs["min_cohort"] = args.min_cohort
    if args.clients < 3:
        raise SecAggError(f"--clients must be at least 3, got {args.clients}")
    config = SessionConfig.create(
        range(1, args.clients + 1),
        args.dim,
        _modulus(args),
        graph=args.graph,
        threshold=args.threshold,
        degree=args.degree,
        dropout_rate=min(max(args.dropout, 0.0), 0.99),
        corruption_rate=args.corruption,
        mode=args.mode,
        prg_version=args.prg_version,
        **kwargs,
    )
    if args.workers > 1 and not ranges_addressable(config.modulus, config.prg_version):
        # refused here, before any worker starts (the server refuses it too, §8.5)
        raise SecAggError(f"--workers {args.workers} with R = {config.modulus} (not a power "
                          "of two) needs --prg-version 2: with PRG version 1, rejection "
                          "sampling makes mask positions data-dependent")
    return config


def _modulus(args: argparse.Namespace) -> int:
    """R from --modulus or --modulus-bits (default 2**32); never both."""
    if args.modulus is not None:
        if args.modulus_bits is not None:
            raise SecAggError("give --modulus or --modulus-bits, not both")
        if not 2 <= args.modulus <= 1 << 64:
            raise SecAggError("--modulus must be in [2, 2**64]")
        return int(args.modulus)
    bits = 32 if args.modulus_bits is None else args.modulus_bits
    if not 1 <= bits <= 64:
        raise SecAggError("--modulus-bits must be in [1, 64]")
    return 1 << bits


def _own_peak_rss_mb() -> float:
    """This process's peak resident memory plus its waited-for children's, in MB."""
    return (peak_rss_bytes() + peak_rss_bytes(resource.RUSAGE_CHILDREN)) / 2**20


def _option_refusal(args: argparse.Namespace) -> str:
    """Why these options cannot go together ('' when they can)."""
    if args.transcript and args.transport != "inproc":
        return "--transcript needs --transport inproc"
    if args.receipts and not args.transcript:
        return "--receipts needs --transcript"
    if args.threads is not None and args.threads < 1:
        return f"--threads must be at least 1, got {args.threads}"
    if (args.workers != 1 or args.engine != "process") and args.transport != "inproc":
        return "--workers and --engine need --transport inproc"
    if args.transcript:
        try:  # before the session: a run must not fail at the end on where it writes
            writable_file(args.transcript, "--transcript")
        except SecAggError as exc:
            return str(exc)
    return ""


def _run_inproc(args: argparse.Namespace, config: SessionConfig,
                make_input: Callable[[int], np.ndarray], schedule: Schedule,
                bar: StageBar | None) -> SimulationReport:
    """The in-process session, on ``--workers`` worker processes (stopped after it),
    writing its transcript and receipts when asked (§18.5, §18.6)."""
    # the simulated clients accept the cohort floor the operator chose
    recorder = TranscriptRecorder() if args.transcript else None
    receipts = ReceiptObserver(config.session_id, config.cohort) if args.receipts else None
    identities: dict[int, SigningKey] | None = None
    store: TrustStore | None = None
    if receipts is not None and config.mode is Mode.ACTIVE:
        # receipts are signed with the identities, so the CLI makes them here
        identities, store = generate_identities(config.cohort)
    engine = make_engine(args.workers, args.engine, address=args.ray_address)
    try:
        report = simulate(config, make_input, schedule, threads=args.threads,
                          progress=bar.update if bar else None,
                          client_min_cohort=args.min_cohort, transcript=recorder,
                          engine=engine, observers=[receipts] if receipts else [],
                          identities=identities, trust_store=store)
    finally:
        if engine is not None:
            engine.close()
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


def _print_table(r: SimulationReport, wall: float, args: argparse.Namespace) -> None:
    status = ("ABORTED: " + (r.abort_reason or "")) if r.aborted else (
        "exact sum" if r.exact else "WRONG SUM")
    ratio = f"{r.server_to_floor:.2f}x floor" if r.server_to_floor else "n/a"
    full = f"server {r.server_to_full_floor:.2f}x" if r.server_to_full_floor else "n/a"
    workers = f"{r.workers} workers" if r.workers > 1 else f"{r.threads} threads"
    rows = [
        ("result", status),
        ("graph", f"{r.graph} (k={r.degree}, t={r.threshold}, {r.mode})"),
        ("clients", f"{r.clients} ({r.included} included, dropout {args.dropout:.0%} at "
                    f"{args.drop_at})"),
        ("vector", f"{r.dim} elements mod "
                   + (f"{args.modulus}" if args.modulus else f"2^{r.modulus_bits}")
                   + f", PRG version {args.prg_version}"),
        ("server compute", f"{r.server_seconds:.3f} s ({ratio}; floor {r.floor_seconds:.3f} s, "
                           f"{workers})"),
        ("full floor", f"{r.full_floor_seconds:.3f} s ({full}; agreements, Shamir, keystream, "
                       f"additions)"),
        ("client compute", f"{r.client_seconds_mean * 1e3:.1f} ms mean"),
        ("bytes up/client", f"{r.bytes_up_per_client / 1e3:.1f} kB"),
        ("bytes down/client", f"{r.bytes_down_per_client / 1e3:.1f} kB"),
        ("peak server memory", f"{r.peak_server_mb:.1f} MB"),
        ("wall time", f"{wall:.2f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
