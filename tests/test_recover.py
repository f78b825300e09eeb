"""The unmasking's reconstructions as pure jobs (secagg.recover): split over workers they
give the same secrets in the same order, a secret no subset verifies comes back as None,
and nothing secret shows in a repr."""

from __future__ import annotations

import os

import pytest

from secagg import masking
from secagg.crypto import shamir
from secagg.crypto.agreement import X25519PrivateKey
from secagg.recover import (
    RecoveryBatch,
    SecretJob,
    SecretKind,
    concat,
    recover,
    split_batches,
)

SID = bytes(range(32))
T = 4
HOLDERS = [1, 2, 3, 4, 5, 6]


def _jobs() -> tuple[list[bytes], tuple[SecretJob, ...]]:
    secrets, jobs = [], []
    for owner in range(10, 17):
        if owner % 2:
            key = X25519PrivateKey.generate()
            secret, kind, expected = key.secret_bytes(), SecretKind.MASK_KEY, key.public_key
        else:
            secret, kind = os.urandom(32), SecretKind.SELF_MASK_SEED
            expected = masking.self_mask_commitment(SID, owner, secret)
        holders = HOLDERS[: T + owner % 3]  # 4 to 6 shares
        secrets.append(secret)
        jobs.append(SecretJob(kind, owner, shamir.split(secret, T, holders), expected))
    return secrets, tuple(jobs)


@pytest.mark.parametrize("parts", [1, 2, 3, 7, 20])
def test_split_batches_give_the_same_secrets_in_order(parts: int) -> None:
    secrets, jobs = _jobs()
    batch = RecoveryBatch(SID, T, tuple(HOLDERS[: T + 1]), jobs)
    whole, counts = recover(batch)
    assert whole == secrets and counts.interpolations == len(jobs) and counts.supersets == 1
    assert counts.key_checks == sum(j.kind is SecretKind.MASK_KEY for j in jobs)
    batches = split_batches(batch, parts)
    assert len(batches) == min(parts, len(jobs))
    assert tuple(j for b in batches for j in b.jobs) == jobs
    found, split_counts = concat([recover(b) for b in batches])
    assert found == secrets
    assert split_counts.interpolations == counts.interpolations
    assert split_counts.supersets == len(batches)


def test_unverifiable_secret_is_none_and_reprs_hide_values() -> None:
    secrets, jobs = _jobs()
    wrong = SecretJob(jobs[0].kind, jobs[0].owner, jobs[0].shares, bytes(32))
    tampered = dict(jobs[1].shares)
    tampered[1] = (int.from_bytes(tampered[1], "big") ^ 1).to_bytes(33, "big")
    liar = SecretJob(jobs[1].kind, jobs[1].owner, tampered, jobs[1].expected)
    found, counts = recover(RecoveryBatch(SID, T, (), (wrong, liar, jobs[2])))
    assert found[0] is None and found[2] == secrets[2]
    assert found[1] == (secrets[1] if len(tampered) > T else None)  # spares outvote a liar
    assert counts.supersets == 0 and counts.interpolations > 3
    text = repr(jobs[0]) + repr(RecoveryBatch(SID, T, (), jobs))
    assert all(s.hex() not in text and share.hex() not in text
               for s, j in zip(secrets, jobs, strict=True) for share in j.shares.values())
