"""Memory and work of a session, estimated before anything is allocated (spec §9.3).

A session's cost grows with the cohort n, the vector length m and the degree k
(n - 1 on the complete graph): the server relays n·k share ciphertexts, each
client runs k key agreements and expands k + 1 masks of m words. On the complete
graph that is quadratic in n; ``secagg simulate --clients 100000`` would need
terabytes and gets killed by the operating system after taking every byte of
memory. :func:`check_budget` refuses such a session up front with a
:class:`~secagg.errors.ConfigError` naming the estimate, the limit and a way out.

The numbers count the raw bytes a session cannot avoid holding (no Python
object overhead), so they err low: the point is to refuse what cannot possibly
fit, never to refuse what does.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from typing import Final

from secagg.config import Mode, SessionConfig
from secagg.errors import ConfigError
from secagg.graph import GraphKind
from secagg.messages import CIPHERTEXT_LEN, KEY_LEN, SHARE_LEN, SIGNATURE_LEN

__all__ = ["Estimate", "Role", "available_memory", "check_budget", "check_session", "estimate"]

# Raw bytes per item held in memory (messages.py sizes; no Python overhead).
_CIPHERTEXT: Final = 4 + CIPHERTEXT_LEN  # one encrypted share pair relayed by the server (§8.2)
_KEY_ENTRY: Final = 4 + 2 * KEY_LEN  # one advertised key pair (+ signature in active mode)
_SHARE: Final = 5 + SHARE_LEN  # one share held for unmasking (§9.2)
_WORD: Final = 8  # one vector element (uint64 at most)
_BASE: Final = 64 << 20  # interpreter, numpy, numba kernels


class Role(enum.Enum):
    """Whose memory is estimated: the server alone, or every party in one process."""

    SERVER = "server"
    SIMULATION = "simulation"


@dataclass(frozen=True)
class Estimate:
    """Estimated peak memory (bytes) and work (counts) of one session."""

    memory_bytes: int
    agreements: int
    mask_words: int
    ciphertexts: int

    def describe(self) -> str:
        return (f"~{_human(self.memory_bytes)} of memory, {self.agreements:,} key agreements, "
                f"{self.ciphertexts:,} share ciphertexts, {self.mask_words:,} mask words")


def estimate(n: int, dim: int, degree: int, *, mode: Mode = Mode.SEMI_HONEST,
             role: Role = Role.SERVER) -> Estimate:
    """Peak memory and work of a session of ``n`` clients, ``dim`` elements, degree k.

    Server: n key entries, n·k relayed ciphertexts, up to n·k shares at unmasking
    and a few m-element vectors. Simulation adds every client: its input and
    masked vector (2m words), k neighbours' keys, k ciphertexts and k shares.
    """
    k = max(0, min(degree, n - 1))
    keys = n * (_KEY_ENTRY + (SIGNATURE_LEN if mode is Mode.ACTIVE else 0))
    ciphertexts = n * k
    server = _BASE + keys + ciphertexts * (_CIPHERTEXT + _SHARE) + 4 * dim * _WORD
    clients = 0
    if role is Role.SIMULATION:
        clients = n * (2 * dim * _WORD + k * (_KEY_ENTRY + _CIPHERTEXT + _SHARE))
    return Estimate(memory_bytes=server + clients, agreements=2 * n * k,
                    mask_words=n * (k + 1) * dim, ciphertexts=ciphertexts)


def available_memory() -> int:
    """Bytes this process may still allocate: MemAvailable, else physical memory."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError, AttributeError):  # pragma: no cover - no sysconf
        return 1 << 62  # unknown: do not refuse


def check_budget(n: int, dim: int, degree: int, *, graph: GraphKind = GraphKind.COMPLETE,
                 mode: Mode = Mode.SEMI_HONEST, role: Role = Role.SERVER,
                 limit: int | None = None) -> Estimate:
    """Refuse (ConfigError) a session whose estimated memory exceeds ``limit``.

    ``limit`` defaults to :func:`available_memory`. Returns the estimate when it fits.
    """
    est = estimate(n, dim, degree, mode=mode, role=role)
    cap = available_memory() if limit is None else limit
    if est.memory_bytes > cap:
        hint = ("use --graph harary (SecAgg+: degree O(log n) instead of n - 1)"
                if graph is GraphKind.COMPLETE else "use fewer clients or a shorter vector")
        raise ConfigError(
            f"session of {n} clients x {dim} elements ({graph.value} graph, degree {degree}) "
            f"needs {est.describe()}, more than the {_human(cap)} available; {hint}"
        )
    return est


def check_session(config: SessionConfig, *, role: Role = Role.SERVER,
                  limit: int | None = None) -> Estimate:
    """:func:`check_budget` for a built config."""
    return check_budget(config.n, config.dim, config.degree, graph=config.graph,
                        mode=config.mode, role=role, limit=limit)


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError  # pragma: no cover
