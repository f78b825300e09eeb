"""ChaCha20-Poly1305 AEAD (RFC 8439) over OpenSSL, with nonces that cannot repeat (spec §4.4).

Why a wrapper: reusing a (key, nonce) pair with ChaCha20-Poly1305 leaks the XOR
of two plaintexts and lets an attacker forge tags, and in SecAgg the plaintexts
are Shamir shares of masking keys. So callers never choose nonces: an
:class:`AeadKey` owns a 96-bit big-endian counter that starts at 0 and only moves
forward, and refuses to encrypt once it is exhausted (or past ``max_messages``).
The nonce travels in the blob: ``nonce (12) || ciphertext || tag (16)``.

Decryption failures of any kind raise one :class:`secagg.errors.DecryptionError`
with no detail and no chained backend exception, so a failed share never reveals
why it failed.
"""

from __future__ import annotations

import threading

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from secagg.errors import CryptoError, DecryptionError, NonceReuseError

KEY_LEN = 32
NONCE_LEN = 12
TAG_LEN = 16

_NONCE_SPACE = 1 << (8 * NONCE_LEN)
_DECRYPT_FAILED = "authenticated decryption failed"


def _key_bytes(key: object) -> bytes:
    if not isinstance(key, bytes | bytearray):
        raise CryptoError("AEAD key must be bytes")
    if len(key) != KEY_LEN:
        raise CryptoError(f"AEAD key must be {KEY_LEN} bytes, got {len(key)}")
    return bytes(key)


def _data_bytes(value: object, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray):
        raise CryptoError(f"{what} must be bytes")
    return bytes(value)


class AeadKey:
    """A 32-byte key with an enforced nonce counter: nonces never repeat under one AeadKey.

    ``max_messages`` caps how many messages this object may encrypt;
    ``max_messages=1`` makes it single-use. The counter is guarded by a lock, so
    concurrent ``encrypt`` calls still get distinct nonces. Uniqueness holds per
    object: two ``AeadKey`` objects over the same key bytes share no state, which is
    why the protocol derives a fresh key per (session, sender, receiver) direction.
    """

    __slots__ = ("_aead", "_lock", "_max_messages", "_next_nonce")

    def __init__(self, key: bytes, *, max_messages: int | None = None) -> None:
        raw = _key_bytes(key)
        if max_messages is not None and (
            isinstance(max_messages, bool)
            or not isinstance(max_messages, int)
            or not 1 <= max_messages <= _NONCE_SPACE
        ):
            raise CryptoError(f"max_messages must be an int in [1, 2^{8 * NONCE_LEN}] or None")
        self._aead = ChaCha20Poly1305(raw)
        self._max_messages = max_messages
        self._next_nonce = 0
        self._lock = threading.Lock()

    @property
    def messages_encrypted(self) -> int:
        """How many nonces this key has consumed so far."""
        return self._next_nonce

    def _take_nonce(self) -> bytes:
        """Reserve the next nonce before encrypting, so a failure can never reuse it."""
        with self._lock:
            counter = self._next_nonce
            limit = _NONCE_SPACE if self._max_messages is None else self._max_messages
            if counter >= limit:
                raise NonceReuseError("this AEAD key has no unused nonce left")
            self._next_nonce = counter + 1
        return counter.to_bytes(NONCE_LEN, "big")

    def encrypt(self, plaintext: bytes, associated_data: bytes) -> bytes:
        """Encrypt and authenticate; returns ``nonce || ciphertext || tag``.

        ``associated_data`` is authenticated but not encrypted: bind here whatever
        the ciphertext must not be moved to (session id, sender, receiver, round).
        """
        pt = _data_bytes(plaintext, "plaintext")
        ad = _data_bytes(associated_data, "associated data")
        nonce = self._take_nonce()
        return nonce + self._aead.encrypt(nonce, pt, ad)

    def decrypt(self, blob: bytes, associated_data: bytes) -> bytes:
        """Authenticate and decrypt a blob from :meth:`encrypt`; any failure is DecryptionError."""
        if not isinstance(blob, bytes | bytearray) or not isinstance(
            associated_data, bytes | bytearray
        ):
            raise DecryptionError(_DECRYPT_FAILED)
        if len(blob) < NONCE_LEN + TAG_LEN:
            raise DecryptionError(_DECRYPT_FAILED)
        raw = bytes(blob)
        plaintext: bytes | None
        try:
            plaintext = self._aead.decrypt(raw[:NONCE_LEN], raw[NONCE_LEN:], bytes(associated_data))
        except (InvalidTag, ValueError, OverflowError, TypeError):
            plaintext = None
        # Raised outside ``except`` so no backend exception is chained.
        if plaintext is None:
            raise DecryptionError(_DECRYPT_FAILED)
        return plaintext

    def __repr__(self) -> str:
        return f"AeadKey(key=<hidden>, messages_encrypted={self._next_nonce})"


def seal_once(key: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
    """Encrypt one message under a key that is used for exactly this message.

    For keys derived fresh per message (the protocol derives one per (session,
    sender, receiver) direction and seals one message with it). The nonce is
    always 0, so the output is deterministic; sealing two *different* messages
    under the same key bytes would reuse a nonce, and nothing here can detect
    that across calls: derive a new key instead.
    """
    return AeadKey(key, max_messages=1).encrypt(plaintext, associated_data)


def open_sealed(key: bytes, blob: bytes, associated_data: bytes) -> bytes:
    """Decrypt a blob from :func:`seal_once`; a nonce other than 0 is refused too."""
    if isinstance(blob, bytes | bytearray) and any(blob[:NONCE_LEN]):
        raise DecryptionError(_DECRYPT_FAILED)
    return AeadKey(key).decrypt(blob, associated_data)


def encrypt_with_nonce_for_test_vector(
    key: bytes, nonce: bytes, plaintext: bytes, aad: bytes
) -> bytes:
    """KAT ONLY: ChaCha20-Poly1305 with a caller-chosen nonce; returns ``ciphertext || tag``.

    Exists so published vectors (RFC 8439 section 2.8.2) can be checked against
    the exact backend the protocol uses. Never use it for protocol messages: the
    caller, not a counter, is then responsible for nonce uniqueness.
    """
    raw_key = _key_bytes(key)
    raw_nonce = _data_bytes(nonce, "nonce")
    if len(raw_nonce) != NONCE_LEN:
        raise CryptoError(f"nonce must be {NONCE_LEN} bytes, got {len(raw_nonce)}")
    return ChaCha20Poly1305(raw_key).encrypt(
        raw_nonce, _data_bytes(plaintext, "plaintext"), _data_bytes(aad, "associated data")
    )
