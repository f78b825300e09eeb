"""X25519 key agreement (RFC 7748) over OpenSSL, with strict public-key validation (spec §4.3).

Why strict: in SecAgg a client's pairwise mask seed and its share-encryption keys
come from X25519 agreements with keys that the (possibly malicious) server relays.
A low-order public key would force the shared secret into a tiny set known to the
attacker, so every peer key is checked before use and every failure surfaces as
one typed error, :class:`secagg.errors.InvalidKeyError`, whichever layer caught it:

* wrong type or length;
* non-canonical encodings: the high bit set (RFC 7748 says to mask it; we generate
  every key ourselves, so a set bit can only mean tampering) or a little-endian
  value ``>= p = 2^255 - 19``;
* the low-order points of Curve25519 and its twist (libsodium's blacklist: 0, 1,
  the two order-8 u-coordinates and ``p - 1``; their non-canonical forms ``p`` and
  ``p + 1`` and all high-bit variants fall under the rule above);
* an all-zero shared secret (RFC 7748 section 6.1), or any error from the backend.

Why OpenSSL (``cryptography``) and not libsodium: X25519 is fully specified by
RFC 7748 (the scalar is clamped, the u-coordinate's high bit masked), so both give
the same bytes and the test vectors do not move; but a Flower ClientApp process has
``cryptography`` loaded already (Flower's own client imports it), while libsodium
would be a whole second library to load at every message (issue 19). A key keeps
its OpenSSL object, so an agreement costs what libsodium's does.

Backend errors are re-raised *outside* the ``except`` block, so the typed error has
neither ``__cause__`` nor ``__context__``: nothing from the failed call, which had
the secret scalar as an argument, is chained onto an exception that may be logged.
"""

from __future__ import annotations

import hmac

from cryptography.hazmat.primitives.asymmetric import x25519 as _x25519

from secagg.crypto import entropy as _entropy
from secagg.errors import CryptoError, InvalidKeyError

PUBLIC_KEY_LEN = 32
SECRET_KEY_LEN = 32

_P = 2**255 - 19

#: u-coordinates (canonical, as integers) of every point of order dividing 8 on
#: Curve25519 or its quadratic twist; multiplying any of them by a clamped scalar
#: (a multiple of 8) gives the all-zero output. Same set as libsodium's
#: ``has_small_order`` blacklist, whose two extra entries (``p`` and ``p + 1``) are
#: non-canonical and rejected by the range check before this set is consulted.
_LOW_ORDER_U: frozenset[int] = frozenset(
    {
        0,
        1,
        325606250916557431795983626356110631294008115727848805560023387167927233504,
        39382357235489614581723060781553021112529911719440698176882885853963445705823,
        _P - 1,
    }
)

_BACKEND_ERRORS = (RuntimeError, ValueError, TypeError)


def _as_bytes(value: object) -> bytes | None:
    """Accept ``bytes`` or ``bytearray`` (copied); anything else is refused."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return None


class X25519PrivateKey:
    """A 32-byte X25519 secret scalar (stored unclamped; the backend clamps on use).

    The raw bytes stay available through :meth:`secret_bytes` because SecAgg
    Shamir-shares the masking key so that the server can remove a dropped
    client's pairwise masks. ``repr`` shows only the public key.
    """

    __slots__ = ("_backend", "_public", "_secret")

    def __init__(self, secret: bytes) -> None:
        raw = _as_bytes(secret)
        if raw is None:
            raise CryptoError("X25519 secret key must be bytes")
        if len(raw) != SECRET_KEY_LEN:
            raise CryptoError(f"X25519 secret key must be {SECRET_KEY_LEN} bytes, got {len(raw)}")
        self._secret = raw
        self._public: bytes | None = None
        self._backend: _x25519.X25519PrivateKey | None = None

    @classmethod
    def generate(cls, entropy: _entropy.Entropy | None = None) -> X25519PrivateKey:
        """A fresh key from the OS CSPRNG, or from ``entropy`` (test vectors only)."""
        secret = _entropy.resolve(entropy).random_bytes(SECRET_KEY_LEN)
        if not isinstance(secret, bytes) or len(secret) != SECRET_KEY_LEN:
            raise CryptoError("entropy source returned the wrong number of bytes")
        return cls(secret)

    @classmethod
    def from_bytes(cls, secret: bytes) -> X25519PrivateKey:
        """Rebuild a key from its 32 raw bytes (e.g. after Shamir reconstruction)."""
        return cls(secret)

    def secret_bytes(self) -> bytes:
        """The raw 32-byte secret. Handle with care: this is the key itself."""
        return self._secret

    @property
    def public_key(self) -> bytes:
        """The 32-byte canonical public key ``X25519(secret, 9)`` (cached)."""
        if self._public is None:
            self._public = _base(self._key())
        return self._public

    def __reduce__(self) -> tuple[type[X25519PrivateKey], tuple[bytes]]:
        """Pickle (process pools, Ray) the secret only: the backend's key object does not
        pickle, and is rebuilt on first use."""
        return (X25519PrivateKey, (self._secret,))

    def _key(self) -> _x25519.X25519PrivateKey:
        """The backend's key object, built once (building it is half an agreement's cost)."""
        if self._backend is None:
            self._backend = _x25519.X25519PrivateKey.from_private_bytes(self._secret)
        return self._backend

    def exchange(self, peer_public: bytes) -> bytes:
        """The raw 32-byte shared secret with ``peer_public``; see :func:`agree`."""
        return agree(self, peer_public)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, X25519PrivateKey):
            return NotImplemented
        return hmac.compare_digest(self._secret, other._secret)

    # Defining __eq__ leaves __hash__ as None: keys are not meant to be set members.

    def __repr__(self) -> str:
        return f"X25519PrivateKey(public_key={self.public_key.hex()}, secret=<hidden>)"


def validate_public_key(peer_public: bytes) -> bytes:
    """Return ``peer_public`` as ``bytes`` if it is a safe X25519 public key.

    Raises :class:`InvalidKeyError` for a wrong type or length, a non-canonical
    encoding (high bit set, or value ``>= 2^255 - 19``) or a low-order point.
    Public keys are public, so the checks need not be constant-time.
    """
    raw = _as_bytes(peer_public)
    if raw is None:
        raise InvalidKeyError("X25519 public key must be bytes")
    if len(raw) != PUBLIC_KEY_LEN:
        raise InvalidKeyError(f"X25519 public key must be {PUBLIC_KEY_LEN} bytes, got {len(raw)}")
    u = int.from_bytes(raw, "little")
    if u >> 255:
        raise InvalidKeyError("X25519 public key is non-canonical (high bit set)")
    if u >= _P:
        raise InvalidKeyError("X25519 public key is non-canonical (not reduced mod p)")
    if u in _LOW_ORDER_U:
        raise InvalidKeyError("X25519 public key is a low-order point")
    return raw


def agree(private: X25519PrivateKey, peer_public: bytes) -> bytes:
    """X25519 of our secret and a validated peer key: the raw 32-byte shared secret.

    The output is not uniformly random; callers must pass it through
    :func:`secagg.crypto.kdf.hkdf` with a registered label before use.
    """
    if not isinstance(private, X25519PrivateKey):
        raise CryptoError("private must be an X25519PrivateKey")
    peer = validate_public_key(peer_public)
    shared: bytes | None
    try:
        shared = _exchange(private._key(), peer)
    except _BACKEND_ERRORS:
        shared = None
    return _checked(shared)


def agree_unlocked(private: X25519PrivateKey, peer_public: bytes) -> bytes:
    """:func:`agree` over libsodium, which releases the GIL while it multiplies.

    Why a second backend: OpenSSL's X25519 (through ``cryptography``) holds the GIL,
    so a server unmasking on threads ran its agreements one at a time (measured on 2
    cores: two threads of agreements took 0.98x the time of one over OpenSSL, 1.97x
    less over libsodium). The server's unmasking, which runs thousands of agreements
    on threads, uses this one; a client, which runs a few dozen and pays every
    library it loads in each Flower ClientApp process, uses :func:`agree`. RFC 7748
    fixes every output byte, so both return the same secret (a test checks it), with
    the same peer-key validation and all-zero check.
    """
    import nacl.bindings  # loaded only where the server unmasks
    import nacl.exceptions

    if not isinstance(private, X25519PrivateKey):
        raise CryptoError("private must be an X25519PrivateKey")
    peer = validate_public_key(peer_public)
    shared: bytes | None
    try:
        shared = nacl.bindings.crypto_scalarmult(private.secret_bytes(), peer)
    except (nacl.exceptions.CryptoError, *_BACKEND_ERRORS):
        shared = None
    return _checked(shared)


def _checked(shared: bytes | None) -> bytes:
    """The backend's shared secret, or the typed refusal (outside any ``except``, so
    the backend's exception is not chained)."""
    if shared is None:
        raise InvalidKeyError("X25519 agreement rejected the peer public key")
    if len(shared) != PUBLIC_KEY_LEN or hmac.compare_digest(shared, bytes(PUBLIC_KEY_LEN)):
        raise InvalidKeyError("X25519 agreement produced an all-zero shared secret")
    return shared


def public_key_matches(secret: bytes, expected_public: bytes) -> bool:
    """Whether ``secret`` is the X25519 secret key of ``expected_public``.

    Used after Shamir reconstruction of a dropped client's masking key: the
    reconstructed bytes are only trusted if they reproduce the public key that
    client advertised. Malformed input of either kind is simply "no match".
    """
    raw_secret = _as_bytes(secret)
    raw_public = _as_bytes(expected_public)
    if raw_secret is None or raw_public is None:
        return False
    if len(raw_secret) != SECRET_KEY_LEN or len(raw_public) != PUBLIC_KEY_LEN:
        return False
    derived = _base(_x25519.X25519PrivateKey.from_private_bytes(raw_secret))
    return hmac.compare_digest(derived, raw_public)


def _exchange(key: _x25519.X25519PrivateKey, peer: bytes) -> bytes:
    """The backend's X25519 of ``key`` and a validated peer key (raw shared secret)."""
    return key.exchange(_x25519.X25519PublicKey.from_public_bytes(peer))


def _base(key: _x25519.X25519PrivateKey) -> bytes:
    """``X25519(secret, 9)``: the raw 32-byte public key."""
    return key.public_key().public_bytes_raw()
