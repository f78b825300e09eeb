"""The survivor floor a DP session's noise is sized for (spec §21.6, §21.10).

One definition for every front door that plans noise (the trainer in ``fl/``, the
Flower workflow) and for the Flower client that checks a server's plan: the client
recomputes the floor itself, so it must be the same function, not a copy of it.
Light on purpose (``math`` and the graph module, which the session config loads
anyway): a Flower ClientApp process imports it at every DP message.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from secagg import graph as graphs

if TYPE_CHECKING:
    from secagg.config import SessionConfig


def survivor_floor(config: SessionConfig) -> int:
    """Fewest included clients a session of ``config`` can finish with (§21.6, §8.0):
    ``t``, raised on a sparse Harary graph to ``n - floor(δn)``, below which the
    server aborts."""
    floor = config.threshold
    if config.graph is graphs.GraphKind.HARARY and config.degree < config.n - 1:
        floor = max(floor, config.n - graphs.tolerated_dropouts(config.n, config.dropout_ppm))
    return floor


def dp_floor(config: SessionConfig, expected_dropout: float) -> int:
    """The floor the noise is sized for (§21.10): the session's own floor, raised to the
    count expected to survive, ``n − floor(e·n)``. A round with fewer included clients
    is not released; with more, it carries at most ``n/F`` times the target variance."""
    n = config.n
    return min(n, max(survivor_floor(config), n - math.floor(expected_dropout * n + 1e-9)))


__all__ = ["dp_floor", "survivor_floor"]
