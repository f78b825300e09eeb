"""Exact integer samplers of secagg.dp against their probability mass functions (spec §21.2)."""

from __future__ import annotations

import math
import os
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from secagg.dp import cks, samplers
from secagg.dp.params import DPParams
from secagg.dp.pipeline import noise_share
from secagg.dp.randomness import (
    CryptoRandomSource,
    SeededTestVectorSource,
    default_source,
    uniform_below,
)


def src(name: str) -> SeededTestVectorSource:
    return SeededTestVectorSource(b"tests/" + name.encode())


def chi2_pvalue(draws: np.ndarray, pmf: dict[int, float]) -> float:
    """Chi-square goodness of fit; support points with expected count < 5 lumped into one bin."""
    n = draws.size
    keys = [k for k in sorted(pmf) if pmf[k] * n >= 5]
    observed = [int(np.sum(draws == k)) for k in keys]
    expected = [pmf[k] * n for k in keys]
    observed.append(n - sum(observed))
    expected.append(n - sum(expected))
    if expected[-1] < 1e-9:
        observed.pop(), expected.pop()
    return float(stats.chisquare(observed, expected).pvalue)


def dg_pmf(sigma2: float, span: int) -> dict[int, float]:
    w = {k: math.exp(-k * k / (2 * sigma2)) for k in range(-span, span + 1)}
    z = sum(w.values())
    return {k: v / z for k, v in w.items()}


def poisson_pmf(mu: float, span: int) -> dict[int, float]:
    return {k: float(stats.poisson.pmf(k, mu)) for k in range(span)}


@pytest.mark.parametrize("sigma2", [Fraction(1, 4), Fraction(2), Fraction(50)])
def test_discrete_gaussian_table_matches_pmf(sigma2: Fraction) -> None:
    x = samplers.discrete_gaussian(sigma2, 200_000, src(f"dg{sigma2}"))
    pmf = dg_pmf(float(sigma2), 12 * int(math.sqrt(sigma2)) + 12)
    assert chi2_pvalue(x, pmf) > 1e-4
    var = sum(k * k * p for k, p in pmf.items())
    assert abs(x.mean()) < 5 * math.sqrt(var / x.size)
    assert x.var() == pytest.approx(var, rel=0.03)


def test_discrete_gaussian_cks_matches_pmf() -> None:
    s = src("cks")
    x = np.array([cks.discrete_gaussian(Fraction(3, 2), s) for _ in range(6000)])
    assert chi2_pvalue(x, dg_pmf(1.5, 20)) > 1e-4


def test_bernoulli_exp_and_laplace_moments() -> None:
    s = src("bexp")
    for gamma in (Fraction(1, 2), Fraction(7, 3)):
        hits = sum(cks.bernoulli_exp(gamma, s) for _ in range(20_000))
        p = math.exp(-float(gamma))
        assert abs(hits / 20_000 - p) < 5 * math.sqrt(p * (1 - p) / 20_000)
    scale = Fraction(3, 2)
    y = np.array([cks.discrete_laplace(scale, s) for _ in range(20_000)])
    r = math.exp(-1 / float(scale))
    var = 2 * r / (1 - r) ** 2
    assert y.var() == pytest.approx(var, rel=0.06)
    assert abs(y.mean()) < 5 * math.sqrt(var / y.size)


@pytest.mark.parametrize("mu", [Fraction(1, 3), Fraction(7, 2), Fraction(400)])
def test_poisson_matches_pmf(mu: Fraction) -> None:
    x = samplers.poisson(mu, 200_000, src(f"po{mu}"))
    assert x.min() >= 0
    assert chi2_pvalue(x, poisson_pmf(float(mu), int(mu) + 200)) > 1e-4
    assert x.mean() == pytest.approx(float(mu), rel=0.02, abs=0.01)


def test_skellam_moments() -> None:
    x = samplers.skellam(Fraction(10), 200_000, src("sk"))
    assert abs(x.mean()) < 5 * math.sqrt(20 / x.size)
    assert x.var() == pytest.approx(20, rel=0.02)
    pmf = {k: float(stats.skellam.pmf(k, 10, 10)) for k in range(-60, 61)}
    assert chi2_pvalue(x, pmf) > 1e-4


def test_ambiguous_words_are_resolved_exactly() -> None:
    """A word equal to a table threshold goes to the exact refinement; it returns j or j+1."""
    table = samplers._poisson_table(Fraction(7, 2))
    s = src("amb")
    for j in (0, 3, 7):
        t = int(table.thresholds[j])
        got = samplers._invert_scalar(table.pmf_at, t, s)
        assert got in (j, j + 1)
    # far from any threshold the refinement agrees with the table
    word = (int(table.thresholds[2]) + int(table.thresholds[3])) // 2
    assert samplers._invert_scalar(table.pmf_at, word, s) == 3


def test_uniform_below_is_in_range_and_uniform() -> None:
    m = np.full(60_000, 6, dtype=np.uint64)
    u = uniform_below(src("ub"), m)
    assert u.max() < 6
    counts = np.bincount(u.astype(np.int64), minlength=6)
    assert stats.chisquare(counts).pvalue > 1e-4


def test_seeded_source_is_chunk_independent() -> None:
    a, b = src("chunks"), src("chunks")
    assert a.random_bytes(10) + a.random_bytes(22) == b.random_bytes(32)
    assert "test vectors only" in repr(a)


def test_default_source_is_the_os_csprng(monkeypatch: pytest.MonkeyPatch) -> None:
    """Noise reads os.urandom and never builds a numpy generator."""
    assert isinstance(default_source(), CryptoRandomSource)
    calls: list[int] = []
    real = os.urandom

    def counting(n: int) -> bytes:
        calls.append(n)
        return real(n)

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("numpy random generator used for DP noise")

    monkeypatch.setattr(os, "urandom", counting)
    monkeypatch.setattr(np.random, "default_rng", forbidden)
    monkeypatch.setattr(np.random, "Generator", forbidden)
    monkeypatch.setattr(np.random, "RandomState", forbidden)
    for name in ("randint", "random", "normal", "poisson", "seed", "choice"):
        monkeypatch.setattr(np.random, name, forbidden)
    for mech, noise in (("ddg", Fraction(9)), ("skellam", Fraction(5))):
        params = DPParams(mech, dim=100, clip=1.0, gamma=10.0, bits=16, noise=noise,
                          floor=2, clients=3)
        before = sum(calls)
        v = noise_share(params)
        assert v.shape == (128,)
        assert sum(calls) - before >= 8 * 128  # at least one 64-bit word per coordinate
