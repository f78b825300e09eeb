"""Vectorized exact integer noise: discrete Gaussian, Poisson, Skellam (spec §21.2).

Exact inversion: a probability mass function is summed in decimal arithmetic
(50 significant digits, far below 2^-64) into a table of 64-bit thresholds
``T_j = floor(2^64 · CDF(j))``. One uniform 64-bit word ``u`` from the
cryptographic source selects ``X = #{j : T_j <= u}`` whenever no threshold lies
within 1 of ``u``; then the uniform real the word stands for is on a known side of
every CDF value, so the draw is exactly the inverse CDF of a uniform real. The
rare other draws (about one in 10^14, or past the table's end) are finished by
:func:`_invert_scalar`, which extends the uniform real with further words and
recomputes the CDF at higher precision until the side is certain. No floating
point decides a sample.

Measured on the 2-vCPU dev machine under load (load average 16): 10^6 coordinates in
about 1.0 s (discrete Gaussian, σ² = 10^4), 1.1 s (Skellam, μ = 10^4), 0.6 s (Poisson);
a table covers the window where the pmf exceeds 10^-50 of its mode (about 30·σ
entries), is built once per parameter in under 1 s up to σ² = 10^6, and is cached.
The scalar CKS reference sampler runs at about 2·10^3 draws per second.
"""

from __future__ import annotations

import decimal
import functools
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from secagg.dp.randomness import RandomSource, default_source, uniform_words

I64 = npt.NDArray[np.int64]
_PREC = 50  # significant decimal digits of the table's CDF
_MAX_TABLE = 20_000_000

PmfAt = Callable[[int, int], Decimal]  # (j, precision) -> P[X = j]


def _context(prec: int) -> decimal.Context:
    return decimal.Context(prec=prec, Emin=-(10**9), Emax=10**9)


def _dec(x: Fraction, ctx: decimal.Context) -> Decimal:
    return ctx.divide(Decimal(x.numerator), Decimal(x.denominator))


class _Table:
    """Thresholds of one distribution on a window ``[offset, offset + len)`` of {0, 1, ...}.

    ``probs`` are the window's probabilities (the mass outside is below 10^-40 and
    lies, like every ambiguous draw, on the exact path); ``pmf_at`` is the exact pmf
    on the whole support for that path.
    """

    def __init__(self, pmf_at: PmfAt, probs: list[Decimal], offset: int) -> None:
        self.pmf_at = pmf_at
        self.offset = offset
        ctx = _context(_PREC)
        total = Decimal(0)
        thresholds: list[int] = []
        scale = Decimal(2**64)
        for p in probs:
            total = ctx.add(total, p)
            thresholds.append(min(int(ctx.multiply(total, scale)), 2**64 - 1))
        self.thresholds = np.array(thresholds, dtype=np.uint64)

    def sample(self, count: int, source: RandomSource) -> I64:
        u = uniform_words(source, count)
        t = self.thresholds
        k = np.searchsorted(t, u, side="right")
        hi = np.minimum(k, t.size - 1)
        lo = np.maximum(k - 1, 0)
        near_hi = (k < t.size) & ((t[hi] - u) <= np.uint64(1))
        near_lo = (k > 0) & ((u - t[lo]) <= np.uint64(1))
        unsure = near_hi | near_lo | (k >= t.size) | ((k == 0) & (self.offset > 0))
        out = k.astype(np.int64) + self.offset
        for i in np.flatnonzero(unsure):
            out[i] = _invert_scalar(self.pmf_at, int(u[i]), source)
        return out


def _invert_scalar(pmf_at: PmfAt, first_word: int, source: RandomSource) -> int:
    """Exact inverse CDF of the uniform real whose first 64 bits are ``first_word``."""
    value, nbits, prec = first_word, 64, _PREC + 20
    while True:
        ctx = _context(prec)
        width = ctx.power(Decimal(2), -nbits)
        u_lo = ctx.multiply(Decimal(value), width)
        u_hi = ctx.add(u_lo, width)
        err = Decimal(10) ** (-(prec - 10))
        total, j = Decimal(0), 0
        while True:
            below = total
            total = ctx.add(total, pmf_at(j, prec))
            if ctx.add(below, err) > u_lo and j > 0:
                break  # C(j-1) might exceed U: the side is not certain
            if ctx.subtract(total, err) >= u_hi:
                return j  # C(j-1) <= U < C(j) for every U in the interval
            if ctx.add(total, err) > u_lo:
                break  # U and C(j) too close at this precision
            j += 1
        value = (value << 64) | int(uniform_words(source, 1)[0])
        nbits += 64
        prec += 20


def _poisson_pmf(mean: Fraction) -> PmfAt:
    cache: dict[int, list[Decimal]] = {}

    def pmf_at(j: int, prec: int) -> Decimal:
        ctx = _context(prec)
        vals = cache.setdefault(prec, [ctx.exp(-_dec(mean, ctx))])
        mu = _dec(mean, ctx)
        while len(vals) <= j:
            k = len(vals)
            vals.append(ctx.divide(ctx.multiply(vals[-1], mu), Decimal(k)))
        return vals[j]

    return pmf_at


def _abs_gaussian_pmf(sigma2: Fraction) -> PmfAt:
    """P[|Y| = j] for Y ~ N_Z(0, sigma2)."""
    norms: dict[int, Decimal] = {}

    def weight(j: int, ctx: decimal.Context) -> Decimal:
        return ctx.exp(-ctx.divide(Decimal(j * j), 2 * _dec(sigma2, ctx)))

    def pmf_at(j: int, prec: int) -> Decimal:
        ctx = _context(prec)
        if prec not in norms:
            z, k = Decimal(1), 1
            while True:
                w = weight(k, ctx)
                z = ctx.add(z, 2 * w)
                if k * k > 2 * sigma2 and w < Decimal(10) ** -(prec + 10):
                    break
                k += 1
            norms[prec] = z
        w = weight(j, ctx) if j else Decimal(1)
        return ctx.divide(w if j == 0 else 2 * w, norms[prec])

    return pmf_at


def _as_fraction(x: Fraction | int | float) -> Fraction:
    f = Fraction(x)
    if f <= 0:
        raise ValueError("distribution parameter must be > 0")
    return f


def _window(weight_ratio: Callable[[int], Decimal], mode: int, lowest: int) -> tuple[
    list[Decimal], int
]:
    """Unnormalized weights around ``mode`` (w[mode] = 1) until they fall below 10^-50.

    ``weight_ratio(j)`` is ``w(j+1)/w(j)``; the result is normalized to sum to 1.
    """
    ctx = _context(_PREC)
    cut = Decimal(10) ** -50
    up, w, j = [Decimal(1)], Decimal(1), mode
    while w > cut or j <= mode:
        w = ctx.multiply(w, weight_ratio(j))
        j += 1
        up.append(w)
        if len(up) > _MAX_TABLE:
            raise ValueError("distribution too wide for an inversion table")
    down, w, j = [], Decimal(1), mode
    while j > lowest and w > cut:
        w = ctx.divide(w, weight_ratio(j - 1))
        j -= 1
        down.append(w)
    weights = down[::-1] + up
    z = sum(weights, Decimal(0))
    return [ctx.divide(x, z) for x in weights], j


@functools.lru_cache(maxsize=16)
def _poisson_table(mean: Fraction) -> _Table:
    ctx = _context(_PREC)
    mu = _dec(mean, ctx)
    probs, offset = _window(lambda j: ctx.divide(mu, Decimal(j + 1)), int(mean), 0)
    return _Table(_poisson_pmf(mean), probs, offset)


@functools.lru_cache(maxsize=16)
def _abs_gaussian_table(sigma2: Fraction) -> _Table:
    ctx = _context(_PREC)
    two_s2 = 2 * _dec(sigma2, ctx)

    def ratio(j: int) -> Decimal:
        # w(j) = c_j·exp(−j²/2σ²) with c_0 = 1, c_j = 2 (both signs) for j >= 1
        r = ctx.exp(-ctx.divide(Decimal(2 * j + 1), two_s2))
        return 2 * r if j == 0 else r

    probs, offset = _window(ratio, 0, 0)
    return _Table(_abs_gaussian_pmf(sigma2), probs, offset)


def poisson(mean: Fraction | int | float, size: int, source: RandomSource | None = None) -> I64:
    """``size`` exact Poisson(mean) integers (``mean`` is taken as the exact rational given)."""
    return _poisson_table(_as_fraction(mean)).sample(size, source or default_source())


def skellam(mean: Fraction | int | float, size: int, source: RandomSource | None = None) -> I64:
    """``size`` exact Skellam(mean, mean) = Poisson(mean) − Poisson(mean); variance 2·mean."""
    src = source or default_source()
    table = _poisson_table(_as_fraction(mean))
    return table.sample(size, src) - table.sample(size, src)


def discrete_gaussian(
    sigma2: Fraction | int | float, size: int, source: RandomSource | None = None
) -> I64:
    """``size`` exact N_Z(0, sigma2) integers: |Y| by inversion, then a uniform sign."""
    src = source or default_source()
    mag = _abs_gaussian_table(_as_fraction(sigma2)).sample(size, src)
    signs = (uniform_words(src, size) & np.uint64(1)).astype(np.int64)
    return np.where(signs == 1, -mag, mag)
