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
"""

from __future__ import annotations

import base64
import binascii
import enum
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
#: Largest transcript file read (a mistaken path must not exhaust memory).
MAX_TRANSCRIPT_BYTES = 8 << 30
#: Largest round number (a record's round is a :class:`~secagg.rounds.Round` value).
MAX_ROUND = max(Round)


class TranscriptError(SecAggError):
    """A transcript file is malformed, truncated, of another version or too large."""


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

    def __repr__(self) -> str:
        return (f"Record({self.direction.value}, round={self.round}, client={self.client}, "
                f"{len(self.data)} bytes)")


@dataclass(frozen=True)
class PublishedResult:
    """The output the server announced: the sum, bit-packed, and who is in it."""

    included: tuple[int, ...]
    bits: int
    count: int
    packed: bytes


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
    def to_lines(self) -> Iterator[str]:
        """The JSON lines of the file format, without newlines."""
        header = {
            "format": FORMAT,
            "version": VERSION,
            "config": self.config.hex(),
            "trust_store": None if self.trust_store is None else {
                str(cid): key.hex() for cid, key in sorted(self.trust_store.items())
            },
        }
        yield json.dumps(header, sort_keys=True)
        for rec in self.records:
            yield json.dumps({
                "dir": rec.direction.value,
                "round": rec.round,
                "client": rec.client,
                "data": base64.b64encode(rec.data).decode("ascii"),
            }, sort_keys=True)
        if self.result is not None:
            yield json.dumps({
                "end": "result",
                "included": list(self.result.included),
                "bits": self.result.bits,
                "count": self.result.count,
                "sum": base64.b64encode(self.result.packed).decode("ascii"),
            }, sort_keys=True)
        elif self.ended:
            yield json.dumps({"end": "abort", "reason": self.abort_reason or ""}, sort_keys=True)

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
        if header.get("version") != VERSION:
            raise TranscriptError(
                f"line 1: unsupported transcript version {header.get('version')!r}")
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

    def __init__(self, recorder: TranscriptRecorder) -> None:
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
    return Record(
        direction,
        _int(obj.get("round"), "round", number, 0, MAX_ROUND),
        _int(obj.get("client"), "client", number, 1, MAX_U32),
        _b64(obj.get("data"), "data", number),
    )


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
    packed = _b64(obj.get("sum"), "sum", number)
    return PublishedResult(ids, bits, count, packed), None
