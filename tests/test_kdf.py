"""Tests for HKDF-SHA256 and the context encoding: RFC 5869 vectors, domain separation."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.crypto.kdf import encode_context, hkdf, hkdf_raw
from secagg.crypto.labels import Label
from secagg.errors import CryptoError

# RFC 5869 appendix A, test cases 1-3 (SHA-256): IKM, salt (None = absent), info, L, OKM
RFC5869 = [
    (
        "0b" * 22,
        "000102030405060708090a0b0c",
        "f0f1f2f3f4f5f6f7f8f9",
        42,
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
    ),
    (
        bytes(range(0x00, 0x50)).hex(),
        bytes(range(0x60, 0xB0)).hex(),
        bytes(range(0xB0, 0x100)).hex(),
        82,
        "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
        "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
        "cc30c58179ec3e87c14c01d5c1f3434f1d87",
    ),
    (
        "0b" * 22,
        "",
        "",
        42,
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
    ),
]


@pytest.mark.parametrize(("ikm", "salt", "info", "length", "okm"), RFC5869, ids=["A1", "A2", "A3"])
def test_rfc5869_vectors(ikm: str, salt: str, info: str, length: int, okm: str) -> None:
    assert len(bytes.fromhex(okm)) == length
    out = hkdf_raw(bytes.fromhex(ikm), bytes.fromhex(salt), bytes.fromhex(info), length)
    assert out == bytes.fromhex(okm)


def test_rfc5869_case3_absent_salt_equals_empty_salt() -> None:
    # RFC 5869: an absent salt is HashLen zero bytes, and HMAC pads an empty key
    # with zeros, so case 3 also holds with salt=None.
    ikm, _, _, length, okm = RFC5869[2]
    assert hkdf_raw(bytes.fromhex(ikm), None, b"", length) == bytes.fromhex(okm)


# --- domain separation -------------------------------------------------------------

IKM = b"\x42" * 32


def test_distinct_labels_give_distinct_keys() -> None:
    keys = {label: hkdf(IKM, label, encode_context(b"session", 1, 2)) for label in Label}
    assert len(set(keys.values())) == len(Label)


def test_distinct_contexts_give_distinct_keys() -> None:
    contexts = [
        encode_context(),
        encode_context(b"s"),
        encode_context(b"s", 1),
        encode_context(b"s", 1, 2),
        encode_context(b"s", 2, 1),  # direction matters: (u -> v) != (v -> u)
        encode_context(b"t", 1, 2),
    ]
    keys = [hkdf(IKM, Label.SHARE_ENCRYPTION, c) for c in contexts]
    assert len(set(keys)) == len(keys)


def test_distinct_ikm_and_salt_give_distinct_keys() -> None:
    base = hkdf(IKM, Label.PAIRWISE_MASK_SEED)
    assert hkdf(b"\x43" * 32, Label.PAIRWISE_MASK_SEED) != base
    assert hkdf(IKM, Label.PAIRWISE_MASK_SEED, salt=b"salt") != base


def test_hkdf_is_deterministic_and_sized() -> None:
    ctx = encode_context(b"s", 3)
    assert hkdf(IKM, Label.MASK_PRG_KEY, ctx) == hkdf(IKM, Label.MASK_PRG_KEY, ctx)
    for length in (1, 16, 32, 33, 255 * 32):
        assert len(hkdf(IKM, Label.MASK_PRG_KEY, ctx, length=length)) == length
    # Shorter outputs are prefixes of longer ones (same info): expected HKDF behaviour,
    # which is why purposes are separated by label, not by length.
    assert hkdf(IKM, Label.MASK_PRG_KEY, ctx, length=64)[:32] == hkdf(IKM, Label.MASK_PRG_KEY, ctx)


def test_hkdf_matches_raw_with_label_prefix() -> None:
    ctx = encode_context(b"abc", 7)
    info = Label.SESSION_ID.value + b"|" + ctx
    assert hkdf(IKM, Label.SESSION_ID, ctx) == hkdf_raw(IKM, None, info, 32)


# --- encode_context injectivity -------------------------------------------------------

TRICKY: list[tuple[bytes | int | str, ...]] = [
    (),
    (b"",),
    (b"", b""),
    ("",),
    (b"ab", b"c"),
    (b"a", b"bc"),
    (b"abc",),
    ("abc",),
    (0,),
    (b"\x00",),
    ("\x00",),
    (1,),
    (b"\x01",),
    (256,),
    (1, 0),
    (b"\x01\x00",),
    (1, 2),
    (2, 1),
    (12,),
    (1, 2, 3),
    (b"s" + b"\x00\x00\x00\x01" + b"a",),  # looks like an encoded field inside bytes
    (b"s", "a"),
]


def test_encode_context_injective_on_tricky_tuples() -> None:
    encodings = [encode_context(*t) for t in TRICKY]
    for (a, ea), (b, eb) in itertools.combinations(zip(TRICKY, encodings, strict=True), 2):
        assert ea != eb, (a, b)


def _normalise(parts: tuple[bytes | int | str, ...]) -> tuple[tuple[str, object], ...]:
    return tuple((type(p).__name__, p) for p in parts)


_field = st.one_of(
    st.binary(max_size=8), st.integers(min_value=0, max_value=2**70), st.text(max_size=4)
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_field, max_size=4), st.lists(_field, max_size=4))
def test_encode_context_injective(a: list[bytes | int | str], b: list[bytes | int | str]) -> None:
    same_encoding = encode_context(*a) == encode_context(*b)
    assert same_encoding == (_normalise(tuple(a)) == _normalise(tuple(b)))


def test_bytearray_and_bytes_encode_alike() -> None:
    assert encode_context(bytearray(b"xy")) == encode_context(b"xy")


# --- bad inputs ------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [True, False])
def test_encode_context_rejects_bool(bad: bool) -> None:
    with pytest.raises(TypeError):
        encode_context(bad)


def test_encode_context_rejects_negative_int() -> None:
    with pytest.raises(ValueError):
        encode_context(-1)


@pytest.mark.parametrize("bad", [1.0, None, [1], {"a": 1}])
def test_encode_context_rejects_other_types(bad: object) -> None:
    with pytest.raises(TypeError):
        encode_context(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["secagg/v1/share-encryption-key", b"secagg/v1/session-id", None])
def test_hkdf_requires_registered_label(bad: object) -> None:
    with pytest.raises(TypeError):
        hkdf(IKM, bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [b"", "text", None])
def test_hkdf_rejects_bad_ikm(bad: object) -> None:
    with pytest.raises(CryptoError):
        hkdf(bad, Label.SESSION_ID)  # type: ignore[arg-type]


@pytest.mark.parametrize("length", [0, -1, 255 * 32 + 1])
def test_hkdf_rejects_bad_length(length: int) -> None:
    with pytest.raises(CryptoError):
        hkdf(IKM, Label.SESSION_ID, length=length)


def test_hkdf_error_does_not_echo_ikm() -> None:
    with pytest.raises(CryptoError) as info:
        hkdf(IKM, Label.SESSION_ID, length=0)
    assert IKM.hex() not in str(info.value)
