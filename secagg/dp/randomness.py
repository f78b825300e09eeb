"""Where the DP noise's randomness comes from (spec §21.2).

Every random draw of the distributed-DP pipeline (noise, randomized rounding)
comes from a :class:`RandomSource`. The default, :class:`CryptoRandomSource`,
reads the operating system's CSPRNG (``os.urandom``) and nothing else; numpy's
generators are never used (numpy only reinterprets the bytes it is given).
:class:`SeededTestVectorSource` is deterministic, exists only to regenerate the
published known-answer vectors of ``specs/vectors/dp.json``, and its name says so:
noise drawn from it protects nothing.
"""

from __future__ import annotations

import os
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from secagg.crypto.kdf import encode_context, hkdf
from secagg.crypto.labels import Label

U64 = npt.NDArray[np.uint64]


@runtime_checkable
class RandomSource(Protocol):
    """A stream of uniformly random bytes."""

    def random_bytes(self, n: int) -> bytes:
        """Return ``n`` uniformly random bytes."""
        ...


class CryptoRandomSource:
    """The default and the only source for real noise: the OS CSPRNG (``os.urandom``)."""

    def random_bytes(self, n: int) -> bytes:
        return os.urandom(n)

    def __repr__(self) -> str:
        return "CryptoRandomSource()"


class SeededTestVectorSource:
    """ChaCha20 keystream keyed by HKDF(seed). NOT SECRET: for known-answer vectors only.

    The stream is continuous across calls, so the bytes consumed do not depend on
    how a draw is split into calls.
    """

    def __init__(self, seed: bytes) -> None:
        if not isinstance(seed, bytes | bytearray) or len(seed) == 0:
            raise TypeError("seed must be non-empty bytes")
        key = hkdf(bytes(seed), Label.TEST_VECTOR_ENTROPY, encode_context("dp-noise"))
        cipher = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None)
        self._stream = cipher.encryptor()

    def random_bytes(self, n: int) -> bytes:
        if n < 0:
            raise ValueError("n must be >= 0")
        return self._stream.update(bytes(n))

    def __repr__(self) -> str:
        return "SeededTestVectorSource(<test vectors only>)"


def default_source() -> RandomSource:
    """The source used when a caller passes none: always the OS CSPRNG."""
    return CryptoRandomSource()


def uniform_words(source: RandomSource, count: int) -> U64:
    """``count`` independent uniform 64-bit words (little-endian reinterpretation of bytes)."""
    raw = source.random_bytes(8 * count)
    return np.frombuffer(raw, dtype="<u8").astype(np.uint64)


def randbelow(source: RandomSource, m: int) -> int:
    """Uniform integer in ``[0, m)`` by rejection (exact for any ``m >= 1``)."""
    if m < 1:
        raise ValueError("m must be >= 1")
    nbits = max(1, (m - 1).bit_length())
    nbytes = (nbits + 7) // 8
    mask = (1 << nbits) - 1
    while True:
        v = int.from_bytes(source.random_bytes(nbytes), "big") & mask
        if v < m:
            return v


def uniform_below(source: RandomSource, m: npt.NDArray[np.uint64]) -> U64:
    """Vectorized exact uniform integers in ``[0, m_i)`` for each ``1 <= m_i < 2^63``.

    A 64-bit word ``w`` is accepted when ``w < floor((2^64-1)/m)*m`` (a multiple
    of ``m``), so ``w mod m`` is exactly uniform; rejected slots draw again.
    """
    m = np.asarray(m, dtype=np.uint64)
    out = np.empty(m.shape, dtype=np.uint64)
    limit = (np.uint64(0xFFFFFFFFFFFFFFFF) // m) * m
    pending = np.arange(m.size)
    while pending.size:
        w = uniform_words(source, pending.size)
        ok = w < limit[pending]
        idx = pending[ok]
        out[idx] = w[ok] % m[idx]
        pending = pending[~ok]
    return out


def uniform_unit(source: RandomSource, count: int) -> npt.NDArray[np.float64]:
    """``count`` uniform floats in ``[0, 1)`` with 53 random bits each (for rounding only)."""
    w = uniform_words(source, count) >> np.uint64(11)
    return w.astype(np.float64) * (1.0 / (1 << 53))
