"""The one session driver: runs a session round by round and only moves messages (spec §8, §15).

Why one driver: the simulator, the test-vector generator, the attack harness and
the tests all need "n clients and a server, in memory, round by round". Each
wrote that loop itself and each drifted (drop rules, message order, what is
recorded). This module is that loop, once. It makes no protocol decision: the
:class:`~secagg.client.ClientProtocol` and :class:`~secagg.server.ServerProtocol`
state machines decide everything; the driver encodes every message to its
canonical bytes and decodes it on the other side (exactly what a transport does),
so byte counts are real and the codec is exercised.

Four things plug in:

* :class:`SessionObserver` — sees every message as bytes (what a client produced,
  what reached the server, what was sent down), every refusal, every closed round.
  Transcripts (spec §18.1), byte counts, memory replays and progress bars are
  observers.
* :class:`Relay` — the network, possibly adversarial: what a client's message
  becomes on the wire, which queued messages reach the server before the round
  closes, and what is actually sent when a round closes (dropped, replayed,
  re-addressed, replaced or invented messages). The honest default delivers
  everything as produced.
* :class:`ClientChannel` — how the server's messages reach the clients and their
  replies come back. The base hands each message to an in-process endpoint
  (:meth:`~secagg.client.ClientProtocol.handle`) the moment it is sent; a remote
  channel (the Flower adapter's) sends a round's messages as one batch and
  posts the replies back as bytes. An ``authenticated`` channel vouches for who
  sent each reply, so the driver refuses a message of the wrong round or one
  that names another client as its sender.
* a dropout schedule — :class:`~secagg.rounds.Round` (or its public label) to
  client ids: a client scheduled at round r sends nothing from round r on and
  stops reading the server. ConsistencyCheck in a semi-honest session means
  unmasking (:func:`~secagg.rounds.effective_round`).

Order (normative for the session test vector): clients start in cohort order;
when a round closes, the relay's messages are handed out in order and each
client's reply is computed right after it is handed its message; the replies
reach the server in that order when the next round runs.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Protocol

from secagg.config import Mode
from secagg.errors import ConfigError, ProtocolError
from secagg.messages import ClientMessage, ServerMessage
from secagg.rounds import Round, decode_client, decode_server, effective_round, rounds_of
from secagg.server import ServerProtocol, ServerState

__all__ = [
    "ClientChannel",
    "ClientEndpoint",
    "DropoutSchedule",
    "Relay",
    "SessionDriver",
    "SessionObserver",
    "drop_rounds",
]

_ENDED = (ServerState.ABORTED, ServerState.DONE)

#: A dropout schedule: round (or its public label) -> the clients that stop sending there.
DropoutSchedule = (Mapping[Round, Iterable[int]] | Mapping[str, Iterable[int]]
                   | Mapping[Round | str, Iterable[int]])


class ClientEndpoint(Protocol):
    """What the driver needs of a client: :class:`~secagg.client.ClientProtocol` is one."""

    def start(self) -> ClientMessage: ...

    def handle(self, message: ServerMessage) -> ClientMessage | None: ...


class SessionObserver:
    """Sees everything the driver moves; every hook is a no-op here. Observers must not
    change the session: an adversary plugs in as a :class:`Relay` instead."""

    def on_reply(self, round: Round, client_id: int, data: bytes) -> None:
        """Client ``client_id`` produced ``data`` (its genuine message) for ``round``."""

    def on_up(self, round: Round, client_id: int, data: bytes) -> None:
        """``data``, claimed from ``client_id``, is handed to the server in ``round``."""

    def on_server_refusal(self, round: Round, client_id: int, error: ProtocolError) -> None:
        """The server refused a message (malformed, duplicate, out of place)."""

    def on_round_closed(self, round: Round, outgoing: Mapping[int, ServerMessage]) -> None:
        """The server closed ``round`` and answered ``outgoing`` (before the relay)."""

    def on_down(self, round: Round, client_id: int, data: bytes) -> None:
        """``data`` is sent to ``client_id`` after ``round`` (whether or not it still listens)."""

    def on_delivered(self, round: Round, client_id: int, message: ServerMessage,
                     reply: ClientMessage | None) -> None:
        """The client accepted ``message`` and answered ``reply`` (None: nothing to send)."""

    def on_refusal(self, round: Round, client_id: int, error: ProtocolError) -> None:
        """The client refused a server message; recorded, never raised."""


class Relay:
    """The network between clients and server; this base delivers everything honestly.

    An adversary (the attack harness, an adversarial-server explorer) overrides any
    of the three steps.
    """

    def upload(self, round: Round, client_id: int, message: ClientMessage,
               data: bytes) -> Sequence[bytes]:
        """What goes on the wire for a client's ``message`` (encoded as ``data``)."""
        return (data,)

    def admit(self, round: Round, queued: Sequence[tuple[int, bytes]]
              ) -> Iterable[tuple[int, bytes]]:
        """Which queued client messages reach the server, in order, before ``round`` closes."""
        return queued

    def download(self, round: Round, honest: Mapping[int, ServerMessage]
                 ) -> Iterable[tuple[int, bytes]]:
        """What is sent when ``round`` closes, as (client, bytes) in order; ``honest`` is
        what the server answered (empty when it had no round to close)."""
        return [(u, m.encode()) for u, m in sorted(honest.items())]


class ClientChannel:
    """How the driver reaches the clients; this base calls in-process endpoints one by one.

    Why pluggable: the round logic (what the server receives, when a round
    closes, what is sent and to whom) is the same whether the clients are
    objects in this process or Flower nodes behind a grid; only the delivery
    differs. A channel gets the driver, so it can hand each reply back
    (:meth:`SessionDriver.post` for a message object, :meth:`SessionDriver.post_bytes`
    for bytes off a wire) and report what the driver should know.
    """

    #: Replies come with a sender identity the channel vouches for (a node id, a
    #: transport session): the driver then refuses a reply of another round or one
    #: that names another client as its sender. In-process, a relay may re-address
    #: messages on purpose (attacks), so the base is not authenticated.
    authenticated: bool = False

    def open(self, driver: SessionDriver, round: Round, client_ids: Sequence[int]) -> None:
        """Start ``client_ids`` (cohort order): each sends its first message, ``round``'s."""
        for u in client_ids:
            client = driver.clients.get(u)
            if client is None:
                continue
            t0 = time.perf_counter()
            message = client.start()
            driver.bill(u, t0)
            driver.post(u, message)

    def deliver(self, driver: SessionDriver, round: Round, following: Round | None,
                items: Iterable[tuple[int, bytes]]) -> None:
        """Send each (client, bytes) of ``items`` (sent after ``round``; ``following`` is
        the next round, None when none follows); a client answers right after its message.

        ``items`` is lazy: the driver reports each message sent as it is drawn, so the
        observers see "sent to u, u answered" in order for an in-process client.
        """
        for u, data in items:
            if u in driver.clients:
                reply = driver.to_client(round, u, data)
                if reply is not None:
                    driver.post(u, reply)


def drop_rounds(schedule: DropoutSchedule | None, mode: Mode,
                cohort: Iterable[int]) -> dict[int, Round]:
    """Client id -> the round it stops at, from a schedule keyed by :class:`Round` or label.

    The earliest round wins; a round ``mode`` does not run is mapped by
    :func:`~secagg.rounds.effective_round`. Clients outside ``cohort`` are refused.
    """
    drop_at: dict[int, Round] = {}
    for key, ids in (schedule or {}).items():
        point = effective_round(key if isinstance(key, Round) else Round.from_label(key), mode)
        for u in ids:
            if u not in drop_at or point < drop_at[u]:
                drop_at[u] = point
    if set(drop_at) - set(cohort):
        raise ConfigError("dropout schedule names clients outside the cohort")
    return drop_at


class SessionDriver:
    """Runs one session of ``server`` with ``clients`` (id -> endpoint), round by round.

    Clients absent from ``clients`` (e.g. one that refused its configuration)
    simply never speak. ``channel`` delivers the server's messages (default:
    to the in-process ``clients``, one by one); a remote channel may leave
    ``clients`` empty and post the replies it receives. After :meth:`run`,
    ``server_seconds`` is the time spent inside server calls (decoding
    included), ``client_seconds`` the time each client spent computing,
    ``refusals`` the last refusal of each client and ``server_refusals`` every
    (round, client, reason) the server refused.
    """

    def __init__(self, server: ServerProtocol, clients: Mapping[int, ClientEndpoint], *,
                 dropouts: DropoutSchedule | None = None,
                 relay: Relay | None = None,
                 observers: Iterable[SessionObserver] = (),
                 channel: ClientChannel | None = None,
                 strict: bool = False) -> None:
        self.server = server
        self.clients = clients
        self.config = server.config
        self.rounds = rounds_of(self.config.mode)
        self.drop_at = drop_rounds(dropouts, self.config.mode, self.config.cohort)
        self.relay = relay if relay is not None else Relay()
        self.observers = list(observers)
        self.channel = channel if channel is not None else ClientChannel()
        #: refusals raise instead of being recorded (tests that step a session by hand)
        self.strict = strict
        self.server_seconds = 0.0
        self.client_seconds: dict[int, float] = {}
        self.refusals: dict[int, str] = {}
        self.server_refusals: list[tuple[Round, int, str]] = []
        self._queued: dict[Round, list[tuple[int, bytes]]] = defaultdict(list)

    @property
    def ended(self) -> bool:
        """The server finished or aborted: no round is open any more."""
        return self.server.state in _ENDED

    @property
    def open_round(self) -> Round | None:
        """The round whose client messages the server is collecting; None once it ended."""
        for r in self.rounds:
            if r.state_name == self.server.state.value:
                return r
        return None

    def listens(self, client_id: int, round: Round | None) -> bool:
        """Whether ``client_id`` still takes part in ``round`` (None: after the last round)."""
        point = self.drop_at.get(client_id)
        return point is None or (round is not None and point > round)

    def next_round(self, round: Round) -> Round | None:
        """The round after ``round`` in this session, None after the last."""
        i = self.rounds.index(round) + 1
        return self.rounds[i] if i < len(self.rounds) else None

    def run(self) -> SessionDriver:
        """Start the clients, then play every round of the mode in order."""
        self.start()
        for r in self.rounds:
            self.play_round(r)
        return self

    def start(self) -> None:
        """Round 0: every client that does not drop at advertising sends its keys."""
        first = self.rounds[0]
        self.channel.open(self, first, [u for u in self.config.cohort if self.listens(u, first)])

    def play_round(self, round: Round) -> dict[int, ServerMessage]:
        """Hand the queued messages to the server, close ``round``, send the answers down."""
        self.receive(round)
        honest = self.close(round)
        self.send_down(round, self.relay.download(round, honest))
        return honest

    def receive(self, round: Round) -> None:
        """The server receives what the relay admits of the messages queued for ``round``."""
        queued = self._queued.pop(round, [])
        for u, data in self.relay.admit(round, queued):
            self.to_server(round, u, data)

    def to_server(self, round: Round, client_id: int, data: bytes) -> bool:
        """Hand one message to the server; False if it refused it (recorded)."""
        for obs in self.observers:
            obs.on_up(round, client_id, data)
        t0 = time.perf_counter()
        try:
            self.server.receive(self._decode_up(round, client_id, data))
        except ProtocolError as exc:
            self.server_refusals.append((round, client_id, str(exc)))
            for obs in self.observers:
                obs.on_server_refusal(round, client_id, exc)
            if self.strict:
                raise
            return False
        finally:
            self.server_seconds += time.perf_counter() - t0
        return True

    def _decode_up(self, round: Round, client_id: int, data: bytes) -> ClientMessage:
        """A client message as the server takes it; an authenticated channel's must be
        of ``round`` and name the client it came from."""
        if not self.channel.authenticated:
            return decode_client(data)
        message = decode_client(data, round)
        if message.sender != client_id:
            raise ProtocolError("the message names another client as its sender")
        return message

    def close(self, round: Round) -> dict[int, ServerMessage]:
        """Close ``round`` if the server is collecting it; its answers (empty otherwise)."""
        if self.open_round is not round:
            return {}
        t0 = time.perf_counter()
        outgoing: dict[int, ServerMessage] = dict(self.server.close_round())
        self.server_seconds += time.perf_counter() - t0
        for obs in self.observers:
            obs.on_round_closed(round, outgoing)
        return outgoing

    def send_down(self, round: Round, items: Iterable[tuple[int, bytes]]) -> None:
        """Send each (client, bytes) after ``round`` through the channel; a client that
        still listens gets its message (and an in-process one answers at once)."""
        following = None if self.ended else self.next_round(round)
        self.channel.deliver(self, round, following, self._sent(round, following, items))

    def _sent(self, round: Round, following: Round | None,
              items: Iterable[tuple[int, bytes]]) -> Iterator[tuple[int, bytes]]:
        """``items`` as they are sent (observers told), less those for clients gone."""
        for u, data in items:
            for obs in self.observers:
                obs.on_down(round, u, data)
            if self.listens(u, following):
                yield u, data

    def to_client(self, round: Round, client_id: int, data: bytes) -> ClientMessage | None:
        """Hand one server message (sent after ``round``) to a client; its reply, if any.

        A refusal is recorded (and the client answers nothing), raised when ``strict``.
        """
        client = self.clients[client_id]
        t0 = time.perf_counter()
        try:
            message = decode_server(data)
            reply = client.handle(message)
        except ProtocolError as exc:
            self.bill(client_id, t0)
            self.refusals[client_id] = str(exc)
            for obs in self.observers:
                obs.on_refusal(round, client_id, exc)
            if self.strict:
                raise
            return None
        self.bill(client_id, t0)
        for obs in self.observers:
            obs.on_delivered(round, client_id, message, reply)
        return reply

    def post(self, u: int, message: ClientMessage) -> None:
        """Queue a client's message for the round it belongs to, through the relay."""
        round = Round.of_client_message(message)
        data = message.encode()
        for obs in self.observers:
            obs.on_reply(round, u, data)
        self._queued[round].extend((u, d) for d in self.relay.upload(round, u, message, data))

    def post_bytes(self, round: Round, u: int, data: bytes) -> None:
        """Queue ``data``, received from client ``u`` over a wire as its ``round`` message.

        Decoded once, by the server side (:meth:`to_server`); the relay's
        :meth:`Relay.upload` (which rewrites message objects in process) is not
        applied, :meth:`Relay.admit` still is.
        """
        for obs in self.observers:
            obs.on_reply(round, u, data)
        self._queued[round].append((u, data))

    def bill(self, u: int, t0: float) -> None:
        """Charge client ``u`` the time since ``t0`` (its computing time)."""
        self.client_seconds[u] = self.client_seconds.get(u, 0.0) + time.perf_counter() - t0
