"""The numpy and numba paths of the kernels give the same results, element for element.

Short vectors skip numba (secagg.kernels.arith.JIT_MIN_SIZE) so a Flower client that
starts a process per message does not load it; every result must be identical to the
kernels', or the test vectors and a mixed cohort's sums would differ.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg import packing
from secagg.kernels import arith
from secagg.kernels.arith import add_into, compact_below, sub_into

MODULI = [2, 3, 2**16, 2**20, 2**31 - 1, 2**32 - 5, 2**32, 2**33, 2**61 - 1, 2**64 - 59, 2**64]


@contextmanager
def _path(jit: bool) -> Iterator[None]:
    """Force one path: numba (threshold 0) or numpy (kernels marked unloaded, no threshold)."""
    saved = arith.JIT_MIN_SIZE, arith._kernels
    try:
        if jit:
            arith.JIT_MIN_SIZE = 0
            arith._jit()
        else:
            arith.JIT_MIN_SIZE, arith._kernels = 1 << 62, None
        yield
    finally:
        arith.JIT_MIN_SIZE, arith._kernels = saved


def _both(fn: Callable[[], object]) -> tuple[object, object]:
    with _path(jit=False):
        a = fn()
    with _path(jit=True):
        b = fn()
    return a, b


@st.composite
def vectors(draw: st.DrawFn) -> tuple[int, np.ndarray, np.ndarray]:
    modulus = draw(st.one_of(st.sampled_from(MODULI), st.integers(2, 2**64)))
    dtype = np.uint32 if modulus <= 2**32 and draw(st.booleans()) else np.uint64
    edges = [0, 1, modulus // 2, modulus - 2, modulus - 1]
    value = st.one_of(st.integers(0, modulus - 1), st.sampled_from([e for e in edges if e >= 0]))
    n = draw(st.integers(0, 50))
    a = np.array(draw(st.lists(value, min_size=n, max_size=n)), dtype=dtype)
    b = np.array(draw(st.lists(value, min_size=n, max_size=n)), dtype=dtype)
    return modulus, a, b


@settings(max_examples=300, deadline=None)
@given(vectors())
def test_add_sub_same_on_both_paths(args: tuple[int, np.ndarray, np.ndarray]) -> None:
    modulus, a, b = args
    for op in (add_into, sub_into):
        def run(op: Callable[[np.ndarray, np.ndarray, int], None] = op) -> list[int]:
            acc = a.copy()
            op(acc, b, modulus)
            return acc.tolist()
        numpy_result, jit_result = _both(run)
        assert numpy_result == jit_result


@settings(max_examples=100, deadline=None)
@given(words=st.lists(st.integers(0, 2**64 - 1), max_size=60), bits=st.integers(1, 64),
       data=st.data())
def test_compact_below_same_on_both_paths(words: list[int], bits: int,
                                          data: st.DataObject) -> None:
    mask = (1 << bits) - 1
    bound = data.draw(st.integers(1, min(mask, 2**64 - 1)))
    arr = np.array(words, dtype=np.uint64)

    def run() -> list[int]:
        w = arr.copy()
        return w[: compact_below(w, mask, bound)].tolist()

    numpy_result, jit_result = _both(run)
    assert numpy_result == jit_result == [x & mask for x in words if x & mask < bound]


@settings(max_examples=200, deadline=None)
@given(bits=st.integers(1, 64), count=st.integers(0, 70), seed=st.integers(0, 2**32 - 1))
def test_pack_unpack_same_on_both_paths(bits: int, count: int, seed: int) -> None:
    dtype = np.uint32 if bits <= 32 else np.uint64
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 1 << bits, size=count, dtype=np.uint64).astype(dtype)
    numpy_bytes, jit_bytes = _both(lambda: packing.pack(values, bits))
    assert numpy_bytes == jit_bytes
    assert isinstance(jit_bytes, bytes)
    numpy_back, jit_back = _both(lambda: packing.unpack(jit_bytes, bits, count, dtype).tolist())
    assert numpy_back == jit_back == values.tolist()


@pytest.mark.parametrize("count", [1 << 14, (1 << 14) + 3, 3 * (1 << 14) + 5])
def test_numpy_pack_across_chunks(count: int) -> None:
    """The numpy packer works in chunks: their joins must not shift a bit."""
    values = np.random.default_rng(count).integers(0, 1 << 17, size=count, dtype=np.uint32)
    numpy_bytes, jit_bytes = _both(lambda: packing.pack(values, 17))
    assert numpy_bytes == jit_bytes
    with _path(jit=False):
        assert packing.unpack(numpy_bytes, 17, count, np.uint32).tolist() == values.tolist()


def test_nonzero_padding_refused_on_numpy_path() -> None:
    data = bytearray(packing.pack(np.array([5, 6, 7], dtype=np.uint32), 5))  # 15 bits
    data[-1] |= 0x80  # the one padding bit
    with _path(jit=False), pytest.raises(Exception, match="padding"):
        packing.unpack(bytes(data), 5, 3, np.uint32)


def test_short_vectors_do_not_import_numba() -> None:
    """A fresh process adding and packing a short vector never imports numba."""
    code = (
        "import sys, numpy as np\n"
        "from secagg.kernels.arith import add_into\n"
        "from secagg.packing import pack, unpack\n"
        "a = np.arange(1000, dtype=np.uint32)\n"
        "add_into(a, a.copy(), 2**20 - 3)\n"
        "unpack(pack(a, 20), 20, a.size, np.uint32)\n"
        "print('numba' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
