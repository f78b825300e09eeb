"""HKDF-SHA256 (RFC 5869) with registered domain-separation labels (spec §4.1, §4.2, §5).

``info`` is always ``label || b"|" || encode_context(...)``: the label comes from
:class:`secagg.crypto.labels.Label` (no free-form strings), and the context is a
canonical, length-prefixed encoding, so distinct (label, context) pairs can never
produce the same ``info`` and hence never the same key.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from secagg.checks import is_plain_int
from secagg.crypto.labels import Label
from secagg.errors import CryptoError

_MAX_OUTPUT = 255 * 32  # RFC 5869: L <= 255 * HashLen


def encode_context(*parts: bytes | bytearray | memoryview | int | str) -> bytes:
    """Canonical encoding of a tuple of context fields.

    Each field is a 1-byte type tag (b: bytes, i: unsigned int, s: UTF-8 text)
    followed by a 4-byte big-endian length and the field's bytes, so no two
    different tuples encode to the same bytes.
    """
    out = bytearray()
    for part in parts:
        # Exact-type checks first (the common case, and they narrow for the type checker);
        # subclasses of int (IntEnum) re-encode as plain ints below.
        if type(part) is bytes:
            tag, body = b"b", part
        elif type(part) is int:
            if part < 0:
                raise ValueError("integer context fields must be >= 0")
            tag, body = b"i", part.to_bytes(max(1, (part.bit_length() + 7) // 8), "big")
        elif type(part) is str:
            tag, body = b"s", part.encode("utf-8")
        elif isinstance(part, bytearray | memoryview):
            tag, body = b"b", bytes(part)
        elif is_plain_int(part):
            return encode_context(*(int(p) if p is part else p for p in parts))
        else:
            raise TypeError(f"unsupported context field type {type(part).__name__}")
        out += tag
        out += len(body).to_bytes(4, "big")
        out += body
    return bytes(out)


def hkdf(
    ikm: bytes,
    label: Label,
    context: bytes = b"",
    *,
    length: int = 32,
    salt: bytes | None = None,
) -> bytes:
    """Derive ``length`` bytes from input keying material for one registered purpose.

    ``context`` should come from :func:`encode_context`. ``salt`` defaults to
    none (RFC 5869 then uses HashLen zero bytes).
    """
    if not isinstance(label, Label):
        raise TypeError("label must be a registered secagg.crypto.labels.Label")
    if not isinstance(ikm, bytes | bytearray) or len(ikm) == 0:
        raise CryptoError("HKDF input keying material must be non-empty bytes")
    if not 1 <= length <= _MAX_OUTPUT:
        raise CryptoError(f"HKDF output length must be in [1, {_MAX_OUTPUT}]")
    info = label.value + b"|" + bytes(context)
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(bytes(ikm))


def hkdf_raw(ikm: bytes, salt: bytes | None, info: bytes, length: int) -> bytes:
    """Unlabelled HKDF-SHA256, only for checking RFC 5869 known-answer vectors in tests."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)
