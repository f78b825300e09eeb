"""Pluggable integer noise for the ``aggregate_dp`` view (an adapter until ``secagg.dp`` lands).

Distributed DP (its own issue) has each client add discrete Gaussian noise to
its *quantized* update before masking, so the server unmasks a sum that
already carries noise of the calibrated total variance and never sees a
noiseless sum (Kairouz et al., "The Distributed Discrete Gaussian Mechanism",
ICML 2021). For the attacks only the distribution of the noise on the sum
matters, so the adapter is one function:

``NoiseFn(size, sigma_levels, num_clients, rng) -> int64 array``

the noise the sum of ``num_clients`` clients carries, standard deviation
``sigma_levels`` per coordinate in quantization levels. The default,
:func:`discrete_gaussian_like`, sums ``num_clients`` rounded Gaussians of
deviation ``sigma_levels / sqrt(num_clients)`` (one share per client); at the
scales used here (sigma of thousands of levels) it is indistinguishable from a
discrete Gaussian. Once ``secagg.dp`` is merged, pass its sampler instead.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

NoiseFn = Callable[[int, float, int, np.random.Generator], np.ndarray]


def discrete_gaussian_like(size: int, sigma_levels: float, num_clients: int,
                           rng: np.random.Generator) -> np.ndarray:
    """Sum of ``num_clients`` per-client shares of rounded Gaussian noise (int64)."""
    if sigma_levels <= 0:
        return np.zeros(size, dtype=np.int64)
    share = sigma_levels / np.sqrt(max(num_clients, 1))
    total = np.zeros(size, dtype=np.int64)
    for _ in range(max(num_clients, 1)):
        total += np.rint(rng.normal(0.0, share, size)).astype(np.int64)
    return total
