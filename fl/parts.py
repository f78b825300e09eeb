"""Several vectors with their own clipping ranges in ONE secure aggregation.

:class:`secagg.aggregator.SecureAggregator` clips every coordinate of the
vector to one range ``[-c, c]`` and quantizes it with one step ``2c / L``
(spec §10.1-§10.2). SCAFFOLD needs two means from the same clients in the same
round, the model deltas and the control-variate deltas, whose magnitudes
differ; running two sessions would double the protocol cost and let dropouts
differ between the two (a client could be in one mean and not in the other).

So the parts are sent as one vector, each part ``k`` first multiplied by
``s_k = c / c_k`` (its own range ``c_k`` mapped onto the aggregator's ``c``):

- the aggregator's clip to ``[-c, c]`` is exactly a clip of part ``k`` to
  ``[-c_k, c_k]``;
- the weighted mean is linear, so dividing the decoded mean of part ``k`` by
  ``s_k`` gives the weighted mean of the part's clipped values;
- part ``k``'s error is the aggregator's bound (one step) divided by ``s_k``:
  ``2 c_k / L`` plus float slack, i.e. each part is quantized with its own step.

Both parts share the included clients and their weights (one session, one
dropout outcome), which is what SCAFFOLD's server update assumes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from secagg.errors import ConfigError

Arrays = list[np.ndarray]


def _scales(clips: Sequence[float], clip: float) -> list[float]:
    if clip <= 0 or not np.isfinite(clip):
        raise ConfigError("the aggregator's clip must be a finite number > 0")
    for c in clips:
        if not (np.isfinite(c) and c > 0):
            raise ConfigError("every part's clip must be a finite number > 0")
    return [clip / float(c) for c in clips]


def pack(parts: Sequence[Sequence[np.ndarray]], clips: Sequence[float], clip: float) -> Arrays:
    """One update (list of arrays) carrying every part, part ``k`` scaled by ``clip / clips[k]``."""
    if len(parts) != len(clips):
        raise ConfigError("need one clip per part")
    out: Arrays = []
    for arrays, s in zip(parts, _scales(clips, clip), strict=True):
        # a part already in range (s = 1) goes as it is, dtype included
        out.extend(np.asarray(a) if s == 1.0 else np.asarray(a, dtype=np.float64) * s
                   for a in arrays)
    return out


def unpack(packed: Sequence[np.ndarray], sizes: Sequence[int], clips: Sequence[float],
           clip: float) -> list[Arrays]:
    """Undo :func:`pack` on an aggregated mean: the parts (``sizes[k]`` arrays each), rescaled."""
    if len(sizes) != len(clips) or sum(sizes) != len(packed):
        raise ConfigError("part sizes do not match the packed arrays")
    out: list[Arrays] = []
    start = 0
    for n, s in zip(sizes, _scales(clips, clip), strict=True):
        out.append([np.asarray(a) if s == 1.0 else np.asarray(a, dtype=np.float64) / s
                    for a in packed[start : start + n]])
        start += n
    return out


def part_bounds(error_bound: float, clips: Sequence[float], clip: float) -> list[float]:
    """Each part's per-coordinate error bound, from the aggregator's ``error_bound``."""
    return [error_bound / s for s in _scales(clips, clip)]
