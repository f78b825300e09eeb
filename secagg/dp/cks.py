"""Exact scalar samplers of Canonne, Kamath and Steinke (NeurIPS 2020), spec §21.2.

Integer and :class:`~fractions.Fraction` arithmetic only: every probability is
rational, every coin is ``randbelow(d) < n`` on a cryptographic
:class:`~secagg.dp.randomness.RandomSource`. These are the reference samplers:
the known-answer vectors are drawn with them, and the vectorized samplers of
:mod:`secagg.dp.samplers` are checked against the same probability mass functions.
"""

from __future__ import annotations

import math
from fractions import Fraction

from secagg.dp.randomness import RandomSource, randbelow


def bernoulli(p: Fraction, source: RandomSource) -> bool:
    """Bernoulli(p) for rational ``0 <= p <= 1``."""
    if not 0 <= p <= 1:
        raise ValueError("p must be in [0, 1]")
    return randbelow(source, p.denominator) < p.numerator


def bernoulli_exp(gamma: Fraction, source: RandomSource) -> bool:
    """Bernoulli(exp(-gamma)) for rational ``gamma >= 0`` (CKS Algorithm 1)."""
    if gamma < 0:
        raise ValueError("gamma must be >= 0")
    whole = math.floor(gamma)
    for _ in range(whole):
        if not _bernoulli_exp_unit(Fraction(1), source):
            return False
    return _bernoulli_exp_unit(gamma - whole, source)


def _bernoulli_exp_unit(gamma: Fraction, source: RandomSource) -> bool:
    # gamma in [0, 1]: P[K odd] = exp(-gamma) where K counts Bernoulli(gamma/k) successes + 1.
    k = 1
    while bernoulli(gamma / k, source):
        k += 1
    return k % 2 == 1


def discrete_laplace(scale: Fraction, source: RandomSource) -> int:
    """Lap_Z(scale): P[Y=y] ∝ exp(-|y|/scale), rational ``scale > 0`` (CKS Algorithm 2)."""
    if scale <= 0:
        raise ValueError("scale must be > 0")
    t, s = scale.numerator, scale.denominator  # scale = t / s
    while True:
        u = randbelow(source, t)
        if not bernoulli_exp(Fraction(u, t), source):
            continue
        v = 0
        while bernoulli_exp(Fraction(1), source):
            v += 1
        y = (u + t * v) // s
        negative = bernoulli(Fraction(1, 2), source)
        if negative and y == 0:
            continue
        return -y if negative else y


def discrete_gaussian(sigma2: Fraction, source: RandomSource) -> int:
    """N_Z(0, sigma2): P[Y=y] ∝ exp(-y²/(2·sigma2)), rational ``sigma2 > 0`` (CKS Algorithm 3)."""
    if sigma2 <= 0:
        raise ValueError("sigma2 must be > 0")
    t = math.isqrt(sigma2.numerator * sigma2.denominator) // sigma2.denominator + 1
    while True:
        y = discrete_laplace(Fraction(t), source)
        gamma = (abs(y) - sigma2 / t) ** 2 / (2 * sigma2)
        if bernoulli_exp(gamma, source):
            return y
