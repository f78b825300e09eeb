"""Streamed server transcripts, hash mode and their audit (spec §18.5).

A transcript streamed by :class:`~secagg.transcript.TranscriptWriter` in full mode
is byte-identical to the in-memory recorder's; in hash mode it audits with A11
(the unmasking recomputation) reported as not checked and every other rule
checked, so a lie elsewhere is still caught; its size at n = 50, m = 10^6 is
under 5 MB (a real run of that size, marked slow; CI runs it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json

import numpy as np
import pytest

from secagg import cli
from secagg.audit import Status, audit_transcript
from secagg.config import SessionConfig
from secagg.packing import unpack
from secagg.receipt import read_receipts
from secagg.rounds import Round
from secagg.sim import simulate
from secagg.transcript import (
    Direction,
    Transcript,
    TranscriptError,
    TranscriptObserver,
    TranscriptRecorder,
    TranscriptWriter,
    Vectors,
)
from tests.conftest import random_inputs
from tests.test_active_mode import active_config


def stream(config: SessionConfig, vectors: Vectors, schedule: dict | None = None,
           **kw: object) -> str:
    fh = io.StringIO()
    writer = TranscriptWriter(fh, vectors)
    simulate(config, random_inputs(config, 5), schedule or {}, threads=1, transcript=writer,
             **kw)  # type: ignore[arg-type]
    assert writer.ended
    return fh.getvalue()


@pytest.fixture(scope="module")
def semi() -> SessionConfig:
    return SessionConfig.create(range(1, 11), 64, 1 << 32)


def test_full_stream_equals_recorder(semi: SessionConfig) -> None:
    rec, fh = TranscriptRecorder(), io.StringIO()
    writer = TranscriptWriter(fh, Vectors.FULL)
    writer.begin(semi)
    simulate(semi, random_inputs(semi, 5), {Round.MASKED_INPUT: {3}}, threads=1, transcript=rec,
             observers=[TranscriptObserver(writer)])
    built = rec.build()
    assert built.result is not None
    writer.publish_result(unpack(built.result.packed, built.result.bits, built.result.count,
                                 np.uint64), built.result.included, semi.modulus)
    text = fh.getvalue()
    assert text == "".join(line + "\n" for line in built.to_lines())
    assert writer.sha256 == hashlib.sha256(text.encode()).digest()
    assert json.loads(text.splitlines()[0])["version"] == 1


@pytest.mark.parametrize("active", [False, True], ids=["semi-honest", "active"])
def test_hash_mode_audits_except_recomputation(semi: SessionConfig, active: bool) -> None:
    config = active_config("complete-min-t", 12) if active else semi
    text = stream(config, Vectors.HASH, {Round.MASKED_INPUT: {4}})
    header = json.loads(text.splitlines()[0])
    assert header["version"] == 2 and header["vectors"] == "hash"
    transcript = Transcript.from_lines(text.splitlines())
    assert transcript.hashed
    ups = [r for r in transcript.records if r.direction is Direction.UP and r.round == 2]
    assert ups and all(r.hashed and len(r.data) == 21 for r in ups)
    report = audit_transcript(transcript)
    assert report.ok, report.lines()
    a11 = next(r for r in report.results if r.rule.id == "A11")
    assert a11.status is Status.SKIP and "hashes" in a11.note
    assert report.unchecked == {"A11"}
    assert all(r.status is Status.PASS for r in report.results if r.rule.id != "A11")


def test_hash_mode_still_catches_other_lies(semi: SessionConfig) -> None:
    transcript = Transcript.from_lines(stream(semi, Vectors.HASH).splitlines())
    assert transcript.result is not None
    bad = dataclasses.replace(transcript, result=dataclasses.replace(
        transcript.result, included=transcript.result.included[1:]))
    assert "A11" in audit_transcript(bad).failed
    # a forged head (bits changed): the masked input is not accepted, U3 shrinks
    records = list(transcript.records)
    i = next(i for i, r in enumerate(records) if r.hashed)
    head = bytearray(records[i].data)
    head[8] = 7
    records[i] = dataclasses.replace(records[i], data=bytes(head))
    assert not audit_transcript(dataclasses.replace(transcript, records=tuple(records))).ok


def test_hash_mode_round_trips_and_refuses_mixups(semi: SessionConfig) -> None:
    lines = stream(semi, Vectors.HASH).splitlines()
    transcript = Transcript.from_lines(lines)
    assert list(transcript.to_lines()) == lines
    v1 = [lines[0].replace('"version": 2', '"version": 1'), *lines[1:]]
    with pytest.raises(TranscriptError):
        Transcript.from_lines(v1)
    no_flag = [lines[0].replace(', "vectors": "hash"', ""), *lines[1:]]
    with pytest.raises(TranscriptError):
        Transcript.from_lines(no_flag)


@pytest.mark.slow
def test_hash_mode_size_at_fifty_clients_a_million_elements(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """The claim of spec §18.5 run for real (10-25 s, 0.5 GB): a hash-mode transcript of
    n = 50 clients at m = 10^6, none dropping (the largest), is under 5 MB, and it audits
    with the clients' receipts, A11 reported as not checked and every other rule passing."""
    path, folder = tmp_path / "t.jsonl", tmp_path / "receipts"
    assert cli.main(["simulate", "--clients", "50", "--dim", "1000000", "--dropout", "0",
                     "--transcript", str(path), "--transcript-vectors", "hash",
                     "--receipts", str(folder)]) == 0
    capsys.readouterr()
    assert path.stat().st_size < 5_000_000
    lines = path.read_text().splitlines()
    hashed = [json.loads(line) for line in lines[1:] if '"sha256"' in line]
    assert len(hashed) == 50 and all("data" not in obj for obj in hashed)
    assert {obj["size"] for obj in hashed} == {21 + 10**6 * 32 // 8}
    assert "sum_sha256" in json.loads(lines[-1]) and "sum" not in json.loads(lines[-1])
    receipts = read_receipts(folder)
    assert len(receipts) == 50
    report = audit_transcript(Transcript.read(path), receipts=receipts)
    assert report.ok and report.unchecked == {"A11"}, report.lines()
    assert {r.rule.id: r.status for r in report.results} == {
        **{f"A{i}": Status.PASS for i in range(1, 13)}, "A11": Status.SKIP}


def test_cli_says_what_is_not_checked(semi: SessionConfig, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "t.jsonl"
    path.write_text(stream(semi, Vectors.HASH))
    assert cli.main(["audit", str(path)]) == 0
    out = capsys.readouterr().out
    assert "not checked: A11" in out and "PASS" in out.splitlines()[-1]


def test_write_error_stops_the_transcript_not_the_session(semi: SessionConfig) -> None:
    class Full(io.StringIO):
        def write(self, text: str) -> int:
            if self.tell() > 2000:
                raise OSError(28, "No space left on device")
            return super().write(text)

    fh = Full()
    writer = TranscriptWriter(fh, Vectors.FULL)
    report = simulate(semi, random_inputs(semi, 5), {}, threads=1, transcript=writer)
    assert not report.aborted and writer.error == "No space left on device"
    transcript = Transcript.from_lines(fh.getvalue().splitlines())
    assert not transcript.ended
    assert "A1" in audit_transcript(transcript).failed
