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

This is the simulation entry point (every client in one process). Deployments
drive :class:`secagg.client.ClientProtocol` and :class:`secagg.server.ServerProtocol`
over their own transport with the same quantization steps; see the README.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

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
    "AggregationAborted",
    "AggregationResult",
    "SecureAggregator",
    "weighted_mean",
]

#: dropouts: round (or its public label) -> clients that stop there (the driver's type)
Schedule = DropoutSchedule


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
class AggregationResult:
    """The outcome of one secure aggregation.

    ``mean`` is the weighted mean of the included clients' updates, in the
    update's shapes and dtypes; ``included`` the clients whose updates are in
    it (sorted); ``total_weight`` their summed weight (what the server learns
    besides the sum); ``seconds`` the wall time of the whole call (encoding,
    every client's and the server's protocol work, decoding); ``report`` the
    simulator's measurements.
    """

    mean: list[np.ndarray]
    included: tuple[int, ...]
    total_weight: int
    report: SimulationReport
    seconds: float
    quantization: QuantizationConfig = field(repr=False)

    @property
    def dropped(self) -> tuple[int, ...]:
        """Clients of the cohort whose updates are not in the mean."""
        return tuple(self.report.dropped_ids)


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
    operating system).
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
        updates_by_client: Mapping[int, Sequence[np.ndarray]],
        weights: Mapping[int, int] | None = None,
        *,
        dropouts: Schedule | None = None,
        round_index: int = 0,
    ) -> AggregationResult:
        """Securely compute ``Σ w_u x_u / Σ w_u`` over the clients that stay.

        ``updates_by_client`` maps client id (1 .. 2**32 - 1) to its update;
        all updates must have the same shapes and dtypes. ``weights`` maps the
        same ids to positive ints <= ``max_weight`` (omit for equal weights).
        ``dropouts`` maps a :class:`~secagg.rounds.Round` (or its label) to the
        clients that stop sending at that round.

        Raises :class:`~secagg.errors.ConfigError` for mismatched shapes, ids,
        weights or an unsafe session, and :class:`AggregationAborted` when too
        few clients survive for the session to finish.
        """
        if not isinstance(updates_by_client, Mapping) or not updates_by_client:
            raise ConfigError("updates_by_client must be a non-empty mapping of id -> arrays")
        cohort = sorted(updates_by_client)
        if not all(is_int_like(u) for u in cohort):
            raise ConfigError("client ids must be ints")
        cohort = [int(u) for u in cohort]
        w = self._check_weights(cohort, weights)
        flat, layout = self._flatten_all(cohort, updates_by_client)

        start = time.perf_counter()
        config = self.session_config(cohort, layout, round_index=round_index)
        q = self.quantization(len(cohort))
        encoded = {u: encode(flat[u], q, weight=w[u], rng=self._rng) for u in cohort}
        schedule = _check_schedule(dropouts, cohort)
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
        mean = unflatten(decoded.mean, layout)
        return AggregationResult(
            mean=mean,
            included=tuple(report.included_ids),
            total_weight=decoded.total_weight,
            report=report,
            seconds=time.perf_counter() - start,
            quantization=q,
        )

    # -- validation ----------------------------------------------------------------------
    def _check_weights(self, cohort: list[int],
                       weights: Mapping[int, int] | None) -> dict[int, int]:
        if weights is None:
            return dict.fromkeys(cohort, 1)
        if set(weights) != set(cohort):
            raise ConfigError("weights must name exactly the clients that sent updates")
        out: dict[int, int] = {}
        for u in cohort:
            wu = weights[u]
            if not is_int_like(wu):
                raise ConfigError(f"client {u}'s weight must be an int")
            if not 1 <= int(wu) <= self.max_weight:
                raise ConfigError(
                    f"client {u}'s weight must be in [1, max_weight={self.max_weight}]"
                )
            out[u] = int(wu)
        return out

    @staticmethod
    def _flatten_all(cohort: list[int], updates: Mapping[int, Sequence[np.ndarray]]
                     ) -> tuple[dict[int, np.ndarray], Layout]:
        flat: dict[int, np.ndarray] = {}
        layout: Layout | None = None
        for u in cohort:
            vec, lay = flatten(updates[u])
            if layout is None:
                layout = lay
            elif lay != layout:
                raise ConfigError(
                    f"client {u}'s update has shapes {lay.shapes} / dtypes {lay.dtypes}, "
                    f"expected {layout.shapes} / {layout.dtypes}"
                )
            flat[u] = vec
        assert layout is not None  # cohort is non-empty
        if layout.size == 0:
            raise ConfigError("updates are empty (no scalars to aggregate)")
        return flat, layout


def _check_schedule(dropouts: Schedule | None, cohort: list[int]) -> dict[Round, set[int]]:
    """Normalise a dropout schedule, refusing unknown rounds and clients (ConfigError)."""
    out: dict[Round, set[int]] = {}
    for point, ids in (dropouts or {}).items():
        try:
            key = point if isinstance(point, Round) else Round.from_label(point)
        except ConfigError:
            raise ConfigError(f"unknown drop point {point!r}") from None
        out.setdefault(key, set()).update(int(u) for u in ids)
    named = set().union(*out.values()) if out else set()
    if not named <= set(cohort):
        raise ConfigError("dropout schedule names clients that sent no update")
    return out


def weighted_mean(
    updates_by_client: Mapping[int, Sequence[np.ndarray]],
    weights: Mapping[int, int] | None,
    ids: Iterable[int],
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
