"""gRPC client process: drives one :class:`~secagg.client.ClientProtocol` per session.

Why it is built this way (spec "Transport (gRPC)"):

* The client never trusts a session id from the server: it decodes the
  config, recomputes the id and refuses a SessionOpen whose id differs, or
  whose id it has already seen (a replayed or resumed session). Protocol state
  never outlives its session: when the connection breaks, the session is
  abandoned, its secrets dropped, and the next session starts with fresh keys.
* Every call has a deadline: ``Join`` the client's lifetime, each ``Send`` the
  server's round timeout; while a session runs, a silent server is given up
  on after the round timeout plus a margin.
* The Join stream is read by a background thread into a queue, so the main
  loop can wait with a timeout and cancel the call when it gives up.
"""

from __future__ import annotations

import enum
import hashlib
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np

from secagg.client import ClientProtocol, ClientState
from secagg.config import SessionConfig
from secagg.crypto.prg import mask_dtype
from secagg.errors import ConfigError, ProtocolError, SecAggError
from secagg.kernels.warmup import warm_up
from secagg.messages import ClientMessage
from secagg.receipt import ReceiptKeeper
from secagg.rounds import Round, decode_server
from secagg.transport import framing, sockstat
from secagg.transport import secagg_pb2 as pb
from secagg.transport import secagg_pb2_grpc as pb_grpc

#: Errors after which retrying cannot help: the server refused who we are.
_FATAL = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
                    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNIMPLEMENTED,
                    grpc.StatusCode.FAILED_PRECONDITION})
#: Send failures that mean the connection is gone, not that the server said no.
_CONNECTION_LOST = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                              grpc.StatusCode.DEADLINE_EXCEEDED})
_END = object()

Event = Mapping[str, Any]
InputProvider = Callable[[SessionConfig], np.ndarray]


def channel_options() -> list[tuple[str, int | str]]:
    """Explicit message limits and fast reconnection (a restarted server is found in ~1 s)."""
    return [
        *framing.GRPC_SHARED_OPTIONS,
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1_000),
    ]


def demo_input(seed: int, client_id: int, round_index: int, dim: int, modulus: int
               ) -> np.ndarray:
    """A reproducible, uniform input in Z_R for demos, simulations and tests."""
    rng = np.random.default_rng([seed, client_id, round_index])
    values = rng.integers(0, modulus - 1, size=dim, dtype=np.uint64, endpoint=True)
    return values.astype(mask_dtype(modulus))


@dataclass(frozen=True)
class ClientSettings:
    server: str  # host:port
    client_id: int
    connect_timeout: float = 30.0  # how long to keep trying to reach a server
    lifetime: float = 24 * 3600.0  # deadline of the Join call
    idle_margin: float = 30.0  # added to the round timeout before a silent server is given up
    sessions: int = 0  # leave after this many sessions; 0: until the server says goodbye
    #: hostname the server certificate must name (default: the host of ``server``)
    server_name: str | None = None
    client_kwargs: Mapping[str, Any] = field(default_factory=dict)
    #: keep a receipt of each session here (spec §18.6), signed with
    #: ``client_kwargs["identity"]`` when given (active mode); None: no receipts
    receipt_dir: str | None = None


class RunStatus(enum.Enum):
    """How one session ended for this client (the ``status`` of its session-end event)."""

    RUNNING = "running"
    DONE = "done"  # the server's sum includes this client
    LOST = "lost"  # the connection broke or the server fell silent
    REFUSED = "refused"  # we refused the server's message, or it refused ours
    ABORTED = "aborted"  # the server aborted the session
    DROPPED = "dropped"  # the session finished without this client


class StreamEnd(enum.Enum):
    """Why one Join call ended."""

    LEAVE = "leave"  # goodbye, or ``sessions`` sessions done: the client exits
    CONTACT = "contact"  # the stream ended after the server was heard: reconnect now
    NO_CONTACT = "no-contact"  # the server was never heard on this stream


@dataclass(frozen=True)
class StreamResult:
    """What one Join call came to: how it ended and the gRPC status, if it failed."""

    end: StreamEnd
    code: grpc.StatusCode | None = None
    details: str = ""


@dataclass
class _Run:
    """One session as this client sees it."""

    sequence: int
    config: SessionConfig
    sid: bytes
    protocol: ClientProtocol | None  # None once the session is over: no secret outlives it
    round_timeout: float
    round: int = 0  # round of the server message this client answers next
    parts: framing.Reassembler | None = None
    status: RunStatus = RunStatus.RUNNING
    reason: str | None = None
    bytes_sent: int = 0
    bytes_received: int = 0
    compute_seconds: float = 0.0
    wire_start: tuple[int, int] | None = None
    last_heard: float = field(default_factory=time.monotonic)
    #: what this client sent and received, by hash (spec §18.6); None when not kept
    receipt: ReceiptKeeper | None = None


class TransportClient:
    """A client process's main loop. ``run()`` returns the exit status.

    Exit status: 0 after the server's goodbye (or ``sessions`` sessions), 1 when
    the server could not be reached or the lifetime ran out, 2 when the server
    refused this client (authentication, id).
    """

    def __init__(
        self,
        settings: ClientSettings,
        inputs: InputProvider,
        *,
        credentials: grpc.ChannelCredentials | None,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self.settings = settings
        self._inputs = inputs
        self._credentials = credentials
        self._on_event = on_event or (lambda _e: None)
        self._seen: set[bytes] = set()
        self._joined = 0
        self._finished = 0
        self._current: _Run | None = None  # the session of the Join stream in progress
        self._stopping = threading.Event()
        self._port = _port_of(settings.server)
        options = channel_options()
        if settings.server_name:
            options.append(("grpc.ssl_target_name_override", settings.server_name))
        if credentials is None:
            self._channel = grpc.insecure_channel(settings.server, options=options)
        else:
            self._channel = grpc.secure_channel(settings.server, credentials, options=options)
        self._stub = pb_grpc.AggregatorStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def stop(self) -> None:
        """Leave from another thread: ``run()`` returns 0 once its Join call is cancelled.

        Closing the channel cancels the call in progress (the server sees a disconnect
        and drops this client from the session in progress, as for any dropout).
        """
        self._stopping.set()
        self._channel.close()

    # -- main loop ------------------------------------------------------------------------
    def run(self) -> int:
        s = self.settings
        warm_up(1 << 32)
        end_of_life = time.monotonic() + s.lifetime
        last_contact = time.monotonic()
        backoff = 0.1
        try:
            while not self._stopping.is_set():
                now = time.monotonic()
                if now >= end_of_life:
                    self._emit({"event": "exit", "reason": "lifetime over"})
                    return 1
                if now - last_contact > s.connect_timeout:
                    self._emit({"event": "exit", "reason": "server unreachable"})
                    return 1
                result = self._stream(end_of_life - now)
                if result.end is StreamEnd.LEAVE or self._stopping.is_set():
                    return 0
                if result.end is StreamEnd.CONTACT:
                    last_contact = time.monotonic()
                    backoff = 0.1
                if result.code in _FATAL:
                    assert result.code is not None
                    self._emit({"event": "exit",
                                "reason": f"refused: {result.code.name}: {result.details}"})
                    return 2
                time.sleep(backoff)
                backoff = min(1.0, backoff * 2)
            return 0
        finally:
            self.close()

    def _stream(self, deadline: float) -> StreamResult:
        """One Join call, from connecting to its end."""
        s = self.settings
        call = self._stub.Join(pb.JoinRequest(client_id=s.client_id,
                                              version=framing.TRANSPORT_VERSION),
                               timeout=deadline)
        inbox: queue.Queue[Any] = queue.Queue()
        reader = threading.Thread(target=_pump, args=(call, inbox), daemon=True)
        reader.start()
        self._current = None
        contact = False
        try:
            while True:
                run = self._current
                wait = None
                if run is not None and run.status is RunStatus.RUNNING:
                    wait = max(0.05, run.last_heard + run.round_timeout + s.idle_margin
                               - time.monotonic())
                try:
                    item = inbox.get(timeout=wait)
                except queue.Empty:
                    self._lose("server silent past the round deadline")
                    continue
                if item is _END or isinstance(item, grpc.RpcError):
                    return self._ended(item, contact)
                contact = True
                if self._envelope(item):
                    return StreamResult(StreamEnd.LEAVE)
        finally:
            call.cancel()
            reader.join(timeout=0.2)

    def _ended(self, item: Any, contact: bool) -> StreamResult:
        """The Join stream ended (cleanly, or with a gRPC error)."""
        end = StreamEnd.CONTACT if contact else StreamEnd.NO_CONTACT
        if isinstance(item, grpc.RpcError):
            self._lose(f"connection lost: {item.code().name}")
            return StreamResult(end, item.code(), item.details() or "")
        self._lose("connection ended")
        return StreamResult(end)

    def _envelope(self, item: pb.ServerEnvelope) -> bool:
        """Handle one server envelope; True when the client should leave."""
        run = self._current
        kind = item.WhichOneof("body")
        if kind == "goodbye":
            self._lose("server said goodbye")
            self._emit({"event": "exit", "reason": "goodbye"})
            return True
        if kind == "open":
            self._lose("server opened another session")
            self._current = self._open(item.open)
        elif kind == "chunk" and run is not None:
            self._chunk(run, item.chunk)
        elif kind == "end" and run is not None and item.end.session_id == run.sid:
            self._end(run, item.end)
            return bool(self.settings.sessions and self._finished >= self.settings.sessions)
        return False

    def _lose(self, reason: str) -> None:
        """The session in progress (if any) is lost for ``reason``."""
        run = self._current
        if run is not None and run.status is RunStatus.RUNNING:
            self._finish(run, RunStatus.LOST, reason)

    def before_send(self, sequence: int, config: SessionConfig, round_: Round) -> None:
        """Called just before this client sends its ``round_`` message in session ``sequence``.

        Does nothing here; the test and ``simulate --transport grpc`` harness
        overrides it to inject dropouts (:mod:`secagg.transport.dropout`).
        """

    # -- session handling -----------------------------------------------------------------
    def _open(self, msg: pb.SessionOpen) -> _Run | None:
        """Check a SessionOpen and start round 0; None when the session is refused."""
        me = self.settings.client_id
        try:
            config = SessionConfig.decode(msg.config)
        except SecAggError as exc:
            self._emit({"event": "session-refused", "reason": f"bad config: {exc}"})
            return None
        sid = config.session_id
        if msg.session_id != sid:
            self._emit({"event": "session-refused", "reason": "session id does not match config"})
            return None
        if sid in self._seen:
            self._emit({"event": "session-refused", "session_id": sid.hex(),
                        "reason": "session already seen (replayed or resumed)"})
            return None
        self._seen.add(sid)
        sequence = self._joined
        self._joined += 1
        try:
            warm_up(config.modulus)
            vector = self._inputs(config)
            protocol = ClientProtocol(config, me, vector, **dict(self.settings.client_kwargs))
        except (ConfigError, ProtocolError, OSError, ValueError) as exc:
            self._emit({"event": "session-refused", "session_id": sid.hex(),
                        "reason": f"{type(exc).__name__}: {exc}"})
            return None
        timeout = max(0.1, msg.round_timeout_ms / 1000) if msg.round_timeout_ms else 30.0
        run = _Run(sequence, config, sid, protocol, timeout,
                   wire_start=sockstat.tcp_bytes(peer_port=self._port),
                   receipt=None if self.settings.receipt_dir is None
                   else ReceiptKeeper(sid, me))
        t0 = time.perf_counter()
        first = protocol.start()
        run.compute_seconds += time.perf_counter() - t0
        self._emit({"event": "session-open", "session_id": sid.hex(), "sequence": sequence,
                    "round_index": config.round_index,
                    "keys_sha256": _fingerprint(first.enc_pk + first.mask_pk)})
        self._reply(run, first)
        return run

    def _chunk(self, run: _Run, chunk: pb.Chunk) -> None:
        if run.status is not RunStatus.RUNNING or run.protocol is None:
            return
        if chunk.session_id != run.sid or chunk.round != run.round + 1:
            # Not for this session's next round: stale, replayed or out of order.
            self._emit({"event": "stale-message", "session_id": chunk.session_id.hex(),
                        "round": chunk.round})
            return
        run.last_heard = time.monotonic()
        try:
            if run.parts is None:
                run.parts = framing.Reassembler(
                    chunk.total_length, framing.server_message_limit(run.config))
            elif chunk.total_length != run.parts.total:
                raise framing.FrameError("chunk declares another total length")
            run.parts.add(chunk.data, chunk.offset)
            if not run.parts.complete:
                return
            data = run.parts.finish()
            run.parts = None
            run.bytes_received += len(data)
            msg = decode_server(data)
            if run.receipt is not None:
                run.receipt.received(run.receipt.last_round, data)
            t0 = time.perf_counter()
            reply = run.protocol.handle(msg)
            run.compute_seconds += time.perf_counter() - t0
        except ProtocolError as exc:
            self._finish(run, RunStatus.REFUSED, str(exc))
            return
        run.round += 1
        if reply is not None:
            self._reply(run, reply)

    def _reply(self, run: _Run, msg: ClientMessage) -> None:
        s = self.settings
        self.before_send(run.sequence, run.config, Round.of_client_message(msg))
        data = msg.encode()
        try:
            self._stub.Send(_chunks(run.sid, run.round, s.client_id, data),
                            timeout=run.round_timeout + 5.0)
        except grpc.RpcError as exc:
            code = exc.code()
            if code in _CONNECTION_LOST:
                self._finish(run, RunStatus.LOST, f"sending failed: {code.name}")
            else:
                self._finish(run, RunStatus.REFUSED,
                             f"server refused our message: {code.name}: {exc.details()}")
            return
        run.bytes_sent += len(data)
        if run.receipt is not None:  # acknowledged: the server has it
            run.receipt.sent(int(Round.of_client_message(msg)), data)
        self._emit({"event": "sent", "session_id": run.sid.hex(), "round": run.round,
                    "bytes": len(data)})

    def _end(self, run: _Run, end: pb.SessionEnd) -> None:
        if run.status is RunStatus.RUNNING and run.protocol is not None:
            protocol = run.protocol
            if end.status == pb.SessionEnd.DONE and protocol.state is ClientState.DONE:
                self._finish(run, RunStatus.DONE, None)
            elif end.status == pb.SessionEnd.ABORTED:
                self._finish(run, RunStatus.ABORTED, end.reason or protocol.abort_reason)
            else:
                self._finish(run, RunStatus.DROPPED, "the session finished without this client")
        self._finished += 1

    def _finish(self, run: _Run, status: RunStatus, reason: str | None) -> None:
        run.status = status
        run.reason = reason
        run.parts = None
        wire = None
        now_wire = sockstat.tcp_bytes(peer_port=self._port)
        if now_wire is not None and run.wire_start is not None:
            wire = {"sent": now_wire[0] - run.wire_start[0],
                    "received": now_wire[1] - run.wire_start[1]}
        self._emit({
            "event": "session-end", "session_id": run.sid.hex(), "sequence": run.sequence,
            "status": status.value, "reason": reason,
            "state": run.protocol.state.value if run.protocol is not None else None,
            "bytes_sent": run.bytes_sent, "bytes_received": run.bytes_received,
            "wire": wire, "compute_seconds": run.compute_seconds,
        })
        run.protocol = None  # its secrets must not outlive the session
        self._write_receipt(run)

    def _write_receipt(self, run: _Run) -> None:
        """Keep the session's receipt (signed in active mode) in ``receipt_dir``."""
        directory = self.settings.receipt_dir
        if run.receipt is None or directory is None:
            return
        identity = self.settings.client_kwargs.get("identity")
        try:
            path = run.receipt.receipt(identity).write(directory)
        except OSError as exc:
            self._emit({"event": "receipt-failed", "reason": exc.strerror})
            return
        run.receipt = None
        self._emit({"event": "receipt", "session_id": run.sid.hex(), "path": str(path)})

    def _emit(self, event: Event) -> None:
        self._on_event({"client": self.settings.client_id, **event})


def _pump(call: Any, inbox: queue.Queue[Any]) -> None:
    try:
        for item in call:
            inbox.put(item)
        inbox.put(_END)
    except grpc.RpcError as exc:
        inbox.put(exc)


def _chunks(sid: bytes, rnd: int, client_id: int, data: bytes) -> Iterator[pb.ClientChunk]:
    for offset, piece in framing.split(data):
        if offset == 0:
            yield pb.ClientChunk(session_id=sid, round=rnd, total_length=len(data),
                                 client_id=client_id, data=piece)
        else:
            yield pb.ClientChunk(data=piece)


def _fingerprint(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _port_of(target: str) -> int | None:
    _host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return int(port)
