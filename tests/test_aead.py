"""Tests for ChaCha20-Poly1305: RFC 8439 vector, tamper detection, nonce discipline."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.crypto.aead import (
    KEY_LEN,
    NONCE_LEN,
    TAG_LEN,
    AeadKey,
    encrypt_with_nonce_for_test_vector,
    open_sealed,
    seal_once,
)
from secagg.errors import CryptoError, DecryptionError, NonceReuseError

# --- RFC 8439 section 2.8.2 ----------------------------------------------------------
RFC_KEY = bytes(range(0x80, 0xA0))
RFC_NONCE = bytes.fromhex("070000004041424344454647")
RFC_AAD = bytes.fromhex("50515253c0c1c2c3c4c5c6c7")
RFC_PLAINTEXT = (
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip "
    b"for the future, sunscreen would be it."
)
RFC_CIPHERTEXT = bytes.fromhex(
    "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"
    "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36"
    "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
    "3ff4def08e4b7a9de576d26586cec64b6116"
)
RFC_TAG = bytes.fromhex("1ae10b594f09e26a7e902ecbd0600691")

KEY = bytes.fromhex("3c" * 16 + "a5" * 16)


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def test_rfc8439_2_8_2_vector() -> None:
    assert RFC_KEY.hex() == "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
    out = encrypt_with_nonce_for_test_vector(RFC_KEY, RFC_NONCE, RFC_PLAINTEXT, RFC_AAD)
    assert out == RFC_CIPHERTEXT + RFC_TAG
    # The same blob, in our wire format, decrypts through the normal API.
    blob = RFC_NONCE + RFC_CIPHERTEXT + RFC_TAG
    assert AeadKey(RFC_KEY).decrypt(blob, RFC_AAD) == RFC_PLAINTEXT


def test_kat_helper_validates_inputs() -> None:
    with pytest.raises(CryptoError):
        encrypt_with_nonce_for_test_vector(RFC_KEY, RFC_NONCE[:11], b"", b"")
    with pytest.raises(CryptoError):
        encrypt_with_nonce_for_test_vector(RFC_KEY[:31], RFC_NONCE, b"", b"")


# --- tamper detection ----------------------------------------------------------------


@pytest.mark.parametrize("pt_len", [0, 1, 15, 16, 17, 64])
@pytest.mark.parametrize("ad_len", [0, 1, 13, 32])
def test_every_single_bit_flip_is_detected(pt_len: int, ad_len: int) -> None:
    key = AeadKey(KEY)
    plaintext = bytes((i * 7 + 1) % 256 for i in range(pt_len))
    ad = bytes((i * 11 + 3) % 256 for i in range(ad_len))
    blob = key.encrypt(plaintext, ad)
    assert len(blob) == NONCE_LEN + pt_len + TAG_LEN
    assert key.decrypt(blob, ad) == plaintext
    # nonce, ciphertext and tag: every bit of the blob
    for bit in range(len(blob) * 8):
        with pytest.raises(DecryptionError):
            key.decrypt(_flip(blob, bit), ad)
    # associated data: every bit
    for bit in range(ad_len * 8):
        with pytest.raises(DecryptionError):
            key.decrypt(blob, _flip(ad, bit))
    # appended or removed AD bytes
    with pytest.raises(DecryptionError):
        key.decrypt(blob, ad + b"\x00")
    if ad_len:
        with pytest.raises(DecryptionError):
            key.decrypt(blob, ad[:-1])


def test_truncated_and_extended_blobs_rejected() -> None:
    key = AeadKey(KEY)
    blob = key.encrypt(b"a share of a masking key", b"ad")
    for n in range(len(blob)):
        with pytest.raises(DecryptionError):
            key.decrypt(blob[:n], b"ad")
    with pytest.raises(DecryptionError):
        key.decrypt(blob + b"\x00", b"ad")


def test_wrong_key_rejected() -> None:
    blob = AeadKey(KEY).encrypt(b"x", b"")
    with pytest.raises(DecryptionError):
        AeadKey(bytes(32)).decrypt(blob, b"")


@pytest.mark.parametrize(
    ("blob", "ad"), [("not bytes", b""), (None, b""), (b"\x00" * 40, "ad"), (b"\x00" * 40, None)]
)
def test_decrypt_bad_types_are_decryption_errors(blob: object, ad: object) -> None:
    with pytest.raises(DecryptionError):
        AeadKey(KEY).decrypt(blob, ad)  # type: ignore[arg-type]


def test_decryption_error_has_no_detail_or_chain() -> None:
    key = AeadKey(KEY)
    blob = key.encrypt(b"secret share", b"ad")
    with pytest.raises(DecryptionError) as info:
        key.decrypt(_flip(blob, 100), b"ad")
    assert info.value.__cause__ is None
    assert info.value.__context__ is None
    assert KEY.hex() not in str(info.value)
    assert "secret share" not in str(info.value)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=64), st.binary(min_size=32, max_size=32))
def test_roundtrip(plaintext: bytes, ad: bytes, key_bytes: bytes) -> None:
    key = AeadKey(key_bytes)
    blob = key.encrypt(plaintext, ad)
    assert AeadKey(key_bytes).decrypt(blob, ad) == plaintext
    assert open_sealed(key_bytes, seal_once(key_bytes, plaintext, ad), ad) == plaintext


# --- nonce discipline ----------------------------------------------------------------


def test_nonce_counter_starts_at_zero_and_increments() -> None:
    key = AeadKey(KEY)
    blobs = [key.encrypt(b"same", b"same") for _ in range(3)]
    assert [b[:NONCE_LEN] for b in blobs] == [i.to_bytes(NONCE_LEN, "big") for i in range(3)]
    assert len({b[NONCE_LEN:] for b in blobs}) == 3  # same input, different ciphertexts
    assert key.messages_encrypted == 3


def test_max_messages_one_is_single_use() -> None:
    key = AeadKey(KEY, max_messages=1)
    key.encrypt(b"first", b"")
    with pytest.raises(NonceReuseError):
        key.encrypt(b"second", b"")
    with pytest.raises(NonceReuseError):
        key.encrypt(b"third", b"")


def test_max_messages_limit() -> None:
    key = AeadKey(KEY, max_messages=3)
    for _ in range(3):
        key.encrypt(b"m", b"")
    with pytest.raises(NonceReuseError):
        key.encrypt(b"m", b"")


def test_counter_exhaustion() -> None:
    key = AeadKey(KEY)
    key._next_nonce = (1 << (8 * NONCE_LEN)) - 1  # jump to the last nonce
    last = key.encrypt(b"m", b"")
    assert last[:NONCE_LEN] == b"\xff" * NONCE_LEN
    with pytest.raises(NonceReuseError):
        key.encrypt(b"m", b"")


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "1", (1 << 96) + 1])
def test_invalid_max_messages(bad: object) -> None:
    with pytest.raises(CryptoError):
        AeadKey(KEY, max_messages=bad)  # type: ignore[arg-type]


def test_rejected_input_does_not_consume_a_nonce() -> None:
    key = AeadKey(KEY, max_messages=1)
    with pytest.raises(CryptoError):
        key.encrypt("not bytes", b"")  # type: ignore[arg-type]
    with pytest.raises(CryptoError):
        key.encrypt(b"", None)  # type: ignore[arg-type]
    assert key.messages_encrypted == 0
    key.encrypt(b"ok", b"")


def test_concurrent_encryptions_get_distinct_nonces() -> None:
    key = AeadKey(KEY)
    nonces: list[bytes] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(200):
            n = key.encrypt(b"x", b"")[:NONCE_LEN]
            with lock:
                nonces.append(n)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(nonces) == len(set(nonces)) == 1600


@pytest.mark.parametrize("n", [0, 16, 31, 33])
def test_key_length_enforced(n: int) -> None:
    with pytest.raises(CryptoError):
        AeadKey(b"k" * n)
    with pytest.raises(CryptoError):
        seal_once(b"k" * n, b"", b"")


def test_key_type_enforced() -> None:
    with pytest.raises(CryptoError):
        AeadKey("k" * KEY_LEN)  # type: ignore[arg-type]


# --- seal_once / open_sealed -----------------------------------------------------------


def test_seal_once_uses_nonce_zero_and_is_deterministic() -> None:
    a = seal_once(KEY, b"share", b"ad")
    assert a[:NONCE_LEN] == bytes(NONCE_LEN)
    assert a == seal_once(KEY, b"share", b"ad")
    assert open_sealed(KEY, a, b"ad") == b"share"
    with pytest.raises(DecryptionError):
        open_sealed(KEY, a, b"other ad")


def test_open_sealed_refuses_nonzero_nonce() -> None:
    key = AeadKey(KEY)
    key.encrypt(b"first", b"")
    second = key.encrypt(b"second", b"")  # authentic, but nonce 1
    assert AeadKey(KEY).decrypt(second, b"") == b"second"
    with pytest.raises(DecryptionError):
        open_sealed(KEY, second, b"")


# --- no secrets in reprs or messages -----------------------------------------------


def test_repr_hides_key() -> None:
    key = AeadKey(KEY)
    for text in (repr(key), str(key)):
        assert KEY.hex() not in text
        assert repr(KEY) not in text
        assert "hidden" in text


def test_error_messages_hide_key() -> None:
    short = KEY[:31]
    with pytest.raises(CryptoError) as info:
        AeadKey(short)
    assert short.hex() not in str(info.value)
    assert repr(short) not in str(info.value)
