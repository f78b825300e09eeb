"""The gRPC server writes one public transcript per session that ``secagg audit`` passes
(spec §18.5): full and hash mode, semi-honest and active (signatures checked against
the recorded identity keys). Library API, in-process threads, plaintext, small."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from secagg import cli
from secagg.audit import audit_transcript
from secagg.config import Mode, SessionSettings
from secagg.identity import generate_identities
from secagg.receipt import read_receipts
from secagg.session_log import verify_log
from secagg.transcript import Transcript
from secagg.transport.server import ServerSettings, TransportServer
from tests.thread_clients import run_thread_clients

pytestmark = pytest.mark.slow

N, DIM, SEED, TASK = 5, 64, 5, bytes(range(32))


def run_cluster(tmp: Path, *, vectors: str, mode: Mode = Mode.SEMI_HONEST,
                sessions: int = 1, client_kwargs: Any = None,
                server_kwargs: Any = None) -> list[Any]:
    """Run ``sessions`` sessions of N thread clients; the outcomes."""
    extra: dict[str, Any] = {}
    protocol_kwargs: dict[str, Any] = {}
    keys: dict[int, Any] = {}
    if mode is Mode.ACTIVE:
        keys, store = generate_identities(range(1, N + 1))
        protocol_kwargs["trust_store"] = store
        extra = {"trust_store": store, "expected_task_hash": TASK}
    settings = ServerSettings(clients=N, dim=DIM, round_timeout=10.0, join_timeout=60.0,
                              sessions=sessions, task_hash=TASK,
                              session=SessionSettings(mode=mode, min_cohort=3),
                              transcript_dir=str(tmp), transcript_vectors=vectors,
                              **(server_kwargs or {}))
    server = TransportServer(settings, credentials=None, protocol_kwargs=protocol_kwargs)
    port = server.start()

    def client_settings(u: int) -> dict[str, Any]:
        kw = {"min_cohort": 3, **extra, **({"identity": keys[u]} if keys else {})}
        return {"sessions": sessions, "client_kwargs": kw, **((client_kwargs or {}).get(u, {}))}

    outcomes, codes = run_thread_clients(server, port, N, SEED, client_settings)
    assert codes == dict.fromkeys(range(1, N + 1), 0)
    return outcomes


@pytest.mark.parametrize(("vectors", "mode"), [("full", Mode.SEMI_HONEST),
                                               ("hash", Mode.ACTIVE)])
def test_grpc_server_transcripts_pass_the_audit(tmp_path: Path, vectors: str,
                                                mode: Mode) -> None:
    receipts = tmp_path / "receipts"
    log = {"session_log": str(tmp_path / "sessions.log"),
           "session_log_key": str(tmp_path / "log.key")}
    (outcome,) = run_cluster(tmp_path, vectors=vectors, mode=mode, client_kwargs={
        u: {"receipt_dir": str(receipts)} for u in range(1, N + 1)}, server_kwargs=log)
    # the signed session log chains this session's transcript (spec §18.7)
    server_key = (tmp_path / "log.key.pub").read_text().strip()
    assert verify_log(tmp_path / "sessions.log", server_key=bytes.fromhex(server_key)) == []
    assert cli.main(["audit", "--log", str(tmp_path / "sessions.log"),
                     "--server-key", server_key]) == 0
    assert not outcome.aborted, outcome.abort_reason
    (path,) = sorted(tmp_path.glob("session-*.jsonl"))
    assert outcome.session_id.hex()[:16] in path.name
    transcript = Transcript.read(path)
    assert transcript.hashed is (vectors == "hash")
    report = audit_transcript(transcript, min_cohort=3, task_hash=TASK)
    assert report.ok, report.lines()
    assert report.unchecked == (frozenset({"A11"}) if vectors == "hash" else frozenset())
    assert cli.main(["audit", str(path), "--min-cohort", "3"]) == 0
    # every client kept a receipt (signed in active mode) that matches the transcript
    kept = read_receipts(receipts)
    assert sorted(r.client for r in kept) == list(range(1, N + 1))
    assert all((r.signature is not None) is (mode is Mode.ACTIVE) for r in kept)
    report = audit_transcript(transcript, min_cohort=3, receipts=kept)
    assert report.ok and report.results[-1].rule.id == "A12", report.lines()
    assert cli.main(["audit", str(path), "--min-cohort", "3", "--receipts", str(receipts)]) == 0


def test_secagg_server_transcript_dir_with_a_killed_client(tmp_path: Path) -> None:
    """``secagg server --transcript DIR`` over mTLS with real processes; one client
    SIGKILLs itself at the masked-input round; the transcript passes ``secagg audit``."""
    from secagg.rounds import Round
    from secagg.transport.local import LocalCluster

    n, out = 5, tmp_path / "transcripts"
    with LocalCluster(range(1, n + 1), tmp=tmp_path) as cluster:
        server = cluster.start_server(
            "--clients", n, "--dim", 100, "--round-timeout", 5, "--sessions", 1,
            "--min-cohort", 3, "--join-timeout", 60, "--transcript", out,
            "--transcript-vectors", "hash")
        for u in range(1, n + 1):
            cluster.start_client(u, "--seed", SEED, "--sessions", 1, "--connect-timeout", 20,
                                 "--receipts", tmp_path / "receipts",
                                 die_at=Round.MASKED_INPUT if u == 2 else None)
        assert server.wait(120) == 0, server._stderr_tail()
        for proc in cluster.clients.values():
            proc.wait(30)
    (path,) = sorted(out.glob("session-*.jsonl"))
    report = audit_transcript(Transcript.read(path), min_cohort=3)
    assert report.ok, report.lines()
    assert cli.main(["audit", str(path), "--min-cohort", "3"]) == 0
    # the four survivors kept receipts (the killed client wrote none); they match
    kept = read_receipts(tmp_path / "receipts")
    assert sorted(r.client for r in kept) == [1, 3, 4, 5]
    assert cli.main(["audit", str(path), "--min-cohort", "3", "--receipts",
                     str(tmp_path / "receipts")]) == 0
