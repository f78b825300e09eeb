"""The deployment client: a training loop's update into the server's next session.

:class:`DeploymentClient` keeps one :class:`~secagg.transport.client.TransportClient`
connected in a background thread (mTLS, deadlines, fresh keys per session:
spec §17) and hands it one update per :meth:`~DeploymentClient.submit`. When the
server opens a session, the client

1. checks the session against its own :class:`~secagg.deploy.params.AggregationParams`,
   update shapes and global model (:func:`~secagg.deploy.params.check_session`): a
   session quantized or shaped otherwise is refused with a
   :class:`~secagg.deploy.params.ParameterMismatchError` before any key is made;
2. quantizes the update with its weight (:func:`secagg.quantize.encode`: ``w``
   times each level, then ``w`` in a last coordinate, so the server divides the
   sum by ``Σ w`` without learning any one weight) and
3. lets the sans-IO :class:`~secagg.client.ClientProtocol` take part; ``submit``
   returns how the session ended for this client (its update is in the mean
   only when the status is ``done``).

A session that opens before the update is submitted waits for it (up to
``update_timeout``), so a client may train after the server opened the round,
within the server's round deadline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
import numpy as np

from secagg.config import SessionConfig
from secagg.deploy.params import (
    UNBOUND,
    AggregationParams,
    ModelSpec,
    ParameterMismatchError,
    Update,
    check_session,
    check_weight,
    model_digest,
    spec_of,
)
from secagg.errors import ConfigError, SecAggError
from secagg.quantize import encode
from secagg.transport import certs
from secagg.transport.client import ClientSettings, TransportClient

__all__ = ["ClientStoppedError", "DeploymentClient", "SubmitResult"]

Event = Mapping[str, Any]


class ClientStoppedError(SecAggError):
    """The client stopped (server goodbye, unreachable server, refusal, ``close()``) or
    ``submit``'s timeout passed before a session took the update."""


@dataclass(frozen=True)
class SubmitResult:
    """How the session that took an update ended for this client.

    ``status`` is the transport's: ``done`` (the update is in the server's mean),
    ``dropped`` (the session finished without it, e.g. too slow), ``aborted``,
    ``lost`` (connection) or ``refused``; ``reason`` says why when not done.
    """

    status: str
    round_index: int
    session_id: bytes
    reason: str | None = None

    @property
    def included(self) -> bool:
        return self.status == "done"


@dataclass(eq=False)
class _Pending:
    """One submitted update, from ``submit`` until its session ends."""

    spec: ModelSpec
    flat: np.ndarray = field(repr=False)
    weight: int = field(repr=False)  # the example count: the session keeps it secret
    digest: bytes
    config: SessionConfig | None = None  # the session that took it
    result: SubmitResult | None = None
    error: SecAggError | None = None
    done: threading.Event = field(default_factory=threading.Event)


class DeploymentClient:
    """One client of a :class:`~secagg.deploy.server.DeploymentServer`.

    ``params`` must equal the server's. ``client_id`` is this client's protocol
    id, the one its certificate names; ``certs_dir`` holds ``ca.pem`` and
    ``client-ID.pem``/``.key`` (``secagg certs init``); plaintext needs
    ``insecure=True``. ``update_timeout`` bounds how long a session opened by
    the server waits for :meth:`submit` (keep it below the server's round
    timeout). ``on_event`` receives the transport client's events.
    ``client_kwargs`` go to every :class:`~secagg.client.ClientProtocol`: this
    client's own ``min_cohort`` (a server's config cannot lower it), and active
    mode's ``identity`` and ``trust_store`` (spec §15).
    """

    def __init__(
        self,
        params: AggregationParams,
        *,
        server: str,
        client_id: int,
        certs_dir: str | Path | None = None,
        insecure: bool = False,
        server_name: str | None = None,
        connect_timeout: float = 30.0,
        update_timeout: float = 60.0,
        on_event: Callable[[Event], None] | None = None,
        client_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(params, AggregationParams):
            raise ConfigError("params must be an AggregationParams")
        if not update_timeout > 0:
            raise ConfigError("update_timeout must be positive")
        self.params = params
        self.client_id = client_id
        self._quantization = params.quantization()
        self._update_timeout = float(update_timeout)
        self._on_event = on_event or (lambda _e: None)
        self._cond = threading.Condition()
        self._pending: _Pending | None = None
        self._stopped = False
        self._started = False
        self.exit_code: int | None = None
        settings = ClientSettings(server=server, client_id=client_id,
                                  connect_timeout=connect_timeout, server_name=server_name,
                                  client_kwargs=dict(client_kwargs or {}))
        self._transport = TransportClient(settings, self._input,
                                          credentials=_credentials(certs_dir, client_id,
                                                                   insecure),
                                          on_event=self._event)
        self._thread = threading.Thread(target=self._run, name=f"secagg-client-{client_id}",
                                        daemon=True)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> DeploymentClient:
        """Connect in the background (and keep reconnecting) until the server's goodbye.

        :meth:`submit` starts a client not started yet, so a client that connects
        only once its first update is ready is never waited for while it trains.
        """
        with self._cond:
            if self._started:
                return self
            self._started = True
        self._thread.start()
        return self

    @property
    def stopped(self) -> bool:
        """True once the client has stopped: the server's goodbye, a refusal, ``close()``."""
        return self._stopped

    def close(self, timeout: float = 5.0) -> None:
        """Leave: a session in progress loses this client (the server drops it)."""
        self._stop("the client was closed")  # first: frees a session waiting for an update
        self._transport.stop()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def __enter__(self) -> DeploymentClient:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _run(self) -> None:
        try:
            self.exit_code = self._transport.run()
        except (grpc.RpcError, ValueError):  # a Send on the channel stop() has just closed
            self.exit_code = 0
        self._stop(f"the client stopped (exit status {self.exit_code})")

    def _stop(self, reason: str) -> None:
        with self._cond:
            self._stopped = True
            pending, self._pending = self._pending, None
            self._cond.notify_all()
        if pending is not None and not pending.done.is_set():
            pending.error = ClientStoppedError(reason)
            pending.done.set()

    # -- one round ------------------------------------------------------------------------
    def submit(self, update: Update, weight: int = 1, *, model: Update | None = None,
               timeout: float | None = None) -> SubmitResult:
        """Take part in the server's next session with ``update`` and ``weight``; blocks.

        ``update`` is a list of arrays or a name -> array mapping (a torch
        ``state_dict``), in the server model's names and shapes; ``weight`` an
        int in ``[1, max_weight]`` (e.g. the number of local examples). Pass
        the global ``model`` the update was trained from when the server binds
        it (``bind_model``, the default). Raises :class:`ParameterMismatchError`
        when the server's session does not match, :class:`ClientStoppedError` when the
        client stopped or ``timeout`` passed before a session took the update.
        """
        spec, flat = spec_of(update)
        pending = _Pending(spec, flat, check_weight(weight, self.params),
                           UNBOUND if model is None else model_digest(model))
        with self._cond:
            if self._stopped:
                raise ClientStoppedError("the client has stopped")
            if self._pending is not None:
                raise ConfigError("one update at a time: the previous submit has not returned")
            self._pending = pending
            self._cond.notify_all()
        self.start()
        if not pending.done.wait(timeout):
            with self._cond:
                taken = pending.config is not None
                if not taken and self._pending is pending:
                    self._pending = None
            if not taken:
                raise ClientStoppedError(f"no session took the update within {timeout} s")
            pending.done.wait()  # the session in progress ends within its round deadlines
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None
        return pending.result

    # -- called by the transport client's thread ------------------------------------------
    def _input(self, config: SessionConfig) -> np.ndarray:
        """The session's input: the pending update, checked against the session, quantized."""
        deadline = time.monotonic() + self._update_timeout
        with self._cond:
            while (self._pending is None or self._pending.config is not None) and (
                    not self._stopped):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ConfigError(f"no update was submitted within {self._update_timeout} s")
                self._cond.wait(left)
            pending = self._pending
            if pending is None or self._stopped:
                raise ConfigError("the client is stopping")
            try:
                check_session(config, self.params, pending.spec, pending.digest)
            except ParameterMismatchError as exc:
                self._pending = None
                pending.error = exc
                pending.done.set()
                raise
            pending.config = config
        return encode(pending.flat, self._quantization, weight=pending.weight)

    def _event(self, event: Event) -> None:
        self._on_event(event)
        kind = event.get("event")
        if kind not in ("session-end", "session-refused"):
            return
        with self._cond:
            pending = self._pending
            config = None if pending is None else pending.config
            if config is None or event.get("session_id") != config.session_id.hex():
                return
            self._pending = None
        assert pending is not None
        status = "refused" if kind == "session-refused" else str(event.get("status"))
        pending.result = SubmitResult(status, config.round_index, config.session_id,
                                      event.get("reason"))
        pending.done.set()


def _credentials(certs_dir: str | Path | None, client_id: int, insecure: bool
                 ) -> grpc.ChannelCredentials | None:
    """mTLS channel credentials for ``client_id``; None only when ``insecure`` is asked for."""
    if insecure:
        if certs_dir is not None:
            raise ConfigError("give either certs_dir or insecure=True, not both")
        return None
    if certs_dir is None:
        raise ConfigError("the client needs certs_dir (mutual TLS), or insecure=True")
    return certs.channel_credentials(certs_dir, client_id)
