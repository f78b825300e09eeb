"""Server state machine: every refusal leaves the state unchanged (the session then
finishes with the exact sum), bogus shares never give a wrong sum, and the server
keeps one accumulator, never n vectors."""

from __future__ import annotations

import secrets

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.config import SessionConfig
from secagg.crypto.agreement import X25519PrivateKey
from secagg.crypto.shamir import PRIME
from secagg.errors import ProtocolError
from secagg.messages import (
    Abort,
    AdvertiseKeys,
    CiphertextBundle,
    KeyBroadcast,
    MaskedInput,
    ShareKeys,
    ShareKind,
    UnmaskRequest,
    UnmaskResponse,
)
from secagg.packing import pack
from secagg.server import ServerProtocol, ServerState
from tests.conftest import Session, cohort, harary_config, plaintext_sum, sums_equal

N = 8  # complete graph, t = 5
P = (1 << 255) - 19


@pytest.fixture(scope="module")
def cfg() -> SessionConfig:
    return SessionConfig.create(cohort(N), 16, 1 << 32, min_cohort=5)


@pytest.fixture(scope="module")
def odd_cfg() -> SessionConfig:
    return SessionConfig.create(cohort(N), 16, (1 << 32) - 5, min_cohort=5)


def snapshot(server: ServerProtocol) -> tuple:
    return (server.state, server.expected(), server.accumulator_count, server.abort_reason,
            server.result)


def refused(server: ServerProtocol, message: object, match: str | None = None) -> None:
    before = snapshot(server)
    with pytest.raises(ProtocolError, match=match):
        server.receive(message)  # type: ignore[arg-type]
    assert snapshot(server) == before


def _key() -> bytes:
    return X25519PrivateKey.generate().public_key


# --- round 0: AdvertiseKeys -----------------------------------------------------------------
def test_advertise_refusals(cfg: SessionConfig) -> None:
    s = Session(cfg, seed=1)
    adverts = s.advertise()
    srv = s.server
    srv.receive(adverts[4])
    a5 = adverts[5]
    refused(srv, AdvertiseKeys(999, _key(), _key()), "not in the cohort")
    refused(srv, AdvertiseKeys(4, _key(), _key()), "duplicate")  # conflicting duplicate
    refused(srv, adverts[4], "duplicate")  # identical duplicate
    refused(srv, AdvertiseKeys(5, adverts[4].enc_pk, a5.mask_pk), "another client")
    refused(srv, AdvertiseKeys(5, a5.enc_pk, adverts[4].enc_pk), "another client")
    refused(srv, AdvertiseKeys(5, a5.enc_pk, adverts[4].mask_pk), "another client")
    refused(srv, AdvertiseKeys(5, a5.enc_pk, a5.enc_pk), "both purposes")
    refused(srv, AdvertiseKeys(5, a5.enc_pk, a5.mask_pk, bytes(64)), "signature")
    for bad in (bytes(32), (1).to_bytes(32, "little"), P.to_bytes(32, "little"),
                (P + 3).to_bytes(32, "little"), b"\xff" * 32, a5.enc_pk[:31]):
        refused(srv, AdvertiseKeys(5, bad, a5.mask_pk), "invalid")
        refused(srv, AdvertiseKeys(5, a5.enc_pk, bad), "invalid")
    assert 5 in srv.expected() and 4 not in srv.expected()
    kb = s.close({u: m for u, m in adverts.items() if u != 4})
    # the first keys of client 4 are the ones relayed
    entry4 = next(e for e in kb[1].entries if e.client_id == 4)
    assert (entry4.enc_pk, entry4.mask_pk) == (adverts[4].enc_pk, adverts[4].mask_pk)
    bundles = s.close(s.respond(kb))
    s.finish(s.close(s.respond(bundles)))
    s.assert_exact()
    assert s.server.result is not None and len(s.server.result.included) == N


# --- round 1: ShareKeys ---------------------------------------------------------------------
def _at_share_keys(cfg: SessionConfig, drop: set[int] | None = None) -> tuple[Session, dict]:
    s = Session(cfg, seed=2)
    kb = s.to_share_keys(drop or ())
    return s, s.respond(kb)


def test_share_keys_refusals(cfg: SessionConfig) -> None:
    s, sk = _at_share_keys(cfg, drop={8})
    srv = s.server
    m = sk[1]
    items = m.ciphertexts
    ct = items[0][1]
    refused(srv, ShareKeys(1, items[1:], m.self_mask_commitment), "each neighbour")
    refused(srv, ShareKeys(1, (*items, (999, ct)), m.self_mask_commitment), "each neighbour")
    # 8 never advertised keys, so it is not in U1 and must not receive a ciphertext
    refused(srv, ShareKeys(1, (*items, (8, ct)), m.self_mask_commitment), "each neighbour")
    refused(srv, ShareKeys(1, ((1, ct), *items), m.self_mask_commitment), "each neighbour")
    refused(srv, ShareKeys(1, (*items, items[-1]), m.self_mask_commitment), "each neighbour")
    refused(srv, ShareKeys(8, items, m.self_mask_commitment), "not in U1")
    refused(srv, ShareKeys(999, items, m.self_mask_commitment), "not in U1")
    srv.receive(m)
    refused(srv, m, "duplicate")
    refused(srv, ShareKeys(1, items, bytes(32)), "duplicate")
    bundles = s.close(sk, drop={1})  # 1's ShareKeys is already in
    s.finish(s.close(s.respond(bundles)))
    s.assert_exact()


@pytest.mark.parametrize("what", ["ciphertext", "commitment", "share"])
def test_field_lengths_checked_on_receive(cfg: SessionConfig, what: str) -> None:
    if what == "share":
        s, _, responses = _at_unmask(cfg)
        r = responses[1]
        bad: object = UnmaskResponse(1, tuple((o, k, v[:1]) for o, k, v in r.shares))
    else:
        s, sk = _at_share_keys(cfg)
        m = sk[1]
        if what == "ciphertext":
            bad = ShareKeys(1, tuple((r, c[:10]) for r, c in m.ciphertexts),
                            m.self_mask_commitment)
        else:
            bad = ShareKeys(1, m.ciphertexts, m.self_mask_commitment[:5])
    refused(s.server, bad)


# --- round 2: MaskedInput -------------------------------------------------------------------
def _at_masked(cfg: SessionConfig, drops: dict | None = None) -> tuple[Session, dict]:
    s = Session(cfg, seed=3)
    return s, s.respond(s.to_masked_input(drops))


@pytest.mark.parametrize("config", ["cfg", "odd_cfg"])
def test_masked_input_refusals(config: str, request: pytest.FixtureRequest) -> None:
    c: SessionConfig = request.getfixturevalue(config)
    s, mi = _at_masked(c, {"share-keys": {7}})
    srv = s.server
    m = mi[1]
    dim = c.dim
    vec = np.zeros(dim, dtype=np.uint32)
    refused(srv, MaskedInput(1, 32, dim - 1, pack(vec[:-1], 32)), "wrong length")
    refused(srv, MaskedInput(1, 32, dim + 1, pack(np.zeros(dim + 1, np.uint32), 32)),
            "wrong length")
    refused(srv, MaskedInput(1, 31, dim, pack(vec, 31)), "wrong length or width")
    refused(srv, MaskedInput(1, 33, dim, pack(vec.astype(np.uint64), 33)), "width")
    refused(srv, MaskedInput(1, 32, dim, m.packed[:-1]))  # packed bytes too short
    refused(srv, MaskedInput(1, 32, dim, m.packed + b"\x00"))
    refused(srv, MaskedInput(7, 32, dim, m.packed), "not in U2")  # dropped at share-keys
    refused(srv, MaskedInput(999, 32, dim, m.packed), "not in U2")
    if c.modulus != 1 << 32:
        for bad in (c.modulus, c.modulus + 1, (1 << 32) - 1):
            big = vec.copy()
            big[3] = bad
            refused(srv, MaskedInput(1, 32, dim, pack(big, 32)), "outside")
    assert srv.accumulator_count == 0
    srv.receive(m)
    assert srv.accumulator_count == 1
    refused(srv, m, "duplicate")
    refused(srv, MaskedInput(1, 32, dim, pack(vec, 32)), "duplicate")
    requests = s.close(mi, drop={1})  # 1's input is already in
    s.finish(requests)
    s.assert_exact()
    assert s.server.result is not None and 7 not in s.server.result.included


# --- round 4: UnmaskResponse ----------------------------------------------------------------
def _at_unmask(cfg: SessionConfig, drops: dict | None = None, seed: int = 4
               ) -> tuple[Session, dict, dict]:
    s = Session(cfg, seed=seed)
    requests = s.to_unmasking(drops)
    return s, requests, s.respond(requests)


def test_unmask_response_refusals(cfg: SessionConfig) -> None:
    s, _, responses = _at_unmask(cfg, {"masked-input": {6}})
    srv = s.server
    r = responses[1]
    shares = r.shares
    kinds = {o: k for o, k, _ in shares}
    assert kinds[6] is ShareKind.MASK_KEY and kinds[2] is ShareKind.SELF_MASK_SEED
    refused(srv, UnmaskResponse(1, shares[1:]), "exactly the shares")  # one missing
    refused(srv, UnmaskResponse(1, (*shares, (999, ShareKind.MASK_KEY, shares[0][2]))),
            "exactly the shares")  # one extra
    refused(srv, UnmaskResponse(1, ((1, ShareKind.SELF_MASK_SEED, shares[0][2]), *shares)),
            "exactly the shares")  # its own share
    flipped = tuple(
        (o, ShareKind.SELF_MASK_SEED if k is ShareKind.MASK_KEY else ShareKind.MASK_KEY, v)
        for o, k, v in shares
    )
    refused(srv, UnmaskResponse(1, flipped), "exactly the shares")  # wrong kinds
    both = tuple(sorted((*shares, (2, ShareKind.MASK_KEY, shares[0][2]))))
    refused(srv, UnmaskResponse(1, both), "exactly the shares")  # duplicate owner
    refused(srv, UnmaskResponse(1, ()), "exactly the shares")
    refused(srv, UnmaskResponse(6, responses[2].shares), "not asked")  # dropped client
    refused(srv, UnmaskResponse(999, shares), "not asked")
    srv.receive(r)
    refused(srv, r, "duplicate")
    s.close(responses, drop={1})
    s.assert_exact()


# --- wrong state ----------------------------------------------------------------------------
_ACCEPTED_IN = {
    ServerState.COLLECT_KEYS: AdvertiseKeys,
    ServerState.COLLECT_SHARES: ShareKeys,
    ServerState.COLLECT_MASKED: MaskedInput,
    ServerState.COLLECT_UNMASK: UnmaskResponse,
}


def test_messages_in_the_wrong_state(cfg: SessionConfig) -> None:
    """Genuine messages of every round, offered to a real server in every other state."""
    probe_session = Session(cfg, seed=5)
    adverts = probe_session.advertise()
    sk = probe_session.respond(probe_session.close(adverts))
    mi = probe_session.respond(probe_session.close(sk))
    resp = probe_session.respond(probe_session.close(mi))
    probes = [adverts[1], sk[1], mi[1], resp[1]]

    s = Session(cfg, seed=5)
    states = []

    def check() -> None:
        state = s.server.state
        states.append(state)
        for msg in probes:
            if _ACCEPTED_IN.get(state) is not type(msg):
                refused(s.server, msg, "not expected")

    check()
    kb = s.close(s.advertise())
    check()
    bundles = s.close(s.respond(kb))
    check()
    requests = s.close(s.respond(bundles))
    check()
    s.close(s.respond(requests))
    check()
    s.assert_exact()
    assert states == [*_ACCEPTED_IN, ServerState.DONE]


def test_client_messages_only(cfg: SessionConfig) -> None:
    srv = ServerProtocol(cfg, threads=1)
    for msg in (KeyBroadcast(()), CiphertextBundle(()), UnmaskRequest((), ()), Abort("x")):
        refused(srv, msg, "unexpected message type")


def test_close_round_after_done_or_abort(cfg: SessionConfig) -> None:
    s = Session(cfg, seed=6)
    s.run()
    s.assert_exact()
    with pytest.raises(ProtocolError):
        s.server.close_round()
    srv = ServerProtocol(cfg, threads=1)
    out = srv.close_round()  # nobody advertised
    assert out == {} and srv.state is ServerState.ABORTED and srv.abort_reason
    with pytest.raises(ProtocolError):
        srv.close_round()
    refused(srv, Session(cfg).advertise()[1], "not expected")


def test_abort_is_sent_to_every_live_client(cfg: SessionConfig) -> None:
    s = Session(cfg, seed=7)
    bundles = s.to_masked_input()
    mi = s.respond(bundles)
    out = s.close({u: m for u, m in mi.items() if u <= 3})  # 3 < t masked inputs
    assert set(out) == set(cfg.cohort)
    assert all(isinstance(m, Abort) for m in out.values())
    assert s.server.state is ServerState.ABORTED and s.server.accumulator_count == 0
    assert s.server.result is None
    for u, m in out.items():
        s.clients[u].handle(m)
        assert s.clients[u].state.value == "aborted"


# --- honest server messages -----------------------------------------------------------------
def test_server_messages_match_the_graph() -> None:
    c = harary_config(cohort(30), 8, 1 << 32, dropout_rate=0.3)
    s = Session(c, seed=8)
    drops = {"advertise": {1}, "share-keys": {2}, "masked-input": {3, 4}}
    kb = s.to_share_keys(drops["advertise"])
    for u, m in kb.items():
        if isinstance(m, Abort):
            continue
        ids = [e.client_id for e in m.entries]
        assert set(ids) == (set(c.neighbours(u)) - {1}) | {u}
    bundles = s.close(s.respond(kb, drops["share-keys"]))
    u2 = {u for u, m in bundles.items() if isinstance(m, CiphertextBundle)}
    for u in u2:
        senders = {v for v, _ in bundles[u].ciphertexts}
        assert senders == set(c.neighbours(u)) & u2 and u not in senders
    requests = s.close(s.respond(bundles, drops["masked-input"]))
    u3 = set(requests)
    for u, r in requests.items():
        assert isinstance(r, UnmaskRequest)
        assert not set(r.alive) & set(r.dropped) and u not in r.dropped
        assert set(r.alive) == (set(c.neighbours(u)) & u3) | {u}
        assert set(r.dropped) == set(c.neighbours(u)) & (u2 - u3)
    s.close(s.respond(requests))
    s.assert_exact()


# --- bogus shares ---------------------------------------------------------------------------
def _tamper(resp: UnmaskResponse, kind: ShareKind | None, value: bytes | None = None
            ) -> UnmaskResponse:
    """Replace the shares of ``kind`` (all if None) by ``value`` or by random field elements.

    Random, not a bit flip: flipping the low bit shifts a share by +-1, and with small
    client ids the Lagrange-weighted shifts of two liars can cancel exactly, so a
    subset containing liars may legitimately reconstruct the true secret."""
    out = []
    for owner, k, share in resp.shares:
        if kind is None or k is kind:
            share = value if value is not None else secrets.randbelow(PRIME).to_bytes(33, "big")
        out.append((owner, k, share))
    return UnmaskResponse(resp.sender, tuple(out))


def _exact_or_abort(s: Session) -> None:
    srv = s.server
    if srv.state is ServerState.ABORTED:
        assert srv.result is None and srv.abort_reason
        return
    s.assert_exact()


@pytest.mark.parametrize("kind", [ShareKind.SELF_MASK_SEED, ShareKind.MASK_KEY, None])
@pytest.mark.parametrize("liar", [1, 5, 8])
def test_bogus_shares_with_spares_still_exact(cfg: SessionConfig, kind: ShareKind | None,
                                              liar: int) -> None:
    """One client lies about every share of one kind; the others' spare shares
    (7 holders, t = 5) let reconstruct_verified find a good subset."""
    s, _, responses = _at_unmask(cfg, {"masked-input": {6}})
    responses[liar] = _tamper(responses[liar], kind)
    s.close(responses)
    s.assert_exact()


@pytest.mark.parametrize(
    ("kind", "dropped", "liars", "reason"),
    [
        # 6 survivors: every self-mask seed has exactly t = 5 shares, one of them wrong
        (ShareKind.SELF_MASK_SEED, {7, 8}, {1}, "commitment"),
        # 7 holders of 8's mask key, 3 liars: every 5-subset holds a wrong share
        (ShareKind.MASK_KEY, {8}, {1, 2, 3}, "public key"),
    ],
    ids=["self-mask-seed", "mask-key"],
)
def test_bogus_shares_without_enough_good_ones_abort(
    cfg: SessionConfig, kind: ShareKind, dropped: set[int], liars: set[int], reason: str
) -> None:
    """Too few good shares: nothing verifies, so a clean abort, never a wrong sum."""
    s, _, responses = _at_unmask(cfg, {"masked-input": dropped})
    for u in liars:
        responses[u] = _tamper(responses[u], kind)
    s.close(responses)
    assert s.server.state is ServerState.ABORTED and s.server.result is None
    assert reason in (s.server.abort_reason or "")


@pytest.mark.parametrize(
    "value",
    [b"\xff" * 33, PRIME.to_bytes(33, "big"), bytes(33), (1).to_bytes(33, "big")],
    ids=["all-ones", "prime", "zero", "one"],
)
def test_malformed_share_never_gives_a_wrong_sum(cfg: SessionConfig, value: bytes) -> None:
    s, _, responses = _at_unmask(cfg, {"masked-input": {6}})
    responses[2] = _tamper(responses[2], None, value)
    try:
        s.close(responses)
    except ProtocolError:
        # refused at receive: the honest responses must still finish the session
        s.server.close_round()
    _exact_or_abort(s)


@pytest.mark.parametrize("value", [b"\xff" * 33, PRIME.to_bytes(33, "big")],
                         ids=["all-ones", "prime"])
def test_out_of_field_share_does_not_abort_with_spares(cfg: SessionConfig,
                                                       value: bytes) -> None:
    """A share that is not a field element is refused on receipt (or skipped), so the
    honest responders' spare shares still give the exact sum."""
    s, _, responses = _at_unmask(cfg, {"masked-input": {6}})
    bad = _tamper(responses[2], None, value)
    srv = s.server
    for u, m in sorted(responses.items()):
        if u == 2:
            try:
                srv.receive(bad)
            except ProtocolError:
                continue
        else:
            srv.receive(m)
    srv.close_round()
    s.assert_exact()


# --- memory ---------------------------------------------------------------------------------
def _arrays(obj: object, dim: int, seen: set[int] | None = None) -> int:
    """How many arrays of length >= dim (or packed vectors) are reachable from obj."""
    seen = seen if seen is not None else set()
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return int(obj.size >= dim)
    if isinstance(obj, bytes | bytearray):
        return int(len(obj) >= 4 * dim)
    if isinstance(obj, MaskedInput):
        return 1
    if isinstance(obj, dict):
        return sum(_arrays(k, dim, seen) + _arrays(v, dim, seen) for k, v in obj.items())
    if isinstance(obj, list | tuple | set | frozenset):
        return sum(_arrays(v, dim, seen) for v in obj)
    if hasattr(obj, "__dict__") and not isinstance(obj, type | SessionConfig):
        return _arrays(vars(obj), dim, seen)
    return 0


@pytest.mark.parametrize("n", [10, 40])
def test_one_accumulator_regardless_of_n(n: int) -> None:
    dim = 256
    c = SessionConfig.create(cohort(n), dim, 1 << 32)
    s = Session(c, seed=n)
    bundles = s.to_masked_input()
    assert s.server.accumulator_count == 0
    mi = s.respond(bundles)
    first = sorted(mi)[: n // 2]
    for u in first:
        s.server.receive(mi[u])
        assert s.server.accumulator_count == 1
        assert _arrays(s.server, dim) == 1
    requests = s.close(mi, drop=first)
    assert s.server.accumulator_count == 1
    assert _arrays(s.server, dim) == 1, "the server keeps per-client vectors"
    s.close(s.respond(requests))
    s.assert_exact()
    assert s.server.accumulator_count == 0
    assert _arrays(s.server, dim) == 1  # only result.sum


def test_result_sum_matches_plaintext_with_threads(cfg: SessionConfig) -> None:
    """The thread-pool unmasking path gives the same exact sum."""
    c = SessionConfig.create(cohort(20), 1000, (1 << 32) - 5)
    s = Session(c, seed=9, threads=4)
    s.run({"share-keys": {3}, "masked-input": {4, 5, 6}, "unmask": {7}})
    result = s.server.result
    assert result is not None and set(result.included) == set(c.cohort) - {3, 4, 5, 6}
    assert sums_equal(result.sum, plaintext_sum(s.inputs, result.included, c.modulus, c.dim))
    assert result.masks_expanded == 16 + 3 * 16  # self masks + 3 dropped x 16 survivors


def test_share_field_check_at_its_boundary(cfg: SessionConfig) -> None:
    """A share is refused on receipt iff it is not 33 bytes below PRIME (the server
    compares the bytes, which for equal lengths is comparing the numbers)."""
    s, _, responses = _at_unmask(cfg, {"masked-input": {6}})
    srv, resp = s.server, responses[2]
    for value in (PRIME.to_bytes(33, "big"), (PRIME + 1).to_bytes(33, "big"), b"\xff" * 33,
                  bytes(32), bytes(34)):
        refused(srv, _tamper(resp, None, value), "outside the Shamir field")
    srv.receive(_tamper(resp, None, (PRIME - 1).to_bytes(33, "big")))  # in the field: taken
    assert 2 not in srv.expected()


def _t_core_one_by_one(srv: ServerProtocol, members: set[int], t: int) -> set[int]:
    """The pruning as it was written first: one client at a time, by id, to a fixpoint."""
    members = set(members)
    changed = True
    while changed:
        changed = False
        for u in sorted(members):
            if u in members and len(members.intersection(srv.config.neighbours(u))) < t:
                members.discard(u)
                changed = True
    return members


@pytest.mark.parametrize("graph", ["complete", "harary"])
@given(data=st.data())
@settings(max_examples=60, deadline=None)
def test_neighbour_counts_from_the_absent_side_are_the_intersections(
        graph: str, data: st.DataObject) -> None:
    """The server counts N(u) ∩ members from whichever side is smaller; both must give
    every member's true count, and the pruning built on them the same t-core as
    removing short clients one by one."""
    cfg = _GRAPHS[graph]
    srv = ServerProtocol(cfg, threads=1)
    ids = list(cfg.cohort)
    members = set(data.draw(st.lists(st.sampled_from(ids), unique=True, min_size=1)))
    counts = srv._counts_among(members)
    assert counts == {u: len(members.intersection(cfg.neighbours(u))) for u in members}
    t = data.draw(st.integers(1, cfg.degree))
    core = set(members)
    while short := [u for u, c in srv._counts_among(core).items() if c < t]:
        core.difference_update(short)
    assert core == _t_core_one_by_one(srv, members, t)
    for u in sorted(members):
        assert srv._nbrs_sorted(u, members) == tuple(sorted(members & set(cfg.neighbours(u))))
        assert srv._with_self(u, members) == tuple(
            sorted((members & set(cfg.neighbours(u))) | {u}))


_GRAPHS = {
    "complete": SessionConfig.create(cohort(12), 10, 1 << 32, min_cohort=5),
    "harary": harary_config(cohort(40), 10, 1 << 32, dropout_rate=0.1),
}
