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
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import cached_property

from secagg import graph as graphs
from secagg.checks import is_plain_int, is_plain_rate, require_int
from secagg.crypto.kdf import encode_context, hkdf
from secagg.crypto.labels import Label
from secagg.crypto.prg import PRG_VERSIONS, StreamCipher, check_prg_version
from secagg.errors import ConfigError, MessageDecodeError
from secagg.rates import PPM as _PPM
from secagg.rates import count_from_ppm
from secagg.wire import MAX_U32, Reader, Writer

PROTOCOL_VERSION = 1
TASK_HASH_LEN = 32
SESSION_ID_LEN = 32
MAX_COHORT = 1_000_000
MAX_DIM = 1 << 31

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
class SessionSettings:
    """The session choices a deployment makes once, validated once (spec §2.1, §2.3).

    ``graph``, ``threshold``, ``degree``, the declared ``dropout_rate`` and
    ``corruption_rate`` (what the SecAgg+ finder provisions for, not a simulated
    rate), ``min_cohort``, ``mode`` and ``prg_version`` (the mask PRG, §4.6: 1, or 2
    for the chunked expansion that lets workers unmask by range at any R).
    :meth:`SessionConfig.create`, :class:`~secagg.aggregator.SecureAggregator`, the
    Flower workflow and ``fl.FedAvgConfig`` all take one of these instead of
    re-listing the choices as keyword arguments; their keyword arguments remain as a
    thin convenience that builds one. Checks that need the cohort size (threshold
    rules, finder) run when a :class:`SessionConfig` is built from it.
    """

    graph: graphs.GraphKind = graphs.GraphKind.COMPLETE
    threshold: int | None = None
    degree: int | None = None
    dropout_rate: float = 0.1
    corruption_rate: float = 0.05
    min_cohort: int = DEFAULT_MIN_COHORT
    mode: Mode = Mode.SEMI_HONEST
    prg_version: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "prg_version", check_prg_version(self.prg_version))
        try:
            object.__setattr__(self, "graph", graphs.GraphKind(self.graph))
        except ValueError:
            raise ConfigError(f"unknown graph {self.graph!r}") from None
        try:
            object.__setattr__(self, "mode", Mode(self.mode))
        except ValueError:
            raise ConfigError(f"unknown mode {self.mode!r}") from None
        for name in ("threshold", "degree"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, require_int(getattr(self, name), name))
        object.__setattr__(self, "min_cohort", require_int(self.min_cohort, "min_cohort"))
        if self.min_cohort < 3:
            raise ConfigError("min_cohort must be at least 3")
        for name in ("dropout_rate", "corruption_rate"):
            _to_ppm(getattr(self, name), name)
        if self.graph is graphs.GraphKind.HARARY and (self.degree is None) != (
            self.threshold is None
        ):
            raise ConfigError("give both degree and threshold for a Harary graph, or neither")

    @classmethod
    def build(cls, base: SessionSettings | None = None, **overrides: object) -> SessionSettings:
        """``base`` (default settings if None) with every override that is not None applied."""
        chosen = {key: value for key, value in overrides.items() if value is not None}
        return replace(base or cls(), **chosen)  # type: ignore[arg-type]

    @property
    def dropout_ppm(self) -> int:
        """The declared dropout rate in parts per million, as stored in a session (§2.5)."""
        return _to_ppm(self.dropout_rate, "dropout_rate")

    @property
    def corruption_ppm(self) -> int:
        """The declared corruption rate in parts per million, as stored in a session (§2.5)."""
        return _to_ppm(self.corruption_rate, "corruption_rate")


class SettingsViews:
    """Read-only views of a ``settings`` attribute (a :class:`SessionSettings`) for the
    classes that took these choices as attributes before SessionSettings existed
    (:class:`~secagg.aggregator.SecureAggregator`, the Flower workflow): written once
    so that every such class answers them alike."""

    settings: SessionSettings

    @property
    def dropout_rate(self) -> float:
        return float(self.settings.dropout_rate)

    @property
    def corruption_rate(self) -> float:
        return float(self.settings.corruption_rate)

    @property
    def min_cohort(self) -> int:
        return self.settings.min_cohort


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
    prg_version: int = 1
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
        settings: SessionSettings | None = None,
        graph: graphs.GraphKind | str | None = None,
        threshold: int | None = None,
        degree: int | None = None,
        dropout_rate: float | None = None,
        corruption_rate: float | None = None,
        round_index: int = 0,
        task_hash: bytes = bytes(TASK_HASH_LEN),
        min_cohort: int | None = None,
        prg: StreamCipher = StreamCipher.AES128_CTR,
        mode: Mode | str | None = None,
        prg_version: int | None = None,
        check_memory: bool = True,
    ) -> SessionConfig:
        """Build a config with safe defaults for what is not given.

        ``settings`` carries the session choices; each keyword given (not None)
        overrides the matching field (with neither, the :class:`SessionSettings`
        defaults: complete graph, 10 % dropout, 5 % corruption, semi-honest).
        Complete graph: t = floor(n/2) + 1 (semi-honest) or floor(2n/3) + 1
        (active). Harary graph: (k, t) from the parameter finder for the declared
        dropout and corruption rates, with the semi-malicious threat model in
        active mode, unless given explicitly (then checked, and refused with the
        reason if unsafe). ``check_memory`` refuses a session whose server state
        cannot fit in this machine's memory (:func:`secagg.budget.check_session`).
        """
        chosen = SessionSettings.build(
            settings, graph=graph, threshold=threshold, degree=degree,
            dropout_rate=dropout_rate, corruption_rate=corruption_rate,
            min_cohort=min_cohort, mode=mode, prg_version=prg_version,
        )
        ids = tuple(sorted(cohort))
        k, t = _graph_choice(chosen, len(ids))
        config = cls(
            cohort=ids,
            dim=dim,
            modulus=modulus,
            threshold=t,
            graph=chosen.graph,
            degree=k,
            round_index=round_index,
            task_hash=task_hash,
            min_cohort=chosen.min_cohort,
            dropout_ppm=chosen.dropout_ppm,
            corruption_ppm=chosen.corruption_ppm,
            mode=chosen.mode,
            prg=prg,
            prg_version=chosen.prg_version,
        )
        if check_memory:
            from secagg.budget import check_session  # budget imports this module

            check_session(config)
        return config

    @property
    def settings(self) -> SessionSettings:
        """The session choices of this config (rates as stored, in ppm)."""
        return SessionSettings(
            graph=self.graph, threshold=self.threshold, degree=self.degree,
            dropout_rate=self.dropout_ppm / _PPM, corruption_rate=self.corruption_ppm / _PPM,
            min_cohort=self.min_cohort, mode=self.mode, prg_version=self.prg_version,
        )

    def __post_init__(self) -> None:
        self._check_fields()
        if self.graph is graphs.GraphKind.COMPLETE:
            self._check_complete_thresholds()
        else:
            graphs.check_harary_params(
                # exact Fractions: graph accepts them (its _exact_rate), though typed float
                self.n, self.degree, self.threshold, *self._declared_rates(),  # type: ignore[arg-type]
                threat=Mode(self.mode).threat,
            )

    def _check_fields(self) -> None:
        """Field-by-field checks (spec §2.2 items 1-4), independent of threshold policy."""
        ids = self.cohort
        if not isinstance(ids, tuple) or not all(is_plain_int(i) for i in ids):
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
        self._check_scalars()

    def _check_scalars(self) -> None:
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
        # a name is accepted for each enum field and stored as the member (the encoding
        # reads .value); an unknown name is a ConfigError, not a ValueError
        for name, kind in (("graph", graphs.GraphKind), ("mode", Mode), ("prg", StreamCipher)):
            try:
                object.__setattr__(self, name, kind(getattr(self, name)))
            except ValueError:
                raise ConfigError(f"unknown {name} {getattr(self, name)!r}") from None
        object.__setattr__(self, "prg_version", check_prg_version(self.prg_version))

    @property
    def corrupt_count(self) -> int:
        """Declared corrupt clients: ceil(n · rate), exact at the ppm resolution (§2.5)."""
        return count_from_ppm(self.corruption_ppm, self.n)

    @property
    def dropout_count(self) -> int:
        """Declared dropouts: ceil(n · rate), exact at the ppm resolution (§2.5)."""
        return count_from_ppm(self.dropout_ppm, self.n)

    def _declared_rates(self) -> tuple[Fraction, Fraction]:
        """(dropout, corruption) as the exact fractions count / n the checks run on."""
        return _as_rate(self.dropout_count, self.n), _as_rate(self.corrupt_count, self.n)

    def _check_complete_thresholds(self) -> None:
        """Threshold policy of the complete graph (spec §2.3, §15.1)."""
        n, t = self.n, self.threshold
        if self.degree != n - 1:
            raise ConfigError("the complete graph has degree n - 1")
        graphs.check_complete_threshold(n, t)
        corrupt = self.corrupt_count
        if t <= corrupt:
            raise ConfigError(
                f"threshold t = {t} does not exceed the {corrupt} clients the "
                "declared corruption rate allows: they could reconstruct any secret"
            )
        if Mode(self.mode) is Mode.ACTIVE and 2 * t <= n + corrupt:
            raise ConfigError(
                f"active mode: threshold t = {t} must exceed (n + corrupt)/2 = "
                f"{(n + corrupt) / 2} (n = {n}, {corrupt} declared corrupt clients), or a "
                "malicious server could collect t signatures on two different survivor "
                "views; the default for active mode is floor(2n/3) + 1"
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
        if self.prg_version != 1:  # absent for version 1: those encodings stay as they were
            w.u8(self.prg_version)
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
        prg_version = _decode_prg_version(r)
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
            prg_version=prg_version,
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


def _decode_prg_version(r: Reader) -> int:
    """The optional last field (§2.6): absent means PRG version 1; present, it must name
    another version this implementation knows (a 1 there would be a second encoding)."""
    if not r.remaining:
        return 1
    version = r.u8("prg_version")
    if version == 1 or version not in PRG_VERSIONS:
        # an old encoder never wrote this byte: to it, this is one byte too many
        raise MessageDecodeError(f"unknown PRG version {version} (or trailing bytes)")
    return version


def _to_ppm(rate: float, name: str) -> int:
    """The rate in parts per million as stored (round to nearest; counts are derived by
    :func:`secagg.rates.count_from_ppm`, which rounds toward the safe side)."""
    if not is_plain_rate(rate):
        raise ConfigError(f"{name} must be a number")
    if not 0.0 <= rate < 1.0:
        raise ConfigError(f"{name} must be in [0, 1)")
    return round(rate * _PPM)


def _graph_choice(settings: SessionSettings, n: int) -> tuple[int, int]:
    """(degree, threshold) for ``n`` clients: the settings' own, else the safe defaults (§2.3)."""
    if settings.graph is graphs.GraphKind.COMPLETE:
        if settings.degree is not None and settings.degree != n - 1:
            raise ConfigError("the complete graph has degree n - 1; do not pass degree")
        if settings.threshold is not None:
            return n - 1, settings.threshold
        if settings.mode is Mode.ACTIVE:
            return n - 1, active_complete_threshold_default(n)
        return n - 1, graphs.complete_threshold_default(n)
    if settings.degree is not None and settings.threshold is not None:
        return settings.degree, settings.threshold
    graphs.complete_threshold_default(n)  # refuses n < 3 with the usual reason
    # the finder sees exactly the counts the config stores and re-checks (§2.5)
    dropped = count_from_ppm(settings.dropout_ppm, n)
    corrupt = count_from_ppm(settings.corruption_ppm, n)
    found = graphs.find_harary_params(  # exact Fractions, accepted though typed float
        n, _as_rate(dropped, n), _as_rate(corrupt, n), threat=settings.mode.threat  # type: ignore[arg-type]
    )
    return found.k, found.t


def _as_rate(count: int, n: int) -> Fraction:
    """count / n exactly, kept below 1 (the finder's rates are in [0, 1); a count of n
    fails its 0.9 precondition either way)."""
    return Fraction(min(count, n - 1), n)
