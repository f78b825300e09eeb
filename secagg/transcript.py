"""Public session transcripts: every message as sent on the wire, and nothing secret.

Why: a malicious server is only caught if someone can check afterwards what it
actually sent. A transcript records, in order, every client -> server and server
-> client message of one session as its canonical bytes, together with the
configuration encoding (spec §2.6), the identity keys of active mode (public
Ed25519 verify keys, spec §15.2) and the result the server published (the sum
and the included set) or its abort reason. All of this is public: it is what a
network observer between the server and the clients sees, plus the output.
``secagg audit`` (:mod:`secagg.audit`) replays a transcript against the spec's
server rules offline.

File format (spec §18.1), version 1: UTF-8 JSON lines.

* line 1, the header: ``{"format": "secagg-transcript", "version": 1,
  "config": "<hex of SessionConfig.encode()>", "trust_store": {"<id>": "<hex
  verify key>", ...} or null}``;
* one line per message: ``{"dir": "up" | "down", "round": r, "client": u,
  "data": "<base64 of the message bytes>"}``, in the order the server received
  (up) or sent (down) them; ``round`` is the spec's round number (0
  AdvertiseKeys, 1 ShareKeys, 2 MaskedInput, 3 ConsistencyCheck, 4 Unmasking): an
  up message belongs to the round it answers, a down message to the round whose
  close produced it;
* the last line: ``{"end": "result", "included": [...], "bits": b, "count": m,
  "sum": "<base64 of the sum bit-packed as in spec §10.5>"}`` or ``{"end":
  "abort", "reason": "..."}``.

Version 2 (spec §18.5) is version 1 with the masked vectors replaced by their
hashes, so a transcript of n = 50 clients at m = 10^6 stays a few megabytes: the
header adds ``"vectors": "hash"``; each round-2 up record carries, instead of
``data``, ``"sha256"`` (hex SHA-256 of the message bytes), ``"size"`` (their
length) and ``"head"`` (base64 of the first :data:`MASKED_HEAD` bytes: magic,
version, type, sender, bits, count, packed length); the result record carries
``"sum_sha256"`` (hex SHA-256 of the packed sum) instead of ``"sum"``. Full
transcripts are still written as version 1, so files written before stay
byte-identical and readable. :class:`TranscriptWriter` streams either form to
disk as the session runs (the gRPC server and the Flower workflow use it).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO

import numpy as np

from secagg.checks import is_plain_int
from secagg.config import SessionConfig
from secagg.errors import ConfigError, SecAggError
from secagg.identity import TrustStore, lookup_verify_key
from secagg.packing import bit_width, pack
from secagg.rounds import Round
from secagg.session import SessionObserver
from secagg.wire import MAX_U32

FORMAT = "secagg-transcript"
VERSION = 1
#: The version of transcripts whose masked vectors are recorded as hashes.
HASHED_VERSION = 2
#: Bytes of a MaskedInput encoding before its packed vector (kept in hash mode).
MASKED_HEAD = 2 + 1 + 1 + 4 + 1 + 4 + 8
#: Largest transcript file read (a mistaken path must not exhaust memory).
MAX_TRANSCRIPT_BYTES = 8 << 30
#: Largest round number (a record's round is a :class:`~secagg.rounds.Round` value).
MAX_ROUND = max(Round)


class TranscriptError(SecAggError):
    """A transcript file is malformed, truncated, of another version or too large."""


class Vectors(enum.Enum):
    """How a transcript records the masked vectors: whole, or by their SHA-256."""

    FULL = "full"
    HASH = "hash"


def digest(data: bytes) -> bytes:
    """The SHA-256 a hashed transcript and a client receipt record for a message."""
    return hashlib.sha256(data).digest()


class Direction(enum.Enum):
    """Who sent a recorded message: ``up`` is client -> server, ``down`` server -> client."""

    UP = "up"
    DOWN = "down"


@dataclass(frozen=True)
class Record:
    """One message as it crossed the wire."""

    direction: Direction
    round: int
    client: int
    data: bytes
    #: hash mode: SHA-256 of the message bytes, whose first bytes only are in ``data``
    sha256: bytes | None = None
    #: hash mode: the length of the message bytes
    size: int | None = None

    @property
    def hashed(self) -> bool:
        return self.sha256 is not None

    @property
    def message_digest(self) -> bytes:
        """SHA-256 of the message as sent (what a client receipt records)."""
        return self.sha256 if self.sha256 is not None else digest(self.data)

    def __repr__(self) -> str:
        size = len(self.data) if self.size is None else self.size
        return (f"Record({self.direction.value}, round={self.round}, client={self.client}, "
                f"{size} bytes)")


@dataclass(frozen=True)
class PublishedResult:
    """The output the server announced: the sum, bit-packed, and who is in it."""

    included: tuple[int, ...]
    bits: int
    count: int
    packed: bytes
    #: hash mode: SHA-256 of the packed sum (``packed`` is then empty)
    sha256: bytes | None = None


@dataclass(frozen=True)
class Transcript:
    """A whole session's public record (see the module docstring).

    ``config`` stays as bytes: decoding and validating it is the auditor's first
    check, so a transcript with a broken configuration can still be loaded and
    reported on.
    """

    config: bytes
    trust_store: Mapping[int, bytes] | None
    records: tuple[Record, ...]
    result: PublishedResult | None = None
    abort_reason: str | None = None
    ended: bool = True

    # -- serialisation ---------------------------------------------------------------------
    @property
    def hashed(self) -> bool:
        """Masked vectors (and the sum) are recorded as hashes (version 2)."""
        return any(r.hashed for r in self.records) or (
            self.result is not None and self.result.sha256 is not None)

    def to_lines(self) -> Iterator[str]:
        """The JSON lines of the file format, without newlines."""
        yield header_line(self.config, self.trust_store,
                          Vectors.HASH if self.hashed else Vectors.FULL)
        for rec in self.records:
            yield record_line(rec)
        if self.result is not None:
            yield result_line(self.result)
        elif self.ended:
            yield abort_line(self.abort_reason or "")

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write the file format to ``path`` (overwritten)."""
        with open(path, "w", encoding="utf-8") as fh:
            self.dump(fh)

    def dump(self, fh: IO[str]) -> None:
        for line in self.to_lines():
            fh.write(line)
            fh.write("\n")

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> Transcript:
        """Parse the file format; any defect is a :class:`TranscriptError` naming the line."""
        it = iter(lines)
        try:
            first = next(it)
        except StopIteration:
            raise TranscriptError("empty transcript") from None
        header = _json_object(first, 1)
        if header.get("format") != FORMAT:
            raise TranscriptError(f"line 1: not a {FORMAT} file")
        if header.get("version") not in (VERSION, HASHED_VERSION):
            raise TranscriptError(
                f"line 1: unsupported transcript version {header.get('version')!r}")
        hashed = header.get("version") == HASHED_VERSION
        if hashed != (header.get("vectors") == Vectors.HASH.value):
            raise TranscriptError("line 1: version 2 (and only it) records vectors as hashes")
        config = _hex(header.get("config"), "config", 1)
        trust = _trust_store(header.get("trust_store"))
        records: list[Record] = []
        result: PublishedResult | None = None
        abort: str | None = None
        ended = False
        for number, line in enumerate(it, start=2):
            if not line.strip():
                continue
            if ended:
                raise TranscriptError(f"line {number}: data after the end record")
            obj = _json_object(line, number)
            if not hashed and ("sha256" in obj or "sum_sha256" in obj):
                raise TranscriptError(f"line {number}: a hash record in a version 1 transcript")
            if "end" in obj:
                ended = True
                result, abort = _end_record(obj, number)
                continue
            records.append(_record(obj, number))
        return cls(config, trust, tuple(records), result, abort, ended)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> Transcript:
        """Read a transcript file (refusing files over :data:`MAX_TRANSCRIPT_BYTES`)."""
        try:
            size = os.path.getsize(path)
            if size > MAX_TRANSCRIPT_BYTES:
                raise TranscriptError(f"transcript file exceeds {MAX_TRANSCRIPT_BYTES} bytes")
            with open(path, encoding="utf-8") as fh:
                return cls.from_lines(fh)
        except OSError as exc:
            raise TranscriptError(f"cannot read transcript: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise TranscriptError("transcript is not UTF-8 text") from None


class TranscriptObserver(SessionObserver):
    """Feeds a :class:`TranscriptRecorder` from the session driver: every message the
    server is handed and every message it sends, in order, as bytes (spec §18.1)."""

    def __init__(self, recorder: TranscriptRecorder | TranscriptWriter) -> None:
        self.recorder = recorder

    def on_up(self, round: Round, client_id: int, data: bytes) -> None:
        self.recorder.up(int(round), client_id, data)

    def on_down(self, round: Round, client_id: int, data: bytes) -> None:
        self.recorder.down(int(round), client_id, data)


@dataclass
class TranscriptRecorder:
    """Collects a transcript while a driver runs a session.

    The driver calls :meth:`begin` once, :meth:`up` for every client message the
    server receives and :meth:`down` for every message the server sends (in
    order), then :meth:`publish_result` or :meth:`publish_abort`. It stores
    bytes only; nothing it holds is secret.
    """

    config: bytes = b""
    trust_store: dict[int, bytes] | None = None
    records: list[Record] = field(default_factory=list)
    result: PublishedResult | None = None
    abort_reason: str | None = None
    ended: bool = False

    def begin(self, config: SessionConfig, trust_store: TrustStore | Mapping[int, bytes] | None
              = None) -> None:
        """Start a session: the configuration, and the identity keys in active mode."""
        self.config = config.encode()
        self.trust_store = None if trust_store is None else trust_store_keys(
            trust_store, config.cohort)
        self.records.clear()
        self.result, self.abort_reason, self.ended = None, None, False

    def up(self, round_number: int, client: int, data: bytes) -> None:
        self._add(Direction.UP, round_number, client, data)

    def down(self, round_number: int, client: int, data: bytes) -> None:
        self._add(Direction.DOWN, round_number, client, data)

    def _add(self, direction: Direction, round_number: int, client: int, data: bytes) -> None:
        if not 0 <= round_number <= MAX_ROUND:
            raise ConfigError(f"round must be in [0, {MAX_ROUND}]")
        self.records.append(Record(direction, round_number, client, bytes(data)))

    def publish_result(self, total: np.ndarray, included: Sequence[int], modulus: int) -> None:
        """The server's announced output: ``total`` (sum mod R) over ``included``."""
        bits = bit_width(modulus)
        vec = np.ascontiguousarray(total)
        self.result = PublishedResult(tuple(int(u) for u in included), bits, int(vec.size),
                                      pack(vec, bits))
        self.abort_reason, self.ended = None, True

    def publish_abort(self, reason: str) -> None:
        self.result, self.abort_reason, self.ended = None, reason, True

    def build(self) -> Transcript:
        """The transcript so far (ended or not)."""
        return Transcript(self.config, None if self.trust_store is None else dict(
            self.trust_store), tuple(self.records), self.result, self.abort_reason, self.ended)

    def write(self, path: str | os.PathLike[str]) -> None:
        self.build().write(path)


class TranscriptWriter:
    """Streams a transcript to a file as the session runs (spec §18.5).

    Why: a server holds O(m) of vectors at a time, never n of them; a recorder
    that kept every message would undo that. Each record is written (and
    flushed) when it passes, so a crashed server leaves a truncated transcript
    the auditor reports as such. With ``vectors=Vectors.HASH`` the masked inputs
    and the sum are written as their SHA-256 (version 2), so the file stays
    O(n·k) bytes whatever m is. The same calls as :class:`TranscriptRecorder`
    (:class:`TranscriptObserver` feeds either). ``sha256`` is the hash of
    everything written, the session's entry in the server's session log.
    """

    def __init__(self, fh: IO[str], vectors: Vectors | str = Vectors.FULL) -> None:
        self.fh = fh
        self.vectors = Vectors(vectors)
        self._hash = hashlib.sha256()
        self.ended = False
        self.records = 0
        #: the file written (None for a stream given by the caller)
        self.path: str | None = None
        #: why writing stopped (None while it works)
        self.error: str | None = None

    @classmethod
    def open(cls, path: str | os.PathLike[str],
             vectors: Vectors | str = Vectors.FULL) -> TranscriptWriter:
        writer = cls(open(path, "w", encoding="utf-8"), vectors)  # noqa: SIM115 (close())
        writer.path = os.fspath(path)
        return writer

    @property
    def sha256(self) -> bytes:
        """SHA-256 of the file's bytes written so far."""
        return self._hash.digest()

    def _line(self, text: str) -> None:
        """Write one line. A write error (disk full) stops the transcript, never the
        session: the file stays truncated (the audit's A1 says so) and ``error`` tells why."""
        if self.error is not None:
            return
        data = text + "\n"
        try:
            self.fh.write(data)
            self.fh.flush()
        except OSError as exc:
            self.error = exc.strerror or "write failed"
            return
        self._hash.update(data.encode("utf-8"))

    def begin(self, config: SessionConfig, trust_store: TrustStore | Mapping[int, bytes] | None
              = None) -> None:
        trust = None if trust_store is None else trust_store_keys(trust_store, config.cohort)
        self._line(header_line(config.encode(), trust, self.vectors))

    def up(self, round_number: int, client: int, data: bytes) -> None:
        hashed = self.vectors is Vectors.HASH and round_number == int(Round.MASKED_INPUT)
        self._add(hashed_record(Direction.UP, round_number, client, data) if hashed
                  else Record(Direction.UP, round_number, client, bytes(data)))

    def down(self, round_number: int, client: int, data: bytes) -> None:
        self._add(Record(Direction.DOWN, round_number, client, bytes(data)))

    def _add(self, rec: Record) -> None:
        if not 0 <= rec.round <= MAX_ROUND:
            raise ConfigError(f"round must be in [0, {MAX_ROUND}]")
        self.records += 1
        self._line(record_line(rec))

    def publish_result(self, total: np.ndarray, included: Sequence[int], modulus: int) -> None:
        bits = bit_width(modulus)
        vec = np.ascontiguousarray(total)
        packed = pack(vec, bits)
        ids = tuple(int(u) for u in included)
        result = (PublishedResult(ids, bits, int(vec.size), b"", digest(packed))
                  if self.vectors is Vectors.HASH
                  else PublishedResult(ids, bits, int(vec.size), packed))
        self._line(result_line(result))
        self.ended = True

    def publish_abort(self, reason: str) -> None:
        self._line(abort_line(reason))
        self.ended = True

    def close(self) -> None:
        try:
            self.fh.close()
        except OSError as exc:
            self.error = self.error or exc.strerror or "close failed"


def transcript_path(directory: str | os.PathLike[str], sequence: int, sid: bytes) -> str:
    """Where a server writes session ``sequence`` (id ``sid``): one file per session."""
    return os.path.join(directory, f"session-{sequence:06d}-{sid.hex()[:16]}.jsonl")


def open_session_transcript(directory: str | os.PathLike[str], sequence: int,
                            config: SessionConfig, vectors: Vectors | str = Vectors.FULL,
                            trust_store: TrustStore | Mapping[int, bytes] | None = None
                            ) -> TranscriptWriter:
    """A writer for one session of a server (gRPC or Flower), its header written (§18.5).

    In active mode ``trust_store`` gives the identity keys the header records, so the
    audit can check signatures.
    """
    try:
        os.makedirs(directory, exist_ok=True)
        writer = TranscriptWriter.open(transcript_path(directory, sequence, config.session_id),
                                       Vectors(vectors))
    except OSError as exc:
        raise ConfigError(f"cannot write the transcript: {exc.strerror}") from None
    writer.begin(config, trust_store)
    return writer


def finish_transcript(writer: TranscriptWriter, result: object, abort_reason: str | None,
                      modulus: int) -> None:
    """Write what the server published (a result with ``sum`` and ``included``, or the
    abort) and close the file."""
    total, included = getattr(result, "sum", None), getattr(result, "included", None)
    if total is not None and included is not None:
        writer.publish_result(total, included, modulus)
    else:
        writer.publish_abort(abort_reason or "no result")
    writer.close()


#: What a driver records a session into: in memory, or streamed to a file.
TranscriptSink = TranscriptRecorder | TranscriptWriter


def hash_vectors(transcript: Transcript) -> Transcript:
    """``transcript`` with its masked inputs and sum recorded by their SHA-256 (version 2)."""
    records = tuple(hashed_record(r.direction, r.round, r.client, r.data)
                    if r.direction is Direction.UP and r.round == int(Round.MASKED_INPUT)
                    and not r.hashed else r for r in transcript.records)
    result = transcript.result
    if result is not None and result.sha256 is None:
        result = PublishedResult(result.included, result.bits, result.count, b"",
                                 digest(result.packed))
    return Transcript(transcript.config, transcript.trust_store, records, result,
                      transcript.abort_reason, transcript.ended)


def hashed_record(direction: Direction, round_number: int, client: int,
                  data: bytes) -> Record:
    """``data`` recorded by its SHA-256, keeping the :data:`MASKED_HEAD` first bytes."""
    return Record(direction, round_number, client, bytes(data[:MASKED_HEAD]), digest(data),
                  len(data))


# --- the file format's lines ----------------------------------------------------------------
def header_line(config: bytes, trust_store: Mapping[int, bytes] | None,
                vectors: Vectors = Vectors.FULL) -> str:
    header: dict[str, object] = {
        "format": FORMAT,
        "version": VERSION if vectors is Vectors.FULL else HASHED_VERSION,
        "config": config.hex(),
        "trust_store": None if trust_store is None else {
            str(cid): key.hex() for cid, key in sorted(trust_store.items())
        },
    }
    if vectors is Vectors.HASH:
        header["vectors"] = vectors.value
    return json.dumps(header, sort_keys=True)


def record_line(rec: Record) -> str:
    obj: dict[str, object] = {"dir": rec.direction.value, "round": rec.round,
                              "client": rec.client}
    if rec.sha256 is None:
        obj["data"] = base64.b64encode(rec.data).decode("ascii")
    else:
        obj.update(sha256=rec.sha256.hex(), size=rec.size,
                   head=base64.b64encode(rec.data).decode("ascii"))
    return json.dumps(obj, sort_keys=True)


def result_line(result: PublishedResult) -> str:
    obj: dict[str, object] = {"end": "result", "included": list(result.included),
                              "bits": result.bits, "count": result.count}
    if result.sha256 is None:
        obj["sum"] = base64.b64encode(result.packed).decode("ascii")
    else:
        obj["sum_sha256"] = result.sha256.hex()
    return json.dumps(obj, sort_keys=True)


def abort_line(reason: str) -> str:
    return json.dumps({"end": "abort", "reason": reason}, sort_keys=True)


def trust_store_keys(store: TrustStore | Mapping[int, bytes],
                     ids: Iterable[int]) -> dict[int, bytes]:
    """The verify keys of ``ids`` that ``store`` knows, validated (public data only)."""
    out: dict[int, bytes] = {}
    for cid in ids:
        key = store.get(cid) if isinstance(store, Mapping) else lookup_verify_key(store, cid)
        if key is not None:
            out[cid] = bytes(key)
    return out


# --- parsing helpers ----------------------------------------------------------------------
def _json_object(line: str, number: int) -> dict[str, object]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        raise TranscriptError(f"line {number}: not valid JSON") from None
    if not isinstance(obj, dict):
        raise TranscriptError(f"line {number}: not a JSON object")
    return obj


def _hex(value: object, what: str, number: int) -> bytes:
    if not isinstance(value, str):
        raise TranscriptError(f"line {number}: {what} must be a hex string")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise TranscriptError(f"line {number}: {what} is not hex") from None


def _b64(value: object, what: str, number: int) -> bytes:
    if not isinstance(value, str):
        raise TranscriptError(f"line {number}: {what} must be a base64 string")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise TranscriptError(f"line {number}: {what} is not base64") from None


def _int(value: object, what: str, number: int, low: int, high: int) -> int:
    if not is_plain_int(value) or not low <= value <= high:
        raise TranscriptError(f"line {number}: {what} must be an integer in [{low}, {high}]")
    return value


def _trust_store(value: object) -> dict[int, bytes] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TranscriptError("line 1: trust_store must be an object or null")
    out: dict[int, bytes] = {}
    for name, key in value.items():
        if not name.isascii() or not name.isdigit() or name != str(int(name)):
            raise TranscriptError("line 1: trust_store ids must be decimal integers")
        cid = _int(int(name), "trust_store id", 1, 1, MAX_U32)
        out[cid] = _hex(key, f"trust_store key of client {cid}", 1)
    return out


def _record(obj: Mapping[str, object], number: int) -> Record:
    try:
        direction = Direction(obj.get("dir"))
    except ValueError:
        raise TranscriptError(f"line {number}: dir must be 'up' or 'down'") from None
    round_number = _int(obj.get("round"), "round", number, 0, MAX_ROUND)
    client = _int(obj.get("client"), "client", number, 1, MAX_U32)
    if "sha256" not in obj:
        return Record(direction, round_number, client, _b64(obj.get("data"), "data", number))
    sha = _hex(obj.get("sha256"), "sha256", number)
    if len(sha) != 32:
        raise TranscriptError(f"line {number}: sha256 must be 32 bytes")
    return Record(direction, round_number, client, _b64(obj.get("head"), "head", number), sha,
                  _int(obj.get("size"), "size", number, 0, 1 << 62))


def _end_record(obj: Mapping[str, object],
                number: int) -> tuple[PublishedResult | None, str | None]:
    kind = obj.get("end")
    if kind == "abort":
        reason = obj.get("reason", "")
        if not isinstance(reason, str):
            raise TranscriptError(f"line {number}: reason must be a string")
        return None, reason
    if kind != "result":
        raise TranscriptError(f"line {number}: end must be 'result' or 'abort'")
    included = obj.get("included")
    if not isinstance(included, list):
        raise TranscriptError(f"line {number}: included must be a list of client ids")
    ids = tuple(_int(u, "included id", number, 1, MAX_U32) for u in included)
    bits = _int(obj.get("bits"), "bits", number, 1, 64)
    count = _int(obj.get("count"), "count", number, 0, 1 << 31)
    if "sum_sha256" in obj:
        sha = _hex(obj.get("sum_sha256"), "sum_sha256", number)
        if len(sha) != 32:
            raise TranscriptError(f"line {number}: sum_sha256 must be 32 bytes")
        return PublishedResult(ids, bits, count, b"", sha), None
    packed = _b64(obj.get("sum"), "sum", number)
    return PublishedResult(ids, bits, count, packed), None
