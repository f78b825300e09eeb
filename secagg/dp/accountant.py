"""Privacy accounting that charges the noise actually summed (spec §21.6, §21.7).

Each round is charged with the RDP of the sum of the ``included`` clients'
shares (never the planned count): fewer survivors means less noise and a larger
ε, and the accountant reports it. A round below the survivor floor is refused
before release (:class:`BelowSurvivorFloorError`), so nothing is charged for it.
"""

from __future__ import annotations

import math
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


@dataclass(frozen=True)
class PoissonCohorts:
    """The cohort sizes a Poisson-sampled run releases, and the δ their tails cost (§21.7).

    Each of ``population`` clients joins a round independently with rate ``q``, so the
    cohort size is Binomial. A round whose cohort falls outside ``[smallest, largest]``
    is not released: the noise is sized for ``smallest`` (its survivor floor) and the
    wrap-around bound for ``largest``. That skip depends on the cohort size, which the
    Poisson-subsampled RDP bound does not cover, so it is paid for in δ: the run differs
    from one that never skips (a trusted top-up of the noise on a small cohort) only
    when some round's size is out of range, probability at most ``rounds·p`` with ``p``
    the two tails for a neighbouring population (``N − 1`` below, ``N + 1`` above), and
    ``(ε, δ_rdp)``-DP of that run gives ``(ε, δ_rdp + (1 + e^ε)·rounds·p)`` for this one.
    ``tail_delta`` is that second term, at most ``share·δ``; the accountant converts at
    ``delta_rdp = δ − tail_delta``.
    """

    smallest: int
    largest: int
    tail_delta: float
    delta_rdp: float


def poisson_cohorts(population: int, q: float, rounds: int, epsilon: float, delta: float,
                    share: float = 0.1) -> PoissonCohorts:
    """The widest-kept cohort range whose tails cost at most ``share·delta`` (see above)."""
    from scipy.stats import binom

    if population < 2 or not 0 < q <= 1 or rounds < 1 or not 0 < share < 1:
        raise ValueError("poisson cohorts need 2+ clients, q in (0, 1], rounds >= 1")
    budget = share * delta / (rounds * (1 + math.exp(epsilon))) / 2  # per tail, per round
    ks = np.arange(population + 2)
    below = binom.cdf(ks - 1, population - 1, q)  # P(size < k) with one client fewer
    above = binom.sf(ks, population + 1, q)  # P(size > k) with one client more
    smallest = int(ks[below <= budget].max())
    largest = int(ks[above <= budget].min())
    tail = (1 + math.exp(epsilon)) * rounds * float(below[smallest] + above[largest])
    return PoissonCohorts(smallest, largest, tail, delta - tail)
