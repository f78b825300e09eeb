"""The hardware floor of the server's work, measured on this machine, in this run.

Speed claims are ratios to this floor: the time to produce the same number of
raw AES-128-CTR keystream bytes (OpenSSL, ``update_into`` a preallocated
buffer, no KDF, no rejection sampling) and to fold the same number of vectors
into accumulators with the same kernel, split over the same number of threads.
No secure-aggregation server can do the same work faster on this machine.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from secagg.kernels.arith import add_into


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
