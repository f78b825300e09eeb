"""Active (malicious-server) mode, spec §15: identities and trust stores, signed round-0
keys, the ConsistencyCheck round, active thresholds and the client-side policy.

The honest path is checked end to end across the dropout matrix against an
independent plaintext sum and an oracle for when the session can finish. Every
attack is played by the test acting as a malicious server: it takes genuine
messages from a real session, tampers with them, and checks that the client
refuses (ProtocolError), stays where it was and releases no share; where the
client can still be fed the genuine message, the session must then finish exactly.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secagg import cli, measure
from secagg import graph as graphs
from secagg.client import ClientProtocol, ClientState
from secagg.config import SessionConfig
from secagg.crypto.agreement import X25519PrivateKey
from secagg.crypto.signatures import SigningKey
from secagg.errors import ConfigError, MessageDecodeError, ProtocolError
from secagg.identity import (
    CallbackTrustStore,
    DirectoryTrustStore,
    FileTrustStore,
    MemoryTrustStore,
    advertise_statement,
    generate_identities,
    view_statement,
)
from secagg.messages import (
    MAX_ENTRIES,
    ActiveMessageType,
    AdvertiseKeys,
    ConsistencyRequest,
    ConsistencySignature,
    KeyBroadcast,
    KeyEntry,
    MessageType,
    UnmaskRequest,
    decode,
)
from secagg.rounds import ACTIVE_ROUNDS, Round
from secagg.server import ServerProtocol, ServerState
from secagg.sim import simulate
from tests.conftest import (
    assert_exact_sum,
    client_snapshot,
    cohort,
    plaintext_sum,
    random_inputs,
    sums_equal,
)

TASK = bytes(range(32))
ME = 3


# --- helpers ----------------------------------------------------------------------------------
def active_config(graph: str, n: int, rate: float = 0.1, *, dim: int = 8,
                  modulus: int = 1 << 32, min_cohort: int = 10) -> SessionConfig:
    """Active-mode config from the library's defaults; for a Harary graph the
    semi-malicious finder, or (tiny n) the smallest (k, t) its own check accepts."""
    ids = cohort(n)
    common = {"mode": "active", "task_hash": TASK, "min_cohort": min(n, min_cohort)}
    if graph == "complete":
        return SessionConfig.create(ids, dim, modulus, **common)
    if graph == "complete-min-t":
        # the smallest active threshold, t = floor((n + corrupt)/2) + 1, instead of
        # the default floor(2n/3) + 1: tolerates 30% dropout at these sizes
        corrupt = -(-n * 5 // 100)  # the declared corrupt count: ceil(5 % of n), secagg.rates
        return SessionConfig.create(ids, dim, modulus, threshold=(n + corrupt) // 2 + 1,
                                    **common)
    try:
        return SessionConfig.create(ids, dim, modulus, graph="harary", dropout_rate=rate,
                                    **common)
    except ConfigError:
        pass
    for k in range(2, n, 2):
        for t in range(2, k + 1):
            try:
                graphs.check_harary_params(n, k, t, rate, 0.05,
                                           threat=graphs.ThreatModel.SEMI_MALICIOUS)
            except ConfigError:
                continue
            return SessionConfig.create(ids, dim, modulus, graph="harary", dropout_rate=rate,
                                        degree=k, threshold=t, **common)
    raise ConfigError(f"no active Harary parameters for n={n}")


class ActiveSession:
    """A real server and real active clients, driven round by round in memory."""

    def __init__(self, config: SessionConfig, seed: int = 0, *,
                 client_store: Mapping[int, object] | None = None) -> None:
        self.config = config
        self.inputs = random_inputs(config, seed)
        self.keys, self.store = generate_identities(config.cohort)
        self.server = ServerProtocol(config, threads=1, trust_store=self.store)
        stores = dict(client_store or {})
        self.clients = {
            u: ClientProtocol(config, u, self.inputs[u], identity=self.keys[u],
                              trust_store=stores.get(u, self.store),  # type: ignore[arg-type]
                              expected_task_hash=config.task_hash,
                              min_cohort=min(config.n, 10))
            for u in config.cohort
        }

    def advertise(self, drop: Iterable[int] = ()) -> dict[int, object]:
        drop = set(drop)
        return {u: c.start() for u, c in self.clients.items() if u not in drop}

    def close(self, messages: Mapping[int, object]) -> dict:
        for _, msg in sorted(messages.items()):
            self.server.receive(msg)  # type: ignore[arg-type]
        return self.server.close_round()

    def respond(self, server_messages: Mapping[int, object], drop: Iterable[int] = (),
                done: Mapping[int, object] | None = None) -> dict[int, object]:
        """Each client answers its message; ``done`` holds replies the test already got."""
        drop, done = set(drop), dict(done or {})
        out = {}
        for u, msg in sorted(server_messages.items()):
            if u in drop:
                continue
            reply = done[u] if u in done else self.clients[u].handle(msg)
            if reply is not None:
                out[u] = reply
        return out

    def to_consistency(self, drops: Mapping[str, Iterable[int]] | None = None) -> dict:
        """Rounds 0-2; returns the ConsistencyRequests to sign."""
        d = drops or {}
        kb = self.close(self.advertise(d.get("advertise", ())))
        bundles = self.close(self.respond(kb, d.get("share-keys", ())))
        return self.close(self.respond(bundles, d.get("masked-input", ())))

    def to_signed_unmask(self, drops: Mapping[str, Iterable[int]] | None = None) -> dict:
        """Rounds 0-3; returns the signed ConsistencyRequests (the unmask requests)."""
        views = self.to_consistency(drops)
        return self.close(self.respond(views, (drops or {}).get("consistency", ())))

    def assert_exact(self) -> None:
        assert_exact_sum(self.server, self.inputs)


def refuses(client: ClientProtocol, message: object, match: str) -> None:
    before = client_snapshot(client)
    with pytest.raises(ProtocolError, match=match):
        client.handle(message)  # type: ignore[arg-type]
    assert client_snapshot(client) == before
    assert client.released == {}


def resign(key: SigningKey, cfg: SessionConfig, signer: int, alive: Iterable[int],
           dropped: Iterable[int]) -> bytes:
    return key.sign(view_statement(cfg.session_id, signer, sorted(alive), sorted(dropped)))


@pytest.fixture(scope="module")
def complete10() -> SessionConfig:
    cfg = active_config("complete", 10)
    assert cfg.threshold == 7  # floor(2n/3) + 1
    return cfg


@pytest.fixture(scope="module")
def harary20() -> SessionConfig:
    cfg = active_config("harary", 20, 0.1)
    assert cfg.degree < cfg.n - 1
    return cfg


# --- the dropout matrix -------------------------------------------------------------------------
def expected_included(config: SessionConfig, drop_at: Mapping[int, Round]) -> frozenset | None:
    """Oracle from the protocol's rules: the clients the sum must contain, or None when
    the session has to abort. Active mode adds one condition: only a client with t
    signing neighbours is asked to unmask, and the asked clients (then those that
    answer) must hold t shares of every secret the sum needs."""
    t = config.threshold
    nbrs = {u: frozenset(config.neighbours(u)) for u in config.cohort}

    def after(point: Round, prev: set[int]) -> set[int]:
        return {u for u in prev if drop_at.get(u) is not point}

    def prune(members: set[int]) -> set[int]:
        while True:
            weak = {u for u in members if len(nbrs[u] & members) < t}
            if not weak:
                return members
            members = members - weak

    u1 = prune(after(Round.ADVERTISE_KEYS, set(config.cohort)))
    if len(u1) < t + 1:
        return None
    u2 = prune(after(Round.SHARE_KEYS, u1))
    if len(u2) < t + 1:
        return None
    u3 = after(Round.MASKED_INPUT, u2)
    signers = after(Round.CONSISTENCY_CHECK, u3)
    asked = {u for u in signers if len(nbrs[u] & signers) >= t}
    answered = after(Round.UNMASKING, asked)
    if len(u3) < t:
        return None
    for holders in (u3, asked, answered):
        if any(len(nbrs[w] & holders) < t for w in u3):
            return None
        if any(nbrs[v] & u3 and len(nbrs[v] & holders) < t for v in u2 - u3):
            return None
    return frozenset(u3)


def _matrix() -> list:
    cases = []
    for graph in ("complete", "complete-min-t", "harary"):
        for n in (10, 20):
            for rate in (0.0, 0.1, 0.3):
                for point in ACTIVE_ROUNDS[:1] if rate == 0 else ACTIVE_ROUNDS:
                    cases.append(pytest.param(graph, n, rate, point,
                                              id=f"{graph}-n{n}-r{rate}-{point.label}"))
    return cases


@pytest.mark.parametrize(("graph", "n", "rate", "point"), _matrix())
def test_active_dropout_matrix(graph: str, n: int, rate: float, point: Round) -> None:
    config = active_config(graph, n, rate)
    inputs = random_inputs(config, n)
    rng = np.random.default_rng([n, int(rate * 10), ACTIVE_ROUNDS.index(point)])
    dropped = rng.choice(config.cohort, size=round(rate * n), replace=False).tolist()
    report = simulate(config, inputs, {point: set(dropped)}, threads=1)
    assert report.mode == "active"
    assert report.client_refusals == {}, "an honest client refused an honest server"
    want = expected_included(config, dict.fromkeys(dropped, point))
    if want is None:
        assert report.aborted and report.abort_reason and report.sum is None
        return
    assert not report.aborted, report.abort_reason
    assert set(report.included_ids) == want
    assert report.sum is not None
    assert sums_equal(report.sum, plaintext_sum(inputs, sorted(want), config.modulus,
                                                config.dim))
    assert report.exact


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=st.sampled_from(["complete", "complete-min-t", "harary"]),
       n=st.integers(10, 16), rate=st.sampled_from([0.1, 0.3]),
       points=st.lists(st.sampled_from([None, None, None, None, *ACTIVE_ROUNDS]),
                       min_size=16, max_size=16),
       seed=st.integers(0, 2**32 - 1))
def test_active_random_schedules_several_drop_points(
    graph: str, n: int, rate: float, points: list[Round | None], seed: int
) -> None:
    """Drops at several rounds at once, the consistency round included."""
    config = active_config(graph, n, rate)
    drop_at = {u: p for u, p in zip(config.cohort, points, strict=False) if p is not None}
    schedule: dict[Round, set[int]] = {}
    for u, p in drop_at.items():
        schedule.setdefault(p, set()).add(u)
    inputs = random_inputs(config, seed)
    report = simulate(config, inputs, schedule, threads=1)
    assert report.client_refusals == {}
    want = expected_included(config, drop_at)
    assert report.aborted == (want is None), report.abort_reason
    if want is not None:
        assert set(report.included_ids) == want and report.sum is not None
        assert sums_equal(report.sum, plaintext_sum(inputs, sorted(want), config.modulus,
                                                    config.dim))


def test_active_mode_with_memory_replay_and_threads() -> None:
    """The default measurement path replays the transcript into a second server
    (which must verify the same signatures) and unmasks on a thread pool."""
    config = active_config("harary", 20, 0.1, dim=64)
    inputs = random_inputs(config, 4)
    report = measure.simulate(config, inputs,
                              {Round.MASKED_INPUT: {4}, Round.CONSISTENCY_CHECK: {9}})
    assert report.exact and report.dropped_ids == [4] and report.peak_server_mb > 0
    assert set(report.bytes_up_per_round) == {p.label for p in ACTIVE_ROUNDS}


def test_semi_honest_consistency_drop_is_an_unmask_drop() -> None:
    config = SessionConfig.create(cohort(10), 8, 1 << 32)
    inputs = random_inputs(config, 1)
    a = simulate(config, inputs, {Round.CONSISTENCY_CHECK: {2}})
    assert a.exact and a.mode == "semi-honest" and 2 in a.included_ids
    assert set(a.bytes_up_per_round) == {"advertise", "share-keys", "masked-input", "unmask"}


def test_semi_honest_wire_has_no_active_messages() -> None:
    """Semi-honest transcripts keep the v1 message set and empty signature fields."""
    config = SessionConfig.create(cohort(10), 8, 1 << 32)
    server = ServerProtocol(config, threads=1)
    inputs = random_inputs(config, 2)
    clients = {u: ClientProtocol(config, u, inputs[u]) for u in config.cohort}
    msgs: list[object] = [c.start() for c in clients.values()]
    assert all(m.signature == b"" for m in msgs)  # type: ignore[attr-defined]
    while server.state not in (ServerState.DONE, ServerState.ABORTED):
        for m in msgs:
            server.receive(decode(m.encode()))  # type: ignore[attr-defined, arg-type]
        out = server.close_round()
        for m in out.values():
            assert m.encode()[3] in {int(c) for c in MessageType}
        msgs = [clients[u].handle(decode(m.encode())) for u, m in out.items()]  # type: ignore
    assert server.state is ServerState.DONE


# --- thresholds ---------------------------------------------------------------------------------
def test_active_defaults_and_session_binding() -> None:
    ids = cohort(30)
    active = SessionConfig.create(ids, 8, 1 << 32, mode="active")
    semi = SessionConfig.create(ids, 8, 1 << 32)
    assert active.threshold == 2 * 30 // 3 + 1 and semi.threshold == 16
    assert SessionConfig.decode(active.encode()) == active
    assert active.session_id != dataclasses.replace(active, mode=semi.mode,
                                                    threshold=21).session_id
    h = SessionConfig.create(cohort(100), 8, 1 << 32, graph="harary", mode="active")
    found = graphs.find_harary_params(100, 0.1, 0.05, threat=graphs.ThreatModel.SEMI_MALICIOUS)
    assert (h.degree, h.threshold) == (found.k, found.t)


def test_active_complete_threshold_refused_with_reason() -> None:
    ids = cohort(20)
    # 4 declared corrupt clients: t = 12 is a fine semi-honest threshold ...
    SessionConfig.create(ids, 8, 1 << 32, threshold=12, corruption_rate=0.2)
    # ... but not above (n + corrupt)/2 = 12 for a malicious server
    with pytest.raises(ConfigError, match=r"\(n \+ corrupt\)/2"):
        SessionConfig.create(ids, 8, 1 << 32, threshold=12, corruption_rate=0.2, mode="active")
    SessionConfig.create(ids, 8, 1 << 32, threshold=13, corruption_rate=0.2, mode="active")
    with pytest.raises(ConfigError, match="unknown mode"):
        SessionConfig.create(ids, 8, 1 << 32, mode="paranoid")


def test_active_harary_threshold_refused_with_reason() -> None:
    semi = SessionConfig.create(cohort(100), 8, 1 << 32, graph="harary")
    with pytest.raises(ConfigError, match="semi-malicious"):
        SessionConfig.create(cohort(100), 8, 1 << 32, graph="harary", mode="active",
                             degree=semi.degree, threshold=semi.threshold)
    with pytest.raises(ConfigError, match="semi-malicious"):
        dataclasses.replace(semi, mode=active_config("complete", 10).mode)


# --- client-side policy -------------------------------------------------------------------------
def _client(cfg: SessionConfig, u: int = 1, **kw: object) -> ClientProtocol:
    keys, store = generate_identities(cfg.cohort)
    opts: dict[str, object] = {"identity": keys[u], "trust_store": store,
                               "expected_task_hash": cfg.task_hash}
    opts.update(kw)
    vec = np.zeros(cfg.dim, dtype=np.uint32)
    return ClientProtocol(cfg, u, vec, **opts)  # type: ignore[arg-type]


def test_model_hash_mismatch_refused(complete10: SessionConfig) -> None:
    with pytest.raises(ConfigError, match="task_hash differs"):
        _client(complete10, expected_task_hash=bytes(32))
    with pytest.raises(ConfigError, match="expected_task_hash"):
        _client(complete10, expected_task_hash=None)
    with pytest.raises(ConfigError, match="32 bytes"):
        _client(complete10, expected_task_hash=TASK[:31])
    # semi-honest clients may opt in to the same check
    semi = SessionConfig.create(cohort(10), 8, 1 << 32, task_hash=TASK)
    vec = np.zeros(8, dtype=np.uint32)
    with pytest.raises(ConfigError, match="task_hash differs"):
        ClientProtocol(semi, 1, vec, expected_task_hash=bytes(32))
    ClientProtocol(semi, 1, vec, expected_task_hash=TASK)


def test_different_models_cannot_share_a_session(complete10: SessionConfig) -> None:
    """A server that gives client 1 another model must also give it another config
    (or client 1 refuses it); the other task hash changes the session id, so the
    signature on client 1's keys does not verify in the real session."""
    other = dataclasses.replace(complete10, task_hash=bytes(32))
    s = ActiveSession(complete10)
    split = ClientProtocol(other, 1, s.inputs[1], identity=s.keys[1], trust_store=s.store,
                           expected_task_hash=bytes(32))
    with pytest.raises(ProtocolError, match="valid signature"):
        s.server.receive(split.start())


def test_client_side_min_cohort() -> None:
    small = active_config("complete", 9, min_cohort=5)
    with pytest.raises(ConfigError, match="below this client's minimum of 10"):
        _client(small)
    _client(small, min_cohort=5)
    with pytest.raises(ConfigError, match="min_cohort"):
        _client(small, min_cohort=2)
    # semi-honest: the default changes nothing, an explicit floor is enforced
    semi = SessionConfig.create(cohort(9), 8, 1 << 32, min_cohort=5)
    ClientProtocol(semi, 1, np.zeros(8, dtype=np.uint32))
    with pytest.raises(ConfigError, match="minimum of 10"):
        ClientProtocol(semi, 1, np.zeros(8, dtype=np.uint32), min_cohort=10)


def test_identity_requirements_and_downgrade(complete10: SessionConfig) -> None:
    with pytest.raises(ConfigError, match="identity key and a trust store"):
        _client(complete10, identity=None)
    with pytest.raises(ConfigError, match="does not hold this client's identity"):
        _client(complete10, identity=SigningKey.generate())
    with pytest.raises(ConfigError, match="SigningKey"):
        _client(complete10, identity=b"\x01" * 32)
    semi = SessionConfig.create(cohort(10), 8, 1 << 32)
    keys, store = generate_identities(semi.cohort)
    with pytest.raises(ConfigError, match="only active-mode sessions"):
        ClientProtocol(semi, 1, np.zeros(8, dtype=np.uint32), identity=keys[1],
                       trust_store=store)
    with pytest.raises(ConfigError, match="needs a trust store"):
        ServerProtocol(complete10)
    with pytest.raises(ConfigError, match="only used in active mode"):
        ServerProtocol(semi, trust_store=store)


# --- round 0: signed keys -----------------------------------------------------------------------
def _swap(kb: KeyBroadcast, cid: int, **changes: bytes) -> KeyBroadcast:
    return KeyBroadcast(tuple(dataclasses.replace(e, **changes) if e.client_id == cid else e
                              for e in kb.entries))


def _entry(kb: KeyBroadcast, cid: int) -> KeyEntry:
    return next(e for e in kb.entries if e.client_id == cid)


def test_key_substitution_detected(complete10: SessionConfig) -> None:
    s = ActiveSession(complete10, seed=1)
    kb = s.close(s.advertise())
    c = s.clients[ME]
    mitm = X25519PrivateKey.generate().public_key
    server_key = SigningKey.generate()
    e5 = _entry(kb[ME], 5)
    forged = server_key.sign(advertise_statement(complete10.session_id, 5, mitm, e5.mask_pk))
    for bad in (
        _swap(kb[ME], 5, enc_pk=mitm),  # the server's key, 5's signature
        _swap(kb[ME], 5, mask_pk=mitm),
        _swap(kb[ME], 5, enc_pk=mitm, signature=forged),  # signed by the server
        _swap(kb[ME], 5, signature=b""),  # signature stripped
        _swap(kb[ME], 5, signature=_entry(kb[ME], 6).signature),  # another client's
    ):
        refuses(c, bad, "valid signature")
    refuses(c, _swap(kb[ME], ME, signature=_entry(kb[ME], 6).signature), "did not make")
    # and with the genuine broadcast the session completes exactly
    bundles = s.close(s.respond(kb))
    s.close(s.respond(s.close(s.respond(s.close(s.respond(bundles))))))
    s.assert_exact()


def test_unknown_and_duplicate_identities_refused_by_clients(complete10: SessionConfig) -> None:
    s = ActiveSession(complete10, seed=2)
    # ME's own store: client 7 unknown
    partial = CallbackTrustStore(lambda u: None if u == 7 else s.store.verify_key(u))
    s.clients[ME]._trust = partial
    kb = s.close(s.advertise())
    refuses(s.clients[ME], kb[ME], "no identity")
    # a Sybil: one key holder registered as clients 5 and 6, re-signing 6's keys as 5
    sybil = CallbackTrustStore(lambda u: s.store.verify_key(5 if u == 6 else u))
    s.clients[ME]._trust = sybil
    e6 = _entry(kb[ME], 6)
    as5 = s.keys[5].sign(advertise_statement(complete10.session_id, 6, e6.enc_pk, e6.mask_pk))
    refuses(s.clients[ME], _swap(kb[ME], 6, signature=as5), "identity key of another client")


def test_server_refuses_bad_round0_signatures(complete10: SessionConfig) -> None:
    s = ActiveSession(complete10, seed=3)
    adverts = s.advertise()
    srv = s.server
    a5 = adverts[5]
    assert isinstance(a5, AdvertiseKeys)
    for bad in (dataclasses.replace(a5, signature=b""),
                dataclasses.replace(a5, signature=adverts[6].signature),  # type: ignore
                dataclasses.replace(a5, mask_pk=X25519PrivateKey.generate().public_key)):
        before = (srv.state, srv.expected())
        with pytest.raises(ProtocolError, match="valid signature"):
            srv.receive(bad)
        assert (srv.state, srv.expected()) == before
    srv.receive(a5)
    # unknown identity, and one identity used for two ids
    stranger = SessionConfig.create([*cohort(10), 11], 8, 1 << 32, mode="active", task_hash=TASK)
    with pytest.raises(ProtocolError, match="no identity"):
        other = ServerProtocol(stranger, trust_store=s.store)
        k = SigningKey.generate()
        x = X25519PrivateKey.generate().public_key, X25519PrivateKey.generate().public_key
        other.receive(AdvertiseKeys(11, *x, k.sign(advertise_statement(stranger.session_id,
                                                                       11, *x))))
    sybil = CallbackTrustStore(lambda u: s.store.verify_key(5 if u == 6 else u))
    srv2 = ServerProtocol(complete10, trust_store=sybil)
    srv2.receive(a5)
    x = X25519PrivateKey.generate().public_key, X25519PrivateKey.generate().public_key
    with pytest.raises(ProtocolError, match="identity key of client 5"):
        srv2.receive(AdvertiseKeys(6, *x, s.keys[5].sign(
            advertise_statement(complete10.session_id, 6, *x))))


# --- round 3 and 4: ConsistencyCheck ------------------------------------------------------------
def test_consistency_round_happy_path_messages(complete10: SessionConfig) -> None:
    s = ActiveSession(complete10, seed=4)
    views = s.to_consistency({"masked-input": [10]})
    assert all(isinstance(v, ConsistencyRequest) and not v.signatures for v in views.values())
    assert views[ME].alive == tuple(range(1, 10)) and views[ME].dropped == (10,)
    sigs = s.respond(views)
    assert all(isinstance(m, ConsistencySignature) for m in sigs.values())
    assert s.clients[ME].state is ClientState.UNMASKING and s.clients[ME].released == {}
    signed = s.close(sigs)
    assert s.server.state is ServerState.COLLECT_UNMASK
    msg = signed[ME]
    assert isinstance(msg, ConsistencyRequest) and msg.alive == views[ME].alive
    assert [v for v, _ in msg.signatures] == [u for u in range(1, 10) if u != ME]
    s.close(s.respond(signed))
    s.assert_exact()
    assert s.server.result is not None and s.server.result.included == tuple(range(1, 10))


def _signed(s: ActiveSession, drops: Mapping[str, Iterable[int]] | None = None) -> dict:
    return s.to_signed_unmask(drops)


RELAY_TAMPERS = {
    "forged-signature": (lambda m, s: dataclasses.replace(m, signatures=tuple(
        (v, bytes(64) if v == 5 else sig) for v, sig in m.signatures)), "does not verify"),
    "signature-of-another-signer": (lambda m, s: dataclasses.replace(m, signatures=tuple(
        (v, dict(m.signatures)[6] if v == 5 else sig) for v, sig in m.signatures)),
        "does not verify"),
    "missing-signatures": (lambda m, s: dataclasses.replace(
        m, signatures=m.signatures[: s.config.threshold - 1]), "fewer than the threshold"),
    "no-signatures": (lambda m, s: dataclasses.replace(m, signatures=()), "threshold"),
    "duplicate-signer": (lambda m, s: dataclasses.replace(
        m, signatures=(m.signatures[0], *m.signatures)), "two consistency signatures"),
    "own-signature-counted": (lambda m, s: dataclasses.replace(m, signatures=tuple(sorted(
        (*m.signatures, (ME, bytes(64)))))), "not an alive neighbour"),
    "signer-not-in-view": (lambda m, s: dataclasses.replace(m, signatures=tuple(sorted(
        (*m.signatures, (10, bytes(64)))))), "not an alive neighbour"),
    "view-changed-alive-to-dropped": (lambda m, s: dataclasses.replace(
        m, alive=tuple(v for v in m.alive if v != 9), dropped=(9, 10)), "does not repeat"),
    "view-changed-dropped-to-alive": (lambda m, s: dataclasses.replace(
        m, alive=tuple(range(1, 11)), dropped=()), "does not repeat"),
    "both-alive-and-dropped": (lambda m, s: dataclasses.replace(
        m, dropped=(9, 10)), "both alive and dropped"),
}


@pytest.mark.parametrize("name", sorted(RELAY_TAMPERS))
def test_signed_unmask_refusals(complete10: SessionConfig, name: str) -> None:
    tamper, match = RELAY_TAMPERS[name]
    s = ActiveSession(complete10, seed=5)
    signed = _signed(s, {"masked-input": [10]})
    bad = tamper(signed[ME], s)
    assert bad != signed[ME]
    refuses(s.clients[ME], bad, match)
    # the refusal changed nothing: the genuine relay still completes the session
    s.close(s.respond(signed))
    s.assert_exact()


def test_plain_unmask_request_refused_in_active_mode(complete10: SessionConfig) -> None:
    s = ActiveSession(complete10, seed=6)
    signed = _signed(s)
    c = s.clients[ME]
    refuses(c, UnmaskRequest(signed[ME].alive, signed[ME].dropped), "signed ConsistencyRequest")
    views = ActiveSession(complete10, seed=6)
    v = views.to_consistency()
    cv = views.clients[ME]
    refuses(cv, UnmaskRequest(v[ME].alive, v[ME].dropped), "not expected")
    refuses(cv, dataclasses.replace(v[ME], signatures=((1, bytes(64)),)), "must not carry")
    refuses(cv, dataclasses.replace(v[ME], alive=v[ME].alive[:5]), "threshold")


def test_unknown_identity_in_relay_refused(complete10: SessionConfig) -> None:
    s = ActiveSession(complete10, seed=7)
    signed = _signed(s)
    forgotten: set[int] = {5}
    s.clients[ME]._trust = CallbackTrustStore(
        lambda u: None if u in forgotten else s.store.verify_key(u))
    refuses(s.clients[ME], signed[ME], "no identity")
    sybil = CallbackTrustStore(lambda u: s.store.verify_key(5 if u == 6 else u))
    s.clients[ME]._trust = sybil
    resigned = dataclasses.replace(signed[ME], signatures=tuple(
        (v, resign(s.keys[5], s.config, 6, signed[ME].alive, signed[ME].dropped) if v == 6
         else sig) for v, sig in signed[ME].signatures))
    refuses(s.clients[ME], resigned, "identity key of another client")


def test_split_views_detected_complete_graph(complete10: SessionConfig) -> None:
    """The attack of spec §12.2 a: the server tells clients 1-4 and 9 that client 9
    survived (to collect b-shares of 9) and clients 5-8 that it dropped (to collect
    s-shares of 9). Every honest client signs what it was shown; no view gets t
    signatures, and whatever the server relays, no client releases a share."""
    s = ActiveSession(complete10, seed=8)
    views = s.to_consistency({"masked-input": [10]})
    view_a = ConsistencyRequest(tuple(range(1, 10)), (10,))
    view_b = ConsistencyRequest(tuple(range(1, 9)), (9, 10))
    told = {u: (view_b if 5 <= u <= 8 else view_a) for u in views}
    sigs = {u: s.clients[u].handle(told[u]) for u in told}
    by_view: dict[ConsistencyRequest, list[tuple[int, bytes]]] = {view_a: [], view_b: []}
    for u, m in sorted(sigs.items()):
        assert isinstance(m, ConsistencySignature)
        by_view[told[u]].append((u, m.signature))
    t = complete10.threshold
    assert len(by_view[view_a]) < t + 1 and len(by_view[view_b]) < t + 1
    for u in told:
        view = told[u]
        mine = [(v, sg) for v, sg in sorted(by_view[view]) if v != u]
        others = [(v, sg) for v, sg in sorted(by_view[view_a if view is view_b else view_b])
                  if v in view.alive and v != u]
        # only the signatures on its own view: too few
        refuses(s.clients[u], dataclasses.replace(view, signatures=tuple(mine)), "threshold")
        # padded with signatures on the other view: they do not verify
        padded = tuple(sorted(mine + others))
        if len(padded) >= t:
            refuses(s.clients[u], dataclasses.replace(view, signatures=padded), "does not verify")
        # relabel the request as the other view: not what this client signed
        other = view_a if view is view_b else view_b
        if u in other.alive:
            refuses(s.clients[u], dataclasses.replace(other, signatures=padded), "does not repeat")
    assert all(c.released == {} for c in s.clients.values())


def test_split_views_detected_harary(harary20: SessionConfig) -> None:
    """SecAgg+: u's signers must have been shown the same status for every client in
    both neighbourhoods. The server shows one neighbour of u that a common
    neighbour w dropped; that signature then fails at u."""
    s = ActiveSession(harary20, seed=9)
    cfg = harary20
    views = s.to_consistency()
    u = cfg.cohort[0]
    nu = set(cfg.neighbours(u))
    # a neighbour x of u, and a client w in both neighbourhoods (other than u and x)
    x, w = next((x, w) for x in sorted(nu) for w in sorted(nu & set(cfg.neighbours(x)))
                if w not in (u, x))
    lie = ConsistencyRequest(tuple(v for v in views[x].alive if v != w),
                             tuple(sorted((*views[x].dropped, w))))
    sigs = {v: s.clients[v].handle(lie if v == x else views[v]) for v in views}
    # the (malicious) server relays to u its neighbours' signatures, x's included,
    # with the true statuses of both neighbourhoods (nobody dropped)
    def relay(signers: set[int]) -> ConsistencyRequest:
        domain = nu | {u}
        for v in signers:
            domain |= set(cfg.neighbours(v))
        return ConsistencyRequest(tuple(sorted(domain)), (), tuple(
            (v, sigs[v].signature) for v in sorted(signers)))  # type: ignore[attr-defined]

    refuses(s.clients[u], relay(nu), "does not verify")
    # without x's signature the relay is consistent, and u unmasks if t others signed
    if len(nu) - 1 >= cfg.threshold:
        assert s.clients[u].handle(relay(nu - {x})) is not None
        assert s.clients[u].released


def test_relay_naming_clients_outside_the_domain_refused(harary20: SessionConfig) -> None:
    s = ActiveSession(harary20, seed=10)
    signed = _signed(s)
    u = harary20.cohort[0]
    msg = signed[u]
    covered = set(harary20.neighbours(u)) | {u}
    for v, _ in msg.signatures:
        covered |= set(harary20.neighbours(v)) | {v}
    outside = [v for v in harary20.cohort if v not in covered]
    if not outside:
        pytest.skip("the two-hop neighbourhood covers the whole cohort")
    bad = dataclasses.replace(msg, alive=tuple(sorted((*msg.alive, outside[0]))))
    refuses(s.clients[u], bad, "outside the neighbourhoods")


def test_server_refuses_bad_consistency_signatures(complete10: SessionConfig) -> None:
    s = ActiveSession(complete10, seed=11)
    views = s.to_consistency({"masked-input": [10]})
    sigs = s.respond(views)
    srv = s.server
    good = sigs[5]
    assert isinstance(good, ConsistencySignature)
    for bad, match in (
        (ConsistencySignature(5, bytes(64)), "does not verify"),
        (ConsistencySignature(5, sigs[6].signature), "does not verify"),  # type: ignore
        (ConsistencySignature(10, good.signature), "not asked"),
        (ConsistencySignature(99, good.signature), "not asked"),
    ):
        before = (srv.state, srv.expected())
        with pytest.raises(ProtocolError, match=match):
            srv.receive(bad)
        assert (srv.state, srv.expected()) == before
    srv.receive(good)
    with pytest.raises(ProtocolError, match="duplicate"):
        srv.receive(good)
    with pytest.raises(ProtocolError, match="unexpected message type"):
        srv.receive(UnmaskRequest((), ()))  # type: ignore[arg-type]


def test_too_few_signers_aborts_before_any_share(complete10: SessionConfig) -> None:
    s = ActiveSession(complete10, seed=12)
    out = s.to_signed_unmask({"consistency": [1, 2, 3]})  # 7 signers, each sees 6 < t = 7
    assert s.server.state is ServerState.ABORTED and "consistency" in (s.server.abort_reason
                                                                       or "")
    assert all(m.__class__.__name__ == "Abort" for m in out.values())
    assert all(c.released == {} for c in s.clients.values())


# --- messages ---------------------------------------------------------------------------------
def test_active_messages_round_trip_and_refusals() -> None:
    msgs = [ConsistencyRequest((1, 2, 5), (7,)),
            ConsistencyRequest((1, 2), (), ((1, b"\x01" * 64), (2, b"\x02" * 64))),
            ConsistencySignature(4, b"\x07" * 64)]
    for m in msgs:
        data = m.encode()
        assert data[3] in {int(c) for c in ActiveMessageType}
        assert decode(data) == m
        for cut in range(len(data)):
            with pytest.raises(MessageDecodeError):
                decode(data[:cut])
        with pytest.raises(MessageDecodeError, match="trailing"):
            decode(data + b"\x00")
    unsorted = ConsistencyRequest((1,), (), ((2, b"\x01" * 64), (1, b"\x02" * 64))).encode()
    with pytest.raises(MessageDecodeError, match=r"type 8.*strictly increasing"):
        decode(unsorted)
    assert MAX_ENTRIES > 0
    assert not {int(c) for c in ActiveMessageType} & {int(c) for c in MessageType}


# --- trust stores -----------------------------------------------------------------------------
def test_trust_stores(tmp_path: Path) -> None:
    keys = {u: SigningKey.generate() for u in (1, 2, 3)}
    hexes = {str(u): k.verify_key.hex() for u, k in keys.items()}
    f = tmp_path / "ids.json"
    f.write_text(json.dumps(hexes))
    fs = FileTrustStore(f)
    assert fs.verify_key(2) == keys[2].verify_key and fs.verify_key(4) is None
    d = tmp_path / "ids"
    d.mkdir()
    for u, k in keys.items():
        (d / f"{u}.pub").write_text(k.verify_key.hex() + "\n")
    ds = DirectoryTrustStore(d)
    assert ds.verify_key(3) == keys[3].verify_key and ds.verify_key(9) is None
    cs = CallbackTrustStore(lambda u: keys[u].verify_key if u in keys else None)
    assert cs.verify_key(1) == keys[1].verify_key and cs.verify_key(5) is None
    ms = MemoryTrustStore({u: k.verify_key for u, k in keys.items()})
    assert ms.verify_key(1) == keys[1].verify_key
    assert "hidden" not in repr(ms) and keys[1].verify_key.hex() not in repr(ds)


@pytest.mark.parametrize(("content", "match"), [
    ("[1, 2]", "one JSON object"),
    ("not json", "not valid JSON"),
    ('{"x": "00"}', "decimal"),
    ('{"01": "00"}', "decimal"),
    ('{"\u00b2": "00"}', "decimal"),
    ('{"0": "00"}', r"\[1, 2\*\*32 - 1\]"),
    ('{"1": "zz"}', "not hex"),
    ('{"1": 5}', "hex string"),
    ('{"1": "' + "00" * 32 + '"}', "not a valid Ed25519"),  # identity point (small order)
])
def test_file_trust_store_refusals(tmp_path: Path, content: str,
                                   match: str) -> None:
    f = tmp_path / "bad.json"
    f.write_text(content)
    with pytest.raises(ConfigError, match=match):
        FileTrustStore(f)


def test_trust_store_duplicates(tmp_path: Path) -> None:
    k = SigningKey.generate().verify_key
    with pytest.raises(ConfigError, match="share one verify key"):
        MemoryTrustStore({1: k, 2: k})
    f = tmp_path / "dup.json"
    other = SigningKey.generate().verify_key.hex()
    f.write_text(f'{{"1": "{k.hex()}", "1": "{other}"}}')
    with pytest.raises(ConfigError, match="twice"):
        FileTrustStore(f)
    d = tmp_path / "dir"
    d.mkdir()
    (d / "1.pub").write_text(k.hex())
    (d / "2.pub").write_text(k.hex())
    ds = DirectoryTrustStore(d)
    ds.verify_key(1)
    with pytest.raises(ConfigError, match="share one verify key"):
        ds.verify_key(2)
    with pytest.raises(ConfigError, match="does not exist"):
        DirectoryTrustStore(d / "missing")
    with pytest.raises(ConfigError, match="valid Ed25519"):
        CallbackTrustStore(lambda u: b"\x00" * 32).verify_key(1)


def test_statements_are_domain_separated() -> None:
    sid = bytes(32)
    a = advertise_statement(sid, 1, b"\x01" * 32, b"\x02" * 32)
    v = view_statement(sid, 1, [1, 2], [3])
    assert a.startswith(b"secagg/v1/signed/advertise-keys|")
    assert v.startswith(b"secagg/v1/signed/consistency-view|")
    assert view_statement(sid, 1, [1, 2], [3]) != view_statement(sid, 1, [1], [2, 3])
    assert view_statement(sid, 1, [1, 2], [3]) != view_statement(sid, 2, [1, 2], [3])


# --- CLI --------------------------------------------------------------------------------------
def test_cli_simulate_active(capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["simulate", "--mode", "active", "--clients", "12", "--dim", "64",
                   "--dropout", "0.1", "--drop-at", "consistency", "--seed", "3", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["exact"] and out["mode"] == "active" and out["threshold"] == 9
    rc = cli.main(["simulate", "--mode", "active", "--clients", "8", "--dim", "64",
                   "--seed", "3", "--json"])
    assert rc == 2 and "minimum" in capsys.readouterr().err
    rc = cli.main(["simulate", "--mode", "active", "--clients", "8", "--min-cohort", "5",
                   "--dim", "64", "--seed", "3", "--json"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["exact"]
