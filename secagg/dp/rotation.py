"""Randomized Hadamard rotation with a public, session-bound sign seed (spec §21.3).

``rotate(x) = H·D·pad(x) / sqrt(n)`` with ``n`` the next power of two, ``D`` a
diagonal of ±1 signs and ``H`` the Walsh–Hadamard matrix (Sylvester order). The
map is orthogonal, so ``unrotate`` is its transpose ``D·H·y / sqrt(n)``. It
spreads a vector's energy over every coordinate, which keeps each coordinate of
the sum small enough for a narrow modulus. The signs are public (they protect
nothing secret), derived with HKDF under ``Label.DP_ROTATION_SIGNS`` from the
session id and the round, then expanded with ChaCha20 when more than one HKDF
output is needed.

Block-diagonal form (§21.11): with a minimum block ``b`` (a power of two),
``dim`` is rounded up to a multiple of ``b`` and split into the powers of two of
its binary expansion, largest first (650 with b = 64: 704 = 512 + 128 + 64); each
block is rotated on its own with its slice of the same sign stream. The map is
still orthogonal (a block-diagonal of orthogonal blocks), so sensitivities are
unchanged; only the wrap-around bound must use each block's own size. ``b = 0``
means one block of the next power of two, the original form, computed by the
same code with identical results.
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


def block_sizes(dim: int, min_block: int = 0) -> tuple[int, ...]:
    """The blocks of the rotation: one power of two (``min_block = 0``), or the binary
    expansion of ``dim`` rounded up to a multiple of ``min_block``, largest first."""
    if dim < 1:
        raise ValueError("dim must be >= 1")
    if min_block == 0:
        return (padded_dim(dim),)
    if min_block < 1 or min_block & (min_block - 1):
        raise ValueError("the minimum block must be 0 or a power of two")
    total = -(-dim // min_block) * min_block
    return tuple(1 << k for k in range(total.bit_length() - 1, -1, -1) if total >> k & 1)


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


def rotate_blocks(x: F64, signs: F64, sizes: tuple[int, ...]) -> F64:
    """Pad ``x`` to ``sum(sizes)`` and rotate each block with its slice of ``signs``."""
    n = sum(sizes)
    if signs.size != n or x.shape[-1] > n:
        raise ValueError("vector longer than the rotation, or signs of another length")
    if len(sizes) == 1:
        return rotate(x, signs)
    padded = np.zeros(n, dtype=np.float64)
    padded[: x.shape[-1]] = x
    out = np.empty(n, dtype=np.float64)
    start = 0
    for b in sizes:
        part = slice(start, start + b)
        out[part] = fwht(padded[part] * signs[part]) / np.sqrt(b)
        start += b
    return out


def unrotate_blocks(y: F64, signs: F64, sizes: tuple[int, ...], dim: int) -> F64:
    """Inverse of :func:`rotate_blocks`, then drop the padding."""
    if len(sizes) == 1:
        return unrotate(y, signs, dim)
    v = np.asarray(y, dtype=np.float64)
    out = np.empty(sum(sizes), dtype=np.float64)
    start = 0
    for b in sizes:
        part = slice(start, start + b)
        out[part] = fwht(v[part]) / np.sqrt(b) * signs[part]
        start += b
    result: F64 = out[:dim]
    return result
