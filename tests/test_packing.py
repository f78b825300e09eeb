"""Bit-packed wire format: exact round trips, canonical lengths and padding."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.errors import ConfigError, MessageDecodeError
from secagg.packing import bit_width, pack, packed_size, unpack

COUNTS = (0, 1, 7, 8, 9, 1000)


def random_values(rng: np.random.Generator, bits: int, count: int) -> np.ndarray:
    """Uniform values in [0, 2**bits) as uint64 (top bits of a full 64-bit draw)."""
    full = rng.integers(0, 2**64 - 1, size=count, dtype=np.uint64, endpoint=True)
    return full >> np.uint64(64 - bits)


def reference_pack(values: np.ndarray, bits: int) -> bytes:
    """The wire format written out with Python big ints: element i at bit i*bits, LSB first."""
    acc = 0
    for i, v in enumerate(values.tolist()):
        acc |= int(v) << (i * bits)
    return acc.to_bytes(packed_size(len(values), bits), "little")


@pytest.mark.parametrize("bits", range(1, 65))
def test_round_trip_every_width(bits: int) -> None:
    rng = np.random.default_rng(bits)
    for count in COUNTS:
        values = random_values(rng, bits, count)
        if count:
            values[0] = (1 << bits) - 1  # the largest value always appears
        dtypes = [np.uint64, np.uint32] if bits <= 32 else [np.uint64]
        for dtype in dtypes:
            typed = values.astype(dtype)
            data = pack(typed, bits)
            assert isinstance(data, bytes)
            assert len(data) == packed_size(count, bits) == -(-count * bits // 8)
            assert data == reference_pack(typed, bits)
            back = unpack(data, bits, count, dtype)
            assert back.dtype == np.dtype(dtype)
            assert np.array_equal(back, typed)


@pytest.mark.parametrize("bits", [1, 3, 7, 9, 17, 31, 33, 63])
def test_nonzero_padding_rejected(bits: int) -> None:
    count = 9  # 9 * bits is never a multiple of 8 for odd bits
    assert (count * bits) % 8 != 0
    data = bytearray(pack(np.zeros(count, dtype=np.uint64), bits))
    data[-1] |= 0x80  # the most significant bit of the last byte is padding
    with pytest.raises(MessageDecodeError):
        unpack(bytes(data), bits, count)


@pytest.mark.parametrize("bits", [1, 8, 12, 16, 17, 32, 40, 64])
def test_wrong_length_rejected(bits: int) -> None:
    count = 9
    data = pack(np.ones(count, dtype=np.uint64), bits)
    for bad in (data[:-1], data + b"\x00", b""):
        with pytest.raises(MessageDecodeError):
            unpack(bad, bits, count)
    with pytest.raises(MessageDecodeError):
        unpack(b"\x00", bits, 0)


@pytest.mark.parametrize("bits", [1, 5, 8, 16, 17, 31, 33, 63])
def test_value_too_large_refused(bits: int) -> None:
    values = np.zeros(4, dtype=np.uint64)
    values[2] = 1 << bits
    with pytest.raises(ConfigError):
        pack(values, bits)


def test_argument_checks() -> None:
    with pytest.raises(ConfigError):
        pack(np.zeros(3, dtype=np.int64), 8)  # signed: not a Z_R vector
    with pytest.raises(ConfigError):
        pack(np.zeros((2, 2), dtype=np.uint32), 8)
    for bits in (0, 65, True):
        with pytest.raises(ConfigError):
            pack(np.zeros(3, dtype=np.uint64), bits)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        unpack(b"\x00" * 5, 33, 1, np.uint32)  # uint32 cannot hold 33-bit values
    with pytest.raises(ConfigError):
        packed_size(-1, 8)


def test_bit_width() -> None:
    assert bit_width(2) == 1
    assert bit_width(3) == 2
    assert bit_width(4) == 2
    assert bit_width(5) == 3
    assert bit_width(2**17) == 17
    assert bit_width(2**17 + 1) == 18
    assert bit_width(2**32) == 32
    assert bit_width(2**64) == 64
    assert bit_width(2**64 - 1) == 64
    for bad in (0, 1, 2**64 + 1):
        with pytest.raises(ConfigError):
            bit_width(bad)


@settings(max_examples=200, deadline=None)
@given(bits=st.integers(1, 64), count=st.integers(0, 300), seed=st.integers(0, 2**32 - 1))
def test_round_trip_property(bits: int, count: int, seed: int) -> None:
    values = random_values(np.random.default_rng(seed), bits, count)
    data = pack(values, bits)
    assert data == reference_pack(values, bits)
    assert np.array_equal(unpack(data, bits, count), values)


@settings(max_examples=200, deadline=None)
@given(bits=st.integers(1, 64), count=st.integers(0, 40), data=st.data())
def test_unpack_accepts_only_canonical_bytes(bits: int, count: int, data: st.DataObject) -> None:
    """Bytes of the right length unpack iff the padding is zero, and repack to themselves."""
    raw = data.draw(st.binary(min_size=packed_size(count, bits), max_size=packed_size(count, bits)))
    as_int = int.from_bytes(raw, "little")
    canonical = as_int >> (count * bits) == 0
    if canonical:
        values = unpack(raw, bits, count)
        assert pack(values, bits) == raw
    else:
        with pytest.raises(MessageDecodeError):
            unpack(raw, bits, count)
