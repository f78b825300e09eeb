"""Shamir sharing: correctness, perfect secrecy (exhaustive, tiny field), robustness."""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
from collections import Counter
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.crypto import shamir
from secagg.crypto.entropy import DeterministicEntropy
from secagg.crypto.shamir import (
    PRIME,
    SHARE_LEN,
    LagrangeCache,
    reconstruct,
    reconstruct_verified,
    split,
)
from secagg.errors import ConfigError, CryptoError, ReconstructionError

SECRET = bytes.fromhex("00ff" * 16)

# The first 64 primes: far more Miller-Rabin bases than any known strong pseudoprime needs.
_SMALL_PRIMES = [p for p in range(2, 320) if all(p % d for d in range(2, int(p**0.5) + 1))][:64]


def _miller_rabin(n: int, bases: list[int]) -> bool:
    if n < 2:
        return False
    for p in _SMALL_PRIMES:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for a in bases:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False  # a is a witness: n is certainly composite
    return True


def _commit(secret: bytes) -> Callable[[bytes], bool]:
    commitment = hashlib.sha256(secret).digest()
    return lambda s: hashlib.sha256(s).digest() == commitment


# --- the field --------------------------------------------------------------------------------


def test_prime_is_the_smallest_prime_above_2_256() -> None:
    # Extra pseudo-random bases from a hash chain, on top of the first 64 primes.
    extra = [
        int.from_bytes(hashlib.sha256(b"mr-base-%d" % i).digest(), "big") % (PRIME - 3) + 2
        for i in range(32)
    ]
    assert _miller_rabin(PRIME, _SMALL_PRIMES + extra)
    # Every odd candidate in (2**256, PRIME) has a witness, so it is certainly composite.
    for n in range(2**256 + 1, PRIME, 2):
        assert not _miller_rabin(n, _SMALL_PRIMES[:12])
    assert PRIME.bit_length() == 257
    assert PRIME < 256**SHARE_LEN


# --- correctness ------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n=st.integers(2, 25), secret=st.binary(min_size=32, max_size=32))
def test_any_t_of_n_reconstruct(data: st.DataObject, n: int, secret: bytes) -> None:
    t = data.draw(st.integers(2, n))
    xs = data.draw(
        st.lists(st.integers(1, 2**32 - 1), min_size=n, max_size=n, unique=True), label="xs"
    )
    shares = split(secret, t, xs)
    assert set(shares) == set(xs)
    assert all(len(s) == SHARE_LEN and int.from_bytes(s, "big") < PRIME for s in shares.values())
    k = data.draw(st.integers(t, n))
    subset = data.draw(st.permutations(xs)).copy()[:k]
    assert reconstruct({x: shares[x] for x in subset}, t) == secret
    assert reconstruct_verified({x: shares[x] for x in subset}, t, _commit(secret)) == secret


def test_reconstruct_uses_first_t_by_sorted_id() -> None:
    xs = list(range(1, 11))
    shares = split(SECRET, 4, xs)
    garbled = dict(shares)
    garbled[10] = bytes(SHARE_LEN)  # beyond the first 4 ids: ignored
    garbled[9] = (PRIME - 1).to_bytes(SHARE_LEN, "big")
    assert reconstruct(garbled, 4) == SECRET


def test_deterministic_entropy_reproduces_shares() -> None:
    xs = [5, 17, 99, 2**32 - 1]
    a = split(SECRET, 3, xs, entropy=DeterministicEntropy(b"vector"))
    b = split(SECRET, 3, xs, entropy=DeterministicEntropy(b"vector"))
    c = split(SECRET, 3, xs, entropy=DeterministicEntropy(b"other"))
    assert a == b
    assert a != c


def test_fresh_randomness_each_split() -> None:
    xs = [1, 2, 3]
    assert split(SECRET, 2, xs) != split(SECRET, 2, xs)


class _ScriptedEntropy:
    """Returns scripted bytes, to exercise the rejection sampler's redraw path."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def random_bytes(self, n: int) -> bytes:
        chunk = self.chunks.pop(0)
        assert len(chunk) == n
        return chunk


def test_coefficient_rejection_sampling() -> None:
    # 0xff..: masked to 257 bits gives 2**257 - 1 >= PRIME, rejected; then PRIME - 1 accepted.
    big = b"\xff" * 33
    ok = (PRIME - 1).to_bytes(33, "big")
    ent = _ScriptedEntropy([big + ok, ok])
    assert shamir.random_field_elements(2, PRIME, ent) == [PRIME - 1, PRIME - 1]
    assert ent.chunks == []


def test_short_entropy_is_an_error() -> None:
    class Short:
        def random_bytes(self, n: int) -> bytes:
            return bytes(n - 1)

    with pytest.raises(CryptoError):
        split(SECRET, 2, [1, 2], entropy=Short())


# --- perfect secrecy, exhaustively, in tiny fields --------------------------------------------


@pytest.mark.parametrize("prime", [7, 11])
def test_t_minus_1_shares_independent_of_secret(prime: int) -> None:
    """t = 3: for every pair of points, the joint distribution of the 2 shares over all
    coefficient choices is the same for every secret (in fact exactly uniform)."""
    t = 3
    for pair in itertools.combinations(range(1, prime), t - 1):
        reference: Counter[tuple[int, ...]] | None = None
        for secret in range(prime):
            dist: Counter[tuple[int, ...]] = Counter()
            for coeffs in itertools.product(range(prime), repeat=t - 1):
                values = shamir.eval_shares([secret, *coeffs], pair, prime)
                dist[tuple(values[x] for x in pair)] += 1
            if reference is None:
                reference = dist
                assert len(dist) == prime ** (t - 1)
                assert set(dist.values()) == {1}
            assert dist == reference


@pytest.mark.parametrize("prime", [7, 11])
def test_tiny_field_t_shares_reconstruct(prime: int) -> None:
    t = 3
    for coeffs in itertools.product(range(prime), repeat=t):
        values = shamir.eval_shares(list(coeffs), range(1, prime), prime)
        for subset in itertools.combinations(range(1, prime), t):
            points = {x: values[x] for x in subset}
            assert shamir.interpolate_at_zero(points, prime) == coeffs[0]


# --- robustness -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_x", [1, 7, 20])
def test_wrong_share_detected_and_avoided(bad_x: int) -> None:
    xs = list(range(1, 21))
    shares = split(SECRET, 11, xs)
    tampered = dict(shares)
    tampered[bad_x] = ((int.from_bytes(shares[bad_x], "big") + 1) % PRIME).to_bytes(33, "big")
    if bad_x <= 11:
        assert reconstruct(tampered, 11) != SECRET
    assert reconstruct_verified(tampered, 11, _commit(SECRET)) == SECRET


def test_two_wrong_shares_avoided() -> None:
    xs = list(range(1, 31))
    shares = split(SECRET, 16, xs)
    tampered = dict(shares)
    tampered[1] = shares[2]
    tampered[30] = shares[29]
    assert reconstruct_verified(tampered, 16, _commit(SECRET), max_subsets=256) == SECRET


def test_replayed_share_is_detected() -> None:
    """A share copied under another id (duplicated share) gives a wrong secret."""
    xs = [3, 8, 15, 16]
    shares = split(SECRET, 3, xs)
    replayed = dict(shares)
    replayed[8] = shares[3]
    assert reconstruct(replayed, 3) != SECRET
    assert reconstruct_verified(replayed, 3, _commit(SECRET)) == SECRET


def test_no_verifying_subset_raises() -> None:
    shares = split(SECRET, 3, [1, 2, 3])
    bad = dict(shares)
    bad[2] = shares[1]
    with pytest.raises(ReconstructionError):
        reconstruct_verified(bad, 3, _commit(SECRET))  # exactly t shares, one wrong
    with pytest.raises(ReconstructionError):
        reconstruct_verified(split(SECRET, 3, [1, 2, 3, 4]), 3, lambda s: False)


def test_verify_errors_count_as_rejections() -> None:
    calls: list[bytes] = []

    def verify(s: bytes) -> bool:
        calls.append(s)
        if len(calls) == 1:
            raise CryptoError("not this one")
        return True

    shares = split(SECRET, 2, [1, 2, 3])
    shares[1] = shares[2]
    assert reconstruct_verified(shares, 2, verify) == calls[-1]
    assert len(calls) == 2


def test_max_subsets_bounds_the_search() -> None:
    xs = list(range(1, 41))
    shares = split(SECRET, 20, xs)
    calls = 0

    def never(_: bytes) -> bool:
        nonlocal calls
        calls += 1
        return False

    with pytest.raises(ReconstructionError):
        reconstruct_verified(shares, 20, never, max_subsets=10)
    assert calls <= 10
    with pytest.raises(ConfigError):
        reconstruct_verified(shares, 20, never, max_subsets=0)


def test_out_of_range_result_is_rejected() -> None:
    """A polynomial whose constant term is >= 2**256 is not a 32-byte secret."""
    values = shamir.eval_shares([2**256 + 5, 12345, 67890], [1, 2, 3], PRIME)
    shares = {x: v.to_bytes(SHARE_LEN, "big") for x, v in values.items()}
    with pytest.raises(ReconstructionError, match="out of range"):
        reconstruct(shares, 3)
    with pytest.raises(ReconstructionError):
        reconstruct_verified(shares, 3, lambda s: True)


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("threshold", "xs"),
    [
        (1, [1, 2, 3]),
        (4, [1, 2, 3]),
        (2, [1, 1, 2]),  # duplicated x
        (2, [0, 1, 2]),
        (2, [1, 2**32]),
        (2, [-1, 2]),
        (2, [True, 2]),
        (2, [1.0, 2]),
        (True, [1, 2]),
    ],
)
def test_split_rejects_bad_parameters(threshold: int, xs: list[int]) -> None:
    with pytest.raises(ConfigError):
        split(SECRET, threshold, xs)


@pytest.mark.parametrize("secret", [b"", bytes(31), bytes(33), "a" * 32])
def test_split_rejects_bad_secret(secret: object) -> None:
    with pytest.raises(CryptoError):
        split(secret, 2, [1, 2])  # type: ignore[arg-type]


def test_reconstruct_rejects_malformed_shares_without_echoing_them() -> None:
    shares = split(SECRET, 3, [1, 2, 3, 4])
    cases = [
        {**shares, 4: shares[4][:32]},
        {**shares, 4: shares[4] + b"\x00"},
        {**shares, 4: PRIME.to_bytes(SHARE_LEN, "big")},
        {**shares, 0: shares[4]},
        {**shares, 2**32: shares[4]},
        {**shares, "5": shares[4]},
        {1: shares[1], 2: shares[2]},  # fewer than t
    ]
    for bad in cases:
        for fn in (
            lambda b: reconstruct(b, 3),
            lambda b: reconstruct_verified(b, 3, _commit(SECRET)),
        ):
            with pytest.raises(ReconstructionError) as info:
                fn(bad)
            text = str(info.value)
            assert all(s.hex() not in text and repr(s) not in text for s in shares.values())
    with pytest.raises(ConfigError):
        reconstruct(shares, 1)
    with pytest.raises(ReconstructionError):
        reconstruct([(1, shares[1])], 2)  # type: ignore[arg-type]


# --- Lagrange cache ---------------------------------------------------------------------------


def test_cache_gives_same_result_and_hits() -> None:
    cache = LagrangeCache()
    xs = list(range(100, 140))
    for i in range(5):
        secret = hashlib.sha256(b"secret %d" % i).digest()
        shares = split(secret, 21, xs)
        assert reconstruct(shares, 21, cache=cache) == reconstruct(shares, 21) == secret
    assert len(cache) == 1
    assert cache.misses == 1 and cache.hits == 4


def test_cache_is_bounded_lru() -> None:
    cache = LagrangeCache(maxsize=3)
    sets = [[1, 2, k] for k in range(3, 13)]
    for s in sets:
        cache.coefficients(s)
    assert len(cache) == 3
    cache.coefficients(sets[-3])  # refresh the oldest survivor
    cache.coefficients([1, 2, 100])  # evicts sets[-2], the least recently used
    misses = cache.misses
    cache.coefficients(sets[-3])
    assert cache.misses == misses
    cache.coefficients(sets[-2])
    assert cache.misses == misses + 1
    assert repr(cache) == "LagrangeCache(size=3, maxsize=3)"
    cache.clear()
    assert len(cache) == 0
    with pytest.raises(ConfigError):
        LagrangeCache(maxsize=0)


def test_cache_coefficients_match_uncached() -> None:
    xs = [7, 19, 2**32 - 1, 4096]
    assert list(LagrangeCache().coefficients(sorted(xs))) == shamir.lagrange_at_zero(
        sorted(xs), PRIME
    )


# --- with a real verifier: X25519 private key vs advertised public key --------------------------


@pytest.mark.skipif(
    importlib.util.find_spec("secagg.crypto.agreement") is None,
    reason="secagg.crypto.agreement not written yet",
)
def test_x25519_key_reconstruction_verified_against_public_key() -> None:
    from nacl.bindings import crypto_scalarmult_base

    private = hashlib.sha256(b"test x25519 private key").digest()
    public = crypto_scalarmult_base(private)
    shares = split(private, 4, range(1, 9))
    shares[2] = shares[5]  # one replayed share
    got = reconstruct_verified(shares, 4, lambda s: crypto_scalarmult_base(s) == public)
    assert got == private

    from secagg.crypto import agreement

    matches = getattr(agreement, "public_key_matches", None)
    if matches is not None:  # the library's own verifier, as the server will use it
        assert reconstruct_verified(shares, 4, lambda s: matches(s, public)) == private


def test_superset_derivation_matches_direct_coefficients() -> None:
    """A set minus one point, derived from its superset, equals the O(t^2) computation."""
    import random

    rng = random.Random(7)
    cache = LagrangeCache()
    base = sorted(rng.sample(range(1, 5000), 40))
    cache.prepare_superset(base)
    for w in base:
        xs = [x for x in base if x != w]
        assert cache.coefficients(xs) == tuple(shamir.lagrange_at_zero(xs, PRIME))
    # a set that is not the superset minus one point falls back to the direct computation
    other = [*base[2:], 6000]
    assert cache.coefficients(other[:39]) == tuple(shamir.lagrange_at_zero(other[:39], PRIME))
