"""Sans-IO client state machine (spec §8, §15).

``ClientProtocol`` takes server messages and returns client messages; it never
touches a socket or a clock, so the simulator, the gRPC transport and adapters
drive the very same object. States follow the spec's rounds::

    ADVERTISE_KEYS -> SHARE_KEYS -> MASKED_INPUT -> UNMASKING -> DONE
                                  (any state) -> ABORTED

In active mode (spec §15) the client signs its round-0 keys with its long-term
identity, verifies every peer's signature against the deployment's trust store,
and passes through one more state before unmasking::

    ... -> MASKED_INPUT -> CONSISTENCY_CHECK -> UNMASKING -> DONE

It signs the survivor view it is shown (ConsistencyRequest without signatures)
and releases shares only for a ConsistencyRequest that repeats that view and
carries at least t valid signatures of agreeing views from distinct, known,
alive neighbours.

Every incoming message is validated completely before any state changes: a
refused message raises :class:`~secagg.errors.ProtocolError` (or a subclass),
releases nothing, and leaves the client where it was.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from secagg import graph as graphs
from secagg import masking
from secagg import messages as msgs
from secagg.checks import is_plain_int
from secagg.config import DEFAULT_MIN_COHORT, TASK_HASH_LEN, Mode, SessionConfig
from secagg.crypto import shamir
from secagg.crypto.aead import open_sealed, seal_once
from secagg.crypto.agreement import X25519PrivateKey, validate_public_key
from secagg.crypto.entropy import Entropy, resolve
from secagg.crypto.prg import check_prg_version, mask_dtype
from secagg.errors import (
    ConfigError,
    CryptoError,
    DecryptionError,
    InvalidKeyError,
    ProtocolError,
    SignatureError,
)
from secagg.kernels.arith import add_into, sub_into
from secagg.messages import SHARE_LEN
from secagg.packing import bit_width, pack
from secagg.wire import Reader, Writer

if TYPE_CHECKING:  # active mode only: imported where used, so a semi-honest client
    # (a Flower ClientApp process, one per message) never loads libsodium (issue 19)
    from secagg.crypto.signatures import SigningKey
    from secagg.identity import TrustStore
    from secagg.policy import ClientPolicy

PAYLOAD_LEN = 4 + 4 + SHARE_LEN + SHARE_LEN


class ClientState(enum.Enum):
    """Where the client is; named after the round whose server message it awaits."""

    ADVERTISE_KEYS = "advertise-keys"  # start() not called yet
    SHARE_KEYS = "share-keys"  # awaiting KeyBroadcast
    MASKED_INPUT = "masked-input"  # awaiting CiphertextBundle
    CONSISTENCY_CHECK = "consistency-check"  # active mode: awaiting the view to sign
    UNMASKING = "unmasking"  # awaiting UnmaskRequest (active: the signed ConsistencyRequest)
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

    Client-side policy (spec §15.8), never lowered by anything the server sends:

    * ``identity`` and ``trust_store``: this client's long-term Ed25519 key and
      the deployment's id -> verify key map. Required in active mode; a client
      given them refuses a semi-honest config (a server must not be able to
      switch the signature checks off by choosing the mode).
    * ``expected_task_hash``: the 32-byte hash of the model (task) this client
      actually received and trained on; a config with another ``task_hash`` is
      refused. Required in active mode, so a server that hands different clients
      different models cannot complete a session with them.
    * ``min_cohort``: the smallest cohort this client joins, whatever the
      config's own ``min_cohort`` says. Defaults to 10 in active mode; in
      semi-honest mode only an explicit value is enforced.
    * ``policy``: a :class:`~secagg.policy.ClientPolicy`, the smallest corruption
      and dropout rates the client accepts and its margin against permutation
      grinding (spec §15.8, §16.3). Defaults to ``ClientPolicy()`` in active mode;
      in semi-honest mode only an explicit policy is enforced.
    """

    def __init__(
        self,
        config: SessionConfig,
        client_id: int,
        input_vector: np.ndarray,
        *,
        entropy: Entropy | None = None,
        identity: SigningKey | None = None,
        trust_store: TrustStore | None = None,
        expected_task_hash: bytes | None = None,
        min_cohort: int | None = None,
        policy: ClientPolicy | None = None,
    ) -> None:
        if client_id not in config.cohort:
            raise ConfigError(f"client {client_id} is not in the session's cohort")
        check_prg_version(config.prg_version)  # never mask with a PRG it does not know (§4.6)
        vec = np.asarray(input_vector)
        dtype = mask_dtype(config.modulus)
        if vec.shape != (config.dim,) or vec.dtype != dtype:
            raise ConfigError(f"input must be a vector of {config.dim} elements of dtype {dtype}")
        if config.modulus != 1 << (8 * dtype.itemsize) and vec.size and int(vec.max()) >= (
            config.modulus
        ):
            raise ConfigError("input values must lie in [0, R)")
        self._active = config.mode is Mode.ACTIVE
        _check_policy(config, client_id, identity, trust_store, expected_task_hash, min_cohort)
        if policy is not None or self._active:  # semi-honest by default: no policy to load
            from secagg.policy import ClientPolicy, default_policy

            if policy is not None and not isinstance(policy, ClientPolicy):
                raise ConfigError("policy must be a secagg.policy.ClientPolicy")
            policy = policy if policy is not None else default_policy(config.mode)
            if policy is not None:
                policy.check(config)
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
        self._released: dict[int, msgs.ShareKind] = {}  # v -> which share of v we released
        self._b_seed = b""  # self-mask seed b_u, drawn in ShareKeys, dropped after MaskedInput
        # active mode
        self._identity = identity
        self._trust = trust_store
        self._own_signature = b""  # our round-0 signature, as the server must relay it
        self._view: tuple[tuple[int, ...], tuple[int, ...]] | None = None  # signed (alive, dropped)

    def __repr__(self) -> str:
        return f"ClientProtocol(id={self.client_id}, state={self.state.value})"

    # -- public --------------------------------------------------------------------------
    @property
    def released(self) -> dict[int, msgs.ShareKind]:
        """Which share of each peer this client has handed out (at most one kind per peer)."""
        return dict(self._released)

    def unmasking_state(self) -> dict[int, tuple[bytes, bytes]]:
        """Semi-honest, after MaskedInput: all the client still holds, the peers' shares
        (v -> (s-share, b-share)). With :meth:`resume_unmasking` a client that runs each
        round in a new process continues from it instead of replaying the session, and
        keeps no secret of its own past the masked input (spec §8.3: dropped there)."""
        if self._active or self.state is not ClientState.UNMASKING or self._released:
            raise ConfigError("only a semi-honest client awaiting the unmask request has "
                              "an unmasking state")
        return dict(self._held)

    @classmethod
    def resume_unmasking(cls, config: SessionConfig, client_id: int,
                         held: dict[int, tuple[bytes, bytes]], *,
                         min_cohort: int | None = None) -> ClientProtocol:
        """A semi-honest client in UNMASKING holding ``held`` (from :meth:`unmasking_state`):
        the same checks and the same release rules as the client that computed it."""
        if config.mode is Mode.ACTIVE:
            raise ConfigError("active mode releases shares only for a signed view")
        client = cls(config, client_id, np.zeros(config.dim, dtype=mask_dtype(config.modulus)),
                     min_cohort=min_cohort)
        if not set(held) <= client._neighbours or any(
                len(s) != SHARE_LEN or len(b) != SHARE_LEN for s, b in held.values()):
            raise ConfigError("the held shares must be SHARE_LEN-byte shares of neighbours")
        client._input = None
        client._held = dict(held)
        client.state = ClientState.UNMASKING
        return client

    def start(self) -> msgs.AdvertiseKeys:
        """Round 0 (AdvertiseKeys): two fresh X25519 key pairs (signed in active mode)."""
        self._expect(ClientState.ADVERTISE_KEYS)
        enc_sk = X25519PrivateKey.generate(self._entropy)
        mask_sk = X25519PrivateKey.generate(self._entropy)
        signature = b""
        if self._active:
            from secagg.identity import advertise_statement

            assert self._identity is not None
            signature = self._identity.sign(advertise_statement(
                self.config.session_id, self.client_id, enc_sk.public_key, mask_sk.public_key))
        self._enc_sk, self._mask_sk = enc_sk, mask_sk
        self._own_signature = signature
        self.state = ClientState.SHARE_KEYS
        return msgs.AdvertiseKeys(self.client_id, enc_sk.public_key, mask_sk.public_key, signature)

    def handle(
        self,
        message: msgs.ServerMessage,
    ) -> msgs.ShareKeys | msgs.MaskedInput | msgs.ConsistencySignature | msgs.UnmaskResponse | None:
        """Process one server message; return the reply (None after an Abort)."""
        if isinstance(message, msgs.Abort):
            if self.state not in (ClientState.DONE, ClientState.ABORTED):
                self.state = ClientState.ABORTED
                self.abort_reason = message.reason
                self._drop_secrets()
            return None
        if isinstance(message, msgs.KeyBroadcast):
            return self._share_keys(message)
        if isinstance(message, msgs.CiphertextBundle):
            return self._masked_input(message)
        if isinstance(message, msgs.UnmaskRequest):
            return self._unmask(message)
        if isinstance(message, msgs.ConsistencyRequest):
            return self._consistency(message)
        raise ProtocolError(f"unexpected message type {type(message).__name__}")

    # -- round 1: ShareKeys (spec §8.2) ---------------------------------------------------
    def _share_keys(self, msg: msgs.KeyBroadcast) -> msgs.ShareKeys:
        self._expect(ClientState.SHARE_KEYS)
        assert self._enc_sk is not None and self._mask_sk is not None
        me = self.client_id
        own = [e for e in msg.entries if e.client_id == me]
        if len(own) != 1:
            raise ProtocolError("key list must contain this client's own keys exactly once")
        if own[0].enc_pk != self._enc_sk.public_key or own[0].mask_pk != self._mask_sk.public_key:
            raise ProtocolError("key list carries keys for this client that it did not advertise")
        if self._active and own[0].signature != self._own_signature:
            raise ProtocolError("key list carries a signature for this client that it did not make")
        peers: dict[int, _Peer] = {}
        seen_keys: set[bytes] = {self._enc_sk.public_key, self._mask_sk.public_key}
        seen_identities: set[bytes] = set()
        if self._active:
            assert self._identity is not None
            seen_identities.add(self._identity.verify_key)
        for e in msg.entries:
            if e.client_id == me:
                continue
            if e.client_id in peers:
                raise ProtocolError(f"client {e.client_id} appears twice in the key list")
            if e.client_id not in self._neighbours:
                raise ProtocolError(f"client {e.client_id} is not a neighbour of this client")
            self._check_peer_keys(e, seen_keys)
            if self._active:
                self._check_key_signature(e, seen_identities)
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
        return msgs.ShareKeys(me, tuple(ciphertexts), commitment)

    def _check_key_signature(self, e: msgs.KeyEntry, seen_identities: set[bytes]) -> None:
        """Active mode: e's keys must carry the signature of e's registered identity.

        This is what defeats key substitution (spec §12.2 b): a server that
        relays its own X25519 keys in place of v's cannot sign them as v.
        """
        from secagg.crypto.signatures import verify
        from secagg.identity import advertise_statement

        vk = self._identity_key(e.client_id)
        try:
            verify(vk, advertise_statement(self.config.session_id, e.client_id, e.enc_pk,
                                           e.mask_pk), e.signature)
        except SignatureError:
            raise ProtocolError(
                f"the keys of client {e.client_id} do not carry a valid signature of its identity"
            ) from None
        if vk in seen_identities:
            raise ProtocolError(f"client {e.client_id} uses an identity key of another client")
        seen_identities.add(vk)

    def _identity_key(self, client_id: int) -> bytes:
        from secagg.identity import lookup_verify_key

        assert self._trust is not None
        try:
            vk = lookup_verify_key(self._trust, client_id)
        except ConfigError:
            raise ProtocolError(
                f"the trust store holds an unusable identity key for client {client_id}"
            ) from None
        if vk is None:
            raise ProtocolError(f"client {client_id} has no identity in the trust store")
        return vk

    def _check_peer_keys(self, e: msgs.KeyEntry, seen: set[bytes]) -> None:
        for key in (e.enc_pk, e.mask_pk):
            if key in seen:
                raise ProtocolError(f"client {e.client_id} reuses a public key already in use")
            seen.add(key)
            try:
                validate_public_key(key)
            except InvalidKeyError:
                raise ProtocolError(f"client {e.client_id} advertised an invalid key") from None

    # -- round 2: MaskedInputCollection (spec §8.3) ----------------------------------------
    def _masked_input(self, msg: msgs.CiphertextBundle) -> msgs.MaskedInput:
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
        masking.expand_self_mask(self._b_seed, sid, me, dim, R, cfg.prg, out=scratch,
                                 version=cfg.prg_version)
        add_into(masked, scratch, R)
        for v in sorted(held):
            peer = self._peers[v]
            try:
                agreed = self._mask_sk.exchange(peer.mask_pk)
            except InvalidKeyError:
                raise ProtocolError(f"mask key agreement with client {v} failed") from None
            seed = masking.pairwise_seed(agreed, sid, me, v, self._mask_sk.public_key,
                                         peer.mask_pk)
            masking.expand_pairwise_mask(seed, sid, me, v, dim, R, cfg.prg, out=scratch,
                                         version=cfg.prg_version)
            if masking.pairwise_sign(me, v) > 0:
                add_into(masked, scratch, R)
            else:
                sub_into(masked, scratch, R)
        bits = bit_width(R)
        out = msgs.MaskedInput(me, bits, dim, pack(masked, bits))
        # The secrets that produced the masks are no longer needed by this client.
        self._held = held
        self._input = None
        self._b_seed = b""
        self._enc_sk = self._mask_sk = None
        self._peers = {}
        self.state = ClientState.CONSISTENCY_CHECK if self._active else ClientState.UNMASKING
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

    # -- round 4: Unmasking (spec §8.5, §15.7) ---------------------------------------------
    def _unmask(self, msg: msgs.UnmaskRequest) -> msgs.UnmaskResponse:
        self._expect(ClientState.UNMASKING)
        if self._active:
            raise ProtocolError(
                "active mode: shares are released only for a signed ConsistencyRequest, "
                "never for a plain unmask request"
            )
        alive, dropped = self._check_view(msg.alive, msg.dropped, "unmask request")
        return self._release(alive, dropped)

    def _check_view(self, alive_ids: Sequence[int], dropped_ids: Sequence[int],
                    what: str) -> tuple[set[int], set[int]]:
        """Checks shared by the semi-honest unmask request and the view signed in active mode."""
        me = self.client_id
        alive, dropped = set(alive_ids), set(dropped_ids)
        if len(alive) != len(alive_ids) or len(dropped) != len(dropped_ids):
            raise ProtocolError(f"{what} repeats a client id")
        if alive & dropped:
            raise ProtocolError(f"{what} lists a client as both alive and dropped")
        if me in dropped:
            raise ProtocolError(f"{what} lists this client as dropped")
        if me not in alive:
            raise ProtocolError(f"{what} does not list this client as alive")
        for cid in (alive | dropped) - {me}:
            if cid not in self._held:
                raise ProtocolError(
                    f"{what} names client {cid}, which did not share keys with this client"
                )
        self._require_threshold(len(alive - {me}), f"alive neighbours in the {what}")
        self._check_survivors(alive, self._domain(me), what)
        return alive, dropped

    def _check_survivors(self, alive: set[int], known: frozenset[int] | set[int],
                         what: str) -> None:
        """What a client can check of the survivor floor and connectivity (spec §8.5).

        Harary graphs only (any survivor set of the complete graph is connected).
        ``known`` is the set of clients whose status the request states (D(u); in
        active mode also the signers' neighbourhoods). Every known client not
        alive left the session, so more than floor(δn) of them prove the session
        is past its dropout budget. And if the alive clients reachable from u
        through ``known`` have every neighbour inside ``known``, they are u's
        whole survivor component; fewer than n - floor(δn) of them means the
        survivors are disconnected and unmasking would hand the server the sum of
        this component alone.
        """
        cfg = self.config
        if cfg.graph is not graphs.GraphKind.HARARY or cfg.degree >= cfg.n - 1:
            return
        budget = graphs.tolerated_dropouts(cfg.n, cfg.dropout_ppm)
        gone = len(known - alive)
        if gone > budget:
            raise ProtocolError(
                f"{what} shows {gone} of its neighbours as not surviving, more than the "
                f"{budget} dropouts the session's dropout rate allows"
            )
        component = _closed_component(self.client_id, alive, known, cfg.neighbours)
        if component is not None and component < cfg.n - budget:
            raise ProtocolError(
                f"{what} shows this client in a group of {component} survivors cut off from "
                f"the rest (at least {cfg.n - budget} must survive, connected)"
            )

    def _release(self, alive: set[int], dropped: set[int]) -> msgs.UnmaskResponse:
        """Answer one share per listed neighbour, never both kinds for one client."""
        me = self.client_id
        seed, mask = msgs.ShareKind.SELF_MASK_SEED, msgs.ShareKind.MASK_KEY
        for cid in alive - {me}:
            if self._released.get(cid, seed) is not seed:
                raise ProtocolError(f"both shares of client {cid} were requested")
        for cid in dropped:
            if self._released.get(cid, mask) is not mask:
                raise ProtocolError(f"both shares of client {cid} were requested")

        shares = []
        for cid in sorted((alive - {me}) | dropped):
            s_share, b_share = self._held[cid]
            if cid in alive:
                shares.append((cid, msgs.ShareKind.SELF_MASK_SEED, b_share))
            else:
                shares.append((cid, msgs.ShareKind.MASK_KEY, s_share))
        for cid, kind, _ in shares:
            self._released[cid] = kind
        self._held = {}  # every share this client will ever release is in the response
        self.state = ClientState.DONE
        return msgs.UnmaskResponse(me, tuple(shares))

    # -- active mode: ConsistencyCheck (round 3) and signed unmasking (round 4) ------------
    def _consistency(
        self, msg: msgs.ConsistencyRequest,
    ) -> msgs.ConsistencySignature | msgs.UnmaskResponse:
        if not self._active:
            raise ProtocolError("ConsistencyRequest is only used in active mode")
        if self.state is ClientState.CONSISTENCY_CHECK:
            return self._sign_view(msg)
        self._expect(ClientState.UNMASKING)
        return self._unmask_signed(msg)

    def _sign_view(self, msg: msgs.ConsistencyRequest) -> msgs.ConsistencySignature:
        """Round 3: check the view like an unmask request, then sign it (spec §15.6)."""
        from secagg.identity import view_statement

        if msg.signatures:
            raise ProtocolError("the view to sign must not carry signatures yet")
        self._check_view(msg.alive, msg.dropped, "consistency request")
        alive, dropped = tuple(sorted(msg.alive)), tuple(sorted(msg.dropped))
        assert self._identity is not None
        sig = self._identity.sign(view_statement(self.config.session_id, self.client_id,
                                                 alive, dropped))
        self._view = (alive, dropped)
        self.state = ClientState.UNMASKING
        return msgs.ConsistencySignature(self.client_id, sig)

    def _unmask_signed(self, msg: msgs.ConsistencyRequest) -> msgs.UnmaskResponse:
        """Round 4: release shares only on the signed view, backed by t agreeing signatures.

        Each signer v signed its own view, of its own neighbourhood D(v) = N(v) ∪ {v}.
        The request's lists cover D(u) and every signer's D(v); restricted to D(u)
        they must be exactly the view u signed, and restricted to D(v) they must
        reproduce v's signed statement. So every counted signature says: v was
        shown the same status as u for every client both can see (in SecAgg, the
        same U3 as u, byte for byte).
        """
        from secagg.crypto.signatures import verify
        from secagg.identity import view_statement

        assert self._view is not None
        me, cfg = self.client_id, self.config
        alive, dropped = set(msg.alive), set(msg.dropped)
        if len(alive) != len(msg.alive) or len(dropped) != len(msg.dropped):
            raise ProtocolError("signed unmask request repeats a client id")
        if alive & dropped:
            raise ProtocolError("signed unmask request lists a client as both alive and dropped")
        own = self._domain(me)
        signed_alive, signed_dropped = self._view
        if (_restrict(sorted(alive), own) != signed_alive
                or _restrict(sorted(dropped), own) != signed_dropped):
            raise ProtocolError("signed unmask request does not repeat the view this client signed")
        signers: set[int] = set()
        covered = set(own)
        candidates = set(signed_alive) - {me}
        for v, _ in msg.signatures:
            if v in signers:
                raise ProtocolError(f"two consistency signatures from client {v}")
            if v not in candidates:
                raise ProtocolError(
                    f"consistency signature from client {v}, which is not an alive neighbour "
                    "in the view this client signed"
                )
            signers.add(v)
            if len(covered) < cfg.n:  # (in SecAgg D(u) is already the whole cohort)
                covered.update(self._domain(v))
        if not alive | dropped <= covered:
            raise ProtocolError(
                "signed unmask request names clients outside the neighbourhoods of this client "
                "and its signers"
            )
        self._require_threshold(len(signers), "consistency signatures")
        self._check_survivors(alive, covered, "signed unmask request")
        assert self._identity is not None
        seen_identities = {self._identity.verify_key}
        alive_sorted, dropped_sorted = sorted(alive), sorted(dropped)
        full = cfg.degree >= cfg.n - 1  # SecAgg: every view is the whole U3
        for v, sig in msg.signatures:
            vk = self._identity_key(v)
            if vk in seen_identities:
                raise ProtocolError(f"client {v} signs with an identity key of another client")
            seen_identities.add(vk)
            if full:
                statement = view_statement(cfg.session_id, v, alive_sorted, dropped_sorted)
            else:
                dom = self._domain(v)
                statement = view_statement(cfg.session_id, v, _restrict(alive_sorted, dom),
                                           _restrict(dropped_sorted, dom))
            try:
                verify(vk, statement, sig)
            except SignatureError:
                raise ProtocolError(
                    f"the consistency signature of client {v} does not verify on the view "
                    "this client signed"
                ) from None
        return self._release(set(signed_alive), set(signed_dropped))

    def _domain(self, v: int) -> frozenset[int]:
        """D(v) = N(v) ∪ {v}: the clients whose status v's view states."""
        return frozenset(self.config.neighbours(v)) | {v}

    # -- helpers -------------------------------------------------------------------------
    def _drop_secrets(self) -> None:
        """Forget every secret once aborted: an aborted client answers nothing more, so
        its keys, self-mask seed, input, agreed secrets and peers' shares have no use
        left and should not outlive the session (spec §14 item 11). What it released
        (``released``) and the view it signed are public and kept."""
        self._enc_sk = self._mask_sk = None
        self._b_seed = b""
        self._input = None
        self._peers = {}
        self._held = {}

    def _expect(self, state: ClientState) -> None:
        if self.state is not state:
            raise ProtocolError(
                f"message not expected in state {self.state.value} (expected {state.value})"
            )

    def _require_threshold(self, count: int, what: str) -> None:
        t = self.config.threshold
        if count < t:
            raise ProtocolError(f"only {count} {what}, fewer than the threshold t = {t}")


def _closed_component(me: int, alive: set[int], known: frozenset[int] | set[int],
                      neighbours: Callable[[int], Sequence[int]]) -> int | None:
    """Size of ``me``'s component among ``alive``, if ``known`` shows all of it, else None.

    The search stops (None) at the first alive client with a neighbour whose
    status the request does not state: the component may go on there.
    """
    seen = {me}
    frontier = [me]
    while frontier:
        u = frontier.pop()
        nbrs = neighbours(u)
        if not known.issuperset(nbrs):
            return None
        fresh = alive.intersection(nbrs) - seen
        seen |= fresh
        frontier.extend(fresh)
    return len(seen)


def _restrict(ids: list[int], domain: frozenset[int]) -> tuple[int, ...]:
    """The ascending ids of ``ids`` (already ascending) that lie in ``domain``."""
    return tuple(cid for cid in ids if cid in domain)


def _check_policy(
    config: SessionConfig,
    client_id: int,
    identity: SigningKey | None,
    trust_store: TrustStore | None,
    expected_task_hash: bytes | None,
    min_cohort: int | None,
) -> None:
    """The client's own policy (spec §15.8): refuses before any key is generated."""
    active = config.mode is Mode.ACTIVE
    floor = min_cohort if min_cohort is not None else (DEFAULT_MIN_COHORT if active else None)
    if floor is not None:
        if not is_plain_int(floor) or floor < 3:
            raise ConfigError("the client's min_cohort must be an int >= 3")
        if config.n < floor:
            raise ConfigError(
                f"cohort of {config.n} clients is below this client's minimum of {floor}: "
                "the server's config cannot lower a client's policy"
            )
    if expected_task_hash is not None:
        if not isinstance(expected_task_hash, bytes) or len(expected_task_hash) != TASK_HASH_LEN:
            raise ConfigError(f"expected_task_hash must be {TASK_HASH_LEN} bytes")
        if config.task_hash != expected_task_hash:
            raise ConfigError(
                "the session's task_hash differs from the hash of the model this client "
                "trained on: the server may be sending different models to different clients"
            )
    if not active:
        if identity is not None or trust_store is not None:
            raise ConfigError(
                "this client holds an identity and joins only active-mode sessions: a "
                "semi-honest config would switch off the signature checks"
            )
        return
    if identity is None or trust_store is None:
        raise ConfigError("active mode needs the client's identity key and a trust store")
    from secagg.crypto.signatures import SigningKey
    from secagg.identity import TrustStore, lookup_verify_key

    if not isinstance(identity, SigningKey):
        raise ConfigError("identity must be a secagg.crypto.signatures.SigningKey")
    if not isinstance(trust_store, TrustStore):
        raise ConfigError("trust_store must provide verify_key(client_id)")
    if expected_task_hash is None:
        raise ConfigError(
            "active mode needs expected_task_hash, the hash of the model this client trained on"
        )
    if lookup_verify_key(trust_store, client_id) != identity.verify_key:
        raise ConfigError(
            f"the trust store does not hold this client's identity key under id {client_id}"
        )
