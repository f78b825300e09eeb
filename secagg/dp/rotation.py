"""Randomized Hadamard rotation with a public, session-bound sign seed (spec §21.3).

``rotate(x) = H·D·pad(x) / sqrt(n)`` with ``n`` the next power of two, ``D`` a
diagonal of ±1 signs and ``H`` the Walsh–Hadamard matrix (Sylvester order). The
map is orthogonal, so ``unrotate`` is its transpose ``D·H·y / sqrt(n)``. It
spreads a vector's energy over every coordinate, which keeps each coordinate of
the sum small enough for a narrow modulus. The signs are public (they protect
nothing secret), derived with HKDF under ``Label.DP_ROTATION_SIGNS`` from the
session id and the round, then expanded with ChaCha20 when more than one HKDF
output is needed.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from secagg.crypto.kdf import encode_context, hkdf
from secagg.crypto.labels import Label

F64 = npt.NDArray[np.float64]


def padded_dim(dim: int) -> int:
    """The smallest power of two >= ``dim``."""
    if dim < 1:
        raise ValueError("dim must be >= 1")
    return 1 << (dim - 1).bit_length()


def rotation_signs(session_id: bytes, round_index: int, n: int) -> F64:
    """``n`` public ±1 signs bound to (session, round): bit i of the keystream, 1 -> −1."""
    key = hkdf(session_id, Label.DP_ROTATION_SIGNS, encode_context(session_id, round_index, n))
    stream = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()
    raw = stream.update(bytes((n + 7) // 8))
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder="little")[:n]
    return 1.0 - 2.0 * bits.astype(np.float64)


def fwht(x: F64) -> F64:
    """Unnormalized fast Walsh–Hadamard transform along the last axis (length 2^k)."""
    n = x.shape[-1]
    if n & (n - 1):
        raise ValueError("length must be a power of two")
    y = np.array(x, dtype=np.float64, copy=True)
    h = 1
    while h < n:
        v = y.reshape(-1, n // (2 * h), 2, h)
        a = v[:, :, 0, :].copy()
        b = v[:, :, 1, :]
        v[:, :, 0, :] = a + b
        v[:, :, 1, :] = a - b
        h *= 2
    return y.reshape(x.shape)


def rotate(x: F64, signs: F64) -> F64:
    """Pad ``x`` with zeros to ``len(signs)`` and apply ``H·D / sqrt(n)``."""
    n = signs.size
    if x.shape[-1] > n:
        raise ValueError("vector longer than the rotation")
    padded = np.zeros(n, dtype=np.float64)
    padded[: x.shape[-1]] = x
    out: F64 = fwht(padded * signs) / np.sqrt(n)
    return out


def unrotate(y: F64, signs: F64, dim: int) -> F64:
    """Inverse of :func:`rotate` (``D·H / sqrt(n)``), then drop the padding."""
    n = signs.size
    out: F64 = (fwht(np.asarray(y, dtype=np.float64)) / np.sqrt(n) * signs)[:dim]
    return out
