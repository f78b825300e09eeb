"""Malformed input, one named class per row: each is refused by whichever side receives it.

Every row takes a real session (ServerProtocol and ClientProtocols with
deterministic entropy) to the point where the message would arrive, builds the
malformed bytes from the genuine ones, and delivers them the way a transport
does: ``decode`` then ``receive`` (server) or ``handle`` (client). The row
passes when

* the error is exactly the row's typed error (a SecAggError subclass; nothing
  untyped escapes),
* the receiver's whole state is unchanged (every attribute, compared by value:
  state, expected(), released shares, keys, accumulator, entropy position), and
* the session then completes with the exact sum when the genuine messages are
  delivered, which shows the refusal really changed nothing.

Rows marked ``aborts`` are messages no receiver can detect on arrival (the
server cannot open a commitment); the session must then abort cleanly (no
result, accumulator dropped) instead of producing a wrong sum. The config rows
are the bytes a client receives before it exists: ``SessionConfig.decode``
refuses them. Nothing here prints.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pytest

from secagg import messages as msgs
from secagg.client import ClientProtocol, ClientState
from secagg.config import SessionConfig
from secagg.crypto.agreement import X25519PrivateKey
from secagg.crypto.entropy import DeterministicEntropy, SystemEntropy
from secagg.crypto.shamir import PRIME
from secagg.crypto.signatures import SigningKey
from secagg.errors import ConfigError, MessageDecodeError, ProtocolError, SecAggError
from secagg.identity import MemoryTrustStore, TrustStore
from secagg.server import ServerProtocol, ServerState
from tests.conftest import plaintext_sum, random_inputs, sums_equal

N = 8
ME = 3  # the client that receives the malformed server messages
HOLD = 5  # the client whose genuine reply is held back while the server is probed
DROP = 7  # drops at MaskedInput in every run, so unmask lists and shares cover both kinds
DIM = 9
MODULUS = 1_000_003  # not a power of two: 20 bits per element, 4 padding bits for m = 9
TASK = bytes(range(32))
P25519 = (1 << 255) - 19
ORDER_8 = bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")

SEMI = SessionConfig.create(range(1, N + 1), DIM, MODULUS, min_cohort=5)  # t = 5
ACTIVE = SessionConfig.create(range(1, N + 1), DIM, MODULUS, min_cohort=5, mode="active",
                              task_hash=TASK)  # t = 6
IDENTITIES = {u: SigningKey.generate(DeterministicEntropy(b"identity %d" % u))
              for u in range(1, N + 1)}
TRUST = MemoryTrustStore({u: k.verify_key for u, k in IDENTITIES.items()})


# --- state fingerprints ------------------------------------------------------------------------
def _freeze(value: object) -> object:
    """A comparable, deep snapshot of one attribute value."""
    if isinstance(value, dict):
        return ("dict", tuple((_freeze(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, set | frozenset):
        return ("set", tuple(sorted((_freeze(v) for v in value), key=repr)))
    if isinstance(value, list | tuple):
        return ("seq", tuple(_freeze(v) for v in value))
    if isinstance(value, np.ndarray):
        return ("ndarray", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, X25519PrivateKey):
        return ("x25519", value.secret_bytes())
    if isinstance(value, DeterministicEntropy):
        return ("entropy", vars(value)["_counter"])  # how many draws so far
    if isinstance(value, SessionConfig | SigningKey | SystemEntropy | TrustStore):
        return ("object", id(value))  # shared, immutable collaborators
    return value


def fingerprint(obj: ClientProtocol | ServerProtocol) -> object:
    """Every attribute of a state machine, by value (new attributes are covered too)."""
    extra: tuple[object, ...] = ()
    if isinstance(obj, ServerProtocol):
        extra = (obj.expected(), obj.accumulator_count)
    else:
        extra = (obj.released,)
    return (_freeze(vars(obj)), extra)


# --- a session stopped where a message arrives ------------------------------------------------
def _rounds(active: bool) -> tuple[str, ...]:
    if active:
        return ("keys", "shares", "masked", "consistency", "unmask")
    return ("keys", "shares", "masked", "unmask")


class Run:
    """A real session with deterministic keys, stopped at round ``stage``.

    At that point the server has received every reply of the round except HOLD's
    (``held``) and ME's; ME has not yet read its server message (``to_me``).
    ``sent[r]`` / ``replies[r]`` keep every genuine message of the rounds so far.
    DROP never reads its CiphertextBundle (it drops at MaskedInput).
    """

    def __init__(self, stage: str, *, active: bool = False, seed: int = 11) -> None:
        self.config = ACTIVE if active else SEMI
        self.active = active
        self.order = _rounds(active)
        self.stage = stage
        self.inputs = random_inputs(self.config, seed)
        options: dict[int, dict[str, object]] = {u: {} for u in self.config.cohort}
        if active:
            for u in options:
                options[u] = {"identity": IDENTITIES[u], "trust_store": TRUST,
                              "expected_task_hash": TASK, "min_cohort": 5}
        self.server = ServerProtocol(self.config, threads=1,
                                     trust_store=TRUST if active else None)
        self.clients = {
            u: ClientProtocol(self.config, u, self.inputs[u],
                              entropy=DeterministicEntropy(b"client %d seed %d" % (u, seed)),
                              **options[u])  # type: ignore[arg-type]
            for u in self.config.cohort
        }
        self.sent: dict[str, dict[int, msgs.Message]] = {}
        self.replies: dict[str, dict[int, msgs.Message]] = {}
        self.gone: set[int] = set()
        self.to_me: msgs.Message | None = None
        self.held: msgs.Message | None = None
        self._advance()

    def _answer(self, rnd: str, out: dict[int, msgs.Message],
                skip: set[int]) -> dict[int, msgs.Message]:
        if rnd == "masked":
            self.gone.add(DROP)
        replies = {}
        for u, msg in sorted(out.items()):
            if u in skip or u in self.gone:
                continue
            reply = self.clients[u].handle(msgs.decode(msg.encode()))  # type: ignore[arg-type]
            if reply is not None:
                replies[u] = reply
        return replies

    def _deliver(self, replies: dict[int, msgs.Message]) -> None:
        for _, msg in sorted(replies.items()):
            self.server.receive(msgs.decode(msg.encode()))  # type: ignore[arg-type]

    def _advance(self) -> None:
        replies: dict[int, msgs.Message] = {u: c.start() for u, c in sorted(self.clients.items())}
        for rnd in self.order:
            if rnd != "keys":
                out = self.server.close_round()
                assert self.server.state not in (ServerState.DONE, ServerState.ABORTED)
                self.sent[rnd] = out  # type: ignore[assignment]
                replies = self._answer(rnd, out, {ME} if rnd == self.stage else set())  # type: ignore[arg-type]
            self.replies[rnd] = dict(replies)
            if rnd == self.stage:
                self.to_me = self.sent[rnd][ME] if rnd != "keys" else None
                self.held = replies.pop(HOLD)
                self._deliver(replies)
                return
            self._deliver(replies)
        raise AssertionError(f"unknown stage {self.stage}")

    # genuine messages, encoded
    def reply(self, u: int, rnd: str | None = None) -> bytes:
        return self.replies[rnd or self.stage][u].encode()

    def held_bytes(self) -> bytes:
        assert self.held is not None
        return self.held.encode()

    def to_me_bytes(self) -> bytes:
        assert self.to_me is not None
        return self.to_me.encode()

    def finish(self) -> None:
        """Deliver the genuine messages held back, run every later round, check the sum."""
        replies: dict[int, msgs.Message] = {}
        if self.held is not None:
            replies[HOLD] = self.held
        if self.to_me is not None:
            reply = self.clients[ME].handle(msgs.decode(self.to_me.encode()))  # type: ignore[arg-type]
            assert reply is not None
            replies[ME] = reply
        self._deliver(replies)
        for rnd in self.order[self.order.index(self.stage) + 1:]:
            self._deliver(self._answer(rnd, self.server.close_round(), set()))  # type: ignore[arg-type]
        assert self.server.close_round() == {}
        assert self.server.state is ServerState.DONE, self.server.abort_reason
        result = self.server.result
        assert result is not None
        assert result.included == tuple(u for u in self.config.cohort if u != DROP)
        expected = plaintext_sum(self.inputs, result.included, MODULUS, DIM)
        assert sums_equal(result.sum, expected)
        for client in self.clients.values():
            released = client.released
            assert all(kind is msgs.ShareKind.MASK_KEY for v, kind in released.items() if v == DROP)
            assert all(kind is msgs.ShareKind.SELF_MASK_SEED
                       for v, kind in released.items() if v != DROP)

    def finish_expecting_abort(self) -> None:
        """Run every later round after an undetectable bad message: the session must abort."""
        if self.to_me is not None:
            reply = self.clients[ME].handle(msgs.decode(self.to_me_bytes()))  # type: ignore[arg-type]
            assert reply is not None
            self._deliver({ME: reply})
        for rnd in self.order[self.order.index(self.stage) + 1:]:
            self._deliver(self._answer(rnd, self.server.close_round(), set()))  # type: ignore[arg-type]
            if self.server.state is ServerState.ABORTED:
                break
        else:
            self.server.close_round()
        assert self.server.state is ServerState.ABORTED
        assert self.server.result is None and self.server.accumulator_count == 0
        assert self.server.abort_reason


# --- byte surgery ------------------------------------------------------------------------------
H = 4  # frame header: magic (2), version (1), type (1)


def patch(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value):]


def u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


def flip(data: bytes, offset: int) -> bytes:
    return patch(data, offset, bytes([data[offset] ^ 0x01]))


def frame(type_code: int, body: bytes) -> bytes:
    return b"SA\x01" + bytes([type_code]) + body


# message-level edits (the encoder writes what it is given; only decode validates)
_M = TypeVar("_M", bound=msgs.Message)


def _to_me(run: Run, kind: type[_M]) -> _M:
    """The server message the run holds for client ME, checked to be a ``kind``."""
    msg = run.to_me
    assert isinstance(msg, kind)
    return msg


def kb_of(run: Run) -> msgs.KeyBroadcast:
    return _to_me(run, msgs.KeyBroadcast)


def bundle_of(run: Run) -> msgs.CiphertextBundle:
    return _to_me(run, msgs.CiphertextBundle)


def request_of(run: Run) -> msgs.UnmaskRequest:
    return _to_me(run, msgs.UnmaskRequest)


def view_of(run: Run) -> msgs.ConsistencyRequest:
    return _to_me(run, msgs.ConsistencyRequest)


def held_msg(run: Run) -> msgs.Message:
    assert run.held is not None
    return run.held


def replace(msg: msgs.Message, **changes: object) -> bytes:
    return dataclasses.replace(msg, **changes).encode()  # type: ignore[type-var]


def masked_body(run: Run, *, sender: int = HOLD, bits: int = 20, count: int = DIM,
                packed: bytes | None = None, length: int | None = None) -> bytes:
    """A MaskedInput frame with free header fields (the declared length may lie)."""
    held = held_msg(run)
    assert isinstance(held, msgs.MaskedInput)
    data = held.packed if packed is None else packed
    n = len(data) if length is None else length
    return frame(5, u32(sender) + bytes([bits]) + u32(count) + n.to_bytes(8, "big") + data)


def pack20(values: list[int]) -> bytes:
    """Independent 20-bit LSB-first packer (spec §10.5), so the table does not trust pack()."""
    acc = sum(v << (20 * i) for i, v in enumerate(values))
    return acc.to_bytes((20 * len(values) + 7) // 8, "little")


def share_keys_without(run: Run, receiver: int) -> bytes:
    held = held_msg(run)
    assert isinstance(held, msgs.ShareKeys)
    return replace(held, ciphertexts=tuple(c for c in held.ciphertexts if c[0] != receiver))


def response_edit(run: Run,
                  edit: Callable[[list[tuple[int, msgs.ShareKind, bytes]]], None]) -> bytes:
    held = held_msg(run)
    assert isinstance(held, msgs.UnmaskResponse)
    shares = list(held.shares)
    edit(shares)
    return replace(held, shares=tuple(shares))


def swap_kind(shares: list[tuple[int, msgs.ShareKind, bytes]]) -> None:
    owner, kind, share = shares[0]
    kinds = msgs.ShareKind
    other = kinds.MASK_KEY if kind is kinds.SELF_MASK_SEED else kinds.SELF_MASK_SEED
    shares[0] = (owner, other, share)


def out_of_field(shares: list[tuple[int, msgs.ShareKind, bytes]]) -> None:
    owner, kind, _ = shares[0]
    shares[0] = (owner, kind, PRIME.to_bytes(33, "big"))


def config_bytes(cfg: SessionConfig = SEMI) -> bytes:
    return cfg.encode()


def _config_threshold_offset(data: bytes, n: int) -> int:
    return len(data) - 24 - 4 * n  # threshold, degree, min_cohort, 2 ppm, count, then ids


def forged_signature(statement_owner: int) -> bytes:
    """A well-formed signature by a key that is not ``statement_owner``'s identity."""
    return SigningKey(bytes(32)).sign(b"not the statement of %d" % statement_owner)


# --- the table ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One malformed-message class: where it arrives, how it is built, what must happen."""

    name: str
    stage: str  # round at which it arrives ("config": the bytes of a SessionConfig)
    to: str  # "server", "client" (ME) or "config"
    build: Callable[[Run], bytes]
    error: type[SecAggError] = ProtocolError
    active: bool = False
    aborts: bool = False  # accepted on arrival; the session must then abort cleanly


CASES: list[Case] = [
    # ---- frame (any message; here an AdvertiseKeys at the server) ----
    Case("frame-empty", "keys", "server", lambda r: b"", MessageDecodeError),
    Case("frame-wrong-magic", "keys", "server", lambda r: patch(r.held_bytes(), 0, b"XA"),
         MessageDecodeError),
    Case("frame-wrong-version", "keys", "server", lambda r: patch(r.held_bytes(), 2, b"\x02"),
         MessageDecodeError),
    Case("frame-unknown-type-0", "keys", "server", lambda r: patch(r.held_bytes(), 3, b"\x00"),
         MessageDecodeError),
    Case("frame-unknown-type-11", "keys", "server", lambda r: patch(r.held_bytes(), 3, b"\x0b"),
         MessageDecodeError),
    Case("frame-truncated", "keys", "server", lambda r: r.held_bytes()[:-1], MessageDecodeError),
    Case("frame-extra-bytes", "keys", "server", lambda r: r.held_bytes() + b"\x00",
         MessageDecodeError),
    Case("frame-header-only", "keys", "server", lambda r: r.held_bytes()[:H],
         MessageDecodeError),
    # ---- AdvertiseKeys -> server ----
    Case("advertise-sender-zero", "keys", "server", lambda r: patch(r.held_bytes(), H, u32(0)),
         MessageDecodeError),
    Case("advertise-sender-out-of-cohort", "keys", "server",
         lambda r: patch(r.held_bytes(), H, u32(N + 1))),
    Case("advertise-replayed", "keys", "server", lambda r: r.reply(ME)),
    Case("advertise-signature-length-32", "keys", "server",
         lambda r: patch(r.held_bytes(), H + 68, u32(32)) + bytes(32), MessageDecodeError),
    Case("advertise-signature-length-oversized", "keys", "server",
         lambda r: patch(r.held_bytes(), H + 68, u32(2**32 - 1)), MessageDecodeError),
    Case("advertise-signature-in-semi-honest", "keys", "server",
         lambda r: replace(held_msg(r), signature=bytes(64))),
    Case("advertise-one-key-twice", "keys", "server",
         lambda r: patch(r.held_bytes(), H + 36, r.held_bytes()[H + 4:H + 36])),
    Case("advertise-low-order-key", "keys", "server",
         lambda r: patch(r.held_bytes(), H + 36, ORDER_8)),
    Case("advertise-key-not-reduced", "keys", "server",
         lambda r: patch(r.held_bytes(), H + 4, (P25519 + 3).to_bytes(32, "little"))),
    Case("advertise-key-high-bit", "keys", "server",
         lambda r: patch(r.held_bytes(), H + 35, bytes([r.held_bytes()[H + 35] | 0x80]))),
    Case("advertise-key-of-another-client", "keys", "server",
         lambda r: patch(r.held_bytes(), H + 4, r.reply(ME)[H + 4:H + 36])),
    Case("server-wrong-type-for-state", "keys", "server",
         lambda r: frame(5, u32(HOLD) + bytes([20]) + u32(DIM) + (23).to_bytes(8, "big")
                         + bytes(23))),
    Case("server-receives-server-message", "keys", "server",
         lambda r: msgs.KeyBroadcast(()).encode()),
    # ---- KeyBroadcast -> client ----
    Case("key-broadcast-entries-unsorted", "shares", "client",
         lambda r: replace(kb_of(r), entries=tuple(reversed(kb_of(r).entries))),
         MessageDecodeError),
    Case("key-broadcast-duplicate-entry", "shares", "client",
         lambda r: replace(kb_of(r), entries=(kb_of(r).entries[0], *kb_of(r).entries)),
         MessageDecodeError),
    Case("key-broadcast-count-oversized", "shares", "client",
         lambda r: patch(r.to_me_bytes(), H, u32(1_000_001)), MessageDecodeError),
    Case("key-broadcast-count-exceeds-body", "shares", "client",
         lambda r: patch(r.to_me_bytes(), H, u32(N + 1)), MessageDecodeError),
    Case("key-broadcast-count-short-of-body", "shares", "client",
         lambda r: patch(r.to_me_bytes(), H, u32(N - 1)), MessageDecodeError),
    Case("key-broadcast-client-id-zero", "shares", "client",
         lambda r: patch(r.to_me_bytes(), H + 4, u32(0)), MessageDecodeError),
    Case("key-broadcast-signature-length-63", "shares", "client",
         lambda r: replace(kb_of(r), entries=(dataclasses.replace(
             kb_of(r).entries[0], signature=bytes(63)), *kb_of(r).entries[1:])),
         MessageDecodeError),
    Case("key-broadcast-missing-own-entry", "shares", "client",
         lambda r: replace(kb_of(r), entries=tuple(e for e in kb_of(r).entries
                                                   if e.client_id != ME))),
    Case("key-broadcast-own-keys-substituted", "shares", "client",
         lambda r: replace(kb_of(r), entries=tuple(
             dataclasses.replace(e, enc_pk=e.mask_pk, mask_pk=e.enc_pk) if e.client_id == ME
             else e for e in kb_of(r).entries))),
    Case("key-broadcast-id-out-of-cohort", "shares", "client",
         lambda r: replace(kb_of(r), entries=(*kb_of(r).entries[:-1], dataclasses.replace(
             kb_of(r).entries[-1], client_id=N + 90)))),
    Case("key-broadcast-too-few-peers", "shares", "client",
         lambda r: replace(kb_of(r), entries=tuple(
             e for e in kb_of(r).entries if e.client_id <= SEMI.threshold))),
    Case("key-broadcast-low-order-peer-key", "shares", "client",
         lambda r: replace(kb_of(r), entries=(dataclasses.replace(
             kb_of(r).entries[0], mask_pk=ORDER_8), *kb_of(r).entries[1:]))),
    Case("key-broadcast-peer-reuses-own-key", "shares", "client",
         lambda r: replace(kb_of(r), entries=(dataclasses.replace(
             kb_of(r).entries[0], enc_pk=kb_of(r).entries[ME - 1].enc_pk),
             *kb_of(r).entries[1:]))),
    Case("client-wrong-type-for-state", "shares", "client",
         lambda r: msgs.UnmaskRequest(tuple(range(1, N + 1)), ()).encode()),
    Case("client-receives-client-message", "shares", "client", lambda r: r.reply(ME, "keys")),
    # ---- ShareKeys -> server ----
    Case("share-keys-missing-receiver", "shares", "server",
         lambda r: share_keys_without(r, 1)),
    Case("share-keys-extra-receiver", "shares", "server",
         lambda r: replace(held_msg(r), ciphertexts=(
             *held_msg(r).ciphertexts, (N + 90, held_msg(r).ciphertexts[0][1])))),  # type: ignore[attr-defined]
    Case("share-keys-receivers-unsorted", "shares", "server",
         lambda r: replace(held_msg(r), ciphertexts=tuple(
             reversed(held_msg(r).ciphertexts))), MessageDecodeError),  # type: ignore[attr-defined]
    Case("share-keys-duplicate-receiver", "shares", "server",
         lambda r: replace(held_msg(r), ciphertexts=(
             held_msg(r).ciphertexts[0], *held_msg(r).ciphertexts)),  # type: ignore[attr-defined]
         MessageDecodeError),
    Case("share-keys-ciphertext-one-byte-short", "shares", "server",
         lambda r: r.held_bytes()[:H + 44 + 50] + r.held_bytes()[H + 44 + 51:],
         MessageDecodeError),
    Case("share-keys-count-oversized", "shares", "server",
         lambda r: patch(r.held_bytes(), H + 36, u32(2**32 - 1)), MessageDecodeError),
    Case("share-keys-sender-unknown", "shares", "server",
         lambda r: patch(r.held_bytes(), H, u32(N + 90))),
    Case("share-keys-replayed", "shares", "server", lambda r: r.reply(1)),
    # ---- CiphertextBundle -> client ----
    Case("bundle-ciphertext-bit-flipped", "masked", "client",
         lambda r: flip(r.to_me_bytes(), H + 4 + 4 + 50)),
    Case("bundle-nonce-not-zero", "masked", "client",
         lambda r: patch(r.to_me_bytes(), H + 4 + 4 + 11, b"\x01")),
    Case("bundle-sender-unknown", "masked", "client",
         lambda r: replace(bundle_of(r), ciphertexts=(
             *bundle_of(r).ciphertexts, (N + 90, bundle_of(r).ciphertexts[0][1])))),
    Case("bundle-ciphertexts-swapped", "masked", "client",
         lambda r: replace(bundle_of(r), ciphertexts=(
             (bundle_of(r).ciphertexts[0][0], bundle_of(r).ciphertexts[1][1]),
             (bundle_of(r).ciphertexts[1][0], bundle_of(r).ciphertexts[0][1]),
             *bundle_of(r).ciphertexts[2:]))),
    Case("bundle-own-ciphertext-reflected", "masked", "client",
         lambda r: replace(bundle_of(r), ciphertexts=tuple(
             (s, dict(r.replies["shares"][ME].ciphertexts)[s])  # type: ignore[attr-defined]
             for s, _ in bundle_of(r).ciphertexts))),
    Case("bundle-too-few-ciphertexts", "masked", "client",
         lambda r: replace(bundle_of(r),
                           ciphertexts=bundle_of(r).ciphertexts[:SEMI.threshold - 1])),
    Case("bundle-senders-unsorted", "masked", "client",
         lambda r: replace(bundle_of(r), ciphertexts=tuple(reversed(bundle_of(r).ciphertexts))),
         MessageDecodeError),
    Case("bundle-truncated-ciphertext", "masked", "client",
         lambda r: r.to_me_bytes()[:-1], MessageDecodeError),
    # ---- MaskedInput -> server ----
    Case("masked-bits-zero", "masked", "server", lambda r: masked_body(r, bits=0, length=0,
                                                                       packed=b""),
         MessageDecodeError),
    Case("masked-bits-over-64", "masked", "server",
         lambda r: masked_body(r, bits=65, packed=bytes((65 * DIM + 7) // 8)),
         MessageDecodeError),
    Case("masked-length-not-count-times-bits", "masked", "server",
         lambda r: masked_body(r, packed=held_msg(r).packed + b"\x00"),  # type: ignore[attr-defined]
         MessageDecodeError),
    Case("masked-declared-length-huge", "masked", "server",
         lambda r: masked_body(r, length=2**40), MessageDecodeError),
    Case("masked-bits-wrong-for-modulus", "masked", "server",
         lambda r: masked_body(r, bits=21, packed=bytes((21 * DIM + 7) // 8))),
    Case("masked-count-wrong-for-dim", "masked", "server",
         lambda r: masked_body(r, count=DIM - 1, packed=pack20([1] * (DIM - 1)))),
    Case("masked-padding-bits-set", "masked", "server",
         lambda r: masked_body(r, packed=patch(held_msg(r).packed, 22, bytes(  # type: ignore[attr-defined]
             [held_msg(r).packed[22] | 0x80]))), MessageDecodeError),  # type: ignore[attr-defined]
    Case("masked-element-not-below-R", "masked", "server",
         lambda r: masked_body(r, packed=pack20([MODULUS] + [0] * (DIM - 1)))),
    Case("masked-element-max-20-bits", "masked", "server",
         lambda r: masked_body(r, packed=pack20([0] * (DIM - 1) + [2**20 - 1]))),
    Case("masked-sender-not-in-u2", "masked", "server",
         lambda r: masked_body(r, sender=N + 90)),
    Case("masked-replayed", "masked", "server", lambda r: r.reply(1)),
    # ---- UnmaskRequest -> client ----
    Case("unmask-request-alive-and-dropped-overlap", "unmask", "client",
         lambda r: replace(request_of(r), dropped=tuple(sorted(
             (*request_of(r).dropped, request_of(r).alive[0]))))),
    Case("unmask-request-lists-self-dropped", "unmask", "client",
         lambda r: replace(request_of(r), alive=tuple(u for u in request_of(r).alive if u != ME),
                           dropped=tuple(sorted((*request_of(r).dropped, ME))))),
    Case("unmask-request-omits-self", "unmask", "client",
         lambda r: replace(request_of(r), alive=tuple(u for u in request_of(r).alive
                                                      if u != ME))),
    Case("unmask-request-unknown-client", "unmask", "client",
         lambda r: replace(request_of(r), alive=(*request_of(r).alive, N + 90))),
    Case("unmask-request-too-few-alive", "unmask", "client",
         lambda r: replace(request_of(r), alive=tuple(u for u in request_of(r).alive
                                                      if u in (ME, 1, 2, 4, 6)))),
    Case("unmask-request-ids-unsorted", "unmask", "client",
         lambda r: replace(request_of(r), alive=tuple(reversed(request_of(r).alive))),
         MessageDecodeError),
    Case("unmask-request-count-oversized", "unmask", "client",
         lambda r: patch(r.to_me_bytes(), H, u32(1_000_001)), MessageDecodeError),
    Case("unmask-request-in-active-mode", "unmask", "client",
         lambda r: msgs.UnmaskRequest(view_of(r).alive, view_of(r).dropped).encode(), active=True),
    # ---- UnmaskResponse -> server ----
    Case("unmask-response-share-kind-invalid", "unmask", "server",
         lambda r: patch(r.held_bytes(), H + 8 + 4, b"\x03"), MessageDecodeError),
    Case("unmask-response-share-kind-swapped", "unmask", "server",
         lambda r: response_edit(r, swap_kind)),
    Case("unmask-response-missing-share", "unmask", "server",
         lambda r: response_edit(r, lambda s: s.pop())),
    Case("unmask-response-share-out-of-field", "unmask", "server",
         lambda r: response_edit(r, out_of_field)),
    Case("unmask-response-owners-unsorted", "unmask", "server",
         lambda r: response_edit(r, lambda s: s.reverse()), MessageDecodeError),
    Case("unmask-response-share-truncated", "unmask", "server",
         lambda r: r.held_bytes()[:-1], MessageDecodeError),
    Case("unmask-response-from-unasked-client", "unmask", "server",
         lambda r: patch(r.held_bytes(), H, u32(DROP))),
    Case("unmask-response-replayed", "unmask", "server", lambda r: r.reply(1)),
    # ---- Abort -> client ----
    Case("abort-reason-non-ascii", "masked", "client",
         lambda r: frame(10, u32(3) + "é!".encode()), MessageDecodeError),
    Case("abort-reason-control-character", "masked", "client",
         lambda r: frame(10, u32(4) + b"ab\ncd"[:4]), MessageDecodeError),
    Case("abort-reason-over-256-bytes", "masked", "client",
         lambda r: frame(10, u32(257) + b"x" * 257), MessageDecodeError),
    Case("abort-reason-length-exceeds-body", "masked", "client",
         lambda r: frame(10, u32(10) + b"short"), MessageDecodeError),
    # ---- SessionConfig bytes (received by a client before it exists) ----
    Case("config-wrong-version", "config", "config",
         lambda r: patch(config_bytes(), 0, b"\x02"), MessageDecodeError),
    Case("config-unknown-mode", "config", "config",
         lambda r: patch(config_bytes(), 5, b"semi-honesT"), MessageDecodeError),
    Case("config-name-not-utf8", "config", "config",
         lambda r: patch(config_bytes(), 5, b"\xff"), MessageDecodeError),
    Case("config-name-over-32-bytes", "config", "config",
         lambda r: patch(config_bytes(), 1, u32(33)), MessageDecodeError),
    Case("config-truncated", "config", "config", lambda r: config_bytes()[:-1],
         MessageDecodeError),
    Case("config-trailing-bytes", "config", "config", lambda r: config_bytes() + b"\x00",
         MessageDecodeError),
    Case("config-cohort-count-oversized", "config", "config",
         lambda r: patch(config_bytes(), len(config_bytes()) - 4 * N - 4, u32(1_000_001)),
         MessageDecodeError),
    Case("config-cohort-unsorted", "config", "config",
         lambda r: config_bytes()[:-8] + u32(N) + u32(N - 1), ConfigError),
    Case("config-client-id-zero", "config", "config",
         lambda r: patch(config_bytes(), len(config_bytes()) - 4 * N, u32(0)), ConfigError),
    Case("config-threshold-unsafe", "config", "config",
         lambda r: patch(config_bytes(), _config_threshold_offset(config_bytes(), N), u32(2)),
         ConfigError),
    Case("config-modulus-over-2-64", "config", "config",
         lambda r: patch(config_bytes(), 90, ((1 << 64) + 1).to_bytes(9, "big")), ConfigError),
    Case("config-dim-zero", "config", "config",
         lambda r: patch(config_bytes(), 82, bytes(8)), ConfigError),
    # ---- active mode ----
    Case("active-advertise-unsigned", "keys", "server",
         lambda r: replace(held_msg(r), signature=b""), active=True),
    Case("active-advertise-signature-bit-flipped", "keys", "server",
         lambda r: flip(r.held_bytes(), len(r.held_bytes()) - 1), active=True),
    Case("active-advertise-signature-of-another-client", "keys", "server",
         lambda r: replace(held_msg(r), signature=r.replies["keys"][ME].signature),  # type: ignore[attr-defined]
         active=True),
    Case("active-key-broadcast-forged-peer-signature", "shares", "client",
         lambda r: replace(kb_of(r), entries=(dataclasses.replace(
             kb_of(r).entries[0], signature=forged_signature(1)), *kb_of(r).entries[1:])),
         active=True),
    Case("active-key-broadcast-own-signature-replaced", "shares", "client",
         lambda r: replace(kb_of(r), entries=tuple(
             dataclasses.replace(e, signature=forged_signature(ME)) if e.client_id == ME
             else e for e in kb_of(r).entries)), active=True),
    Case("active-view-carries-signatures", "consistency", "client",
         lambda r: replace(view_of(r), signatures=((1, bytes(64)),)), active=True),
    Case("active-view-lists-self-dropped", "consistency", "client",
         lambda r: replace(view_of(r), alive=tuple(u for u in view_of(r).alive if u != ME),
                           dropped=tuple(sorted((*view_of(r).dropped, ME)))), active=True),
    Case("active-consistency-signature-63-bytes", "consistency", "server",
         lambda r: r.held_bytes()[:-1], MessageDecodeError, active=True),
    Case("active-consistency-signature-invalid", "consistency", "server",
         lambda r: flip(r.held_bytes(), H + 10), active=True),
    Case("active-consistency-signature-unasked", "consistency", "server",
         lambda r: patch(r.held_bytes(), H, u32(DROP)), active=True),
    Case("active-signed-request-signers-unsorted", "unmask", "client",
         lambda r: replace(view_of(r), signatures=tuple(reversed(view_of(r).signatures))),
         MessageDecodeError, active=True),
    Case("active-signed-request-too-few-signatures", "unmask", "client",
         lambda r: replace(view_of(r), signatures=view_of(r).signatures[:ACTIVE.threshold - 1]),
         active=True),
    Case("active-signed-request-forged-signature", "unmask", "client",
         lambda r: replace(view_of(r), signatures=(
             (view_of(r).signatures[0][0], forged_signature(1)),
             *view_of(r).signatures[1:])), active=True),
    Case("active-signed-request-view-differs", "unmask", "client",
         lambda r: replace(view_of(r), alive=tuple(u for u in view_of(r).alive if u != 1),
                           dropped=tuple(sorted((*view_of(r).dropped, 1)))), active=True),
    Case("active-signed-request-own-signature-counted", "unmask", "client",
         lambda r: replace(view_of(r), signatures=tuple(sorted(
             (*view_of(r).signatures[1:], (ME, bytes(64)))))), active=True),
    # ---- accepted on arrival, caught later: the session aborts, never a wrong sum ----
    Case("share-keys-commitment-tampered", "shares", "server",
         lambda r: flip(r.held_bytes(), H + 4), aborts=True),
]

#: What each refusal must say (a fragment of the error message): the row is refused for
#: its own defect, not by an earlier check tripping on something else.
REASONS: dict[str, str] = {
    "frame-empty": "truncated message while reading magic",
    "frame-wrong-magic": "not a secagg message (bad magic)",
    "frame-wrong-version": "unsupported message version 2",
    "frame-unknown-type-0": "unknown message type",
    "frame-unknown-type-11": "unknown message type",
    "frame-truncated": "truncated message while reading signature length",
    "frame-extra-bytes": "trailing bytes",
    "frame-header-only": "truncated message while reading sender",
    "advertise-sender-zero": "sender must be in [1, 2**32 - 1]",
    "advertise-sender-out-of-cohort": "is not in the cohort",
    "advertise-replayed": "duplicate AdvertiseKeys",
    "advertise-signature-length-32": "signature must be empty or 64 bytes",
    "advertise-signature-length-oversized": "bytes, limit",
    "advertise-signature-in-semi-honest": "semi-honest mode does not use",
    "advertise-one-key-twice": "used one key for both purposes",
    "advertise-low-order-key": "invalid key",
    "advertise-key-not-reduced": "invalid key",
    "advertise-key-high-bit": "invalid key",
    "advertise-key-of-another-client": "advertised a key another client already uses",
    "server-wrong-type-for-state": "MaskedInput not expected in state advertise-keys",
    "server-receives-server-message": "unexpected message type KeyBroadcast",
    "key-broadcast-entries-unsorted": "strictly increasing",
    "key-broadcast-duplicate-entry": "strictly increasing",
    "key-broadcast-count-oversized": "exceeds limit",
    "key-broadcast-count-exceeds-body": "truncated message while reading client id",
    "key-broadcast-count-short-of-body": "trailing bytes",
    "key-broadcast-client-id-zero": "client id must be in [1, 2**32 - 1]",
    "key-broadcast-signature-length-63": "signature must be empty or 64 bytes",
    "key-broadcast-missing-own-entry": "own keys exactly once",
    "key-broadcast-own-keys-substituted": "keys for this client that it did not advertise",
    "key-broadcast-id-out-of-cohort": "is not a neighbour of this client",
    "key-broadcast-too-few-peers": "fewer than the threshold",
    "key-broadcast-low-order-peer-key": "invalid key",
    "key-broadcast-peer-reuses-own-key": "reuses a public key already in use",
    "client-wrong-type-for-state": "not expected in state share-keys",
    "client-receives-client-message": "unexpected message type AdvertiseKeys",
    "share-keys-missing-receiver": "each neighbour in U1",
    "share-keys-extra-receiver": "each neighbour in U1",
    "share-keys-receivers-unsorted": "strictly increasing",
    "share-keys-duplicate-receiver": "strictly increasing",
    "share-keys-ciphertext-one-byte-short": "truncated message while reading ciphertext",
    "share-keys-count-oversized": "exceeds limit",
    "share-keys-sender-unknown": "which is not in U1",
    "share-keys-replayed": "duplicate ShareKeys",
    "bundle-ciphertext-bit-flipped": "failed to authenticate",
    "bundle-nonce-not-zero": "failed to authenticate",
    "bundle-sender-unknown": "which is not a known peer",
    "bundle-ciphertexts-swapped": "failed to authenticate",
    "bundle-own-ciphertext-reflected": "failed to authenticate",
    "bundle-too-few-ciphertexts": "fewer than the threshold",
    "bundle-senders-unsorted": "strictly increasing",
    "bundle-truncated-ciphertext": "truncated message while reading ciphertext",
    "masked-bits-zero": "bits must be in [1, 64]",
    "masked-bits-over-64": "bits must be in [1, 64]",
    "masked-length-not-count-times-bits": "packed length does not match count and bits",
    "masked-declared-length-huge": "packed length does not match count and bits",
    "masked-bits-wrong-for-modulus": "wrong length or width",
    "masked-count-wrong-for-dim": "wrong length or width",
    "masked-padding-bits-set": "packed vector has non-zero padding bits",
    "masked-element-not-below-R": "outside [0, R)",
    "masked-element-max-20-bits": "outside [0, R)",
    "masked-sender-not-in-u2": "which is not in U2",
    "masked-replayed": "duplicate MaskedInput",
    "unmask-request-alive-and-dropped-overlap": "both alive and dropped",
    "unmask-request-lists-self-dropped": "unmask request lists this client as dropped",
    "unmask-request-omits-self": "does not list this client as alive",
    "unmask-request-unknown-client": "did not share keys with this client",
    "unmask-request-too-few-alive": "fewer than the threshold",
    "unmask-request-ids-unsorted": "strictly increasing",
    "unmask-request-count-oversized": "exceeds limit",
    "unmask-request-in-active-mode": "never for a plain unmask request",
    "unmask-response-share-kind-invalid": "unknown share kind",
    "unmask-response-share-kind-swapped": "exactly the shares",
    "unmask-response-missing-share": "exactly the shares",
    "unmask-response-share-out-of-field": "sent a share outside the Shamir field",
    "unmask-response-owners-unsorted": "strictly increasing",
    "unmask-response-share-truncated": "truncated message while reading share",
    "unmask-response-from-unasked-client": "was not asked",
    "unmask-response-replayed": "duplicate UnmaskResponse",
    "abort-reason-non-ascii": "printable ASCII",
    "abort-reason-control-character": "printable ASCII",
    "abort-reason-over-256-bytes": "bytes, limit",
    "abort-reason-length-exceeds-body": "truncated message while reading reason",
    "config-wrong-version": "unsupported protocol version 2",
    "config-unknown-mode": "unknown mode, graph or PRG",
    "config-name-not-utf8": "unknown mode, graph or PRG",
    "config-name-over-32-bytes": "bytes, limit",
    "config-truncated": "truncated message while reading client id",
    "config-trailing-bytes": "trailing bytes",
    "config-cohort-count-oversized": "exceeds limit",
    "config-cohort-unsorted": "cohort ids must be distinct and sorted",
    "config-client-id-zero": "client ids must be in [1, 2**32 - 1]",
    "config-threshold-unsafe": "honest majority",
    "config-modulus-over-2-64": "modulus must be in [2, 2**64]",
    "config-dim-zero": "dim must be in [1, 2147483648]",
    "active-advertise-unsigned": "valid signature of its identity",
    "active-advertise-signature-bit-flipped": "valid signature of its identity",
    "active-advertise-signature-of-another-client": "valid signature of its identity",
    "active-key-broadcast-forged-peer-signature": "valid signature of its identity",
    "active-key-broadcast-own-signature-replaced": "signature for this client that it did not",
    "active-view-carries-signatures": "the view to sign must not carry signatures yet",
    "active-view-lists-self-dropped": "consistency request lists this client as dropped",
    "active-consistency-signature-63-bytes": "truncated message while reading signature",
    "active-consistency-signature-invalid": "does not verify",
    "active-consistency-signature-unasked": "was not asked",
    "active-signed-request-signers-unsorted": "strictly increasing",
    "active-signed-request-too-few-signatures": "fewer than the threshold",
    "active-signed-request-forged-signature": "does not verify",
    "active-signed-request-view-differs": "does not repeat the view this client signed",
    "active-signed-request-own-signature-counted": "which is not an alive neighbour",
}


def test_table_is_large_and_names_are_unique() -> None:
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
    assert len(CASES) >= 35
    assert {c.to for c in CASES} == {"server", "client", "config"}
    assert set(REASONS) == {c.name for c in CASES if not c.aborts}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed(case: Case) -> None:
    if case.to == "config":
        with pytest.raises(SecAggError) as info:
            SessionConfig.decode(case.build(None))  # type: ignore[arg-type]
        assert info.type is case.error
        assert REASONS[case.name] in str(info.value)
        return
    run = Run(case.stage, active=case.active)
    data = case.build(run)
    receiver: ClientProtocol | ServerProtocol
    receiver = run.server if case.to == "server" else run.clients[ME]
    before = fingerprint(receiver)
    if case.aborts:
        run.server.receive(msgs.decode(data))  # type: ignore[arg-type]
        run.held = None  # the genuine message would now be a duplicate
        run.finish_expecting_abort()
        return
    with pytest.raises(SecAggError) as info:
        msg = msgs.decode(data)
        if isinstance(receiver, ServerProtocol):
            receiver.receive(msg)  # type: ignore[arg-type]
        else:
            receiver.handle(msg)  # type: ignore[arg-type]
    assert info.type is case.error, info.value
    assert REASONS[case.name] in str(info.value), info.value
    assert fingerprint(receiver) == before
    run.finish()


# --- the harness itself ----------------------------------------------------------------------
def test_fingerprint_sees_every_accepted_message() -> None:
    """Guard against a vacuous 'unchanged' check: genuine messages do change the fingerprints."""
    run = Run("shares")
    client, server = run.clients[ME], run.server
    before_client, before_server = fingerprint(client), fingerprint(server)
    reply = client.handle(msgs.decode(run.to_me_bytes()))  # draws b_u and Shamir coefficients
    assert fingerprint(client) != before_client
    server.receive(msgs.decode(reply.encode()))  # type: ignore[union-attr, arg-type]
    assert fingerprint(server) != before_server
    run.to_me = None
    run.finish()


# --- Abort: accepted in every state, and the client forgets its secrets ----------------------
@pytest.mark.parametrize(("stage", "active"), [
    ("shares", False), ("masked", False), ("unmask", False),
    ("shares", True), ("masked", True), ("consistency", True), ("unmask", True)])
def test_abort_drops_client_secrets(stage: str, active: bool) -> None:
    run = Run(stage, active=active)
    client = run.clients[ME]
    released = client.released
    assert client.handle(msgs.decode(msgs.Abort("stop").encode())) is None
    assert client.state is ClientState.ABORTED and client.abort_reason == "stop"
    state = vars(client)
    assert state["_enc_sk"] is None and state["_mask_sk"] is None
    assert state["_b_seed"] == b"" and state["_input"] is None
    assert state["_peers"] == {} and state["_held"] == {}
    assert client.released == released
    before = fingerprint(client)
    with pytest.raises(ProtocolError, match="not expected"):
        client.handle(msgs.decode(run.to_me_bytes()))  # type: ignore[arg-type]
    assert client.handle(msgs.decode(msgs.Abort("again").encode())) is None  # ignored once aborted
    assert fingerprint(client) == before and client.abort_reason == "stop"
