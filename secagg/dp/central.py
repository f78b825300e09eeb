"""Central-DP baseline and cross-checks through Google's ``dp-accounting`` (spec §21.7).

The ``dp`` extra installs it; it is imported lazily so the rest of the DP layer
(and the library) works without it. Used for the trainer's central-DP baseline
(the continuous Gaussian added once to the plaintext mean) and to check this
package's own RDP conversion in the tests.
"""

from __future__ import annotations

import importlib
import math
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction
from types import ModuleType
from typing import Any

from secagg.dp import rdp
from secagg.dp.errors import DependencyMissingError


def dp_accounting() -> ModuleType:
    """The ``dp_accounting`` module, or a one-line error naming the extra to install."""
    try:
        return importlib.import_module("dp_accounting")
    except ImportError as exc:
        raise DependencyMissingError(
            "central-DP accounting needs dp-accounting: pip install 'secagg[dp]'"
        ) from exc


def _event(dpa: ModuleType, z: float, q: float, sampling: str) -> Any:
    """One Gaussian release with σ = z·clip, sampled as the cohort is (§21.7).

    Fixed-size sampling counts replace-one neighbours (sensitivity 2·clip, so the
    event's multiplier is z/2) and needs the sample and population sizes: ``q`` as
    an exact fraction ``k/N``.
    """
    if q >= 1:
        return dpa.GaussianDpEvent(z)
    if sampling == "fixed":
        frac = Fraction(q).limit_denominator(10**9)
        return dpa.SampledWithoutReplacementDpEvent(
            frac.denominator, frac.numerator, dpa.GaussianDpEvent(z / 2))
    return dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(z))


def central_epsilon_of(multipliers: Sequence[float], delta: float, q: float = 1.0,
                       sampling: str = "poisson") -> float:
    """ε of Gaussian releases with the given noise multipliers, one per round (RDP)."""
    dpa = dp_accounting()
    relation = dpa.NeighboringRelation
    fixed = sampling == "fixed" and q < 1
    acc = dpa.rdp.RdpAccountant(
        list(rdp.ORDERS), relation.REPLACE_ONE if fixed else relation.ADD_OR_REMOVE_ONE)
    if not multipliers:
        return 0.0
    for z, count in Counter(multipliers).items():  # equal rounds composed at once
        acc.compose(_event(dpa, z, q, sampling), count)
    return float(acc.get_epsilon(delta))


def central_epsilon(noise_multiplier: float, rounds: int, delta: float, q: float = 1.0,
                    sampling: str = "poisson") -> float:
    """ε of ``rounds`` (sampled at rate ``q``) Gaussian releases with σ = z·clip (RDP)."""
    return central_epsilon_of([noise_multiplier] * rounds, delta, q, sampling)


def central_noise_multiplier(epsilon: float, delta: float, rounds: int, q: float = 1.0,
                             sampling: str = "poisson") -> float:
    """Smallest z with :func:`central_epsilon` <= ``epsilon`` (bisection, 0.1% tolerance)."""
    def eps(z: float) -> float:
        return central_epsilon(z, rounds, delta, q, sampling)

    lo, hi = 0.05, 0.1
    while eps(hi) > epsilon:
        lo, hi = hi, hi * 2
        if hi > 1e4:
            raise ValueError("epsilon target unreachable")
    while hi / lo > 1.001:
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if eps(mid) > epsilon else (lo, mid)
    return hi
