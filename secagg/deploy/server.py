"""The deployment server: one secure-aggregation session per training round over gRPC.

:class:`DeploymentServer` wraps a :class:`~secagg.transport.server.TransportServer`
(mTLS, the upload gate, round deadlines, dropouts: spec §17) and adds what a
training loop needs around it. For each :meth:`~DeploymentServer.aggregate` call it

1. builds the session's :class:`~secagg.config.SessionConfig` with the modulus of
   the agreed :class:`~secagg.deploy.params.AggregationParams`, the length of
   the model's arrays (plus the weight coordinate) and a task hash binding the
   parameters, the array names and shapes and the global model (§3), so a
   client quantizing otherwise refuses the session instead of corrupting the sum;
2. runs one session over the clients connected then (the transport closes each
   round when everyone answered, disconnected or the round deadline passed, so a
   client killed mid-round costs at most one round deadline, usually nothing);
3. decodes the exact sum mod R over the included clients with
   :func:`secagg.quantize.decode_sum` (the weight coordinate gives ``Σ w``) into
   the weighted mean, in the model's shapes and dtypes (§10.4).

The server never sees a client's update or weight, only the sum. Distributing the
global model to the clients is the training loop's job (it is public to them);
``bind_model=True`` makes every client check that it trained from the same one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
import numpy as np

from secagg.config import SessionConfig, SessionSettings
from secagg.deploy.params import (
    UNBOUND,
    AggregationParams,
    ModelSpec,
    Update,
    model_digest,
    spec_of,
    task_hash,
)
from secagg.errors import AbortError, ConfigError
from secagg.quantize import decode_sum, unflatten
from secagg.transport import certs
from secagg.transport.server import ServerSettings, SessionOutcome, TransportServer

__all__ = ["DeploymentServer", "RoundAborted", "RoundResult"]

Event = Mapping[str, Any]


class RoundAborted(AbortError):  # noqa: N818  (an AbortError; the name says what happened)
    """A round's session aborted (too few clients joined or survived); nothing was summed.

    ``outcome`` is the transport's record of the session (who was in the cohort,
    each round's timing). In FedAvg, keep the previous global model for this round.
    """

    def __init__(self, reason: str, outcome: SessionOutcome) -> None:
        super().__init__(f"secure aggregation round aborted: {reason}")
        self.reason = reason
        self.outcome = outcome


@dataclass(frozen=True, eq=False)
class RoundResult:
    """One round's decoded weighted mean and who is in it.

    ``mean`` has the model's shapes and dtypes (in its order; :meth:`state_dict`
    when the model was given as a mapping); ``included`` are the clients whose
    updates are in it, ``dropped`` those of the cohort that are not;
    ``total_weight`` is ``Σ w`` over the included (what the server learns
    besides the sum); ``error_bound`` the per-coordinate bound on the distance
    to the plaintext weighted mean of the included clients' clipped updates.
    """

    round_index: int
    mean: list[np.ndarray]
    names: tuple[str, ...] | None
    included: tuple[int, ...]
    dropped: tuple[int, ...]
    total_weight: int
    error_bound: float
    session_id: bytes
    outcome: SessionOutcome = field(repr=False)

    def state_dict(self) -> dict[str, np.ndarray]:
        """The mean as name -> array, for a model given as a mapping (a torch state_dict)."""
        if self.names is None:
            raise ConfigError("the model was given as a list of arrays: it has no names")
        return dict(zip(self.names, self.mean, strict=True))


@dataclass(frozen=True)
class _Plan:
    """What the next session binds: computed by :meth:`aggregate` before it opens."""

    round_index: int
    dim: int
    task_hash: bytes


class DeploymentServer:
    """Runs one secure-aggregation session per training round for clients over gRPC.

    ``params`` must equal every client's :class:`AggregationParams`; ``clients``
    is the cohort size the server waits for (at most ``params.max_clients``).
    ``certs`` is a directory from ``secagg certs init`` (or your CA's files named
    alike: ``ca.pem``, ``server.pem``, ``server.key``) for mutual TLS; plaintext
    needs ``insecure=True`` (local experiments only: client ids are then only
    claimed). ``settings`` carries the session choices (graph, threshold,
    minimum cohort, mode...). ``round_timeout`` bounds every protocol round,
    including the first, during which clients that received the model late are
    still training; ``join_timeout`` bounds the wait for the first cohort,
    ``rejoin_grace`` the wait of later rounds for clients that are not
    connected (dropped ones rarely come back). ``on_event`` receives the
    transport's events (``session-open``, ``round``, ``session-end``...).
    ``protocol_kwargs`` go to every :class:`~secagg.server.ServerProtocol` (active
    mode's ``trust_store``, spec §15).
    """

    def __init__(
        self,
        params: AggregationParams,
        *,
        clients: int,
        certs_dir: str | Path | None = None,
        insecure: bool = False,
        address: str = "127.0.0.1:0",
        settings: SessionSettings | None = None,
        round_timeout: float = 30.0,
        join_timeout: float = 60.0,
        rejoin_grace: float = 1.0,
        threads: int | None = None,
        first_round: int = 0,
        on_event: Callable[[Event], None] | None = None,
        protocol_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(params, AggregationParams):
            raise ConfigError("params must be an AggregationParams")
        if not isinstance(clients, int) or not 3 <= clients <= params.max_clients:
            raise ConfigError(f"clients must be an int in [3, max_clients={params.max_clients}]")
        self.params = params
        self.settings = settings if settings is not None else SessionSettings()
        if clients < self.settings.min_cohort:
            raise ConfigError(f"clients={clients} is below the sessions' min_cohort="
                              f"{self.settings.min_cohort}: every round would be refused")
        self._quantization = params.quantization()
        transport_settings = ServerSettings(
            clients=clients, dim=1, modulus=self._quantization.modulus, session=self.settings,
            round_timeout=round_timeout, join_timeout=join_timeout, rejoin_grace=rejoin_grace,
            threads=threads,
        )
        self._transport = TransportServer(
            transport_settings, credentials=_credentials(certs_dir, insecure), address=address,
            on_event=on_event, config_factory=self._session_config,
            protocol_kwargs=protocol_kwargs)
        self._lock = threading.Lock()
        self._plan: _Plan | None = None
        self._sequence = 0
        self._next_round = first_round
        self._started = False

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> int:
        """Listen; returns the port (useful with port 0 in ``address``)."""
        port = self._transport.start()
        self._started = True
        return port

    @property
    def port(self) -> int:
        return self._transport.port

    def close(self) -> None:
        """Say goodbye to every client (their :class:`DeploymentClient` stops) and stop."""
        if self._started:
            self._started = False
            self._transport.shutdown()

    def __enter__(self) -> DeploymentServer:
        if not self._started:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- one round ------------------------------------------------------------------------
    def aggregate(self, model: Update, *, round_index: int | None = None,
                  bind_model: bool = True) -> RoundResult:
        """Run one session over the connected clients; the weighted mean of their updates.

        ``model`` gives the shapes (and names, for a mapping such as a torch
        ``state_dict``) of the updates and of the mean; with ``bind_model`` its
        values are bound too, so the clients must pass the same global model
        to :meth:`DeploymentClient.submit`. ``round_index`` (default: one more
        than the last) must grow from round to round: it is part of the session
        id. Raises :class:`RoundAborted` when the session aborts.
        """
        if not self._started:
            raise ConfigError("start() the server before aggregating")
        spec, _ = spec_of(model)
        digest = model_digest(model) if bind_model else UNBOUND
        index = self._next_round if round_index is None else round_index
        if not isinstance(index, int) or index < self._next_round:
            raise ConfigError(f"round_index must be an int >= {self._next_round}: session ids "
                              "must not repeat")
        with self._lock:
            self._plan = _Plan(index, spec.dim(self.params), task_hash(self.params, spec, digest))
        try:
            outcome = self._transport.run_session(self._sequence)
        finally:
            self._sequence += 1
            self._next_round = index + 1
            with self._lock:
                self._plan = None
        return self._decode(index, spec, outcome)

    def _session_config(self, sequence: int, cohort: tuple[int, ...]) -> SessionConfig:
        """The transport's config factory: the plan of the round in progress."""
        with self._lock:
            plan = self._plan
        if plan is None:
            raise ConfigError("no round in progress")
        return SessionConfig.create(cohort, plan.dim, self._quantization.modulus,
                                    settings=self.settings, round_index=plan.round_index,
                                    task_hash=plan.task_hash)

    def _decode(self, index: int, spec: ModelSpec, outcome: SessionOutcome) -> RoundResult:
        """The weighted mean in the model's shapes from the exact sum over the included."""
        if outcome.aborted or outcome.sum is None:
            raise RoundAborted(outcome.abort_reason or "the session did not finish", outcome)
        included = tuple(outcome.included_ids)
        decoded = decode_sum(outcome.sum, self._quantization, num_clients=len(included))
        return RoundResult(
            round_index=index,
            mean=unflatten(decoded.mean, spec.layout),
            names=spec.names,
            included=included,
            dropped=tuple(outcome.dropped_ids),
            total_weight=decoded.total_weight,
            error_bound=self.params.error_bound,
            session_id=outcome.session_id,
            outcome=outcome,
        )


def _credentials(certs_dir: str | Path | None, insecure: bool) -> grpc.ServerCredentials | None:
    """mTLS server credentials from ``certs_dir``; None only when ``insecure`` is asked for."""
    if insecure:
        if certs_dir is not None:
            raise ConfigError("give either certs_dir or insecure=True, not both")
        return None
    if certs_dir is None:
        raise ConfigError("the server needs certs_dir (mutual TLS), or insecure=True")
    return certs.server_credentials(certs_dir)
