"""Secure weighted averaging of model updates, for plugging into your own FL loop.

:class:`SecureAggregator` turns one federated round's updates (Flower's
``NDArrays`` convention: a ``list[np.ndarray]`` per client) into their weighted
mean through a full secure-aggregation session, run in-process by
:func:`secagg.sim.simulate`:

1. each update is flattened (:func:`secagg.quantize.flatten`) and quantized
   with its integer weight (:func:`secagg.quantize.encode`): the vector carries
   ``w * level`` per coordinate and ``w`` itself in a last coordinate, so the
   server learns the total weight ``Σ w`` only as part of the masked sum and
   never one client's weight or update;
2. a :class:`~secagg.config.SessionConfig` is built whose modulus is the
   quantization modulus (chosen so the worst-case sum cannot wrap) and whose
   length includes the weight coordinate;
3. the session runs with the given dropouts; the server's exact sum mod R over
   the included clients is decoded (:func:`secagg.quantize.decode_sum`) into
   ``Σ w x / Σ w`` and unflattened into arrays of the update's shapes.

The mean equals the plaintext weighted mean of the *clipped* updates of the
included clients within :attr:`SecureAggregator.error_bound` per coordinate
(one quantization step); :func:`weighted_mean` is that plaintext oracle.

**A simulation, for research and testing.** Every client and the server run in
this one process, so the server code could read any update: nothing is protected
here. Use it to measure what secure aggregation costs and how it behaves under
dropouts. Real deployments put each client on its own device: the gRPC transport
(``secagg server`` / ``secagg client``, :mod:`secagg.transport`), the Flower mod
(:mod:`secagg.flower`), or :class:`secagg.client.ClientProtocol` and
:class:`secagg.server.ServerProtocol` over your own transport with the same
quantization steps; see the README.

**Client ids** may be any hashable values (strings, UUIDs, ints). When every id is
already a valid protocol id (an int in ``[1, 2**32 - 1]``) it is used as it is;
otherwise the ids are numbered 1..n in the caller's order inside
(:attr:`AggregationResult.protocol_ids`). ``included``, ``dropped``, ``weights`` and
``dropouts`` always speak the caller's ids; only ``report`` speaks protocol ids.

**Aggregate deltas, not weights.** Clipping to ``[-clip, clip]`` and a quantization
step of ``2 clip / (2**bits - 1)`` suit values near zero. A model's weights are not
(a bias of 5.0 clips to 1.0, and a step sized for the weights' whole range is coarse);
the change each client made in a round is. Send ``local - global`` and add the mean
delta to the global model::

    deltas = {u: [lw - gw for lw, gw in zip(local[u], global_w)] for u in local}
    result = SecureAggregator(clip=0.1).aggregate(deltas, weights)
    global_w = [gw + d for gw, d in zip(global_w, result.mean)]

:attr:`AggregationResult.clipped_fraction` says how much clipping bent the mean; past
``clip_warning`` (default 5% of the coordinates) a :class:`ClippingWarning` is issued
with :func:`warnings.warn` (a ``UserWarning``: filter it, or turn it into an error,
with the :mod:`warnings` machinery; ``clip_warning=None`` never warns).
"""

from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from secagg.budget import Role, check_session
from secagg.checks import is_int_like
from secagg.config import SessionConfig, SessionSettings, SettingsViews
from secagg.errors import AbortError, ConfigError, ProtocolError
from secagg.graph import GraphKind
from secagg.quantize import (
    Layout,
    QuantizationConfig,
    decode_sum,
    encode,
    error_bound,
    flatten,
    unflatten,
)
from secagg.rounds import Round
from secagg.session import DropoutSchedule
from secagg.sim import SimulationReport, simulate

__all__ = [
    "DEFAULT_CLIP_WARNING",
    "AggregationAborted",
    "AggregationResult",
    "ClippingWarning",
    "SecureAggregator",
    "protocol_ids",
    "weighted_mean",
]

#: a caller's client id: any hashable (mapped to protocol ids inside)
ClientId = TypeVar("ClientId", bound=Hashable)

#: dropouts: round (or its public label) -> clients that stop there (the driver's type)
Schedule = DropoutSchedule

#: the caller's dropouts: round (or its label) -> the caller's ids that stop there
CallerSchedule = (Mapping[Round, Iterable[ClientId]] | Mapping[str, Iterable[ClientId]]
                  | Mapping[Round | str, Iterable[ClientId]])

#: share of clipped coordinates above which :meth:`SecureAggregator.aggregate` warns
DEFAULT_CLIP_WARNING = 0.05

#: the largest protocol client id (§2: ids are u32, 0 excluded)
_MAX_ID = 2**32 - 1


class ClippingWarning(UserWarning):
    """Many update coordinates were clipped: the mean is biased towards zero.

    Raise ``clip`` (or send deltas instead of weights); filter this category with
    :mod:`warnings` to silence it or turn it into an error.
    """


class AggregationAborted(AbortError):  # noqa: N818  (an AbortError; the name says what happened)
    """The session aborted (too few clients survived); nothing was aggregated.

    Carries the simulator's ``report`` so the caller can still log who dropped
    and what the attempt cost. The right reaction in FedAvg is to keep the
    previous global model for this round.
    """

    def __init__(self, reason: str, report: SimulationReport, seconds: float) -> None:
        super().__init__(f"secure aggregation aborted: {reason}")
        self.reason = reason
        self.report = report
        self.seconds = seconds


@dataclass(frozen=True, eq=False)
class AggregationResult(Generic[ClientId]):
    """The outcome of one secure aggregation.

    ``mean`` is the weighted mean of the included clients' updates, in the
    update's shapes and dtypes; ``included`` the clients whose updates are in
    it, by the caller's ids (sorted when they are protocol ids, else in the
    caller's order); ``total_weight`` their summed weight (what the server learns
    besides the sum); ``seconds`` the wall time of the whole call (encoding,
    every client's and the server's protocol work, decoding); ``report`` the
    simulator's measurements (in protocol ids, see ``protocol_ids``);
    ``clipped_fraction`` the share of the cohort's update coordinates that lay
    beyond ``±clip`` (the mean approximates the *clipped* updates' mean).
    """

    mean: list[np.ndarray]
    included: tuple[ClientId, ...]
    total_weight: int
    report: SimulationReport
    seconds: float
    quantization: QuantizationConfig = field(repr=False)
    clipped_fraction: float = 0.0
    #: the caller's id -> the protocol id it had in the session
    protocol_ids: Mapping[ClientId, int] = field(default_factory=dict, repr=False)

    @property
    def dropped(self) -> tuple[ClientId, ...]:
        """Clients of the cohort whose updates are not in the mean (the caller's ids)."""
        if not self.protocol_ids:  # built without the mapping: the ids were the protocol's
            return tuple(self.report.dropped_ids)  # type: ignore[arg-type]  # ClientId is int
        gone = set(self.report.dropped_ids)
        return tuple(c for c, p in self.protocol_ids.items() if p in gone)


class SecureAggregator(SettingsViews):
    """Weighted mean of client updates by secure aggregation (in-process simulation).

    ``clip`` bounds every coordinate of an update to ``[-clip, clip]`` (values
    beyond are clipped, so choose it above the updates' typical magnitude);
    ``bits`` is the quantization resolution; ``max_weight`` is the largest
    weight a client may declare (a public cap, e.g. the largest plausible
    local data-set size: the modulus grows with it, and a larger weight is
    refused rather than silently wrapped). ``max_weight=1`` means unweighted
    (plain mean, no weight coordinate).

    ``settings`` (a :class:`~secagg.config.SessionSettings`) holds the session
    choices passed to :meth:`SessionConfig.create` for each session; the
    keywords ``graph``, ``threshold``, ``degree``, ``dropout_rate``,
    ``corruption_rate`` and ``min_cohort`` build or override it (``dropout_rate``
    is the *declared* rate the SecAgg+ parameter finder provisions for, not a
    simulated one). A session whose estimated memory exceeds ``memory_limit``
    (default: the machine's available memory) is refused (:mod:`secagg.budget`).
    ``threads`` is the server's unmasking thread count; ``seed`` makes the
    stochastic rounding reproducible (the protocol's keys always come from the
    operating system). ``clip_warning`` is the share of clipped coordinates past
    which :meth:`aggregate` issues a :class:`ClippingWarning` (``None``: never).

    A simulation for research and testing: every client runs in this process (see
    the module docstring for deployments, client ids, and why to aggregate deltas).
    """

    def __init__(
        self,
        *,
        clip: float = 1.0,
        bits: int = 16,
        max_weight: int = 1,
        settings: SessionSettings | None = None,
        graph: GraphKind | str | None = None,
        threshold: int | None = None,
        degree: int | None = None,
        dropout_rate: float | None = None,
        corruption_rate: float | None = None,
        min_cohort: int | None = None,
        threads: int | None = None,
        seed: int | None = None,
        memory_limit: int | None = None,
        clip_warning: float | None = DEFAULT_CLIP_WARNING,
    ) -> None:
        # validate the quantization parameters now (with n = 1) so a bad clip,
        # bits or max_weight is refused at construction, not mid-training
        QuantizationConfig(clip=clip, bits=bits, max_clients=1, max_weight=max_weight)
        #: the session choices (the keywords, when given, override ``settings``)
        self.settings = SessionSettings.build(
            settings, graph=graph, threshold=threshold, degree=degree,
            dropout_rate=dropout_rate, corruption_rate=corruption_rate, min_cohort=min_cohort,
        )
        self.clip = float(clip)
        self.bits = int(bits)
        self.max_weight = int(max_weight)
        self.threads = threads
        #: bytes a session may use (None: the machine's available memory), see secagg.budget
        self.memory_limit = memory_limit
        self._rng = np.random.default_rng(seed)
        if clip_warning is not None and not 0.0 <= float(clip_warning) <= 1.0:
            raise ConfigError("clip_warning must be a fraction in [0, 1] or None")
        #: share of clipped coordinates past which aggregate() warns (None: never)
        self.clip_warning = None if clip_warning is None else float(clip_warning)

    # read-only views of the settings, kept for callers of the former attributes
    @property
    def graph(self) -> GraphKind:
        return self.settings.graph

    @property
    def threshold(self) -> int | None:
        return self.settings.threshold

    @property
    def degree(self) -> int | None:
        return self.settings.degree

    def quantization(self, num_clients: int) -> QuantizationConfig:
        """The quantization config of a session with ``num_clients`` clients.

        ``max_clients`` is the cohort size: every client may be included, and
        the modulus must hold that worst case.
        """
        return QuantizationConfig(
            clip=self.clip, bits=self.bits, max_clients=num_clients, max_weight=self.max_weight
        )

    @property
    def error_bound(self) -> float:
        """Per-coordinate bound on ``|secure mean - weighted mean of clipped updates|``.

        Independent of the number of clients (see :func:`secagg.quantize.error_bound`).
        """
        return error_bound(self.quantization(1))

    def session_config(self, cohort: Sequence[int], layout: Layout, *,
                       round_index: int = 0) -> SessionConfig:
        """The session's config: modulus from quantization, dim = layout + weight coordinate.

        The task hash binds the session to the model layout, so clients of a
        different model architecture cannot end up in the same session.
        """
        q = self.quantization(len(cohort))
        task = hashlib.sha256(repr((layout.shapes, layout.dtypes)).encode()).digest()
        config = SessionConfig.create(
            cohort,
            layout.size + q.dim_overhead,
            q.modulus,
            settings=self.settings,
            round_index=round_index,
            task_hash=task,
            check_memory=False,
        )
        # every client and the server run in this process (secagg.sim)
        check_session(config, role=Role.SIMULATION, limit=self.memory_limit)
        return config

    def aggregate(
        self,
        updates_by_client: Mapping[ClientId, Sequence[np.ndarray]],
        weights: Mapping[ClientId, int] | None = None,
        *,
        dropouts: CallerSchedule[ClientId] | None = None,
        round_index: int = 0,
    ) -> AggregationResult[ClientId]:
        """Securely compute ``Σ w_u x_u / Σ w_u`` over the clients that stay.

        ``updates_by_client`` maps a client id (any hashable) to its update;
        all updates must have the same shapes and dtypes. ``weights`` maps the
        same ids to positive ints <= ``max_weight`` (omit for equal weights).
        ``dropouts`` maps a :class:`~secagg.rounds.Round` (or its label) to the
        clients that stop sending at that round.

        Raises :class:`~secagg.errors.ConfigError` for mismatched shapes, ids,
        weights, an unknown drop point or an unsafe session, and
        :class:`AggregationAborted` when too few clients survive for the session
        to finish. Warns (:class:`ClippingWarning`) when more than
        ``clip_warning`` of the coordinates were clipped.
        """
        if not isinstance(updates_by_client, Mapping) or not updates_by_client:
            raise ConfigError("updates_by_client must be a non-empty mapping of id -> arrays")
        ids = protocol_ids(list(updates_by_client))
        cohort = sorted(ids.values())
        w = self._check_weights(ids, weights)
        flat, layout = self._flatten_all(ids, updates_by_client)
        clipped = self._clipped_fraction(flat)

        start = time.perf_counter()
        config = self.session_config(cohort, layout, round_index=round_index)
        q = self.quantization(len(cohort))
        encoded = {u: encode(flat[u], q, weight=w[u], rng=self._rng) for u in cohort}
        schedule = _check_schedule(dropouts, ids)
        report = simulate(config, encoded, schedule, threads=self.threads)
        if report.aborted or report.sum is None:
            reason = report.abort_reason or "the session did not finish"
            raise AggregationAborted(reason, report, time.perf_counter() - start)
        if not report.exact:  # the simulator's own plaintext check; never expected
            raise ProtocolError("secure sum differs from the plaintext sum of the included")
        decoded = decode_sum(report.sum, q, num_clients=report.included)
        expected_weight = sum(w[u] for u in report.included_ids)
        if decoded.total_weight != expected_weight:  # same: a corrupted aggregate
            raise ProtocolError("aggregate weight differs from the included clients' weights")
        chosen = set(report.included_ids)
        return AggregationResult(
            mean=unflatten(decoded.mean, layout),
            included=tuple(c for c, p in ids.items() if p in chosen),
            total_weight=decoded.total_weight,
            report=report,
            seconds=time.perf_counter() - start,
            quantization=q,
            clipped_fraction=clipped,
            protocol_ids=ids,
        )

    def _clipped_fraction(self, flat: Mapping[int, np.ndarray]) -> float:
        """Share of the coordinates beyond ``±clip``; warns past ``clip_warning``."""
        total = sum(v.size for v in flat.values())
        beyond = sum(int(np.count_nonzero(np.abs(v) > self.clip)) for v in flat.values())
        fraction = beyond / total if total else 0.0
        if self.clip_warning is not None and fraction > self.clip_warning:
            warnings.warn(
                f"{fraction:.1%} of the update coordinates lie beyond clip={self.clip:g} and "
                f"were clipped (warning threshold {self.clip_warning:.1%}): the mean is biased; "
                "raise clip, or aggregate deltas rather than weights",
                ClippingWarning, stacklevel=3)
        return fraction

    # -- validation ----------------------------------------------------------------------
    def _check_weights(self, ids: Mapping[ClientId, int],
                       weights: Mapping[ClientId, int] | None) -> dict[int, int]:
        """Each protocol id's weight, checked (the caller's ids name the clients)."""
        if weights is None:
            return dict.fromkeys(ids.values(), 1)
        if set(weights) != set(ids):
            raise ConfigError("weights must name exactly the clients that sent updates")
        out: dict[int, int] = {}
        for c, u in ids.items():
            wu = weights[c]
            if not is_int_like(wu):
                raise ConfigError(f"client {c!r}'s weight must be an int")
            if not 1 <= int(wu) <= self.max_weight:
                raise ConfigError(
                    f"client {c!r}'s weight must be in [1, max_weight={self.max_weight}]"
                )
            out[u] = int(wu)
        return out

    @staticmethod
    def _flatten_all(ids: Mapping[ClientId, int],
                     updates: Mapping[ClientId, Sequence[np.ndarray]]
                     ) -> tuple[dict[int, np.ndarray], Layout]:
        """Each protocol id's flat update; every update must share the first one's layout."""
        flat: dict[int, np.ndarray] = {}
        layout: Layout | None = None
        for c, u in ids.items():
            vec, lay = flatten(updates[c])
            if layout is None:
                layout = lay
            elif lay != layout:
                raise ConfigError(
                    f"client {c!r}'s update has shapes {lay.shapes} / dtypes {lay.dtypes}, "
                    f"expected {layout.shapes} / {layout.dtypes}"
                )
            flat[u] = vec
        assert layout is not None  # the cohort is non-empty
        if layout.size == 0:
            raise ConfigError("updates are empty (no scalars to aggregate)")
        return flat, layout


def protocol_ids(clients: Sequence[ClientId]) -> dict[ClientId, int]:
    """The caller's ids -> protocol ids (§2: distinct ints in ``[1, 2**32 - 1]``).

    Ids that are all valid protocol ids already are kept (sorted, as the protocol
    orders its cohort); any other hashables are numbered 1..n in the caller's order.
    """
    as_ints: dict[int, ClientId] = {}
    for c in clients:
        value: object = c  # narrowed below without losing c's type
        if is_int_like(value) and 1 <= int(value) <= _MAX_ID:
            as_ints[int(value)] = c
    if len(as_ints) == len(clients):
        return {as_ints[p]: p for p in sorted(as_ints)}
    if len(clients) > _MAX_ID:
        raise ConfigError(f"at most {_MAX_ID} clients")
    return {c: i for i, c in enumerate(clients, start=1)}


def _check_schedule(dropouts: CallerSchedule[ClientId] | None,
                    ids: Mapping[ClientId, int]) -> dict[Round, set[int]]:
    """Normalise a dropout schedule to protocol ids, refusing unknown rounds and clients."""
    out: dict[Round, set[int]] = {}
    for point, named in (dropouts or {}).items():
        try:
            key = point if isinstance(point, Round) else Round.from_label(point)
        except ConfigError:
            valid = ", ".join(r.label for r in Round)
            raise ConfigError(f"unknown drop point {point!r}; valid drop points: {valid}"
                              ) from None
        unknown = [c for c in named if c not in ids]
        if unknown:
            raise ConfigError(f"dropout schedule names clients that sent no update: "
                              f"{unknown[:5]!r}")
        out.setdefault(key, set()).update(ids[c] for c in named)
    return out


def weighted_mean(
    updates_by_client: Mapping[ClientId, Sequence[np.ndarray]],
    weights: Mapping[ClientId, int] | None,
    ids: Iterable[ClientId],
    *,
    clip: float | None = None,
) -> list[np.ndarray]:
    """Plaintext ``Σ w_u x_u / Σ w_u`` over ``ids`` in float64: the oracle for simulations.

    With ``clip`` the updates are clipped first, which is what the secure mean
    approximates within :attr:`SecureAggregator.error_bound`.
    """
    chosen = list(ids)
    if not chosen:
        raise ConfigError("weighted mean of no clients")
    total_w = 0
    acc: list[np.ndarray] | None = None
    for u in chosen:
        wu = 1 if weights is None else int(weights[u])
        arrays = [np.asarray(a, dtype=np.float64) for a in updates_by_client[u]]
        if clip is not None:
            arrays = [np.clip(a, -clip, clip) for a in arrays]
        if acc is None:
            acc = [wu * a for a in arrays]
        else:
            if [a.shape for a in arrays] != [a.shape for a in acc]:
                raise ConfigError(f"client {u}'s update has different shapes")
            acc = [s + wu * a for s, a in zip(acc, arrays, strict=True)]
        total_w += wu
    assert acc is not None
    return [a / total_w for a in acc]
