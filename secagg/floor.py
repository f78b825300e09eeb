"""The hardware floor of the server's work, measured on this machine, in this run.

Two floors. :func:`measure_floor` (``floor_seconds``) counts only keystream and
vector additions. :func:`measure_full_floor` (``full_floor_seconds``) counts every
primitive the unmasking needed, from what the server actually did: X25519
agreements and key checks, HKDFs, Shamir combinations and Lagrange coefficient sets,
each at its best single-core rate divided by the workers, plus the keystream floor.

Speed claims are ratios to this floor: the time to produce the same number of
raw AES-128-CTR keystream bytes (OpenSSL, ``update_into`` a preallocated
buffer, no KDF, no rejection sampling) and to fold the same number of vectors
into accumulators with the same kernel, split over the same number of threads.
No secure-aggregation server can do the same work faster on this machine.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from secagg.crypto.agreement import X25519PrivateKey, agree_unlocked, public_key_matches
from secagg.crypto.kdf import encode_context, hkdf
from secagg.crypto.labels import Label
from secagg.crypto.shamir import PRIME, LagrangeCache, lagrange_at_zero
from secagg.kernels.arith import add_into
from secagg.unmask import UnmaskWork


def measure_floor(masks: int, adds: int, dim: int, dtype: np.dtype, modulus: int,
                  threads: int) -> float:
    """Seconds to generate ``masks`` keystreams of ``dim`` elements and fold
    ``masks + adds`` vectors, over ``threads`` threads (best of 3 repeats)."""
    dtype = np.dtype(dtype)
    nbytes = dim * dtype.itemsize
    threads = max(1, min(threads, max(1, masks + adds)))

    def work(share: tuple[int, int]) -> None:
        n_masks, n_adds = share
        acc = np.zeros(dim, dtype=dtype)
        buf = np.empty(dim, dtype=dtype)
        raw = buf.view(np.uint8)
        zeros = bytes(nbytes)
        for _ in range(n_masks):
            enc = Cipher(algorithms.AES(os.urandom(16)), modes.CTR(bytes(16))).encryptor()
            enc.update_into(zeros, raw.data)
            if modulus != 1 << (8 * dtype.itemsize):
                np.bitwise_and(buf, dtype.type(min(modulus, 1 << (8 * dtype.itemsize)) - 1),
                               out=buf)
            add_into(acc, buf, modulus)
        for _ in range(n_adds):
            add_into(acc, buf, modulus)

    shares = [(masks // threads + (i < masks % threads), adds // threads + (i < adds % threads))
              for i in range(threads)]
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        if threads == 1:
            work(shares[0])
        else:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                list(pool.map(work, shares))
        best = min(best, time.perf_counter() - start)
    return best


# --- the full floor: every primitive the unmasking needed ---------------------------------


@dataclass(frozen=True)
class FullFloor:
    """Seconds per primitive (count x best single-core time, over ``parallelism``) and the total."""

    seconds: float
    parts: dict[str, float]
    parallelism: int


def _best(fn: Callable[[], object], repeats: int, rounds: int = 3) -> float:
    """Best time of one call of ``fn`` over ``rounds`` batches of ``repeats`` calls."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        best = min(best, (time.perf_counter() - start) / repeats)
    return best


def _shamir_seconds(t: int, n: int, spread_ids: bool) -> dict[str, float]:
    """One combination of t shares, one O(t^2) coefficient set, one derived from a superset.

    The points are ids of the session's size, and of its shape: the first t + 1 of a
    complete graph's responders are neighbouring ids; a Harary graph's holders are laid
    over a random permutation, so their ids spread over [1, n], and the wider
    differences make a coefficient set about 20% dearer at n = 10^4, t = 20.
    """
    t = max(2, t)
    if spread_ids and n > t:
        xs = [1 + (i * n) // (t + 1) for i in range(t + 1)]
    else:
        xs = list(range(max(1, n - t), max(1, n - t) + t + 1))
    values = [int.from_bytes(os.urandom(32), "big") for _ in range(t)]
    lambdas = lagrange_at_zero(xs[:t], PRIME)

    def combine() -> int:
        return sum(lam * v for lam, v in zip(lambdas, values, strict=True)) % PRIME

    cache = LagrangeCache(maxsize=t + 2)
    cache.prepare_superset(xs, PRIME)
    subsets = iter([[x for x in xs if x != drop] for drop in xs])
    # each call derives a set not yet cached (t + 1 distinct, each used once per batch)
    derive_repeats = min(8, t + 1)

    def derive() -> None:
        cache.clear()
        cache.prepare_superset(xs, PRIME)

    prepare = _best(derive, 1)
    derived = _best(lambda: cache.coefficients(next(subsets), PRIME), derive_repeats, rounds=1)
    return {
        "combine": _best(combine, 32),
        "coefficients": _best(lambda: lagrange_at_zero(xs[:t], PRIME), 2),
        "derived": max(0.0, derived),
        "superset": prepare,
    }


def primitive_seconds(*, threshold: int, n: int, spread_ids: bool = False) -> dict[str, float]:
    """Best single-core seconds of one of each primitive besides keystream and additions,
    measured now on this machine (short batches, best of 3: the machine's rate, not its load).
    ``spread_ids``: Shamir points spread over the cohort (a sparse Harary graph)."""
    key, peer = X25519PrivateKey.generate(), X25519PrivateKey.generate().public_key
    secret, public = key.secret_bytes(), key.public_key
    ikm = os.urandom(32)
    context = encode_context("pairwise-mask", os.urandom(32), n, n + 1, peer, public)
    return {
        "agreement": _best(lambda: agree_unlocked(key, peer), 64),  # the server's backend
        "key_check": _best(lambda: public_key_matches(secret, public), 64),
        "key_derivation": _best(lambda: hkdf(ikm, Label.PAIRWISE_MASK_SEED, context), 64),
        **_shamir_seconds(threshold, n, spread_ids),
    }


def measure_full_floor(work: UnmaskWork, *, keystream_floor: float, n: int,
                       parallelism: int, spread_ids: bool = False) -> FullFloor:
    """The full floor of a session's server: each primitive it ran, at its best rate.

    Counts come from what the server did (:class:`~secagg.unmask.UnmaskWork`):
    X25519 agreements and key checks, HKDFs, Shamir combinations and coefficient
    sets, each priced at that primitive's best single-core time measured now and
    divided by ``parallelism`` (the workers, or threads, the server used). The
    keystream and vector additions are ``keystream_floor``: :func:`measure_floor`
    for the same masks and inputs over the same parallelism, measured beside the
    session (sustained throughput; a short burst would catch an idle core the
    session never had). So the full floor is never below the keystream floor.
    ``spread_ids``: the Shamir points spread over the cohort, as a sparse Harary
    graph's holders are (their coefficient sets cost more than neighbouring ids').
    """
    rate = primitive_seconds(threshold=work.threshold, n=n, spread_ids=spread_ids)
    parallelism = max(1, parallelism)
    parts = {
        "agreements": work.agreements * rate["agreement"] / parallelism,
        "key_checks": work.key_checks * rate["key_check"] / parallelism,
        "key_derivations": work.key_derivations * rate["key_derivation"] / parallelism,
        "shamir": (work.interpolations * rate["combine"]
                   + work.coefficient_sets * rate["coefficients"]
                   + work.derived_coefficient_sets * rate["derived"]
                   + work.supersets * rate["superset"]) / parallelism,
        "keystream_and_additions": keystream_floor,
    }
    return FullFloor(sum(parts.values()), parts, parallelism)
