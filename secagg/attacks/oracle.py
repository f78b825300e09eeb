"""The oracle: what could the adversary compute from what it holds? (spec §19.2)

Why: a client refusing a tampered message is necessary but not the point; the
point is that after the session the adversary cannot unmask any honest
client's input. The oracle therefore works from the adversary's knowledge
only (every byte its server received, the keys it generated, its corrupt
clients' secrets) and checks, after the session:

1. **shares**: for no honest client v does it hold t or more shares of v's
   self-mask seed *and* t or more shares of v's mask key, counting each
   shareholder of v once (in SecAgg+ only v's neighbours hold shares of v).
   Shares come from UnmaskResponses it received and from every ciphertext it
   can open (those addressed to corrupt clients, or to keys it substituted);
2. **sum size**: it can unmask a sum only over a cohort of at least the
   clients' minimum (10) and over at least t + 1 clients;
3. **model consistency**: no client that was served another model is in a
   sum it can unmask or in the published result;
4. **canary**: no honest client's input appears in any byte it received,
   neither packed as on the wire nor as raw array bytes, as a whole vector or
   as any window of :data:`WINDOW` consecutive elements.

When condition 1 fails the oracle also tries to *use* the shares, rebuilding
the victim's input from its masked input exactly as an attacker would; a
recovered canary is the proof that the breach is real and not an accounting
artefact.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from secagg import masking
from secagg.config import DEFAULT_MIN_COHORT, SessionConfig
from secagg.crypto import shamir
from secagg.crypto.aead import open_sealed
from secagg.crypto.agreement import X25519PrivateKey, public_key_matches
from secagg.errors import SecAggError
from secagg.kernels.arith import add_into, sub_into
from secagg.messages import (
    SHARE_LEN,
    AdvertiseKeys,
    CiphertextBundle,
    KeyBroadcast,
    MaskedInput,
    Message,
    ShareKeys,
    ShareKind,
    UnmaskResponse,
)
from secagg.packing import bit_width, pack, unpack
from secagg.wire import Reader

from .harness import Harness

_M = TypeVar("_M", bound=Message)

#: Length, in elements, of the input windows searched for in the received bytes.
WINDOW = 4


@dataclass(frozen=True)
class OracleVerdict:
    """The oracle's findings; ``holds`` when the adversary learned nothing it must not."""

    breaches: tuple[str, ...]
    recovered: tuple[int, ...]  # honest clients whose input the adversary rebuilt
    max_shares: dict[int, tuple[int, int]]  # honest client -> (b-shares, s-shares) held

    @property
    def holds(self) -> bool:
        return not self.breaches


def evaluate(h: Harness) -> OracleVerdict:
    """Judge the adversary's knowledge after ``h`` ran."""
    shares = _collect_shares(h)
    breaches: list[str] = []
    held: dict[int, tuple[int, int]] = {}
    unmaskable: set[int] = set()
    double: list[int] = []
    for v in sorted(h.honest):
        cfg = h.client_configs[v]
        b = len(shares[ShareKind.SELF_MASK_SEED].get(v, {}))
        s = len(shares[ShareKind.MASK_KEY].get(v, {}))
        held[v] = (b, s)
        if b >= cfg.threshold:
            unmaskable.add(v)
            if s >= cfg.threshold:
                double.append(v)
    for v in double:
        b, s = held[v]
        breaches.append(f"holds {b} b-shares and {s} s-shares of client {v} "
                        f"(t = {h.client_configs[v].threshold})")
    masked_from = {sender for sender, m in h.knowledge.messages(2) if isinstance(m, MaskedInput)}
    if unmaskable:
        cfg = h.client_configs[min(unmaskable)]
        members = unmaskable | (set(h.attack.corrupt) & masked_from)
        if cfg.n < DEFAULT_MIN_COHORT:
            breaches.append(f"can unmask a sum over a cohort of {cfg.n} clients, below the "
                            f"minimum of {DEFAULT_MIN_COHORT}")
        if len(members) < cfg.threshold + 1:
            breaches.append(f"can unmask a sum over only {len(members)} clients "
                            f"(fewer than t + 1 = {cfg.threshold + 1})")
    included = set(h.result.included) if h.result is not None else set()
    for v in sorted(h.attack.misled):
        if v in unmaskable or v in included:
            breaches.append(f"client {v}, served another model, is in a sum the adversary "
                            "can unmask")
    breaches.extend(_canary_leaks(h))
    recovered = tuple(v for v in double if _recover_input(h, v, shares))
    for v in recovered:
        breaches.append(f"recovered client {v}'s input (the canary) from its masked input")
    return OracleVerdict(tuple(breaches), recovered, held)


# --- shares the adversary holds -----------------------------------------------------------
def _collect_shares(h: Harness) -> dict[ShareKind, dict[int, dict[int, bytes]]]:
    """kind -> owner -> holder -> share, from responses and from every openable ciphertext."""
    out: dict[ShareKind, dict[int, dict[int, bytes]]] = {
        ShareKind.SELF_MASK_SEED: defaultdict(dict), ShareKind.MASK_KEY: defaultdict(dict)}
    for sender, msg in h.knowledge.messages():
        if isinstance(msg, UnmaskResponse):
            for owner, kind, share in msg.shares:
                out[kind][owner].setdefault(sender, share)
    adverts: dict[int, list[bytes]] = defaultdict(list)
    for sender, msg in h.knowledge.messages(0):
        if isinstance(msg, AdvertiseKeys) and msg.enc_pk not in adverts[sender]:
            adverts[sender].append(msg.enc_pk)
    keys: list[tuple[int | None, X25519PrivateKey]] = [
        *h.knowledge.enc_keys, *h.knowledge.corrupt_enc_keys.items()]
    sids = {cfg.session_id for cfg in h.client_configs.values()}
    for sender, msg in h.knowledge.messages(1):
        if not isinstance(msg, ShareKeys):
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
                s_share, b_share = r.fixed(SHARE_LEN, "s-share"), r.fixed(SHARE_LEN, "b-share")
                if (named_sender, named_receiver) == (sender, receiver):
                    out[ShareKind.MASK_KEY][sender].setdefault(receiver, s_share)
                    out[ShareKind.SELF_MASK_SEED][sender].setdefault(receiver, b_share)
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
def _recover_input(h: Harness, v: int,
                   shares: dict[ShareKind, dict[int, dict[int, bytes]]]) -> bool:
    """Rebuild v's input as an attacker holding both of v's secrets would; True if it is
    exactly v's canary."""
    cfg: SessionConfig = h.client_configs[v]
    sid, t, R, dim = cfg.session_id, cfg.threshold, cfg.modulus, cfg.dim
    advert, share_keys, masked = (_first(h, v, 0, AdvertiseKeys), _first(h, v, 1, ShareKeys),
                                  _first(h, v, 2, MaskedInput))
    key_list, bundle = h.accepted.get((v, 0)), h.accepted.get((v, 1))
    if (advert is None or share_keys is None or masked is None
            or not isinstance(key_list, KeyBroadcast) or not isinstance(bundle, CiphertextBundle)):
        return False
    commitment = share_keys.self_mask_commitment
    try:
        b_seed = shamir.reconstruct_verified(
            shares[ShareKind.SELF_MASK_SEED][v], t,
            lambda c: masking.self_mask_commitment(sid, v, c) == commitment)
        sk = X25519PrivateKey.from_bytes(shamir.reconstruct_verified(
            shares[ShareKind.MASK_KEY][v], t, lambda c: public_key_matches(c, advert.mask_pk)))
        y = unpack(masked.packed, masked.bits, masked.count, h.inputs[v].dtype)
    except SecAggError:
        return False
    peers = {e.client_id: e.mask_pk for e in key_list.entries}
    x = y.copy()
    scratch = np.empty(dim, dtype=x.dtype)
    masking.expand_self_mask(b_seed, sid, v, dim, R, cfg.prg, out=scratch)
    sub_into(x, scratch, R)
    for w, _ in bundle.ciphertexts:
        try:
            agreed = sk.exchange(peers[w])
        except (KeyError, SecAggError):
            return False
        seed = masking.pairwise_seed(agreed, sid, v, w, advert.mask_pk, peers[w])
        masking.expand_pairwise_mask(seed, sid, v, w, dim, R, cfg.prg, out=scratch)
        if masking.pairwise_sign(v, w) > 0:
            sub_into(x, scratch, R)
        else:
            add_into(x, scratch, R)
    return bool(np.array_equal(x, h.inputs[v]))


def _first(h: Harness, v: int, round_number: int, kind: type[_M]) -> _M | None:
    """The first message of type ``kind`` that client ``v`` sent in ``round_number``."""
    for sender, msg in h.knowledge.messages(round_number):
        if sender == v and isinstance(msg, kind):
            return msg
    return None
