"""The numba kernels behind :mod:`secagg.kernels.arith` (imported only when they pay off).

Kept apart so that importing :mod:`secagg.kernels.arith` does not import numba
(about 0.2 s, more than a whole Flower client message at small sizes): the
wrappers there load this module on the first vector of at least
:data:`secagg.kernels.arith.JIT_MIN_SIZE` elements. See that module's docstring
for why the loops have this shape; the wrappers check every argument.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# uint32 operands are promoted to 64-bit inside numba, so sums of two values < 2**32
# never overflow there; uint64 operands wrap, which the general kernels detect with
# ``s < a``. Storing into the uint32/uint64 array truncates, i.e. reduces mod 2**w.


@njit(cache=True, nogil=True)
def add_wrap(acc: np.ndarray, vec: np.ndarray) -> None:  # pragma: no cover - JIT compiled
    for i in range(acc.shape[0]):
        acc[i] = acc[i] + vec[i]


@njit(cache=True, nogil=True)
def sub_wrap(acc: np.ndarray, vec: np.ndarray) -> None:  # pragma: no cover - JIT compiled
    for i in range(acc.shape[0]):
        acc[i] = acc[i] - vec[i]


@njit(cache=True, nogil=True)
def add_pow2(acc: np.ndarray, vec: np.ndarray, mask: np.uint64) -> None:  # pragma: no cover
    for i in range(acc.shape[0]):
        acc[i] = (np.uint64(acc[i]) + np.uint64(vec[i])) & mask


@njit(cache=True, nogil=True)
def sub_pow2(acc: np.ndarray, vec: np.ndarray, mask: np.uint64) -> None:  # pragma: no cover
    for i in range(acc.shape[0]):
        acc[i] = (np.uint64(acc[i]) - np.uint64(vec[i])) & mask


@njit(cache=True, nogil=True)
def add_mod(acc: np.ndarray, vec: np.ndarray, modulus: np.uint64) -> None:  # pragma: no cover
    for i in range(acc.shape[0]):
        a = np.uint64(acc[i])
        s = a + np.uint64(vec[i])
        # s < a: the uint64 sum wrapped, so the true sum is >= 2**64 > R.
        if s >= modulus or s < a:
            s -= modulus
        acc[i] = s


@njit(cache=True, nogil=True)
def sub_mod(acc: np.ndarray, vec: np.ndarray, modulus: np.uint64) -> None:  # pragma: no cover
    for i in range(acc.shape[0]):
        a = np.uint64(acc[i])
        b = np.uint64(vec[i])
        d = a - b
        if a < b:
            d += modulus  # wraps back into [0, R) modulo 2**64
        acc[i] = d


@njit(cache=True, nogil=True)
def compact_below(words: np.ndarray, mask: np.uint64, bound: np.uint64) -> int:  # pragma: no cover
    # Branch-free: always store, advance only on accept. With a data-dependent
    # branch instead, mispredictions made this 1.7-6x slower on random words.
    k = 0
    for i in range(words.shape[0]):
        v = np.uint64(words[i]) & mask
        words[k] = v
        k += int(v < bound)
    return k
