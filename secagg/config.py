"""Session configuration and the session binding (spec §2 and §3).

A :class:`SessionConfig` fixes everything both sides must agree on: the cohort,
vector length, modulus, threshold, graph, FL round and the task (model) hash. It
validates itself on construction, so an unsafe configuration is refused with a
:class:`~secagg.errors.ConfigError` before any key is generated.

Every client computes the session id itself from the canonical encoding of the
config (never from a server-sent id), and every key derivation and associated
data of the session includes it.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

from secagg import graph as graphs
from secagg.crypto.kdf import encode_context, hkdf
from secagg.crypto.labels import Label
from secagg.crypto.prg import StreamCipher
from secagg.errors import ConfigError, MessageDecodeError
from secagg.wire import MAX_U32, Reader, Writer

PROTOCOL_VERSION = 1
TASK_HASH_LEN = 32
SESSION_ID_LEN = 32
MAX_COHORT = 1_000_000
MAX_DIM = 1 << 31
_PPM = 1_000_000

#: Smallest cohort a session may have unless the caller lowers it explicitly.
#: A sum over very few clients reveals nearly as much as one client's input
#: (with two clients, each learns the other's update by subtracting its own),
#: and thresholds around n/2 leave no dropout slack for tiny n.
DEFAULT_MIN_COHORT = 10


class Mode(enum.Enum):
    """Adversary model the session defends against (spec §12, §15, §16).

    ``SEMI_HONEST``: the server follows the protocol (it may be curious and
    collude with clients). ``ACTIVE``: the server may deviate arbitrarily; clients
    sign their keys and their survivor view with long-term identities, run the
    ConsistencyCheck round, and thresholds are raised so that two contradictory
    views can never both gather t signatures.
    """

    SEMI_HONEST = "semi-honest"
    ACTIVE = "active"

    @property
    def threat(self) -> graphs.ThreatModel:
        """The threat model the threshold rules of this mode are checked under."""
        if self is Mode.ACTIVE:
            return graphs.ThreatModel.SEMI_MALICIOUS
        return graphs.ThreatModel.SEMI_HONEST


def active_complete_threshold_default(n: int) -> int:
    """floor(2n/3) + 1: the active-mode default for the complete graph (Bonawitz et al.).

    It exceeds (n + corrupt)/2 for any corrupt fraction below 1/3, which is what
    keeps two contradictory survivor views from both collecting t signatures, and
    still tolerates about n/3 - 2 dropouts.
    """
    graphs.complete_threshold_default(n)  # refuses n < 3 with the usual reason
    return 2 * n // 3 + 1


@dataclass(frozen=True)
class SessionConfig:
    """Everything the server and every client must agree on for one session.

    Build one with :meth:`create`, which fills in defaults (threshold, Harary
    degree from the parameter finder); the constructor validates whatever it is given.
    """

    cohort: tuple[int, ...]
    dim: int
    modulus: int
    threshold: int
    graph: graphs.GraphKind
    degree: int
    round_index: int = 0
    task_hash: bytes = bytes(TASK_HASH_LEN)
    min_cohort: int = DEFAULT_MIN_COHORT
    dropout_ppm: int = 0
    corruption_ppm: int = 0
    mode: Mode = Mode.SEMI_HONEST
    prg: StreamCipher = StreamCipher.AES128_CTR
    _neighbours: dict[int, tuple[int, ...]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    # -- construction -------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        cohort: Iterable[int],
        dim: int,
        modulus: int,
        *,
        graph: graphs.GraphKind | str = graphs.GraphKind.COMPLETE,
        threshold: int | None = None,
        degree: int | None = None,
        dropout_rate: float = 0.1,
        corruption_rate: float = 0.05,
        round_index: int = 0,
        task_hash: bytes = bytes(TASK_HASH_LEN),
        min_cohort: int = DEFAULT_MIN_COHORT,
        prg: StreamCipher = StreamCipher.AES128_CTR,
        mode: Mode | str = Mode.SEMI_HONEST,
    ) -> SessionConfig:
        """Build a config with safe defaults for what is not given.

        Complete graph: t = floor(n/2) + 1 (semi-honest) or floor(2n/3) + 1
        (active). Harary graph: (k, t) from the parameter finder for the declared
        dropout and corruption rates, with the semi-malicious threat model in
        active mode, unless given explicitly (then checked, and refused with the
        reason if unsafe).
        """
        ids = tuple(sorted(cohort))
        kind = graphs.GraphKind(graph)
        try:
            mode = Mode(mode)
        except ValueError:
            raise ConfigError(f"unknown mode {mode!r}") from None
        n = len(ids)
        dropout_ppm = _to_ppm(dropout_rate, "dropout_rate")
        corruption_ppm = _to_ppm(corruption_rate, "corruption_rate")
        if kind is graphs.GraphKind.COMPLETE:
            if degree is not None and degree != n - 1:
                raise ConfigError("the complete graph has degree n - 1; do not pass degree")
            k = n - 1
            if threshold is not None:
                t = threshold
            elif mode is Mode.ACTIVE:
                t = active_complete_threshold_default(n)
            else:
                t = graphs.complete_threshold_default(n)
        else:
            if degree is None and threshold is None:
                # the finder sees exactly the rates the config stores (and re-checks)
                found = graphs.find_harary_params(
                    n, dropout_ppm / _PPM, corruption_ppm / _PPM, threat=mode.threat
                )
                k, t = found.k, found.t
            elif degree is None or threshold is None:
                raise ConfigError("give both degree and threshold for a Harary graph, or neither")
            else:
                k, t = degree, threshold
        return cls(
            cohort=ids,
            dim=dim,
            modulus=modulus,
            threshold=t,
            graph=kind,
            degree=k,
            round_index=round_index,
            task_hash=task_hash,
            min_cohort=min_cohort,
            dropout_ppm=dropout_ppm,
            corruption_ppm=corruption_ppm,
            mode=mode,
            prg=prg,
        )

    def __post_init__(self) -> None:
        ids = self.cohort
        if not isinstance(ids, tuple) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in ids
        ):
            raise ConfigError("cohort must be a tuple of integer client ids")
        if any(not 1 <= i <= MAX_U32 for i in ids):
            raise ConfigError("client ids must be in [1, 2**32 - 1]")
        if list(ids) != sorted(set(ids)):
            raise ConfigError("cohort ids must be distinct and sorted")
        n = len(ids)
        if n > MAX_COHORT:
            raise ConfigError(f"cohort of {n} exceeds the limit of {MAX_COHORT}")
        if self.min_cohort < 3:
            raise ConfigError("min_cohort must be at least 3")
        if n < self.min_cohort:
            raise ConfigError(
                f"cohort of {n} clients is below the minimum of {self.min_cohort}: a sum over "
                "so few clients reveals too much about each; lower min_cohort explicitly to "
                "accept it"
            )
        if not 1 <= self.dim <= MAX_DIM:
            raise ConfigError(f"dim must be in [1, {MAX_DIM}]")
        if not 2 <= self.modulus <= 1 << 64:
            raise ConfigError("modulus must be in [2, 2**64]")
        if not isinstance(self.task_hash, bytes) or len(self.task_hash) != TASK_HASH_LEN:
            raise ConfigError(f"task_hash must be {TASK_HASH_LEN} bytes")
        if not 0 <= self.round_index <= (1 << 64) - 1:
            raise ConfigError("round_index must fit in 64 bits")
        for name in ("dropout_ppm", "corruption_ppm"):
            if not 0 <= getattr(self, name) < _PPM:
                raise ConfigError(f"{name} must be in [0, {_PPM})")
        graphs.GraphKind(self.graph)
        mode = Mode(self.mode)
        StreamCipher(self.prg)
        if self.graph is graphs.GraphKind.COMPLETE:
            if self.degree != n - 1:
                raise ConfigError("the complete graph has degree n - 1")
            graphs.check_complete_threshold(n, self.threshold)
            corrupt = n * self.corruption_ppm // _PPM
            if self.threshold <= corrupt:
                raise ConfigError(
                    f"threshold t = {self.threshold} does not exceed the {corrupt} clients the "
                    "declared corruption rate allows: they could reconstruct any secret"
                )
            if mode is Mode.ACTIVE and 2 * self.threshold <= n + corrupt:
                raise ConfigError(
                    f"active mode: threshold t = {self.threshold} must exceed (n + corrupt)/2 = "
                    f"{(n + corrupt) / 2} (n = {n}, {corrupt} declared corrupt clients), or a "
                    "malicious server could collect t signatures on two different survivor "
                    "views; the default for active mode is floor(2n/3) + 1"
                )
        else:
            graphs.check_harary_params(
                n,
                self.degree,
                self.threshold,
                self.dropout_ppm / _PPM,
                self.corruption_ppm / _PPM,
                threat=mode.threat,
            )

    # -- derived values -----------------------------------------------------------------
    @property
    def n(self) -> int:
        return len(self.cohort)

    def encode(self) -> bytes:
        """Canonical encoding (spec §2.6); input of the session id."""
        w = Writer().u8(PROTOCOL_VERSION)
        w.var(self.mode.value.encode()).var(self.graph.value.encode()).var(self.prg.value.encode())
        w.u64(self.round_index).fixed(self.task_hash, TASK_HASH_LEN)
        w.u64(self.dim).raw(self.modulus.to_bytes(9, "big"))
        w.u32(self.threshold).u32(self.degree).u32(self.min_cohort)
        w.u32(self.dropout_ppm).u32(self.corruption_ppm)
        w.u32(len(self.cohort))
        for cid in self.cohort:
            w.u32(cid)
        return w.getvalue()

    @classmethod
    def decode(cls, data: bytes) -> SessionConfig:
        """Inverse of :meth:`encode`; validates like the constructor (ConfigError) and
        refuses malformed bytes (MessageDecodeError)."""
        r = Reader(data)
        version = r.u8("version")
        if version != PROTOCOL_VERSION:
            raise MessageDecodeError(f"unsupported protocol version {version}")
        try:
            mode = Mode(r.var("mode", 32).decode())
            kind = graphs.GraphKind(r.var("graph", 32).decode())
            prg = StreamCipher(r.var("prg", 32).decode())
        except (ValueError, UnicodeDecodeError):
            raise MessageDecodeError("unknown mode, graph or PRG name") from None
        round_index = r.u64("round_index")
        task_hash = r.fixed(TASK_HASH_LEN, "task_hash")
        dim = r.u64("dim")
        modulus = int.from_bytes(r.fixed(9, "modulus"), "big")
        threshold, degree, min_cohort = r.u32("threshold"), r.u32("degree"), r.u32("min_cohort")
        dropout_ppm, corruption_ppm = r.u32("dropout_ppm"), r.u32("corruption_ppm")
        count = r.count("cohort", MAX_COHORT)
        cohort = tuple(r.u32("client id") for _ in range(count))
        r.finish()
        return cls(
            cohort=cohort,
            dim=dim,
            modulus=modulus,
            threshold=threshold,
            graph=kind,
            degree=degree,
            round_index=round_index,
            task_hash=task_hash,
            min_cohort=min_cohort,
            dropout_ppm=dropout_ppm,
            corruption_ppm=corruption_ppm,
            mode=mode,
            prg=prg,
        )

    @cached_property
    def session_id(self) -> bytes:
        """Session id = HKDF(SHA-256(config encoding), SESSION_ID) (spec §3.1)."""
        digest = hashlib.sha256(self.encode()).digest()
        return hkdf(digest, Label.SESSION_ID, encode_context(PROTOCOL_VERSION), length=32)

    def neighbours(self, client_id: int) -> tuple[int, ...]:
        """N(u): the clients u exchanges keys, shares and masks with (excludes u)."""
        table = self._neighbour_table()
        try:
            return table[client_id]
        except KeyError:
            raise ConfigError(f"client {client_id} is not in the cohort") from None

    def _neighbour_table(self) -> dict[int, tuple[int, ...]]:
        if self._neighbours is None:
            if self.graph is graphs.GraphKind.COMPLETE or self.degree >= self.n - 1:
                table = graphs.complete_neighbours(self.cohort)
            else:
                table = graphs.harary_neighbours(self.cohort, self.degree, self.session_id)
            object.__setattr__(self, "_neighbours", table)
        assert self._neighbours is not None
        return self._neighbours


def _to_ppm(rate: float, name: str) -> int:
    if not 0.0 <= rate < 1.0:
        raise ConfigError(f"{name} must be in [0, 1)")
    return round(rate * _PPM)
