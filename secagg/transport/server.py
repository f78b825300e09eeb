"""gRPC server process: runs sessions of the sans-IO :class:`~secagg.server.ServerProtocol`.

Three parts (spec §17): the upload gate (:mod:`secagg.transport.gate`: per-certificate
call caps, call deadlines, upload slots, reassembly), the round driver
(:mod:`secagg.transport.rounds_driver`: cohort wait, round deadlines, outcome) and,
here, the thin gRPC servicer that identifies each caller and passes its calls on.

Why it is built this way (spec "Transport (gRPC)"):

* Every client holds one ``Join`` stream for its whole life and gets, per
  session, a ``SessionOpen`` (the config as ``SessionConfig.encode()`` bytes),
  its protocol messages as chunks, and a ``SessionEnd``. Each client message
  is one ``Send`` call. Back-to-back sessions (FL rounds) need no reconnection.
* The client's protocol id is the one in its TLS client certificate; a message
  whose ``sender`` names another id is refused (PERMISSION_DENIED).
* Every chunk carries the session id and a round counter, so a message from an
  earlier session or an already closed round is refused (FAILED_PRECONDITION)
  instead of being fed to the state machine of another session.
* The server owns the clock: a round closes when every expected client has
  answered or has disconnected, or when the round deadline passes; then
  :meth:`ServerProtocol.close_round` drops the missing clients (or aborts
  cleanly below t).
* A Send call is identified (from the certificate) and counted before a byte
  is read: a caller outside the session's cohort, or over its per-certificate
  call cap, is refused at once, and the first chunk has a deadline (§17.5).
* One bad client (oversized, truncated, malformed, duplicate, stale or
  forged message) gets an error status on its own call and changes nothing
  for the others: messages are fully received and decoded before the state
  machine is touched, and the state machine itself refuses without side effects.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn

import grpc

from secagg.config import SessionConfig
from secagg.errors import ConfigError, ProtocolError
from secagg.kernels.warmup import warm_up
from secagg.messages import ClientMessage
from secagg.rounds import Round, decode_client
from secagg.transport import certs, framing
from secagg.transport import secagg_pb2 as pb
from secagg.transport import secagg_pb2_grpc as pb_grpc
from secagg.transport.gate import POLL_SECONDS, RefusedError, UploadGate, Watch
from secagg.transport.rounds_driver import Event, Peer, RoundDriver, Ticket, printable
from secagg.transport.settings import ServerSettings, SessionOutcome, peak_rss_mb

__all__ = ["ServerSettings", "SessionOutcome", "TransportServer", "peak_rss_mb"]


class TransportServer:
    """The server side of the transport: gRPC lifecycle around the gate and the driver.

    ``credentials`` None means plaintext (the caller warns; ids are then only
    claimed, not proven). ``config_factory(sequence, cohort)`` may replace the
    default SessionConfig construction (tests use it). ``protocol_kwargs`` go
    to every :class:`ServerProtocol` (for example an active-mode trust store).
    """

    def __init__(
        self,
        settings: ServerSettings,
        *,
        credentials: grpc.ServerCredentials | None,
        address: str = "127.0.0.1:0",
        on_event: Callable[[Event], None] | None = None,
        config_factory: Callable[[int, tuple[int, ...]], SessionConfig] | None = None,
        protocol_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self._credentials = credentials
        self._address = address
        self.gate = UploadGate(
            sends_per_client=settings.sends_per_client, slots=settings.upload_slots,
            first_chunk_timeout=settings.first_chunk_timeout,
            stall_timeout=settings.upload_stall_timeout, min_rate=settings.upload_min_rate)
        self.driver = RoundDriver(settings, on_event=on_event, config_factory=config_factory,
                                  protocol_kwargs=protocol_kwargs,
                                  on_round_close=self.gate.cancel_uploads)
        self.port = 0
        workers = 3 * settings.clients + 16
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="secagg-rpc")
        options = [
            *framing.GRPC_SHARED_OPTIONS,
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.so_reuseport", 0),
        ]
        self._grpc = grpc.server(self._pool, options=options, maximum_concurrent_rpcs=workers)
        servicer = _Servicer(self.driver, self.gate, tls=credentials is not None,
                             decode_slots=max(2, settings.threads or 2))
        pb_grpc.add_AggregatorServicer_to_server(servicer, self._grpc)

    @property
    def upload_hook(self) -> Callable[[str, int, int], None] | None:
        """Test instrumentation of the upload slots (see :attr:`UploadGate.hook`)."""
        return self.gate.hook

    @upload_hook.setter
    def upload_hook(self, hook: Callable[[str, int, int], None] | None) -> None:
        self.gate.hook = hook

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> int:
        """Bind and start serving; returns the port (useful with port 0)."""
        if self._credentials is None:
            port = self._grpc.add_insecure_port(self._address)
        else:
            port = self._grpc.add_secure_port(self._address, self._credentials)
        if not port:
            raise ConfigError(f"cannot listen on {self._address}")
        warm_up(self.settings.modulus)
        self.gate.start()
        self._grpc.start()
        self.port = port
        self.driver.emit({"event": "listening", "port": port,
                          "tls": self._credentials is not None})
        return port

    def request_stop(self) -> None:
        """Start no further session (signal handlers call this)."""
        self.driver.request_stop()

    def shutdown(self, grace: float = 2.0) -> None:
        """Say goodbye to every client, then stop gRPC (bounded by ``grace``)."""
        peers = self.driver.finish()
        for p in peers:
            p.queue.put(pb.ServerEnvelope(goodbye=pb.Goodbye(reason="server finished")))
            p.queue.put(None)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(p.connected for p in peers):
            time.sleep(0.05)
        self._grpc.stop(grace=0.5).wait(timeout=grace + 1)
        self.gate.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def run(self) -> list[SessionOutcome]:
        """Run ``settings.sessions`` sessions back to back (fewer if stopped)."""
        return self.driver.run()

    def run_session(self, sequence: int) -> SessionOutcome:
        return self.driver.run_session(sequence)


class _Servicer(pb_grpc.AggregatorServicer):  # type: ignore[misc]  # generated, unannotated base
    """Thin servicer: identifies each caller, then hands its call to the gate and driver."""

    def __init__(self, driver: RoundDriver, gate: UploadGate, *, tls: bool,
                 decode_slots: int) -> None:
        self._driver = driver
        self._gate = gate
        self._tls = tls
        self._decode_slots = threading.BoundedSemaphore(decode_slots)

    def Join(self, request: pb.JoinRequest, context: grpc.ServicerContext  # noqa: N802
             ) -> Iterator[pb.ServerEnvelope]:
        try:
            cid = self._identify(context, request.client_id)
        except RefusedError as exc:
            self._abort(context, exc)
        if request.version not in (0, framing.TRANSPORT_VERSION):
            _abort(context, grpc.StatusCode.FAILED_PRECONDITION,
                   f"transport version {request.version} is not supported")
        yield from self._stream(cid, context)

    def _stream(self, cid: int, context: grpc.ServicerContext) -> Iterator[pb.ServerEnvelope]:
        peer = Peer(cid)
        if not self._driver.connect(peer):
            yield pb.ServerEnvelope(goodbye=pb.Goodbye(reason="server finished"))
            return
        context.add_callback(lambda: self._driver.disconnect(peer))
        self._driver.emit({"event": "join", "client": cid})
        try:
            while True:
                try:
                    env = peer.queue.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    if not context.is_active():
                        return
                    continue
                if env is None:
                    return
                yield env
        finally:
            self._driver.disconnect(peer)

    def Send(self, request_iterator: Iterator[pb.ClientChunk],  # noqa: N802
             context: grpc.ServicerContext) -> pb.Ack:
        try:
            if self._tls:
                return self._send_authenticated(request_iterator, context)
            return self._send_plaintext(request_iterator, context)
        except RefusedError as exc:
            self._abort(context, exc)

    def _send_authenticated(self, chunks: Iterator[pb.ClientChunk],
                            context: grpc.ServicerContext) -> pb.Ack:
        """Identify, admit and count the caller before a byte is read (§17.5)."""
        cid = self._identify(context, 0)
        self._driver.check_member(cid)
        with self._gate.counted(cid), self._gate.watched(context) as watch:
            first = self._gate.first_chunk(chunks, watch)
            if first.client_id and first.client_id != cid:
                raise RefusedError(grpc.StatusCode.PERMISSION_DENIED,
                                   f"claimed id {first.client_id}, but the certificate says {cid}")
            return self._receive(cid, first, chunks, watch)

    def _send_plaintext(self, chunks: Iterator[pb.ClientChunk],
                        context: grpc.ServicerContext) -> pb.Ack:
        """Plaintext: the id is only claimed, in the first chunk (read under its deadline)."""
        with self._gate.watched(context) as watch:
            first = self._gate.first_chunk(chunks, watch)
            cid = self._identify(context, first.client_id)
            self._driver.check_member(cid)
            with self._gate.counted(cid):
                return self._receive(cid, first, chunks, watch)

    def _receive(self, cid: int, first: pb.ClientChunk, chunks: Iterator[pb.ClientChunk],
                 watch: Watch) -> pb.Ack:
        ticket = self._driver.admit(cid, first.session_id, first.round)
        if first.total_length > ticket.limit:  # refused before waiting for a slot
            raise RefusedError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"message of {first.total_length} bytes exceeds the limit of "
                               f"{ticket.limit}")
        if ticket.round is Round.MASKED_INPUT:
            with self._gate.slot(cid, watch, lambda: self._driver.upload_refusal(cid, ticket)):
                return self._finish(cid, ticket, self._gate.read_rest(
                    first, chunks, ticket.limit, watch))
        return self._finish(cid, ticket, self._gate.read_rest(first, chunks, ticket.limit,
                                                              watch))

    def _finish(self, cid: int, ticket: Ticket, data: bytes) -> pb.Ack:
        """Decode (bounded concurrency) and hand the message to the driver."""
        size = len(data)
        with self._decode_slots:  # bounds the transient copies of concurrent large messages
            t0 = time.perf_counter()
            msg = self._decode(data, ticket.round)
            decode_seconds = time.perf_counter() - t0
        del data
        if msg.sender != cid:
            raise RefusedError(grpc.StatusCode.PERMISSION_DENIED,
                               f"message names sender {msg.sender}, but the certificate says {cid}")
        self._driver.accept(cid, ticket, msg, size, decode_seconds)
        return pb.Ack(received=size)

    @staticmethod
    def _decode(data: bytes, round_: Round) -> ClientMessage:
        try:
            return decode_client(data, round_)
        except ProtocolError as exc:
            raise RefusedError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"malformed message: {exc}") from None

    def _identify(self, context: grpc.ServicerContext, claimed: int) -> int:
        """The caller's protocol id: from its certificate (mTLS) or, plaintext, as claimed."""
        if not self._tls:
            if not 1 <= claimed <= 0xFFFFFFFF:
                raise RefusedError(grpc.StatusCode.UNAUTHENTICATED,
                                   "plaintext mode: the client must state its id")
            return claimed
        auth = context.auth_context()
        cid = certs.identity_from_names(_names(auth.get("x509_common_name", [])),
                                        _names(auth.get("x509_subject_alternative_name", [])))
        if cid is None:
            raise RefusedError(grpc.StatusCode.UNAUTHENTICATED,
                               "the client certificate names no secagg client id")
        if claimed and claimed != cid:
            raise RefusedError(grpc.StatusCode.PERMISSION_DENIED,
                               f"claimed id {claimed}, but the certificate says {cid}")
        return cid

    def _abort(self, context: grpc.ServicerContext, exc: RefusedError) -> NoReturn:
        if exc.code is not grpc.StatusCode.UNAUTHENTICATED:
            self._driver.count(exc.code)
        _abort(context, exc.code, exc.details)


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, details: str) -> NoReturn:
    context.abort(code, printable(details))
    raise AssertionError("unreachable")  # context.abort always raises


def _names(value: bytes | Sequence[bytes]) -> list[bytes]:
    """An auth-context entry as a list: gRPC's types allow one bytes value or several."""
    return [value] if isinstance(value, bytes) else list(value)
