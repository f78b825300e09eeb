"""Choose the noise, the scale γ and the bit width for a target (ε, δ) (spec §21.8).

``plan`` sizes the total noise so that ``rounds`` rounds, each charged with only
the survivor floor's noise, stay within ε at δ; picks the largest γ whose
wrap-around probability (a sub-Gaussian union bound over coordinates, all
clients present, signals worst-case aligned) stays under ``max_wrap``; and
compares the expected squared error of the decoded mean with central DP (the
continuous Gaussian added once to the plaintext mean at the same ε, δ, clip and
sampling). Settings whose wrap-around or error is unreasonable are refused with
a one-line :class:`DPConfigError`. ``bits=None`` picks the smallest width in
[8, 32] whose error is within ``target_ratio`` of central DP.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from secagg.dp import rdp
from secagg.dp.accountant import round_rdp
from secagg.dp.errors import DPConfigError
from secagg.dp.params import DPParams, check_mechanism, check_sampling, client_share
from secagg.dp.ring import check_bits
from secagg.dp.rotation import block_sizes
from secagg.dp.rounding import rounded_norm_bound

DEFAULT_BETA = math.exp(-0.5)


@dataclass(frozen=True)
class Plan:
    """A feasible setting and what it costs."""

    params: DPParams
    epsilon: float
    epsilon_per_round: float
    delta: float
    rounds: int
    noise_multiplier: float
    mse: float
    mse_central: float
    wrap_probability: float

    @property
    def bytes_per_coordinate(self) -> float:
        return self.params.bits / 8

    @property
    def bytes_per_element(self) -> float:
        """Upload per input element, padding included."""
        return self.params.bits / 8 * self.params.padded_dim / self.params.dim

    def to_json(self) -> dict[str, Any]:
        p = self.params
        return {
            "mechanism": p.mechanism, "clients": p.clients, "survivor_floor": p.floor,
            "dim": p.dim, "padded_dim": p.padded_dim, "clip": p.clip, "bits": p.bits,
            "gamma": p.gamma, "beta": p.beta, "sampling_rate": p.sampling_rate,
            "sampling": p.sampling,
            "noise_share": str(p.noise), "noise_multiplier": self.noise_multiplier,
            "epsilon": self.epsilon, "epsilon_per_round": self.epsilon_per_round,
            "delta": self.delta, "rounds": self.rounds, "mse": self.mse,
            "mse_central": self.mse_central, "wrap_probability": self.wrap_probability,
            "bytes_per_coordinate": self.bytes_per_coordinate,
            "bytes_per_element": self.bytes_per_element,
        }


def format_plan(plan: Plan) -> str:
    """Human-readable summary (what ``secagg dp plan`` prints)."""
    j = plan.to_json()
    share = "sigma_c^2" if j["mechanism"] == "ddg" else "mu_c"
    return "\n".join([
        f"mechanism          {j['mechanism']} ({j['clients']} clients, floor {j['survivor_floor']},"
        f" {j['sampling']} sampling {j['sampling_rate']:g})",
        f"privacy            epsilon {j['epsilon']:.4g} over {j['rounds']} rounds"
        f" ({j['epsilon_per_round']:.4g} per round), delta {j['delta']:g}",
        f"noise multiplier   {j['noise_multiplier']:.4g} (per-client {share} = {j['noise_share']})",
        f"scale              gamma {j['gamma']:.6g}, beta {j['beta']:.4g},"
        f" dim {j['dim']} -> {j['padded_dim']}",
        f"error (MSE, mean)  {j['mse']:.4g} (central DP {j['mse_central']:.4g},"
        f" x{j['mse'] / j['mse_central']:.3f})",
        f"wrap-around        <= {j['wrap_probability']:.3g} per round",
        f"upload             {j['bits']} bits = {j['bytes_per_coordinate']:g} bytes/coordinate"
        f" ({j['bytes_per_element']:.4g} bytes/element with padding)",
    ])


def plan_json(plan: Plan) -> str:
    return json.dumps(plan.to_json(), sort_keys=True)


@dataclass(frozen=True)
class _Target:
    mechanism: str
    clients: int
    floor: int
    dim: int
    clip: float
    epsilon: float
    delta: float
    rounds: int
    q: float
    beta: float
    max_wrap: float
    sampling: str = "poisson"
    min_block: int = 0


def _epsilon(params: DPParams, t: _Target) -> tuple[float, float]:
    curve = round_rdp(params, t.floor)
    return (rdp.epsilon_from_rdp(curve * t.rounds, t.delta), rdp.epsilon_from_rdp(curve, t.delta))


def _params(t: _Target, gamma: float, bits: int, z: float) -> DPParams:
    d2 = rounded_norm_bound(t.clip, gamma, sum(block_sizes(t.dim, t.min_block)), t.beta)
    mech = check_mechanism(t.mechanism)
    total = max((z * d2) ** 2, 0.25 * t.floor)
    return DPParams(mech, t.dim, t.clip, gamma, bits, client_share(mech, total, t.floor),
                    t.floor, t.clients, t.beta, t.q, check_sampling(t.sampling), t.min_block)


def _noise_multiplier(t: _Target, gamma: float, bits: int, guess: float = 0.05) -> float:
    """Smallest z (σ_total = z·Δ2 at the floor) meeting ε, by bisection from ``guess``."""
    def ok(z: float) -> bool:
        return _epsilon(_params(t, gamma, bits, z), t)[0] <= t.epsilon

    lo, hi = guess / 1.01, guess * 1.01
    while ok(lo) and lo > 1e-3:
        lo, hi = lo / 2, lo
    while not ok(hi):
        lo, hi = hi, hi * 2
        if hi > 1e4:
            raise DPConfigError("epsilon target unreachable with this cohort and rounds")
    for _ in range(30):
        mid = math.sqrt(lo * hi)
        if _epsilon(_params(t, gamma, bits, mid), t)[0] > t.epsilon:
            lo = mid
        else:
            hi = mid
        if hi / lo < 1.001:
            break
    return hi


def wrap_probability(params: DPParams) -> float:
    """Union bound on any coordinate of the centred sum leaving [−R/2, R/2) (all present).

    A coordinate of a rotation block of size ``b`` is sub-Gaussian with variance proxy
    ``(ncγ)²/b`` (the whole clipped vector may sit in that block), plus rounding and noise.
    """
    n = params.clients
    half = 2.0 ** (params.bits - 1)
    total = 0.0
    for b in params.blocks:
        v = (n * params.clip * params.gamma) ** 2 / b + n / 4 + n * params.client_variance()
        total += 2 * b * math.exp(-(half * half) / (2 * v))
    return min(1.0, total)


def mse_of_mean(params: DPParams) -> float:
    """Expected ||decoded mean − true mean||² with every client present (rounding + noise)."""
    n = params.clients
    per_coord = n * params.client_variance() + n / 4
    # The noise is spread evenly by the inverse rotation; the dropped padding takes its share.
    return params.dim * per_coord / (params.gamma**2 * n * n)


def central_mse(t: _Target) -> tuple[float, float]:
    """(noise multiplier, MSE of the mean) of central DP at the same ε, δ, rounds, sampling."""
    lo, hi = 0.05, 0.05
    while _central_eps(hi, t) > t.epsilon:
        lo, hi = hi, hi * 2
        if hi > 1e4:  # as _noise_multiplier: refused in one line, not an overflow later
            raise DPConfigError("epsilon target unreachable with this cohort and rounds")
    for _ in range(40):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if _central_eps(mid, t) > t.epsilon else (lo, mid)
    return hi, t.dim * (hi * t.clip) ** 2 / t.clients**2


def _central_eps(z: float, t: _Target) -> float:
    if t.sampling == "fixed" and t.q < 1:  # replace-one: sensitivity 2·clip
        curve = rdp.fixed_subsample(rdp.rdp_gaussian(z / 2), t.q)
    else:
        curve = rdp.poisson_subsample(rdp.rdp_gaussian(z), t.q)
    return rdp.epsilon_from_rdp(curve * t.rounds, t.delta)


def _best_gamma(t: _Target, bits: int, z: float) -> tuple[DPParams, float]:
    """Largest γ with wrap-around <= max_wrap (fixed point: z depends weakly on γ)."""
    gamma = 1.0
    for _ in range(4):
        lo, hi = 1e-6, 1e12
        for _ in range(80):
            mid = math.sqrt(lo * hi)
            if wrap_probability(_params(t, mid, bits, z)) <= t.max_wrap:
                lo = mid
            else:
                hi = mid
        gamma = lo
        z_new = _noise_multiplier(t, gamma, bits, z)
        if abs(z_new - z) / z < 0.002:
            z = max(z, z_new)
            break
        z = z_new
    params = _params(t, gamma, bits, z)
    for _ in range(200):  # the fixed point can overshoot a little; infeasible widths stay over
        if wrap_probability(params) <= t.max_wrap:
            break
        gamma *= 0.98
        params = _params(t, gamma, bits, z)
    return params, z


def plan(
    clients: int,
    dim: int,
    clip: float,
    epsilon: float,
    delta: float,
    rounds: int,
    bits: int | None = None,
    mechanism: str = "ddg",
    *,
    survivor_floor: int | None = None,
    sampling_rate: float = 1.0,
    sampling: str = "poisson",
    min_block: int = 0,
    beta: float = DEFAULT_BETA,
    max_wrap: float = 1e-4,
    max_error_ratio: float = 2.0,
    target_ratio: float = 1.1,
) -> Plan:
    """Plan a distributed-DP run; raise :class:`DPConfigError` (one line) when unreasonable."""
    check_mechanism(mechanism)
    check_sampling(sampling)
    if clients < 1 or dim < 1 or clip <= 0 or epsilon <= 0 or rounds < 1:
        raise DPConfigError("clients, dim, clip, epsilon and rounds must be positive")
    if not 0 < delta < 1 or not 0 < sampling_rate <= 1 or not 0 < max_wrap < 1:
        raise DPConfigError("delta, sampling_rate and max_wrap must be in (0, 1)")
    floor = clients if survivor_floor is None else survivor_floor
    if not 1 <= floor <= clients:
        raise DPConfigError("survivor floor must be in [1, clients]")
    t = _Target(mechanism, clients, floor, dim, clip, epsilon, delta, rounds, sampling_rate,
                beta, max_wrap, sampling, min_block)
    z_central, central = central_mse(t)
    if bits is not None:
        return _evaluate(t, check_bits(bits), central, max_error_ratio, z_central)
    return _auto_bits(t, central, max_error_ratio, target_ratio, z_central)


def _auto_bits(
    t: _Target, central: float, max_error_ratio: float, target_ratio: float, z0: float
) -> Plan:
    """Smallest width in [8, 32] within ``target_ratio`` of central DP (error falls with bits).

    The floor's overhead (noise sized for ``floor`` clients, ``clients/floor`` more
    when all are present) is unavoidable and not held against a width.
    """
    target_ratio *= t.clients / t.floor
    lo, hi, best = 7, 32, None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            p = _evaluate(t, mid, central, max_error_ratio, z0)
        except DPConfigError:
            lo = mid
            continue
        if p.mse <= target_ratio * central:
            hi, best = mid, p
        else:
            lo = mid
    if best is None:
        best = _evaluate(t, hi, central, max_error_ratio, z0)
        if best.mse > target_ratio * central:
            raise DPConfigError("no bit width in [8, 32] reaches the error target")
    return best


def _evaluate(
    t: _Target, bits: int, central: float, max_error_ratio: float, z0: float
) -> Plan:
    params, z = _best_gamma(t, bits, _noise_multiplier(t, 1.0, bits, z0))
    eps, eps_round = _epsilon(params, t)
    mse = mse_of_mean(params)
    wrap = wrap_probability(params)
    if wrap > t.max_wrap:
        raise DPConfigError(f"{bits} bits: wrap-around probability {wrap:.2g} > {t.max_wrap:g}")
    if mse > max_error_ratio * central:
        raise DPConfigError(
            f"{bits} bits: error {mse:.3g} is {mse / central:.1f}x central DP's"
            f" (limit {max_error_ratio:g}x); use more bits"
        )
    return Plan(params, eps, eps_round, t.delta, t.rounds, z, mse, central, wrap)
