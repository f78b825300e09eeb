"""numba kernels for the bit-packed wire format of Z_R vectors.

Element ``i`` of a packed vector occupies bits ``[i*b, (i+1)*b)`` of the byte
string, least significant bit first; the last partial byte is zero-padded.
:mod:`secagg.packing` validates arguments and handles byte-aligned widths with
plain numpy views; these kernels do the other widths.

Why the values are moved 32 bits at a time: the accumulator is a ``uint64`` that
may already hold up to 7 pending bits, so adding a whole 64-bit element would
need a 71-bit register, and shifting a ``uint64`` by 64 is undefined behaviour
in LLVM. Moving at most 32 bits per step keeps every shift below 40 and every
intermediate inside 64 bits, for any width from 1 to 64.

The kernels are serial and release the GIL (``nogil``), so callers may run
several in threads; they do not check their arguments (the wrapper does).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_ZERO = np.uint64(0)
_ONE = np.uint64(1)
_BYTE = np.uint64(0xFF)
_LOW32 = np.uint64(0xFFFFFFFF)


@njit(cache=True, nogil=True, inline="always")
def _emit_bytes(out: np.ndarray, pos: int, acc: np.uint64,
                nacc: np.uint64) -> tuple[int, np.uint64, np.uint64]:  # pragma: no cover
    """Write the whole bytes pending in ``acc`` (``nacc`` bits) to ``out`` from ``pos``;
    the new position and the fewer than 8 bits left. Inlined: this is the packer's hot loop."""
    eight = np.uint64(8)
    while nacc >= eight:
        out[pos] = np.uint8(acc & _BYTE)
        pos += 1
        acc >>= eight
        nacc -= eight
    return pos, acc, nacc


@njit(cache=True, nogil=True)
def pack_bits(values: np.ndarray, bits: int, out: np.ndarray) -> None:  # pragma: no cover
    """Pack ``values`` (each ``< 2**bits``) into the ``uint8`` buffer ``out``.

    ``out`` must have exactly ``ceil(len(values) * bits / 8)`` bytes; every byte
    of it is written, so it need not be zeroed first.
    """
    b = np.uint64(bits)
    lo_bits = np.uint64(32) if bits > 32 else b
    hi_bits = b - lo_bits
    acc = _ZERO
    nacc = _ZERO  # pending bits in acc, always < 8 between steps
    pos = 0
    for i in range(values.shape[0]):
        v = np.uint64(values[i])
        acc |= (v & _LOW32) << nacc
        pos, acc, nacc = _emit_bytes(out, pos, acc, nacc + lo_bits)
        if hi_bits > _ZERO:
            acc |= (v >> np.uint64(32)) << nacc
            pos, acc, nacc = _emit_bytes(out, pos, acc, nacc + hi_bits)
    if nacc > _ZERO:
        out[pos] = np.uint8(acc & _BYTE)


@njit(cache=True, nogil=True)
def unpack_bits(data: np.ndarray, bits: int, out: np.ndarray) -> bool:  # pragma: no cover
    """Unpack ``len(out)`` elements of ``bits`` bits from the ``uint8`` array ``data``.

    ``data`` must hold exactly ``ceil(len(out) * bits / 8)`` bytes. Returns
    ``True`` when the padding bits after the last element are all zero, which
    the wire format requires (a canonical encoding: one vector, one byte string).
    """
    b = np.uint64(bits)
    lo_bits = np.uint64(32) if bits > 32 else b
    hi_bits = b - lo_bits
    lo_mask = (_ONE << lo_bits) - _ONE
    hi_mask = (_ONE << hi_bits) - _ONE
    acc = _ZERO
    nacc = _ZERO  # buffered bits in acc, always < 40
    pos = 0
    eight = np.uint64(8)
    for i in range(out.shape[0]):
        while nacc < lo_bits:
            acc |= np.uint64(data[pos]) << nacc
            pos += 1
            nacc += eight
        v = acc & lo_mask
        acc >>= lo_bits
        nacc -= lo_bits
        if hi_bits > _ZERO:
            while nacc < hi_bits:
                acc |= np.uint64(data[pos]) << nacc
                pos += 1
                nacc += eight
            v |= (acc & hi_mask) << np.uint64(32)
            acc >>= hi_bits
            nacc -= hi_bits
        out[i] = v
    return bool(acc == _ZERO)
