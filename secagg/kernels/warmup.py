"""Load the numba kernels of a modulus before a session needs them (spec §10.5).

Compiling or loading a kernel from numba's cache takes seconds when several
processes start at once; paid inside a round it is billed to whichever client
comes first and can push it past the round deadline. The simulator, the
transport client and server all call :func:`warm_up` before a session starts.
"""

from __future__ import annotations

import numpy as np

from secagg.crypto.prg import mask_dtype
from secagg.kernels.arith import JIT_MIN_SIZE, add_into, sub_into

__all__ = ["warm_up"]


def warm_up(modulus: int) -> None:
    """Run the add/sub and bit-(un)packing kernels once mod ``modulus``.

    The vector is the shortest that takes the numba path (``JIT_MIN_SIZE``: shorter
    ones run in numpy and would load nothing); it costs microseconds.
    """
    from secagg.packing import bit_width, pack, unpack  # packing imports secagg.kernels

    dtype = mask_dtype(modulus)
    a = np.zeros(JIT_MIN_SIZE, dtype=dtype)
    add_into(a, a.copy(), modulus)
    sub_into(a, a.copy(), modulus)
    bits = bit_width(modulus)
    unpack(pack(a, bits), bits, a.size, dtype)
