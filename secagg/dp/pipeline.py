"""Client encoding and server decoding of distributed DP (spec §21.3–§21.6).

Client: clip to L2 norm ``clip`` → pad and rotate (public signs of the session
and round) → scale by ``γ`` → conditional randomized rounding → add its integer
noise share → wrap into Z_{2^B}. The result is the client's input to the
unchanged secure-aggregation protocol (its modulus is 2^B).

Server: the secure sum mod 2^B → centre into [−2^{B−1}, 2^{B−1}) → inverse
rotation → divide by ``γ`` → drop the padding; the mean divides by the included
count. Decoding refuses a sum of fewer clients than the survivor floor.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from secagg.dp import samplers
from secagg.dp.errors import BelowSurvivorFloorError
from secagg.dp.params import DPParams
from secagg.dp.randomness import RandomSource, default_source
from secagg.dp.ring import centre, wrap
from secagg.dp.rotation import rotate_blocks, rotation_signs, unrotate_blocks
from secagg.dp.rounding import clip_l2, conditional_round

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]


def noise_share(params: DPParams, source: RandomSource | None = None) -> I64:
    """One client's integer noise vector (``padded_dim`` coordinates)."""
    src = source or default_source()
    n = params.padded_dim
    if params.mechanism == "ddg":
        return samplers.discrete_gaussian(params.noise, n, src)
    return samplers.skellam(params.noise, n, src)


def encode_client(
    x: F64,
    params: DPParams,
    session_id: bytes,
    round_index: int = 0,
    source: RandomSource | None = None,
) -> U64:
    """The client's DP-encoded vector in Z_{2^B}, ``padded_dim`` coordinates."""
    src = source or default_source()
    v = np.asarray(x, dtype=np.float64)
    if v.shape != (params.dim,):
        raise ValueError(f"expected a vector of {params.dim} values")
    signs = rotation_signs(session_id, round_index, params.padded_dim)
    scaled = rotate_blocks(clip_l2(v, params.clip), signs, params.blocks) * params.gamma
    rounded = conditional_round(scaled, params.delta2, src)
    return wrap(rounded + noise_share(params, src), params.bits)


def decode_sum(
    ring_sum: U64, params: DPParams, session_id: bytes, included: int, round_index: int = 0
) -> F64:
    """Estimate of the plain sum of the included clients' clipped vectors (length ``dim``)."""
    if included < params.floor:
        raise BelowSurvivorFloorError(
            f"{included} clients included, below the survivor floor {params.floor}: not released"
        )
    signs = rotation_signs(session_id, round_index, params.padded_dim)
    centred = centre(np.asarray(ring_sum, dtype=np.uint64), params.bits).astype(np.float64)
    return unrotate_blocks(centred, signs, params.blocks, params.dim) / params.gamma


def decode_mean(
    ring_sum: U64, params: DPParams, session_id: bytes, included: int, round_index: int = 0
) -> F64:
    """Estimate of the mean of the included clients' clipped vectors."""
    return decode_sum(ring_sum, params, session_id, included, round_index) / included
