"""Modular wrap into Z_R, R = 2^B, and the server's centring (spec §21.5)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from secagg.dp.errors import DPConfigError

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
MIN_BITS, MAX_BITS = 2, 62


def check_bits(bits: int) -> int:
    """Refuse bit widths outside [2, 62] (the centred value must fit an int64)."""
    if not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise DPConfigError(f"bits must be an integer in [{MIN_BITS}, {MAX_BITS}]")
    return bits


def wrap(v: I64, bits: int) -> U64:
    """Map integers to their residues in [0, 2^B)."""
    check_bits(bits)
    return (np.asarray(v, dtype=np.int64).view(np.uint64) & np.uint64((1 << bits) - 1)).copy()


def add_mod(a: U64, b: U64, bits: int) -> U64:
    """(a + b) mod 2^B, the secure sum's arithmetic."""
    return (a + b) & np.uint64((1 << bits) - 1)


def centre(s: U64, bits: int) -> I64:
    """The representative of each residue in [−R/2, R/2)."""
    check_bits(bits)
    half = np.int64(1 << (bits - 1))
    v = (np.asarray(s, dtype=np.uint64) & np.uint64((1 << bits) - 1)).astype(np.int64)
    return np.where(v >= half, v - np.int64(1 << bits), v)
