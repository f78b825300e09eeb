"""Wire format of the protocol messages and of SessionConfig (spec "Messages",
"SessionConfig encoding", "Session binding"): canonical round trips, and every
malformed encoding refused with MessageDecodeError, never half-parsed."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.config import MAX_COHORT, SessionConfig
from secagg.crypto.prg import StreamCipher
from secagg.errors import ConfigError, MessageDecodeError, ProtocolError
from secagg.messages import (
    CIPHERTEXT_LEN,
    COMMITMENT_LEN,
    KEY_LEN,
    MAX_ENTRIES,
    MAX_REASON_LEN,
    SHARE_LEN,
    SIGNATURE_LEN,
    Abort,
    AdvertiseKeys,
    CiphertextBundle,
    KeyBroadcast,
    KeyEntry,
    MaskedInput,
    Message,
    MessageType,
    ShareKeys,
    ShareKind,
    UnmaskRequest,
    UnmaskResponse,
    decode,
)
from tests.conftest import Session, cohort, harary_config

# --- strategies -----------------------------------------------------------------------------
ids = st.integers(1, 2**32 - 1)
keys = st.binary(min_size=KEY_LEN, max_size=KEY_LEN)
sigs = st.one_of(st.just(b""), st.binary(min_size=SIGNATURE_LEN, max_size=SIGNATURE_LEN))
cts = st.binary(min_size=CIPHERTEXT_LEN, max_size=CIPHERTEXT_LEN)
sorted_ids = st.lists(ids, max_size=6, unique=True).map(lambda xs: tuple(sorted(xs)))


@st.composite
def masked_inputs(draw: st.DrawFn) -> MaskedInput:
    bits = draw(st.integers(1, 64))
    count = draw(st.integers(0, 40))
    length = (count * bits + 7) // 8
    return MaskedInput(draw(ids), bits, count, draw(st.binary(min_size=length, max_size=length)))


@st.composite
def key_broadcasts(draw: st.DrawFn) -> KeyBroadcast:
    return KeyBroadcast(tuple(KeyEntry(i, draw(keys), draw(keys), draw(sigs))
                              for i in draw(sorted_ids)))


@st.composite
def share_keys(draw: st.DrawFn) -> ShareKeys:
    items = tuple((i, draw(cts)) for i in draw(sorted_ids))
    return ShareKeys(draw(ids), items, draw(st.binary(min_size=COMMITMENT_LEN,
                                                      max_size=COMMITMENT_LEN)))


@st.composite
def bundles(draw: st.DrawFn) -> CiphertextBundle:
    return CiphertextBundle(tuple((i, draw(cts)) for i in draw(sorted_ids)))


@st.composite
def unmask_responses(draw: st.DrawFn) -> UnmaskResponse:
    shares = tuple(
        (i, draw(st.sampled_from(ShareKind)), draw(st.binary(min_size=SHARE_LEN,
                                                             max_size=SHARE_LEN)))
        for i in draw(sorted_ids)
    )
    return UnmaskResponse(draw(ids), shares)


messages = st.one_of(
    st.builds(AdvertiseKeys, ids, keys, keys, sigs),
    key_broadcasts(),
    share_keys(),
    bundles(),
    masked_inputs(),
    st.builds(UnmaskRequest, sorted_ids, sorted_ids),
    unmask_responses(),
    st.builds(Abort, st.text(st.characters(min_codepoint=32, max_codepoint=126),
                             max_size=MAX_REASON_LEN)),
)


@settings(max_examples=200, deadline=None)
@given(messages)
def test_round_trip(msg: Message) -> None:
    data = msg.encode()
    assert data[:2] == b"SA" and data[2] == 1 and data[3] == int(msg.TYPE)
    back = decode(data)
    assert back == msg and type(back) is type(msg)
    assert back.encode() == data
    assert decode(bytearray(data)) == msg and decode(memoryview(data)) == msg


@settings(max_examples=40, deadline=None)
@given(messages)
def test_every_truncation_and_any_trailing_byte_refused(msg: Message) -> None:
    data = msg.encode()
    for cut in range(len(data)):
        with pytest.raises(MessageDecodeError):
            decode(data[:cut])
    for extra in (b"\x00", b"\xff", data):
        with pytest.raises(MessageDecodeError, match="trailing"):
            decode(data + extra)


def _real_messages() -> list[Message]:
    """One genuine message of every type from a real session with one dropout."""
    cfg = SessionConfig.create(cohort(6), 16, (1 << 32) - 5, min_cohort=5, threshold=4)
    s = Session(cfg, seed=9)
    adverts = s.advertise()
    kb = s.close(adverts)
    sk = s.respond(kb)
    bun = s.close(sk)
    masked = s.respond(bun, drop={6})
    requests = s.close(masked)
    responses = s.respond(requests)
    s.close(responses)
    s.assert_exact()
    return [adverts[1], kb[1], sk[1], bun[1], masked[1], requests[1], responses[1],
            Abort("only 3 masked inputs arrived")]


REAL = _real_messages()


@pytest.mark.parametrize("msg", REAL, ids=lambda m: type(m).__name__)
def test_real_messages_truncated_everywhere(msg: Message) -> None:
    data = msg.encode()
    assert decode(data) == msg
    for cut in range(len(data)):
        with pytest.raises(MessageDecodeError):
            decode(data[:cut])
    with pytest.raises(MessageDecodeError):
        decode(data + b"\x00")


def test_every_message_type_is_covered() -> None:
    assert {m.TYPE for m in REAL} == set(MessageType)


@pytest.mark.parametrize("bad", [b"", b"S", b"XX\x01\x01", b"sa\x01\x01", b"AS\x01\x01"])
def test_bad_magic(bad: bytes) -> None:
    with pytest.raises(MessageDecodeError):
        decode(bad + REAL[0].encode()[4:])


@pytest.mark.parametrize("version", [0, 2, 255])
def test_wrong_version(version: int) -> None:
    data = bytearray(REAL[0].encode())
    data[2] = version
    with pytest.raises(MessageDecodeError, match="version"):
        decode(bytes(data))


@pytest.mark.parametrize("code", [0, 8, 9, 11, 255])
def test_unknown_type(code: int) -> None:
    data = bytearray(REAL[-1].encode())
    data[3] = code
    with pytest.raises(MessageDecodeError, match="type"):
        decode(bytes(data))


def test_type_code_selects_the_layout() -> None:
    """Relabelling a message as another type never yields a valid message."""
    for msg in REAL:
        data = bytearray(msg.encode())
        for code in MessageType:
            if code is msg.TYPE:
                continue
            data[3] = int(code)
            try:
                other = decode(bytes(data))
            except MessageDecodeError:
                continue
            assert other.encode() == bytes(data)  # if it parses, it is canonical


@pytest.mark.parametrize("value", ["not bytes", None, 42, [1, 2]])
def test_non_bytes_input(value: object) -> None:
    with pytest.raises(MessageDecodeError):
        decode(value)  # type: ignore[arg-type]


def test_decode_error_is_a_protocol_error() -> None:
    assert issubclass(MessageDecodeError, ProtocolError)


# --- canonical lists: re-ordered or duplicate entries ----------------------------------------
def _e(i: int) -> KeyEntry:
    return KeyEntry(i, bytes([i]) * KEY_LEN, bytes([i + 1]) * KEY_LEN)


CT = bytes(CIPHERTEXT_LEN)
SH = bytes(SHARE_LEN)
NON_CANONICAL = {
    "keys-reordered": KeyBroadcast((_e(2), _e(1))),
    "keys-duplicate": KeyBroadcast((_e(1), _e(1))),
    "keys-duplicate-id-other-keys": KeyBroadcast((_e(1), KeyEntry(1, CT[:32], SH[:32]))),
    "sharekeys-reordered": ShareKeys(1, ((3, CT), (2, CT)), bytes(32)),
    "sharekeys-duplicate": ShareKeys(1, ((2, CT), (2, CT)), bytes(32)),
    "bundle-reordered": CiphertextBundle(((5, CT), (4, CT))),
    "bundle-duplicate": CiphertextBundle(((4, CT), (4, CT))),
    "alive-reordered": UnmaskRequest((2, 1), ()),
    "alive-duplicate": UnmaskRequest((1, 1), ()),
    "dropped-reordered": UnmaskRequest((), (9, 8)),
    "dropped-duplicate": UnmaskRequest((1,), (8, 8)),
    "response-reordered": UnmaskResponse(1, ((3, ShareKind.MASK_KEY, SH),
                                             (2, ShareKind.MASK_KEY, SH))),
    "response-duplicate-owner": UnmaskResponse(1, ((2, ShareKind.SELF_MASK_SEED, SH),
                                                   (2, ShareKind.MASK_KEY, SH))),
}


@pytest.mark.parametrize("name", sorted(NON_CANONICAL))
def test_non_canonical_lists_refused(name: str) -> None:
    with pytest.raises(MessageDecodeError, match="strictly increasing"):
        decode(NON_CANONICAL[name].encode())


# --- field checks ---------------------------------------------------------------------------
def _patched(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value):]


HEADER = 4


@pytest.mark.parametrize(
    ("msg", "offset"),
    [
        (KeyBroadcast((_e(1),)), HEADER),
        (ShareKeys(1, ((2, CT),), bytes(32)), HEADER + 4 + COMMITMENT_LEN),
        (CiphertextBundle(((2, CT),)), HEADER),
        (UnmaskRequest((1,), ()), HEADER),
        (UnmaskRequest((1,), (2,)), HEADER + 8),
        (UnmaskResponse(1, ((2, ShareKind.MASK_KEY, SH),)), HEADER + 4),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Message) else str(v),
)
@pytest.mark.parametrize("count", [MAX_ENTRIES + 1, 2**32 - 1])
def test_oversized_counts_refused(msg: Message, offset: int, count: int) -> None:
    data = _patched(msg.encode(), offset, count.to_bytes(4, "big"))
    with pytest.raises(MessageDecodeError, match="exceeds limit"):
        decode(data)


def test_large_count_with_short_body_is_refused_quickly() -> None:
    data = _patched(KeyBroadcast((_e(1),)).encode(), HEADER, MAX_ENTRIES.to_bytes(4, "big"))
    with pytest.raises(MessageDecodeError, match="truncated"):
        decode(data)


@pytest.mark.parametrize(
    "msg",
    [
        AdvertiseKeys(0, bytes(32), bytes(32)),
        KeyBroadcast((KeyEntry(0, bytes(32), bytes(32)),)),
        ShareKeys(0, (), bytes(32)),
        ShareKeys(1, ((0, CT),), bytes(32)),
        CiphertextBundle(((0, CT),)),
        MaskedInput(0, 8, 0, b""),
        UnmaskRequest((0,), ()),
        UnmaskRequest((), (0,)),
        UnmaskResponse(0, ()),
        UnmaskResponse(1, ((0, ShareKind.MASK_KEY, SH),)),
    ],
    ids=lambda m: type(m).__name__,
)
def test_zero_ids_refused(msg: Message) -> None:
    with pytest.raises(MessageDecodeError, match=r"\[1, 2\*\*32 - 1\]"):
        decode(msg.encode())


@pytest.mark.parametrize("sig_len", [1, 32, 63])
def test_bad_signature_length(sig_len: int) -> None:
    for msg in (AdvertiseKeys(1, bytes(32), bytes(32), bytes(sig_len)),
                KeyBroadcast((KeyEntry(1, bytes(32), bytes(32), bytes(sig_len)),))):
        with pytest.raises(MessageDecodeError, match="signature"):
            decode(msg.encode())


def test_signature_longer_than_limit() -> None:
    with pytest.raises(MessageDecodeError, match="limit"):
        decode(AdvertiseKeys(1, bytes(32), bytes(32), bytes(65)).encode())


@pytest.mark.parametrize("bits", [0, 65, 255])
def test_masked_input_bits_out_of_range(bits: int) -> None:
    data = MaskedInput(1, 8, 2, b"\x01\x02").encode()
    with pytest.raises(MessageDecodeError, match="bits"):
        decode(_patched(data, HEADER + 4, bytes([bits])))


@pytest.mark.parametrize(("count", "bits", "length"), [(2, 8, 3), (2, 8, 1), (3, 5, 1),
                                                      (3, 5, 3), (0, 8, 1)])
def test_masked_input_length_mismatch(count: int, bits: int, length: int) -> None:
    msg = MaskedInput(1, bits, count, bytes(length))
    with pytest.raises(MessageDecodeError, match="packed length"):
        decode(msg.encode())


def test_masked_input_huge_declared_length() -> None:
    """A length field near 2**64 is refused before anything is read or allocated."""
    data = MaskedInput(1, 64, 2**32 - 1, b"").encode()  # header claims 32 GiB
    with pytest.raises(MessageDecodeError):
        decode(data)


@pytest.mark.parametrize("kind", [0, 3, 255])
def test_unknown_share_kind(kind: int) -> None:
    data = UnmaskResponse(1, ((2, ShareKind.MASK_KEY, SH),)).encode()
    with pytest.raises(MessageDecodeError, match="share kind"):
        decode(_patched(data, HEADER + 4 + 4 + 4, bytes([kind])))


@pytest.mark.parametrize("reason", [b"tab\there", b"nul\x00", b"del\x7f", b"\xc3\xa9t\xc3\xa9"])
def test_abort_reason_must_be_printable_ascii(reason: bytes) -> None:
    data = b"SA\x01\x0a" + len(reason).to_bytes(4, "big") + reason
    with pytest.raises(MessageDecodeError, match="printable"):
        decode(data)


def test_abort_reason_over_limit() -> None:
    reason = b"x" * (MAX_REASON_LEN + 1)
    data = b"SA\x01\x0a" + len(reason).to_bytes(4, "big") + reason
    with pytest.raises(MessageDecodeError, match="limit"):
        decode(data)


def test_abort_encode_truncates_and_replaces() -> None:
    assert decode(Abort("x" * 1000).encode()) == Abort("x" * MAX_REASON_LEN)
    assert decode(Abort("naïve").encode()) == Abort("na?ve")


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=400))
def test_abort_encode_always_decodes(reason: str) -> None:
    """Any reason (control characters, non-ASCII, too long) still gives a decodable Abort."""
    msg = Abort(reason)
    back = decode(msg.encode())
    assert isinstance(back, Abort) and back == msg
    assert len(back.reason) <= MAX_REASON_LEN


# --- SessionConfig encoding and session id --------------------------------------------------
def _complete(**kw: object) -> SessionConfig:
    return SessionConfig.create(cohort(12), 64, 1 << 32, **kw)  # type: ignore[arg-type]


CONFIGS = [
    _complete(),
    _complete(round_index=2**64 - 1, task_hash=bytes(range(32)), min_cohort=12,
              dropout_rate=0.25, corruption_rate=0.1, prg=StreamCipher.CHACHA20, threshold=9),
    SessionConfig.create([5, 90, 2**32 - 1, 17, 3, 4, 6, 8, 10, 11], 1, 1 << 64),
    SessionConfig.create(cohort(10), 7, 3),
    harary_config(cohort(40), 100, (1 << 61) - 1, dropout_rate=0.2),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.graph.value}-n{c.n}-R{c.modulus}")
def test_config_round_trip(cfg: SessionConfig) -> None:
    data = cfg.encode()
    back = SessionConfig.decode(data)
    assert back == cfg and back.encode() == data
    assert back.session_id == cfg.session_id and len(cfg.session_id) == 32
    assert all(back.neighbours(u) == cfg.neighbours(u) for u in cfg.cohort)


@pytest.mark.parametrize("cfg", CONFIGS[:2] + CONFIGS[4:], ids=lambda c: c.graph.value)
def test_config_truncated_or_padded(cfg: SessionConfig) -> None:
    data = cfg.encode()
    for cut in range(len(data)):
        with pytest.raises(MessageDecodeError):
            SessionConfig.decode(data[:cut])
    with pytest.raises(MessageDecodeError, match="trailing"):
        SessionConfig.decode(data + b"\x00")


def test_config_decode_field_errors() -> None:
    data = CONFIGS[0].encode()
    with pytest.raises(MessageDecodeError, match="version"):
        SessionConfig.decode(b"\x02" + data[1:])
    mode = CONFIGS[0].mode.value.encode()
    with pytest.raises(MessageDecodeError, match="unknown"):
        SessionConfig.decode(data.replace(mode, b"X" * len(mode), 1))
    count_at = len(data) - 4 * CONFIGS[0].n - 4
    with pytest.raises(MessageDecodeError, match="exceeds limit"):
        SessionConfig.decode(_patched(data, count_at, (MAX_COHORT + 1).to_bytes(4, "big")))
    # well-formed bytes describing an unsafe config: refused by the constructor's checks
    t_at = data.index((CONFIGS[0].threshold).to_bytes(4, "big") + (11).to_bytes(4, "big"))
    with pytest.raises(ConfigError):
        SessionConfig.decode(_patched(data, t_at, (1).to_bytes(4, "big")))
    reordered = _patched(data, count_at + 4, (2).to_bytes(4, "big") + (1).to_bytes(4, "big"))
    with pytest.raises(ConfigError, match="sorted"):
        SessionConfig.decode(reordered)


def test_session_id_stable() -> None:
    a, b = _complete(), _complete()
    assert a is not b and a.session_id == b.session_id
    assert SessionConfig.create(reversed(cohort(12)), 64, 1 << 32).session_id == a.session_id
    assert a.session_id == a.session_id  # cached, unchanged


VARIANTS = {
    "round_index": {"round_index": 1},
    "task_hash": {"task_hash": b"\x00" * 31 + b"\x01"},
    "cohort-ids": {"cohort": (*cohort(11), 13)},
    "cohort-size": {"cohort": tuple(cohort(13)), "degree": 12},
    "dim": {"dim": 65},
    "modulus": {"modulus": (1 << 32) - 5},
    "modulus-64": {"modulus": 1 << 64},
    "threshold": {"threshold": 8},
    "min_cohort": {"min_cohort": 11},
    "dropout_ppm": {"dropout_ppm": 100_001},
    "corruption_ppm": {"corruption_ppm": 50_001},
    "prg": {"prg": StreamCipher.CHACHA20},
    "prg_version": {"prg_version": 2},
}


@pytest.mark.parametrize("field", sorted(VARIANTS))
def test_session_id_sensitive_to_every_field(field: str) -> None:
    base = _complete()
    changed = dataclasses.replace(base, **VARIANTS[field])  # type: ignore[arg-type]
    assert changed.encode() != base.encode()
    assert changed.session_id != base.session_id


def test_session_id_sensitive_to_graph_and_degree() -> None:
    h = harary_config(cohort(40), 64, 1 << 32, dropout_rate=0.2)
    bigger = dataclasses.replace(h, degree=h.degree + 2)
    complete = SessionConfig.create(cohort(40), 64, 1 << 32, threshold=21)
    ids = {h.session_id, bigger.session_id, complete.session_id}
    assert len(ids) == 3


def test_every_field_is_encoded() -> None:
    """Guards the sensitivity test: a new field must be added to the encoding."""
    covered = {"cohort", "dim", "modulus", "threshold", "graph", "degree", "round_index",
               "task_hash", "min_cohort", "dropout_ppm", "corruption_ppm", "mode", "prg",
               "prg_version"}
    fields = {f.name for f in dataclasses.fields(SessionConfig) if f.init}
    assert fields == covered


def test_unmask_response_repr_hides_share_values() -> None:
    from secagg.messages import ShareKind, UnmaskResponse

    share = bytes(range(33))
    msg = UnmaskResponse(5, ((2, ShareKind.SELF_MASK_SEED, share),))
    text = repr(msg)
    assert share.hex() not in text and repr(share) not in text
    assert "sender=5" in text and "2:SELF_MASK_SEED" in text
