"""The attack scenarios (spec §19): what each malicious party does.

Server scenarios (S1-S11) play a malicious server against honest clients; most
send their tampered message first and the genuine one after it, so one run
shows both that the client refused the attack and that the refusal changed
nothing (the session still completes on the genuine message). Client scenarios
(C1-C5) play malicious clients against the honest server, which must exclude
them or abort and never publish a wrong sum.

Each scenario says, per mode, whether the protocol defends it: several attacks
are defeated only in active mode (signed keys, the ConsistencyCheck round, the
client's policy), and the semi-honest run then shows the breach instead of
pretending otherwise.
"""

from __future__ import annotations

import dataclasses
import enum
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from secagg import graph as graphs
from secagg import masking
from secagg.config import SessionConfig
from secagg.crypto import shamir
from secagg.crypto.aead import open_sealed, seal_once
from secagg.crypto.agreement import X25519PrivateKey
from secagg.crypto.signatures import SigningKey
from secagg.errors import ConfigError
from secagg.graph import GraphKind
from secagg.identity import advertise_statement, view_statement
from secagg.messages import (
    AdvertiseKeys,
    CiphertextBundle,
    ConsistencyRequest,
    ConsistencySignature,
    KeyBroadcast,
    KeyEntry,
    MaskedInput,
    Message,
    ShareKeys,
    UnmaskRequest,
    UnmaskResponse,
)
from secagg.packing import pack, unpack

from .harness import DIM, TASK_A, TASK_B, Attack, Harness, Setting, session_config
from .strategy import policy_options

COMPLETE, HARARY = GraphKind.COMPLETE, GraphKind.HARARY


class Expect(enum.Enum):
    """What the protocol promises against a scenario in one mode."""

    DEFENDED = "defended"
    NOT_DEFENDED = "not defended"  # by design: the mode's threat model excludes it
    NOT_APPLICABLE = "n/a"  # the attacked mechanism does not exist in this mode


@dataclass(frozen=True)
class Scenario:
    """One attack: who misbehaves, how, and what each mode promises against it."""

    id: str
    name: str
    summary: str
    kind: str  # "server" or "client"
    make: Callable[[Setting], Attack]
    semi_honest: Expect
    active: Expect = Expect.DEFENDED
    why_not: str = ""  # for NOT_DEFENDED / NOT_APPLICABLE: the design reason
    graphs: tuple[GraphKind, ...] = (COMPLETE,)
    #: audit rule that must flag the transcript (server scenarios, defended runs)
    audit_rule: str | None = None
    #: whether a defence needs an honest client's refusal; False for spec-conformant
    #: servers (S13 only closes rounds), judged by the oracle alone
    needs_refusal: bool = True

    def expect(self, setting: Setting) -> Expect:
        return self.active if setting.active else self.semi_honest


# --- helpers ------------------------------------------------------------------------------
def _first_then_genuine(honest: Mapping[int, Message], targets: set[int],
                        make: Callable[[int, Message], list[Message | bytes]],
                        ) -> dict[int, list[Message | bytes]]:
    """For each target: the tampered messages ``make`` builds, then the genuine one."""
    out: dict[int, list[Message | bytes]] = {u: [m] for u, m in honest.items()}
    for u, m in honest.items():
        if u in targets:
            out[u] = [*make(u, m), m]
    return out


def _view_messages(h: Harness, r: int, honest: Mapping[int, Message]) -> set[int]:
    """Clients that get a survivor view (request or view to sign) when round r closes."""
    return {u for u, m in honest.items() if isinstance(m, UnmaskRequest | ConsistencyRequest)
            and u in h.honest}


def _share_round(h: Harness) -> int:
    """The round whose close asks for shares: 2 (semi-honest) or 3 (active)."""
    return 3 if h.active else 2


def _alive_neighbour(h: Harness, u: int, m: UnmaskRequest | ConsistencyRequest) -> int:
    nbrs = set(h.config.neighbours(u))
    return min(v for v in m.alive if v != u and v in nbrs)


def _sorted(ids: set[int] | list[int]) -> tuple[int, ...]:
    return tuple(sorted(ids))


# --- S1: both shares of one client --------------------------------------------------------
class BothShares(Attack):
    """Ask a client for both shares of one peer: in one request (the peer listed alive and
    dropped), and again after it answered (the peer now dropped)."""

    def server_messages(self, h: Harness, r: int, honest: Mapping[int, Message]
                        ) -> dict[int, list[Message | bytes]]:
        targets = _view_messages(h, r, honest)
        if r == 2 and h.active:  # the view to sign, first
            def to_sign(u: int, m: Message) -> list[Message | bytes]:
                assert isinstance(m, ConsistencyRequest)
                v = _alive_neighbour(h, u, m)
                return [dataclasses.replace(m, dropped=_sorted({*m.dropped, v}))]
            return _first_then_genuine(honest, targets, to_sign)
        if r != _share_round(h):
            return super().server_messages(h, r, honest)
        out = super().server_messages(h, r, honest)
        for u in targets:
            m = honest[u]
            assert isinstance(m, UnmaskRequest | ConsistencyRequest)
            v = _alive_neighbour(h, u, m)
            both = dataclasses.replace(m, dropped=_sorted({*m.dropped, v}))
            other = dataclasses.replace(m, alive=tuple(x for x in m.alive if x != v),
                                        dropped=_sorted({*m.dropped, v}))
            out[u] = [both, m, other]
        return out


# --- S2: different U3 sets ----------------------------------------------------------------
class SplitViews(Attack):
    """Tell some neighbours of a target v that v survived (for b-shares of v) and the others
    that v dropped (for s-shares of v), helped by corrupt neighbours of v that give both;
    then relay to every client the largest set of signatures that agrees with its view."""

    def setup(self, h: Harness) -> None:
        cfg = h.config
        t = cfg.threshold
        self.target = v = max(cfg.cohort)
        nbrs = sorted(cfg.neighbours(v))
        k = len(nbrs)
        # active: the most the config tolerates, its declared corrupt clients; semi-honest:
        # the fewest that make the split succeed (the semi-honest model allows < t of them)
        count = cfg.corrupt_count if h.active else max(0, 2 * t - k)
        count = min(count, t - 1, k - 2)
        self.corrupt = frozenset(nbrs[:count])
        honest_nbrs = [x for x in nbrs if x not in self.corrupt]
        size_a = min(max(1, t - count), len(honest_nbrs) - 1)
        self.told_alive = frozenset(honest_nbrs[:size_a])
        self.told_dropped = frozenset(honest_nbrs[size_a:])

    def server_messages(self, h: Harness, r: int, honest: Mapping[int, Message]
                        ) -> dict[int, list[Message | bytes]]:
        v = self.target
        if r == 2:
            out = super().server_messages(h, r, honest)
            for u in self.told_dropped & set(honest):
                m = honest[u]
                if isinstance(m, UnmaskRequest | ConsistencyRequest):
                    out[u] = [dataclasses.replace(m, alive=tuple(x for x in m.alive if x != v),
                                                  dropped=_sorted({*m.dropped, v}))]
            return out
        out = super().server_messages(h, r, honest)
        if r == 3 and h.active:
            for u in sorted(h.honest):
                if isinstance(h.accepted.get((u, 2)), ConsistencyRequest):
                    out[u] = [self._relay(h, u)]
        return out

    def _relay(self, harness: Harness, victim: int) -> Message:
        """The signed request with the most signatures that agree with what ``victim`` signed."""
        return relay_request(harness, victim, self.corrupt)

    @staticmethod
    def _truth(harness: Harness) -> dict[int, _Status]:
        """Who really sent a masked input (alive) and who shared keys but did not (dropped)."""
        masked = {c for c, m in harness.received(2).items() if isinstance(m, MaskedInput)}
        shared = {c for c, m in harness.received(1).items() if isinstance(m, ShareKeys)}
        return {**dict.fromkeys(shared - masked, _Status.DROPPED),
                **dict.fromkeys(masked, _Status.ALIVE)}


class _Status(enum.Enum):
    """A client's status in a survivor view."""

    ALIVE = "alive"
    DROPPED = "dropped"


def _domain(cfg: SessionConfig, client: int) -> frozenset[int]:
    """A client and its neighbours: the part of a view its signature covers."""
    return frozenset(cfg.neighbours(client)) | {client}


def _statuses(view: ConsistencyRequest) -> dict[int, _Status]:
    return {**dict.fromkeys(view.alive, _Status.ALIVE),
            **dict.fromkeys(view.dropped, _Status.DROPPED)}


def relay_request(harness: Harness, victim: int, corrupt: frozenset[int]) -> ConsistencyRequest:
    """The signed request for ``victim`` with the most signatures that agree with its view.

    Starting from the view the victim signed, take every honest neighbour whose own
    signed view agrees with everything decided so far on its neighbourhood, then add
    the corrupt neighbours (signing whatever completes the picture truthfully). Shared
    by S2 and the explorer's split views.
    """
    cfg = harness.config
    signed_views = _honest_signed_views(harness)
    signatures = {peer: m.signature for peer, m in harness.received(3).items()
                  if isinstance(m, ConsistencySignature)}
    status: dict[int, _Status | None] = dict.fromkeys(_domain(cfg, victim))
    status.update(_statuses(signed_views[victim]))
    candidates = [peer for peer in signed_views[victim].alive
                  if peer != victim and peer in cfg.neighbours(victim)]
    signers: list[int] = []
    for peer in candidates:
        if peer in corrupt or peer not in signed_views or peer not in signatures:
            continue
        theirs = _statuses(signed_views[peer])
        region = _domain(cfg, peer)
        if all(status.get(member, theirs.get(member)) == theirs.get(member)
               for member in region):
            status.update({member: theirs.get(member) for member in region})
            signers.append(peer)
    truth = SplitViews._truth(harness)
    for peer in candidates:
        if peer in corrupt:
            for member in _domain(cfg, peer):
                status.setdefault(member, truth.get(member))
            signers.append(peer)
    return _signed_request(harness, corrupt, status, signers, signatures)


def _honest_signed_views(harness: Harness) -> dict[int, ConsistencyRequest]:
    """The round-2 request each honest client accepted (the view it then signed)."""
    views: dict[int, ConsistencyRequest] = {}
    for client in harness.config.cohort:
        accepted = harness.accepted.get((client, 2))
        if isinstance(accepted, ConsistencyRequest) and client in harness.honest:
            views[client] = accepted
    return views


def _signed_request(harness: Harness, corrupt: frozenset[int],
                    status: dict[int, _Status | None], signers: list[int],
                    signatures: dict[int, bytes]) -> ConsistencyRequest:
    """A request for ``status`` carrying the signers' signatures (corrupt ones sign now)."""
    alive = _sorted([z for z, s in status.items() if s is _Status.ALIVE])
    dropped = _sorted([z for z, s in status.items() if s is _Status.DROPPED])
    entries = []
    for signer in sorted(signers):
        if signer in corrupt:
            region = _domain(harness.config, signer)
            mine = ([z for z in alive if z in region], [z for z in dropped if z in region])
            entries.append((signer, harness.sign_view(signer, *mine)))
        else:
            entries.append((signer, signatures[signer]))
    return ConsistencyRequest(alive, dropped, tuple(entries))


# --- S3: key substitution -----------------------------------------------------------------
class KeySubstitution(Attack):
    """Man in the middle on a target v: show v the adversary's encryption key for every
    peer, and every peer the adversary's key for v; decrypt v's shares, re-encrypt
    everything so that the session goes on."""

    def setup(self, h: Harness) -> None:
        self.target = max(h.config.cohort)
        self.peers = sorted(h.config.neighbours(self.target))
        self.e_keys = {w: h.adversary_key(receiver=w) for w in self.peers}  # v -> "w"
        self.f_keys = {w: h.adversary_key(receiver=self.target) for w in self.peers}  # w -> "v"
        self.tampered: dict[int, KeyBroadcast] = {}

    def server_messages(self, h: Harness, r: int, honest: Mapping[int, Message]
                        ) -> dict[int, list[Message | bytes]]:
        v = self.target
        if r == 0:
            for u, m in honest.items():
                if not isinstance(m, KeyBroadcast):
                    continue
                if u == v:
                    self.tampered[u] = KeyBroadcast(tuple(
                        dataclasses.replace(e, enc_pk=self.e_keys[e.client_id].public_key)
                        if e.client_id in self.e_keys else e for e in m.entries))
                elif u in self.f_keys:
                    self.tampered[u] = KeyBroadcast(tuple(
                        dataclasses.replace(e, enc_pk=self.f_keys[u].public_key)
                        if e.client_id == v else e for e in m.entries))
            return _first_then_genuine(honest, set(self.tampered),
                                       lambda u, m: [self.tampered[u]])
        if r == 1:
            return {u: [self._reencrypt(h, u, m)] for u, m in honest.items()}
        return super().server_messages(h, r, honest)

    def _fooled(self, h: Harness, u: int) -> bool:
        return u in self.tampered and h.accepted.get((u, 0)) == self.tampered[u]

    def _reencrypt(self, h: Harness, u: int, m: Message) -> Message:
        if not isinstance(m, CiphertextBundle) or not self._fooled(h, u):
            return m
        v, sid = self.target, h.config.session_id
        adverts = {x: a for x, a in h.received(0).items() if isinstance(a, AdvertiseKeys)}
        shares = {x: dict(s.ciphertexts) for x, s in h.received(1).items()
                  if isinstance(s, ShareKeys)}
        pk = {x: a.enc_pk for x, a in adverts.items()}
        items = []
        for sender, ct in m.ciphertexts:
            if u == v and sender in self.e_keys and self._fooled(h, sender):
                e, f = self.e_keys[sender], self.f_keys[sender]
                plain = _open(f, shares[sender][v], sid, sender, v, pk[sender], f.public_key)
                ct = _seal(e, plain, sid, sender, v, e.public_key, pk[v])
            elif sender == v and u in self.f_keys and self._fooled(h, v):
                e, f = self.e_keys[u], self.f_keys[u]
                plain = _open(e, shares[v][u], sid, v, u, pk[v], e.public_key)
                ct = _seal(f, plain, sid, v, u, f.public_key, pk[u])
            items.append((sender, ct))
        return CiphertextBundle(tuple(items))


def _open(key: X25519PrivateKey, ct: bytes, sid: bytes, sender: int, receiver: int,
          sender_pk: bytes, receiver_pk: bytes) -> bytes:
    peer_pk = sender_pk if key.public_key == receiver_pk else receiver_pk
    k, associated = _share_cipher(key, peer_pk, sid, sender, receiver, sender_pk, receiver_pk)
    return open_sealed(k, ct, associated)


def _seal(key: X25519PrivateKey, plain: bytes, sid: bytes, sender: int, receiver: int,
          sender_pk: bytes, receiver_pk: bytes) -> bytes:
    peer_pk = receiver_pk if key.public_key == sender_pk else sender_pk
    k, associated = _share_cipher(key, peer_pk, sid, sender, receiver, sender_pk, receiver_pk)
    return seal_once(k, plain, associated)


def _share_cipher(key: X25519PrivateKey, peer_pk: bytes, sid: bytes, sender: int,
                  receiver: int, sender_pk: bytes, receiver_pk: bytes) -> tuple[bytes, bytes]:
    """The share-encryption key from ``key`` and ``peer_pk``, and the ciphertext's
    associated data (spec §8.2), as the adversary computes them."""
    k = masking.share_key(key.exchange(peer_pk), sid, sender, receiver, sender_pk, receiver_pk)
    return k, masking.share_associated_data(sid, sender, receiver, sender_pk, receiver_pk)


# --- S4: reflection -----------------------------------------------------------------------
class Reflection(Attack):
    """Hand a client its own ciphertext to a peer as if the peer had sent it."""

    def server_messages(self, h: Harness, r: int, honest: Mapping[int, Message]
                        ) -> dict[int, list[Message | bytes]]:
        if r != 1:
            return super().server_messages(h, r, honest)
        own = {x: dict(s.ciphertexts) for x, s in h.received(1).items()
               if isinstance(s, ShareKeys)}

        def reflect(u: int, m: Message) -> list[Message | bytes]:
            assert isinstance(m, CiphertextBundle)
            v = m.ciphertexts[0][0]
            return [CiphertextBundle(tuple((s, own[u][v] if s == v else ct)
                                           for s, ct in m.ciphertexts))]

        targets = {u for u, m in honest.items() if isinstance(m, CiphertextBundle)
                   and m.ciphertexts and u in h.honest and u in own}
        return _first_then_genuine(honest, targets, reflect)


# --- S5 / S6: replays ---------------------------------------------------------------------
class ReplaySession(Attack):
    """Replay to each client what it was sent in an earlier session of the same cohort and
    identities (the previous FL round): key list, ciphertexts, and in active mode the
    signed unmask request. (A semi-honest unmask request carries no session binding:
    replaying one is an inconsistent view, S2.)"""

    def setup(self, h: Harness) -> None:
        previous = Harness(h.setting, _Previous(h.config), identities=h.identities or None)
        previous.run()
        self.previous: dict[tuple[int, int], bytes] = {}
        for rec in previous.transcript().records:
            if rec.direction.value == "down":
                self.previous.setdefault((rec.round, rec.client), rec.data)

    def server_messages(self, h: Harness, r: int, honest: Mapping[int, Message]
                        ) -> dict[int, list[Message | bytes]]:
        rounds = (0, 1, 3) if h.active else (0, 1)
        if r not in rounds:
            return super().server_messages(h, r, honest)
        targets = {u for u in honest if u in h.honest and (r, u) in self.previous}
        return _first_then_genuine(honest, targets, lambda u, m: [self.previous[(r, u)]])


class _Previous(Attack):
    """The honest earlier session a replay draws from (one round index before)."""

    def __init__(self, config: SessionConfig) -> None:
        self._config = dataclasses.replace(config, round_index=config.round_index - 1)

    def config(self, setting: Setting) -> SessionConfig:
        return self._config


class ReplayRound(Attack):
    """Replay, within the session, the message of an earlier round: the key list when the
    ciphertexts are due, the ciphertexts when the view is due, the unsigned view as the
    signed request (active), the unmask request again after the answer (semi-honest)."""

    def server_messages(self, h: Harness, r: int, honest: Mapping[int, Message]
                        ) -> dict[int, list[Message | bytes]]:
        earlier = {1: 0, 2: 1, 3: 2}.get(r)
        if earlier is None:
            return super().server_messages(h, r, honest)
        targets = {u for u in honest if u in h.honest and (u, earlier) in h.accepted}
        out = _first_then_genuine(honest, targets, lambda u, m: [h.accepted[(u, earlier)]])
        if r == 2 and not h.active:
            for u in targets:
                out[u].append(honest[u])  # the same request again, after the answer
        return out


# --- S7: bad keys -------------------------------------------------------------------------
#: spec §4.3: libsodium's low-order list (little-endian), then p and a set bit 255
BAD_KEYS: tuple[bytes, ...] = (
    bytes(32),
    b"\x01" + bytes(31),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
)


class BadKeys(Attack):
    """Inject low-order and non-canonical keys, a duplicate of another peer's key, the
    client's own key as a peer's, and keys the client never advertised as its own."""

    def server_messages(self, h: Harness, r: int, honest: Mapping[int, Message]
                        ) -> dict[int, list[Message | bytes]]:
        if r != 0:
            return super().server_messages(h, r, honest)

        def variants(u: int, m: Message) -> list[Message | bytes]:
            assert isinstance(m, KeyBroadcast)
            others = [e for e in m.entries if e.client_id != u]
            mine = next(e for e in m.entries if e.client_id == u)
            v, w = others[0], others[1]

            def swap(cid: int, *, enc_pk: bytes | None = None,
                     mask_pk: bytes | None = None) -> KeyBroadcast:
                def changed(e: KeyEntry) -> KeyEntry:
                    return dataclasses.replace(
                        e, enc_pk=e.enc_pk if enc_pk is None else enc_pk,
                        mask_pk=e.mask_pk if mask_pk is None else mask_pk)

                return KeyBroadcast(tuple(changed(e) if e.client_id == cid else e
                                          for e in m.entries))

            high = bytes([*v.enc_pk[:31], v.enc_pk[31] | 0x80])
            out: list[Message | bytes] = [swap(v.client_id, enc_pk=k) for k in (*BAD_KEYS, high)]
            out.append(swap(v.client_id, mask_pk=w.mask_pk))  # duplicate of w's key
            out.append(swap(v.client_id, enc_pk=mine.enc_pk))  # the client's own key
            out.append(swap(u, enc_pk=X25519PrivateKey.generate().public_key))  # not its own
            return out

        targets = {u for u, m in honest.items() if isinstance(m, KeyBroadcast) and u in h.honest}
        return _first_then_genuine(honest, targets, variants)


# --- S8: alive set below t ----------------------------------------------------------------
class AliveBelowThreshold(Attack):
    """Claim that all but t - 1 of a client's surviving neighbours dropped (asking for
    s-shares of survivors, and a sum over a tiny set)."""

    def server_messages(self, h: Harness, r: int, honest: Mapping[int, Message]
                        ) -> dict[int, list[Message | bytes]]:
        if r not in (2, _share_round(h)):
            return super().server_messages(h, r, honest)
        t = h.config.threshold

        def shrink(u: int, m: Message) -> list[Message | bytes]:
            assert isinstance(m, UnmaskRequest | ConsistencyRequest)
            nbrs = set(h.config.neighbours(u))
            keep = [x for x in m.alive if x in nbrs][: t - 1]
            moved = [x for x in m.alive if x in nbrs and x not in keep]
            return [dataclasses.replace(m, alive=_sorted({u, *keep}),
                                        dropped=_sorted({*m.dropped, *moved}))]

        return _first_then_genuine(honest, _view_messages(h, r, honest), shrink)


# --- S9: consistency signatures (active only) ---------------------------------------------
class BadSignatures(Attack):
    """Relay forged, server-made, missing, duplicated, swapped and self signatures in the
    signed unmask request."""

    def server_messages(self, h: Harness, r: int, honest: Mapping[int, Message]
                        ) -> dict[int, list[Message | bytes]]:
        if r != 3:
            return super().server_messages(h, r, honest)
        t, sid = h.config.threshold, h.config.session_id
        own = {x: m.signature for x, m in h.received(3).items()
               if isinstance(m, ConsistencySignature)}
        server_key = SigningKey.generate()

        def variants(u: int, m: Message) -> list[Message | bytes]:
            assert isinstance(m, ConsistencyRequest)
            sigs = list(m.signatures)
            (a, sig_a), (b, _) = sigs[0], sigs[1]
            full = h.config.degree >= h.config.n - 1
            dom = set(h.config.cohort) if full else set(h.config.neighbours(a)) | {a}
            forged_by_server = server_key.sign(view_statement(
                sid, a, [x for x in m.alive if x in dom], [x for x in m.dropped if x in dom]))

            def with_sigs(entries: list[tuple[int, bytes]]) -> ConsistencyRequest:
                return dataclasses.replace(m, signatures=tuple(entries))

            duplicate = with_sigs([sigs[0], *sigs])  # the same signer twice: raw bytes
            return [
                with_sigs([(a, os.urandom(64)), *sigs[1:]]),
                with_sigs([(a, forged_by_server), *sigs[1:]]),
                with_sigs(sigs[: t - 1]),
                duplicate.encode(),
                with_sigs([sigs[0], (b, sig_a), *sigs[2:]]),
                with_sigs(sorted([*sigs, (u, own[u])])),
            ]

        targets = {u for u, m in honest.items() if isinstance(m, ConsistencyRequest)
                   and len(m.signatures) >= 2 and u in h.honest and u in own}
        return _first_then_genuine(honest, targets, variants)


# --- S10: model-hash mismatch -------------------------------------------------------------
class ModelHashMismatch(Attack):
    """Serve one client another model (the Pasquini et al. attack): (1) with the common
    config, (2, active mode) with a config carrying the other model's hash, whose keys the
    server then relays to the client's peers."""

    def setup(self, h: Harness) -> None:
        ids = sorted(h.honest)
        self.same_config, self.own_config = ids[0], ids[1]
        self.misled = frozenset({self.same_config, self.own_config} if h.active
                                else {self.same_config})

    def client_config(self, h: Harness, u: int) -> tuple[SessionConfig, dict[str, object], bool]:
        cfg = h.config
        if u == self.same_config:
            options = h.default_options(u, cfg)
            if h.active:
                options["expected_task_hash"] = TASK_B
            return cfg, options, True
        if u == self.own_config and h.active:
            other = dataclasses.replace(cfg, task_hash=TASK_B)
            options = h.default_options(u, other)
            options["expected_task_hash"] = TASK_B
            return other, options, True
        return super().client_config(h, u)

    def server_messages(self, h: Harness, r: int, honest: Mapping[int, Message]
                        ) -> dict[int, list[Message | bytes]]:
        if r != 0 or not h.active:
            return super().server_messages(h, r, honest)
        x = self.own_config
        advert = h.received(0).get(x)
        if not isinstance(advert, AdvertiseKeys):
            return super().server_messages(h, r, honest)
        entry = KeyEntry(x, advert.enc_pk, advert.mask_pk, advert.signature)
        nbrs = set(h.config.neighbours(x))
        targets = {u for u, m in honest.items() if isinstance(m, KeyBroadcast) and u in nbrs}
        out = _first_then_genuine(honest, targets, lambda u, m: [KeyBroadcast(tuple(sorted(
            (*m.entries, entry), key=lambda e: e.client_id)))])  # type: ignore[attr-defined]
        peers = {e.client_id: e for m in honest.values() if isinstance(m, KeyBroadcast)
                 for e in m.entries if e.client_id in nbrs}
        out[x] = [KeyBroadcast(tuple(sorted((entry, *peers.values()),
                                            key=lambda e: e.client_id)))]
        return out


# --- S11: cohort below the minimum --------------------------------------------------------
class SmallCohort(Attack):
    """Offer a 5-client session (config min_cohort lowered to 3): a sum over five clients
    reveals nearly each one's input."""

    def config(self, setting: Setting) -> SessionConfig:
        return session_config(dataclasses.replace(setting, graph=COMPLETE), n=5, min_cohort=3)

    def client_config(self, h: Harness, u: int) -> tuple[SessionConfig, dict[str, object], bool]:
        cfg, options, _ = super().client_config(h, u)
        return cfg, options, True


# --- S12: a bundle from exactly t peers -------------------------------------------------
class ThresholdPeers(Attack):
    """With no corrupt client: give a target v ciphertexts from exactly t peers W (so y_v
    is masked only with them), then ask v's neighbours for v's b-shares (v alive, as is
    true) and, spread over the other clients, for the s-shares of every peer in W (each
    told that some of W dropped). Each request is valid on its own; together they unmask
    PRG(b_v) and every PRG(s_vw) in y_v (issue 12, finding 8)."""

    def config(self, setting: Setting) -> SessionConfig:
        return session_config(setting, n=14 if setting.graph is COMPLETE else None)

    def setup(self, h: Harness) -> None:
        cfg = h.config
        self.target = v = max(cfg.cohort)
        self.peers = frozenset(sorted(cfg.neighbours(v))[: cfg.threshold])
        self.views: dict[int, Message] = {}

    def server_messages(self, h: Harness, r: int, honest: Mapping[int, Message]
                        ) -> dict[int, list[Message | bytes]]:
        out = super().server_messages(h, r, honest)
        v = self.target
        if r == 1 and isinstance(honest.get(v), CiphertextBundle):
            m = honest[v]
            assert isinstance(m, CiphertextBundle)
            out[v] = [CiphertextBundle(tuple(c for c in m.ciphertexts if c[0] in self.peers))]
        elif r == 2:
            for u, dropped in self._assign(h, honest).items():
                m = honest[u]
                assert isinstance(m, UnmaskRequest | ConsistencyRequest)
                self.views[u] = dataclasses.replace(
                    m, alive=tuple(x for x in m.alive if x not in dropped),
                    dropped=_sorted({*m.dropped, *dropped}))
                out[u] = [self.views[u]]
        elif r == 3 and h.active:
            sigs = tuple(sorted((x, m.signature) for x, m in h.received(3).items()
                                if isinstance(m, ConsistencySignature)))
            for u, view in self.views.items():
                assert isinstance(view, ConsistencyRequest)
                nbrs = set(h.config.neighbours(u))
                out[u] = [dataclasses.replace(view, signatures=tuple(
                    (x, sig) for x, sig in sigs if x in nbrs and x in view.alive))]
        return out

    def _assign(self, h: Harness, honest: Mapping[int, Message]) -> dict[int, set[int]]:
        """For each peer w of W: t clients (not w, not v) to ask for w's s-share, each asked
        about as few peers as keep t others alive in its request (least loaded first)."""
        t, v = h.config.threshold, self.target
        views = {u: m for u, m in honest.items() if u != v and u in h.honest
                 and isinstance(m, UnmaskRequest | ConsistencyRequest)}
        room = {u: len(m.alive) - 1 - t for u, m in views.items()}
        asked: dict[int, set[int]] = {u: set() for u in views}
        for w in sorted(self.peers):
            able = [u for u, m in views.items() if u != w and room[u] > len(asked[u])
                    and w in m.alive]
            for u in sorted(able, key=lambda x: (len(asked[x]) - room[x], x))[:t]:
                asked[u].add(w)
        return {u: ws for u, ws in asked.items() if ws}


# --- S13: partial sums by drop pattern ---------------------------------------------------
class DropPattern(Attack):
    """Spec-conformant closing only (spec §8.0): close round 1 for all but two runs of k/2
    consecutive ring positions, so they never send a masked input. The survivors' graph
    splits in two and each part's sum is learnable (issue 12, finding 1). No message is
    tampered with: the defence is the server's survivor floor and the clients' refusal to
    unmask on a disconnected view."""

    def setup(self, h: Harness) -> None:
        cfg = h.config
        order = graphs.permutation(cfg.cohort, cfg.session_id)
        half, n = max(1, cfg.degree // 2), cfg.n
        self.dropped = frozenset(order[:half] + order[n // 2: n // 2 + half])

    def server_messages(self, h: Harness, r: int, honest: Mapping[int, Message]
                        ) -> dict[int, list[Message | bytes]]:
        out = super().server_messages(h, r, honest)
        if r == 1:
            for u in self.dropped:
                out.pop(u, None)
        return out


# --- S14, S15: rate downgrade and permutation grinding -----------------------------------
#: The corruption rate the scenario's deployment assumes (the clients' own policy, issue 12
#: finding 2): 2 corrupt clients at n = 20.
POLICY_CORRUPTION = 0.1


def _downgraded(setting: Setting, round_index: int) -> SessionConfig:
    """n = 20 Harary with declared γ = δ = 0: the finder gives (k, t) = (2, 2)."""
    return SessionConfig.create(range(1, 21), DIM, 1 << 32, graph=HARARY, dropout_rate=0.0,
                                corruption_rate=0.0, mode=setting.mode,
                                round_index=round_index, task_hash=TASK_A)


class RateDowngrade(Attack):
    """Declare γ = δ = 0 (Harary (2, 2) at n = 20) with two corrupt clients (within the
    deployment's γ = 0.1); the victim is a client whose only neighbours they are, found by
    trying round indices until the two corrupt clients sit two apart on the ring. They
    decrypt t = 2 shares of both of its secrets: its input is learnable."""

    grind_victim = False

    def config(self, setting: Setting) -> SessionConfig:
        corrupt = {1, 2}
        for index in range(7, 7 + 4096):
            cfg = _downgraded(setting, index)
            victims = [u for u in cfg.cohort if set(cfg.neighbours(u)) <= corrupt]
            if self.grind_victim:
                victims = [u for u in victims if u == 20]
            if victims:
                self.victim = victims[0]
                return cfg
        raise ConfigError("no round index surrounds a victim")  # pragma: no cover

    def setup(self, h: Harness) -> None:
        self.corrupt = frozenset({1, 2})

    def client_config(self, h: Harness, u: int) -> tuple[SessionConfig, dict[str, object], bool]:
        cfg, options, _ = super().client_config(h, u)
        return cfg, {**options, **policy_options(cfg.mode, POLICY_CORRUPTION)}, True


class PermutationGrinding(RateDowngrade):
    """The victim (client 20) and the corrupt clients (1, 2) are fixed first; the server
    grinds ``round_index`` until the permutation makes them the victim's only neighbours
    (spec §12.2 d; about n^2/2 tries at n = 20)."""

    grind_victim = True


# --- S16: asymmetric bundles --------------------------------------------------------------
class AsymmetricBundles(ThresholdPeers):
    """S12 with asymmetric bundles: v gets ciphertexts from exactly t peers W and each w in W
    gets a bundle without v's, so v masks with W while W does not mask with v; the server
    then asks v's neighbours for v's b-shares and others for W's s-shares. Harary only: on
    the complete graph only the n - 1 - t < t peers outside W can give v's b-shares."""

    def server_messages(self, h: Harness, r: int, honest: Mapping[int, Message]
                        ) -> dict[int, list[Message | bytes]]:
        out = super().server_messages(h, r, honest)
        v = self.target
        if r == 1:
            for w in self.peers:
                m = honest.get(w)
                if isinstance(m, CiphertextBundle):
                    out[w] = [CiphertextBundle(tuple(c for c in m.ciphertexts if c[0] != v))]
        elif r == 2:  # W never heard of v: leave it out of their views
            for w in self.peers:
                req = out[w][-1] if w in out else None
                if isinstance(req, UnmaskRequest | ConsistencyRequest):
                    self.views[w] = dataclasses.replace(
                        req, alive=tuple(x for x in req.alive if x != v),
                        dropped=tuple(x for x in req.dropped if x != v))
                    out[w] = [self.views[w]]
        return out


# --- client scenarios ---------------------------------------------------------------------
class MaskedLength(Attack):
    """Two clients send masked vectors of the wrong length and of the wrong bit width."""

    def setup(self, h: Harness) -> None:
        self.malicious = frozenset(sorted(h.config.cohort)[:2])

    def client_messages(self, h: Harness, r: int, u: int, message: Message) -> list[bytes]:
        if not isinstance(message, MaskedInput):
            return [message.encode()]
        y = unpack(message.packed, message.bits, message.count, h.inputs[u].dtype)
        if u == min(self.malicious):
            short = y[:-1]
            return [MaskedInput(u, message.bits, short.size, pack(short, message.bits)).encode()]
        narrow = message.bits - 1
        y &= (1 << narrow) - 1
        return [MaskedInput(u, narrow, y.size, pack(y, narrow)).encode()]


class MaskedRange(Attack):
    """With R = 2^32 - 5, a client sends a masked element >= R (it fits the 32-bit width)."""

    def config(self, setting: Setting) -> SessionConfig:
        return session_config(setting, modulus=(1 << 32) - 5)

    def setup(self, h: Harness) -> None:
        self.malicious = frozenset({min(h.config.cohort)})

    def client_messages(self, h: Harness, r: int, u: int, message: Message) -> list[bytes]:
        if not isinstance(message, MaskedInput):
            return [message.encode()]
        y = unpack(message.packed, message.bits, message.count, h.inputs[u].dtype)
        y[0] = h.config.modulus + 2
        return [MaskedInput(u, message.bits, message.count, pack(y, message.bits)).encode()]


def _bogus(message: UnmaskResponse) -> UnmaskResponse:
    """The same response with every share replaced by a random field element."""
    return UnmaskResponse(message.sender, tuple(
        (owner, kind, (int.from_bytes(os.urandom(33), "big") % shamir.PRIME).to_bytes(33, "big"))
        for owner, kind, _ in message.shares))


class BogusShares(Attack):
    """The lowest-id client (whose shares are in every default reconstruction subset)
    sends random in-field shares; another sends a share outside the field."""

    def setup(self, h: Harness) -> None:
        ids = sorted(h.config.cohort)
        self.malicious = frozenset(ids[:2])

    def client_messages(self, h: Harness, r: int, u: int, message: Message) -> list[bytes]:
        if not isinstance(message, UnmaskResponse):
            return [message.encode()]
        if u == min(self.malicious):
            return [_bogus(message).encode()]
        owner, kind, _ = message.shares[0]
        out_of_field = shamir.PRIME.to_bytes(33, "big")
        return [UnmaskResponse(u, ((owner, kind, out_of_field), *message.shares[1:])).encode()]


class BogusSharesMajority(Attack):
    """n - t clients send random shares: no t-subset of any honest owner's shares is
    clean, so the server must abort (and must not publish a wrong sum)."""

    def setup(self, h: Harness) -> None:
        cfg = h.config
        self.malicious = frozenset(sorted(cfg.cohort)[: cfg.n - cfg.threshold])

    def client_messages(self, h: Harness, r: int, u: int, message: Message) -> list[bytes]:
        if isinstance(message, UnmaskResponse):
            return [_bogus(message).encode()]
        return [message.encode()]


class ConflictingDuplicates(Attack):
    """A client sends every message twice, the second one different (fresh keys, another
    commitment, another masked vector, another signature, other shares)."""

    def setup(self, h: Harness) -> None:
        self.malicious = frozenset({min(h.config.cohort)})

    def client_messages(self, h: Harness, r: int, u: int, message: Message) -> list[bytes]:
        first = message.encode()
        if isinstance(message, AdvertiseKeys):
            enc, mask = X25519PrivateKey.generate(), X25519PrivateKey.generate()
            sig = b""
            if h.active:
                sig = h.identities[u].sign(advertise_statement(
                    h.config.session_id, u, enc.public_key, mask.public_key))
            second: Message = AdvertiseKeys(u, enc.public_key, mask.public_key, sig)
        elif isinstance(message, ShareKeys):
            second = dataclasses.replace(message, self_mask_commitment=bytes(32))
        elif isinstance(message, MaskedInput):
            y = unpack(message.packed, message.bits, message.count, h.inputs[u].dtype)
            y[0] ^= 1
            second = dataclasses.replace(message, packed=pack(y, message.bits))
        elif isinstance(message, ConsistencySignature):
            second = dataclasses.replace(message, signature=os.urandom(64))
        elif isinstance(message, UnmaskResponse):
            second = _bogus(message)
        else:
            return [first]
        return [first, second.encode()]


# --- the catalogue ------------------------------------------------------------------------
SCENARIOS: tuple[Scenario, ...] = (
    Scenario("S1", "both-shares", "ask a client for both shares of one peer", "server",
             lambda s: BothShares(), Expect.DEFENDED, graphs=(COMPLETE, HARARY),
             audit_rule="A8"),
    Scenario("S2", "split-views", "tell different clients different U3 sets", "server",
             lambda s: SplitViews(), Expect.NOT_DEFENDED,
             why_not="no ConsistencyCheck round: each client checks only its own request "
             "(spec §12.2 a)", graphs=(COMPLETE, HARARY), audit_rule="A7"),
    Scenario("S3", "key-substitution", "substitute the adversary's keys for a client's",
             "server", lambda s: KeySubstitution(), Expect.NOT_DEFENDED,
             why_not="keys are not signed: a man in the middle on both sides goes unnoticed "
             "(spec §3.3, §12.2 b)", graphs=(COMPLETE, HARARY), audit_rule="A3"),
    Scenario("S4", "reflection", "reflect a client's own ciphertext back to it", "server",
             lambda s: Reflection(), Expect.DEFENDED, audit_rule="A4"),
    Scenario("S5", "replay-session", "replay messages of an earlier session", "server",
             lambda s: ReplaySession(), Expect.DEFENDED, audit_rule="A3"),
    Scenario("S6", "replay-round", "replay a message of an earlier round", "server",
             lambda s: ReplayRound(), Expect.DEFENDED, audit_rule="A1"),
    Scenario("S7", "bad-keys", "inject low-order, duplicate, own and foreign keys", "server",
             lambda s: BadKeys(), Expect.DEFENDED, graphs=(COMPLETE, HARARY),
             audit_rule="A3"),
    Scenario("S8", "alive-below-t", "claim an alive set smaller than t", "server",
             lambda s: AliveBelowThreshold(), Expect.DEFENDED, graphs=(COMPLETE, HARARY),
             audit_rule="A6"),
    Scenario("S9", "bad-signatures",
             "relay forged, missing or duplicate consistency signatures", "server",
             lambda s: BadSignatures(), Expect.NOT_APPLICABLE,
             why_not="semi-honest mode has no consistency signatures (inconsistent views "
             "there: S2)", graphs=(COMPLETE, HARARY), audit_rule="A9"),
    Scenario("S10", "model-hash", "serve one client a different model", "server",
             lambda s: ModelHashMismatch(), Expect.NOT_DEFENDED,
             why_not="the model-hash check is opt-in for semi-honest clients (spec §15.8)",
             audit_rule="A3"),
    Scenario("S11", "small-cohort", "offer a cohort below the minimum", "server",
             lambda s: SmallCohort(), Expect.NOT_DEFENDED,
             why_not="the client's cohort floor is opt-in in semi-honest mode (spec §15.8)",
             audit_rule="A2"),
    Scenario("S12", "threshold-peers",
             "ciphertexts from exactly t peers, their mask keys asked of others", "server",
             lambda s: ThresholdPeers(), Expect.NOT_DEFENDED,
             why_not="each client checks only its own bundle and request: with no corrupt "
             "client the server learns an input (spec §12.2 a)", graphs=(COMPLETE, HARARY),
             audit_rule="A4"),
    Scenario("S13", "drop-pattern",
             "two runs of k/2 ring positions dropped at masked-input: partial sums",
             "server", lambda s: DropPattern(), Expect.DEFENDED, graphs=(HARARY,),
             needs_refusal=False),
    Scenario("S14", "rate-downgrade",
             "declared rates 0 (Harary (2, 2)); two corrupt clients surround a victim",
             "server", lambda s: RateDowngrade(), Expect.NOT_DEFENDED,
             why_not="semi-honest clients accept any declared rate (spec §12.2 c; the "
             "client policy is opt-in)", graphs=(HARARY,)),
    Scenario("S15", "permutation-grinding",
             "round_index ground until chosen corrupt clients surround a chosen victim",
             "server", lambda s: PermutationGrinding(), Expect.NOT_DEFENDED,
             why_not="the server chooses round_index (spec §12.2 d)", graphs=(HARARY,)),
    Scenario("S16", "asymmetric-bundles",
             "v's bundle from exactly t peers, theirs without v; their mask keys asked",
             "server", lambda s: AsymmetricBundles(), Expect.NOT_DEFENDED,
             why_not="each client checks only its own bundle and request (spec §12.2 a)",
             graphs=(HARARY,), audit_rule="A4"),
    Scenario("C1", "masked-length", "masked vectors of the wrong length or width", "client",
             lambda s: MaskedLength(), Expect.DEFENDED),
    Scenario("C2", "masked-range", "masked vector with an element >= R", "client",
             lambda s: MaskedRange(), Expect.DEFENDED),
    Scenario("C3", "bogus-shares", "random in-field shares and an out-of-field share",
             "client", lambda s: BogusShares(), Expect.DEFENDED),
    Scenario("C4", "bogus-shares-majority", "n - t clients send random shares", "client",
             lambda s: BogusSharesMajority(), Expect.DEFENDED),
    Scenario("C5", "conflicting-duplicates", "every message twice, the second different",
             "client", lambda s: ConflictingDuplicates(), Expect.DEFENDED),
)
