"""The unmasking's Shamir reconstructions as pure jobs (spec §8.5, issue 15).

Why a module of its own: at n = 500 the server reconstructs ~500 secrets of t ~ 250
shares each, the largest serial part of closing the unmasking round. Each one is a
pure function of the shares the server received and public data (the commitment to
b_u, or the advertised public key s_u^PK), so an engine's workers can run them. The
decisions stay in :class:`~secagg.server.ServerProtocol`: it chooses which secrets to
recover, from which shares, and aborts on what a job reports (too few shares are
refused before any job; a secret no subset verifies comes back as None).

Results and counts equal those of the in-process path: each job prepares its own
Lagrange superset, so a run on K workers counts up to K supersets and coefficient
sets (the work it really did).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from secagg import masking
from secagg.crypto import shamir
from secagg.crypto.agreement import public_key_matches
from secagg.errors import ReconstructionError


class SecretKind(enum.Enum):
    """Which secret a job recovers, and so how a candidate is verified."""

    SELF_MASK_SEED = "b"  # checked against the owner's commitment (ShareKeys)
    MASK_KEY = "s"  # checked against the owner's advertised mask public key


@dataclass(frozen=True, repr=False)
class SecretJob:
    """One secret to recover: its owner, the shares by holder, and the public check value."""

    kind: SecretKind
    owner: int
    shares: dict[int, bytes]
    expected: bytes  # commitment to b_owner, or s_owner^PK

    def __repr__(self) -> str:
        return (f"SecretJob({self.kind.name}, owner={self.owner}, shares={len(self.shares)}, "
                "values=<hidden>)")


@dataclass(frozen=True)
class RecoveryBatch:
    """Jobs for one worker; ``superset`` the t + 1 responders whose coefficients to prepare."""

    session_id: bytes
    threshold: int
    superset: tuple[int, ...]
    jobs: tuple[SecretJob, ...] = field(repr=False)


@dataclass(frozen=True)
class RecoveryCounts:
    """What a batch ran (feeds :class:`~secagg.unmask.UnmaskWork`)."""

    interpolations: int = 0
    key_checks: int = 0
    coefficient_sets: int = 0
    derived_coefficient_sets: int = 0
    supersets: int = 0

    def __add__(self, other: RecoveryCounts) -> RecoveryCounts:
        return RecoveryCounts(*(a + b for a, b in zip(self.astuple(), other.astuple(),
                                                      strict=True)))

    def astuple(self) -> tuple[int, ...]:
        return (self.interpolations, self.key_checks, self.coefficient_sets,
                self.derived_coefficient_sets, self.supersets)


def recover(batch: RecoveryBatch) -> tuple[list[bytes | None], RecoveryCounts]:
    """Each job's verified secret, or None where no subset of its shares verifies."""
    sid, t = batch.session_id, batch.threshold
    cache = shamir.LagrangeCache()
    if batch.superset:
        cache.prepare_superset(batch.superset)
    attempts = key_checks = 0
    out: list[bytes | None] = []
    for job in batch.jobs:
        def check(secret: bytes, job: SecretJob = job) -> bool:
            nonlocal attempts, key_checks
            attempts += 1
            if job.kind is SecretKind.SELF_MASK_SEED:
                return masking.self_mask_commitment(sid, job.owner, secret) == job.expected
            key_checks += 1
            return public_key_matches(secret, job.expected)

        try:
            out.append(shamir.reconstruct_verified(job.shares, t, check, cache=cache))
        except ReconstructionError:
            out.append(None)
    return out, RecoveryCounts(attempts, key_checks, cache.misses - cache.derived,
                               cache.derived, cache.supersets)


def split_batches(batch: RecoveryBatch, parts: int) -> list[RecoveryBatch]:
    """``batch`` cut into at most ``parts`` contiguous batches of about equal share counts."""
    jobs = batch.jobs
    total = sum(len(j.shares) for j in jobs)
    parts = max(1, min(parts, len(jobs)))
    out: list[RecoveryBatch] = []
    start = done = 0
    for i, job in enumerate(jobs):
        done += len(job.shares)
        if len(out) < parts - 1 and done * parts >= total * (len(out) + 1):
            out.append(RecoveryBatch(batch.session_id, batch.threshold, batch.superset,
                                     jobs[start:i + 1]))
            start = i + 1
    if start < len(jobs) or not out:
        out.append(RecoveryBatch(batch.session_id, batch.threshold, batch.superset,
                                 jobs[start:]))
    return out


def concat(results: Sequence[tuple[list[bytes | None], RecoveryCounts]]
           ) -> tuple[list[bytes | None], RecoveryCounts]:
    """The results of :func:`split_batches`' batches, in the original job order."""
    secrets: list[bytes | None] = []
    counts = RecoveryCounts()
    for found, c in results:
        secrets.extend(found)
        counts = counts + c
    return secrets, counts


__all__ = ["RecoveryBatch", "RecoveryCounts", "SecretJob", "SecretKind", "concat", "recover",
           "split_batches"]
