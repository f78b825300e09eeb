"""Privacy accounting of secagg.dp: RDP curves, subsampling, dropouts (spec §21.6-§21.7)."""

from __future__ import annotations

import importlib
import itertools
from fractions import Fraction

import numpy as np
import pytest

from secagg.dp import central, rdp
from secagg.dp.accountant import DPAccountant, round_rdp
from secagg.dp.errors import BelowSurvivorFloorError, DependencyMissingError, DPConfigError
from secagg.dp.params import DPParams, client_share

dpa = pytest.importorskip("dp_accounting")


def gaussian_eps(z: float, rounds: int, delta: float, q: float = 1.0) -> float:
    return central.central_epsilon(z, rounds, delta, q)


def test_conversion_matches_dp_accounting() -> None:
    for z, rounds in ((0.8, 1), (1.0, 10), (3.0, 500)):
        ours = rdp.epsilon_from_rdp(rdp.rdp_gaussian(z) * rounds, 1e-5)
        assert ours == pytest.approx(gaussian_eps(z, rounds, 1e-5), rel=1e-9)


@pytest.mark.parametrize("m", [1, 10, 100])
def test_ddg_large_noise_limit_is_the_gaussian(m: int) -> None:
    sigma2, d2, dim = 1e6, 100.0, 1024
    ours = rdp.epsilon_from_rdp(rdp.rdp_ddg(m, sigma2, d2, d2 * d2, dim) * 20, 1e-5)
    z = (m * sigma2) ** 0.5 / d2
    assert ours == pytest.approx(gaussian_eps(z, 20, 1e-5), rel=1e-3)
    assert ours >= gaussian_eps(z, 20, 1e-5) * (1 - 1e-12)


def test_skellam_large_noise_limit_is_the_gaussian() -> None:
    mu, d2, m = 1e7, 100.0, 10
    ours = rdp.epsilon_from_rdp(rdp.rdp_skellam(m, mu, d2, d2 * d2) * 20, 1e-5)
    z = (2 * m * mu) ** 0.5 / d2
    assert ours == pytest.approx(gaussian_eps(z, 20, 1e-5), rel=1e-3)


def test_ddg_penalty_for_small_shares() -> None:
    """With tiny per-client sigma the tau term makes DDG strictly worse than the Gaussian."""
    small = rdp.ddg_rho(100, 0.3, 5.0, 25.0, 1024)
    assert small > 5.0**2 / (2 * 100 * 0.3)


def test_subsampling_bound_is_never_below_the_tight_gaussian() -> None:
    for z, q in ((0.8, 0.01), (1.2, 0.1), (2.0, 0.5)):
        ours = rdp.epsilon_from_rdp(rdp.poisson_subsample(rdp.rdp_gaussian(z), q) * 100, 1e-5)
        tight = gaussian_eps(z, 100, 1e-5, q)
        assert tight * (1 - 1e-9) <= ours <= 1.4 * tight


def test_monotonicity() -> None:
    base = dict(mechanism="ddg", dim=1000, clip=1.0, gamma=100.0, bits=20, floor=10, clients=10)
    eps = [DPAccountant(DPParams(noise=Fraction(v), **base), 1e-5).charge(10).epsilon_round
           for v in (100, 400, 1600)]
    assert eps[0] > eps[1] > eps[2]
    acc = DPAccountant(DPParams(noise=Fraction(400), **base), 1e-5)
    totals = [acc.charge(10).epsilon_total for _ in range(5)]
    assert all(a < b for a, b in itertools.pairwise(totals))
    sampled = [DPAccountant(DPParams(noise=Fraction(400), sampling_rate=q, **base), 1e-5)
               .charge(10).epsilon_round for q in (0.05, 0.2, 1.0)]
    assert sampled[0] < sampled[1] < sampled[2]


@pytest.mark.parametrize("mechanism", ["ddg", "skellam"])
@pytest.mark.parametrize("drop", [0.0, 0.1, 0.3])
def test_dropout_epsilon_never_under_reported(mechanism: str, drop: float) -> None:
    n, floor, rounds = 100, 70, 20
    share = client_share(mechanism, 40_000.0, floor)  # type: ignore[arg-type]
    params = DPParams(mechanism, dim=4096, clip=1.0, gamma=100.0, bits=20,  # type: ignore[arg-type]
                      noise=share, floor=floor, clients=n)
    acc = DPAccountant(params, 1e-5)
    rng = np.random.default_rng(1)  # which clients drop: a test fixture, not noise
    included = [n - int(rng.binomial(n, drop)) if drop else n for _ in range(rounds)]
    included = [max(floor, k) for k in included]
    for k in included:
        acc.charge(k)
    recomputed = rdp.epsilon_from_rdp(sum(round_rdp(params, k) for k in included), 1e-5)
    assert acc.epsilon >= recomputed * (1 - 1e-12)
    full = rdp.epsilon_from_rdp(round_rdp(params, n) * rounds, 1e-5)
    assert acc.epsilon >= full * (1 - 1e-12)
    # the floor's noise alone meets what was planned: variance at the floor >= target
    assert floor * params.client_variance() >= 40_000.0


def test_below_floor_is_refused_and_not_charged() -> None:
    params = DPParams("ddg", dim=64, clip=1.0, gamma=10.0, bits=16, noise=Fraction(50),
                      floor=7, clients=10)
    acc = DPAccountant(params, 1e-5)
    with pytest.raises(BelowSurvivorFloorError, match="survivor floor"):
        acc.charge(6)
    assert acc.history == [] and acc.epsilon == 0.0


def test_central_noise_multiplier_meets_target() -> None:
    z = central.central_noise_multiplier(8.0, 1e-5, 50, 0.1)
    assert central.central_epsilon(z, 50, 1e-5, 0.1) <= 8.0
    assert central.central_epsilon(z / 1.01, 50, 1e-5, 0.1) > 8.0


def test_missing_dp_accounting_has_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def fake(name: str, package: str | None = None) -> object:
        if name == "dp_accounting":
            raise ImportError(name)
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(DependencyMissingError, match=r"secagg\[dp\]"):
        central.dp_accounting()


def test_skellam_matches_the_papers_scaled_form() -> None:
    """AKL21 Cor. 4.1 is stated for scale s, sum variance mu and real sensitivities; the
    integer-unit form used here must agree for any s."""
    a = rdp.orders_array()
    for s, d2_real, m, mu_c in ((1.0, 1.0, 10, 50.0), (37.5, 0.8, 100, 3e4), (512.0, 2.0, 7, 1e6)):
        d2 = s * d2_real
        d1 = min(d2 * d2, 32 * d2)
        var_paper = 2 * m * mu_c / s**2  # variance of the sum, in real units
        l2, l1 = d2 / s, d1 / s
        paper = a / (2 * var_paper) * l2**2 + np.minimum(
            ((2 * a - 1) * s * l2**2 + 6 * l1) / (4 * s**3 * var_paper**2),
            3 * l1 / (2 * s * var_paper),
        )
        assert np.allclose(rdp.rdp_skellam(m, mu_c, d2, d1), paper, rtol=1e-12)


@pytest.mark.parametrize(("z", "q", "slack"),
                         [(1.0, 0.01, 1.3), (2.0, 0.1, 1.3), (0.8, 0.5, 1.3), (5.0, 0.02, 2.5)])
def test_fixed_size_sampling_against_dp_accounting(z: float, q: float, slack: float) -> None:
    """WBK19 Thm 9 (general) against dp-accounting's Thm 27 (Gaussian only): equal at
    order 2 (the same term), never below it at any order, and ε within ``slack`` (the
    general bound is up to about 2x loose in ε at large noise and small q)."""
    from dp_accounting.rdp import rdp_privacy_accountant as impl

    ours = rdp.fixed_subsample(rdp.rdp_gaussian(z), q)
    theirs = impl._compute_rdp_sample_wor_gaussian(q, z, list(rdp.ORDERS))
    assert ours[0] == pytest.approx(theirs[0], rel=1e-12)
    assert np.all(ours >= theirs * (1 - 1e-12))
    # dp-accounting's event takes z for sensitivity 2·clip under replace-one: z/2 there
    tight = central.central_epsilon(2 * z, 50, 1e-5, q, "fixed")
    mine = rdp.epsilon_from_rdp(rdp.fixed_subsample(rdp.rdp_gaussian(z), q) * 50, 1e-5)
    assert tight * (1 - 1e-9) <= mine <= slack * tight


@pytest.mark.parametrize("mechanism", ["ddg", "skellam"])
def test_fixed_sampling_accountant_large_noise_limit(mechanism: str) -> None:
    """Large shares (z about 2): the distributed round under fixed sampling tends to the
    Gaussian's (replace-one, sensitivity 2Δ2) and is never below dp-accounting's value."""
    noise = Fraction(10**7)
    params = DPParams(mechanism, dim=256, clip=1.0, gamma=5000.0, bits=40,  # type: ignore[arg-type]
                      noise=noise, floor=10, clients=10, sampling_rate=0.1, sampling="fixed")
    acc = DPAccountant(params, 1e-5)
    for _ in range(20):
        acc.charge(10)
    z = (10 * params.client_variance()) ** 0.5 / params.delta2
    tight = central.central_epsilon(z, 20, 1e-5, 0.1, "fixed")
    assert tight * (1 - 1e-9) <= acc.epsilon <= 1.3 * tight
    unsampled = DPAccountant(DPParams(mechanism, dim=256, clip=1.0, gamma=5000.0, bits=40,  # type: ignore[arg-type]
                                      noise=noise, floor=10, clients=10), 1e-5)
    for _ in range(20):
        unsampled.charge(10)
    assert acc.epsilon < unsampled.epsilon  # q = 0.1 pays for the doubled sensitivity


def test_fixed_sampling_changes_the_binding_and_poisson_keeps_it() -> None:
    base = dict(mechanism="ddg", dim=64, clip=1.0, gamma=10.0, bits=16, noise=Fraction(50),
                floor=7, clients=10, sampling_rate=0.5)
    poisson = DPParams(**base)  # type: ignore[arg-type]
    assert poisson.binding() == DPParams(sampling="poisson", **base).binding()  # type: ignore[arg-type]
    assert DPParams(sampling="fixed", **base).binding() != poisson.binding()  # type: ignore[arg-type]
    with pytest.raises(DPConfigError, match="sampling"):
        DPParams(sampling="bernoulli", **base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("z", "q", "slack"),
                         [(1.0, 0.01, 1.2), (2.0, 0.1, 1.7), (0.8, 0.5, 1.01), (3.0, 0.75, 1.45)])
def test_poisson_sampling_against_dp_accounting(z: float, q: float, slack: float) -> None:
    """Zhu-Wang's general bound (any mechanism: what the distributed rounds need) against
    dp-accounting's PoissonSampledDpEvent of the Gaussian (Mironov et al., tight): the
    same at order 2, never below at any order, and ε within ``slack`` of it."""
    from dp_accounting.rdp import rdp_privacy_accountant as impl

    ours = rdp.poisson_subsample(rdp.rdp_gaussian(z), q)
    theirs = impl._compute_rdp_poisson_subsampled_gaussian(q, z, list(rdp.ORDERS))
    assert ours[0] == pytest.approx(theirs[0], rel=1e-9)
    assert np.all(ours >= theirs * (1 - 1e-12))
    tight = central.central_epsilon(z, 50, 1e-5, q, "poisson")
    mine = rdp.epsilon_from_rdp(ours * 50, 1e-5)
    assert tight * (1 - 1e-9) <= mine <= slack * tight


@pytest.mark.parametrize("mechanism", ["ddg", "skellam"])
def test_poisson_sampling_accountant_large_noise_limit(mechanism: str) -> None:
    """A distributed round with large shares under Poisson sampling (add/remove, Δ2) is
    charged never below dp-accounting's PoissonSampledDpEvent of the Gaussian with the
    same multiplier, within the general bound's looseness (1.7x at z = 2, q = 0.5: the
    Gaussian-only exact formula does not hold for the discrete mechanisms), and below
    the unsampled charge."""
    noise = Fraction(10**7) if mechanism == "ddg" else Fraction(5 * 10**6)  # variance 1e7
    base = dict(mechanism=mechanism, dim=256, clip=1.0, gamma=5000.0, bits=40, noise=noise,
                floor=10, clients=10)
    acc = DPAccountant(DPParams(sampling_rate=0.5, sampling="poisson", **base), 1e-5)  # type: ignore[arg-type]
    unsampled = DPAccountant(DPParams(**base), 1e-5)  # type: ignore[arg-type]
    for _ in range(20):
        acc.charge(10)
        unsampled.charge(10)
    z = (10 * acc.params.client_variance()) ** 0.5 / acc.params.delta2
    tight = central.central_epsilon(z, 20, 1e-5, 0.5, "poisson")
    assert tight * (1 - 1e-9) <= acc.epsilon <= 1.8 * tight
    assert acc.epsilon < unsampled.epsilon


@pytest.mark.parametrize(("population", "q"), [(200, 0.5), (200, 0.25), (1000, 0.05), (50, 1.0)])
def test_poisson_cohort_range_pays_its_tails(population: int, q: float) -> None:
    """The released cohort range holds the mean, its two tails (for a neighbouring
    population) cost at most 10% of δ, and one step narrower would cost more."""
    from scipy.stats import binom

    from secagg.dp.accountant import poisson_cohorts

    c = poisson_cohorts(population, q, 20, 8.0, 1e-5)
    assert c.smallest <= q * population <= c.largest
    assert 0 <= c.tail_delta <= 1e-6 and c.delta_rdp == pytest.approx(1e-5 - c.tail_delta)
    scale = (1 + np.exp(8.0)) * 20
    assert scale * binom.cdf(c.smallest - 1, population - 1, q) <= 0.5e-6
    if q < 1:
        assert scale * binom.cdf(c.smallest, population - 1, q) > 0.5e-6
        assert scale * binom.sf(c.largest - 1, population + 1, q) > 0.5e-6
