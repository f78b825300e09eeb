"""Rotation, rounding and modular wrap of secagg.dp (spec §21.3-§21.5)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.linalg import hadamard

from secagg.dp.errors import DPConfigError
from secagg.dp.randomness import SeededTestVectorSource
from secagg.dp.ring import add_mod, centre, check_bits, wrap
from secagg.dp.rotation import fwht, padded_dim, rotate, rotation_signs, unrotate
from secagg.dp.rounding import clip_l2, conditional_round, rounded_norm_bound
from secagg.errors import ConfigError

SID = bytes(range(32))


def test_fwht_matches_hadamard_matrix() -> None:
    x = np.arange(16, dtype=np.float64) ** 1.5
    assert np.allclose(fwht(x), hadamard(16) @ x)
    with pytest.raises(ValueError):
        fwht(np.zeros(12))


def test_rotation_is_orthogonal_and_inverse_exact() -> None:
    n = 32
    signs = rotation_signs(SID, 0, n)
    q = np.stack([rotate(e, signs) for e in np.eye(n)], axis=1)
    assert np.allclose(q.T @ q, np.eye(n), atol=1e-12)
    rng_vals = np.linspace(-3, 7, 27)
    y = rotate(rng_vals, signs)
    assert np.linalg.norm(y) == pytest.approx(np.linalg.norm(rng_vals), rel=1e-12)
    assert np.max(np.abs(unrotate(y, signs, 27) - rng_vals)) < 1e-12


def test_signs_are_bound_to_session_and_round() -> None:
    a = rotation_signs(SID, 0, 4096)
    assert set(np.unique(a)) == {-1.0, 1.0}
    assert not np.array_equal(a, rotation_signs(SID, 1, 4096))
    assert not np.array_equal(a, rotation_signs(b"\x01" + SID[1:], 0, 4096))
    assert np.array_equal(a, rotation_signs(SID, 0, 4096))
    assert abs(a.sum()) < 5 * math.sqrt(4096)


def test_padded_dim() -> None:
    assert [padded_dim(d) for d in (1, 2, 3, 1000, 1024, 1025)] == [1, 2, 4, 1024, 1024, 2048]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-10, 10), min_size=1, max_size=64), st.floats(0.5, 200.0),
       st.sampled_from([0.0, 0.01, math.exp(-0.5)]))
def test_conditional_rounding_bound_holds(xs: list[float], gamma: float, beta: float) -> None:
    x = clip_l2(np.array(xs), 1.0)
    assert np.linalg.norm(x) <= 1.0 + 1e-12
    bound = rounded_norm_bound(1.0, gamma, len(xs), beta)
    r = conditional_round(x * gamma, bound, SeededTestVectorSource(b"round"))
    assert float(np.linalg.norm(r)) <= bound
    assert np.all(np.abs(r - x * gamma) < 1)


def test_rounding_is_unbiased() -> None:
    y = np.full(200_000, 0.3)
    r = conditional_round(y, 1e9, SeededTestVectorSource(b"unbiased"))
    assert abs(r.mean() - 0.3) < 5 * math.sqrt(0.21 / y.size)


def test_wrap_and_centre_round_trip() -> None:
    v = np.array([-2048, -1, 0, 1, 2047, 5000], dtype=np.int64)
    w = wrap(v, 12)
    assert w.max() < 4096
    assert centre(w, 12).tolist() == [-2048, -1, 0, 1, 2047, 5000 - 4096]
    s = add_mod(wrap(np.array([2000]), 12), wrap(np.array([100]), 12), 12)
    assert centre(s, 12).tolist() == [2100 - 4096]


@pytest.mark.parametrize("bits", [0, 1, 63, 64, 16.0])
def test_unsafe_bit_widths_are_refused(bits: object) -> None:
    with pytest.raises(ConfigError):
        check_bits(bits)  # type: ignore[arg-type]
    with pytest.raises(DPConfigError):
        wrap(np.zeros(2, dtype=np.int64), bits)  # type: ignore[arg-type]


def test_block_sizes() -> None:
    from secagg.dp.rotation import block_sizes

    assert block_sizes(650) == (1024,)
    assert block_sizes(650, 16) == (512, 128, 16)
    assert block_sizes(650, 64) == (512, 128, 64)
    assert block_sizes(1000, 64) == (1024,)
    assert block_sizes(5, 2) == (4, 2)
    assert block_sizes(3, 8) == (8,)
    for bad in (3, -4):
        with pytest.raises(ValueError, match="power of two"):
            block_sizes(10, bad)


@given(st.integers(1, 300), st.sampled_from([0, 1, 2, 8, 32]))
@settings(max_examples=40, deadline=None)
def test_block_rotation_is_orthogonal_and_inverse_exact(dim: int, min_block: int) -> None:
    from secagg.dp.rotation import block_sizes, rotate_blocks, unrotate_blocks

    sizes = block_sizes(dim, min_block)
    n = sum(sizes)
    assert dim <= n < dim + max(min_block, 1) or sizes == (padded_dim(dim),)
    signs = rotation_signs(bytes(32), 1, n)
    x = np.random.default_rng(dim).normal(size=dim)
    y = rotate_blocks(x, signs, sizes)
    assert np.linalg.norm(y) == pytest.approx(np.linalg.norm(x), rel=1e-12)
    assert np.allclose(unrotate_blocks(y, signs, sizes, dim), x, atol=1e-12)
    # one block is the original rotation, bit for bit
    one = (padded_dim(dim),)
    s1 = rotation_signs(bytes(32), 1, one[0])
    assert np.array_equal(rotate_blocks(x, s1, one), rotate(x, s1))
