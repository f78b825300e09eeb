"""The server's signed, append-only session log (spec §18.7).

Why: transcripts are files the server writes; between two audits it could
rewrite one (drop a session, change a message) and nobody would know. The log
chains every session's transcript hash to the previous entry and signs each
entry with a server key whose verify key the auditors hold: rewriting or
removing a transcript breaks its hash, and rewriting the log breaks the chain
or the signatures (the server cannot re-sign history without the auditors
noticing a key change, and an auditor who kept the last entry hash it saw
detects a truncated or forked log).

File format, version 1 (UTF-8 JSON lines): a header ``{"format":
"secagg-session-log", "version": 1, "server_key": hex(verify key)}``, then one
entry per session ``{"seq": i, "session_id": hex, "transcript": file name,
"transcript_sha256": hex, "prev": hex, "signature": hex}``. ``prev`` of entry 0
is ``SHA-256(SESSION_LOG_CHAIN || "|" || header line)``; of entry i > 0 it is the
hash of entry i - 1, ``SHA-256(SESSION_LOG_CHAIN || "|" || canonical JSON of the
entry without its signature)``. The signature is Ed25519 over
``SIGNED_SESSION_LOG || "|" || that entry hash``.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from secagg.crypto.labels import Label
from secagg.crypto.signatures import SigningKey, verify
from secagg.errors import ConfigError, SecAggError, SignatureError

FORMAT = "secagg-session-log"
VERSION = 1
#: Largest log file read.
MAX_LOG_BYTES = 1 << 30


class SessionLogError(SecAggError):
    """A session log cannot be read, or appending to it would fork it."""


def _hash(text: str) -> bytes:
    return hashlib.sha256(Label.SESSION_LOG_CHAIN.value + b"|" + text.encode("utf-8")).digest()


def _statement(entry_hash: bytes) -> bytes:
    return Label.SIGNED_SESSION_LOG.value + b"|" + entry_hash


def _entry_body(seq: int, session_id: bytes, transcript: str, sha: bytes, prev: bytes) -> str:
    return json.dumps({"seq": seq, "session_id": session_id.hex(), "transcript": transcript,
                       "transcript_sha256": sha.hex(), "prev": prev.hex()}, sort_keys=True)


def load_or_create_key(path: str | os.PathLike[str]) -> SigningKey:
    """The server's log key from ``path`` (hex seed), created (mode 0600) if absent;
    the verify key is written next to it as ``<path>.pub`` for the auditors."""
    p = Path(path)
    try:
        if p.exists():
            key = SigningKey.from_seed(bytes.fromhex(p.read_text(encoding="ascii").strip()))
        else:
            seed = secrets.token_bytes(32)
            key = SigningKey.from_seed(seed)
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(seed.hex() + "\n")
        Path(f"{p}.pub").write_text(key.verify_key.hex() + "\n", encoding="ascii")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load or create the session-log key: {exc}") from None
    return key


class SessionLog:
    """Appends one signed entry per finished session to ``path`` (thread-safe)."""

    def __init__(self, path: str | os.PathLike[str], key: SigningKey) -> None:
        self.path = Path(path)
        self.key = key
        self._lock = threading.Lock()
        if not self.path.exists() or self.path.stat().st_size == 0:
            header = json.dumps({"format": FORMAT, "version": VERSION,
                                 "server_key": key.verify_key.hex()}, sort_keys=True)
            self.path.write_text(header + "\n", encoding="utf-8")
        log = read_log(self.path)
        if log.server_key != key.verify_key:
            raise SessionLogError("the session log was started with another server key")
        self._seq = len(log.entries)
        self._prev = log.head

    def append(self, session_id: bytes, transcript: str | os.PathLike[str],
               transcript_sha256: bytes) -> None:
        """Log a finished session: its transcript's file name and SHA-256."""
        with self._lock:
            body = _entry_body(self._seq, session_id, os.path.basename(transcript),
                               transcript_sha256, self._prev)
            entry_hash = _hash(body)
            obj = json.loads(body)
            obj["signature"] = self.key.sign(_statement(entry_hash)).hex()
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(obj, sort_keys=True) + "\n")
            self._seq += 1
            self._prev = entry_hash


@dataclass(frozen=True)
class LogEntry:
    seq: int
    session_id: bytes
    transcript: str
    transcript_sha256: bytes
    prev: bytes
    signature: bytes
    hash: bytes


@dataclass(frozen=True)
class Log:
    server_key: bytes
    start: bytes  # prev of entry 0
    entries: tuple[LogEntry, ...]

    @property
    def head(self) -> bytes:
        """The hash the next entry chains to."""
        return self.entries[-1].hash if self.entries else self.start


def read_log(path: str | os.PathLike[str]) -> Log:
    """Parse a session log (no verification: :func:`verify_log` does that)."""
    try:
        if os.path.getsize(path) > MAX_LOG_BYTES:
            raise SessionLogError(f"session log exceeds {MAX_LOG_BYTES} bytes")
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SessionLogError(f"cannot read the session log: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SessionLogError("the session log is not UTF-8 text") from None
    if not lines:
        raise SessionLogError("empty session log")
    try:
        header = json.loads(lines[0])
        if header.get("format") != FORMAT or header.get("version") != VERSION:
            raise SessionLogError(f"line 1: not a {FORMAT} file of version {VERSION}")
        key = bytes.fromhex(header["server_key"])
        entries = [_entry(line) for line in lines[1:] if line.strip()]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SessionLogError(f"malformed session log: {type(exc).__name__}") from None
    return Log(key, _hash(lines[0]), tuple(entries))


def _entry(line: str) -> LogEntry:
    obj = json.loads(line)
    seq, sid, name = int(obj["seq"]), bytes.fromhex(obj["session_id"]), str(obj["transcript"])
    sha, prev = bytes.fromhex(obj["transcript_sha256"]), bytes.fromhex(obj["prev"])
    return LogEntry(seq, sid, name, sha, prev, bytes.fromhex(obj["signature"]),
                    _hash(_entry_body(seq, sid, name, sha, prev)))


def verify_log(path: str | os.PathLike[str], *, server_key: bytes | None = None,
               transcripts: str | os.PathLike[str] | None = None) -> list[str]:
    """Findings (empty: the log holds): the chain, every signature (under ``server_key``
    when given, else the key the log names), sequence numbers, and, for every logged
    transcript found in ``transcripts`` (default: the log's directory), its SHA-256."""
    log = read_log(path)
    out: list[str] = []
    if server_key is not None and server_key != log.server_key:
        out.append("the log names another server key than the one given")
    key = server_key if server_key is not None else log.server_key
    folder = Path(transcripts) if transcripts is not None else Path(path).parent
    prev = log.start
    for i, e in enumerate(log.entries):
        where = f"entry {i} (session {e.session_id.hex()[:16]})"
        if e.seq != i:
            out.append(f"{where}: sequence number {e.seq}, expected {i} (entries removed?)")
        if e.prev != prev:
            out.append(f"{where}: does not chain to the previous entry (history rewritten)")
        try:
            verify(key, _statement(e.hash), e.signature)
        except SignatureError:
            out.append(f"{where}: the server's signature does not verify")
        prev = e.hash
        file = folder / e.transcript
        if file.is_file():
            with file.open("rb") as fh:  # streamed: a full-mode transcript can be GBs
                digest = hashlib.file_digest(fh, "sha256").digest()
            if digest != e.transcript_sha256:
                out.append(f"{where}: transcript {e.transcript} was changed after logging")
    return out
