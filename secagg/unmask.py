"""The server's unmasking work as pure functions, and the count of its primitives (spec §8.5).

Why a module of its own: the sans-IO :class:`~secagg.server.ServerProtocol` decides
*what* to unmask (which seeds and keys were reconstructed, which pairs need
removing); the heavy, embarrassingly parallel part (X25519 agreements, HKDF and
mask expansion) is a pure function of public inputs plus the reconstructed
secrets, so an engine (:mod:`secagg.engine`) can run it in worker processes
without the state machine doing any I/O.

The split (§8.5, "workers"): a vector of at most ``server.MASK_SPLIT_MAX_DIM``
coordinates is split by mask (each job runs its dropped clients' agreements and
regenerates its share of the masks over the whole vector). A longer one is split in
two steps: agreements by dropped client (each job returns the
pairwise seeds), then masks by coordinate range: every job regenerates its range
``[start, stop)`` of every mask from the right keystream counter
(:func:`secagg.crypto.prg.expand_mask_range`) and returns one partial vector the
coordinator subtracts. Memory is O(stop - start) per job; the result is the same
sum mod R, byte for byte, as the single-process path. Ranges need a
power-of-two R or the chunked PRG (version 2, §4.6.1): with version 1 at other R,
rejection sampling makes positions data-dependent. With version 2 at such R,
ranges start on chunk boundaries (:func:`range_align`), so no job expands
keystream it throws away.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from secagg import masking
from secagg.crypto.agreement import X25519PrivateKey, agree_unlocked
from secagg.crypto.prg import PRG_CHUNK, StreamCipher, expand_mask_range, mask_dtype
from secagg.kernels.arith import add_into, sub_into

#: Ranges start on a multiple of this many elements: 64 bytes of uint32 (one ChaCha20
#: block, four AES blocks), so no job starts inside a cipher block.
RANGE_ALIGN = 16


def range_align(modulus: int) -> int:
    """Where a job's range should start, in values: RANGE_ALIGN for a power-of-two R; a
    chunk of the chunked PRG (§4.6.1) otherwise, since a range starting inside a chunk
    expands the chunk's head and throws it away."""
    return RANGE_ALIGN if modulus & (modulus - 1) == 0 else PRG_CHUNK


@dataclass(frozen=True)
class UnmaskWork:
    """How many of each primitive the server ran to unmask (counted, not estimated).

    Feeds the full floor (:func:`secagg.floor.measure_full_floor`): each count
    times that primitive's best measured rate is work no server can skip.
    """

    self_masks: int = 0
    pairwise_masks: int = 0
    agreements: int = 0  # X25519(s_v, pk_w): one per (dropped v, surviving neighbour w)
    key_checks: int = 0  # X25519 base multiplications: reconstructed s_v against pk_v
    key_derivations: int = 0  # HKDF: one per pairwise seed and one per mask's PRG key
    interpolations: int = 0  # Shamir combinations (t products each), every attempt
    coefficient_sets: int = 0  # Lagrange coefficient sets computed from scratch, O(t^2)
    derived_coefficient_sets: int = 0  # sets derived from a prepared superset, O(t)
    supersets: int = 0  # prepared supersets of t + 1 points
    threshold: int = 0

    @property
    def masks(self) -> int:
        return self.self_masks + self.pairwise_masks

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class PairJob:
    """Dropped client ``v``'s reconstructed secret and its surviving neighbours' public keys."""

    v: int
    secret: bytes
    pk_v: bytes
    peers: tuple[tuple[int, bytes], ...]  # (w, pk_w)

    def __repr__(self) -> str:
        return f"PairJob(v={self.v}, peers={len(self.peers)}, secret=<hidden>)"


@dataclass(frozen=True)
class RangeJob:
    """Regenerate ``[start, stop)`` of every mask: the survivors' self masks and the
    pairwise masks of each (dropped v, surviving w) pair."""

    session_id: bytes
    modulus: int
    cipher: StreamCipher
    start: int
    stop: int
    self_seeds: tuple[tuple[int, bytes], ...]  # (u, b_u)
    pair_seeds: tuple[tuple[int, int, bytes], ...]  # (v dropped, w survived, s_vw)
    prg_version: int = 1  # the session's PRG version (§4.6)

    def __repr__(self) -> str:
        return (f"RangeJob([{self.start}, {self.stop}), self={len(self.self_seeds)}, "
                f"pairs={len(self.pair_seeds)}, seeds=<hidden>)")


def pairwise_seeds(session_id: bytes, jobs: Sequence[PairJob]) -> list[tuple[int, int, bytes]]:
    """(v, w, s_vw) for every job's pairs: the agreements and HKDFs behind the pairwise masks."""
    out: list[tuple[int, int, bytes]] = []
    for job in jobs:
        key = X25519PrivateKey.from_bytes(job.secret)
        for w, pk_w in job.peers:
            agreed = agree_unlocked(key, pk_w)
            out.append((job.v, w, masking.pairwise_seed(agreed, session_id, job.v, w,
                                                        job.pk_v, pk_w)))
    return out


def mask_range(job: RangeJob) -> np.ndarray:
    """Sum mod R over ``[start, stop)`` of every mask the survivors added, net of sign.

    Self masks and pairwise masks with sign(w, v) = +1 count positively, the
    others negatively: the coordinator subtracts the returned vector from the
    same range of the accumulator.
    """
    R, start, stop = job.modulus, job.start, job.stop
    dtype = mask_dtype(R)
    length = stop - start
    # one partial, each mask folded in with its sign: two vectors a job (the partial
    # and a scratch), not a plus, a minus and a last pass to subtract them
    net = np.zeros(length, dtype=dtype)
    scratch = np.empty(length, dtype=dtype)
    sid, version = job.session_id, job.prg_version
    for u, seed in job.self_seeds:
        expand_mask_range(seed, masking.self_mask_context(sid, u), start, stop, R,
                          cipher=job.cipher, version=version, out=scratch)
        add_into(net, scratch, R)
    for v, w, seed in job.pair_seeds:
        expand_mask_range(seed, masking.pairwise_mask_context(sid, v, w), start, stop, R,
                          cipher=job.cipher, version=version, out=scratch)
        (add_into if masking.pairwise_sign(w, v) > 0 else sub_into)(net, scratch, R)
    return net


def split_ranges(dim: int, parts: int, align: int = RANGE_ALIGN) -> list[tuple[int, int]]:
    """``parts`` (or fewer) contiguous ranges covering ``[0, dim)``, each starting on a
    multiple of ``align`` (:func:`range_align`)."""
    blocks = -(-dim // align)
    parts = max(1, min(parts, blocks))
    bounds = [min(dim, (blocks * i // parts) * align) for i in range(parts + 1)]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def split_evenly(items: Sequence[PairJob], parts: int) -> list[list[PairJob]]:
    """Jobs dealt into ``parts`` groups of about equal pair counts (largest first)."""
    groups: list[list[PairJob]] = [[] for _ in range(max(1, parts))]
    loads = [0] * len(groups)
    for job in sorted(items, key=lambda j: -len(j.peers)):
        i = loads.index(min(loads))
        groups[i].append(job)
        loads[i] += len(job.peers)
    return [g for g in groups if g]


__all__ = ["RANGE_ALIGN", "PairJob", "RangeJob", "UnmaskWork", "mask_range", "pairwise_seeds",
           "range_align", "split_evenly", "split_ranges"]
