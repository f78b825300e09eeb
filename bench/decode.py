"""The server's masked-input decode path: speed and memory, old copies against the view.

Run ``python -m bench.decode [--dim M] [--clients N] [--repeats K] [--json]``. One run
reports:

* decode + accumulate time of one MaskedInput of M elements (R = 2**32 and R = 2**17),
  the server's path (``rounds.decode_client`` then :meth:`ServerProtocol.receive`)
  against the copying reference it replaced (the packed bytes copied out of the
  message, then the vector copied again by ``astype``), best of K, same process;
* how many bytes the server allocates above what it held while it takes one more
  masked input (tracemalloc), in vectors of M elements: the copies show as whole vectors;
* the server's peak memory over a whole recorded session of N clients (the
  ``peak_server_mb`` replay of :mod:`secagg.measure`), in vectors.

Why: the decode is the hot path of round 2 and, at m = 10^8, its copies were the
server's fourth vector (issue 15). Ratios only; absolute times move with the load.
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

from secagg import messages as msgs
from secagg.config import SessionConfig
from secagg.crypto.prg import mask_dtype
from secagg.kernels.arith import add_into
from secagg.measure import simulate
from secagg.packing import bit_width, pack
from secagg.rounds import decode_client
from secagg.server import ServerProtocol
from secagg.simclients import SeededInputs
from secagg.wire import Reader


def _copying_decode(data: bytes, dtype: np.dtype) -> np.ndarray:
    """The decode the server used before: two whole-vector copies (reference only)."""
    r = Reader(data)
    r.skip(4 + 4 + 1 + 4 + 8, "header")  # magic, version, type, sender, bits, count, length
    packed = bytes(r._take(r.remaining, "packed vector"))
    return np.frombuffer(packed, dtype="<u4").astype(dtype)


def _best(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _masked_server(config: SessionConfig) -> ServerProtocol:
    """A server in round 2 (its state set directly: only the decode path is measured)."""
    from secagg.server import ServerState

    server = ServerProtocol(config, threads=1)
    server._u2 = frozenset(config.cohort)
    server.state = ServerState.COLLECT_MASKED
    return server


def decode_speed(dim: int, modulus: int, repeats: int) -> dict[str, Any]:
    """Seconds per masked input: the server's receive path against the copying reference."""
    config = SessionConfig.create(range(1, 3 + repeats * 2 + 2), dim, modulus, min_cohort=3)
    dtype, bits = mask_dtype(modulus), bit_width(modulus)
    vec = np.random.default_rng(1).integers(0, modulus, dim, dtype=np.uint64).astype(dtype)
    server = _masked_server(config)
    acc = np.zeros(dim, dtype=dtype)
    senders = iter(config.cohort)
    wire = {u: msgs.MaskedInput(u, bits, dim, pack(vec, bits)).encode() for u in config.cohort}
    out: dict[str, Any] = {"dim": dim, "bits": bits}
    out["server_s"] = _best(lambda: server.receive(decode_client(wire[next(senders)])), repeats)
    if bits == 32:
        data = wire[1]
        out["copying_s"] = _best(lambda: add_into(acc, _copying_decode(data, dtype), modulus),
                                 repeats)
        out["copying_over_server"] = out["copying_s"] / out["server_s"]
    return out


def receive_overhead(dim: int) -> float:
    """Bytes allocated beyond the held state while one more masked input is taken, in vectors."""
    return second_receive(dim)[0]


def second_receive(dim: int) -> tuple[float, ServerProtocol]:
    """:func:`receive_overhead`, and the server that took the two inputs (clients 1 and
    2 of 5), so a test can also check that both were accepted."""
    R = 1 << 32
    config = SessionConfig.create(range(1, 6), dim, R, min_cohort=3)
    dtype = mask_dtype(R)
    vec = np.arange(dim, dtype=dtype)
    wire = [msgs.MaskedInput(u, 32, dim, pack(vec, 32)).encode() for u in (1, 2)]
    server = _masked_server(config)
    server.receive(decode_client(wire[0]))  # the accumulator now exists
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        server.receive(decode_client(wire[1]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return (peak - base) / (dim * dtype.itemsize), server


def session_peak(clients: int, dim: int) -> dict[str, float]:
    """The server's peak over a whole replayed session (SecAgg, 20% dropout at round 2)."""
    from secagg.rounds import Round
    from secagg.sim import random_schedule

    R = 1 << 32
    config = SessionConfig.create(range(1, clients + 1), dim, R, min_cohort=min(clients, 5))
    schedule = random_schedule(config.cohort, 0.2, Round.MASKED_INPUT,
                               np.random.default_rng(1))
    report = simulate(config, SeededInputs(1, dim, R), schedule, measure_memory=True,
                      measure_floor_time=False, threads=1)
    vector_mb = dim * mask_dtype(R).itemsize / 2**20
    return {"clients": clients, "dim": dim, "exact": bool(report.exact),
            "peak_server_mb": report.peak_server_mb,
            "peak_vectors": report.peak_server_mb / vector_mb}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dim", type=int, default=10**7)
    p.add_argument("--clients", type=int, default=5)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    result = {
        "decode_r32": decode_speed(a.dim, 1 << 32, a.repeats),
        "decode_r17": decode_speed(a.dim, 1 << 17, a.repeats),
        "receive_extra_vectors": receive_overhead(a.dim),
        "session": session_peak(a.clients, a.dim),
    }
    if a.json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
