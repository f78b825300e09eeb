"""Scaling and conditional randomized rounding (DDG, Kairouz–Liu–Steinke 2021; spec §21.4).

Each coordinate of ``γ·x`` rounds up with probability equal to its fractional part
(unbiased), the whole vector is redrawn until its L2 norm is at most
:func:`rounded_norm_bound`, the L2 sensitivity the accountant uses. With
``beta > 0`` the bound is the DDG one, which a single draw meets with probability
at least ``1 − beta``; with ``beta = 0`` it is the deterministic bound
``cγ + sqrt(d)`` (no redraw ever happens).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from secagg.dp.errors import DPConfigError
from secagg.dp.randomness import RandomSource, default_source, uniform_unit

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
_MAX_DRAWS = 10_000


def rounded_norm_bound(clip: float, gamma: float, dim: int, beta: float) -> float:
    """Upper bound on ||round(γx)||_2 for ||x||_2 <= clip (DDG eq. for conditional rounding)."""
    if not 0 <= beta < 1:
        raise DPConfigError("beta must be in [0, 1)")
    trivial = clip * gamma + math.sqrt(dim)
    if beta == 0:
        return trivial
    sq = (clip * gamma) ** 2 + dim / 4 + math.sqrt(2 * math.log(1 / beta)) * (
        clip * gamma + math.sqrt(dim) / 2
    )
    return min(math.sqrt(sq), trivial)


def clip_l2(x: F64, clip: float) -> F64:
    """Scale ``x`` down to L2 norm ``clip`` if it is longer (never up)."""
    norm = float(np.linalg.norm(x))
    return x if norm <= clip else x * (clip / norm)


def conditional_round(
    y: F64, bound: float, source: RandomSource | None = None
) -> I64:
    """Unbiased randomized rounding of ``y`` to integers, redrawn until ||·||_2 <= bound."""
    src = source or default_source()
    floor = np.floor(y)
    frac = y - floor
    for _ in range(_MAX_DRAWS):
        up = uniform_unit(src, y.size) < frac
        out = (floor + up).astype(np.int64)
        if float(np.dot(out, out)) <= bound * bound:
            return out
    raise DPConfigError("conditional rounding did not meet its bound; input not clipped?")
