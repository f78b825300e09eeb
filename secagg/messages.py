"""Protocol messages: typed, immutable records with one canonical byte encoding.

Spec §7 (wire encoding). Every message starts with ``b"SA"``, the protocol
version (u8) and a type code (u8); fields follow in a fixed order (see
:mod:`secagg.wire`). Lists are sorted strictly by id, so an encoding is unique
and a duplicate or re-ordered entry is a decoding error. :func:`decode`
validates every field and raises :class:`~secagg.errors.MessageDecodeError`
(a :class:`~secagg.errors.ProtocolError`); nothing is ever unpickled or evaluated.

Semantic checks that need session state (is this id a neighbour? does the
ciphertext decrypt?) belong to the state machines in :mod:`secagg.client` and
:mod:`secagg.server`.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from secagg.checks import check_id
from secagg.errors import MessageDecodeError
from secagg.wire import Reader, Writer

MAGIC = b"SA"
VERSION = 1
KEY_LEN = 32
SIGNATURE_LEN = 64
SHARE_LEN = 33
COMMITMENT_LEN = 32
#: SharePayload (74 bytes) + ChaCha20-Poly1305 nonce (12) and tag (16)
CIPHERTEXT_LEN = 4 + 4 + SHARE_LEN + SHARE_LEN + 12 + 16
MAX_ENTRIES = 1_000_000
MAX_REASON_LEN = 256
MAX_VECTOR_BYTES = 1 << 34


class MessageType(enum.IntEnum):
    """Wire type codes of the messages every mode uses (spec §7.3).

    8 and 9, the ConsistencyCheck round of active mode, are in
    :class:`ActiveMessageType`: this enum stays the set of semi-honest messages.
    """

    ADVERTISE_KEYS = 1
    KEY_BROADCAST = 2
    SHARE_KEYS = 3
    CIPHERTEXT_BUNDLE = 4
    MASKED_INPUT = 5
    UNMASK_REQUEST = 6
    UNMASK_RESPONSE = 7
    ABORT = 10


class ActiveMessageType(enum.IntEnum):
    """Wire type codes used only in active mode (spec §15.4)."""

    CONSISTENCY_REQUEST = 8
    CONSISTENCY_SIGNATURE = 9


class ShareKind(enum.IntEnum):
    """Which secret an unmasking share belongs to."""

    SELF_MASK_SEED = 1  # b_v: the client survived, its self mask must be removed
    MASK_KEY = 2  # s_v: the client dropped, its pairwise masks must be removed


_SHARE_KINDS = {int(k): k for k in ShareKind}
assert sorted(_SHARE_KINDS) == list(range(1, len(ShareKind) + 1))  # codes are 1..len


def _known_share_kinds(codes: np.ndarray) -> bool:
    """Whether every code is a ShareKind (a range test: np.isin costs ~20 us a call)."""
    return bool(((codes >= 1) & (codes <= len(ShareKind))).all())


def _check_id(value: int, what: str) -> int:
    return check_id(value, what, error=MessageDecodeError)


def _check_sorted(ids: list[int], what: str) -> None:
    for a, b in itertools.pairwise(ids):
        if b <= a:
            raise MessageDecodeError(f"{what} ids must be strictly increasing (no duplicates)")


# Fixed-size list entries as numpy records (big-endian, unpadded), for _id_records.
_ID_RECORD = np.dtype([("id", ">u4")])
_CIPHERTEXT_RECORD = np.dtype([("id", ">u4"), ("ct", f"V{CIPHERTEXT_LEN}")])
_SHARE_RECORD = np.dtype([("id", ">u4"), ("kind", "u1"), ("share", f"V{SHARE_LEN}")])


def _id_records(r: Reader, n: int, dtype: np.dtype) -> np.ndarray | None:
    """Peek ``n`` fixed-size entries (a big-endian u32 ``id`` first) in one pass.

    Returns them, unconsumed, only when every id is in range and the ids are
    strictly increasing; None otherwise (too few bytes, or a defect). Callers
    then take the field-by-field path, which raises the error for that defect,
    so the fast path changes speed only, never which inputs are accepted or why
    one is refused.
    """
    records = r.peek_records(dtype, n)
    if records is None:
        return None
    ids = records["id"]
    if n and (ids[0] < 1 or not (ids[1:] > ids[:-1]).all()):
        return None  # ids[0] >= 1 and strictly increasing: every id is >= 1
    return records


def _read_id_list(r: Reader, what: str) -> tuple[int, ...]:
    """A u32-counted list of strictly increasing client ids (UnmaskRequest, ConsistencyRequest)."""
    n = r.count(what, MAX_ENTRIES)
    records = _id_records(r, n, _ID_RECORD)
    if records is not None:
        r.skip(records.nbytes, what + " id")
        return tuple(records["id"].tolist())
    ids = [_check_id(r.u32(what + " id"), what + " id") for _ in range(n)]
    _check_sorted(ids, what)
    return tuple(ids)


class Message:
    """Base of all messages: ``encode()`` and the registry used by :func:`decode`."""

    TYPE: ClassVar[MessageType | ActiveMessageType]
    _registry: ClassVar[dict[int, type[Message]]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        Message._registry[int(cls.TYPE)] = cls

    def encode(self) -> bytes:
        w = Writer().raw(MAGIC).u8(VERSION).u8(int(self.TYPE))
        self._write(w)
        return w.getvalue()

    def _write(self, w: Writer) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def _read(cls, r: Reader) -> Message:  # pragma: no cover - abstract
        raise NotImplementedError


def decode(data: bytes) -> Message:
    """Decode and validate one message; any defect raises MessageDecodeError."""
    r = Reader(data)
    if r.fixed(2, "magic") != MAGIC:
        raise MessageDecodeError("not a secagg message (bad magic)")
    version = r.u8("version")
    if version != VERSION:
        raise MessageDecodeError(f"unsupported message version {version}")
    code = r.u8("type")
    cls = Message._registry.get(code)
    if cls is None:
        raise MessageDecodeError(f"unknown message type {code}")
    if code in _ACTIVE_CODES:
        # Errors name the type: a peer built before active mode existed reports
        # these codes as unknown types, and an operator reading either log must be
        # able to tell a version mismatch from a malformed ConsistencyCheck body.
        try:
            msg = cls._read(r)
            r.finish()
        except MessageDecodeError as exc:
            raise MessageDecodeError(f"malformed message of type {code} "
                                     f"({cls.__name__}): {exc}") from None
        return msg
    msg = cls._read(r)
    r.finish()
    return msg


# --- round 0: AdvertiseKeys ----------------------------------------------------------------
@dataclass(frozen=True)
class AdvertiseKeys(Message):
    """Client -> server: two fresh X25519 public keys (c_u for shares, s_u for masks)."""

    TYPE: ClassVar[MessageType] = MessageType.ADVERTISE_KEYS
    sender: int
    enc_pk: bytes
    mask_pk: bytes
    signature: bytes = b""

    def _write(self, w: Writer) -> None:
        w.u32(self.sender).fixed(self.enc_pk, KEY_LEN).fixed(self.mask_pk, KEY_LEN)
        w.var(self.signature)

    @classmethod
    def _read(cls, r: Reader) -> AdvertiseKeys:
        sender = _check_id(r.u32("sender"), "sender")
        enc_pk = r.fixed(KEY_LEN, "enc_pk")
        mask_pk = r.fixed(KEY_LEN, "mask_pk")
        sig = r.var("signature", SIGNATURE_LEN)
        if len(sig) not in (0, SIGNATURE_LEN):
            raise MessageDecodeError("signature must be empty or 64 bytes")
        return cls(sender, enc_pk, mask_pk, sig)


@dataclass(frozen=True)
class KeyEntry:
    """One client's advertised keys as relayed by the server."""

    client_id: int
    enc_pk: bytes
    mask_pk: bytes
    signature: bytes = b""


@dataclass(frozen=True)
class KeyBroadcast(Message):
    """Server -> client: the keys of the client's neighbourhood (U1 ∩ N(u)), incl. its own."""

    TYPE: ClassVar[MessageType] = MessageType.KEY_BROADCAST
    entries: tuple[KeyEntry, ...]

    def _write(self, w: Writer) -> None:
        w.u32(len(self.entries))
        for e in self.entries:
            w.u32(e.client_id).fixed(e.enc_pk, KEY_LEN).fixed(e.mask_pk, KEY_LEN)
            w.var(e.signature)

    @classmethod
    def _read(cls, r: Reader) -> KeyBroadcast:
        n = r.count("key entries", MAX_ENTRIES)
        entries = []
        for _ in range(n):
            cid = _check_id(r.u32("client id"), "client id")
            enc_pk = r.fixed(KEY_LEN, "enc_pk")
            mask_pk = r.fixed(KEY_LEN, "mask_pk")
            sig = r.var("signature", SIGNATURE_LEN)
            if len(sig) not in (0, SIGNATURE_LEN):
                raise MessageDecodeError("signature must be empty or 64 bytes")
            entries.append(KeyEntry(cid, enc_pk, mask_pk, sig))
        _check_sorted([e.client_id for e in entries], "key entry")
        return cls(tuple(entries))


# --- round 1: ShareKeys --------------------------------------------------------------------
@dataclass(frozen=True)
class ShareKeys(Message):
    """Client -> server: one ciphertext of (u, v, s-share, b-share) per neighbour v."""

    TYPE: ClassVar[MessageType] = MessageType.SHARE_KEYS
    sender: int
    ciphertexts: tuple[tuple[int, bytes], ...]  # (receiver, ciphertext), sorted by receiver
    self_mask_commitment: bytes  # SHA-256 commitment to b_u (see secagg.masking)

    def _write(self, w: Writer) -> None:
        w.u32(self.sender).fixed(self.self_mask_commitment, COMMITMENT_LEN)
        w.u32(len(self.ciphertexts))
        for receiver, ct in self.ciphertexts:
            w.u32(receiver).fixed(ct, CIPHERTEXT_LEN)

    @classmethod
    def _read(cls, r: Reader) -> ShareKeys:
        sender = _check_id(r.u32("sender"), "sender")
        commitment = r.fixed(COMMITMENT_LEN, "self-mask commitment")
        n = r.count("ciphertexts", MAX_ENTRIES)
        records = _id_records(r, n, _CIPHERTEXT_RECORD)
        if records is not None:
            r.skip(records.nbytes, "ciphertexts")
            return cls(sender, tuple(zip(records["id"].tolist(), records["ct"].tolist(),
                                         strict=True)), commitment)
        items = []
        for _ in range(n):
            receiver = _check_id(r.u32("receiver"), "receiver")
            items.append((receiver, r.fixed(CIPHERTEXT_LEN, "ciphertext")))
        _check_sorted([rid for rid, _ in items], "receiver")
        return cls(sender, tuple(items), commitment)


@dataclass(frozen=True)
class CiphertextBundle(Message):
    """Server -> client: the ciphertexts addressed to this client; their senders form U2 ∩ N(u)."""

    TYPE: ClassVar[MessageType] = MessageType.CIPHERTEXT_BUNDLE
    ciphertexts: tuple[tuple[int, bytes], ...]  # (sender, ciphertext), sorted by sender

    def _write(self, w: Writer) -> None:
        w.u32(len(self.ciphertexts))
        for sender, ct in self.ciphertexts:
            w.u32(sender).fixed(ct, CIPHERTEXT_LEN)

    @classmethod
    def _read(cls, r: Reader) -> CiphertextBundle:
        n = r.count("ciphertexts", MAX_ENTRIES)
        records = _id_records(r, n, _CIPHERTEXT_RECORD)
        if records is not None:
            r.skip(records.nbytes, "ciphertexts")
            return cls(tuple(zip(records["id"].tolist(), records["ct"].tolist(), strict=True)))
        items = []
        for _ in range(n):
            sender = _check_id(r.u32("sender"), "sender")
            items.append((sender, r.fixed(CIPHERTEXT_LEN, "ciphertext")))
        _check_sorted([sid for sid, _ in items], "sender")
        return cls(tuple(items))


# --- round 2: MaskedInputCollection -------------------------------------------------------
@dataclass(frozen=True)
class MaskedInput(Message):
    """Client -> server: y_u bit-packed at ceil(log2 R) bits per element."""

    TYPE: ClassVar[MessageType] = MessageType.MASKED_INPUT
    sender: int
    bits: int
    count: int
    #: decoded, a read-only view of the received message (no copy of the vector)
    packed: bytes | memoryview

    def __reduce__(self) -> tuple[type[MaskedInput], tuple[int, int, int, bytes]]:
        # a decoded vector is a memoryview, which does not pickle: copy it only here
        return (type(self), (self.sender, self.bits, self.count, bytes(self.packed)))

    def _write(self, w: Writer) -> None:
        w.u32(self.sender).u8(self.bits).u32(self.count).u64(len(self.packed)).raw(self.packed)

    @classmethod
    def _read(cls, r: Reader) -> MaskedInput:
        sender = _check_id(r.u32("sender"), "sender")
        bits = r.u8("bits")
        if not 1 <= bits <= 64:
            raise MessageDecodeError("bits must be in [1, 64]")
        count = r.u32("count")
        length = r.u64("packed length")
        if length != (count * bits + 7) // 8 or length > MAX_VECTOR_BYTES:
            raise MessageDecodeError("packed length does not match count and bits")
        return cls(sender, bits, count, r.view(length, "packed vector"))


# --- round 4: Unmasking --------------------------------------------------------------------
@dataclass(frozen=True)
class UnmaskRequest(Message):
    """Server -> client: which neighbours survived (want b-shares) and which dropped (s-shares)."""

    TYPE: ClassVar[MessageType] = MessageType.UNMASK_REQUEST
    alive: tuple[int, ...]
    dropped: tuple[int, ...]

    def _write(self, w: Writer) -> None:
        for ids in (self.alive, self.dropped):
            w.u32(len(ids))
            for cid in ids:
                w.u32(cid)

    @classmethod
    def _read(cls, r: Reader) -> UnmaskRequest:
        lists = []
        for what in ("alive", "dropped"):
            lists.append(_read_id_list(r, what))
        return cls(lists[0], lists[1])


@dataclass(frozen=True, repr=False)
class UnmaskResponse(Message):
    """Client -> server: one share per requested neighbour, of the kind the request implies."""

    TYPE: ClassVar[MessageType] = MessageType.UNMASK_RESPONSE
    sender: int
    shares: tuple[tuple[int, ShareKind, bytes], ...]  # (owner, kind, share), sorted by owner

    def __repr__(self) -> str:
        # Shares are secret material: a logged or printed response names owners and kinds only.
        owners = ", ".join(f"{owner}:{kind.name}" for owner, kind, _ in self.shares)
        return f"UnmaskResponse(sender={self.sender}, shares=[{owners}] <values hidden>)"

    def _write(self, w: Writer) -> None:
        w.u32(self.sender).u32(len(self.shares))
        for owner, kind, share in self.shares:
            w.u32(owner).u8(int(kind)).fixed(share, SHARE_LEN)

    @classmethod
    def _read(cls, r: Reader) -> UnmaskResponse:
        sender = _check_id(r.u32("sender"), "sender")
        n = r.count("shares", MAX_ENTRIES)
        records = _id_records(r, n, _SHARE_RECORD)
        if records is not None and _known_share_kinds(records["kind"]):
            r.skip(records.nbytes, "shares")
            kinds = [_SHARE_KINDS[k] for k in records["kind"].tolist()]
            return cls(sender, tuple(zip(records["id"].tolist(), kinds, records["share"].tolist(),
                                         strict=True)))
        items = []
        for _ in range(n):
            owner = _check_id(r.u32("share owner"), "share owner")
            try:
                kind = ShareKind(r.u8("share kind"))
            except ValueError:
                raise MessageDecodeError("unknown share kind") from None
            items.append((owner, kind, r.fixed(SHARE_LEN, "share")))
        _check_sorted([o for o, _, _ in items], "share owner")
        return cls(sender, tuple(items))


# --- round 3 (active mode): ConsistencyCheck ----------------------------------------------
@dataclass(frozen=True)
class ConsistencyRequest(Message):
    """Server -> client, active mode only: a survivor view, and the signatures on it.

    Sent twice (spec §15.6, §15.7). At the end of round 2 with no signatures:
    "sign this view" (``alive`` = u's surviving neighbours and u, ``dropped`` = its
    neighbours that shared keys but sent no masked input; exactly the lists an
    UnmaskRequest would carry). At the end of round 3 with at least t signatures:
    "these neighbours signed views that agree with yours; now unmask". The second
    one replaces the UnmaskRequest of semi-honest mode; its lists cover u's own
    neighbourhood and those of the signers (so u can rebuild each signed
    statement), and must agree with the view u signed.
    """

    TYPE: ClassVar[ActiveMessageType] = ActiveMessageType.CONSISTENCY_REQUEST
    alive: tuple[int, ...]
    dropped: tuple[int, ...]
    signatures: tuple[tuple[int, bytes], ...] = ()  # (signer, signature), sorted by signer

    def _write(self, w: Writer) -> None:
        for ids in (self.alive, self.dropped):
            w.u32(len(ids))
            for cid in ids:
                w.u32(cid)
        w.u32(len(self.signatures))
        for signer, sig in self.signatures:
            w.u32(signer).fixed(sig, SIGNATURE_LEN)

    @classmethod
    def _read(cls, r: Reader) -> ConsistencyRequest:
        lists = []
        for what in ("alive", "dropped"):
            lists.append(_read_id_list(r, what))
        n = r.count("signatures", MAX_ENTRIES)
        sigs = []
        for _ in range(n):
            signer = _check_id(r.u32("signer"), "signer")
            sigs.append((signer, r.fixed(SIGNATURE_LEN, "signature")))
        _check_sorted([s for s, _ in sigs], "signer")
        return cls(lists[0], lists[1], tuple(sigs))


@dataclass(frozen=True)
class ConsistencySignature(Message):
    """Client -> server, active mode only: u's Ed25519 signature on the view it was shown."""

    TYPE: ClassVar[ActiveMessageType] = ActiveMessageType.CONSISTENCY_SIGNATURE
    sender: int
    signature: bytes

    def _write(self, w: Writer) -> None:
        w.u32(self.sender).fixed(self.signature, SIGNATURE_LEN)

    @classmethod
    def _read(cls, r: Reader) -> ConsistencySignature:
        sender = _check_id(r.u32("sender"), "sender")
        return cls(sender, r.fixed(SIGNATURE_LEN, "signature"))


# --- any round ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Abort(Message):
    """Server -> client: the session ended without a result; ``reason`` is printable ASCII."""

    TYPE: ClassVar[MessageType] = MessageType.ABORT
    reason: str

    def __post_init__(self) -> None:
        clean = "".join(c if " " <= c <= "~" else "?" for c in str(self.reason))
        object.__setattr__(self, "reason", clean[:MAX_REASON_LEN])

    def _write(self, w: Writer) -> None:
        w.var(self.reason.encode("ascii"))

    @classmethod
    def _read(cls, r: Reader) -> Abort:
        raw = r.var("reason", MAX_REASON_LEN)
        if not all(32 <= b < 127 for b in raw):
            raise MessageDecodeError("abort reason must be printable ASCII")
        return cls(raw.decode("ascii"))


_ACTIVE_CODES = frozenset(int(c) for c in ActiveMessageType)

ClientMessage = AdvertiseKeys | ShareKeys | MaskedInput | ConsistencySignature | UnmaskResponse
ServerMessage = KeyBroadcast | CiphertextBundle | ConsistencyRequest | UnmaskRequest | Abort
