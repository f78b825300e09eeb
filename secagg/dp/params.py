"""The public parameters of one distributed-DP session (spec §21.1) and their binding bytes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from secagg.crypto.kdf import encode_context
from secagg.dp.errors import DPConfigError
from secagg.dp.ring import check_bits
from secagg.dp.rotation import block_sizes
from secagg.dp.rounding import rounded_norm_bound

Mechanism = Literal["ddg", "skellam"]
MECHANISMS: tuple[Mechanism, ...] = ("ddg", "skellam")
Sampling = Literal["poisson", "fixed"]
SAMPLINGS: tuple[Sampling, ...] = ("poisson", "fixed")
_GRID = 1024  # per-client noise parameters are multiples of 1/1024, rounded up


def check_mechanism(name: str) -> Mechanism:
    for m in MECHANISMS:
        if name == m:
            return m
    raise DPConfigError(f"unknown DP mechanism {name!r}; expected one of {', '.join(MECHANISMS)}")


def client_share(mechanism: Mechanism, total_variance: float, floor: int) -> Fraction:
    """Per-client noise parameter so that any ``floor`` shares reach ``total_variance`` (§21.6).

    DDG: the share's variance parameter σ_c² = total/floor. Skellam: the Poisson
    mean μ_c = total/(2·floor) (Sk(μ, μ) has variance 2μ). Rounded up to the grid,
    so the noise is never below the target.
    """
    if floor < 1 or total_variance <= 0:
        raise DPConfigError("survivor floor must be >= 1 and the noise variance > 0")
    per = total_variance / floor / (2 if mechanism == "skellam" else 1)
    return Fraction(math.ceil(per * _GRID), _GRID)


def check_sampling(name: str) -> Sampling:
    for s in SAMPLINGS:
        if name == s:
            return s
    raise DPConfigError(f"unknown cohort sampling {name!r}; expected one of {', '.join(SAMPLINGS)}")


@dataclass(frozen=True)
class DPParams:
    """Everything a client needs to encode and the server needs to decode and account.

    ``noise`` is the per-client share parameter (σ_c² for DDG, μ_c for Skellam),
    ``floor`` the survivor floor it was sized for, ``clients`` the cohort size.
    ``sampling`` says how the cohort of rate ``sampling_rate`` is drawn (§21.7):
    ``poisson`` (each client independently; neighbours add or remove a client) or
    ``fixed`` (``q·N`` of ``N`` without replacement; neighbours replace a client).
    ``min_block`` picks the rotation's blocks (0: one power of two; §21.11).
    """

    mechanism: Mechanism
    dim: int
    clip: float
    gamma: float
    bits: int
    noise: Fraction
    floor: int
    clients: int
    beta: float = math.exp(-0.5)
    sampling_rate: float = 1.0
    sampling: Sampling = "poisson"
    min_block: int = 0

    def __post_init__(self) -> None:
        check_mechanism(self.mechanism)
        check_sampling(self.sampling)
        check_bits(self.bits)
        if self.dim < 1 or self.clip <= 0 or self.gamma <= 0:
            raise DPConfigError("dim, clip and gamma must be positive")
        if not 1 <= self.floor <= self.clients:
            raise DPConfigError("survivor floor must be in [1, clients]")
        if self.noise <= 0:
            raise DPConfigError("noise share must be positive")
        try:
            block_sizes(self.dim, self.min_block)
        except ValueError as exc:
            raise DPConfigError(str(exc)) from None
        if self.mechanism == "ddg" and self.noise < Fraction(1, 4):
            raise DPConfigError("DDG needs per-client sigma >= 1/2")

    @property
    def blocks(self) -> tuple[int, ...]:
        """Sizes of the rotation's blocks (§21.3, §21.11); they sum to ``padded_dim``."""
        return block_sizes(self.dim, self.min_block)

    @property
    def padded_dim(self) -> int:
        return sum(self.blocks)

    @property
    def delta2(self) -> float:
        """L2 sensitivity after rounding (one client's contribution, add/remove)."""
        return rounded_norm_bound(self.clip, self.gamma, self.padded_dim, self.beta)

    @property
    def delta1(self) -> float:
        """L1 sensitivity: an integer vector has ||v||_1 <= min(||v||_2², sqrt(d)·||v||_2)."""
        d2 = self.delta2
        return min(d2 * d2, math.sqrt(self.padded_dim) * d2)

    def client_variance(self) -> float:
        """Variance of one client's noise per coordinate (integer units)."""
        return float(self.noise) * (2 if self.mechanism == "skellam" else 1)

    def binding(self) -> bytes:
        """Canonical bytes of the parameters, to bind into the session id (§21.1).

        Fixed-size sampling appends one field ``"fixed"``; a block rotation appends
        ``"blocks"`` and the minimum block. Poisson sampling and one power-of-two block
        (the original form) append nothing, so their bytes are unchanged.
        """
        fields: list[str | int] = [
            "secagg-dp-v1", self.mechanism, self.dim, repr(float(self.clip)),
            repr(float(self.gamma)), repr(float(self.beta)), self.bits,
            self.noise.numerator, self.noise.denominator, self.floor, self.clients,
            repr(float(self.sampling_rate)),
        ]
        if self.sampling == "fixed":
            fields.append("fixed")
        if self.min_block:
            fields += ["blocks", self.min_block]
        return encode_context(*fields)
