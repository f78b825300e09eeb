"""Registry of every key-derivation label used in secagg (spec §5).

The same registry holds the domain-separation prefixes of the active-mode
signature statements (spec §15.3), so a signed statement can never be
mistaken for a key derivation input or for a statement of another round.

Every HKDF call in the project takes a :class:`Label` member, never a free-form
string, so two purposes can never derive the same key: labels are distinct,
and none is a prefix of another (checked at import time). Adding a label means
adding it here and to ``specs/protocol.md``.
"""

from __future__ import annotations

import enum

_PREFIX = b"secagg/v1/"


class Label(enum.Enum):
    """Domain-separation labels, one per purpose. Values are the exact HKDF info prefixes."""

    #: key that encrypts one client's shares for one neighbour (one direction)
    SHARE_ENCRYPTION = _PREFIX + b"share-encryption-key"
    #: pairwise mask seed s_uv derived from X25519(s_u, s_v)
    PAIRWISE_MASK_SEED = _PREFIX + b"pairwise-mask-seed"
    #: AES/ChaCha key that expands a mask seed into a vector (bound to session and vector)
    MASK_PRG_KEY = _PREFIX + b"mask-prg-key"
    #: key of the chunked mask PRG (version 2, R not a power of two): one per mask, the
    #: chunk index goes into the IV (spec §4.6.1)
    MASK_PRG_CHUNKED_KEY = _PREFIX + b"mask-prg-chunked-key"
    #: session identifier computed by each client from the session binding
    SESSION_ID = _PREFIX + b"session-id"
    #: permutation of client ids for the Harary graph of SecAgg+
    GRAPH_PERMUTATION = _PREFIX + b"graph-permutation"
    #: SHA-256 commitment to a self-mask seed b_u (a hash prefix, not an HKDF label)
    SELF_MASK_COMMITMENT = _PREFIX + b"self-mask-commitment"
    #: deterministic randomness for published test vectors only
    TEST_VECTOR_ENTROPY = _PREFIX + b"test-vector-entropy"
    #: prefix of the statement a client signs over its round-0 keys (active mode; not HKDF)
    SIGNED_ADVERTISE_KEYS = _PREFIX + b"signed/advertise-keys"
    #: prefix of the statement a client signs over the U3 view it was shown (active mode)
    SIGNED_CONSISTENCY_VIEW = _PREFIX + b"signed/consistency-view"
    #: public sign seed of the distributed-DP randomized Hadamard rotation (spec §21.3)
    DP_ROTATION_SIGNS = _PREFIX + b"dp/rotation-signs"
    #: prefix of every step of a client receipt's hash chain (spec §18.6; not HKDF)
    RECEIPT_CHAIN = _PREFIX + b"receipt-chain"
    #: prefix of the statement a client signs over its receipt's chain head (spec §18.6)
    SIGNED_RECEIPT = _PREFIX + b"signed/receipt"
    #: prefix of every entry hash of the server's session log (spec §18.7; not HKDF)
    SESSION_LOG_CHAIN = _PREFIX + b"session-log-chain"
    #: prefix of the statement the server signs over each session-log entry (spec §18.7)
    SIGNED_SESSION_LOG = _PREFIX + b"signed/session-log"


def _check_registry() -> None:
    values = [label.value for label in Label]
    if len(set(values)) != len(values):
        raise RuntimeError("duplicate KDF label")
    for a in values:
        for b in values:
            if a != b and b.startswith(a):
                raise RuntimeError("a KDF label is a prefix of another")


_check_registry()
