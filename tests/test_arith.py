"""Accumulator kernels against Python big-int arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.errors import ConfigError
from secagg.kernels.arith import add_into, compact_below, sub_into

NAMED_MODULI = [
    2,
    3,
    2**16,
    2**31 - 1,
    2**32 - 5,
    2**32,
    2**33,
    2**61 - 1,
    2**63,
    2**64 - 59,
    2**64,
]


def _dtype(modulus: int) -> type[np.unsignedinteger]:
    return np.uint32 if modulus <= 2**32 else np.uint64


def _edge_values(modulus: int) -> list[int]:
    """Values that hit every branch: 0, 1, around R/2 and just under R."""
    return sorted({0, 1, modulus // 2, (modulus + 1) // 2, modulus - 2, modulus - 1})


@st.composite
def operands(draw: st.DrawFn) -> tuple[int, list[int], list[int], type[np.unsignedinteger]]:
    modulus = draw(st.one_of(st.sampled_from(NAMED_MODULI), st.integers(2, 2**64)))
    dtype = _dtype(modulus)
    if modulus <= 2**32 and draw(st.booleans()):
        dtype = np.uint64  # a uint64 accumulator with a small modulus is allowed too
    value = st.one_of(st.integers(0, modulus - 1), st.sampled_from(_edge_values(modulus)))
    n = draw(st.integers(0, 40))
    a = draw(st.lists(value, min_size=n, max_size=n))
    b = draw(st.lists(value, min_size=n, max_size=n))
    return modulus, a, b, dtype


@settings(max_examples=300, deadline=None)
@given(operands())
def test_add_sub_match_bigint(args: tuple[int, list[int], list[int], type]) -> None:
    modulus, a, b, dtype = args
    acc = np.array(a, dtype=dtype)
    vec = np.array(b, dtype=dtype)
    add_into(acc, vec, modulus)
    assert acc.tolist() == [(x + y) % modulus for x, y in zip(a, b, strict=True)]
    acc = np.array(a, dtype=dtype)
    sub_into(acc, vec, modulus)
    assert acc.tolist() == [(x - y) % modulus for x, y in zip(a, b, strict=True)]
    assert vec.tolist() == b  # vec is never written


@pytest.mark.parametrize("modulus", NAMED_MODULI)
def test_all_edge_pairs(modulus: int) -> None:
    edges = _edge_values(modulus)
    a = [x for x in edges for _ in edges]
    b = [y for _ in edges for y in edges]
    dtype = _dtype(modulus)
    acc = np.array(a, dtype=dtype)
    add_into(acc, np.array(b, dtype=dtype), modulus)
    assert acc.tolist() == [(x + y) % modulus for x, y in zip(a, b, strict=True)]
    acc = np.array(a, dtype=dtype)
    sub_into(acc, np.array(b, dtype=dtype), modulus)
    assert acc.tolist() == [(x - y) % modulus for x, y in zip(a, b, strict=True)]


@pytest.mark.parametrize("modulus", [2**32, 2**32 - 5, 2**20, 2**64, 2**64 - 59])
def test_many_adds_then_subs_round_trip(modulus: int) -> None:
    """The server's pattern: add 20 masked vectors, subtract the masks, get the sum back."""
    rng = np.random.default_rng(1)  # test data only, nothing secret
    dtype = _dtype(modulus)
    hi = min(modulus, 2**63)
    vecs = [rng.integers(0, hi, 1000, dtype=np.uint64).astype(dtype) for _ in range(20)]
    acc = np.zeros(1000, dtype=dtype)
    for v in vecs:
        add_into(acc, v, modulus)
    expected = [sum(int(v[i]) for v in vecs) % modulus for i in range(1000)]
    assert acc.tolist() == expected
    for v in vecs:
        sub_into(acc, v, modulus)
    assert not acc.any()


def test_multidimensional_same_shape() -> None:
    acc = np.full((3, 4), 5, dtype=np.uint32)
    add_into(acc, np.full((3, 4), 4, dtype=np.uint32), 7)
    assert (acc == 2).all()


def test_validation() -> None:
    a32 = np.zeros(4, dtype=np.uint32)
    with pytest.raises(ConfigError):
        add_into(a32, np.zeros(4, dtype=np.uint64), 7)
    with pytest.raises(ConfigError):
        add_into(a32, np.zeros(5, dtype=np.uint32), 7)
    with pytest.raises(ConfigError):
        add_into(np.zeros(4, dtype=np.int32), np.zeros(4, dtype=np.int32), 7)
    with pytest.raises(ConfigError):
        add_into(np.zeros(8, dtype=np.uint32)[::2], a32, 7)
    with pytest.raises(ConfigError):
        sub_into(a32, np.zeros(8, dtype=np.uint32)[::2], 7)
    with pytest.raises(ConfigError):
        add_into(a32, a32.copy(), 2**32 + 1)  # does not fit uint32
    for bad in (1, 0, 2**64 + 1, True, 7.0):
        with pytest.raises(ConfigError):
            add_into(np.zeros(4, dtype=np.uint64), np.zeros(4, dtype=np.uint64), bad)  # type: ignore[arg-type]
    ro = np.zeros(4, dtype=np.uint32)
    ro.flags.writeable = False
    with pytest.raises(ConfigError):
        add_into(ro, a32, 7)
    with pytest.raises(ConfigError):
        add_into([0, 0], [0, 0], 7)  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None)
@given(
    words=st.lists(st.integers(0, 2**32 - 1), max_size=60),
    bits=st.integers(1, 32),
    data=st.data(),
)
def test_compact_below_matches_filter(words: list[int], bits: int, data: st.DataObject) -> None:
    mask = (1 << bits) - 1
    bound = data.draw(st.integers(1, mask))
    arr = np.array(words, dtype=np.uint32)
    k = compact_below(arr, mask, bound)
    expected = [w & mask for w in words if w & mask < bound]
    assert k == len(expected)
    assert arr[:k].tolist() == expected


def test_compact_below_uint64_and_validation() -> None:
    arr = np.array([2**64 - 1, 5, 2**63, 7], dtype=np.uint64)
    assert compact_below(arr, 2**64 - 1, 2**63) == 2
    assert arr[:2].tolist() == [5, 7]
    with pytest.raises(ConfigError):
        compact_below(np.zeros(4, dtype=np.int64), 1, 1)
    with pytest.raises(ConfigError):
        compact_below(np.zeros((2, 2), dtype=np.uint32), 1, 1)
    with pytest.raises(ConfigError):
        compact_below(np.zeros(4, dtype=np.uint32), 2**32, 1)
    with pytest.raises(ConfigError):
        compact_below(np.zeros(4, dtype=np.uint32), 1, 0)
    with pytest.raises(ConfigError):
        compact_below(np.zeros(8, dtype=np.uint32)[::2], 1, 1)
