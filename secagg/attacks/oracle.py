"""The oracle: what could the adversary compute from what it holds? (spec §19.2)

Why: a client refusing a tampered message is necessary but not the point; the
point is that after the session the adversary cannot learn anything about the
honest clients' inputs beyond the sum over all of them. The oracle therefore
works from the adversary's knowledge only (every byte its server received and
sent, the keys it generated, its corrupt clients' secrets) and checks, after
the session:

1. **leakage**: the linear combinations of honest inputs it can compute
   (:mod:`secagg.attacks.leakage`, derived from the spec's masking equations,
   not from the server's code) are nothing, or only the total sum over the
   honest clients whose masked input it holds: no single input, no partial sum.
   Shares come from UnmaskResponses, from corrupt clients, and from every
   ciphertext it can open (keys it substituted). Holding t shares of both of one
   honest client's secrets is reported as such;
2. **sum size**: a sum it can learn is over a cohort of at least the clients'
   minimum (10) and over at least t + 1 clients;
3. **model consistency**: no client that was served another model is in a
   sum it can learn or in the published result;
4. **canary**: no honest client's input appears in any byte it received,
   neither packed as on the wire nor as raw array bytes, as a whole vector or
   as any window of :data:`WINDOW` consecutive elements.

When a single input is learnable the oracle also *uses* the shares, rebuilding
the victim's input from its masked input exactly as an attacker would; a
recovered canary is the proof that the leak is real and not an accounting
artefact.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from secagg import masking
from secagg import messages as msgs
from secagg.config import DEFAULT_MIN_COHORT, SessionConfig
from secagg.crypto import shamir
from secagg.crypto.aead import open_sealed
from secagg.crypto.agreement import X25519PrivateKey, public_key_matches
from secagg.errors import SecAggError
from secagg.kernels.arith import add_into, sub_into
from secagg.packing import bit_width, pack, unpack
from secagg.wire import Reader

from .harness import Harness
from .leakage import AdversaryView, Leakage, RevealedShare, learnable, view_from_messages

_M = TypeVar("_M", bound=msgs.Message)

#: kind -> owner -> holder -> share value: what the adversary can read.
Shares = dict[msgs.ShareKind, dict[int, dict[int, bytes]]]

#: Length, in elements, of the input windows searched for in the received bytes.
WINDOW = 4


@dataclass(frozen=True)
class OracleVerdict:
    """The oracle's findings; ``holds`` when the adversary learned nothing it must not."""

    breaches: tuple[str, ...]
    recovered: tuple[int, ...]  # honest clients whose input the adversary rebuilt
    max_shares: dict[int, tuple[int, int]]  # honest client -> (b-shares, s-shares) held
    leakage: Leakage | None = None  # what it can learn (None: not computed)

    @property
    def holds(self) -> bool:
        return not self.breaches


def adversary_view(h: Harness, shares: Shares | None = None) -> AdversaryView:
    """The adversary's view after ``h`` ran: received and sent bytes, what each client acted
    on, its corrupt clients, and the shares in every ciphertext its keys open (``shares``,
    computed here when not given)."""
    sent = [(r, u, data) for (u, r), items in h.sent.items() for data in items]
    if shares is None:
        shares = _collect_shares(h)
    opened = [RevealedShare(holder, owner, kind) for kind, by_owner in shares.items()
              for owner, by_holder in by_owner.items() for holder in by_holder]
    return view_from_messages(h.config, h.knowledge.received, sent, corrupt=h.attack.corrupt,
                              accepted=h.accepted, opened=opened)


def evaluate(h: Harness) -> OracleVerdict:
    """Judge the adversary's knowledge after ``h`` ran."""
    shares = _collect_shares(h, with_responses=True)
    view = adversary_view(h, shares)
    leak = learnable(view)
    t = view.threshold
    breaches: list[str] = []
    held: dict[int, tuple[int, int]] = {}
    for comp in sorted(leak.leaked_subsets(), key=len):
        breaches.append(f"can learn client {min(comp)}'s input alone" if len(comp) == 1 else
                        f"can learn a partial sum over clients {_ids(comp)} "
                        f"(of {len(leak.senders)} honest senders)")
    for v in sorted(h.honest):
        b = len(view.holders(v, msgs.ShareKind.SELF_MASK_SEED))
        s = len(view.holders(v, msgs.ShareKind.MASK_KEY))
        held[v] = (b, s)
        if b >= t and s >= t:
            breaches.append(f"holds {b} b-shares and {s} s-shares of client {v} (t = {t})")
    breaches.extend(_sum_size(h, view, leak))
    included = set(h.result.included) if h.result is not None else set()
    learnable_ids = set().union(*leak.components) if leak.components else set()
    for v in sorted(h.attack.misled):
        if v in learnable_ids or v in included:
            breaches.append(f"client {v}, served another model, is in a sum the adversary "
                            "can learn")
    breaches.extend(_canary_leaks(h))
    recovered = tuple(v for v in sorted(leak.singles()) if _recover_input(h, view, v, shares))
    for v in recovered:
        breaches.append(f"recovered client {v}'s input (the canary) from its masked input")
    return OracleVerdict(tuple(breaches), recovered, held, leak)


def _sum_size(h: Harness, view: AdversaryView, leak: Leakage) -> list[str]:
    """Spec §2.4, §8.3: a learnable sum must cover >= t + 1 clients of a large enough cohort."""
    if leak.is_nothing():
        return []
    out = []
    cfg = h.config
    if cfg.n < DEFAULT_MIN_COHORT:
        out.append(f"can unmask a sum over a cohort of {cfg.n} clients, below the "
                   f"minimum of {DEFAULT_MIN_COHORT}")
    corrupt_senders = set(view.masked_with) & view.corrupt
    for comp in leak.components:
        if len(comp) > 1 and len(comp) + len(corrupt_senders) < view.threshold + 1:
            out.append(f"can unmask a sum over only {len(comp) + len(corrupt_senders)} clients "
                       f"(fewer than t + 1 = {view.threshold + 1})")
    return out


def _ids(ids: frozenset[int]) -> str:
    return "{" + ", ".join(str(u) for u in sorted(ids)) + "}"


# --- shares the adversary holds -----------------------------------------------------------
def _collect_shares(h: Harness, *, with_responses: bool = False) -> Shares:
    """kind -> owner -> holder -> share, from every ciphertext the adversary's keys open
    (and, with ``with_responses``, from the UnmaskResponses it received)."""
    out: dict[msgs.ShareKind, dict[int, dict[int, bytes]]] = {
        msgs.ShareKind.SELF_MASK_SEED: defaultdict(dict),
        msgs.ShareKind.MASK_KEY: defaultdict(dict),
    }
    for sender, msg in h.knowledge.messages() if with_responses else ():
        if isinstance(msg, msgs.UnmaskResponse) and msg.sender == sender:
            for owner, kind, share in msg.shares:
                out[kind][owner].setdefault(sender, share)
    adverts: dict[int, list[bytes]] = defaultdict(list)
    for sender, msg in h.knowledge.messages(0):
        if isinstance(msg, msgs.AdvertiseKeys) and msg.enc_pk not in adverts[sender]:
            adverts[sender].append(msg.enc_pk)
    keys: list[tuple[int | None, X25519PrivateKey]] = [
        *h.knowledge.enc_keys, *h.knowledge.corrupt_enc_keys.items()]
    sids = {cfg.session_id for cfg in h.client_configs.values()}
    for sender, msg in h.knowledge.messages(1):
        if not isinstance(msg, msgs.ShareKeys):
            continue
        for receiver, ct in msg.ciphertexts:
            for target, key in keys:
                if target is not None and target != receiver:
                    continue
                payload = _open(key, ct, sender, receiver, adverts[sender], sids)
                if payload is None:
                    continue
                r = Reader(payload)
                named_sender, named_receiver = r.u32("sender"), r.u32("receiver")
                s_share = r.fixed(msgs.SHARE_LEN, "s-share")
                b_share = r.fixed(msgs.SHARE_LEN, "b-share")
                if (named_sender, named_receiver) == (sender, receiver):
                    out[msgs.ShareKind.MASK_KEY][sender].setdefault(receiver, s_share)
                    out[msgs.ShareKind.SELF_MASK_SEED][sender].setdefault(receiver, b_share)
                break
    return out


def _open(key: X25519PrivateKey, ct: bytes, sender: int, receiver: int,
          sender_pks: list[bytes], sids: set[bytes]) -> bytes | None:
    for sender_pk in sender_pks:
        try:
            agreed = key.exchange(sender_pk)
        except SecAggError:
            continue
        for sid in sids:
            k = masking.share_key(agreed, sid, sender, receiver, sender_pk, key.public_key)
            ad = masking.share_associated_data(sid, sender, receiver, sender_pk, key.public_key)
            try:
                return open_sealed(k, ct, ad)
            except SecAggError:
                continue
    return None


# --- canary search ------------------------------------------------------------------------
def canary_patterns(h: Harness) -> dict[bytes, int]:
    """Byte strings that would betray an honest input: pattern -> its owner."""
    patterns: dict[bytes, int] = {}
    for u in sorted(h.honest):
        cfg = h.client_configs[u]
        x = h.inputs[u]
        bits = bit_width(cfg.modulus)
        patterns[pack(x, bits)] = u
        patterns[x.tobytes()] = u
        for j in range(max(0, x.size - WINDOW + 1)):
            window = x[j:j + WINDOW]
            patterns[window.tobytes()] = u
            if (j * bits) % 8 == 0:
                full = (WINDOW * bits) // 8
                patterns[pack(window, bits)[:full]] = u
    return {p: u for p, u in patterns.items() if len(p) >= 8}


def _canary_leaks(h: Harness) -> list[str]:
    patterns = canary_patterns(h)
    leaks: set[int] = set()
    blobs = [data for _, _, data in h.knowledge.received]
    for pattern, owner in patterns.items():
        if owner in leaks:
            continue
        if any(pattern in blob for blob in blobs):
            leaks.add(owner)
    return [f"client {u}'s input (canary) appears unmasked in bytes the server received"
            for u in sorted(leaks)]


# --- using the shares ---------------------------------------------------------------------


def _recover_input(h: Harness, view: AdversaryView, v: int, shares: Shares) -> bool:
    """Rebuild v's input as an attacker would: remove PRG(b_v), and every pairwise mask of
    y_v with the mask key of v or of the peer (reconstructed, or a corrupt client's own);
    True if the result is exactly v's canary."""
    cfg: SessionConfig = h.client_configs[v]
    sid, R, dim = cfg.session_id, cfg.modulus, cfg.dim
    share_keys, masked = _first(h, v, 1, msgs.ShareKeys), _first(h, v, 2, msgs.MaskedInput)
    key_list = h.accepted.get((v, 0))
    if share_keys is None or masked is None or not isinstance(key_list, msgs.KeyBroadcast):
        return False
    commitment = share_keys.self_mask_commitment
    try:
        b_seed = shamir.reconstruct_verified(
            shares[msgs.ShareKind.SELF_MASK_SEED][v], view.threshold,
            lambda c: masking.self_mask_commitment(sid, v, c) == commitment)
        y = unpack(masked.packed, masked.bits, masked.count, h.inputs[v].dtype)
    except SecAggError:
        return False
    pks = {e.client_id: e.mask_pk for e in key_list.entries}
    x = y.copy()
    scratch = np.empty(dim, dtype=x.dtype)
    masking.expand_self_mask(b_seed, sid, v, dim, R, cfg.prg, out=scratch,
                             version=cfg.prg_version)
    sub_into(x, scratch, R)
    for w in sorted(view.masked_with.get(v, ())):
        seed = _pair_seed(h, view, v, w, pks, shares)
        if seed is None:
            return False
        masking.expand_pairwise_mask(seed, sid, v, w, dim, R, cfg.prg, out=scratch,
                                     version=cfg.prg_version)
        if masking.pairwise_sign(v, w) > 0:
            sub_into(x, scratch, R)
        else:
            add_into(x, scratch, R)
    return bool(np.array_equal(x, h.inputs[v]))


def _pair_seed(h: Harness, view: AdversaryView, v: int, w: int, pks: dict[int, bytes],
               shares: Shares) -> bytes | None:
    """s_vw from whichever of the two mask keys the adversary holds; None if neither."""
    if v not in pks or w not in pks:
        return None
    for owner, other in ((v, w), (w, v)):
        sk = _mask_key(h, view, owner, pks[owner], shares)
        if sk is None:
            continue
        try:
            agreed = sk.exchange(pks[other])
        except SecAggError:
            return None
        return masking.pairwise_seed(agreed, h.config.session_id, v, w, pks[v], pks[w])
    return None


def _mask_key(h: Harness, view: AdversaryView, owner: int, pk: bytes,
              shares: Shares) -> X25519PrivateKey | None:
    """``owner``'s mask key: a corrupt client's own (its known seed), or t s-shares."""
    if owner in view.corrupt:
        entropy = h.corrupt_entropy(owner)
        X25519PrivateKey.generate(entropy)  # c_u comes first (spec §8.1)
        key = X25519PrivateKey.generate(entropy)
        return key if key.public_key == pk else None
    try:
        return X25519PrivateKey.from_bytes(shamir.reconstruct_verified(
            shares[msgs.ShareKind.MASK_KEY][owner], view.threshold,
            lambda c: public_key_matches(c, pk)))
    except SecAggError:
        return None


def _first(h: Harness, v: int, round_number: int, kind: type[_M]) -> _M | None:
    """The first message of type ``kind`` that client ``v`` sent in ``round_number``."""
    for sender, msg in h.knowledge.messages(round_number):
        if sender == v and isinstance(msg, kind):
            return msg
    return None
