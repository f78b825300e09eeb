"""The server's signed, append-only session log (spec §18.7): the chain and signatures
hold for an honest log; a rewritten transcript, a removed, reordered or re-signed
entry, and a wrong server key are each found; ``secagg audit --log`` reports them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from secagg import cli
from secagg.crypto.labels import Label
from secagg.crypto.signatures import SigningKey
from secagg.errors import ConfigError
from secagg.session_log import SessionLog, SessionLogError, load_or_create_key, read_log, verify_log


def make_log(tmp: Path, sessions: int = 3) -> tuple[Path, SigningKey]:
    key = load_or_create_key(tmp / "log.key")
    log = SessionLog(tmp / "sessions.log", key)
    for i in range(sessions):
        name = tmp / f"session-{i}.jsonl"
        name.write_text(f"transcript {i}\n")
        log.append(bytes([i]) * 32, name, hashlib.sha256(name.read_bytes()).digest())
    return tmp / "sessions.log", key


def test_labels_registered() -> None:
    assert Label.SESSION_LOG_CHAIN.value.endswith(b"session-log-chain")


def test_honest_log_holds_and_reopens(tmp_path: Path) -> None:
    path, key = make_log(tmp_path)
    assert verify_log(path, server_key=key.verify_key) == []
    assert (tmp_path / "log.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "log.key.pub").read_text().strip() == key.verify_key.hex()
    # a restarted server appends to the same chain, with the same key from its file
    again = SessionLog(path, load_or_create_key(tmp_path / "log.key"))
    (tmp_path / "late.jsonl").write_text("x\n")
    again.append(bytes(32), tmp_path / "late.jsonl",
                 hashlib.sha256(b"x\n").digest())
    assert len(read_log(path).entries) == 4
    assert verify_log(path, server_key=key.verify_key) == []
    with pytest.raises(SessionLogError):
        SessionLog(path, SigningKey.generate())


def test_rewritten_transcript_found(tmp_path: Path) -> None:
    path, key = make_log(tmp_path)
    (tmp_path / "session-1.jsonl").write_text("transcript 1, edited\n")
    findings = verify_log(path, server_key=key.verify_key)
    assert findings and "entry 1" in findings[0] and "changed after logging" in findings[0]


def test_removed_entry_found(tmp_path: Path) -> None:
    path, key = make_log(tmp_path)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[1], lines[3]]) + "\n")
    findings = verify_log(path, server_key=key.verify_key)
    assert any("sequence number" in f for f in findings)
    assert any("does not chain" in f for f in findings)


def test_resigned_history_found(tmp_path: Path) -> None:
    """A server that rebuilds its log with a new key passes only against that key."""
    _, key = make_log(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    forged, _ = make_log(other)
    assert verify_log(forged) == []  # self-consistent
    findings = verify_log(forged, server_key=key.verify_key)
    assert any("another server key" in f for f in findings)
    assert any("signature does not verify" in f for f in findings)


def test_edited_entry_found(tmp_path: Path) -> None:
    path, key = make_log(tmp_path)
    lines = path.read_text().splitlines()
    obj = json.loads(lines[2])
    obj["transcript_sha256"] = "00" * 32
    lines[2] = json.dumps(obj, sort_keys=True)
    path.write_text("\n".join(lines) + "\n")
    findings = verify_log(path, server_key=key.verify_key)
    assert any("entry 1" in f and "signature" in f for f in findings)
    assert any("entry 2" in f and "does not chain" in f for f in findings)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, key = make_log(tmp_path)
    assert cli.main(["audit", "--log", str(path), "--server-key", key.verify_key.hex()]) == 0
    assert "PASS" in capsys.readouterr().out
    (tmp_path / "session-0.jsonl").write_text("edited\n")
    assert cli.main(["audit", "--log", str(path), "--json"]) == 1
    assert not json.loads(capsys.readouterr().out)["ok"]
    assert cli.main(["audit", "--log", str(path), "--server-key", "zz"]) == 2
    assert cli.main(["audit", "--log", str(tmp_path / "missing.log")]) == 2


def test_settings_need_transcripts_and_key() -> None:
    from secagg.transport.settings import ServerSettings

    with pytest.raises(ConfigError):
        ServerSettings(clients=3, dim=4, session_log="x.log")
    with pytest.raises(ConfigError):
        ServerSettings(clients=3, dim=4, session_log="x.log", session_log_key="k",
                       transcript_vectors="none")
