"""Central-DP baseline and cross-checks through Google's ``dp-accounting`` (spec §21.7).

The ``dp`` extra installs it; it is imported lazily so the rest of the DP layer
(and the library) works without it. Used for the trainer's central-DP baseline
(the continuous Gaussian added once to the plaintext mean) and to check this
package's own RDP conversion in the tests.
"""

from __future__ import annotations

import importlib
import math
from types import ModuleType

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


def central_epsilon(noise_multiplier: float, rounds: int, delta: float, q: float = 1.0) -> float:
    """ε of ``rounds`` (Poisson-sampled, rate ``q``) Gaussian releases with σ = z·clip (RDP)."""
    dpa = dp_accounting()
    event = dpa.GaussianDpEvent(noise_multiplier)
    if q < 1:
        event = dpa.PoissonSampledDpEvent(q, event)
    acc = dpa.rdp.RdpAccountant(list(rdp.ORDERS))
    acc.compose(event, rounds)
    return float(acc.get_epsilon(delta))


def central_noise_multiplier(epsilon: float, delta: float, rounds: int, q: float = 1.0) -> float:
    """Smallest z with :func:`central_epsilon` <= ``epsilon`` (bisection, 0.1% tolerance)."""
    lo, hi = 0.05, 0.1
    while central_epsilon(hi, rounds, delta, q) > epsilon:
        lo, hi = hi, hi * 2
        if hi > 1e4:
            raise ValueError("epsilon target unreachable")
    while hi / lo > 1.001:
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if central_epsilon(mid, rounds, delta, q) > epsilon else (lo, mid)
    return hi
