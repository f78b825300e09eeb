"""Client receipts: what one client sent and received in one session (spec §18.6).

Why: a transcript is written by the server, so a server that shows a client
something else than it records (a split view, a substituted key, an asymmetric
bundle) or drops what a client sent writes a transcript that passes the audit.
Each client can keep a small receipt instead: the session id, the SHA-256 of
every message it sent (``up``) and received (``down``) with its round, and a hash
chain over them, signed with its identity key in active mode. The auditor checks
each receipt against the transcript (:func:`secagg.audit.check_receipts`): every
message a receipt lists must be in the transcript, every message the transcript
claims from the client must be in its receipt.

A receipt holds digests only (32 bytes per message, ~8 messages a session), no
secret: it reveals nothing a network observer does not see.

File format, version 1 (one JSON object): ``{"format": "secagg-receipt",
"version": 1, "session_id": hex, "client": u, "entries": [["up"|"down", r,
hex(SHA-256 of the message)], ...], "chain": hex, "signature": hex or null}``.
Chain: ``h_0 = SHA-256(RECEIPT_CHAIN || "|" || sid || u32(u))``, ``h_i =
SHA-256(RECEIPT_CHAIN || "|" || h_{i-1} || dir || u8(r) || digest_i)`` (dir: 0
up, 1 down); the signature is Ed25519 over ``SIGNED_RECEIPT || "|" || sid ||
u32(u) || h_last``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from secagg.checks import is_plain_int
from secagg.crypto.labels import Label
from secagg.crypto.signatures import SigningKey, verify
from secagg.errors import SecAggError, SignatureError
from secagg.messages import ClientMessage, ServerMessage
from secagg.rounds import Round
from secagg.session import ClientEndpoint, SessionObserver
from secagg.transcript import Direction, digest

FORMAT = "secagg-receipt"
VERSION = 1
#: Largest receipt file read.
MAX_RECEIPT_BYTES = 1 << 20


class ReceiptError(SecAggError):
    """A receipt file is malformed, of another version or too large."""


@dataclass(frozen=True)
class Entry:
    """One message a client sent (UP) or received (DOWN), by its SHA-256."""

    direction: Direction
    round: int
    digest: bytes


def _chain_start(session_id: bytes, client: int) -> bytes:
    return hashlib.sha256(Label.RECEIPT_CHAIN.value + b"|" + session_id
                          + client.to_bytes(4, "big")).digest()


def _chain_step(head: bytes, entry: Entry) -> bytes:
    tag = b"\x00" if entry.direction is Direction.UP else b"\x01"
    return hashlib.sha256(Label.RECEIPT_CHAIN.value + b"|" + head + tag
                          + entry.round.to_bytes(1, "big") + entry.digest).digest()


def chain_of(session_id: bytes, client: int, entries: Iterable[Entry]) -> bytes:
    """The chain head over ``entries`` (spec §18.6)."""
    head = _chain_start(session_id, client)
    for e in entries:
        head = _chain_step(head, e)
    return head


def receipt_statement(session_id: bytes, client: int, chain: bytes) -> bytes:
    """What a client signs in active mode: its chain head, bound to session and id."""
    return (Label.SIGNED_RECEIPT.value + b"|" + session_id + client.to_bytes(4, "big")
            + chain)


@dataclass(frozen=True)
class Receipt:
    """One client's receipt of one session."""

    session_id: bytes
    client: int
    entries: tuple[Entry, ...]
    chain: bytes
    signature: bytes | None = None

    def chain_ok(self) -> bool:
        """The chain head matches the entries (the file was not edited)."""
        return chain_of(self.session_id, self.client, self.entries) == self.chain

    def signature_ok(self, verify_key: bytes) -> bool:
        if self.signature is None:
            return False
        try:
            verify(verify_key, receipt_statement(self.session_id, self.client, self.chain),
                   self.signature)
        except SignatureError:
            return False
        return True

    def to_json(self) -> str:
        return json.dumps({
            "format": FORMAT, "version": VERSION, "session_id": self.session_id.hex(),
            "client": self.client,
            "entries": [[e.direction.value, e.round, e.digest.hex()] for e in self.entries],
            "chain": self.chain.hex(),
            "signature": None if self.signature is None else self.signature.hex(),
        }, sort_keys=True)

    def write(self, directory: str | os.PathLike[str]) -> Path:
        """Write to ``directory/receipt-<sid prefix>-<client>.json``; the path."""
        os.makedirs(directory, exist_ok=True)
        path = Path(directory) / f"receipt-{self.session_id.hex()[:16]}-{self.client}.json"
        path.write_text(self.to_json() + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_json(cls, text: str) -> Receipt:
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            raise ReceiptError("receipt is not valid JSON") from None
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise ReceiptError(f"not a {FORMAT} file")
        if obj.get("version") != VERSION:
            raise ReceiptError(f"unsupported receipt version {obj.get('version')!r}")
        client = obj.get("client")
        if not is_plain_int(client) or not 1 <= client < 1 << 32:
            raise ReceiptError("client must be an id in [1, 2^32 - 1]")
        raw = obj.get("entries")
        if not isinstance(raw, list):
            raise ReceiptError("entries must be a list")
        sig = obj.get("signature")
        return cls(_hex(obj.get("session_id"), "session_id", 32), client,
                   tuple(_entry(e) for e in raw), _hex(obj.get("chain"), "chain", 32),
                   None if sig is None else _hex(sig, "signature", 64))

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> Receipt:
        try:
            if os.path.getsize(path) > MAX_RECEIPT_BYTES:
                raise ReceiptError(f"receipt file exceeds {MAX_RECEIPT_BYTES} bytes")
            return cls.from_json(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ReceiptError(f"cannot read receipt: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ReceiptError("receipt is not UTF-8 text") from None


def read_receipts(directory: str | os.PathLike[str]) -> list[Receipt]:
    """Every ``receipt-*.json`` in ``directory`` (sorted by name)."""
    return [Receipt.read(p) for p in sorted(Path(directory).glob("receipt-*.json"))]


def _hex(value: object, what: str, length: int) -> bytes:
    if not isinstance(value, str):
        raise ReceiptError(f"{what} must be a hex string")
    try:
        out = bytes.fromhex(value)
    except ValueError:
        raise ReceiptError(f"{what} is not hex") from None
    if len(out) != length:
        raise ReceiptError(f"{what} must be {length} bytes")
    return out


def _entry(value: object) -> Entry:
    if not isinstance(value, list) or len(value) != 3:
        raise ReceiptError("each entry must be [direction, round, digest]")
    direction, rnd, dig = value
    try:
        d = Direction(direction)
    except ValueError:
        raise ReceiptError("entry direction must be 'up' or 'down'") from None
    if not is_plain_int(rnd) or not 0 <= rnd <= max(Round):
        raise ReceiptError("entry round must be a round number")
    return Entry(d, rnd, _hex(dig, "entry digest", 32))


@dataclass
class ReceiptKeeper:
    """Builds one client's receipt as its messages pass (the bytes are never kept)."""

    session_id: bytes
    client: int
    entries: list[Entry] = field(default_factory=list)
    #: the round of the last message sent: a server message answers it (§18.1)
    last_round: int = 0

    def sent(self, round: int, data: bytes) -> None:
        self.last_round = round
        self.entries.append(Entry(Direction.UP, round, digest(data)))

    def received(self, round: int, data: bytes) -> None:
        self.entries.append(Entry(Direction.DOWN, round, digest(data)))

    def receipt(self, identity: SigningKey | None = None) -> Receipt:
        """The receipt so far, signed with ``identity`` when given (active mode)."""
        chain = chain_of(self.session_id, self.client, self.entries)
        sig = None if identity is None else identity.sign(
            receipt_statement(self.session_id, self.client, chain))
        return Receipt(self.session_id, self.client, tuple(self.entries), chain, sig)


class ReceiptClient:
    """A client endpoint that keeps a receipt: wraps a :class:`~secagg.client.ClientProtocol`
    (or any endpoint) and records every message it sends and every one it is handed.

    The round of a received message is the round of the client's last message (the
    server message answers it), as the transcript records it.
    """

    def __init__(self, inner: ClientEndpoint, session_id: bytes, client: int) -> None:
        self.inner = inner
        self.keeper = ReceiptKeeper(session_id, client)

    def start(self) -> ClientMessage:
        message = self.inner.start()
        self.keeper.sent(int(Round.of_client_message(message)), message.encode())
        return message

    def handle(self, message: ServerMessage) -> ClientMessage | None:
        self.keeper.received(self.keeper.last_round, message.encode())
        reply = self.inner.handle(message)
        if reply is not None:
            self.keeper.sent(int(Round.of_client_message(reply)), reply.encode())
        return reply

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


class ReceiptObserver(SessionObserver):
    """Receipts of ``clients`` kept from the session driver: each client's genuine
    messages (before any relay) and the server messages it accepted (the attack harness
    and the simulator use it; spec §18.6)."""

    def __init__(self, session_id: bytes, clients: Iterable[int]) -> None:
        self.keepers = {u: ReceiptKeeper(session_id, u) for u in clients}

    def on_reply(self, round: Round, client_id: int, data: bytes) -> None:
        keeper = self.keepers.get(client_id)
        if keeper is not None:
            keeper.sent(int(round), data)

    def on_delivered(self, round: Round, client_id: int, message: ServerMessage,
                     reply: ClientMessage | None) -> None:
        keeper = self.keepers.get(client_id)
        if keeper is not None:
            keeper.received(int(round), message.encode())

    def receipts(self, identities: Mapping[int, SigningKey] | None = None) -> list[Receipt]:
        ids = identities or {}
        return [k.receipt(ids.get(u)) for u, k in sorted(self.keepers.items())]
