"""Where secret randomness comes from (spec §4.9).

Secrets, seeds and keys come from the operating system (``os.urandom``) unless a
caller explicitly injects a :class:`DeterministicEntropy` through the one
parameter named ``entropy``; that exists only to regenerate published test
vectors and reproducible simulations, and its name says so. numpy's RNG is never
used for anything secret.
"""

from __future__ import annotations

import hashlib
import os
from typing import Protocol, runtime_checkable

from secagg.crypto.labels import Label


@runtime_checkable
class Entropy(Protocol):
    """A source of random bytes."""

    def random_bytes(self, n: int) -> bytes:
        """Return ``n`` random bytes."""
        ...


class SystemEntropy:
    """The default: the operating system's CSPRNG."""

    def random_bytes(self, n: int) -> bytes:
        return os.urandom(n)

    def __repr__(self) -> str:
        return "SystemEntropy()"


class DeterministicEntropy:
    """SHAKE-256 stream keyed by a seed. NOT SECRET: for test vectors and reproducible runs.

    Anyone who knows the seed knows every key derived from it. Use only where the
    output is meant to be public (test vectors) or the run is a simulation.
    """

    def __init__(self, seed: bytes) -> None:
        if not isinstance(seed, bytes | bytearray) or len(seed) == 0:
            raise TypeError("seed must be non-empty bytes")
        self._seed = bytes(seed)
        self._counter = 0

    def random_bytes(self, n: int) -> bytes:
        if n < 0:
            raise ValueError("n must be >= 0")
        h = hashlib.shake_256()
        h.update(Label.TEST_VECTOR_ENTROPY.value)
        h.update(len(self._seed).to_bytes(4, "big") + self._seed)
        h.update(self._counter.to_bytes(8, "big"))
        self._counter += 1
        return h.digest(n)

    def __repr__(self) -> str:
        return "DeterministicEntropy(<seed hidden>)"


SYSTEM_ENTROPY: Entropy = SystemEntropy()


def resolve(entropy: Entropy | None) -> Entropy:
    """``None`` means the operating system's CSPRNG."""
    return SYSTEM_ENTROPY if entropy is None else entropy
