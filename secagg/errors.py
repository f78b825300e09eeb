"""One exception hierarchy for the whole library.

Every error raised on purpose by secagg derives from :class:`SecAggError`, so a
caller can catch one type. Messages say *what* was wrong (a field name, a length,
a client id) and never carry key material, seeds, shares or input values: these
exceptions end up in logs.
"""

from __future__ import annotations


class SecAggError(Exception):
    """Base class of every error secagg raises deliberately."""


class ConfigError(SecAggError):
    """A configuration is unsafe or inconsistent; refused before any work is done."""


class MissingExtraError(SecAggError, ImportError):
    """An optional dependency is not installed; the message names the extra to install.

    Also an :class:`ImportError`, so code that already treats a missing optional
    module as "feature off" keeps working (see :mod:`secagg.extras`).
    """


class CryptoError(SecAggError):
    """A cryptographic operation failed (bad key, failed authentication, ...)."""


class InvalidKeyError(CryptoError):
    """A public key is malformed, non-canonical or of low order, or an agreement gave zero."""


class DecryptionError(CryptoError):
    """A ciphertext failed to authenticate under the expected key and associated data."""


class SignatureError(CryptoError):
    """A signature does not verify under the expected key."""


class NonceReuseError(CryptoError):
    """An encryption key would have been used with a nonce that was used before."""


class ReconstructionError(CryptoError):
    """Shamir reconstruction failed or gave a secret that does not match its commitment."""


class ProtocolError(SecAggError):
    """A protocol message is malformed or violates the protocol; the state is unchanged."""


class MessageDecodeError(ProtocolError):
    """Bytes on the wire do not decode into a well-formed message."""


class AbortError(ProtocolError):
    """The session cannot complete safely (for example, fewer than t clients remain)."""
