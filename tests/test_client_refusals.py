"""Every refusal of the client state machine, driven by tampered real messages.

Each test builds a real session (ServerProtocol + ClientProtocols), takes the
genuine server message for one client, tampers with it, and checks that the
client raises ProtocolError, stays in the same state and releases nothing.
Then the client is fed the genuine message and the session must still finish
with the exact sum: the refusal really left the client untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest

from secagg import masking
from secagg.client import ClientProtocol, ClientState
from secagg.config import SessionConfig
from secagg.crypto.aead import seal_once
from secagg.crypto.agreement import X25519PrivateKey
from secagg.errors import ProtocolError, SecAggError
from secagg.messages import (
    CIPHERTEXT_LEN,
    SHARE_LEN,
    Abort,
    AdvertiseKeys,
    CiphertextBundle,
    KeyBroadcast,
    KeyEntry,
    ShareKind,
    UnmaskRequest,
)
from secagg.wire import Writer
from tests.conftest import Session, client_snapshot, cohort, harary_config

ME = 3
N = 8
P = (1 << 255) - 19


@pytest.fixture(scope="module")
def complete_config() -> SessionConfig:
    return SessionConfig.create(cohort(N), 16, 1 << 32, min_cohort=5)  # t = 5


@pytest.fixture(scope="module")
def harary_cfg() -> SessionConfig:
    cfg = harary_config(cohort(20), 16, 1 << 32, dropout_rate=0.1)
    assert cfg.degree < cfg.n - 1
    return cfg


def refuses(session: Session, u: int, message: object, match: str | None = None) -> None:
    client = session.clients[u]
    before = client_snapshot(client)
    with pytest.raises(ProtocolError, match=match):
        client.handle(message)
    assert client_snapshot(client) == before
    assert client.released == {}


def finish_exact(session: Session, u: int, server_messages: dict, stage: str) -> None:
    """Feed ``u`` its genuine message, run the session to the end, check the sum."""
    session.replies[u] = session.clients[u].handle(server_messages[u])
    if stage == "share-keys":
        bundles = session.close(session.respond(server_messages))
        session.finish(session.close(session.respond(bundles)))
    elif stage == "masked-input":
        session.finish(session.close(session.respond(server_messages)))
    else:
        session.close(session.respond(server_messages))
    session.assert_exact()
    assert session.server.result is not None
    assert u in session.server.result.included


def _other_key() -> bytes:
    return X25519PrivateKey.generate().public_key


def _entry(entries: tuple[KeyEntry, ...], cid: int) -> KeyEntry:
    return next(e for e in entries if e.client_id == cid)


def _swap(entries: tuple[KeyEntry, ...], cid: int, **changes: bytes) -> tuple[KeyEntry, ...]:
    return tuple(replace(e, **changes) if e.client_id == cid else e for e in entries)


KeyTamper = Callable[[tuple[KeyEntry, ...], int], tuple[KeyEntry, ...]]

KEY_TAMPERS: dict[str, tuple[KeyTamper, str]] = {
    "fewer-than-t-peers": (
        lambda es, t: tuple(e for e in es if e.client_id == ME)
        + tuple(e for e in es if e.client_id != ME)[: t - 1],
        "threshold",
    ),
    "own-key-missing": (lambda es, t: tuple(e for e in es if e.client_id != ME), "own keys"),
    "own-key-duplicated": (
        lambda es, t: tuple(sorted((*es, _entry(es, ME)), key=lambda e: e.client_id)),
        "own keys",
    ),
    "own-enc-key-replaced": (lambda es, t: _swap(es, ME, enc_pk=_other_key()), "did not"),
    "own-mask-key-replaced": (lambda es, t: _swap(es, ME, mask_pk=_other_key()), "did not"),
    "own-keys-are-a-peers": (
        lambda es, t: _swap(es, ME, enc_pk=_entry(es, 5).enc_pk, mask_pk=_entry(es, 5).mask_pk),
        "did not",
    ),
    "duplicate-peer-id": (
        lambda es, t: tuple(sorted((*es, _entry(es, 5)), key=lambda e: e.client_id)),
        "twice",
    ),
    "duplicate-peer-id-other-keys": (
        lambda es, t: tuple(sorted(
            (*es, replace(_entry(es, 5), enc_pk=_other_key(), mask_pk=_other_key())),
            key=lambda e: e.client_id,
        )),
        "twice",
    ),
    "two-peers-same-enc-key": (lambda es, t: _swap(es, 6, enc_pk=_entry(es, 5).enc_pk), "reuses"),
    "two-peers-same-mask-key": (
        lambda es, t: _swap(es, 6, mask_pk=_entry(es, 5).mask_pk), "reuses"),
    "peer-enc-key-from-other-peer-mask-key": (
        lambda es, t: _swap(es, 6, enc_pk=_entry(es, 5).mask_pk), "reuses"),
    "peer-uses-my-enc-key": (lambda es, t: _swap(es, 5, enc_pk=_entry(es, ME).enc_pk), "reuses"),
    "peer-uses-my-mask-key": (
        lambda es, t: _swap(es, 5, mask_pk=_entry(es, ME).mask_pk), "reuses"),
    "peer-same-key-twice": (lambda es, t: _swap(es, 5, mask_pk=_entry(es, 5).enc_pk), "reuses"),
    "zero-key": (lambda es, t: _swap(es, 5, enc_pk=bytes(32)), "invalid"),
    "low-order-key-one": (
        lambda es, t: _swap(es, 5, mask_pk=(1).to_bytes(32, "little")), "invalid"),
    "non-canonical-p": (lambda es, t: _swap(es, 5, enc_pk=P.to_bytes(32, "little")), "invalid"),
    "non-canonical-p-plus-1": (
        lambda es, t: _swap(es, 5, enc_pk=(P + 1).to_bytes(32, "little")), "invalid"),
    "high-bit-set": (
        lambda es, t: _swap(es, 5, mask_pk=bytes(_entry(es, 5).mask_pk[:31])
                            + bytes([_entry(es, 5).mask_pk[31] | 0x80])),
        "invalid",
    ),
    "short-key": (lambda es, t: _swap(es, 5, enc_pk=_entry(es, 5).enc_pk[:31]), "invalid"),
    "unknown-client": (
        lambda es, t: (*es, KeyEntry(999, _other_key(), _other_key())), "not a neighbour"),
}


@pytest.mark.parametrize("name", sorted(KEY_TAMPERS))
def test_key_broadcast_refusals(complete_config: SessionConfig, name: str) -> None:
    tamper, match = KEY_TAMPERS[name]
    s = Session(complete_config, seed=1)
    kb = s.to_share_keys()
    bad = KeyBroadcast(tamper(kb[ME].entries, complete_config.threshold))
    refuses(s, ME, bad, match)
    finish_exact(s, ME, kb, "share-keys")


def test_key_broadcast_non_neighbour(harary_cfg: SessionConfig) -> None:
    s = Session(harary_cfg, seed=2)
    me = harary_cfg.cohort[0]
    kb = s.to_share_keys()
    stranger = next(v for v in harary_cfg.cohort
                    if v != me and v not in harary_cfg.neighbours(me))
    entries = tuple(sorted((*kb[me].entries, _entry(kb[stranger].entries, stranger)),
                           key=lambda e: e.client_id))
    refuses(s, me, KeyBroadcast(entries), "not a neighbour")
    finish_exact(s, me, kb, "share-keys")


def test_key_broadcast_exactly_t_peers_is_accepted(complete_config: SessionConfig) -> None:
    """The boundary: t peers (plus itself) is enough to share."""
    s = Session(complete_config, seed=1)
    kb = s.to_share_keys()
    t = complete_config.threshold
    entries = tuple(e for e in kb[ME].entries if e.client_id == ME) + tuple(
        e for e in kb[ME].entries if e.client_id != ME)[:t]
    reply = s.clients[ME].handle(KeyBroadcast(tuple(sorted(entries, key=lambda e: e.client_id))))
    assert reply is not None and len(reply.ciphertexts) == t


# --- CiphertextBundle ----------------------------------------------------------------------
def _bundle_session(config: SessionConfig, seed: int = 3) -> tuple[Session, dict, dict]:
    s = Session(config, seed=seed)
    kb = s.to_share_keys()
    share_keys = s.respond(kb)
    bundles = s.close(share_keys)
    return s, share_keys, bundles


def _flip(ct: bytes, pos: int) -> bytes:
    return ct[:pos] + bytes([ct[pos] ^ 0x01]) + ct[pos + 1:]


def _with(items: tuple, sender: int, ct: bytes) -> tuple:
    return tuple(sorted({**dict(items), sender: ct}.items()))


def _crafted(s: Session, sender: int, receiver: int, named: tuple[int, int],
             payload_len: int | None = None) -> bytes:
    """A ciphertext from ``sender`` to ``receiver`` under the right key and associated
    data, whose plaintext names ``named`` = (sender, receiver): what a malicious
    client (which knows its own secret key) could produce."""
    cfg = s.config
    sk = s.clients[sender]._enc_sk
    assert sk is not None
    receiver_pk = s.clients[receiver]._enc_sk.public_key  # type: ignore[union-attr]
    agreed = sk.exchange(receiver_pk)
    key = masking.share_key(agreed, cfg.session_id, sender, receiver, sk.public_key, receiver_pk)
    ad = masking.share_associated_data(cfg.session_id, sender, receiver, sk.public_key,
                                       receiver_pk)
    payload = (Writer().u32(named[0]).u32(named[1]).fixed(bytes(SHARE_LEN), SHARE_LEN)
               .fixed(bytes(SHARE_LEN), SHARE_LEN).getvalue())
    if payload_len is not None:
        payload = payload[:payload_len]
    return seal_once(key, payload, ad)


BundleTamper = Callable[[Session, dict, tuple], tuple]


def _ct_to(share_keys: dict, sender: int, receiver: int) -> bytes:
    return dict(share_keys[sender].ciphertexts)[receiver]


BUNDLE_TAMPERS: dict[str, tuple[BundleTamper, str]] = {
    "bit-flip-nonce": (lambda s, sk, it: _with(it, 5, _flip(dict(it)[5], 0)), "authent"),
    "bit-flip-middle": (lambda s, sk, it: _with(it, 5, _flip(dict(it)[5], 40)), "authent"),
    "bit-flip-tag": (
        lambda s, sk, it: _with(it, 5, _flip(dict(it)[5], CIPHERTEXT_LEN - 1)), "authent"),
    "unknown-sender": (lambda s, sk, it: _with(it, 999, dict(it)[5]), "not a known peer"),
    "from-myself": (lambda s, sk, it: _with(it, ME, _ct_to(sk, ME, 5)), "not a known peer"),
    # my own ciphertext to 5 sent back to me as if 5 had sent it
    "reflected": (lambda s, sk, it: _with(it, 5, _ct_to(sk, ME, 5)), "authent"),
    # 6's ciphertext for me relabelled as coming from 5
    "swapped-senders": (lambda s, sk, it: _with(it, 5, _ct_to(sk, 6, ME)), "authent"),
    # 5's ciphertext for 6 delivered to me
    "misdelivered": (lambda s, sk, it: _with(it, 5, _ct_to(sk, 5, 6)), "authent"),
    "names-wrong-receiver": (
        lambda s, sk, it: _with(it, 5, _crafted(s, 5, ME, (5, 6))), "wrong sender/receiver"),
    "names-wrong-sender": (
        lambda s, sk, it: _with(it, 5, _crafted(s, 5, ME, (6, ME))), "wrong sender/receiver"),
    "short-payload": (
        lambda s, sk, it: _with(it, 5, _crafted(s, 5, ME, (5, ME), payload_len=40)),
        "malformed",
    ),
    "duplicate-sender": (
        lambda s, sk, it: tuple(sorted((*it, (5, dict(it)[5])))), "two ciphertexts"),
    "fewer-than-t": (lambda s, sk, it: it[: s.config.threshold - 1], "threshold"),
    "empty": (lambda s, sk, it: (), "threshold"),
}


@pytest.mark.parametrize("name", sorted(BUNDLE_TAMPERS))
def test_ciphertext_bundle_refusals(complete_config: SessionConfig, name: str) -> None:
    tamper, match = BUNDLE_TAMPERS[name]
    s, share_keys, bundles = _bundle_session(complete_config)
    bad = CiphertextBundle(tamper(s, share_keys, bundles[ME].ciphertexts))
    assert bad != bundles[ME]
    refuses(s, ME, bad, match)
    finish_exact(s, ME, bundles, "masked-input")


def test_ciphertext_from_non_neighbour(harary_cfg: SessionConfig) -> None:
    s, share_keys, bundles = _bundle_session(harary_cfg)
    me = harary_cfg.cohort[0]
    stranger = next(v for v in harary_cfg.cohort
                    if v != me and v not in harary_cfg.neighbours(me))
    some_ct = next(iter(dict(share_keys[stranger].ciphertexts).values()))
    bad = CiphertextBundle(_with(bundles[me].ciphertexts, stranger, some_ct))
    refuses(s, me, bad, "not a known peer")
    finish_exact(s, me, bundles, "masked-input")


# --- UnmaskRequest -------------------------------------------------------------------------
def _unmask_session(config: SessionConfig, drops: dict | None = None) -> tuple[Session, dict]:
    s = Session(config, seed=4)
    return s, s.to_unmasking(drops)


UNMASK_TAMPERS: dict[str, tuple[Callable[[UnmaskRequest, int], UnmaskRequest], str]] = {
    "alive-and-dropped": (lambda r, t: UnmaskRequest(r.alive, (5,)), "both alive and dropped"),
    "me-dropped": (
        lambda r, t: UnmaskRequest(tuple(v for v in r.alive if v != ME), (ME,)),
        "this client as dropped",
    ),
    "unknown-alive": (lambda r, t: UnmaskRequest((*r.alive, 999), ()), "did not share"),
    "unknown-dropped": (lambda r, t: UnmaskRequest(r.alive, (999,)), "did not share"),
    "repeated-alive": (
        lambda r, t: UnmaskRequest(tuple(sorted((*r.alive, 5))), ()), "repeats"),
    "repeated-dropped": (
        lambda r, t: UnmaskRequest(tuple(v for v in r.alive if v != 5), (5, 5)), "repeats"),
    "repeated-me": (lambda r, t: UnmaskRequest(tuple(sorted((*r.alive, ME))), ()), "repeats"),
    "fewer-than-t-alive": (
        lambda r, t: UnmaskRequest(tuple(v for v in r.alive if v <= ME)[: t - 1], ()),
        "threshold",
    ),
    "fewer-than-t-alive-rest-dropped": (  # alive = (1, 2, 3, 4), t = 5
        lambda r, t: UnmaskRequest(r.alive[: t - 1], r.alive[t - 1:]),
        "threshold",
    ),
}


@pytest.mark.parametrize("name", sorted(UNMASK_TAMPERS))
def test_unmask_request_refusals(complete_config: SessionConfig, name: str) -> None:
    tamper, match = UNMASK_TAMPERS[name]
    s, requests = _unmask_session(complete_config)
    bad = tamper(requests[ME], complete_config.threshold)
    assert bad != requests[ME]
    refuses(s, ME, bad, match)
    finish_exact(s, ME, requests, "unmasking")


@pytest.mark.parametrize("where", ["alive", "dropped"])
def test_unmask_names_client_that_dropped_before_share_keys(
    complete_config: SessionConfig, where: str
) -> None:
    """Client 6 advertised keys but never sent ShareKeys: ME holds no share of it."""
    s, requests = _unmask_session(complete_config, {"share-keys": {6}})
    req = requests[ME]
    assert 6 not in req.alive and 6 not in req.dropped
    if where == "alive":
        bad = UnmaskRequest(tuple(sorted((*req.alive, 6))), req.dropped)
    else:
        bad = UnmaskRequest(req.alive, tuple(sorted((*req.dropped, 6))))
    refuses(s, ME, bad, "did not share")
    finish_exact(s, ME, requests, "unmasking")


def test_unmask_names_client_that_never_advertised(complete_config: SessionConfig) -> None:
    s, requests = _unmask_session(complete_config, {"advertise": {7}})
    refuses(s, ME, UnmaskRequest(requests[ME].alive, (7,)), "did not share")
    finish_exact(s, ME, requests, "unmasking")


def test_genuine_unmask_releases_one_share_kind_per_peer(complete_config: SessionConfig) -> None:
    """With dropouts at masked-input: b-shares for the alive, s-shares for the dropped,
    never both for one peer, in every client's response."""
    s, requests = _unmask_session(complete_config, {"masked-input": {6}})
    responses = s.respond(requests)
    for u, resp in responses.items():
        req = requests[u]
        kinds = {owner: kind for owner, kind, _ in resp.shares}
        assert len(kinds) == len(resp.shares)
        assert kinds == {**dict.fromkeys((v for v in req.alive if v != u),
                                         ShareKind.SELF_MASK_SEED),
                         **dict.fromkeys(req.dropped, ShareKind.MASK_KEY)}
        assert s.clients[u].released == kinds
    assert all(dict(s.clients[u].released)[6] is ShareKind.MASK_KEY for u in responses)
    s.close(responses)
    s.assert_exact()


@pytest.mark.parametrize("second", ["same", "swapped", "all-dropped", "all-alive"])
def test_no_second_unmask_request(complete_config: SessionConfig, second: str) -> None:
    """After one valid answer, any further request (e.g. alive and dropped swapped, which
    would hand out the other share of each peer) is refused and releases nothing."""
    s, requests = _unmask_session(complete_config, {"masked-input": {6}})
    client = s.clients[ME]
    req = requests[ME]
    client.handle(req)
    released = client.released
    assert released
    others = tuple(v for v in req.alive if v != ME)
    follow_up = {
        "same": req,
        "swapped": UnmaskRequest(tuple(sorted((ME, *req.dropped))), others),
        "all-dropped": UnmaskRequest((ME,), tuple(sorted((*others, *req.dropped)))),
        "all-alive": UnmaskRequest(tuple(sorted((*req.alive, *req.dropped))), ()),
    }[second]
    with pytest.raises(ProtocolError):
        client.handle(follow_up)
    assert client.released == released
    assert client.state is ClientState.DONE


# --- construction ---------------------------------------------------------------------------
def test_constructor_refusals() -> None:
    """Bad construction arguments are refused (ConfigError or ProtocolError)."""
    cfg = SessionConfig.create(cohort(N), 4, (1 << 32) - 5, min_cohort=5)
    good = np.zeros(4, dtype=np.uint32)
    ClientProtocol(cfg, 1, good)
    with pytest.raises(SecAggError, match="cohort"):
        ClientProtocol(cfg, 999, good)
    with pytest.raises(SecAggError, match="dtype"):
        ClientProtocol(cfg, 1, good.astype(np.uint64))
    with pytest.raises(SecAggError, match="elements"):
        ClientProtocol(cfg, 1, np.zeros(5, dtype=np.uint32))
    with pytest.raises(SecAggError, match="elements"):
        ClientProtocol(cfg, 1, np.zeros((2, 2), dtype=np.uint32))
    for bad in (cfg.modulus, (1 << 32) - 1):
        vec = good.copy()
        vec[2] = bad
        with pytest.raises(SecAggError, match=r"\[0, R\)"):
            ClientProtocol(cfg, 1, vec)


# --- order and Abort -----------------------------------------------------------------------
def test_messages_out_of_order(complete_config: SessionConfig) -> None:
    s = Session(complete_config, seed=5)
    c = s.clients[ME]
    dummy_request = UnmaskRequest(tuple(complete_config.cohort), ())
    # before start(): nothing is expected
    for msg in (KeyBroadcast(()), CiphertextBundle(()), dummy_request):
        before = client_snapshot(c)
        with pytest.raises(ProtocolError, match="not expected"):
            c.handle(msg)
        assert client_snapshot(c) == before
    kb = s.to_share_keys()
    # awaiting KeyBroadcast
    for msg in (CiphertextBundle(()), dummy_request):
        before = client_snapshot(c)
        with pytest.raises(ProtocolError, match="not expected"):
            c.handle(msg)
        assert client_snapshot(c) == before
    with pytest.raises(ProtocolError):
        c.start()
    share_keys = s.respond(kb)
    bundles = s.close(share_keys)
    # awaiting CiphertextBundle: an UnmaskRequest now would be answered before masking
    for msg in (kb[ME], dummy_request):
        before = client_snapshot(c)
        with pytest.raises(ProtocolError, match="not expected"):
            c.handle(msg)
        assert client_snapshot(c) == before
        assert c.released == {}
    requests = s.close(s.respond(bundles))
    for msg in (kb[ME], bundles[ME]):
        with pytest.raises(ProtocolError, match="not expected"):
            c.handle(msg)
    s.finish(requests)
    s.assert_exact()
    for msg in (kb[ME], bundles[ME], requests[ME]):
        with pytest.raises(ProtocolError):
            c.handle(msg)


def test_client_messages_are_not_server_messages(complete_config: SessionConfig) -> None:
    s = Session(complete_config)
    adverts = s.advertise()
    c = s.clients[ME]
    before = client_snapshot(c)
    with pytest.raises(ProtocolError):
        c.handle(adverts[5])  # type: ignore[arg-type]
    assert client_snapshot(c) == before
    assert isinstance(adverts[5], AdvertiseKeys)


@pytest.mark.parametrize("stage", ["before-start", "share-keys", "masked-input", "unmasking"])
def test_abort_moves_to_aborted(complete_config: SessionConfig, stage: str) -> None:
    s = Session(complete_config, seed=6)
    c = s.clients[ME]
    pending: object = None
    if stage != "before-start":
        pending = kb = s.to_share_keys()
        if stage != "share-keys":
            pending = bundles = s.close(s.respond(kb))
            if stage == "unmasking":
                pending = s.close(s.respond(bundles))
    assert c.handle(Abort("server gave up")) is None
    assert c.state is ClientState.ABORTED
    assert c.abort_reason == "server gave up"
    assert c.released == {}
    if isinstance(pending, dict):
        with pytest.raises(ProtocolError):
            c.handle(pending[ME])
    # a second Abort changes nothing
    c.handle(Abort("again"))
    assert c.state is ClientState.ABORTED and c.abort_reason == "server gave up"


def test_abort_after_done_keeps_done(complete_config: SessionConfig) -> None:
    s = Session(complete_config, seed=7)
    s.run()
    c = s.clients[ME]
    released = c.released
    assert c.state is ClientState.DONE
    c.handle(Abort("late"))
    assert c.state is ClientState.DONE and c.released == released
