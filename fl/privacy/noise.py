"""Integer noise for the ``aggregate_dp`` view: distributed discrete Gaussian shares.

Distributed DP (spec §21) has each client add discrete Gaussian noise to its
*quantized* update before masking, so the server unmasks a sum that already
carries noise of the calibrated total variance and never sees a noiseless sum
(Kairouz et al., "The Distributed Discrete Gaussian Mechanism", ICML 2021). For
the attacks only the noise on the sum matters, so the view takes one function:

``NoiseFn(size, sigma_levels, num_clients, rng) -> int64 array``

the noise the sum of ``num_clients`` clients carries, standard deviation
``sigma_levels`` per coordinate in quantization levels. The default,
:func:`distributed_discrete_gaussian`, draws each client's share with
:func:`secagg.dp.samplers.discrete_gaussian` from the operating system's
cryptographic randomness (never from ``rng``: DP noise must not come from a
seeded generator), so the attack faces exactly the noise a deployment adds.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import numpy as np

from secagg.dp.samplers import discrete_gaussian

NoiseFn = Callable[[int, float, int, np.random.Generator], np.ndarray]


def distributed_discrete_gaussian(size: int, sigma_levels: float, num_clients: int,
                                  rng: np.random.Generator) -> np.ndarray:
    """Sum of ``num_clients`` exact discrete Gaussian shares of variance
    ``sigma_levels**2 / num_clients`` each (int64); ``rng`` is not used (see module)."""
    del rng  # the noise comes from secagg.dp's cryptographic source only
    if sigma_levels <= 0:
        return np.zeros(size, dtype=np.int64)
    clients = max(num_clients, 1)
    share_variance = Fraction(sigma_levels) ** 2 / clients
    total = np.zeros(size, dtype=np.int64)
    for _ in range(clients):
        total += discrete_gaussian(share_variance, size)
    return total
