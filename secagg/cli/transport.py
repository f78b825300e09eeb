"""``secagg server``, ``secagg client`` and ``secagg certs``: the gRPC transport's commands.

Options and the ``--json`` event names are a public interface (README, "Transport").
TLS with client certificates is the default; plaintext needs ``--insecure``
and prints a warning, because then anyone on the path can read and alter
messages and claim any client id.
"""

from __future__ import annotations

import argparse
import json
import secrets
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np

from secagg.cli.args import hex32, npz_path, writable_file
from secagg.cli.plugins import SubParsers
from secagg.config import Mode, SessionConfig, SessionSettings
from secagg.crypto.prg import mask_dtype
from secagg.errors import ConfigError, SecAggError
from secagg.graph import GraphKind

#: client ids are u32 and 0 is reserved (spec §2.1)
MAX_CLIENT_ID = 2**32 - 1

INSECURE_WARNING = (
    "WARNING: --insecure: plaintext gRPC. Anyone on the network path can read and alter "
    "messages, and client ids are claimed, not authenticated. Use only for local experiments."
)


def register(sub: SubParsers) -> None:
    _register_server(sub)
    _register_client(sub)
    _register_certs(sub)


# -- secagg server ------------------------------------------------------------------------
def _register_server(sub: SubParsers) -> None:
    p = sub.add_parser(
        "server", help="run a secure-aggregation server over gRPC (mTLS)",
        description="Serve sessions to client processes over gRPC with mutual TLS. Waits for "
        "--clients clients, runs --sessions sessions back to back and prints each result.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: any free port, printed)")
    p.add_argument("--clients", type=int, required=True, help="cohort size n to wait for")
    p.add_argument("--dim", type=int, required=True, help="vector length m")
    p.add_argument("--modulus-bits", type=int, default=32, help="R = 2**bits (default 32)")
    p.add_argument("--graph", choices=[g.value for g in GraphKind], default="complete")
    p.add_argument("--threshold", type=int, default=None, help="Shamir threshold t")
    p.add_argument("--degree", type=int, default=None, help="Harary degree k (with --threshold)")
    p.add_argument("--mode", choices=[m.value for m in Mode], default=None,
                   help="adversary model (default: the library's default, semi-honest)")
    p.add_argument("--dropout", type=float, default=0.1,
                   help="declared dropout rate for the Harary parameter finder (0.1)")
    p.add_argument("--corruption", type=float, default=0.05,
                   help="declared corrupt fraction for the Harary parameter finder (0.05)")
    p.add_argument("--min-cohort", type=int, default=10, help="smallest cohort accepted (10)")
    p.add_argument("--round-timeout", type=float, default=30.0,
                   help="seconds to wait for each round's messages (30)")
    p.add_argument("--join-timeout", type=float, default=60.0,
                   help="seconds to wait for --clients clients before the first session (60)")
    p.add_argument("--sessions", type=int, default=1, help="sessions to run back to back (1)")
    p.add_argument("--first-round", type=int, default=0, help="FL round index of session 1")
    p.add_argument("--task-hash", default=None,
                   help="64 hex digits bound into every session id (default: random per session)")
    p.add_argument("--threads", type=int, default=None, help="unmasking threads (cores)")
    p.add_argument("--certs", type=Path, default=None,
                   help="directory from 'secagg certs init' (ca.pem, server.pem, server.key)")
    p.add_argument("--insecure", action="store_true", help="plaintext, no authentication")
    p.add_argument("--out", type=Path, default=None, help="write the sums to FILE.npz")
    p.add_argument("--transcript", metavar="DIR", default=None,
                   help="write each session's public transcript to DIR, one file per session, "
                   "for 'secagg audit' (spec §18.5)")
    p.add_argument("--transcript-vectors", choices=["full", "hash"], default="full",
                   help="record masked vectors whole (full) or by their SHA-256 (hash: small "
                   "at large m; the audit then skips only the unmasking recomputation)")
    p.add_argument("--session-log", metavar="FILE", default=None,
                   help="with --transcript: append each session's transcript hash to this "
                   "signed, chained log ('secagg audit --log FILE'; spec §18.7)")
    p.add_argument("--log-key", metavar="FILE", default=None,
                   help="the session log's Ed25519 key (hex seed; created if absent, its "
                   "verify key written to FILE.pub for the auditors)")
    p.add_argument("--json", action="store_true", help="print events as JSON lines")
    p.set_defaults(func=run_server)


def run_server(args: argparse.Namespace) -> int:
    from secagg.transport import certs
    from secagg.transport.server import ServerSettings, TransportServer

    emit = _emitter(args.json, _server_line)
    try:
        # every option is checked before anything is printed (the --insecure warning
        # included) and before the server listens: nothing fails after the sessions
        if args.out is not None:
            args.out = writable_file(npz_path(args.out), "--out")
        if not 1 <= args.modulus_bits <= 64:
            raise ConfigError("--modulus-bits must be in [1, 64]")
        if args.mode is not None and args.mode != "semi-honest":
            # active mode needs every party's identity keys and a trust store, which the
            # commands do not distribute yet; the library API takes them (spec §17)
            raise ConfigError(f"--mode {args.mode} is only available through the library API "
                              "(TransportServer protocol_kwargs / TransportClient client_kwargs)")
        task = None if args.task_hash is None else hex32(args.task_hash, "--task-hash")
        settings = ServerSettings(
            clients=args.clients, dim=args.dim, modulus=1 << args.modulus_bits,
            session=SessionSettings.build(
                graph=args.graph, threshold=args.threshold, degree=args.degree,
                dropout_rate=min(max(args.dropout, 0.0), 0.99), corruption_rate=args.corruption,
                min_cohort=args.min_cohort, mode=args.mode),
            round_timeout=args.round_timeout,
            join_timeout=args.join_timeout, sessions=args.sessions, threads=args.threads,
            task_hash=task, first_round=args.first_round,
            transcript_dir=args.transcript, transcript_vectors=args.transcript_vectors,
            session_log=args.session_log, session_log_key=args.log_key,
        )
        credentials = certs.server_credentials(args.certs) if _use_tls(args, "server") else None
        server = TransportServer(settings, credentials=credentials,
                                 address=f"{args.host}:{args.port}", on_event=emit)
        server.start()
    except SecAggError as exc:
        print(f"secagg server: refused: {exc}", file=sys.stderr)
        return 2

    def stop(_signum: int, _frame: object) -> None:
        server.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        outcomes = server.run()
    finally:
        server.shutdown()
    if args.out is not None:
        # sum_K / included_K per finished session K; sum / included: the last one
        arrays: dict[str, np.ndarray] = {}
        for o in outcomes:
            if o.sum is not None:
                included = np.asarray(o.included_ids, dtype=np.uint32)
                arrays[f"sum_{o.sequence}"] = arrays["sum"] = o.sum
                arrays[f"included_{o.sequence}"] = arrays["included"] = included
        np.savez(args.out, **arrays)  # type: ignore[arg-type]  # numpy types **kwds as bool
    return 0 if outcomes and all(not o.aborted for o in outcomes) else 1


def _server_line(e: dict[str, Any]) -> str | None:
    kind = e.get("event")
    if kind == "listening":
        return f"listening on port {e['port']} ({'mTLS' if e['tls'] else 'PLAINTEXT'})"
    if kind == "session-open":
        return (f"session {e['sequence']}: open, {len(e['cohort'])} clients, "
                f"t={e['threshold']}, id {e['session_id'][:16]}")
    if kind == "session-end":
        if e["aborted"]:
            return f"session {e['sequence']}: ABORTED: {e['abort_reason']}"
        return (f"session {e['sequence']}: sum over {e['included']} clients "
                f"(dropped {e['dropped_ids']}), {e['wall_seconds']:.2f} s, "
                f"sha256 {e['sum_sha256'][:16]}")
    return None


# -- secagg client ------------------------------------------------------------------------
def _register_client(sub: SubParsers) -> None:
    p = sub.add_parser(
        "client", help="take part in secure-aggregation sessions over gRPC (mTLS)",
        description="Connect to a secagg server and take part in its sessions until it says "
        "goodbye. The input is a .npy vector already quantized into Z_R (dtype uint32 for "
        "R <= 2**32, else uint64), or a random demo vector.",
    )
    p.add_argument("--server", required=True, help="HOST:PORT of the server")
    p.add_argument("--id", type=int, required=True, help="this client's id (as in its certificate)")
    p.add_argument("--certs", type=Path, default=None,
                   help="directory with ca.pem, client-ID.pem and client-ID.key")
    p.add_argument("--insecure", action="store_true", help="plaintext, no authentication")
    p.add_argument("--input", type=Path, default=None, help="input vector FILE.npy")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the random demo input (default: fresh randomness)")
    p.add_argument("--sessions", type=int, default=0,
                   help="leave after this many sessions (default 0: until the server's goodbye)")
    p.add_argument("--connect-timeout", type=float, default=30.0,
                   help="give up after this many seconds without reaching the server (30)")
    p.add_argument("--server-name", default=None,
                   help="name the server certificate must carry (default: the host in --server)")
    p.add_argument("--receipts", metavar="DIR", default=None,
                   help="keep a receipt of each session in DIR, for 'secagg audit "
                   "TRANSCRIPT --receipts DIR' (spec §18.6)")
    p.add_argument("--json", action="store_true", help="print events as JSON lines")
    p.set_defaults(func=run_client)


def run_client(args: argparse.Namespace) -> int:
    from secagg.transport import certs
    from secagg.transport.client import ClientSettings, TransportClient, demo_input

    emit = _emitter(args.json, _client_line)
    try:
        if not 1 <= args.id <= MAX_CLIENT_ID:
            raise ConfigError(f"--id must be in [1, {MAX_CLIENT_ID}], got {args.id}")
        fixed = None if args.input is None else _load_input(args.input)
        settings = ClientSettings(
            server=args.server, client_id=args.id, connect_timeout=args.connect_timeout,
            sessions=args.sessions, server_name=args.server_name, receipt_dir=args.receipts,
        )
        credentials = (certs.channel_credentials(args.certs, args.id)
                       if _use_tls(args, "client") else None)
    except SecAggError as exc:
        print(f"secagg client: refused: {exc}", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else secrets.randbits(32)

    def inputs(config: SessionConfig) -> np.ndarray:
        if fixed is not None:
            return fixed
        return demo_input(seed, args.id, config.round_index, config.dim, config.modulus)

    client = TransportClient(settings, inputs, credentials=credentials, on_event=emit)
    return client.run()


def _load_input(path: Path) -> np.ndarray:
    """The client's vector: a plain .npy array (never pickled objects), already in Z_R.

    A float update is refused here, in one line, with the command that quantizes it
    (``secagg quantize``); whether the values fit the session's R is checked per session.
    """
    try:
        vec: np.ndarray = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ConfigError(f"--input {path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--input {path}: not a readable .npy array ({exc})") from None
    if not isinstance(vec, np.ndarray):  # an .npz archive loads as a mapping
        raise ConfigError(f"--input {path}: an .npz archive, not one .npy array")
    if vec.ndim != 1 or vec.dtype not in (mask_dtype(2), mask_dtype(1 << 64)):
        raise ConfigError(
            f"--input {path}: need a 1-d uint32 (R <= 2**32) or uint64 array already in Z_R, "
            f"got {vec.ndim}-d {vec.dtype}; turn a float update into one with "
            "'secagg quantize'")
    return vec


def _client_line(e: dict[str, Any]) -> str | None:
    kind = e.get("event")
    if kind == "session-end":
        line = f"client {e['client']}: session {e['session_id'][:16]} {e['status']}"
        return line + (f" ({e['reason']})" if e.get("reason") else "")
    if kind in ("session-refused", "exit"):
        return f"client {e['client']}: {kind}: {e.get('reason')}"
    return None


# -- secagg certs -------------------------------------------------------------------------
def _register_certs(sub: SubParsers) -> None:
    p = sub.add_parser("certs", help="development certificates for the gRPC transport")
    csub = p.add_subparsers(dest="certs_command", metavar="ACTION")
    csub.required = True
    init = csub.add_parser(
        "init", help="create a development CA, a server and N client certificates",
        description="Create DIR/ca.pem (+ ca.key), DIR/server.pem/.key for 127.0.0.1 and "
        "localhost, and DIR/client-ID.pem/.key for ids 1..N (EC P-256, short validity). "
        "For development and tests: production deployments use their own CA.",
    )
    init.add_argument("directory", type=Path, metavar="DIR")
    init.add_argument("--clients", type=int, default=10, help="number of client certificates")
    init.add_argument("--days", type=int, default=7, help="validity in days (7)")
    init.add_argument("--host", action="append", default=None,
                      help="extra DNS name for the server certificate (repeatable)")
    init.add_argument("--ip", action="append", default=None,
                      help="extra IP address for the server certificate (repeatable)")
    init.add_argument("--force", action="store_true", help="replace an existing CA")
    init.set_defaults(func=run_certs_init)


def run_certs_init(args: argparse.Namespace) -> int:
    from secagg.transport import certs

    try:
        if args.clients < 0:
            raise ConfigError("--clients must be >= 0")
        paths = certs.init_dev_ca(
            args.directory, range(1, args.clients + 1), days=args.days,
            hosts=["localhost", *(args.host or [])], ips=["127.0.0.1", "::1", *(args.ip or [])],
            overwrite=args.force,
        )
    except SecAggError as exc:
        print(f"secagg certs: refused: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"secagg certs: refused: {args.directory}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"CA, server and {len(paths.clients)} client certificates in {paths.directory} "
          f"(valid {args.days} days; keep ca.key private)")
    return 0


# -- shared ----------------------------------------------------------------------------------
def _use_tls(args: argparse.Namespace, who: str) -> bool:
    """True for mutual TLS (the default); False for --insecure, after the warning."""
    if args.insecure:
        if args.certs is not None:
            raise ConfigError("give either --certs or --insecure, not both")
        print(INSECURE_WARNING, file=sys.stderr)
        return False
    if args.certs is None:
        raise ConfigError(f"the {who} needs --certs DIR (mutual TLS), or --insecure for plaintext")
    return True


def _emitter(as_json: bool, text: Any) -> Any:
    def emit(event: dict[str, Any]) -> None:
        if as_json:
            line = json.dumps(event, sort_keys=True)
        else:
            line = text(event)
            if line is None:
                return
        print(line, flush=True)

    return emit
