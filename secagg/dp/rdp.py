"""Rényi-DP curves of one round, Poisson subsampling, and conversion to (ε, δ) (spec §21.7).

* Distributed discrete Gaussian: the sum of ``m`` independent ``N_Z(0, σ²)^d``
  shares is ``ρ``-zCDP (Kairouz, Liu, Steinke, ICML 2021, Proposition 14; needs
  σ >= 1/2) with ``sqrt(2ρ) = min(sqrt(Δ2²/(mσ²) + τd/2), Δ1/(sqrt(m)σ) + τ·sqrt(d))``,
  ``τ = 10·Σ_{k=1}^{m−1} exp(−2π²σ²·k/(k+1))``; its RDP is ``α·ρ``.
* Skellam: the sum of ``m`` shares ``Sk(μ, μ)^d`` is ``Sk(mμ, mμ)^d``; its RDP
  (Agarwal, Kairouz, Liu, NeurIPS 2021, Corollary 4.1 written in integer units, ``M = mμ``) is
  ``αΔ2²/(4M) + min(((2α−1)Δ2² + 6Δ1)/(16M²), 3Δ1/(4M))``.
* Poisson sampling with rate ``q``: the general upper bound of Zhu and Wang
  (ICML 2019, Theorem 6) for integer orders, in log space.
* Fixed-size sampling (``k`` of ``N`` without replacement, ``q = k/N``, neighbours
  replace one client): the general bound of Wang, Balle and Kasiviswanathan
  (AISTATS 2019, Theorem 9) with ``ε(∞) = ∞``, for integer orders; the base curve must
  be the replace-one curve (twice the add/remove sensitivity).
* Conversion: ``ε = min_α RDP(α) + log((α−1)/α) − (log δ + log α)/(α−1)``
  (Canonne, Kamath, Steinke 2020; Asoodeh et al. 2021).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy.special import gammaln, logsumexp

F64 = npt.NDArray[np.float64]
ORDERS: tuple[int, ...] = (*range(2, 129), 160, 192, 256, 384, 512)


def orders_array() -> F64:
    return np.array(ORDERS, dtype=np.float64)


def ddg_rho(included: int, sigma2: float, delta2: float, delta1: float, dim: int) -> float:
    """zCDP ρ of the sum of ``included`` discrete-Gaussian shares of variance ``sigma2``."""
    if sigma2 < 0.25:
        raise ValueError("the DDG bound needs per-client sigma >= 1/2")
    k = np.arange(1, included, dtype=np.float64)
    tau = 10.0 * float(np.sum(np.exp(-2 * math.pi**2 * sigma2 * k / (k + 1))))
    a = math.sqrt(delta2**2 / (included * sigma2) + tau * dim / 2)
    b = delta1 / (math.sqrt(included) * math.sqrt(sigma2)) + tau * math.sqrt(dim)
    eps = min(a, b)
    return eps * eps / 2


def rdp_ddg(included: int, sigma2: float, delta2: float, delta1: float, dim: int) -> F64:
    return orders_array() * ddg_rho(included, sigma2, delta2, delta1, dim)


def rdp_skellam(included: int, mu: float, delta2: float, delta1: float) -> F64:
    """RDP of the sum of ``included`` Skellam(mu, mu) shares (AKL21 Cor. 4.1, integer units)."""
    a = orders_array()
    big = included * mu
    extra = np.minimum(
        ((2 * a - 1) * delta2**2 + 6 * delta1) / (16 * big**2), 3 * delta1 / (4 * big)
    )
    out: F64 = a * delta2**2 / (4 * big) + extra
    return out


def rdp_gaussian(noise_multiplier: float) -> F64:
    """RDP of the continuous Gaussian mechanism with σ = z·Δ2."""
    out: F64 = orders_array() / (2 * noise_multiplier**2)
    return out


def _check_rate(q: float) -> bool:
    """Refuse a sampling rate outside (0, 1]; True when it is 1 (no subsampling)."""
    if not 0 < q <= 1:
        raise ValueError("sampling rate must be in (0, 1]")
    return q == 1


def _every_integer_order(rdp: F64) -> F64:
    """eps[l] for every integer l in [0, max order]: RDP is non-decreasing in the order,
    so the next listed order bounds an unlisted one from above."""
    idx = np.searchsorted(np.array(ORDERS), np.arange(ORDERS[-1] + 1), side="left")
    out: F64 = rdp[np.minimum(idx, len(ORDERS) - 1)]
    return out


def poisson_subsample(rdp: F64, q: float) -> F64:
    """Zhu–Wang upper bound on the RDP of the Poisson-subsampled mechanism (integer orders)."""
    if _check_rate(q):
        return rdp
    eps_all = _every_integer_order(rdp)
    out = np.empty(len(ORDERS))
    lq, l1q = math.log(q), math.log1p(-q)
    for i, alpha in enumerate(ORDERS):
        ell = np.arange(3, alpha + 1, dtype=np.float64)
        terms = np.concatenate(
            (
                [(alpha - 1) * l1q + math.log(alpha * q - q + 1),
                 _log_comb(alpha, 2) + 2 * lq + (alpha - 2) * l1q + eps_all[2]],
                math.log(3) + _log_comb(alpha, ell) + ell * lq + (alpha - ell) * l1q
                + (ell - 1) * eps_all[3 : alpha + 1],
            )
        )
        out[i] = float(logsumexp(terms)) / (alpha - 1)
    return np.minimum(out, rdp)


def fixed_subsample(rdp: F64, q: float) -> F64:
    """WBK19 Thm 9 bound on the RDP of sampling ``q·N`` of ``N`` without replacement.

    ``log(1 + q²C(α,2)·min(4(e^{ε(2)}−1), 2e^{ε(2)}) + Σ_{j=3..α} 2q^jC(α,j)e^{(j−1)ε(j)})/(α−1)``
    with ``ε`` the replace-one RDP of the unsampled mechanism; the term for ``j = 2`` is
    the one ``dp-accounting`` uses for the Gaussian, the others are the general (looser)
    form of its Theorem 27. Unlisted orders take the next listed order's value.
    """
    if _check_rate(q):
        return rdp
    eps_all = _every_integer_order(rdp)
    e2 = float(eps_all[2])
    second = min(math.log(4) + e2 + math.log(-math.expm1(-e2)), e2 + math.log(2))
    out = np.empty(len(ORDERS))
    lq = math.log(q)
    for i, alpha in enumerate(ORDERS):
        ell = np.arange(3, alpha + 1, dtype=np.float64)
        first = np.array([0.0, float(_log_comb(alpha, 2)) + 2 * lq + second])
        terms = np.concatenate((
            first,
            math.log(2) + _log_comb(alpha, ell) + ell * lq + (ell - 1) * eps_all[3 : alpha + 1],
        ))
        out[i] = float(logsumexp(terms)) / (alpha - 1)
    return np.minimum(out, rdp)


def _log_comb(n: int, k: F64 | int) -> F64:
    out: F64 = gammaln(n + 1) - gammaln(np.asarray(k) + 1) - gammaln(n - np.asarray(k) + 1)
    return out


def epsilon_from_rdp(rdp: F64, delta: float) -> float:
    """Smallest ε over the orders for the given δ (the improved RDP → (ε, δ) conversion)."""
    if not 0 < delta < 1:
        raise ValueError("delta must be in (0, 1)")
    a = orders_array()
    eps = rdp + np.log((a - 1) / a) - (math.log(delta) + np.log(a)) / (a - 1)
    return max(0.0, float(np.min(eps)))
