"""Ed25519 signatures (RFC 8032) over libsodium (spec §4.5, §15.3).

Why: in the malicious-server variant of SecAgg each client signs its advertised
public keys and its view of the surviving-client set, so the server cannot swap
keys or show different clients different sets. Verification must therefore
reject not only wrong signatures but also degenerate verification keys: a
small-order or mixed-order key can make one signature verify for several
messages. :func:`validate_verify_key` uses libsodium's
``crypto_core_ed25519_is_valid_point``, which accepts only canonical encodings
of points on the curve, in the prime-order subgroup and not of small order;
every honestly generated key passes.

:func:`verify` raises exactly one error type, :class:`secagg.errors.SignatureError`,
for every failure (malformed key, malformed signature, wrong message), with no
chained backend exception.
"""

from __future__ import annotations

import nacl.bindings
import nacl.exceptions
import nacl.signing

from secagg.crypto import entropy as _entropy
from secagg.errors import CryptoError, InvalidKeyError, SignatureError

VERIFY_KEY_LEN = 32
SIGNATURE_LEN = 64
SEED_LEN = 32

_BACKEND_ERRORS = (nacl.exceptions.CryptoError, RuntimeError, ValueError, TypeError)


class SigningKey:
    """An Ed25519 signing key built from a 32-byte seed; ``repr`` hides the seed."""

    __slots__ = ("_key", "_verify_key")

    def __init__(self, seed: bytes) -> None:
        if not isinstance(seed, bytes | bytearray):
            raise CryptoError("Ed25519 seed must be bytes")
        if len(seed) != SEED_LEN:
            raise CryptoError(f"Ed25519 seed must be {SEED_LEN} bytes, got {len(seed)}")
        self._key = nacl.signing.SigningKey(bytes(seed))
        self._verify_key = bytes(self._key.verify_key)

    @classmethod
    def generate(cls, entropy: _entropy.Entropy | None = None) -> SigningKey:
        """A fresh key from the OS CSPRNG, or from ``entropy`` (test vectors only)."""
        seed = _entropy.resolve(entropy).random_bytes(SEED_LEN)
        if not isinstance(seed, bytes) or len(seed) != SEED_LEN:
            raise CryptoError("entropy source returned the wrong number of bytes")
        return cls(seed)

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        """Rebuild a key from its 32-byte seed (RFC 8032's "secret key")."""
        return cls(seed)

    @property
    def verify_key(self) -> bytes:
        """The 32-byte public verification key."""
        return self._verify_key

    def sign(self, message: bytes) -> bytes:
        """A 64-byte detached signature of ``message``."""
        if not isinstance(message, bytes | bytearray):
            raise CryptoError("message to sign must be bytes")
        return bytes(self._key.sign(bytes(message)).signature)

    def __repr__(self) -> str:
        return f"SigningKey(verify_key={self._verify_key.hex()}, seed=<hidden>)"


def validate_verify_key(key: bytes) -> bytes:
    """Return ``key`` as bytes if it is a usable Ed25519 verification key.

    Raises :class:`InvalidKeyError` for a wrong type or length, a non-canonical
    encoding, a point not on the curve, or a point of small or mixed order.
    """
    if not isinstance(key, bytes | bytearray):
        raise InvalidKeyError("Ed25519 verify key must be bytes")
    raw = bytes(key)
    if len(raw) != VERIFY_KEY_LEN:
        raise InvalidKeyError(f"Ed25519 verify key must be {VERIFY_KEY_LEN} bytes, got {len(raw)}")
    valid: bool
    try:
        valid = bool(nacl.bindings.crypto_core_ed25519_is_valid_point(raw))
    except _BACKEND_ERRORS:
        valid = False
    if not valid:
        raise InvalidKeyError("Ed25519 verify key is not a valid prime-order point")
    return raw


def verify(verify_key: bytes, message: bytes, signature: bytes) -> None:
    """Return silently if ``signature`` is a valid signature of ``message``; else SignatureError."""
    try:
        key = validate_verify_key(verify_key)
    except InvalidKeyError:
        key = None
    if key is None:
        raise SignatureError("signature does not verify: invalid verify key")
    if not isinstance(signature, bytes | bytearray) or len(signature) != SIGNATURE_LEN:
        raise SignatureError(f"signature does not verify: expected {SIGNATURE_LEN} bytes")
    if not isinstance(message, bytes | bytearray):
        raise SignatureError("signature does not verify: message must be bytes")
    ok: bool
    try:
        nacl.signing.VerifyKey(key).verify(bytes(message), bytes(signature))
        ok = True
    except _BACKEND_ERRORS:
        ok = False
    # Raised outside ``except`` so no backend exception is chained.
    if not ok:
        raise SignatureError("signature does not verify")
