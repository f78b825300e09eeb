"""Privacy accounting that charges the noise actually summed (spec §21.6, §21.7).

Each round is charged with the RDP of the sum of the ``included`` clients'
shares (never the planned count): fewer survivors means less noise and a larger
ε, and the accountant reports it. A round below the survivor floor is refused
before release (:class:`BelowSurvivorFloorError`), so nothing is charged for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from secagg.dp import rdp
from secagg.dp.errors import BelowSurvivorFloorError
from secagg.dp.params import DPParams


def round_rdp(params: DPParams, included: int) -> rdp.F64:
    """RDP curve of one round that summed ``included`` noise shares (with sampling).

    Poisson sampling (and no sampling, ``q = 1``): add/remove neighbours, sensitivities
    ``Δ2, Δ1``, Zhu-Wang amplification. Fixed-size sampling with ``q < 1``: replace-one
    neighbours, so the base curve uses ``2Δ2, 2Δ1``, then the WBK19 amplification.
    """
    if included < params.floor:
        raise BelowSurvivorFloorError(
            f"{included} clients included, below the survivor floor {params.floor}: not released"
        )
    fixed = params.sampling == "fixed" and params.sampling_rate < 1
    scale = 2.0 if fixed else 1.0
    d2, d1 = scale * params.delta2, scale * params.delta1
    if params.mechanism == "ddg":
        base = rdp.rdp_ddg(included, float(params.noise), d2, d1, params.padded_dim)
    else:
        base = rdp.rdp_skellam(included, float(params.noise), d2, d1)
    if fixed:
        return rdp.fixed_subsample(base, params.sampling_rate)
    return rdp.poisson_subsample(base, params.sampling_rate)


@dataclass(frozen=True)
class RoundCharge:
    """What one round cost: its own ε and the cumulative ε, both at the accountant's δ."""

    round_index: int
    included: int
    epsilon_round: float
    epsilon_total: float
    delta: float


@dataclass
class DPAccountant:
    """Composes rounds by adding RDP curves; ε per round and cumulative (§21.7)."""

    params: DPParams
    delta: float
    _total: rdp.F64 = field(default_factory=lambda: np.zeros(len(rdp.ORDERS)))
    history: list[RoundCharge] = field(default_factory=list)

    def charge(self, included: int) -> RoundCharge:
        """Charge one released round with the noise of ``included`` clients."""
        curve = round_rdp(self.params, included)
        self._total = self._total + curve
        entry = RoundCharge(
            round_index=len(self.history),
            included=included,
            epsilon_round=rdp.epsilon_from_rdp(curve, self.delta),
            epsilon_total=rdp.epsilon_from_rdp(self._total, self.delta),
            delta=self.delta,
        )
        self.history.append(entry)
        return entry

    @property
    def epsilon(self) -> float:
        """Cumulative ε at ``delta`` over every round charged so far (0 before any)."""
        if not self.history:
            return 0.0
        return rdp.epsilon_from_rdp(self._total, self.delta)
