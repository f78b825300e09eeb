"""The upload gate: who may hold a Send call, for how long, and in which upload slot (§17.5).

Why it is separate from the round driver: admission is about calls and bytes,
not about the protocol. The gate counts each client certificate's concurrent
Send calls (refusing the excess before a byte is read), gives every call a
deadline for its first chunk and a minimum rate for the rest, hands the
masked-input upload slots out one per client, and reassembles chunks into a
buffer bounded by the round's frame limit. A watchdog thread cancels calls
that miss their deadlines, so a silent or trickling sender cannot pin the
server's RPC threads or its upload slots for the whole round.

The gate has its own lock and never calls into the round driver while
holding it; the driver's answers (is this client expected now?) are passed
in as callables evaluated outside the gate's lock.
"""

from __future__ import annotations

import contextlib
import enum
import threading
import time
from collections.abc import Callable, Iterator

import grpc

from secagg.errors import SecAggError
from secagg.transport import framing
from secagg.transport import secagg_pb2 as pb

#: How often the watchdog and waiting handlers wake up.
POLL_SECONDS = 0.25


class RefusedError(SecAggError):
    """A Send call is refused with a gRPC status (the servicer aborts the call with it)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class Phase(enum.Enum):
    """Where a watched call is: each phase has its own deadline rule."""

    FIRST_CHUNK = "first-chunk"  # fixed deadline: first_chunk_timeout after the call opened
    WAITING = "waiting"  # queued for an upload slot: bounded by the round, not by the gate
    READING = "reading"  # stall timeout and minimum rate
    DONE = "done"  # every chunk is in: never cut


class Watch:
    """One Send call the watchdog looks after (its fields are guarded by the gate's lock)."""

    def __init__(self, context: grpc.ServicerContext, now: float) -> None:
        self.context = context
        self.phase = Phase.FIRST_CHUNK
        self.opened = now
        self.started = now  # when READING began
        self.last_progress = now
        self.received = 0
        self.cancelled = False
        self.reason = ""

    def overdue(self, now: float, first_chunk: float, stall: float, min_rate: float) -> str:
        """Why this call must be cut now, or "" when it may go on."""
        if self.phase is Phase.FIRST_CHUNK:
            return "no first chunk within the deadline" if now - self.opened > first_chunk else ""
        if self.phase is not Phase.READING:
            return ""
        if now - self.last_progress > stall:
            return "upload stalled"
        elapsed = now - self.started - stall
        if elapsed > 0 and self.received < min_rate * elapsed:
            return "upload below the minimum rate"
        return ""

    def cancel(self, reason: str) -> None:
        """Cut a call still waiting for bytes (call with the gate's lock held)."""
        if self.phase in (Phase.FIRST_CHUNK, Phase.READING) and not self.cancelled:
            self.cancelled = True
            self.reason = reason
            with contextlib.suppress(Exception):
                self.context.cancel()


class UploadGate:
    """Per-certificate call caps, call deadlines, upload slots and reassembly (§17.5)."""

    def __init__(self, *, sends_per_client: int, slots: int, first_chunk_timeout: float,
                 stall_timeout: float, min_rate: float) -> None:
        self._sends_per_client = sends_per_client
        self._first_chunk_timeout = first_chunk_timeout
        self._stall_timeout = stall_timeout
        self._min_rate = min_rate
        self._lock = threading.Lock()
        self._calls: dict[int, int] = {}
        self._watched: set[Watch] = set()
        self._slots = threading.BoundedSemaphore(slots)
        self._holders: dict[int, Watch] = {}  # client id -> its upload holding a slot
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        #: test instrumentation: called as hook(event, client_id, holders) with event
        #: "waiting", "acquired" or "released"; holders counts slot holders after the event
        self.hook: Callable[[str, int, int], None] | None = None

    # -- watchdog -----------------------------------------------------------------------
    def start(self) -> None:
        """Start the watchdog thread that cancels calls past their deadlines."""
        self._watchdog = threading.Thread(target=self._watch_loop, daemon=True,
                                          name="secagg-upload-watchdog")
        self._watchdog.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watchdog is not None:
            self._watchdog.join(timeout=2 * POLL_SECONDS)

    def _watch_loop(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            self.sweep()

    def sweep(self, now: float | None = None) -> None:
        """Cancel every watched call past its deadline (the watchdog calls this)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            for w in self._watched:
                reason = w.overdue(now, self._first_chunk_timeout, self._stall_timeout,
                                   self._min_rate)
                if reason:
                    w.cancel(reason)

    def cancel_uploads(self) -> None:
        """The round is closing: cut slot holders still reading (they would be refused)."""
        with self._lock:
            for w in self._holders.values():
                w.cancel("round closed")

    # -- calls ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def counted(self, cid: int) -> Iterator[None]:
        """Count one Send call of ``cid``; over the per-certificate cap it is refused at once."""
        with self._lock:
            if self._calls.get(cid, 0) >= self._sends_per_client:
                raise RefusedError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                   "too many concurrent messages from this client")
            self._calls[cid] = self._calls.get(cid, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._calls[cid] -= 1
                if not self._calls[cid]:
                    del self._calls[cid]

    @contextlib.contextmanager
    def watched(self, context: grpc.ServicerContext) -> Iterator[Watch]:
        """Put one Send call under the watchdog (first-chunk deadline, then rate)."""
        watch = Watch(context, time.monotonic())
        with self._lock:
            self._watched.add(watch)
        try:
            yield watch
        finally:
            with self._lock:
                self._watched.discard(watch)

    def first_chunk(self, chunks: Iterator[pb.ClientChunk], watch: Watch) -> pb.ClientChunk:
        """The call's first chunk, read under the first-chunk deadline."""
        try:
            first = next(chunks)
        except StopIteration:
            raise RefusedError(grpc.StatusCode.INVALID_ARGUMENT, "empty message stream") from None
        except grpc.RpcError:
            raise self._cut(watch) from None
        self._enter(watch, Phase.WAITING)
        return first

    def read_rest(self, first: pb.ClientChunk, chunks: Iterator[pb.ClientChunk], limit: int,
                  watch: Watch) -> bytes:
        """Reassemble the message whose first chunk is ``first``, bounded by ``limit``."""
        with self._lock:
            watch.phase = Phase.READING
            watch.started = watch.last_progress = time.monotonic()
            watch.received = len(first.data)
        try:
            buf = framing.Reassembler(first.total_length, limit)
            buf.add(first.data)
            for chunk in chunks:
                watch.last_progress = time.monotonic()  # plain stores: read by the watchdog
                watch.received += len(chunk.data)
                if chunk.session_id or chunk.round or chunk.total_length or chunk.client_id:
                    raise framing.FrameError("header fields repeated after the first chunk")
                buf.add(chunk.data)
            data = buf.finish()
        except framing.FrameTooLargeError as exc:
            raise RefusedError(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)) from None
        except framing.FrameError as exc:
            raise RefusedError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        except grpc.RpcError:  # cancelled by its client, or by the watchdog
            raise self._cut(watch) from None
        self._enter(watch, Phase.DONE)
        return data

    def _enter(self, watch: Watch, phase: Phase) -> None:
        """Move a call that the watchdog has not cancelled to ``phase``; refuse one it has.

        Under the lock, so the watchdog never cancels a call between the check and the
        phase change."""
        with self._lock:
            if watch.cancelled:
                raise self._cut(watch)
            watch.phase = phase

    def _cut(self, watch: Watch) -> RefusedError:
        return RefusedError(grpc.StatusCode.CANCELLED, watch.reason or "call cancelled")

    # -- upload slots ---------------------------------------------------------------------
    @contextlib.contextmanager
    def slot(self, cid: int, watch: Watch, refusal: Callable[[], RefusedError | None]
             ) -> Iterator[None]:
        """Hold one upload slot while the body runs.

        Only a client the protocol expects now gets one (``refusal`` returns
        None; it is evaluated outside the gate's lock), and only one per client;
        the wait ends when the call is cancelled or the client stops being
        expected (its upload arrived on another call, or the round closed).
        """
        refused = refusal()
        if refused is not None:
            raise refused
        with self._lock:
            if cid in self._holders:
                raise RefusedError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                   f"client {cid} already holds an upload slot")
            holders = len(self._holders)
        self._notify("waiting", cid, holders)
        holders = self._acquire(cid, watch, refusal)
        try:
            self._notify("acquired", cid, holders)
            yield
        finally:
            with self._lock:
                if self._holders.get(cid) is watch:
                    del self._holders[cid]
                holders = len(self._holders)
            self._slots.release()
            self._notify("released", cid, holders)

    def _acquire(self, cid: int, watch: Watch, refusal: Callable[[], RefusedError | None]
                 ) -> int:
        """Wait for a free slot and register ``watch`` as its holder; returns the holders."""
        while not self._slots.acquire(timeout=POLL_SECONDS):
            if not watch.context.is_active():
                raise RefusedError(grpc.StatusCode.CANCELLED, "call cancelled")
            refused = refusal()
            if refused is not None:
                raise refused
        refused = refusal()
        with self._lock:
            taken = cid in self._holders  # a second call of this client got there first
            if refused is None and not taken:
                self._holders[cid] = watch
                return len(self._holders)
        self._slots.release()
        raise refused or RefusedError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                      f"client {cid} already holds an upload slot")

    def _notify(self, event: str, cid: int, holders: int) -> None:
        hook = self.hook
        if hook is not None:
            hook(event, cid, holders)
