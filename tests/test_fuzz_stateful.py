"""Property-based fuzzing of the decoders and of the two state machines (hypothesis).

(a) Decoders: random bytes, random bodies behind a valid frame, and mutated valid
    encodings go into ``messages.decode`` and ``SessionConfig.decode``; only
    SecAggError subclasses may escape, and whatever decodes is canonical (it
    re-encodes to exactly the input).

(b) Sessions: a RuleBasedStateMachine drives a real session of 10 clients (complete
    and Harary graphs, semi-honest and active mode) and interleaves honest rounds,
    single deliveries, early round closes and dropouts with injected messages:
    replays and byte-level or structural mutations of any message seen so far,
    delivered to the server or to any client. Invariants after every step:

    * every refusal is a SecAggError and leaves the receiver's whole state unchanged;
    * no client ever releases both shares of one peer;
    * a session that completes gives exactly the plaintext sum of the included
      clients, unless the server accepted a forged MaskedInput (a malicious client
      can always poison its own contribution) or a client accepted a forged server
      message (a malicious server can always spoil its own result).

Bounded: the whole file runs in well under a minute on two cores.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from secagg import vectors
from secagg.client import ClientProtocol
from secagg.config import SessionConfig
from secagg.crypto.entropy import DeterministicEntropy
from secagg.crypto.signatures import SigningKey
from secagg.errors import SecAggError
from secagg.identity import MemoryTrustStore
from secagg.messages import (
    Abort,
    ConsistencyRequest,
    KeyBroadcast,
    MaskedInput,
    Message,
    ShareKind,
    UnmaskRequest,
    UnmaskResponse,
    decode,
)
from secagg.server import ServerProtocol, ServerState
from tests.test_malformed import fingerprint

# --- corpora -----------------------------------------------------------------------------------
TASK = bytes(range(32))
N = 10
COHORT = tuple(range(1, N + 1))


def _valid_messages() -> list[bytes]:
    """Genuine encodings of every type: one session transcript and the message vectors."""
    session = vectors.FILES["session"][2]()[0]["output"]["messages"]
    out = [bytes.fromhex(m["hex"]) for m in session]
    out += [bytes.fromhex(v["output"]["encoding"]) for v in vectors.FILES["messages"][2]()]
    return out


def _valid_configs() -> list[bytes]:
    return [bytes.fromhex(v["output"]["encoding"]) for v in vectors.FILES["config"][2]()
            if v["kind"] == "config"]


VALID_MESSAGES = _valid_messages()
VALID_CONFIGS = _valid_configs()

#: byte-level edits: (operation, position, argument); positions are taken modulo the length
mutations = st.lists(
    st.one_of(
        st.tuples(st.just("flip"), st.integers(0, 4096), st.integers(0, 7)),
        st.tuples(st.just("set"), st.integers(0, 4096), st.integers(0, 255)),
        st.tuples(st.just("truncate"), st.integers(0, 4096), st.just(0)),
        st.tuples(st.just("insert"), st.integers(0, 4096), st.binary(min_size=1, max_size=8)),
        st.tuples(st.just("delete"), st.integers(0, 4096), st.integers(1, 110)),
        st.tuples(st.just("u32"), st.integers(0, 4096),
                  st.one_of(st.integers(0, 12), st.just(2**32 - 1), st.integers(0, 2**32 - 1))),
        st.tuples(st.just("sender"), st.just(4), st.integers(0, 12)),
        st.tuples(st.just("type"), st.just(3), st.integers(0, 12)),
    ),
    min_size=1,
    max_size=3,
)


def mutate(data: bytes, ops: list[tuple[str, int, Any]]) -> bytes:
    """Apply byte-level edits; every edit keeps the result a byte string."""
    buf = bytearray(data)
    for op, pos, arg in ops:
        at = pos % (len(buf) + 1)
        if op == "flip" and buf:
            buf[at % len(buf)] ^= 1 << arg
        elif op == "set" and buf:
            buf[at % len(buf)] = arg
        elif op == "truncate":
            del buf[at:]
        elif op == "insert":
            buf[at:at] = arg
        elif op == "delete":
            del buf[at:at + arg]
        elif op == "u32":
            buf[at:at + 4] = int(arg).to_bytes(4, "big")
        elif op == "sender" and len(buf) >= 8:
            buf[4:8] = int(arg).to_bytes(4, "big")
        elif op == "type" and len(buf) >= 4:
            buf[3] = arg
    return bytes(buf)


def _decode_or_typed(data: bytes) -> Message | None:
    """decode(); a SecAggError means 'refused', anything else fails the test."""
    try:
        return decode(data)
    except SecAggError:
        return None


# --- (a) decoders ------------------------------------------------------------------------------
@settings(max_examples=600, deadline=None)
@given(st.binary(max_size=400))
def test_decode_random_bytes(data: bytes) -> None:
    msg = _decode_or_typed(data)
    assert msg is None or msg.encode() == data


@settings(max_examples=600, deadline=None)
@given(st.integers(0, 12), st.binary(max_size=600))
def test_decode_random_body_behind_a_valid_frame(code: int, body: bytes) -> None:
    data = b"SA\x01" + bytes([code]) + body
    msg = _decode_or_typed(data)
    assert msg is None or msg.encode() == data


@settings(max_examples=800, deadline=None)
@given(st.sampled_from(VALID_MESSAGES), mutations)
def test_decode_mutated_valid_messages(data: bytes, ops: list[tuple[str, int, Any]]) -> None:
    mutated = mutate(data, ops)
    msg = _decode_or_typed(mutated)
    assert msg is None or msg.encode() == mutated


def _config_or_typed(data: bytes) -> SessionConfig | None:
    try:
        return SessionConfig.decode(data)
    except SecAggError:
        return None


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_config_decode_random_bytes(data: bytes) -> None:
    cfg = _config_or_typed(data)
    assert cfg is None or cfg.encode() == data


@settings(max_examples=800, deadline=None)
@given(st.sampled_from(VALID_CONFIGS), mutations)
def test_config_decode_mutated(data: bytes, ops: list[tuple[str, int, Any]]) -> None:
    mutated = mutate(data, ops)
    cfg = _config_or_typed(mutated)
    if cfg is not None:
        assert cfg.encode() == mutated
        assert len(cfg.session_id) == 32
        cfg.neighbours(cfg.cohort[0])  # a decoded config is usable


# --- (b) the state machines --------------------------------------------------------------------
def _configs() -> dict[str, SessionConfig]:
    common: dict[str, Any] = {"min_cohort": N}
    return {
        "complete-semi-honest": SessionConfig.create(COHORT, 4, 2**16, **common),
        "harary-semi-honest": SessionConfig.create(
            COHORT, 4, 1_000_003, graph="harary", degree=4, threshold=3, dropout_rate=0.1,
            corruption_rate=0.0, **common),
        "complete-active": SessionConfig.create(COHORT, 4, 2**32, mode="active", task_hash=TASK,
                                                **common),
        "harary-active": SessionConfig.create(
            COHORT, 3, 2**64, graph="harary", degree=6, threshold=4, dropout_rate=0.1,
            corruption_rate=0.05, mode="active", task_hash=TASK, **common),
    }


CONFIGS = _configs()
IDENTITIES = {u: SigningKey.generate(DeterministicEntropy(b"fuzz identity %d" % u))
              for u in COHORT}
TRUST = MemoryTrustStore({u: k.verify_key for u, k in IDENTITIES.items()})
COLLECTING = (ServerState.COLLECT_KEYS, ServerState.COLLECT_SHARES, ServerState.COLLECT_MASKED,
              ServerState.COLLECT_CONSISTENCY, ServerState.COLLECT_UNMASK)


def _inputs(cfg: SessionConfig, seed: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    dtype = np.uint32 if cfg.modulus <= 2**32 else np.uint64
    high = min(cfg.modulus, 2**63)
    return {u: rng.integers(0, high, cfg.dim, dtype=np.uint64).astype(dtype) for u in cfg.cohort}


def _plain_sum(cfg: SessionConfig, inputs: dict[int, np.ndarray],
               ids: tuple[int, ...]) -> list[int]:
    return [sum(int(inputs[u][i]) for u in ids) % cfg.modulus for i in range(cfg.dim)]


def _structural(msg: Message, choice: int, index: int) -> Message | None:
    """A semantic edit that byte flips rarely find: drop, repeat or move one list entry."""
    for name in ("entries", "ciphertexts", "shares", "signatures", "alive", "dropped"):
        items = getattr(msg, name, None)
        if not items:
            continue
        items = list(items)
        i = index % len(items)
        if choice == 0:
            del items[i]
        elif choice == 1:
            items.insert(i, items[i])
        elif choice == 2 and isinstance(msg, UnmaskRequest | ConsistencyRequest) \
                and name == "alive":
            moved = items.pop(i)
            dropped = tuple(sorted((*msg.dropped, moved)))
            return dataclasses.replace(msg, alive=tuple(items), dropped=dropped)
        elif choice == 3 and len(items) > 1:
            j = (i + 1) % len(items)
            items[i], items[j] = items[j], items[i]
        else:
            continue
        return dataclasses.replace(msg, **{name: tuple(items)})  # type: ignore[type-var]
    return None


edits = st.one_of(
    st.tuples(st.just("replay"), st.just([]), st.just((0, 0))),
    st.tuples(st.just("bytes"), mutations, st.just((0, 0))),
    st.tuples(st.just("structural"), st.just([]), st.tuples(st.integers(0, 3),
                                                             st.integers(0, 20))),
)


class SessionMachine(RuleBasedStateMachine):
    """One session, honest traffic interleaved with hostile traffic."""

    def __init__(self) -> None:
        super().__init__()
        self.server: ServerProtocol
        self.clients: dict[int, ClientProtocol] = {}

    @initialize(kind=st.sampled_from(sorted(CONFIGS)), seed=st.integers(0, 2**16),
                head_start=st.integers(0, 4))
    def setup(self, kind: str, seed: int, head_start: int = 0, *,
              foreign: bool = True) -> None:
        """A fresh session; ``head_start`` honest rounds are run first, so that hostile
        traffic meets every round, not mostly the first one."""
        cfg = CONFIGS[kind]
        self.config = cfg
        self.active = cfg.mode.value == "active"
        self.inputs = _inputs(cfg, seed)
        self.server = ServerProtocol(cfg, threads=1, trust_store=TRUST if self.active else None)
        opts: dict[str, Any] = {}
        if self.active:
            opts = {"trust_store": TRUST, "expected_task_hash": TASK, "min_cohort": N}
        self.clients = {
            u: ClientProtocol(cfg, u, self.inputs[u],
                              entropy=DeterministicEntropy(b"fuzz %d client %d" % (seed, u)),
                              identity=IDENTITIES[u] if self.active else None, **opts)
            for u in cfg.cohort
        }
        self.gone: set[int] = set()
        self.tainted = False
        self.genuine: set[bytes] = set()  # every message an honest party produced
        # every message on the wire so far, and those of another session of the same kind:
        # the sources of replays and mutations
        self.seen: list[bytes] = list(_foreign_transcript(kind)) if foreign else []
        self.to_server: dict[int, bytes] = {}
        self.to_client: dict[int, bytes] = {}
        self.released: dict[int, dict[int, set[ShareKind]]] = {u: {} for u in cfg.cohort}
        for u, client in sorted(self.clients.items()):
            self._queue_reply(u, client.start())
        for _ in range(head_start):
            self.honest_round(frozenset(), deadline=False)

    # -- plumbing -----------------------------------------------------------------------------
    def _queue_reply(self, u: int, reply: Message | None) -> None:
        if reply is None or u in self.gone:
            return
        data = reply.encode()
        self.genuine.add(data)
        self.seen.append(data)
        self.to_server[u] = data

    def _server_gets(self, data: bytes, *, forged: bool) -> None:
        msg = _decode_or_typed(data)
        if msg is None:
            assert forged, "a genuine message failed to decode"
            return
        before = fingerprint(self.server)
        try:
            self.server.receive(msg)  # type: ignore[arg-type]
        except SecAggError:
            assert fingerprint(self.server) == before, "a refused message changed the server"
            return
        if data not in self.genuine and isinstance(msg, MaskedInput):
            self.tainted = True  # poisoning by a client: accepted by design (spec §12.3)
        for u, pending in list(self.to_server.items()):
            if pending == data:  # a replay that arrived first counts as the delivery
                del self.to_server[u]

    def _client_gets(self, u: int, data: bytes, *, forged: bool) -> None:
        msg = _decode_or_typed(data)
        if msg is None:
            assert forged, "a genuine message failed to decode"
            return
        client = self.clients[u]
        before = fingerprint(client)
        try:
            reply = client.handle(msg)  # type: ignore[arg-type]
        except SecAggError:
            assert fingerprint(client) == before, "a refused message changed the client"
            return
        if data != self.to_client.get(u) and not isinstance(msg, Abort):
            self.tainted = True  # a forged server message accepted: only the server loses
        if self.to_client.get(u) == data:
            del self.to_client[u]
        self._record_release(u, reply)
        self._queue_reply(u, reply)

    def _record_release(self, u: int, reply: Message | None) -> None:
        if isinstance(reply, UnmaskResponse):
            for owner, kind, _ in reply.shares:
                self.released[u].setdefault(owner, set()).add(kind)
        for owner, kind in self.clients[u].released.items():
            self.released[u].setdefault(owner, set()).add(kind)

    def _close(self) -> None:
        out = self.server.close_round()
        self.to_client = {}
        for u, msg in sorted(out.items()):
            data = msg.encode()
            self.genuine.add(data)
            self.seen.append(data)
            if u not in self.gone:
                self.to_client[u] = data
        self._check_result()

    def _check_result(self) -> None:
        result = self.server.result
        if self.server.state is not ServerState.DONE or result is None or self.tainted:
            return
        assert [int(x) for x in result.sum.tolist()] == _plain_sum(
            self.config, self.inputs, result.included), "completed with a wrong sum"

    # -- honest traffic -----------------------------------------------------------------------
    @rule(drop=st.one_of(st.just(frozenset()), st.just(frozenset()),
                         st.frozensets(st.sampled_from(COHORT), min_size=1, max_size=2)),
          deadline=st.one_of(st.just(False), st.just(False), st.just(False), st.just(True)))
    def honest_round(self, drop: frozenset[int], deadline: bool) -> None:
        """Every pending message delivered, every client answers, the round is closed.

        ``drop``: clients that fall silent from now on. ``deadline``: the driver's
        deadline passes before the clients' answers arrive (all of them are late).
        Once the session is over, pending messages are still delivered (and refused).
        """
        self.gone |= drop
        for u in sorted(self.to_client):
            if u not in self.gone:
                self._client_gets(u, self.to_client[u], forged=False)
        if deadline:
            self.to_server.clear()
        for u in sorted(self.to_server):
            if u not in self.gone and u in self.to_server:
                self._server_gets(self.to_server.pop(u), forged=False)
        if self.server.state in COLLECTING:
            self._close()

    @precondition(lambda self: bool(self.to_server) or bool(self.to_client))
    @rule(data=st.data())
    def deliver_one(self, data: st.DataObject) -> None:
        """One genuine message, in any order: to the server or to one client."""
        options = [("server", u) for u in sorted(self.to_server)]
        options += [("client", u) for u in sorted(self.to_client)]
        side, u = data.draw(st.sampled_from(options))
        if side == "server":
            self._server_gets(self.to_server.pop(u), forged=False)
        else:
            self._client_gets(u, self.to_client[u], forged=False)

    # -- hostile traffic ----------------------------------------------------------------------
    def _forge(self, data: st.DataObject) -> bytes:
        source = data.draw(st.sampled_from(self.seen))
        how, ops, (choice, index) = data.draw(edits)
        if how == "bytes":
            return mutate(source, ops)
        if how == "structural":
            msg = _decode_or_typed(source)
            edited = None if msg is None else _structural(msg, choice, index)
            if edited is not None:
                return edited.encode()
        return source

    @precondition(lambda self: bool(self.seen))
    @rule(data=st.data())
    def inject_to_server(self, data: st.DataObject) -> None:
        self._server_gets(self._forge(data), forged=True)

    @precondition(lambda self: bool(self.seen))
    @rule(data=st.data(), receiver=st.sampled_from(COHORT))
    def inject_to_client(self, data: st.DataObject, receiver: int) -> None:
        self._client_gets(receiver, self._forge(data), forged=True)

    # -- invariants ---------------------------------------------------------------------------
    @invariant()
    def never_both_shares_of_a_peer(self) -> None:
        for u, client in self.clients.items():
            for owner, kind in client.released.items():
                self.released[u].setdefault(owner, set()).add(kind)
            for owner, kinds in self.released[u].items():
                assert len(kinds) == 1, f"client {u} released both shares of {owner}"

    @invariant()
    def result_only_when_done(self) -> None:
        if self.clients:
            assert (self.server.result is not None) == (self.server.state is ServerState.DONE)
            if self.server.state is ServerState.ABORTED:
                assert self.server.accumulator_count == 0 and self.server.abort_reason

    def teardown(self) -> None:
        if self.clients:
            self._check_result()
            if currently_in_test_context():  # shown by --hypothesis-show-statistics
                event(f"{self.config.mode.value}/{self.config.graph.value}: server "
                      f"{self.server.state.value}{' (tainted)' if self.tainted else ''}")


@functools.cache
def _foreign_transcript(kind: str) -> tuple[bytes, ...]:
    """Every message of another complete, honest session of the same kind (other keys and
    inputs): replaying them tests cross-session confusion, not just in-session replays."""
    machine = SessionMachine()
    machine.setup(kind, seed=2**17, head_start=0, foreign=False)
    while machine.server.state in COLLECTING:
        machine.honest_round(frozenset(), deadline=False)
    assert machine.server.state is ServerState.DONE
    return tuple(machine.seen)


SessionMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestSessionMachine = SessionMachine.TestCase


def test_honest_machine_completes() -> None:
    """Guard against a vacuous fuzz: with honest rounds only, every kind of session finishes
    with the exact sum; on a Harary graph, a KeyBroadcast meant for another client is
    refused without a change (on the complete graph every client gets the same one)."""
    for kind in sorted(CONFIGS):
        machine = SessionMachine()
        machine.setup(kind, 1)
        machine.honest_round(frozenset(), deadline=False)  # the KeyBroadcasts are now pending
        foreign_kb = machine.to_client[1]
        assert isinstance(decode(foreign_kb), KeyBroadcast)
        if kind.startswith("harary"):
            assert foreign_kb != machine.to_client[N]
            before = fingerprint(machine.clients[N])
            machine._client_gets(N, foreign_kb, forged=True)
            assert fingerprint(machine.clients[N]) == before and not machine.tainted
        rounds = 1
        while machine.server.state in COLLECTING:
            machine.honest_round(frozenset(), deadline=False)
            rounds += 1
        assert machine.server.state is ServerState.DONE and not machine.tainted
        assert rounds == (5 if machine.active else 4)
        assert machine.server.result is not None
        assert machine.server.result.included == COHORT
        machine.teardown()
