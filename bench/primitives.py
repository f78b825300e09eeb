"""Micro-benchmarks of the cryptographic and arithmetic primitives.

Run ``python -m bench.primitives [--quick] [--json]``. Reports, in one run:

* raw AES-128-CTR and ChaCha20 keystream throughput (``update_into`` a
  preallocated buffer) next to :func:`secagg.crypto.prg.expand_mask` for the
  same number of output bytes, and their ratio (the PRG must stay >= 0.8 of raw
  at R = 2**32, m = 10**6); at each non-power-of-two R also PRG version 2, the
  chunked expansion (spec §4.6.1), and its cost against version 1 in the same run
  (``v2_over_v1_<R>``: time of v2 / time of v1, to stay within about 1.10);
* Shamir share / reconstruct time for a 32-byte secret, n = 100, t = 51;
* X25519 agreements per second;
* the numba accumulate kernel against numpy's in-place add.

Every figure is the best of N repeats (``time.perf_counter``), which filters
out scheduler noise on a shared 2-core machine; raw and PRG runs alternate so
both see the same machine state. The raw reference is the faster of one
whole-buffer call and 1 MiB calls, so the PRG/raw ratio is conservative.
``--quick`` shrinks every size (~2 s), for the smoke test.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from secagg.crypto import shamir
from secagg.crypto.kdf import encode_context
from secagg.crypto.prg import StreamCipher, expand_mask
from secagg.kernels.arith import add_into

_NON_POW2 = {"2^32-5": 2**32 - 5, "1000003": 1_000_003}


def _best(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best wall time (seconds) of each callable, interleaving them round by round."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def _raw_keystream(
    cipher: StreamCipher, out: np.ndarray, zeros: memoryview, chunk: int | None
) -> Callable[[], None]:
    """Bare keystream into ``out`` (fresh context each time, as the PRG does).

    ``chunk=None`` is one whole-buffer ``update_into``; otherwise ``chunk``-byte
    calls. The faster of the two is the reference the PRG is compared with.
    """
    key = bytes(range(32))
    target = memoryview(out.view(np.uint8))
    total = len(target)
    step = total if chunk is None else chunk

    def run() -> None:
        if cipher is StreamCipher.AES128_CTR:
            algo = Cipher(algorithms.AES(key[:16]), modes.CTR(bytes(16)))
        else:
            algo = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None)
        enc = algo.encryptor()
        for start in range(0, total, step):
            stop = min(total, start + step)
            enc.update_into(zeros[: stop - start], target[start:stop])

    return run


def bench_prg(m: int, repeats: int) -> dict[str, dict[str, float]]:
    """Raw keystream vs expand_mask, same output bytes, for both ciphers."""
    seed = os.urandom(32)
    context = encode_context(b"bench-session", "self-mask", 0)
    nbytes = 4 * m
    zeros = memoryview(bytes(nbytes))
    raw_out = np.empty(m, dtype=np.uint32)
    prg_out = np.empty(m, dtype=np.uint32)
    results: dict[str, dict[str, float]] = {}
    for cipher in StreamCipher:
        fns: dict[str, Callable[[], object]] = {
            "raw_whole": _raw_keystream(cipher, raw_out, zeros, None),
            "raw_chunked": _raw_keystream(cipher, raw_out, zeros, 1 << 20),
            "2^32": lambda c=cipher: expand_mask(seed, context, m, 2**32, cipher=c, out=prg_out),
        }
        for name, modulus in _NON_POW2.items():
            fns[name] = lambda c=cipher, r=modulus: expand_mask(
                seed, context, m, r, cipher=c, out=prg_out
            )
            fns[f"{name}-v2"] = lambda c=cipher, r=modulus: expand_mask(
                seed, context, m, r, cipher=c, version=2, out=prg_out
            )
        times = _best(fns, repeats)
        raw = min(times["raw_whole"], times["raw_chunked"])
        row = {
            "raw_gbps": nbytes / raw / 1e9,
            "raw_whole_gbps": nbytes / times["raw_whole"] / 1e9,
            "raw_chunked_gbps": nbytes / times["raw_chunked"] / 1e9,
        }
        for name in fns:
            if not name.startswith("raw"):
                row[f"prg_{name}_gbps"] = nbytes / times[name] / 1e9
                row[f"ratio_{name}"] = raw / times[name]
        for name in _NON_POW2:
            row[f"v2_over_v1_{name}"] = times[f"{name}-v2"] / times[name]
        results[cipher.value] = row
    return results


def bench_shamir(n: int, t: int, repeats: int) -> dict[str, float]:
    """Share and reconstruct one 32-byte secret (ms), reconstruct with and without cache."""
    secret = os.urandom(32)
    xs = list(range(1, n + 1))
    shares = shamir.split(secret, t, xs)
    cache = shamir.LagrangeCache()
    assert shamir.reconstruct(shares, t, cache=cache) == secret
    times = _best(
        {
            "share": lambda: shamir.split(secret, t, xs),
            "reconstruct": lambda: shamir.reconstruct(shares, t),
            "reconstruct_cached": lambda: shamir.reconstruct(shares, t, cache=cache),
        },
        repeats,
    )
    return {f"{k}_ms": v * 1e3 for k, v in times.items()} | {"n": n, "t": t}


def bench_x25519(count: int, repeats: int) -> dict[str, Any]:
    """Agreements per second, through secagg's wrapper when it exists."""
    try:
        from secagg.crypto import agreement

        private = agreement.X25519PrivateKey.generate()
        peer = agreement.X25519PrivateKey.generate().public_key

        def one() -> bytes:
            return agreement.agree(private, peer)

        backend = "secagg.crypto.agreement.agree"
    except (ImportError, AttributeError):
        from nacl.bindings import crypto_scalarmult, crypto_scalarmult_base

        scalar = os.urandom(32)
        peer = crypto_scalarmult_base(os.urandom(32))

        def one() -> bytes:
            return crypto_scalarmult(scalar, peer)

        backend = "nacl.bindings.crypto_scalarmult"

    def batch() -> None:
        for _ in range(count):
            one()

    best = _best({"batch": batch}, repeats)["batch"]
    return {
        "agreements_per_s": count / best,
        "us_per_agreement": best / count * 1e6,
        "backend": backend,
        **_x25519_threads(count, repeats),
    }


def _x25519_threads(count: int, repeats: int) -> dict[str, float]:
    """Each backend's agreements on 1 thread against 2 threads doing twice the work.

    Why: the server unmasks on threads, so a backend that holds the GIL (OpenSSL
    through ``cryptography``) runs its agreements one at a time whatever the cores;
    ``*_two_thread_speedup`` is about 2 on 2 free cores for one that releases it.
    """
    try:
        from secagg.crypto import agreement
    except ImportError:
        return {}
    private = agreement.X25519PrivateKey.generate()
    peer = agreement.X25519PrivateKey.generate().public_key
    out: dict[str, float] = {}
    for name, fn in (("openssl", agreement.agree),
                     ("libsodium", getattr(agreement, "agree_unlocked", None))):
        if fn is None:
            continue

        def batch(fn: Any = fn) -> None:
            for _ in range(count):
                fn(private, peer)

        def two(batch: Any = batch) -> None:
            threads = [threading.Thread(target=batch) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        times = _best({"one": batch, "two": two}, repeats)
        out[f"{name}_agreements_per_s"] = count / times["one"]
        out[f"{name}_two_thread_speedup"] = 2 * times["one"] / times["two"]
    return out


def bench_accumulate(vectors: int, m: int, repeats: int) -> dict[str, float]:
    """Sum `vectors` uint32 vectors of length m: numba kernel vs numpy in-place add."""
    data = [np.frombuffer(os.urandom(4 * m), dtype=np.uint32) for _ in range(min(vectors, 8))]
    prime = 2**32 - 5
    data_p = [np.minimum(d, np.uint32(prime - 1)) for d in data]
    acc = np.zeros(m, dtype=np.uint32)
    add_into(acc, data[0], 2**32)  # JIT (or load from cache) outside the timing
    add_into(acc, data_p[0], prime)

    def numba_pow2() -> None:
        for i in range(vectors):
            add_into(acc, data[i % len(data)], 2**32)

    def numba_prime() -> None:
        acc[:] = 0
        for i in range(vectors):
            add_into(acc, data_p[i % len(data_p)], prime)

    def numpy_pow2() -> None:
        for i in range(vectors):
            np.add(acc, data[i % len(data)], out=acc)

    times = _best(
        {"numba_2^32": numba_pow2, "numba_prime": numba_prime, "numpy_2^32": numpy_pow2}, repeats
    )
    out = {f"{k}_ms": v * 1e3 for k, v in times.items()}
    out["speedup_numba_vs_numpy_2^32"] = times["numpy_2^32"] / times["numba_2^32"]
    return out | {"vectors": vectors, "length": m}


def run(quick: bool) -> dict[str, Any]:
    """All benchmarks; sizes shrink with ``quick``."""
    m = 100_000 if quick else 1_000_000
    return {
        "config": {"quick": quick, "m": m, "cpu_count": os.cpu_count()},
        "prg": bench_prg(m, repeats=5 if quick else 30),
        "shamir": bench_shamir(100, 51, repeats=5 if quick else 50),
        "x25519": bench_x25519(count=200 if quick else 2000, repeats=2 if quick else 5),
        "accumulate": bench_accumulate(
            vectors=10 if quick else 100, m=m, repeats=2 if quick else 5
        ),
    }


def _print_text(res: dict[str, Any]) -> None:
    m = res["config"]["m"]
    print(f"PRG, m = {m:,} values of uint32 ({4 * m / 1e6:.1f} MB out), best of N")
    for cipher, row in res["prg"].items():
        print(
            f"  {cipher:<11} raw keystream           {row['raw_gbps']:6.2f} GB/s"
            f"   (whole buffer {row['raw_whole_gbps']:.2f}, 1 MiB calls"
            f" {row['raw_chunked_gbps']:.2f}; the faster is the reference)"
        )
        for name in ["2^32", *_NON_POW2, *(f"{r}-v2" for r in _NON_POW2)]:
            print(
                f"  {cipher:<11} expand_mask R={name:<10} {row[f'prg_{name}_gbps']:6.2f} GB/s"
                f"   PRG/raw = {row[f'ratio_{name}']:.3f}"
            )
        for name in _NON_POW2:
            print(f"  {cipher:<11} PRG version 2 / version 1 at R={name:<8} "
                  f"{row[f'v2_over_v1_{name}']:.3f} (time)")
    s = res["shamir"]
    print(f"Shamir, 32-byte secret, n = {s['n']}, t = {s['t']}")
    print(f"  share               {s['share_ms']:.3f} ms")
    print(f"  reconstruct         {s['reconstruct_ms']:.3f} ms")
    print(f"  reconstruct cached  {s['reconstruct_cached_ms']:.3f} ms")
    x = res["x25519"]
    print(f"X25519 ({x['backend']})")
    print(f"  {x['agreements_per_s']:,.0f} agreements/s ({x['us_per_agreement']:.1f} us each)")
    for name in ("openssl", "libsodium"):
        if f"{name}_agreements_per_s" in x:
            print(f"  {name}: {x[f'{name}_agreements_per_s']:,.0f}/s on one thread, "
                  f"{x[f'{name}_two_thread_speedup']:.2f}x on two")
    a = res["accumulate"]
    print(f"Accumulate {a['vectors']} x {a['length']:,} uint32")
    print(f"  numba add_into R=2^32    {a['numba_2^32_ms']:8.2f} ms")
    print(f"  numba add_into R=2^32-5  {a['numba_prime_ms']:8.2f} ms")
    print(
        f"  numpy in-place add 2^32  {a['numpy_2^32_ms']:8.2f} ms"
        f"   (numba speedup {a['speedup_numba_vs_numpy_2^32']:.2f}x)"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns a process exit code."""
    parser = argparse.ArgumentParser(prog="python -m bench.primitives", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (~2 s), for smoke tests")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args(argv)
    res = run(args.quick)
    if args.json:
        print(json.dumps(res, indent=2, sort_keys=True))
    else:
        _print_text(res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
