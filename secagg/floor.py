"""The hardware floor of the server's work, measured on this machine, in this run.

Two floors. :func:`measure_floor` (``floor_seconds``) counts only keystream and
vector additions. :func:`measure_full_floor` (``full_floor_seconds``) counts every
primitive the unmasking needed, from what the server actually did: X25519
agreements and key checks, HKDFs, Shamir combinations and Lagrange coefficient sets,
keystream and additions, each at its best single-core rate, divided by the workers.

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

from secagg.crypto.agreement import X25519PrivateKey, public_key_matches
from secagg.crypto.kdf import encode_context, hkdf
from secagg.crypto.labels import Label
from secagg.crypto.prg import StreamCipher, mask_dtype
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


def _keystream_second_per_byte(cipher: StreamCipher, nbytes: int) -> float:
    """Raw keystream (no KDF, no rejection) into a preallocated buffer, per byte."""
    nbytes = max(1 << 12, min(nbytes, 1 << 24))
    buf = bytearray(nbytes)
    zeros = bytes(nbytes)

    def once() -> None:
        if cipher is StreamCipher.AES128_CTR:
            enc = Cipher(algorithms.AES(os.urandom(16)), modes.CTR(bytes(16))).encryptor()
        else:
            enc = Cipher(algorithms.ChaCha20(os.urandom(32), bytes(16)), mode=None).encryptor()
        enc.update_into(zeros, buf)

    return _best(once, max(1, (1 << 22) // nbytes)) / nbytes


def _addition_seconds(dim: int, dtype: np.dtype, modulus: int) -> float:
    """One vector folded into an accumulator with the server's kernel."""
    acc = np.zeros(dim, dtype=dtype)
    vec = np.ones(dim, dtype=dtype)
    add_into(acc, vec, modulus)  # compiled before timing
    return _best(lambda: add_into(acc, vec, modulus), max(1, (1 << 22) // max(1, dim)))


def _shamir_seconds(t: int, n: int) -> dict[str, float]:
    """One combination of t shares, one O(t^2) coefficient set, one derived from a superset."""
    t = max(2, t)
    xs = list(range(max(1, n - t), max(1, n - t) + t + 1))  # ids of the session's size
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


def primitive_seconds(*, dim: int, modulus: int, cipher: StreamCipher, threshold: int,
                      n: int) -> dict[str, float]:
    """Best single-core seconds of one of each primitive, measured now on this machine."""
    dtype = mask_dtype(modulus)
    key, peer = X25519PrivateKey.generate(), X25519PrivateKey.generate().public_key
    secret, public = key.secret_bytes(), key.public_key
    ikm = os.urandom(32)
    context = encode_context("pairwise-mask", os.urandom(32), n, n + 1, peer, public)
    return {
        "agreement": _best(lambda: key.exchange(peer), 64),
        "key_check": _best(lambda: public_key_matches(secret, public), 64),
        "key_derivation": _best(lambda: hkdf(ikm, Label.PAIRWISE_MASK_SEED, context), 64),
        "keystream_byte": _keystream_second_per_byte(cipher, dim * dtype.itemsize),
        "addition": _addition_seconds(dim, dtype, modulus),
        **_shamir_seconds(threshold, n),
    }


def measure_full_floor(work: UnmaskWork, *, inputs_added: int, dim: int, modulus: int,
                       cipher: StreamCipher, n: int, parallelism: int) -> FullFloor:
    """The full floor of a session's server: each primitive it ran, at its best rate.

    Counts come from what the server did (:class:`~secagg.unmask.UnmaskWork`:
    agreements, key checks, HKDFs, Shamir combinations and coefficient sets, masks)
    plus the ``inputs_added`` masked vectors it folded; each is priced at the best
    time of that primitive measured now on one core, and the sum is divided by
    ``parallelism`` (the workers, or threads, the server used). Keystream is
    counted as ``dim`` words per mask (a lower bound when R is not a power of two).
    """
    rate = primitive_seconds(dim=dim, modulus=modulus, cipher=cipher,
                             threshold=work.threshold, n=n)
    itemsize = mask_dtype(modulus).itemsize
    parts = {
        "agreements": work.agreements * rate["agreement"],
        "key_checks": work.key_checks * rate["key_check"],
        "key_derivations": work.key_derivations * rate["key_derivation"],
        "shamir": (work.interpolations * rate["combine"]
                   + work.coefficient_sets * rate["coefficients"]
                   + work.derived_coefficient_sets * rate["derived"]
                   + work.supersets * rate["superset"]),
        "keystream": work.masks * dim * itemsize * rate["keystream_byte"],
        "additions": (work.masks + inputs_added) * rate["addition"],
    }
    parallelism = max(1, parallelism)
    return FullFloor(sum(parts.values()) / parallelism,
                     {k: v / parallelism for k, v in parts.items()}, parallelism)
