"""Bit-packed wire format for vectors in Z_R (spec §10.5).

A masked input is a vector of integers below ``R``; sending each one in a whole
``uint32``/``uint64`` wastes up to half the bandwidth when ``R`` is, say, 2**17.
The wire format therefore uses ``b = ceil(log2 R)`` bits per element: element
``i`` occupies bits ``[i*b, (i+1)*b)`` of the byte string, least significant bit
first, and the final partial byte is zero-padded. Exactly one byte string
encodes a given vector (the length and the padding are checked), so a decoder
never accepts two encodings of one message.

Byte-aligned widths (8, 16, 32, 64) are plain little-endian arrays and go
through numpy; every other width goes through the numba kernel in
:mod:`secagg.kernels.bitpack` when :func:`~secagg.kernels.arith.use_jit` says
numba pays off, otherwise through numpy's ``packbits``/``unpackbits`` (the same
bytes, in chunks of a bounded size), so a short vector never pays for importing numba.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import DTypeLike

from secagg.checks import is_int_like
from secagg.errors import ConfigError, MessageDecodeError
from secagg.kernels.arith import use_jit

MAX_BITS: Final = 64
_ALIGNED: Final = frozenset({8, 16, 32, 64})
_VALUE_DTYPES: Final = (np.dtype(np.uint32), np.dtype(np.uint64))


def _check_bits(bits: int) -> None:
    if not is_int_like(bits):
        raise ConfigError("bits must be an int")
    if not 1 <= bits <= MAX_BITS:
        raise ConfigError(f"bits must be between 1 and {MAX_BITS}")


def bit_width(modulus: int) -> int:
    """Bits per element for Z_R: ``ceil(log2 R)`` (R = 2**32 gives 32, R = 3 gives 2).

    Computed with integer arithmetic, because ``math.log2`` rounds for large R.
    """
    if not is_int_like(modulus):
        raise ConfigError("modulus must be an int")
    modulus = int(modulus)
    if not 2 <= modulus <= 2**MAX_BITS:
        raise ConfigError(f"modulus must be between 2 and 2**{MAX_BITS}")
    return (modulus - 1).bit_length()


def packed_size(count: int, bits: int) -> int:
    """Exact byte length of ``count`` packed elements: ``ceil(count * bits / 8)``."""
    _check_bits(bits)
    if not is_int_like(count) or count < 0:
        raise ConfigError("count must be a non-negative int")
    return (int(count) * int(bits) + 7) // 8


def pack(values: np.ndarray, bits: int) -> bytes:
    """Encode a 1-D ``uint32``/``uint64`` vector, each element ``< 2**bits``, as bytes.

    An element that does not fit is refused rather than truncated: silently
    dropping high bits would corrupt the aggregate without any error downstream.
    """
    _check_bits(bits)
    if not isinstance(values, np.ndarray) or values.dtype not in _VALUE_DTYPES:
        raise ConfigError("values must be a numpy uint32 or uint64 array")
    if values.ndim != 1:
        raise ConfigError("values must be one-dimensional")
    bits = int(bits)
    if values.size and bits < values.dtype.itemsize * 8 and int(values.max()) >> bits:
        raise ConfigError("a value does not fit in the requested number of bits")
    if bits in _ALIGNED:
        return values.astype(f"<u{bits // 8}", copy=False).tobytes()
    if not use_jit(values.size):
        return _np_pack(values, bits)
    from secagg.kernels.bitpack import pack_bits  # numba: only for long vectors

    out = np.empty(packed_size(values.size, bits), dtype=np.uint8)
    pack_bits(np.ascontiguousarray(values), bits, out)
    return out.tobytes()


def unpack(data: bytes | bytearray | memoryview, bits: int, count: int,
           dtype: DTypeLike = np.uint64, *, copy: bool = True) -> np.ndarray:
    """Decode ``count`` elements of ``bits`` bits; the exact inverse of :func:`pack`.

    Raises :class:`~secagg.errors.MessageDecodeError` when the length is not
    exactly ``packed_size(count, bits)`` or a padding bit is set, so malformed or
    non-canonical bytes from the network never turn into a vector.
    ``copy=False`` lets a byte-aligned width whose wire type is already ``dtype``
    come back as a read-only view of ``data``: the server adds it into its
    accumulator and drops it, so copying would cost a whole vector (issue 15).
    """
    size = packed_size(count, bits)
    bits, count = int(bits), int(count)
    out_dtype = np.dtype(dtype)
    if out_dtype not in _VALUE_DTYPES:
        raise ConfigError("dtype must be uint32 or uint64")
    if bits > out_dtype.itemsize * 8:
        raise ConfigError("dtype is too narrow for the number of bits")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MessageDecodeError("packed vector must be bytes")
    raw = np.frombuffer(data, dtype=np.uint8)
    if raw.size != size:
        raise MessageDecodeError("packed vector has the wrong length")
    if bits in _ALIGNED:
        wire = np.frombuffer(data, dtype=f"<u{bits // 8}", count=count)
        return wire.astype(out_dtype, copy=copy)
    if not use_jit(count):
        out, canonical = _np_unpack(raw, bits, count, out_dtype)
    else:
        from secagg.kernels.bitpack import unpack_bits  # numba: only for long vectors

        out = np.empty(count, dtype=out_dtype)
        canonical = unpack_bits(raw, bits, out)
    if not canonical:
        raise MessageDecodeError("packed vector has non-zero padding bits")
    return out


_NP_CHUNK: Final = 1 << 14  # values per numpy step: a multiple of 8, so chunks end on a byte


def _np_pack(values: np.ndarray, bits: int) -> bytes:
    """:func:`pack` in numpy: each value's bits LSB first, then eight bits per byte."""
    shifts = np.arange(bits, dtype=values.dtype)
    one = values.dtype.type(1)
    parts = []
    for start in range(0, values.size, _NP_CHUNK):
        matrix = (values[start:start + _NP_CHUNK, None] >> shifts) & one
        parts.append(np.packbits(matrix.astype(np.uint8).reshape(-1), bitorder="little"))
    return b"".join(p.tobytes() for p in parts)


def _np_unpack(raw: np.ndarray, bits: int, count: int,
               dtype: np.dtype) -> tuple[np.ndarray, bool]:
    """:func:`unpack` in numpy: the values, and whether every padding bit is zero."""
    shifts = np.arange(bits, dtype=dtype)
    out = np.empty(count, dtype=dtype)
    step = _NP_CHUNK * bits // 8  # bytes of one chunk of values
    for i, start in enumerate(range(0, count, _NP_CHUNK)):
        n = min(_NP_CHUNK, count - start)
        flat = np.unpackbits(raw[i * step:i * step + step], bitorder="little")
        matrix = flat[: n * bits].reshape(n, bits).astype(dtype)
        out[start:start + n] = np.bitwise_or.reduce(matrix << shifts, axis=1)
    tail = np.unpackbits(raw[-1:], bitorder="little")  # padding bits, all in the last byte
    pad = (-count * bits) % 8
    return out, not (pad and tail[8 - pad:].any())
