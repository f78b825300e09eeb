"""Modular accumulate kernels for the server's running sum (acc = acc ± vec mod R).

The server adds every masked input into one accumulator as it arrives and
subtracts every reconstructed mask, so these loops dominate server time after
the PRG. Why numba, and why this shape:

* numpy needs either a ``%`` per add (~10x slower) or a lazy reduction that
  risks overflow; a fused compare-subtract loop does one pass and never
  overflows.
* Kernels are serial and ``nogil`` (no ``parallel=True``): the OpenMP/TBB layer
  collapses when other cores are busy, which is normal in an FL simulation.
  Callers that want parallelism split the vector and drive the kernels from
  their own thread pool.
* ``cache=True`` so the JIT cost (seconds) is paid once per machine.

Precondition (not checked, it would cost a full pass): every value of ``acc``
and ``vec`` is already ``< R``. Masks from :func:`secagg.crypto.prg.expand_mask`
and decoded inputs satisfy it; with it, results stay ``< R`` exactly.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from secagg.checks import is_int_like
from secagg.errors import ConfigError

__all__ = ["add_into", "compact_below", "sub_into"]

_FULL_WIDTH = {np.dtype(np.uint32): 1 << 32, np.dtype(np.uint64): 1 << 64}


# --- kernels ------------------------------------------------------------------------------------
# uint32 operands are promoted to 64-bit inside numba, so sums of two values < 2**32
# never overflow there; uint64 operands wrap, which the general kernels detect with
# ``s < a``. Storing into the uint32/uint64 array truncates, i.e. reduces mod 2**w.


@njit(cache=True, nogil=True)
def _add_wrap(acc: np.ndarray, vec: np.ndarray) -> None:  # pragma: no cover - JIT compiled
    for i in range(acc.shape[0]):
        acc[i] = acc[i] + vec[i]


@njit(cache=True, nogil=True)
def _sub_wrap(acc: np.ndarray, vec: np.ndarray) -> None:  # pragma: no cover - JIT compiled
    for i in range(acc.shape[0]):
        acc[i] = acc[i] - vec[i]


@njit(cache=True, nogil=True)
def _add_pow2(acc: np.ndarray, vec: np.ndarray, mask: np.uint64) -> None:  # pragma: no cover
    for i in range(acc.shape[0]):
        acc[i] = (np.uint64(acc[i]) + np.uint64(vec[i])) & mask


@njit(cache=True, nogil=True)
def _sub_pow2(acc: np.ndarray, vec: np.ndarray, mask: np.uint64) -> None:  # pragma: no cover
    for i in range(acc.shape[0]):
        acc[i] = (np.uint64(acc[i]) - np.uint64(vec[i])) & mask


@njit(cache=True, nogil=True)
def _add_mod(acc: np.ndarray, vec: np.ndarray, modulus: np.uint64) -> None:  # pragma: no cover
    for i in range(acc.shape[0]):
        a = np.uint64(acc[i])
        s = a + np.uint64(vec[i])
        # s < a: the uint64 sum wrapped, so the true sum is >= 2**64 > R.
        if s >= modulus or s < a:
            s -= modulus
        acc[i] = s


@njit(cache=True, nogil=True)
def _sub_mod(acc: np.ndarray, vec: np.ndarray, modulus: np.uint64) -> None:  # pragma: no cover
    for i in range(acc.shape[0]):
        a = np.uint64(acc[i])
        b = np.uint64(vec[i])
        d = a - b
        if a < b:
            d += modulus  # wraps back into [0, R) modulo 2**64
        acc[i] = d


@njit(cache=True, nogil=True)
def _compact_below(words: np.ndarray, mask: np.uint64, bound: np.uint64) -> int:  # pragma: no cover
    # Branch-free: always store, advance only on accept. With a data-dependent
    # branch instead, mispredictions made this 1.7-6x slower on random words.
    k = 0
    for i in range(words.shape[0]):
        v = np.uint64(words[i]) & mask
        words[k] = v
        k += int(v < bound)
    return k


# --- wrappers -----------------------------------------------------------------------------------


def _flat_operands(acc: np.ndarray, vec: np.ndarray, modulus: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate the operands and return 1-D views; the kernels never see a bad layout."""
    if not isinstance(acc, np.ndarray) or not isinstance(vec, np.ndarray):
        raise ConfigError("acc and vec must be numpy arrays")
    if acc.dtype not in _FULL_WIDTH:
        raise ConfigError(f"acc dtype must be uint32 or uint64, got {acc.dtype}")
    if vec.dtype != acc.dtype:
        raise ConfigError(f"vec dtype {vec.dtype} differs from acc dtype {acc.dtype}")
    if acc.shape != vec.shape:
        raise ConfigError(f"shape mismatch: acc {acc.shape}, vec {vec.shape}")
    if not acc.flags.c_contiguous or not vec.flags.c_contiguous:
        raise ConfigError("acc and vec must be C-contiguous")
    if not acc.flags.writeable:
        raise ConfigError("acc must be writeable")
    if not is_int_like(modulus):
        raise ConfigError("modulus must be an integer")
    if not 2 <= int(modulus) <= _FULL_WIDTH[acc.dtype]:
        raise ConfigError(f"modulus out of range for dtype {acc.dtype}")
    return acc.reshape(-1), vec.reshape(-1)


def _dispatch(acc: np.ndarray, vec: np.ndarray, modulus: int, *, add: bool) -> None:
    a, v = _flat_operands(acc, vec, modulus)
    modulus = int(modulus)
    if modulus == _FULL_WIDTH[a.dtype]:
        (_add_wrap if add else _sub_wrap)(a, v)
    elif modulus & (modulus - 1) == 0:
        (_add_pow2 if add else _sub_pow2)(a, v, np.uint64(modulus - 1))
    else:
        (_add_mod if add else _sub_mod)(a, v, np.uint64(modulus))


def add_into(acc: np.ndarray, vec: np.ndarray, modulus: int) -> None:
    """In place: ``acc = (acc + vec) mod modulus``.

    ``acc`` and ``vec`` must share dtype (uint32 or uint64) and shape, be
    C-contiguous, and hold values ``< modulus`` (precondition, not checked).
    Raises :class:`ConfigError` on a bad layout or a modulus the dtype cannot hold.
    """
    _dispatch(acc, vec, modulus, add=True)


def sub_into(acc: np.ndarray, vec: np.ndarray, modulus: int) -> None:
    """In place: ``acc = (acc - vec) mod modulus``; same contract as :func:`add_into`."""
    _dispatch(acc, vec, modulus, add=False)


def compact_below(words: np.ndarray, mask: int, bound: int) -> int:
    """Rejection-sampling step, in place: keep ``w & mask`` for each word with ``w & mask < bound``.

    The kept values are moved, in order, to the front of ``words`` and their
    count is returned; the tail is left unspecified. One fused, branch-free pass
    replaces numpy's mask / compare / boolean-compress (three passes and two
    temporaries): 2-9x faster on 1M random words, depending on the reject rate.
    """
    if not isinstance(words, np.ndarray) or words.dtype not in _FULL_WIDTH or words.ndim != 1:
        raise ConfigError("words must be a 1-D uint32 or uint64 array")
    if not words.flags.c_contiguous or not words.flags.writeable:
        raise ConfigError("words must be C-contiguous and writeable")
    limit = _FULL_WIDTH[words.dtype]
    if not (0 <= int(mask) < limit and 0 < int(bound) < limit):
        raise ConfigError(f"mask and bound must fit in {words.dtype}")
    return int(_compact_below(words, np.uint64(mask), np.uint64(bound)))
