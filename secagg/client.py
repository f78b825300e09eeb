"""Sans-IO client state machine (spec section "Client").

``ClientProtocol`` takes server messages and returns client messages; it never
touches a socket or a clock, so the simulator, the gRPC transport and adapters
drive the very same object. States follow the spec's rounds::

    ADVERTISE_KEYS -> SHARE_KEYS -> MASKED_INPUT -> UNMASKING -> DONE
                                  (any state) -> ABORTED

Every incoming message is validated completely before any state changes: a
refused message raises :class:`~secagg.errors.ProtocolError` (or a subclass),
releases nothing, and leaves the client where it was.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from secagg import masking
from secagg.config import SessionConfig
from secagg.crypto import shamir
from secagg.crypto.aead import open_sealed, seal_once
from secagg.crypto.agreement import X25519PrivateKey, validate_public_key
from secagg.crypto.entropy import Entropy, resolve
from secagg.crypto.prg import mask_dtype
from secagg.errors import (
    ConfigError,
    CryptoError,
    DecryptionError,
    InvalidKeyError,
    ProtocolError,
)
from secagg.kernels.arith import add_into, sub_into
from secagg.messages import (
    SHARE_LEN,
    Abort,
    AdvertiseKeys,
    CiphertextBundle,
    KeyBroadcast,
    KeyEntry,
    MaskedInput,
    ShareKeys,
    ShareKind,
    UnmaskRequest,
    UnmaskResponse,
)
from secagg.packing import bit_width, pack
from secagg.wire import Reader, Writer

PAYLOAD_LEN = 4 + 4 + SHARE_LEN + SHARE_LEN


class ClientState(enum.Enum):
    """Where the client is; named after the round whose server message it awaits."""

    ADVERTISE_KEYS = "advertise-keys"  # start() not called yet
    SHARE_KEYS = "share-keys"  # awaiting KeyBroadcast
    MASKED_INPUT = "masked-input"  # awaiting CiphertextBundle
    UNMASKING = "unmasking"  # awaiting UnmaskRequest
    DONE = "done"
    ABORTED = "aborted"


@dataclass(frozen=True)
class _Peer:
    enc_pk: bytes
    mask_pk: bytes
    enc_agreed: bytes  # X25519(c_u, c_v): computed once, used for both share directions

    def __repr__(self) -> str:
        return "_Peer(<keys hidden>)"


class ClientProtocol:
    """One client's side of one session.

    ``input_vector`` is the client's update already quantized into Z_R (see
    :mod:`secagg.quantize`), of length ``config.dim``. ``entropy`` is for
    reproducible simulations and test vectors only; by default every secret
    comes from the operating system.
    """

    def __init__(
        self,
        config: SessionConfig,
        client_id: int,
        input_vector: np.ndarray,
        *,
        entropy: Entropy | None = None,
    ) -> None:
        if client_id not in config.cohort:
            raise ConfigError(f"client {client_id} is not in the session's cohort")
        vec = np.asarray(input_vector)
        dtype = mask_dtype(config.modulus)
        if vec.shape != (config.dim,) or vec.dtype != dtype:
            raise ConfigError(f"input must be a vector of {config.dim} elements of dtype {dtype}")
        if config.modulus != 1 << (8 * dtype.itemsize) and vec.size and int(vec.max()) >= (
            config.modulus
        ):
            raise ConfigError("input values must lie in [0, R)")
        self.config = config
        self.client_id = client_id
        self._input: np.ndarray | None = np.ascontiguousarray(vec)
        self._entropy = resolve(entropy)
        self._neighbours = frozenset(config.neighbours(client_id))
        self.state = ClientState.ADVERTISE_KEYS
        self.abort_reason: str | None = None
        self._enc_sk: X25519PrivateKey | None = None
        self._mask_sk: X25519PrivateKey | None = None
        self._peers: dict[int, _Peer] = {}  # U1 ∩ N(u), from KeyBroadcast
        self._held: dict[int, tuple[bytes, bytes]] = {}  # v -> (s-share, b-share) of v
        self._released: dict[int, ShareKind] = {}  # v -> which share of v we released
        self._b_seed = b""  # self-mask seed b_u, drawn in ShareKeys, dropped after MaskedInput

    def __repr__(self) -> str:
        return f"ClientProtocol(id={self.client_id}, state={self.state.value})"

    # -- public --------------------------------------------------------------------------
    @property
    def released(self) -> dict[int, ShareKind]:
        """Which share of each peer this client has handed out (at most one kind per peer)."""
        return dict(self._released)

    def start(self) -> AdvertiseKeys:
        """Round 0 (AdvertiseKeys): two fresh X25519 key pairs."""
        self._expect(ClientState.ADVERTISE_KEYS)
        self._enc_sk = X25519PrivateKey.generate(self._entropy)
        self._mask_sk = X25519PrivateKey.generate(self._entropy)
        self.state = ClientState.SHARE_KEYS
        return AdvertiseKeys(self.client_id, self._enc_sk.public_key, self._mask_sk.public_key)

    def handle(
        self, message: KeyBroadcast | CiphertextBundle | UnmaskRequest | Abort
    ) -> ShareKeys | MaskedInput | UnmaskResponse | None:
        """Process one server message; return the reply (None after an Abort)."""
        if isinstance(message, Abort):
            if self.state not in (ClientState.DONE, ClientState.ABORTED):
                self.state = ClientState.ABORTED
                self.abort_reason = message.reason
            return None
        if isinstance(message, KeyBroadcast):
            return self._share_keys(message)
        if isinstance(message, CiphertextBundle):
            return self._masked_input(message)
        if isinstance(message, UnmaskRequest):
            return self._unmask(message)
        raise ProtocolError(f"unexpected message type {type(message).__name__}")

    # -- round 1: ShareKeys --------------------------------------------------------------
    def _share_keys(self, msg: KeyBroadcast) -> ShareKeys:
        self._expect(ClientState.SHARE_KEYS)
        assert self._enc_sk is not None and self._mask_sk is not None
        me = self.client_id
        own = [e for e in msg.entries if e.client_id == me]
        if len(own) != 1:
            raise ProtocolError("key list must contain this client's own keys exactly once")
        if own[0].enc_pk != self._enc_sk.public_key or own[0].mask_pk != self._mask_sk.public_key:
            raise ProtocolError("key list carries keys for this client that it did not advertise")
        peers: dict[int, _Peer] = {}
        seen_keys: set[bytes] = {self._enc_sk.public_key, self._mask_sk.public_key}
        for e in msg.entries:
            if e.client_id == me:
                continue
            if e.client_id in peers:
                raise ProtocolError(f"client {e.client_id} appears twice in the key list")
            if e.client_id not in self._neighbours:
                raise ProtocolError(f"client {e.client_id} is not a neighbour of this client")
            self._check_peer_keys(e, seen_keys)
            try:
                agreed = self._enc_sk.exchange(e.enc_pk)
            except InvalidKeyError:
                raise ProtocolError(f"key agreement with client {e.client_id} failed") from None
            peers[e.client_id] = _Peer(e.enc_pk, e.mask_pk, agreed)
        self._require_threshold(len(peers), "neighbours in the key list")

        sid = self.config.session_id
        b_seed = self._entropy.random_bytes(masking.SEED_LEN)
        xs = sorted(peers)
        t = self.config.threshold
        s_shares = shamir.split(self._mask_sk.secret_bytes(), t, xs, entropy=self._entropy)
        b_shares = shamir.split(b_seed, t, xs, entropy=self._entropy)
        my_pk = self._enc_sk.public_key
        ciphertexts = []
        for v in xs:
            peer = peers[v]
            key = masking.share_key(peer.enc_agreed, sid, me, v, my_pk, peer.enc_pk)
            ad = masking.share_associated_data(sid, me, v, my_pk, peer.enc_pk)
            payload = (
                Writer().u32(me).u32(v).fixed(s_shares[v], SHARE_LEN)
                .fixed(b_shares[v], SHARE_LEN).getvalue()
            )
            ciphertexts.append((v, seal_once(key, payload, ad)))
        commitment = masking.self_mask_commitment(sid, me, b_seed)
        self._peers = peers
        self._b_seed = b_seed
        self.state = ClientState.MASKED_INPUT
        return ShareKeys(me, tuple(ciphertexts), commitment)

    def _check_peer_keys(self, e: KeyEntry, seen: set[bytes]) -> None:
        for key in (e.enc_pk, e.mask_pk):
            if key in seen:
                raise ProtocolError(f"client {e.client_id} reuses a public key already in use")
            seen.add(key)
            try:
                validate_public_key(key)
            except InvalidKeyError:
                raise ProtocolError(f"client {e.client_id} advertised an invalid key") from None

    # -- round 2: MaskedInputCollection ---------------------------------------------------
    def _masked_input(self, msg: CiphertextBundle) -> MaskedInput:
        self._expect(ClientState.MASKED_INPUT)
        assert self._enc_sk is not None and self._mask_sk is not None and self._input is not None
        me, sid, cfg = self.client_id, self.config.session_id, self.config
        held: dict[int, tuple[bytes, bytes]] = {}
        for sender, ct in msg.ciphertexts:
            if sender in held:
                raise ProtocolError(f"two ciphertexts from client {sender}")
            peer = self._peers.get(sender)
            if peer is None:
                raise ProtocolError(f"ciphertext from client {sender}, which is not a known peer")
            held[sender] = self._open_share(sender, peer, ct)
        self._require_threshold(len(held), "peers that shared keys")

        masked = self._input.copy()
        dim, R = cfg.dim, cfg.modulus
        scratch = np.empty(dim, dtype=masked.dtype)
        masking.expand_self_mask(self._b_seed, sid, me, dim, R, cfg.prg, out=scratch)
        add_into(masked, scratch, R)
        for v in sorted(held):
            peer = self._peers[v]
            try:
                agreed = self._mask_sk.exchange(peer.mask_pk)
            except InvalidKeyError:
                raise ProtocolError(f"mask key agreement with client {v} failed") from None
            seed = masking.pairwise_seed(agreed, sid, me, v, self._mask_sk.public_key,
                                         peer.mask_pk)
            masking.expand_pairwise_mask(seed, sid, me, v, dim, R, cfg.prg, out=scratch)
            if masking.pairwise_sign(me, v) > 0:
                add_into(masked, scratch, R)
            else:
                sub_into(masked, scratch, R)
        bits = bit_width(R)
        out = MaskedInput(me, bits, dim, pack(masked, bits))
        # The secrets that produced the masks are no longer needed by this client.
        self._held = held
        self._input = None
        self._b_seed = b""
        self._enc_sk = self._mask_sk = None
        self._peers = {}
        self.state = ClientState.UNMASKING
        return out

    def _open_share(self, sender: int, peer: _Peer, ct: bytes) -> tuple[bytes, bytes]:
        assert self._enc_sk is not None
        me, sid = self.client_id, self.config.session_id
        my_pk = self._enc_sk.public_key
        try:
            key = masking.share_key(peer.enc_agreed, sid, sender, me, peer.enc_pk, my_pk)
            ad = masking.share_associated_data(sid, sender, me, peer.enc_pk, my_pk)
            payload = open_sealed(key, ct, ad)
        except (DecryptionError, CryptoError):
            raise ProtocolError(f"ciphertext from client {sender} failed to authenticate") from None
        if len(payload) != PAYLOAD_LEN:
            raise ProtocolError(f"ciphertext from client {sender} has a malformed payload")
        r = Reader(payload)
        named_sender, named_receiver = r.u32("sender"), r.u32("receiver")
        s_share, b_share = r.fixed(SHARE_LEN, "s-share"), r.fixed(SHARE_LEN, "b-share")
        if named_sender != sender or named_receiver != me:
            raise ProtocolError(f"ciphertext from client {sender} names the wrong sender/receiver")
        return s_share, b_share

    # -- round 4: Unmasking --------------------------------------------------------------
    def _unmask(self, msg: UnmaskRequest) -> UnmaskResponse:
        self._expect(ClientState.UNMASKING)
        me = self.client_id
        alive, dropped = set(msg.alive), set(msg.dropped)
        if len(alive) != len(msg.alive) or len(dropped) != len(msg.dropped):
            raise ProtocolError("unmask request repeats a client id")
        if alive & dropped:
            raise ProtocolError("unmask request lists a client as both alive and dropped")
        if me in dropped:
            raise ProtocolError("unmask request lists this client as dropped")
        if me not in alive:
            raise ProtocolError("unmask request does not list this client as alive")
        for cid in (alive | dropped) - {me}:
            if cid not in self._held:
                raise ProtocolError(
                    f"unmask request names client {cid}, which did not share keys with this client"
                )
        self._require_threshold(len(alive - {me}), "alive neighbours in the unmask request")
        for cid in alive - {me}:
            if self._released.get(cid, ShareKind.SELF_MASK_SEED) is not ShareKind.SELF_MASK_SEED:
                raise ProtocolError(f"both shares of client {cid} were requested")
        for cid in dropped:
            if self._released.get(cid, ShareKind.MASK_KEY) is not ShareKind.MASK_KEY:
                raise ProtocolError(f"both shares of client {cid} were requested")

        shares = []
        for cid in sorted((alive - {me}) | dropped):
            s_share, b_share = self._held[cid]
            if cid in alive:
                shares.append((cid, ShareKind.SELF_MASK_SEED, b_share))
            else:
                shares.append((cid, ShareKind.MASK_KEY, s_share))
        for cid, kind, _ in shares:
            self._released[cid] = kind
        self.state = ClientState.DONE
        return UnmaskResponse(me, tuple(shares))

    # -- helpers -------------------------------------------------------------------------
    def _expect(self, state: ClientState) -> None:
        if self.state is not state:
            raise ProtocolError(
                f"message not expected in state {self.state.value} (expected {state.value})"
            )

    def _require_threshold(self, count: int, what: str) -> None:
        t = self.config.threshold
        if count < t:
            raise ProtocolError(f"only {count} {what}, fewer than the threshold t = {t}")
