"""Shamir t-out-of-n secret sharing of 32-byte secrets over a 257-bit prime field (spec §4.7).

Clients share their self-mask seed b_u and their mask secret key s_u this way
(Bonawitz et al. 2017, round ShareKeys). Why this design:

* **Field.** :data:`PRIME` is the smallest prime above 2**256, so every 32-byte
  secret is a field element as-is (no encoding, no bias) and a share fits in
  33 bytes. Arithmetic is plain Python integers: ~1 ms to share among 100
  clients, far cheaper than GF(2^128) byte-wise schemes (see the shared notes).
* **Evaluation points** are the client ids, ints in ``[1, 2**32)``; 0 is the
  secret's own point and is never handed out.
* **Coefficients** are uniform field elements drawn by rejection sampling from
  the injected :class:`~secagg.crypto.entropy.Entropy` (the OS CSPRNG by default).
* **Reconstruction** uses exactly ``t`` shares, with Lagrange coefficients at 0
  computed with one modular inversion (Montgomery's batch trick) and cached per
  responder set in :class:`LagrangeCache`, because the server reconstructs many
  secrets from the same set of responders.
* **Robustness.** A wrong or replayed share yields a wrong secret, not an error,
  so callers that can check the secret (e.g. against an advertised public key)
  use :func:`reconstruct_verified`, which tries other t-subsets.

The ``*_int`` / ``prime``-taking functions are the field-generic core; they
exist so the tests can check perfect secrecy exhaustively in a tiny field.
Nothing in this module logs or formats a secret or a share value.
"""

from __future__ import annotations

import itertools
import math
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence

from secagg.checks import is_plain_int
from secagg.crypto.entropy import Entropy, resolve
from secagg.errors import ConfigError, CryptoError, ReconstructionError, SecAggError

__all__ = [
    "MAX_X",
    "PRIME",
    "SECRET_LEN",
    "SHARE_LEN",
    "LagrangeCache",
    "eval_shares",
    "interpolate_at_zero",
    "lagrange_at_zero",
    "random_field_elements",
    "reconstruct",
    "reconstruct_verified",
    "split",
]

#: The smallest prime greater than 2**256, i.e. 2**256 + 297. Found by scanning odd
#: numbers upward from 2**256 with Miller-Rabin; tests/test_shamir.py re-checks
#: primality with many bases and that no smaller candidate above 2**256 is prime.
PRIME: int = (1 << 256) + 297
#: Length of a secret in bytes.
SECRET_LEN = 32
#: Length of an encoded share (big-endian field element, always < PRIME).
SHARE_LEN = 33
#: Evaluation points (client ids) lie in [1, MAX_X).
MAX_X = 1 << 32


# --- field-generic core ------------------------------------------------------------------------


def random_field_elements(count: int, prime: int, entropy: Entropy) -> list[int]:
    """``count`` independent uniform elements of Z_prime, by rejection sampling.

    Bytes are masked to ``prime.bit_length()`` bits and values >= prime are
    redrawn, so there is no modulo bias (for PRIME about half are redrawn).
    """
    nbits = prime.bit_length()
    nbytes = (nbits + 7) // 8
    mask = (1 << nbits) - 1
    out: list[int] = []
    while len(out) < count:
        need = count - len(out)
        buf = entropy.random_bytes(need * nbytes)
        if len(buf) != need * nbytes:
            raise CryptoError("entropy source returned the wrong number of bytes")
        for i in range(0, len(buf), nbytes):
            v = int.from_bytes(buf[i : i + nbytes], "big") & mask
            if v < prime:
                out.append(v)
    return out


def eval_shares(coeffs: Sequence[int], xs: Sequence[int], prime: int) -> dict[int, int]:
    """Evaluate f(z) = sum coeffs[k] z^k at each x (coeffs[0] is the secret).

    Horner's rule without intermediate reductions: x is small (< 2**32), so the
    unreduced value only grows ~32 bits per step, and one final ``% prime`` is
    cheaper than a reduction per step.
    """
    out: dict[int, int] = {}
    for x in xs:
        acc = 0
        for c in reversed(coeffs):
            acc = acc * x + c
        out[x] = acc % prime
    return out


def lagrange_at_zero(xs: Sequence[int], prime: int) -> list[int]:
    """Lagrange basis values at 0 for the (distinct, nonzero mod prime) points ``xs``.

    lambda_i = prod_{j != i} x_j / (x_j - x_i). Numerators and denominators are
    computed as exact integers (the points are small), then all denominators
    are inverted with one ``pow(., -1, prime)`` (Montgomery's batch inversion).
    """
    t = len(xs)
    total = math.prod(xs)
    nums = [total // x for x in xs]
    dens = [math.prod(xj - xi for xj in xs if xj != xi) % prime for xi in xs]
    # Batch inversion: prefix[i] = dens[0] * ... * dens[i-1].
    prefix = [1] * (t + 1)
    for i, d in enumerate(dens):
        prefix[i + 1] = prefix[i] * d % prime
    inv = pow(prefix[t], -1, prime)
    lambdas = [0] * t
    for i in range(t - 1, -1, -1):
        lambdas[i] = nums[i] * inv * prefix[i] % prime  # inv * prefix[i] == 1/dens[i]
        inv = inv * dens[i] % prime
    return lambdas


def interpolate_at_zero(points: Mapping[int, int], prime: int) -> int:
    """f(0) from exactly the given points (x -> f(x)); no caching, no validation."""
    xs = sorted(points)
    lambdas = lagrange_at_zero(xs, prime)
    return sum(lam * points[x] for lam, x in zip(lambdas, xs, strict=True)) % prime


# --- Lagrange cache ----------------------------------------------------------------------------


class LagrangeCache:
    """LRU cache of Lagrange coefficients at 0, keyed by the set of evaluation points.

    In the unmasking round the server reconstructs one secret per client from
    the shares of the same responders, so the O(t^2) coefficient computation is
    shared. Bounded (LRU) so a hostile sequence of responder sets cannot grow it
    without limit. Thread-safe. Holds only public data (client ids and field
    elements derived from them), never a share or a secret.
    """

    def __init__(self, maxsize: int = 1024) -> None:
        if not is_plain_int(maxsize) or maxsize < 1:
            raise ConfigError("LagrangeCache maxsize must be a positive integer")
        self._maxsize = maxsize
        self._data: OrderedDict[tuple[int, tuple[int, ...]], tuple[int, ...]] = OrderedDict()
        self._supersets: dict[tuple[int, int], tuple[frozenset[int], dict[int, int]]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        #: misses answered from a prepared superset in O(t) (the rest cost O(t^2))
        self.derived = 0
        #: supersets prepared (each one O(t^2) computation of t + 1 points)
        self.supersets = 0

    @property
    def maxsize(self) -> int:
        """The most point sets kept."""
        return self._maxsize

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def coefficients(self, xs: Sequence[int], prime: int = PRIME) -> tuple[int, ...]:
        """Lagrange coefficients at 0 for the sorted points ``xs`` (aligned with ``xs``)."""
        key = (prime, tuple(xs))  # ordered: coefficients are aligned with xs
        with self._lock:
            hit = self._data.get(key)
            if hit is not None:
                self._data.move_to_end(key)
                self.hits += 1
                return hit
        value = self._from_superset(xs, prime)
        derived = value is not None
        if value is None:
            value = tuple(lagrange_at_zero(xs, prime))  # computed outside the lock
        with self._lock:
            self.misses += 1
            self.derived += derived
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._maxsize:
                self._data.popitem(last=False)
        return value

    def prepare_superset(self, xs: Sequence[int], prime: int = PRIME) -> None:
        """Precompute the coefficients of ``xs`` so that any ``xs`` minus one point costs O(t).

        In the complete graph every survivor's shares come from all responders
        except itself, so the server sees up to t + 1 different t-point sets, each
        O(t^2) from scratch. Removing point w from a set S rescales S's basis:
        lambda'_i = lambda_i * (x_w - x_i) / x_w, one pass and one inversion.
        """
        points = tuple(xs)
        coeffs = dict(zip(points, lagrange_at_zero(points, prime), strict=True))
        with self._lock:
            self._supersets[(prime, len(points))] = (frozenset(points), coeffs)
            self.supersets += 1

    def _from_superset(self, xs: Sequence[int], prime: int) -> tuple[int, ...] | None:
        with self._lock:
            entry = self._supersets.get((prime, len(xs) + 1))
        if entry is None:
            return None
        parent, coeffs = entry
        missing = parent.difference(xs)
        if len(missing) != 1 or not parent.issuperset(xs):
            return None
        (xw,) = missing
        inv_xw = pow(xw, -1, prime)
        return tuple(coeffs[x] * (xw - x) % prime * inv_xw % prime for x in xs)

    def clear(self) -> None:
        """Drop every entry (e.g. at the end of a session)."""
        with self._lock:
            self._data.clear()
            self._supersets.clear()

    def __repr__(self) -> str:
        return f"LagrangeCache(size={len(self)}, maxsize={self._maxsize})"


# --- public API over PRIME ---------------------------------------------------------------------


def _check_threshold(threshold: int) -> None:
    if not is_plain_int(threshold) or threshold < 2:
        raise ConfigError("threshold must be an integer >= 2")


def _valid_x(x: object) -> bool:
    return is_plain_int(x) and 1 <= x < MAX_X


def split(
    secret: bytes,
    threshold: int,
    xs: Sequence[int],
    *,
    entropy: Entropy | None = None,
) -> dict[int, bytes]:
    """Split a 32-byte secret into one 33-byte share per x in ``xs``.

    Any ``threshold`` shares reconstruct the secret; any ``threshold - 1``
    reveal nothing about it (perfect secrecy). ``xs`` are distinct client ids in
    ``[1, 2**32)``; ``2 <= threshold <= len(xs)``. ``entropy`` is for test
    vectors only; the default is the OS CSPRNG.
    """
    if not isinstance(secret, bytes | bytearray) or len(secret) != SECRET_LEN:
        raise CryptoError(f"secret must be exactly {SECRET_LEN} bytes")
    _check_threshold(threshold)
    xs = list(xs)
    if not all(_valid_x(x) for x in xs):
        raise ConfigError(f"share points must be integers in [1, {MAX_X})")
    if len(set(xs)) != len(xs):
        raise ConfigError("share points must be distinct")
    if threshold > len(xs):
        raise ConfigError(f"threshold {threshold} exceeds the number of shares {len(xs)}")
    coeffs = [int.from_bytes(secret, "big")]
    coeffs += random_field_elements(threshold - 1, PRIME, resolve(entropy))
    values = eval_shares(coeffs, xs, PRIME)
    return {x: v.to_bytes(SHARE_LEN, "big") for x, v in values.items()}


def _decode_shares(shares: Mapping[int, bytes], threshold: int) -> dict[int, int]:
    """Validate every share (ids and encodings) and decode it; messages name ids only."""
    _check_threshold(threshold)
    if not isinstance(shares, Mapping):
        raise ReconstructionError("shares must be a mapping from client id to share bytes")
    decoded: dict[int, int] = {}
    for x, share in shares.items():
        if not _valid_x(x):
            raise ReconstructionError(f"share point out of range (must be in [1, {MAX_X}))")
        if not isinstance(share, bytes | bytearray) or len(share) != SHARE_LEN:
            raise ReconstructionError(f"share from {x} is not {SHARE_LEN} bytes")
        value = int.from_bytes(share, "big")
        if value >= PRIME:
            raise ReconstructionError(f"share from {x} is not a field element")
        decoded[x] = value
    if len(decoded) < threshold:
        raise ReconstructionError(f"need {threshold} shares, got {len(decoded)}")
    return decoded


def _combine(points: dict[int, int], xs: Sequence[int], cache: LagrangeCache | None) -> int:
    lambdas = cache.coefficients(xs) if cache is not None else lagrange_at_zero(xs, PRIME)
    return sum(lam * points[x] for lam, x in zip(lambdas, xs, strict=True)) % PRIME


def _to_secret(value: int) -> bytes:
    if value >> (8 * SECRET_LEN):
        raise ReconstructionError("reconstructed value out of range, a share is wrong")
    return value.to_bytes(SECRET_LEN, "big")


def reconstruct(
    shares: Mapping[int, bytes],
    threshold: int,
    *,
    cache: LagrangeCache | None = None,
) -> bytes:
    """Recover the 32-byte secret from ``threshold`` shares (client id -> share).

    Uses exactly the first ``threshold`` shares by sorted id, so the result is
    deterministic. A wrong share gives a wrong secret (detected here only if
    it lands outside [0, 2**256), with negligible probability): use
    :func:`reconstruct_verified` when the secret can be checked.
    """
    points = _decode_shares(shares, threshold)
    xs = sorted(points)[:threshold]
    return _to_secret(_combine(points, xs, cache))


def _candidate_subsets(xs: list[int], t: int, max_subsets: int) -> Iterator[tuple[int, ...]]:
    """Distinct t-subsets of sorted ``xs`` to try, the default subset first.

    If every subset fits in the budget they are all tried. Otherwise: cyclic
    windows whose excluded blocks cover every point (so a single bad share is
    always avoided within ceil(n / (n - t)) tries), then uniformly random subsets
    (chosen with the OS RNG; which subset is tried is not secret).
    """
    n = len(xs)
    if math.comb(n, t) <= max_subsets:
        yield from itertools.combinations(xs, t)
        return
    seen: set[tuple[int, ...]] = set()
    step = n - t
    for offset in range(0, n, step):
        window = tuple(sorted(xs[(offset + k) % n] for k in range(t)))
        if window not in seen:
            seen.add(window)
            yield window
    rng = secrets.SystemRandom()
    while True:
        subset = tuple(sorted(rng.sample(xs, t)))
        if subset not in seen:
            seen.add(subset)
            yield subset


def reconstruct_verified(
    shares: Mapping[int, bytes],
    threshold: int,
    verify: Callable[[bytes], bool],
    *,
    cache: LagrangeCache | None = None,
    max_subsets: int = 64,
) -> bytes:
    """Recover a secret that ``verify`` accepts, tolerating some wrong shares.

    ``verify`` checks a candidate against public data (e.g. that a reconstructed
    private key matches the advertised public key, or a hash commitment); a
    :class:`SecAggError` raised by it counts as a rejection. The first
    ``threshold`` shares by id are tried first (with ``cache``); if that fails
    and more shares are present, up to ``max_subsets`` subsets in total are
    tried. Raises :class:`ReconstructionError` if none verifies.
    """
    if not is_plain_int(max_subsets) or max_subsets < 1:
        raise ConfigError("max_subsets must be a positive integer")
    points = _decode_shares(shares, threshold)
    xs = sorted(points)
    for attempt, subset in enumerate(_candidate_subsets(xs, threshold, max_subsets)):
        if attempt >= max_subsets:
            break
        # Only the default subset goes through the cache: trial subsets would evict
        # the responder sets the server reuses.
        value = _combine(points, subset, cache if attempt == 0 else None)
        if value >> (8 * SECRET_LEN):
            continue
        candidate = value.to_bytes(SECRET_LEN, "big")
        try:
            if verify(candidate):
                return candidate
        except SecAggError:
            continue
    raise ReconstructionError(
        f"no subset of {threshold} of the {len(xs)} shares gave a verified secret"
    )
