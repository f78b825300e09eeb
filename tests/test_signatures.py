"""Tests for Ed25519: RFC 8032 vectors, rejection of bad keys and signatures."""

from __future__ import annotations

import nacl.bindings
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.crypto.entropy import DeterministicEntropy
from secagg.crypto.signatures import (
    SIGNATURE_LEN,
    VERIFY_KEY_LEN,
    SigningKey,
    validate_verify_key,
    verify,
)
from secagg.errors import CryptoError, InvalidKeyError, SignatureError

P = 2**255 - 19
#: order of the Ed25519 prime-order subgroup (RFC 8032 section 5.1)
L = 2**252 + 27742317777372353535851937790883648493

# RFC 8032 section 7.1, TEST 1-3: (secret key / seed, public key, message, signature)
RFC8032 = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
        "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]

# u-coordinates of the two X25519 order-8 points (libsodium's blacklist); the
# birational map y = (u - 1) / (u + 1) gives the Edwards y of the order-8 points.
_ORDER8_U = [
    int.from_bytes(bytes.fromhex(x), "little")
    for x in (
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    )
]


def _enc(y: int, sign: int) -> bytes:
    return (y | (sign << 255)).to_bytes(32, "little")


def _small_order_encodings() -> list[bytes]:
    ys = [1, P - 1, 0] + [(u - 1) * pow(u + 1, P - 2, P) % P for u in _ORDER8_U]
    out = [_enc(y, s) for y in ys for s in (0, 1)]
    out += [_enc(y + P, s) for y in (0, 1) for s in (0, 1)]  # unreduced y
    return out


SMALL_ORDER = _small_order_encodings()


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@pytest.mark.parametrize(("seed", "pub", "msg", "sig"), RFC8032, ids=["TEST1", "TEST2", "TEST3"])
def test_rfc8032_vectors(seed: str, pub: str, msg: str, sig: str) -> None:
    key = SigningKey.from_seed(bytes.fromhex(seed))
    assert key.verify_key == bytes.fromhex(pub)
    assert key.sign(bytes.fromhex(msg)) == bytes.fromhex(sig)
    verify(bytes.fromhex(pub), bytes.fromhex(msg), bytes.fromhex(sig))
    assert validate_verify_key(bytes.fromhex(pub)) == bytes.fromhex(pub)


def test_wrong_message_key_or_signature_rejected() -> None:
    _seed, pub, msg, sig = (bytes.fromhex(x) for x in RFC8032[1])
    other_pub = bytes.fromhex(RFC8032[2][1])
    with pytest.raises(SignatureError):
        verify(pub, msg + b"\x00", sig)
    with pytest.raises(SignatureError):
        verify(pub, b"\x73", sig)
    with pytest.raises(SignatureError):
        verify(other_pub, msg, sig)
    with pytest.raises(SignatureError):
        verify(pub, msg, bytes.fromhex(RFC8032[2][3]))


@pytest.mark.parametrize("index", range(3))
def test_every_signature_bit_flip_rejected(index: int) -> None:
    _, pub, msg, sig = (bytes.fromhex(x) for x in RFC8032[index])
    for bit in range(SIGNATURE_LEN * 8):
        with pytest.raises(SignatureError):
            verify(pub, msg, _flip(sig, bit))


def test_message_bit_flips_rejected() -> None:
    key = SigningKey.from_seed(bytes(range(32)))
    msg = b"client 7 advertises keys c_pk, s_pk for session 42"
    sig = key.sign(msg)
    for bit in range(len(msg) * 8):
        with pytest.raises(SignatureError):
            verify(key.verify_key, _flip(msg, bit), sig)


def test_non_canonical_s_rejected() -> None:
    _, pub, msg, sig = (bytes.fromhex(x) for x in RFC8032[0])
    s = int.from_bytes(sig[32:], "little")
    malleated = sig[:32] + (s + L).to_bytes(32, "little")
    with pytest.raises(SignatureError):
        verify(pub, msg, malleated)


@pytest.mark.parametrize("n", [0, 63, 65, 128])
def test_signature_length_enforced(n: int) -> None:
    _, pub, msg, sig = (bytes.fromhex(x) for x in RFC8032[0])
    with pytest.raises(SignatureError):
        verify(pub, msg, (sig * 3)[:n])


@pytest.mark.parametrize(
    ("key", "msg", "sig"),
    [
        ("not bytes", b"", bytes(64)),
        (bytes.fromhex(RFC8032[0][1]), "text", bytes.fromhex(RFC8032[0][3])),
        (bytes.fromhex(RFC8032[0][1]), b"", "x" * 64),
        (None, None, None),
    ],
)
def test_verify_bad_types_are_signature_errors(key: object, msg: object, sig: object) -> None:
    with pytest.raises(SignatureError):
        verify(key, msg, sig)  # type: ignore[arg-type]


# --- verify-key validation -------------------------------------------------------------


def _edwards_point(y: int) -> tuple[int, int]:
    """Affine (x, y) on -x^2 + y^2 = 1 + d x^2 y^2 for a given y (RFC 8032 5.1.3)."""
    d = -121665 * pow(121666, P - 2, P) % P
    x2 = (y * y - 1) * pow(d * y * y + 1, P - 2, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if x * x % P != x2:
        x = x * pow(2, (P - 1) // 4, P) % P
    assert x * x % P == x2, "y is not on the curve"
    return x, y


def _edwards_double(pt: tuple[int, int]) -> tuple[int, int]:
    d = -121665 * pow(121666, P - 2, P) % P
    (x, y), t = pt, d * pt[0] * pt[0] * pt[1] * pt[1] % P
    return (2 * x * y * pow(1 + t, P - 2, P) % P, (y * y + x * x) * pow(1 - t, P - 2, P) % P)


def test_small_order_list_is_really_small_order() -> None:
    # Independent check of the derived encodings: each canonical y is on the
    # curve and [8]P is the identity (0, 1).
    assert len(set(SMALL_ORDER)) == 14
    for encoded in SMALL_ORDER:
        y = int.from_bytes(encoded, "little") & ((1 << 255) - 1)
        if y >= P:
            continue
        pt = _edwards_point(y)
        for _ in range(3):
            pt = _edwards_double(pt)
        assert pt == (0, 1)


@pytest.mark.parametrize("encoded", SMALL_ORDER, ids=lambda b: b.hex()[:6] + b.hex()[-2:])
def test_small_order_and_non_canonical_keys_rejected(encoded: bytes) -> None:
    with pytest.raises(InvalidKeyError):
        validate_verify_key(encoded)
    with pytest.raises(SignatureError):
        verify(encoded, b"", bytes(64))


def test_mixed_order_key_rejected() -> None:
    valid = bytes.fromhex(RFC8032[0][1])
    order8 = _enc((_ORDER8_U[0] - 1) * pow(_ORDER8_U[0] + 1, P - 2, P) % P, 0)
    mixed = nacl.bindings.crypto_core_ed25519_add(valid, order8)
    assert mixed != valid
    with pytest.raises(InvalidKeyError):
        validate_verify_key(mixed)


def test_non_canonical_y_of_valid_key_rejected() -> None:
    # y >= p is never a canonical encoding, whatever point it would reduce to.
    with pytest.raises(InvalidKeyError):
        validate_verify_key(_enc(P + 2, 0))


@pytest.mark.parametrize("n", [0, 31, 33, 64])
def test_verify_key_length_enforced(n: int) -> None:
    with pytest.raises(InvalidKeyError):
        validate_verify_key(b"\x01" * n)


def test_verify_key_type_enforced() -> None:
    with pytest.raises(InvalidKeyError):
        validate_verify_key("a" * VERIFY_KEY_LEN)  # type: ignore[arg-type]


# --- keys ------------------------------------------------------------------------------


def test_generate_from_entropy() -> None:
    a = SigningKey.generate(DeterministicEntropy(b"seed"))
    b = SigningKey.generate(DeterministicEntropy(b"seed"))
    assert a.verify_key == b.verify_key
    seed = DeterministicEntropy(b"seed").random_bytes(32)
    assert SigningKey.from_seed(seed).verify_key == a.verify_key
    assert SigningKey.generate().verify_key != SigningKey.generate().verify_key


@pytest.mark.parametrize("bad", [b"", b"\x00" * 31, b"\x00" * 33, "x" * 32, None])
def test_seed_validation(bad: object) -> None:
    with pytest.raises(CryptoError):
        SigningKey.from_seed(bad)  # type: ignore[arg-type]


def test_sign_rejects_non_bytes() -> None:
    with pytest.raises(CryptoError):
        SigningKey.from_seed(bytes(32)).sign("text")  # type: ignore[arg-type]


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(max_size=256))
def test_sign_verify_roundtrip(seed: bytes, message: bytes) -> None:
    key = SigningKey.from_seed(seed)
    sig = key.sign(message)
    assert len(sig) == SIGNATURE_LEN
    validate_verify_key(key.verify_key)
    verify(key.verify_key, message, sig)
    verify(key.verify_key, bytearray(message), bytearray(sig))


# --- no secrets in reprs or messages -----------------------------------------------


def test_repr_hides_seed() -> None:
    seed_hex, pub_hex, _, _ = RFC8032[0]
    key = SigningKey.from_seed(bytes.fromhex(seed_hex))
    for text in (repr(key), str(key)):
        assert seed_hex not in text
        assert repr(bytes.fromhex(seed_hex)) not in text
        assert pub_hex in text


def test_error_messages_hide_seed() -> None:
    short = bytes.fromhex(RFC8032[0][0])[:31]
    with pytest.raises(CryptoError) as info:
        SigningKey.from_seed(short)
    assert short.hex() not in str(info.value)
    assert repr(short) not in str(info.value)
