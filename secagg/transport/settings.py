"""What a gRPC server runs and what each of its sessions did (spec §17).

:class:`ServerSettings` is shared by the three parts of the server (the
upload gate, the round driver and the gRPC servicer); :class:`SessionOutcome`
is what the round driver records and the CLI prints.
"""

from __future__ import annotations

import hashlib
import resource
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from secagg.config import SessionConfig, SessionSettings
from secagg.errors import ConfigError


@dataclass(frozen=True)
class ServerSettings:
    """What the server runs: the cohort size it waits for and each session's parameters."""

    clients: int
    dim: int
    modulus: int = 1 << 32
    #: graph, threshold, degree, declared rates, minimum cohort and mode of every session
    session: SessionSettings = field(default_factory=SessionSettings)
    round_timeout: float = 30.0
    join_timeout: float = 60.0
    #: how long later sessions wait for missing clients (dropped or killed ones rarely
    #: come back within an FL round; those that do join the session after)
    rejoin_grace: float = 1.0
    sessions: int = 1
    threads: int | None = None
    #: None: a fresh random task hash per session, so session ids never repeat,
    #: not even after a restart. Give the model's hash to bind sessions to it.
    task_hash: bytes | None = None
    first_round: int = 0
    #: sums kept in memory (the latest sessions'); older outcomes keep their report only,
    #: so a server running thousands of FL rounds does not hold thousands of vectors
    keep_sums: int = 16
    #: at most this many MaskedInput uploads are buffered and decoded at once; other
    #: senders wait (their calls stay open under their own deadlines), so the server holds
    #: O(slots * m) of vectors in flight, not O(n * m), when every client uploads at once
    upload_slots: int = 2
    #: a buffering upload that receives no chunk for this long is cancelled, so a stalled
    #: (or malicious) sender cannot keep a slot, and everyone behind it, for the whole round
    upload_stall_timeout: float = 10.0
    #: a Send call whose first chunk has not arrived this long after the call opened is
    #: cancelled, so calls that never send cannot pin the server's RPC threads (§17.5)
    first_chunk_timeout: float = 5.0
    #: bytes per second a message still being received must average once it is past
    #: ``upload_stall_timeout``; a sender trickling a byte at a time loses its call (and
    #: upload slot) even though it never stalls long enough for the stall timer (§17.5)
    upload_min_rate: float = 32 * 1024
    #: concurrent Send calls per client certificate (an honest client makes one at a time)
    sends_per_client: int = 2
    #: write each session's public transcript to this directory (spec §18.5); None: off
    transcript_dir: str | None = None
    #: "full": masked vectors as sent; "hash": their SHA-256 (small at large m, spec §18.5)
    transcript_vectors: str = "full"
    #: append each session's transcript hash to this signed, chained log (spec §18.7)
    session_log: str | None = None
    #: the log's Ed25519 key (hex seed file, created if absent; ``<file>.pub`` for auditors)
    session_log_key: str | None = None

    def __post_init__(self) -> None:
        if self.clients < 1 or self.dim < 1 or self.sessions < 1:
            raise ConfigError("clients, dim and sessions must be positive")
        if not 0 < self.round_timeout <= 86_400 or not 0 < self.join_timeout <= 86_400:
            raise ConfigError("round and join timeouts must be in (0, 86400] seconds")
        if self.upload_slots < 1 or not self.upload_stall_timeout > 0:
            raise ConfigError("upload_slots and upload_stall_timeout must be positive")
        if not self.first_chunk_timeout > 0 or not self.upload_min_rate > 0:
            raise ConfigError("first_chunk_timeout and upload_min_rate must be positive")
        if self.sends_per_client < 1:
            raise ConfigError("sends_per_client must be positive")
        if self.transcript_vectors not in ("full", "hash"):
            raise ConfigError("transcript_vectors must be 'full' or 'hash'")
        if self.session_log is not None and (self.transcript_dir is None
                                             or self.session_log_key is None):
            raise ConfigError("a session log needs a transcript directory and a log key")
        if not isinstance(self.session, SessionSettings):
            raise ConfigError("session must be a SessionSettings")


@dataclass
class SessionOutcome:
    """What one session did; ``report()`` is the JSON the CLI prints."""

    sequence: int
    session_id: bytes = b""
    config: SessionConfig | None = None
    aborted: bool = True
    abort_reason: str | None = None
    included_ids: list[int] = field(default_factory=list)
    dropped_ids: list[int] = field(default_factory=list)
    server_seconds: float = 0.0
    wall_seconds: float = 0.0
    bytes_up: dict[str, int] = field(default_factory=dict)
    bytes_down: dict[str, int] = field(default_factory=dict)
    rounds: list[dict[str, Any]] = field(default_factory=list)
    refusals: dict[str, int] = field(default_factory=dict)  # gRPC status name -> count
    masks_expanded: int = 0
    server_work: dict[str, int] = field(default_factory=dict)  # UnmaskWork counts (§8.5)
    threads: int = 0
    sum: np.ndarray | None = field(default=None, repr=False)

    def report(self) -> dict[str, Any]:
        cfg = self.config
        n = cfg.n if cfg else 0
        per = max(1, n)
        return {
            "event": "session-end",
            "sequence": self.sequence,
            "session_id": self.session_id.hex(),
            "round_index": cfg.round_index if cfg else None,
            "aborted": self.aborted,
            "abort_reason": self.abort_reason,
            "clients": n,
            "dim": cfg.dim if cfg else None,
            "graph": cfg.graph.value if cfg else None,
            "mode": cfg.mode.value if cfg else None,
            "threshold": cfg.threshold if cfg else None,
            "degree": cfg.degree if cfg else None,
            "modulus_bits": (cfg.modulus - 1).bit_length() if cfg else None,
            "included": len(self.included_ids),
            "included_ids": self.included_ids,
            "dropped_ids": self.dropped_ids,
            "server_seconds": self.server_seconds,
            "wall_seconds": self.wall_seconds,
            "bytes_up_per_client": sum(self.bytes_up.values()) / per,
            "bytes_down_per_client": sum(self.bytes_down.values()) / per,
            "bytes_up_per_round": {k: v / per for k, v in self.bytes_up.items()},
            "bytes_down_per_round": {k: v / per for k, v in self.bytes_down.items()},
            "rounds": self.rounds,
            "refusals": self.refusals,
            "masks_expanded": self.masks_expanded,
            "server_work": self.server_work,
            "threads": self.threads,
            "peak_rss_mb": peak_rss_mb(),
            "sum_sha256": None if self.sum is None else hashlib.sha256(
                np.ascontiguousarray(self.sum).tobytes()).hexdigest(),
        }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
