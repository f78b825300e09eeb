"""Protocol-level derivations shared by client and server (spec §5, §8.2, §8.3).

Every function binds the session id and both endpoints, so a key or mask of one
session, pair or direction can never be produced for another. The client uses
these to mask; the server uses the same functions to remove the masks of
dropped clients, which is why they live outside both state machines.
"""

from __future__ import annotations

import hashlib

import numpy as np

from secagg.crypto.kdf import encode_context, hkdf
from secagg.crypto.labels import Label
from secagg.crypto.prg import StreamCipher, expand_mask

SEED_LEN = 32


def share_key(agreed: bytes, session_id: bytes, sender: int, receiver: int,
              sender_enc_pk: bytes, receiver_enc_pk: bytes) -> bytes:
    """Key for the single ciphertext ``sender`` -> ``receiver`` (direction-specific, used once)."""
    ctx = encode_context(session_id, sender, receiver, sender_enc_pk, receiver_enc_pk)
    return hkdf(agreed, Label.SHARE_ENCRYPTION, ctx)


def share_associated_data(session_id: bytes, sender: int, receiver: int,
                          sender_enc_pk: bytes, receiver_enc_pk: bytes) -> bytes:
    """Associated data of a share ciphertext: protocol round, session, sender and receiver."""
    return encode_context("share-keys", session_id, sender, receiver, sender_enc_pk,
                          receiver_enc_pk)


def pairwise_seed(agreed: bytes, session_id: bytes, u: int, v: int,
                  mask_pk_u: bytes, mask_pk_v: bytes) -> bytes:
    """s_uv = HKDF(X25519(s_u, s_v)); symmetric in (u, v): the lower id's key comes first."""
    if u > v:
        u, v, mask_pk_u, mask_pk_v = v, u, mask_pk_v, mask_pk_u
    ctx = encode_context(session_id, u, v, mask_pk_u, mask_pk_v)
    return hkdf(agreed, Label.PAIRWISE_MASK_SEED, ctx)


def self_mask_context(session_id: bytes, u: int) -> bytes:
    """PRG context of u's self mask PRG(b_u)."""
    return encode_context("self-mask", session_id, u, 0)


def pairwise_mask_context(session_id: bytes, u: int, v: int) -> bytes:
    """PRG context of the pairwise mask between u and v (symmetric)."""
    lo, hi = (u, v) if u < v else (v, u)
    return encode_context("pairwise-mask", session_id, lo, hi, 0)


def pairwise_sign(u: int, v: int) -> int:
    """+1 when u > v, else -1: u adds sign(u, v) * PRG(s_uv), so each pair cancels."""
    return 1 if u > v else -1


def self_mask_commitment(session_id: bytes, u: int, b_seed: bytes) -> bytes:
    """Hiding commitment to b_u (a uniform 256-bit seed), so the server can check a
    reconstructed b_u and never silently unmask with a wrong one."""
    h = hashlib.sha256(Label.SELF_MASK_COMMITMENT.value + b"|")
    h.update(encode_context(session_id, u))
    h.update(b_seed)
    return h.digest()


def expand_self_mask(b_seed: bytes, session_id: bytes, u: int, dim: int, modulus: int,
                     cipher: StreamCipher, out: np.ndarray | None = None, *,
                     version: int) -> np.ndarray:
    """u's self mask PRG(b_u) (§8.3); ``version`` is the session's PRG version (§4.6),
    required so no caller can expand a version-2 session's mask with version 1."""
    return expand_mask(b_seed, self_mask_context(session_id, u), dim, modulus, cipher=cipher,
                       version=version, out=out)


def expand_pairwise_mask(seed: bytes, session_id: bytes, u: int, v: int, dim: int,
                         modulus: int, cipher: StreamCipher,
                         out: np.ndarray | None = None, *, version: int) -> np.ndarray:
    """The pairwise mask PRG(s_uv) (§8.3), unsigned; ``version`` as for the self mask."""
    return expand_mask(seed, pairwise_mask_context(session_id, u, v), dim, modulus,
                       cipher=cipher, version=version, out=out)
