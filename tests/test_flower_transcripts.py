"""The Flower workflow writes one public transcript per session (FL round) that
``secagg audit`` passes (spec §18.5), in full and hash mode, with dropouts."""

from __future__ import annotations

from pathlib import Path

import pytest

from fl.data import FederatedData, federate
from secagg.audit import audit_transcript
from secagg.errors import ConfigError
from secagg.flower import SecAggPlusMod
from secagg.receipt import read_receipts
from secagg.session_log import SessionLog, load_or_create_key, read_log, verify_log
from secagg.transcript import Transcript
from tests.test_flower_adapter import LATE_DROPS, ROUNDS, N, ours, run_federation


@pytest.fixture(scope="module")
def data() -> FederatedData:
    return federate("digits", N, iid=True, seed=0)


@pytest.mark.parametrize("vectors", ["full", "hash"])
def test_flower_workflow_transcripts_pass_the_audit(data: FederatedData, tmp_path: Path,
                                                    vectors: str) -> None:
    key = load_or_create_key(tmp_path / "log.key")
    log = SessionLog(tmp_path / "sessions.log", key)
    workflow = ours(transcript_dir=str(tmp_path), transcript_vectors=vectors, session_log=log)
    receipt_dir = tmp_path / "receipts"
    # replayed from the persisted state in hash mode: the receipt survives that too
    mod = SecAggPlusMod(receipt_dir=str(receipt_dir), cache=vectors == "full")
    run_federation(data, workflow, mod, LATE_DROPS)
    kept = read_receipts(receipt_dir)
    paths = sorted(tmp_path.glob("session-*.jsonl"))
    assert len(paths) == len(workflow.outcomes) == ROUNDS
    for path, outcome in zip(paths, workflow.outcomes, strict=True):
        transcript = Transcript.read(path)
        assert transcript.config == outcome.config.encode()
        assert transcript.hashed is (vectors == "hash")
        assert transcript.result is not None
        report = audit_transcript(transcript, min_cohort=N)
        assert report.ok, report.lines()
        # the clients' receipts of this session (the one dropped at masked input kept
        # none: it never finished) match the transcript
        mine = [r for r in kept if r.session_id == outcome.config.session_id]
        assert len(mine) >= N - len(LATE_DROPS)
        report = audit_transcript(transcript, min_cohort=N, receipts=kept)
        assert report.ok, report.lines()
    assert len(read_log(tmp_path / "sessions.log").entries) == ROUNDS
    assert verify_log(tmp_path / "sessions.log", server_key=key.verify_key) == []


def test_bad_transcript_vectors_refused() -> None:
    with pytest.raises(ConfigError):
        ours(transcript_dir="x", transcript_vectors="some")
