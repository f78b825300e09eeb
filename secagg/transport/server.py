"""gRPC server process: runs sessions of the sans-IO :class:`~secagg.server.ServerProtocol`.

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
* One bad client (oversized, truncated, malformed, duplicate, stale or
  forged message) gets an error status on its own call and changes nothing
  for the others: messages are fully received and decoded before the state
  machine is touched, and the state machine itself refuses without side effects.
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import resource
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NoReturn

import grpc
import numpy as np

from secagg.config import SessionConfig
from secagg.errors import ConfigError, ProtocolError, SecAggError
from secagg.messages import decode
from secagg.server import ServerProtocol, ServerState
from secagg.transport import certs, framing
from secagg.transport import secagg_pb2 as pb
from secagg.transport import secagg_pb2_grpc as pb_grpc

#: How often blocked handlers wake up to notice a cancelled call or a stop request.
_POLL_SECONDS = 0.25
#: At most this many concurrent Send calls per client id (an honest client makes one).
_MAX_SENDS_PER_CLIENT = 2
_REASON_LEN = 256

Event = Mapping[str, Any]


@dataclass(frozen=True)
class ServerSettings:
    """What the server runs: the cohort size it waits for and each session's parameters."""

    clients: int
    dim: int
    modulus: int = 1 << 32
    graph: str = "complete"
    threshold: int | None = None
    degree: int | None = None
    dropout_rate: float = 0.1
    corruption_rate: float = 0.05
    min_cohort: int = 10
    mode: str | None = None  # None: the SessionConfig default
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

    def __post_init__(self) -> None:
        if self.clients < 1 or self.dim < 1 or self.sessions < 1:
            raise ConfigError("clients, dim and sessions must be positive")
        if not 0 < self.round_timeout <= 86_400 or not 0 < self.join_timeout <= 86_400:
            raise ConfigError("round and join timeouts must be in (0, 86400] seconds")
        if self.upload_slots < 1 or not self.upload_stall_timeout > 0:
            raise ConfigError("upload_slots and upload_stall_timeout must be positive")


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
            "threads": self.threads,
            "peak_rss_mb": peak_rss_mb(),
            "sum_sha256": None if self.sum is None else hashlib.sha256(
                np.ascontiguousarray(self.sum).tobytes()).hexdigest(),
        }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Peer:
    """One connected Join stream. A reconnecting client gets a new _Peer."""

    def __init__(self, client_id: int) -> None:
        self.client_id = client_id
        self.queue: queue.Queue[pb.ServerEnvelope | None] = queue.Queue()
        self.connected = True

    def close(self) -> None:
        self.connected = False
        self.queue.put(None)


class _Upload:
    """A MaskedInput upload holding one of the server's upload slots."""

    def __init__(self, context: grpc.ServicerContext, round_: int) -> None:
        self.context = context
        self.round = round_
        self.last_progress = time.monotonic()  # written by the handler, read by the driver
        self.reading = True  # until the last chunk is in
        self.cancelled = False  # set (under the server's lock) by the driver

    def cancel(self) -> None:
        """Cut a sender still sending (call with the server's lock held)."""
        if self.reading and not self.cancelled:
            self.cancelled = True
            with contextlib.suppress(Exception):
                self.context.cancel()


class _Session:
    """The state of the session in progress; guarded by the server's condition lock."""

    def __init__(self, sequence: int, config: SessionConfig, protocol: ServerProtocol,
                 peers: dict[int, _Peer]) -> None:
        self.sequence = sequence
        self.config = config
        self.sid = config.session_id
        self.protocol = protocol
        self.peers = peers
        self.cohort = frozenset(config.cohort)
        self.round = 0
        self.closing = False  # between the end of a round and the start of the next
        self.answered: set[int] = set()
        self.outcome = SessionOutcome(sequence, self.sid, config)

    def gone(self) -> frozenset[int]:
        """Cohort members whose Join stream is closed: they can no longer take part."""
        return self.cohort - {u for u, p in self.peers.items() if p.connected}


class TransportServer:
    """The server side of the transport: a gRPC service plus the session driver.

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
        self._on_event = on_event or (lambda _e: None)
        self._emit_lock = threading.Lock()
        self._config_factory = config_factory or self._default_config
        self._protocol_kwargs = dict(protocol_kwargs or {})
        self._cond = threading.Condition()
        self._peers: dict[int, _Peer] = {}
        self._session: _Session | None = None
        self._sends: dict[int, int] = {}
        self._stop = threading.Event()
        self._decode_slots = threading.BoundedSemaphore(max(2, settings.threads or 2))
        self._upload_slots = threading.BoundedSemaphore(settings.upload_slots)
        self._uploads: set[_Upload] = set()  # slot holders; guarded by _cond
        #: test instrumentation: called as hook(event, client_id, holders) with event
        #: "waiting", "acquired" or "released"; holders counts slot holders after the event
        self.upload_hook: Callable[[str, int, int], None] | None = None
        self._finished = False
        self.port = 0
        workers = 3 * settings.clients + 16
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="secagg-rpc")
        options = [
            ("grpc.max_receive_message_length", framing.GRPC_MESSAGE_LIMIT),
            ("grpc.max_send_message_length", framing.GRPC_MESSAGE_LIMIT),
            ("grpc.keepalive_time_ms", 20_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.so_reuseport", 0),
        ]
        self._grpc = grpc.server(self._pool, options=options, maximum_concurrent_rpcs=workers)
        pb_grpc.add_AggregatorServicer_to_server(_Servicer(self), self._grpc)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> int:
        """Bind and start serving; returns the port (useful with port 0)."""
        if self._credentials is None:
            port = self._grpc.add_insecure_port(self._address)
        else:
            port = self._grpc.add_secure_port(self._address, self._credentials)
        if not port:
            raise ConfigError(f"cannot listen on {self._address}")
        framing.warm_up(self.settings.modulus)
        self._grpc.start()
        self.port = port
        self._emit({"event": "listening", "port": port, "tls": self._credentials is not None})
        return port

    def request_stop(self) -> None:
        """Start no further session (signal handlers call this)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def shutdown(self, grace: float = 2.0) -> None:
        """Say goodbye to every client, then stop gRPC (bounded by ``grace``)."""
        with self._cond:
            self._finished = True
            peers = list(self._peers.values())
        for p in peers:
            p.queue.put(pb.ServerEnvelope(goodbye=pb.Goodbye(reason="server finished")))
            p.queue.put(None)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(p.connected for p in peers):
            time.sleep(0.05)
        self._grpc.stop(grace=0.5).wait(timeout=grace + 1)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def run(self) -> list[SessionOutcome]:
        """Run ``settings.sessions`` sessions back to back (fewer if stopped)."""
        outcomes: list[SessionOutcome] = []
        keep = max(0, self.settings.keep_sums)
        for seq in range(self.settings.sessions):
            if self._stop.is_set():
                break
            outcomes.append(self.run_session(seq))
            if len(outcomes) > keep:
                outcomes[-keep - 1].sum = None
        return outcomes

    # -- one session ----------------------------------------------------------------------
    def run_session(self, sequence: int) -> SessionOutcome:
        s = self.settings
        wait = s.join_timeout if sequence == 0 else min(s.join_timeout, s.rejoin_grace)
        members = self._wait_for_cohort(wait)
        start = time.perf_counter()
        outcome = SessionOutcome(sequence)
        if len(members) < 3:
            outcome.abort_reason = f"only {len(members)} clients joined"
            outcome.wall_seconds = time.perf_counter() - start
            self._emit(outcome.report())
            return outcome
        try:
            config = self._config_factory(sequence, tuple(members))
            protocol = ServerProtocol(config, threads=s.threads, **self._protocol_kwargs)
        except SecAggError as exc:
            outcome.abort_reason = f"refused configuration: {exc}"
            outcome.wall_seconds = time.perf_counter() - start
            self._emit(outcome.report())
            return outcome
        with self._cond:
            peers = {u: self._peers[u] for u in config.cohort if u in self._peers}
            session = _Session(sequence, config, protocol, peers)
            self._session = session
        outcome = session.outcome
        outcome.threads = protocol.threads
        self._emit({"event": "session-open", "sequence": sequence, "session_id": session.sid.hex(),
                    "cohort": list(config.cohort), "threshold": config.threshold,
                    "round_index": config.round_index})
        opener = pb.ServerEnvelope(open=pb.SessionOpen(
            session_id=session.sid, config=config.encode(), sequence=sequence,
            round_timeout_ms=int(s.round_timeout * 1000)))
        for p in peers.values():
            p.queue.put(opener)
        try:
            self._drive(session)
        finally:
            with self._cond:
                self._session = None
        result = protocol.result
        outcome.aborted = result is None
        outcome.abort_reason = protocol.abort_reason if result is None else None
        if result is not None:
            outcome.included_ids = list(result.included)
            outcome.dropped_ids = list(result.dropped)
            outcome.masks_expanded = result.masks_expanded
            outcome.sum = result.sum
        else:
            outcome.dropped_ids = list(config.cohort)
        status = pb.SessionEnd.ABORTED if result is None else pb.SessionEnd.DONE
        end = pb.ServerEnvelope(end=pb.SessionEnd(
            session_id=session.sid, status=status,
            reason=_printable(outcome.abort_reason or "")))
        for p in peers.values():
            if p.connected:
                p.queue.put(end)
        outcome.wall_seconds = time.perf_counter() - start
        self._emit(outcome.report())
        return outcome

    def _default_config(self, sequence: int, cohort: tuple[int, ...]) -> SessionConfig:
        s = self.settings
        task = s.task_hash if s.task_hash is not None else secrets.token_bytes(32)
        kwargs: dict[str, Any] = {}
        if s.mode is not None:
            kwargs["mode"] = s.mode
        return SessionConfig.create(
            cohort, s.dim, s.modulus, graph=s.graph, threshold=s.threshold, degree=s.degree,
            dropout_rate=s.dropout_rate, corruption_rate=s.corruption_rate,
            round_index=s.first_round + sequence, task_hash=task,
            min_cohort=s.min_cohort,
            **kwargs,
        )

    def _wait_for_cohort(self, timeout: float) -> list[int]:
        """Connected client ids once ``clients`` have joined or ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._stop.is_set():
                if len(self._connected()) >= self.settings.clients:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, _POLL_SECONDS * 4))
            return sorted(self._connected())[: self.settings.clients]

    def _connected(self) -> list[int]:
        return [u for u, p in self._peers.items() if p.connected]

    def _drive(self, session: _Session) -> None:
        protocol = session.protocol
        outcome = session.outcome
        timeout = self.settings.round_timeout
        while protocol.state not in (ServerState.DONE, ServerState.ABORTED):
            r = session.round
            state = protocol.state.value
            round_start = time.perf_counter()
            deadline = time.monotonic() + timeout
            self._emit({"event": "round", "sequence": session.sequence, "round": r,
                        "state": state, "expected": len(protocol.expected())})
            with self._cond:
                while True:
                    waiting = protocol.expected() - session.gone()
                    left = deadline - time.monotonic()
                    if not waiting or left <= 0:
                        break
                    self._cancel_stalled_uploads()
                    self._cond.wait(min(left, _POLL_SECONDS * 4))
                missing = sorted(protocol.expected())
                answered = len(session.answered)
                session.closing = True  # Sends for this round are refused from here on
                for up in self._uploads:  # they would be refused anyway: free their slots
                    up.cancel()
            t0 = time.perf_counter()
            out = protocol.close_round()
            outcome.server_seconds += time.perf_counter() - t0
            with self._cond:
                session.round += 1
                session.answered = set()
                session.closing = False
            next_state = protocol.state.value
            for u, msg in sorted(out.items()):
                data = msg.encode()
                outcome.bytes_down[next_state] = outcome.bytes_down.get(next_state, 0) + len(data)
                peer = session.peers.get(u)
                if peer is not None and peer.connected:
                    for env in _envelopes(session.sid, session.round, data):
                        peer.queue.put(env)
            outcome.rounds.append({
                "round": r, "state": state, "answered": answered, "missing": missing,
                "seconds": time.perf_counter() - round_start,
            })

    def _cancel_stalled_uploads(self) -> None:
        """Cancel slot holders that received nothing for ``upload_stall_timeout`` (holds _cond)."""
        limit = time.monotonic() - self.settings.upload_stall_timeout
        for up in self._uploads:
            if up.last_progress < limit:
                up.cancel()  # only one still reading chunks

    # -- RPC handlers (called by _Servicer) ----------------------------------------------
    def join(self, request: pb.JoinRequest, context: grpc.ServicerContext
             ) -> Iterator[pb.ServerEnvelope]:
        cid = self._identify(context, request.client_id)
        if request.version not in (0, framing.TRANSPORT_VERSION):
            _abort(context, grpc.StatusCode.FAILED_PRECONDITION,
                   f"transport version {request.version} is not supported")
        peer = _Peer(cid)
        with self._cond:
            if self._finished:
                yield pb.ServerEnvelope(goodbye=pb.Goodbye(reason="server finished"))
                return
            old = self._peers.get(cid)
            if old is not None:
                old.close()  # a reconnecting client replaces its old stream
            self._peers[cid] = peer
            self._cond.notify_all()
        context.add_callback(lambda: self._disconnect(peer))
        self._emit({"event": "join", "client": cid})
        try:
            while True:
                try:
                    env = peer.queue.get(timeout=_POLL_SECONDS)
                except queue.Empty:
                    if not context.is_active():
                        return
                    continue
                if env is None:
                    return
                yield env
        finally:
            self._disconnect(peer)

    def _disconnect(self, peer: _Peer) -> None:
        with self._cond:
            peer.connected = False
            if self._peers.get(peer.client_id) is peer:
                del self._peers[peer.client_id]
            self._cond.notify_all()

    def send(self, chunks: Iterator[pb.ClientChunk], context: grpc.ServicerContext) -> pb.Ack:
        try:
            first = next(chunks)
        except StopIteration:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "empty message stream")
        cid = self._identify(context, first.client_id)
        with self._cond:
            if self._sends.get(cid, 0) >= _MAX_SENDS_PER_CLIENT:
                self._count(grpc.StatusCode.RESOURCE_EXHAUSTED)
                _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                       "too many concurrent messages from this client")
            self._sends[cid] = self._sends.get(cid, 0) + 1
        try:
            return self._receive(cid, first, chunks, context)
        finally:
            with self._cond:
                self._sends[cid] -= 1

    def _receive(self, cid: int, first: pb.ClientChunk, chunks: Iterator[pb.ClientChunk],
                 context: grpc.ServicerContext) -> pb.Ack:
        with self._cond:
            session = self._check_current(cid, first.session_id, first.round, context)
            limit = framing.client_message_limit(session.config, session.protocol.state.value)
            state = session.protocol.state.value
        if first.total_length > limit:  # refused before waiting for a slot
            self._refuse(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                         f"message of {first.total_length} bytes exceeds the limit of {limit}")
        if state != ServerState.COLLECT_MASKED.value:
            return self._buffer_and_receive(cid, first, chunks, context, session, limit,
                                             state, None)
        upload = self._take_upload_slot(cid, first, context, session)
        try:
            return self._buffer_and_receive(cid, first, chunks, context, session, limit,
                                            state, upload)
        finally:
            with self._cond:
                self._uploads.discard(upload)
                holders = len(self._uploads)
            self._upload_slots.release()
            self._hook("released", cid, holders)

    def _take_upload_slot(self, cid: int, first: pb.ClientChunk, context: grpc.ServicerContext,
                          session: _Session) -> _Upload:
        """Wait for an upload slot while the call is alive and the round still open."""
        with self._cond:
            holders = len(self._uploads)
        self._hook("waiting", cid, holders)
        while not self._upload_slots.acquire(timeout=_POLL_SECONDS):
            if not context.is_active():
                self._refuse(context, grpc.StatusCode.CANCELLED, "call cancelled")
            with self._cond:
                if self._check_current(cid, first.session_id, first.round, context) is not session:
                    self._refuse(context, grpc.StatusCode.FAILED_PRECONDITION, "session changed")
        try:
            with self._cond:
                current = self._check_current(cid, first.session_id, first.round, context)
                if current is not session:
                    self._refuse(context, grpc.StatusCode.FAILED_PRECONDITION, "session changed")
                upload = _Upload(context, session.round)
                self._uploads.add(upload)
                holders = len(self._uploads)
        except BaseException:
            self._upload_slots.release()
            raise
        self._hook("acquired", cid, holders)
        return upload

    def _hook(self, event: str, cid: int, holders: int) -> None:
        hook = self.upload_hook
        if hook is not None:
            hook(event, cid, holders)

    def _buffer_and_receive(self, cid: int, first: pb.ClientChunk,
                            chunks: Iterator[pb.ClientChunk], context: grpc.ServicerContext,
                            session: _Session, limit: int, state: str,
                            upload: _Upload | None) -> pb.Ack:
        try:
            buf = framing.Reassembler(first.total_length, limit)
            buf.add(first.data)
            for chunk in chunks:
                if upload is not None:
                    upload.last_progress = time.monotonic()
                if chunk.session_id or chunk.round or chunk.total_length or chunk.client_id:
                    raise framing.FrameError("header fields repeated after the first chunk")
                buf.add(chunk.data)
            data = buf.finish()
            if upload is not None:
                upload.reading = False
        except framing.FrameTooLargeError as exc:
            self._refuse(context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        except framing.FrameError as exc:
            self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except grpc.RpcError:  # the call was cancelled (by its client, or as stalled)
            self._refuse(context, grpc.StatusCode.CANCELLED, "call cancelled")
        if not context.is_active():
            self._refuse(context, grpc.StatusCode.CANCELLED, "call cancelled")
        size = len(data)
        with self._decode_slots:  # bounds the transient copies of concurrent large messages
            t0 = time.perf_counter()
            try:
                msg = decode(data)
            except ProtocolError as exc:
                self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT,
                             f"malformed message: {exc}")
            decode_seconds = time.perf_counter() - t0
        del data
        sender = getattr(msg, "sender", None)
        if sender != cid:
            self._refuse(context, grpc.StatusCode.PERMISSION_DENIED,
                         f"message names sender {sender}, but the certificate says {cid}")
        with self._cond:
            current = self._check_current(cid, first.session_id, first.round, context)
            if current is not session:
                self._refuse(context, grpc.StatusCode.FAILED_PRECONDITION, "session changed")
            if upload is not None and upload.cancelled:
                self._refuse(context, grpc.StatusCode.CANCELLED, "upload stalled")
            if cid in session.answered:
                self._refuse(context, grpc.StatusCode.ALREADY_EXISTS,
                             f"client {cid} already answered round {session.round}")
            t1 = time.perf_counter()
            try:
                session.protocol.receive(msg)  # type: ignore[arg-type]
            except ProtocolError as exc:
                self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            finally:
                session.outcome.server_seconds += decode_seconds + time.perf_counter() - t1
            session.answered.add(cid)
            up = session.outcome.bytes_up
            up[state] = up.get(state, 0) + size
            self._cond.notify_all()
        return pb.Ack(received=size)

    def _check_current(self, cid: int, sid: bytes, rnd: int,
                       context: grpc.ServicerContext) -> _Session:
        """The session in progress, if the chunk header names it and its open round."""
        session = self._session
        if session is None or sid != session.sid:
            self._refuse(context, grpc.StatusCode.FAILED_PRECONDITION,
                         "message is not for the session in progress")
        if cid not in session.cohort:
            self._refuse(context, grpc.StatusCode.PERMISSION_DENIED,
                         f"client {cid} is not in this session's cohort")
        if rnd != session.round or session.closing:
            self._refuse(context, grpc.StatusCode.FAILED_PRECONDITION,
                         f"round {rnd} is not open (current round {session.round})")
        return session

    def _refuse(self, context: grpc.ServicerContext, code: grpc.StatusCode,
                details: str) -> NoReturn:
        with self._cond:
            self._count(code)
        _abort(context, code, details)

    def _count(self, code: grpc.StatusCode) -> None:
        session = self._session
        if session is not None:
            refusals = session.outcome.refusals
            refusals[code.name] = refusals.get(code.name, 0) + 1

    def _identify(self, context: grpc.ServicerContext, claimed: int) -> int:
        """The caller's protocol id: from its certificate (mTLS) or, plaintext, as claimed."""
        if self._credentials is None:
            if not 1 <= claimed <= 0xFFFFFFFF:
                _abort(context, grpc.StatusCode.UNAUTHENTICATED,
                       "plaintext mode: the client must state its id")
            return claimed
        auth = context.auth_context()
        cid = certs.identity_from_names(auth.get("x509_common_name", []),
                                        auth.get("x509_subject_alternative_name", []))
        if cid is None:
            _abort(context, grpc.StatusCode.UNAUTHENTICATED,
                   "the client certificate names no secagg client id")
        if claimed and claimed != cid:
            with self._cond:
                self._count(grpc.StatusCode.PERMISSION_DENIED)
            _abort(context, grpc.StatusCode.PERMISSION_DENIED,
                   f"claimed id {claimed}, but the certificate says {cid}")
        return cid

    def _emit(self, event: Event) -> None:
        # one event at a time: handler threads (join) and the driver (session-open) emit
        # concurrently, and a printing observer would interleave their lines
        with self._emit_lock, contextlib.suppress(Exception):  # a broken observer must
            self._on_event(event)                               # not break the server


class _Servicer(pb_grpc.AggregatorServicer):
    """Thin adapter: the generated base class calls these with gRPC's names."""

    def __init__(self, server: TransportServer) -> None:
        self._server = server

    def Join(self, request: pb.JoinRequest, context: grpc.ServicerContext  # noqa: N802
             ) -> Iterator[pb.ServerEnvelope]:
        return self._server.join(request, context)

    def Send(self, request_iterator: Iterator[pb.ClientChunk],  # noqa: N802
             context: grpc.ServicerContext) -> pb.Ack:
        return self._server.send(request_iterator, context)


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, details: str) -> NoReturn:
    context.abort(code, _printable(details))
    raise AssertionError("unreachable")  # context.abort always raises


def _printable(text: str) -> str:
    return "".join(c if " " <= c <= "~" else "?" for c in text)[:_REASON_LEN]


def _envelopes(sid: bytes, rnd: int, data: bytes) -> Iterator[pb.ServerEnvelope]:
    total = len(data)
    for offset, piece in framing.split(data):
        yield pb.ServerEnvelope(chunk=pb.Chunk(session_id=sid, round=rnd, total_length=total,
                                               offset=offset, data=piece))
