"""Client receipts and rule A12 (spec §18.6).

Honest receipts (semi-honest and active, full and hashed transcripts, with
dropouts) pass A12; a transcript that omits or alters what a client sent or was
shown, an edited receipt, and an unsigned or wrongly signed receipt in active
mode are each flagged with the client and round named.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest

from secagg import cli
from secagg.audit import audit_transcript
from secagg.config import SessionConfig
from secagg.crypto.labels import Label
from secagg.identity import generate_identities
from secagg.receipt import Entry, Receipt, ReceiptClient, ReceiptError, ReceiptObserver
from secagg.receipt_audit import check_receipts
from secagg.rounds import Round
from secagg.session import SessionDriver
from secagg.sim import simulate
from secagg.transcript import (
    Direction,
    Transcript,
    TranscriptRecorder,
    TranscriptWriter,
    Vectors,
)
from tests.conftest import random_inputs
from tests.test_active_mode import active_config

SCHEDULE = {Round.MASKED_INPUT: {4}, Round.UNMASKING: {6}}


def session(config: SessionConfig, *, hashed: bool = False, identities: dict | None = None
            ) -> tuple[Transcript, list[Receipt]]:
    observer = ReceiptObserver(config.session_id, config.cohort)
    if hashed:
        fh = io.StringIO()
        sink: TranscriptRecorder | TranscriptWriter = TranscriptWriter(fh, Vectors.HASH)
    else:
        sink = TranscriptRecorder()
    kw = {"identities": identities} if identities else {}
    simulate(config, random_inputs(config, 9), SCHEDULE, threads=1, transcript=sink,
             observers=[observer], **kw)  # type: ignore[arg-type]
    transcript = (sink.build() if isinstance(sink, TranscriptRecorder)
                  else Transcript.from_lines(fh.getvalue().splitlines()))
    return transcript, observer.receipts(identities)


@pytest.fixture(scope="module")
def semi() -> tuple[Transcript, list[Receipt]]:
    return session(SessionConfig.create(range(1, 11), 16, 1 << 32))


def a12(transcript: Transcript, receipts: list[Receipt], **kw: object) -> tuple[str, ...]:
    report = audit_transcript(transcript, receipts=receipts, **kw)  # type: ignore[arg-type]
    res = report.results[-1]
    assert res.rule.id == "A12"
    return res.findings


def test_labels_registered() -> None:
    assert Label.RECEIPT_CHAIN.value.endswith(b"receipt-chain")
    assert Label.SIGNED_RECEIPT.value.endswith(b"signed/receipt")


def test_honest_receipts_pass(semi: tuple[Transcript, list[Receipt]]) -> None:
    transcript, receipts = semi
    report = audit_transcript(transcript, receipts=receipts)
    assert report.ok, report.lines()
    assert "10 receipts checked" in report.results[-1].note
    # the receipt is small: digests only
    assert all(len(r.to_json()) < 2000 for r in receipts)


def test_honest_receipts_pass_hashed_and_active() -> None:
    cfg = active_config("complete-min-t", 12)
    keys, _ = generate_identities(cfg.cohort)
    transcript, receipts = session(cfg, hashed=True, identities=keys)
    assert transcript.hashed and all(r.signature is not None for r in receipts)
    report = audit_transcript(transcript, receipts=receipts)
    assert report.ok, report.lines()
    # unsigned, or signed by someone else: flagged in active mode
    unsigned = [dataclasses.replace(receipts[0], signature=None), *receipts[1:]]
    assert any("not signed" in f for f in a12(transcript, unsigned))
    forged = [dataclasses.replace(receipts[0], signature=receipts[1].signature), *receipts[1:]]
    assert any(f.startswith(f"client {receipts[0].client}:") for f in a12(transcript, forged))


def test_server_message_not_in_transcript_flagged(
        semi: tuple[Transcript, list[Receipt]]) -> None:
    transcript, receipts = semi
    records = list(transcript.records)
    i = next(i for i, r in enumerate(records)
             if r.direction is Direction.DOWN and r.client == 3 and r.round == 1)
    records[i] = dataclasses.replace(records[i], data=records[i].data + b"x")
    findings = a12(dataclasses.replace(transcript, records=tuple(records)), receipts)
    assert any(f.startswith("client 3, round 1: the server showed the client") for f in findings)


def test_dropped_client_message_flagged(semi: tuple[Transcript, list[Receipt]]) -> None:
    transcript, receipts = semi
    records = [r for r in transcript.records
               if not (r.direction is Direction.UP and r.client == 5 and r.round == 1)]
    findings = a12(dataclasses.replace(transcript, records=tuple(records)), receipts)
    assert any(f.startswith("client 5, round 1: the client sent a message the transcript")
               for f in findings)


def test_forged_client_message_flagged(semi: tuple[Transcript, list[Receipt]]) -> None:
    transcript, receipts = semi
    receipt = next(r for r in receipts if r.client == 7)
    entries = tuple(e for e in receipt.entries if not (e.direction is Direction.UP
                                                       and e.round == 2))
    from secagg.receipt import chain_of
    trimmed = dataclasses.replace(receipt, entries=entries,
                                  chain=chain_of(receipt.session_id, 7, entries))
    findings = a12(transcript, [r if r.client != 7 else trimmed for r in receipts])
    assert any(f.startswith("client 7, round 2: the transcript records a message from the "
                            "client that it never sent") for f in findings)


def test_edited_receipt_flagged(semi: tuple[Transcript, list[Receipt]]) -> None:
    transcript, receipts = semi
    r0 = receipts[0]
    bad = dataclasses.replace(r0, entries=(*r0.entries, Entry(Direction.UP, 4, bytes(32))))
    assert any("hash chain" in f for f in a12(transcript, [bad, *receipts[1:]]))


def test_other_sessions_ignored_and_none_is_a_failure(
        semi: tuple[Transcript, list[Receipt]]) -> None:
    transcript, receipts = semi
    other = [dataclasses.replace(r, session_id=bytes(32)) for r in receipts]
    res = check_receipts(transcript, other)
    assert res.findings == ("no receipt is for this session",)
    assert "10 of other sessions ignored" in res.note


def test_receipt_client_wrapper_matches_observer() -> None:
    """The endpoint wrapper (for clients outside the driver) keeps the same receipt."""
    from secagg.client import ClientProtocol
    from secagg.server import ServerProtocol

    cfg = SessionConfig.create(range(1, 6), 8, 1 << 32, min_cohort=3)
    inputs = random_inputs(cfg, 2)
    clients = {u: ReceiptClient(ClientProtocol(cfg, u, inputs[u], min_cohort=3),
                                cfg.session_id, u) for u in cfg.cohort}
    observer = ReceiptObserver(cfg.session_id, cfg.cohort)
    rec = TranscriptRecorder()
    rec.begin(cfg)
    from secagg.transcript import TranscriptObserver
    driver = SessionDriver(ServerProtocol(cfg), clients,
                           observers=[observer, TranscriptObserver(rec)]).run()
    result = driver.server.result
    assert result is not None
    rec.publish_result(result.sum, result.included, cfg.modulus)
    wrapped = [clients[u].keeper.receipt() for u in cfg.cohort]
    assert wrapped == observer.receipts()
    assert audit_transcript(rec.build(), receipts=wrapped, min_cohort=3).ok


def test_file_round_trip_and_cli(semi: tuple[Transcript, list[Receipt]], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    transcript, receipts = semi
    for r in receipts:
        assert Receipt.read(r.write(tmp_path / "receipts")) == r
    (tmp_path / "t.jsonl").write_text("".join(line + "\n" for line in transcript.to_lines()))
    assert cli.main(["audit", str(tmp_path / "t.jsonl"), "--receipts",
                     str(tmp_path / "receipts")]) == 0
    assert "A12" in capsys.readouterr().out
    records = tuple(r for r in transcript.records
                    if not (r.direction is Direction.DOWN and r.client == 2 and r.round == 0))
    bad = dataclasses.replace(transcript, records=records)
    (tmp_path / "bad.jsonl").write_text("".join(line + "\n" for line in bad.to_lines()))
    assert cli.main(["audit", str(tmp_path / "bad.jsonl"), "--receipts",
                     str(tmp_path / "receipts")]) == 1
    assert "client 2, round 0" in capsys.readouterr().out
    (tmp_path / "receipts" / "receipt-x.json").write_text("{}")
    assert cli.main(["audit", str(tmp_path / "t.jsonl"), "--receipts",
                     str(tmp_path / "receipts")]) == 2
    with pytest.raises(ReceiptError):
        Receipt.from_json('{"format": "secagg-receipt", "version": 9}')


@pytest.mark.parametrize(("mode", "vectors"), [("semi-honest", "full"), ("active", "hash")])
def test_simulate_cli_receipts_then_audit(tmp_path: Path, mode: str, vectors: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path, receipts = tmp_path / "t.jsonl", tmp_path / "receipts"
    assert cli.main(["simulate", "--clients", "12", "--dim", "32", "--mode", mode,
                     "--dropout", "0.1", "--drop-at", "masked-input", "--seed", "2",
                     "--threads", "1", "--transcript", str(path), "--transcript-vectors",
                     vectors, "--receipts", str(receipts), "--json"]) == 0
    assert Transcript.read(path).hashed is (vectors == "hash")
    kept = list(receipts.glob("receipt-*.json"))
    assert len(kept) == 12
    assert all((Receipt.read(p).signature is not None) is (mode == "active") for p in kept)
    capsys.readouterr()
    assert cli.main(["audit", str(path), "--receipts", str(receipts)]) == 0
    out = capsys.readouterr().out
    assert "A12" in out and out.splitlines()[-1].startswith("verdict: PASS")
    assert cli.main(["simulate", "--clients", "12", "--dim", "8", "--receipts",
                     str(receipts)]) == 2
