"""The round driver: cohort wait, round deadlines and each session's outcome (spec §17.4).

Why it is separate from the gRPC servicer: the server owns the clock. The
driver waits for the cohort, opens a session, and closes each round when every
expected client has answered or disconnected, or when the round deadline
passes; :meth:`ServerProtocol.close_round` then drops the missing clients (or
aborts cleanly below t). Handlers only ask it questions (is this client in
the session, expected in this round?) and hand it decoded messages, all under
its one condition lock; it never sees a chunk or a gRPC call.
"""

from __future__ import annotations

import contextlib
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from secagg.config import SessionConfig
from secagg.errors import ProtocolError, SecAggError
from secagg.messages import ClientMessage
from secagg.rounds import Round
from secagg.server import ServerProtocol, ServerState
from secagg.transcript import TranscriptWriter, finish_transcript
from secagg.transport import framing
from secagg.transport import secagg_pb2 as pb
from secagg.transport.gate import POLL_SECONDS, RefusedError
from secagg.transport.settings import ServerSettings, SessionOutcome
from secagg.transport.transcripts import session_log, session_transcript

_REASON_LEN = 256

Event = Mapping[str, Any]
_ROUND_OF_STATE = {r.state_name: r for r in Round}


def round_of(state: ServerState) -> Round | None:
    """The round whose messages ``state`` collects (None once the session is over)."""
    return _ROUND_OF_STATE.get(state.value)


class Peer:
    """One connected Join stream. A reconnecting client gets a new Peer."""

    def __init__(self, client_id: int) -> None:
        self.client_id = client_id
        self.queue: queue.Queue[pb.ServerEnvelope | None] = queue.Queue()
        self.connected = True

    def close(self) -> None:
        self.connected = False
        self.queue.put(None)


class _Session:
    """The state of the session in progress; guarded by the driver's condition lock."""

    def __init__(self, sequence: int, config: SessionConfig, protocol: ServerProtocol,
                 peers: dict[int, Peer]) -> None:
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
        #: the public transcript being streamed (spec §18.5), None when off
        self.transcript: TranscriptWriter | None = None

    def gone(self) -> frozenset[int]:
        """Cohort members whose Join stream is closed: they can no longer take part."""
        return self.cohort - {u for u, p in self.peers.items() if p.connected}


@dataclass(frozen=True)
class Ticket:
    """A message admitted into the open round: what the handler needs to receive it."""

    session: _Session
    counter: int  # the round counter on the wire
    round: Round
    limit: int  # the round's frame limit (§17.2)


class RoundDriver:
    """Runs sessions back to back and answers the handlers' admission questions."""

    def __init__(
        self,
        settings: ServerSettings,
        *,
        on_event: Callable[[Event], None] | None = None,
        config_factory: Callable[[int, tuple[int, ...]], SessionConfig] | None = None,
        protocol_kwargs: Mapping[str, Any] | None = None,
        on_round_close: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self._on_event = on_event or (lambda _e: None)
        self._emit_lock = threading.Lock()
        self._config_factory = config_factory or self._default_config
        self._protocol_kwargs = dict(protocol_kwargs or {})
        self._on_round_close = on_round_close or (lambda: None)
        self._cond = threading.Condition()
        self._peers: dict[int, Peer] = {}
        self._session: _Session | None = None
        self._stop = threading.Event()
        self._finished = False
        self._log = session_log(settings)

    # -- lifecycle ------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Start no further session (signal handlers call this)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def finish(self) -> list[Peer]:
        """No more joins; returns the peers still connected (to say goodbye to)."""
        with self._cond:
            self._finished = True
            return list(self._peers.values())

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
            return self._report(outcome, start)
        try:
            config = self._config_factory(sequence, tuple(members))
            protocol = ServerProtocol(config, threads=s.threads, **self._protocol_kwargs)
        except SecAggError as exc:
            outcome.abort_reason = f"refused configuration: {exc}"
            return self._report(outcome, start)
        session = self._open(sequence, config, protocol)
        try:
            self._drive(session)
        finally:
            with self._cond:
                self._session = None
            self._record_end(session)
        self._conclude(session)
        return self._report(session.outcome, start)

    def _report(self, outcome: SessionOutcome, start: float) -> SessionOutcome:
        outcome.wall_seconds = time.perf_counter() - start
        self.emit(outcome.report())
        return outcome

    def _open(self, sequence: int, config: SessionConfig, protocol: ServerProtocol
              ) -> _Session:
        """Make the session current and send every member its SessionOpen."""
        transcript = session_transcript(self.settings, sequence, config, self._protocol_kwargs)
        with self._cond:
            peers = {u: self._peers[u] for u in config.cohort if u in self._peers}
            session = _Session(sequence, config, protocol, peers)
            session.transcript = transcript
            self._session = session
        session.outcome.threads = protocol.threads
        self.emit({"event": "session-open", "sequence": sequence,
                   "session_id": session.sid.hex(), "cohort": list(config.cohort),
                   "threshold": config.threshold, "round_index": config.round_index})
        opener = pb.ServerEnvelope(open=pb.SessionOpen(
            session_id=session.sid, config=config.encode(), sequence=sequence,
            round_timeout_ms=int(self.settings.round_timeout * 1000)))
        for p in peers.values():
            p.queue.put(opener)
        return session

    def _conclude(self, session: _Session) -> None:
        """Record the result and send every connected member its SessionEnd."""
        protocol, outcome = session.protocol, session.outcome
        result = protocol.result
        outcome.aborted = result is None
        outcome.abort_reason = protocol.abort_reason if result is None else None
        if result is not None:
            outcome.included_ids = list(result.included)
            outcome.dropped_ids = list(result.dropped)
            outcome.masks_expanded = result.masks_expanded
            outcome.server_work = result.work.as_dict()
            outcome.sum = result.sum
        else:
            outcome.dropped_ids = list(session.config.cohort)
        status = pb.SessionEnd.ABORTED if result is None else pb.SessionEnd.DONE
        end = pb.ServerEnvelope(end=pb.SessionEnd(
            session_id=session.sid, status=status,
            reason=printable(outcome.abort_reason or "")))
        for p in session.peers.values():
            if p.connected:
                p.queue.put(end)

    def _record_end(self, session: _Session) -> None:
        """Write the published result (or the abort), close the transcript, log its hash."""
        writer = session.transcript
        if writer is not None:
            protocol = session.protocol
            finish_transcript(writer, protocol.result, protocol.abort_reason,
                              session.config.modulus)
            if writer.error is not None:
                self.emit({"event": "transcript-failed", "sequence": session.sequence,
                           "reason": writer.error})
            elif self._log is not None and writer.path is not None:
                self._log.append(session.sid, writer.path, writer.sha256)

    def _default_config(self, sequence: int, cohort: tuple[int, ...]) -> SessionConfig:
        s = self.settings
        task = s.task_hash if s.task_hash is not None else secrets.token_bytes(32)
        return SessionConfig.create(cohort, s.dim, s.modulus, settings=s.session,
                                    round_index=s.first_round + sequence, task_hash=task)

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
                self._cond.wait(min(left, POLL_SECONDS * 4))
            return sorted(self._connected())[: self.settings.clients]

    def _connected(self) -> list[int]:
        return [u for u, p in self._peers.items() if p.connected]

    # -- rounds ---------------------------------------------------------------------------
    def _drive(self, session: _Session) -> None:
        protocol = session.protocol
        while protocol.state not in (ServerState.DONE, ServerState.ABORTED):
            r = session.round
            state = protocol.state.value
            round_start = time.perf_counter()
            self.emit({"event": "round", "sequence": session.sequence, "round": r,
                       "state": state, "expected": len(protocol.expected())})
            missing, answered = self._await_round(session,
                                                  time.monotonic() + self.settings.round_timeout)
            self._on_round_close()  # slot holders would be refused anyway: free their slots
            closing = round_of(protocol.state)
            t0 = time.perf_counter()
            out = {u: m.encode() for u, m in sorted(protocol.close_round().items())}
            session.outcome.server_seconds += time.perf_counter() - t0
            with self._cond:
                if session.transcript is not None and closing is not None:
                    for u, data in out.items():  # before any client can answer them
                        session.transcript.down(int(closing), u, data)
                session.round += 1
                session.answered = set()
                session.closing = False
            self._deliver(session, out)
            session.outcome.rounds.append({
                "round": r, "state": state, "answered": answered, "missing": missing,
                "seconds": time.perf_counter() - round_start,
            })

    def _await_round(self, session: _Session, deadline: float) -> tuple[list[int], int]:
        """Wait until nobody expected is left or the deadline; then refuse further Sends."""
        protocol = session.protocol
        with self._cond:
            while True:
                waiting = protocol.expected() - session.gone()
                left = deadline - time.monotonic()
                if not waiting or left <= 0:
                    break
                self._cond.wait(min(left, POLL_SECONDS * 4))
            session.closing = True  # Sends for this round are refused from here on
            return sorted(protocol.expected()), len(session.answered)

    def _deliver(self, session: _Session, out: Mapping[int, bytes]) -> None:
        """Queue the closed round's server messages (encoded) to their connected recipients."""
        next_state = session.protocol.state.value
        down = session.outcome.bytes_down
        for u, data in out.items():
            down[next_state] = down.get(next_state, 0) + len(data)
            peer = session.peers.get(u)
            if peer is not None and peer.connected:
                for env in envelopes(session.sid, session.round, data):
                    peer.queue.put(env)

    # -- questions from the handlers ------------------------------------------------------
    def connect(self, peer: Peer) -> bool:
        """Register a Join stream (replacing the client's old one); False once finished."""
        with self._cond:
            if self._finished:
                return False
            old = self._peers.get(peer.client_id)
            if old is not None:
                old.close()  # a reconnecting client replaces its old stream
            self._peers[peer.client_id] = peer
            self._cond.notify_all()
            return True

    def disconnect(self, peer: Peer) -> None:
        with self._cond:
            peer.connected = False
            if self._peers.get(peer.client_id) is peer:
                del self._peers[peer.client_id]
            self._cond.notify_all()

    def check_member(self, cid: int) -> None:
        """Refuse, before anything is read, a caller outside the session in progress (§17.5)."""
        with self._cond:
            session = self._session
            if session is None:
                raise RefusedError(grpc.StatusCode.FAILED_PRECONDITION, "no session in progress")
            if cid not in session.cohort:
                raise RefusedError(grpc.StatusCode.PERMISSION_DENIED,
                                   f"client {cid} is not in this session's cohort")

    def admit(self, cid: int, sid: bytes, counter: int) -> Ticket:
        """The open round a first chunk's header names, with the round's frame limit."""
        with self._cond:
            session = self._current(cid, sid, counter)
            round_ = round_of(session.protocol.state)
            if round_ is None:
                raise RefusedError(grpc.StatusCode.FAILED_PRECONDITION, "the session is over")
            limit = framing.client_message_limit(session.config, round_)
            return Ticket(session, counter, round_, limit)

    def upload_refusal(self, cid: int, ticket: Ticket) -> RefusedError | None:
        """Why ``cid`` may not (or no longer) hold an upload slot in the ticket's round, or
        None while it still owes its message there (the upload-slot policy, §17.5)."""
        with self._cond:
            session = self._session
            if (session is not ticket.session or session.closing
                    or session.round != ticket.counter):
                return RefusedError(grpc.StatusCode.FAILED_PRECONDITION,
                                    f"round {ticket.counter} is not open")
            if cid in session.answered:
                return RefusedError(grpc.StatusCode.ALREADY_EXISTS,
                                    f"client {cid} already answered round {session.round}")
            if cid not in session.protocol.expected():
                return RefusedError(grpc.StatusCode.FAILED_PRECONDITION,
                                    f"client {cid} is not expected to upload in this round")
            return None

    def accept(self, cid: int, ticket: Ticket, msg: ClientMessage, size: int,
               decode_seconds: float) -> None:
        """Feed one decoded message to the state machine (refusals change nothing)."""
        with self._cond:
            session = self._current(cid, ticket.session.sid, ticket.counter)
            if session is not ticket.session:
                raise RefusedError(grpc.StatusCode.FAILED_PRECONDITION, "session changed")
            if cid in session.answered:
                raise RefusedError(grpc.StatusCode.ALREADY_EXISTS,
                                   f"client {cid} already answered round {session.round}")
            t1 = time.perf_counter()
            if session.transcript is not None:  # what the server is handed, as in §18.1
                session.transcript.up(int(ticket.round), cid, msg.encode())
            try:
                session.protocol.receive(msg)
            except ProtocolError as exc:
                raise RefusedError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
            finally:
                session.outcome.server_seconds += decode_seconds + time.perf_counter() - t1
            session.answered.add(cid)
            up = session.outcome.bytes_up
            state = ticket.round.state_name
            up[state] = up.get(state, 0) + size
            self._cond.notify_all()

    def _current(self, cid: int, sid: bytes, counter: int) -> _Session:
        """The session in progress, if the header names it and its open round (holds _cond)."""
        session = self._session
        if session is None or sid != session.sid:
            raise RefusedError(grpc.StatusCode.FAILED_PRECONDITION,
                               "message is not for the session in progress")
        if cid not in session.cohort:
            raise RefusedError(grpc.StatusCode.PERMISSION_DENIED,
                               f"client {cid} is not in this session's cohort")
        if counter != session.round or session.closing:
            raise RefusedError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"round {counter} is not open (current round {session.round})")
        return session

    def count(self, code: grpc.StatusCode) -> None:
        """Count one refusal in the current session's outcome."""
        with self._cond:
            session = self._session
            if session is not None:
                refusals = session.outcome.refusals
                refusals[code.name] = refusals.get(code.name, 0) + 1

    def emit(self, event: Event) -> None:
        # one event at a time: handler threads (join) and the driver (session-open) emit
        # concurrently, and a printing observer would interleave their lines
        with self._emit_lock, contextlib.suppress(Exception):  # a broken observer must
            self._on_event(event)                               # not break the server


def printable(text: str) -> str:
    """``text`` as a short printable-ASCII status detail or reason."""
    return "".join(c if " " <= c <= "~" else "?" for c in text)[:_REASON_LEN]


def envelopes(sid: bytes, rnd: int, data: bytes) -> Iterator[pb.ServerEnvelope]:
    total = len(data)
    for offset, piece in framing.split(data):
        yield pb.ServerEnvelope(chunk=pb.Chunk(session_id=sid, round=rnd, total_length=total,
                                               offset=offset, data=piece))
