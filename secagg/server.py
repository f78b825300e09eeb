"""Sans-IO server state machine (spec §8, §9, §15).

``ServerProtocol`` takes client messages one at a time (:meth:`receive`) and,
when the driver decides a round is over (all expected clients answered or a
deadline passed: the driver owns the clock), :meth:`close_round` computes the
next round's messages. States::

    COLLECT_KEYS -> COLLECT_SHARES -> COLLECT_MASKED -> COLLECT_UNMASK -> DONE
                                         (any state) -> ABORTED

In active mode (spec §15) the server verifies every signature it relays
against the deployment's trust store (so one client with a bad signature
cannot make its honest neighbours refuse), and runs the ConsistencyCheck round
between masked-input collection and unmasking::

    ... -> COLLECT_MASKED -> COLLECT_CONSISTENCY -> COLLECT_UNMASK -> DONE

On a Harary graph every round also enforces the survivor floor n - floor(δn)
and, when round 2 closes, a connected survivor graph (spec §8.0, §8.3): the
finder's bounds hold only under both, and a split survivor set would let the
server unmask each component's sum on its own.

A message that fails validation raises :class:`~secagg.errors.ProtocolError`
and changes nothing. Masked inputs are added into one accumulator as they
arrive (numba kernel, in place): the server never holds n full vectors, and
its memory is O(m * threads + n * k).
"""

from __future__ import annotations

import bisect
import enum
import itertools
import os
from collections import Counter
from collections.abc import Mapping, Set
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from operator import itemgetter

import numpy as np

from secagg import graph as graphs
from secagg import masking
from secagg import messages as msgs
from secagg.config import Mode, SessionConfig
from secagg.crypto import shamir
from secagg.crypto.agreement import X25519PrivateKey, agree_unlocked, validate_public_key
from secagg.crypto.prg import mask_dtype, ranges_addressable
from secagg.crypto.signatures import verify
from secagg.engine import Engine
from secagg.errors import (
    AbortError,
    ConfigError,
    InvalidKeyError,
    ProtocolError,
    SignatureError,
)
from secagg.identity import TrustStore, advertise_statement, lookup_verify_key, view_statement
from secagg.kernels.arith import add_into, sub_into
from secagg.messages import CIPHERTEXT_LEN, COMMITMENT_LEN, SHARE_LEN
from secagg.packing import bit_width, unpack
from secagg.recover import (
    RecoveryBatch,
    RecoveryCounts,
    SecretJob,
    SecretKind,
    concat,
    recover,
    split_batches,
)
from secagg.unmask import (
    PairJob,
    RangeJob,
    UnmaskWork,
    mask_range,
    pairwise_seeds,
    range_align,
    split_evenly,
    split_ranges,
)


class ServerState(enum.Enum):
    """Which round's client messages the server is collecting."""

    COLLECT_KEYS = "advertise-keys"
    COLLECT_SHARES = "share-keys"
    COLLECT_MASKED = "masked-input"
    COLLECT_CONSISTENCY = "consistency-check"  # active mode only
    COLLECT_UNMASK = "unmasking"
    DONE = "done"
    ABORTED = "aborted"


@dataclass(frozen=True)
class UnmaskedSum:
    """The session's output: the unmasked sum over ``included`` of the inputs, exact mod R.

    (Not to be confused with :class:`~secagg.aggregator.AggregationResult`, the decoded
    weighted mean that the simulation API derives from it.)
    """

    sum: np.ndarray
    included: tuple[int, ...]
    dropped: tuple[int, ...]
    masks_expanded: int  # self masks + pairwise masks the server regenerated to unmask
    #: every primitive the unmasking ran, counted (the full floor's input)
    work: UnmaskWork = field(default_factory=UnmaskWork)


class ServerProtocol:
    """The server's side of one session.

    ``threads`` is the number of worker threads for unmasking (mask expansion
    and folding release the GIL); it defaults to the number of cores.
    ``trust_store`` (client id -> Ed25519 verify key) is required in active mode
    and refused in semi-honest mode, where no signature is used.
    ``engine`` (:mod:`secagg.engine`), if given, runs the unmasking's agreements
    and mask regeneration on its workers (a power-of-two R, or PRG version 2 at any
    R: §4.6.1): a vector of at most :data:`MASK_SPLIT_MAX_DIM` coordinates is split by
    mask, a longer one by coordinate range (§8.5); ``threads`` is then unused.
    """

    def __init__(self, config: SessionConfig, *, threads: int | None = None,
                 trust_store: TrustStore | None = None, engine: Engine | None = None) -> None:
        if engine is not None:
            if not isinstance(engine, Engine):
                raise ConfigError("engine must provide workers and map(fn, items)")
            if not ranges_addressable(config.modulus, config.prg_version):
                raise ConfigError("unmasking on workers needs a power-of-two modulus R or "
                                  "PRG version 2 (--prg-version 2): with version 1, rejection "
                                  "sampling makes mask positions data-dependent")
        self.engine = engine
        self._active = config.mode is Mode.ACTIVE
        if self._active and trust_store is None:
            raise ConfigError("active mode needs a trust store to verify client signatures")
        if not self._active and trust_store is not None:
            raise ConfigError("a trust store is only used in active mode")
        if trust_store is not None and not isinstance(trust_store, TrustStore):
            raise ConfigError("trust_store must provide verify_key(client_id)")
        self._trust = trust_store
        self.config = config
        self.threads = max(1, threads if threads is not None else (os.cpu_count() or 1))
        self.state = ServerState.COLLECT_KEYS
        self.abort_reason: str | None = None
        self.result: UnmaskedSum | None = None
        self._cohort = frozenset(config.cohort)
        # spec §8.0: the Harary bounds hold for at most floor(δn) dropouts; the
        # complete graph has no floor (every survivor set is connected, §8.3)
        harary = config.graph is graphs.GraphKind.HARARY and config.degree < config.n - 1
        self._floor = config.n - graphs.tolerated_dropouts(config.n, config.dropout_ppm) \
            if harary else 0
        self._dtype = mask_dtype(config.modulus)
        self._bits = bit_width(config.modulus)
        # round 0
        self._keys: dict[int, msgs.AdvertiseKeys] = {}
        self._used_keys: set[bytes] = set()
        self._u1: frozenset[int] = frozenset()
        # round 1
        self._commitments: dict[int, bytes] = {}
        self._inbox: dict[int, dict[int, bytes]] = {}  # receiver -> sender -> ciphertext
        self._u2: frozenset[int] = frozenset()
        # round 2: one accumulator, whatever n is
        self._accumulator: np.ndarray | None = None
        self._masked_from: set[int] = set()
        self._u3: frozenset[int] = frozenset()
        # round 4
        self._requests: dict[int, msgs.UnmaskRequest] = {}
        self._shares: dict[msgs.ShareKind, dict[int, dict[int, bytes]]] = {
            msgs.ShareKind.SELF_MASK_SEED: {},
            msgs.ShareKind.MASK_KEY: {},
        }
        self._responders: set[int] = set()
        # active mode: identities, round 3 views and signatures
        self._identities: dict[int, bytes] = {}  # client -> verify key, from the trust store
        self._identity_owner: dict[bytes, int] = {}
        # the view each client was asked to sign
        self._views: dict[int, msgs.ConsistencyRequest] = {}
        self._view_sigs: dict[int, bytes] = {}

    def __repr__(self) -> str:
        return f"ServerProtocol(n={self.config.n}, state={self.state.value})"

    # -- introspection for drivers and tests ----------------------------------------------
    def expected(self) -> frozenset[int]:
        """Clients whose message for the current round has not arrived yet."""
        if self.state is ServerState.COLLECT_KEYS:
            return self._cohort - self._keys.keys()
        if self.state is ServerState.COLLECT_SHARES:
            return self._u1 - self._commitments.keys()
        if self.state is ServerState.COLLECT_MASKED:
            return self._u2 - self._masked_from
        if self.state is ServerState.COLLECT_CONSISTENCY:
            return frozenset(self._views) - self._view_sigs.keys()
        if self.state is ServerState.COLLECT_UNMASK:
            return frozenset(self._requests) - self._responders
        return frozenset()

    @property
    def accumulator_count(self) -> int:
        """How many m-length accumulators the server holds (1 once inputs arrive; never n)."""
        return 0 if self._accumulator is None else 1

    # -- receiving -----------------------------------------------------------------------
    def receive(
        self,
        message: msgs.ClientMessage,
    ) -> None:
        """Validate and absorb one client message; ProtocolError leaves the state unchanged."""
        if isinstance(message, msgs.AdvertiseKeys):
            self._expect(ServerState.COLLECT_KEYS, message)
            self._receive_keys(message)
        elif isinstance(message, msgs.ShareKeys):
            self._expect(ServerState.COLLECT_SHARES, message)
            self._receive_shares(message)
        elif isinstance(message, msgs.MaskedInput):
            self._expect(ServerState.COLLECT_MASKED, message)
            self._receive_masked(message)
        elif isinstance(message, msgs.UnmaskResponse):
            self._expect(ServerState.COLLECT_UNMASK, message)
            self._receive_unmask(message)
        elif isinstance(message, msgs.ConsistencySignature):
            self._expect(ServerState.COLLECT_CONSISTENCY, message)
            self._receive_view_signature(message)
        else:
            raise ProtocolError(f"unexpected message type {type(message).__name__}")

    def _expect(self, state: ServerState, message: object) -> None:
        if self.state is not state:
            raise ProtocolError(
                f"{type(message).__name__} not expected in state {self.state.value}"
            )

    def _receive_keys(self, msg: msgs.AdvertiseKeys) -> None:
        # spec §8.1
        u = msg.sender
        if u not in self._cohort:
            raise ProtocolError(f"client {u} is not in the cohort")
        if u in self._keys:
            raise ProtocolError(f"duplicate AdvertiseKeys from client {u}")
        if msg.signature and not self._active:
            raise ProtocolError(f"client {u} sent a signature, which semi-honest mode does not use")
        if msg.enc_pk == msg.mask_pk:
            raise ProtocolError(f"client {u} used one key for both purposes")
        for key in (msg.enc_pk, msg.mask_pk):
            try:
                validate_public_key(key)
            except InvalidKeyError:
                raise ProtocolError(f"client {u} advertised an invalid key") from None
        if msg.enc_pk in self._used_keys or msg.mask_pk in self._used_keys:
            raise ProtocolError(f"client {u} advertised a key another client already uses")
        if self._active:
            vk = self._identity_key(u)
            try:
                verify(vk, advertise_statement(self.config.session_id, u, msg.enc_pk,
                                               msg.mask_pk), msg.signature)
            except SignatureError:
                raise ProtocolError(
                    f"the keys of client {u} do not carry a valid signature of its identity"
                ) from None
            owner = self._identity_owner.get(vk)
            if owner is not None:
                raise ProtocolError(f"client {u} uses the identity key of client {owner}")
            self._identities[u] = vk
            self._identity_owner[vk] = u
        self._keys[u] = msg
        self._used_keys.update((msg.enc_pk, msg.mask_pk))

    def _identity_key(self, u: int) -> bytes:
        assert self._trust is not None
        try:
            vk = lookup_verify_key(self._trust, u)
        except ConfigError:
            raise ProtocolError(f"the trust store holds an unusable key for client {u}") from None
        if vk is None:
            raise ProtocolError(f"client {u} has no identity in the trust store")
        return vk

    def _receive_shares(self, msg: msgs.ShareKeys) -> None:
        # spec §8.2
        u = msg.sender
        if u not in self._u1:
            raise ProtocolError(f"ShareKeys from client {u}, which is not in U1")
        if u in self._commitments:
            raise ProtocolError(f"duplicate ShareKeys from client {u}")
        # column-wise checks (C-level loops: a server takes n * k ciphertexts)
        receivers: tuple[int, ...] = tuple(map(_FIRST, msg.ciphertexts))
        texts: tuple[bytes, ...] = tuple(map(_SECOND, msg.ciphertexts))
        if len(msg.self_mask_commitment) != COMMITMENT_LEN or (
            texts and set(map(len, texts)) != {CIPHERTEXT_LEN}
        ):
            raise ProtocolError(f"ShareKeys from client {u} has a field of the wrong length")
        unique = set(receivers)
        if unique != self._nbrs(u, self._u1) or len(receivers) != len(unique):
            raise ProtocolError(f"client {u} must send one ciphertext to each neighbour in U1")
        # keyed by u, one int object per sender (keying by the decoded receiver ids
        # would keep n * k int objects alive, ~10 MB at n = 10^4)
        inbox = self._inbox
        for rid, ct in msg.ciphertexts:
            try:
                inbox[rid][u] = ct
            except KeyError:
                inbox[rid] = {u: ct}
        self._commitments[u] = msg.self_mask_commitment

    def _receive_masked(self, msg: msgs.MaskedInput) -> None:
        # spec §8.3
        u = msg.sender
        if u not in self._u2:
            raise ProtocolError(f"MaskedInput from client {u}, which is not in U2")
        if u in self._masked_from:
            raise ProtocolError(f"duplicate MaskedInput from client {u}")
        if msg.bits != self._bits or msg.count != self.config.dim:
            raise ProtocolError(f"masked vector from client {u} has the wrong length or width")
        # a view of the message where the width allows: no vector-sized copy (issue 15)
        vec = unpack(msg.packed, msg.bits, msg.count, self._dtype, copy=False)
        R = self.config.modulus
        if 1 << msg.bits != R and vec.size and int(vec.max()) >= R:
            raise ProtocolError(f"masked vector from client {u} has values outside [0, R)")
        if self._accumulator is None:
            self._accumulator = np.zeros(self.config.dim, dtype=self._dtype)
        add_into(self._accumulator, vec, R)
        self._masked_from.add(u)

    def _receive_view_signature(self, msg: msgs.ConsistencySignature) -> None:
        # spec §15.6
        u = msg.sender
        view = self._views.get(u)
        if view is None:
            raise ProtocolError(f"ConsistencySignature from client {u}, which was not asked")
        if u in self._view_sigs:
            raise ProtocolError(f"duplicate ConsistencySignature from client {u}")
        statement = view_statement(self.config.session_id, u, view.alive, view.dropped)
        try:
            verify(self._identities[u], statement, msg.signature)
        except SignatureError:
            raise ProtocolError(
                f"the consistency signature of client {u} does not verify on its view"
            ) from None
        self._view_sigs[u] = msg.signature

    def _receive_unmask(self, msg: msgs.UnmaskResponse) -> None:
        # spec §8.5
        u = msg.sender
        request = self._requests.get(u)
        if request is None:
            raise ProtocolError(f"UnmaskResponse from client {u}, which was not asked")
        if u in self._responders:
            raise ProtocolError(f"duplicate UnmaskResponse from client {u}")
        expected = dict.fromkeys(request.alive, msgs.ShareKind.SELF_MASK_SEED)
        expected.pop(u, None)
        expected.update(dict.fromkeys(request.dropped, msgs.ShareKind.MASK_KEY))
        got = dict(zip(map(_FIRST, msg.shares), map(_SECOND, msg.shares), strict=True))
        values: tuple[bytes, ...] = tuple(map(_THIRD, msg.shares))
        if got != expected or len(msg.shares) != len(got):
            raise ProtocolError(f"client {u} did not answer exactly the shares it was asked for")
        # equal-length big-endian strings compare as their numbers: one C-level max
        if values and (set(map(len, values)) != {SHARE_LEN} or max(values) >= _PRIME_BYTES):
            raise ProtocolError(f"client {u} sent a share outside the Shamir field")
        for owner, kind, share in msg.shares:
            held = self._shares[kind]
            try:
                held[owner][u] = share
            except KeyError:
                held[owner] = {u: share}
        self._responders.add(u)

    # -- closing rounds ------------------------------------------------------------------
    def close_round(
        self,
    ) -> Mapping[int, msgs.ServerMessage]:
        """End the current round with whatever arrived; return the next messages per client.

        When the session cannot go on safely, every remaining client gets an
        :class:`Abort`, ``state`` becomes ABORTED and ``abort_reason`` says why.
        After the unmasking round the result is in :attr:`result` and nothing is sent.
        """
        state = self.state
        try:
            if state is ServerState.COLLECT_KEYS:
                return self._close_keys()
            if state is ServerState.COLLECT_SHARES:
                return self._close_shares()
            if state is ServerState.COLLECT_MASKED:
                return self._close_masked()
            if state is ServerState.COLLECT_CONSISTENCY:
                return self._close_consistency()
            if state is ServerState.COLLECT_UNMASK:
                self._close_unmask()
                return {}
        except AbortError as exc:
            return self._abort(str(exc), state)
        raise ProtocolError(f"no round to close in state {state.value}")

    def _abort(self, reason: str, state: ServerState) -> dict[int, msgs.Abort]:
        self.state = ServerState.ABORTED
        self.abort_reason = reason
        self._accumulator = None
        live = {
            ServerState.COLLECT_KEYS: self._keys.keys(),
            ServerState.COLLECT_SHARES: self._u1,
            ServerState.COLLECT_MASKED: self._u2,
            ServerState.COLLECT_CONSISTENCY: self._u3,
            ServerState.COLLECT_UNMASK: self._u3,
        }[state]
        return {u: msgs.Abort(reason) for u in sorted(live)}

    def _nbrs(self, u: int, among: set[int] | frozenset[int]) -> set[int] | frozenset[int]:
        """N(u) ∩ among, by a C-level ``intersection`` over the neighbour tuple.

        The rounds ask for it O(n) times each; a Python comprehension made it a
        top server cost, and caching N(u) as frozensets costs ~2 KB per client.
        """
        return among.intersection(self.config.neighbours(u))

    def _nbrs_sorted(self, u: int, among: Set[int]) -> tuple[int, ...]:
        """N(u) ∩ among in id order: the neighbour tuples are sorted, so a C-level
        ``filter`` keeps the order and no set is built and sorted again."""
        return tuple(filter(among.__contains__, self.config.neighbours(u)))

    def _with_self(self, u: int, among: Set[int]) -> tuple[int, ...]:
        """(N(u) ∩ among) ∪ {u}, in id order."""
        ids = self._nbrs_sorted(u, among)
        i = bisect.bisect(ids, u)
        return (*ids[:i], u, *ids[i:])

    def _counts_among(self, members: set[int] | frozenset[int]) -> dict[int, int]:
        """|N(u) ∩ members| for every member u.

        Counted from the absent side where it is the smaller: |N(u)| minus u's
        neighbours outside ``members``, found by walking the absent clients'
        neighbourhoods (the graph is undirected). At 5% dropout that is O(δn · k)
        set-free steps instead of n intersections of k ids each.
        """
        nb = self.config.neighbours
        absent = self._cohort.difference(members)
        if len(absent) >= len(members):
            return {u: len(members.intersection(nb(u))) for u in members}
        lost = Counter(itertools.chain.from_iterable(map(nb, absent)))
        return {u: len(nb(u)) - lost[u] for u in members}

    def _require_floor(self, count: int, round_name: str) -> None:
        """Abort below n - floor(δn) survivors on a Harary graph (spec §8.0).

        The finder proves its bounds (no disconnection, no shortfall) only for at
        most floor(δn) dropouts; past that, two runs of k/2 dropped ring positions
        can split the survivors and the sum of one component would be unmasked on
        its own. Google's server likewise stops below ceil((1 - δ) n) clients.
        """
        if count < self._floor:
            raise AbortError(
                f"{count} clients remain after {round_name}, fewer than the "
                f"{self._floor} = n - floor(dropout rate * n) the Harary parameters assume"
            )

    def _prune(self, members: set[int], round_name: str) -> frozenset[int]:
        """Drop, to a fixpoint, clients with fewer than t neighbours left among ``members``.

        Such a client's secrets could never be reconstructed (it has fewer than t
        shareholders), so it leaves the session here, before anyone masks with it.
        """
        t = self.config.threshold
        answered = len(members)
        # the t-core of the graph on ``members``: unique, so removing every short
        # client at once each pass reaches the same set as removing them one by one
        while short := [u for u, c in self._counts_among(members).items() if c < t]:
            members.difference_update(short)
        if len(members) < t + 1:
            raise AbortError(
                f"{answered} clients answered {round_name}, and {len(members)} of them have at "
                f"least t = {t} neighbours among the others; the session needs at least t + 1"
            )
        self._require_floor(len(members), round_name)
        return frozenset(members)

    def _close_keys(self) -> dict[int, msgs.KeyBroadcast | msgs.Abort]:
        # spec §8.1
        self._u1 = self._prune(set(self._keys), "advertise-keys")
        # one (immutable) KeyEntry per client, shared by the k + 1 broadcasts that carry it
        entries = {v: msgs.KeyEntry(v, k.enc_pk, k.mask_pk, k.signature)
                   for v, k in self._keys.items() if v in self._u1}
        out: dict[int, msgs.KeyBroadcast | msgs.Abort] = {}
        for u in sorted(self._keys):
            if u not in self._u1:
                out[u] = msgs.Abort("excluded: too few neighbours advertised keys")
                continue
            ids = self._with_self(u, self._u1)
            out[u] = msgs.KeyBroadcast(tuple(map(entries.__getitem__, ids)))
        self.state = ServerState.COLLECT_SHARES
        return out

    def _close_shares(self) -> dict[int, msgs.CiphertextBundle | msgs.Abort]:
        # spec §8.2, §9
        self._u2 = self._prune(set(self._commitments), "share-keys")
        out: dict[int, msgs.CiphertextBundle | msgs.Abort] = {}
        for u in sorted(self._commitments):
            if u not in self._u2:
                out[u] = msgs.Abort("excluded: too few neighbours shared keys")
                continue
            senders = self._nbrs_sorted(u, self._u2)
            out[u] = msgs.CiphertextBundle(tuple(
                zip(senders, map(self._inbox.get(u, {}).__getitem__, senders), strict=True)))
        self._inbox.clear()
        self.state = ServerState.COLLECT_MASKED
        return out

    def _close_masked(self) -> dict[int, msgs.UnmaskRequest | msgs.ConsistencyRequest]:
        # spec §8.3, §9.2
        t = self.config.threshold
        u3 = frozenset(self._masked_from)
        if len(u3) < t:
            raise AbortError(f"only {len(u3)} masked inputs arrived, fewer than t = {t}")
        self._require_floor(len(u3), "masked-input")
        if self._floor and not graphs.is_connected(u3, self.config.neighbours):
            raise AbortError(
                "the survivors' graph is disconnected: unmasking would reveal the sums of "
                "its components"
            )
        short = [u for u, c in self._counts_among(u3).items() if c < t]
        if short:
            raise AbortError(
                f"client {min(short)} has fewer than t = {t} surviving neighbours: its self "
                "mask could not be removed"
            )
        for v in sorted(self._u2 - u3):
            if self._nbrs(v, self._u2) & u3 and len(self._nbrs(v, u3)) < t:
                raise AbortError(
                    f"dropped client {v} has fewer than t = {t} surviving neighbours: its "
                    "pairwise masks could not be removed"
                )
        self._u3 = u3
        out: dict[int, msgs.UnmaskRequest | msgs.ConsistencyRequest] = {}
        gone = self._u2 - u3
        for u in sorted(u3):
            alive = self._with_self(u, u3)
            dropped = self._nbrs_sorted(u, gone)
            if self._active:
                # The same lists, first to be signed (spec §15.6).
                out[u] = self._views[u] = msgs.ConsistencyRequest(alive, dropped)
            else:
                out[u] = self._requests[u] = msgs.UnmaskRequest(alive, dropped)
        self.state = ServerState.COLLECT_CONSISTENCY if self._active else ServerState.COLLECT_UNMASK
        return out

    def _close_consistency(self) -> dict[int, msgs.ConsistencyRequest | msgs.Abort]:
        """End round 3: relay to each signer the signatures of its alive neighbours (spec §15.6).

        A signer with fewer than t signing neighbours could not unmask (it would
        refuse), so it is told so and not asked; if the clients that will be asked
        are too few to reconstruct every secret the sum needs, the session aborts
        here, before any share is released (the rule of spec §9.2).
        """
        t = self.config.threshold
        u4 = frozenset(self._view_sigs)
        asked = frozenset(u for u in u4 if len(self._nbrs(u, u4)) >= t)
        if len(asked) < t:
            raise AbortError(
                f"only {len(asked)} clients have t = {t} signed neighbours after the "
                "consistency check"
            )
        for w in sorted(self._u3):
            if len(self._nbrs(w, asked)) < t:
                raise AbortError(
                    f"client {w} has fewer than t = {t} neighbours able to unmask after the "
                    "consistency check: its self mask could not be removed"
                )
        for v in sorted(self._u2 - self._u3):
            if self._nbrs(v, self._u2) & self._u3 and len(self._nbrs(v, asked)) < t:
                raise AbortError(
                    f"dropped client {v} has fewer than t = {t} neighbours able to unmask after "
                    "the consistency check: its pairwise masks could not be removed"
                )
        full = self.config.degree >= self.config.n - 1
        out: dict[int, msgs.ConsistencyRequest | msgs.Abort] = {}
        for u in sorted(self._u3):
            if u not in u4:
                continue  # silent since round 2: treated as a dropout, nothing to send
            if u not in asked:
                out[u] = msgs.Abort(
                    "excluded: fewer than t neighbours signed the consistency check")
                continue
            signers = sorted(self._nbrs(u, u4))
            view = self._views[u]
            if full:
                alive, dropped = view.alive, view.dropped
            else:
                # the statuses of u's and every signer's neighbourhood, so u can rebuild
                # each signer's statement (spec §15.7)
                domain = set(self.config.neighbours(u)) | {u}
                for v in signers:
                    domain.update(self.config.neighbours(v))
                alive = tuple(sorted(domain & self._u3))
                dropped = tuple(sorted(domain & (self._u2 - self._u3)))
            out[u] = msgs.ConsistencyRequest(alive, dropped,
                                             tuple((v, self._view_sigs[v]) for v in signers))
            self._requests[u] = msgs.UnmaskRequest(view.alive, view.dropped)
        self.state = ServerState.COLLECT_UNMASK
        return out

    def _close_unmask(self) -> None:
        # spec §8.5
        b_seeds, mask_keys, counts = self._recover_secrets()
        assert self._accumulator is not None
        total = self._accumulator
        if self.engine is None:
            pairs = self._remove_masks(total, b_seeds, mask_keys)
        else:
            pairs = self._remove_masks_on(self.engine, total, b_seeds, mask_keys)
        work = UnmaskWork(
            self_masks=len(b_seeds), pairwise_masks=pairs, agreements=pairs,
            key_checks=counts.key_checks, key_derivations=2 * pairs + len(b_seeds),
            interpolations=counts.interpolations, coefficient_sets=counts.coefficient_sets,
            derived_coefficient_sets=counts.derived_coefficient_sets,
            supersets=counts.supersets, threshold=self.config.threshold)
        self.result = UnmaskedSum(
            sum=total,
            included=tuple(sorted(self._u3)),
            dropped=tuple(sorted(self._cohort - self._u3)),
            masks_expanded=work.masks,
            work=work,
        )
        self._accumulator = None
        self.state = ServerState.DONE

    def _recover_secrets(
        self,
    ) -> tuple[dict[int, bytes], dict[int, X25519PrivateKey], RecoveryCounts]:
        """Reconstruct every survivor's b_u and every needed dropped client's s_u (§8.5).

        The reconstructions are pure jobs (:mod:`secagg.recover`), run here or, with
        an engine, on its workers; the decisions are taken here, in the order of the
        single-process server: survivors by id, then dropped clients by id, each
        first refused for too few shares, then for shares that verify no secret.
        """
        t, kind = self.config.threshold, msgs.ShareKind
        owners: list[tuple[SecretKind, int, dict[int, bytes]]] = [
            (SecretKind.SELF_MASK_SEED, w, self._shares[kind.SELF_MASK_SEED].get(w, {}))
            for w in sorted(self._u3)]
        owners += [(SecretKind.MASK_KEY, v, self._shares[kind.MASK_KEY].get(v, {}))
                   for v in sorted(self._u2 - self._u3) if self._nbrs(v, self._u2) & self._u3]
        jobs = tuple(SecretJob(k, o, shares, self._commitments[o] if k is SecretKind.
                               SELF_MASK_SEED else self._keys[o].mask_pk)
                     for k, o, shares in owners if len(shares) >= t)
        responders = sorted(self._responders)
        # complete graph: each owner's first t holders are these t + 1 minus one
        batch = RecoveryBatch(self.config.session_id, t,
                              tuple(responders[: t + 1]) if len(responders) > t else (), jobs)
        if self.engine is None or self.engine.workers < 2 or len(jobs) < 2:
            found, counts = recover(batch)
        else:
            found, counts = concat(self.engine.map(
                recover, split_batches(batch, self.engine.workers)))
        secrets = dict(zip(((j.kind, j.owner) for j in jobs), found, strict=True))
        b_seeds: dict[int, bytes] = {}
        mask_keys: dict[int, X25519PrivateKey] = {}
        for k, o, shares in owners:
            self_seed = k is SecretKind.SELF_MASK_SEED
            if len(shares) < t:
                raise AbortError(f"only {len(shares)} shares of client {o}'s self-mask seed"
                                 if self_seed else
                                 f"only {len(shares)} shares of dropped client {o}'s mask key")
            secret = secrets[(k, o)]
            if secret is None:
                raise AbortError(
                    f"shares of client {o}'s self-mask seed do not reconstruct a value "
                    "matching its commitment" if self_seed else
                    f"shares of dropped client {o}'s mask key do not match its public key")
            if self_seed:
                b_seeds[o] = secret
            else:
                mask_keys[o] = X25519PrivateKey.from_bytes(secret)
        return b_seeds, mask_keys, counts

    # -- unmasking at the floor -----------------------------------------------------------
    def _remove_masks(
        self,
        total: np.ndarray,
        b_seeds: Mapping[int, bytes],
        mask_keys: Mapping[int, X25519PrivateKey],
    ) -> int:
        """Subtract every survivor's self mask and every dropped client's pairwise masks;
        return how many pairwise masks (one agreement each) that took.

        Work is split across ``threads`` workers. The first folds its masks straight
        out of ``total``; each other one subtracts its masks from its own zeroed
        partial, added to ``total`` once all are done, so no two threads write the
        same memory and one thread holds two vectors (``total`` and a scratch buffer),
        not four. Both the keystream (OpenSSL) and the folding (numba, nogil) run
        without the GIL.
        """
        cfg = self.config
        sid, dim, R, cipher = cfg.session_id, cfg.dim, cfg.modulus, cfg.prg
        version = cfg.prg_version
        tasks: list[tuple[str, int, int]] = [("self", w, 0) for w in sorted(b_seeds)]
        for v in sorted(mask_keys):
            tasks.extend(("pair", v, w) for w in sorted(self._nbrs(v, self._u3)))
        keys = self._keys

        def work(chunk: list[tuple[str, int, int]], target: np.ndarray | None) -> np.ndarray:
            out = np.zeros(dim, dtype=self._dtype) if target is None else target
            scratch = np.empty(dim, dtype=self._dtype)
            for kind, a, b in chunk:
                if kind == "self":
                    masking.expand_self_mask(b_seeds[a], sid, a, dim, R, cipher, out=scratch,
                                             version=version)
                    sub_into(out, scratch, R)
                    continue
                v, w = a, b  # v dropped, w survived and added sign(w, v) * PRG(s_wv)
                agreed = agree_unlocked(mask_keys[v], keys[w].mask_pk)
                seed = masking.pairwise_seed(agreed, sid, v, w, keys[v].mask_pk, keys[w].mask_pk)
                masking.expand_pairwise_mask(seed, sid, v, w, dim, R, cipher, out=scratch,
                                             version=version)
                (sub_into if masking.pairwise_sign(w, v) > 0 else add_into)(out, scratch, R)
            return out

        n_workers = min(self.threads, max(1, len(tasks)))
        chunks = [tasks[i::n_workers] for i in range(n_workers)]
        targets: list[np.ndarray | None] = [total] + [None] * (n_workers - 1)
        if n_workers == 1:
            work(chunks[0], total)
        else:
            with ThreadPoolExecutor(max_workers=n_workers) as pool:
                partials = list(pool.map(work, chunks, targets))
            for partial in partials[1:]:
                add_into(total, partial, R)
        return len(tasks) - len(b_seeds)

    def _remove_masks_on(
        self,
        engine: Engine,
        total: np.ndarray,
        b_seeds: Mapping[int, bytes],
        mask_keys: Mapping[int, X25519PrivateKey],
    ) -> int:
        """:meth:`_remove_masks` on an engine's workers; returns the pairwise masks removed.

        A short vector (at most MASK_SPLIT_MAX_DIM coordinates) is split by mask: each
        job runs the agreements of its dropped clients and regenerates its share of
        the masks over the whole vector, in one pass with no round trip in between;
        every mask's fixed cost (key derivation, cipher setup: ~15 us, a fifth of a
        10^5-coordinate mask) is then paid once, not once per worker. A long vector
        is split by coordinate range, so memory stays O(m / workers) per job: first
        the agreements, dealt out by dropped client (each job returns its pairwise
        seeds), then every job regenerates its range of every mask and returns one
        partial vector, subtracted from the same range here. Same sum mod R, byte
        for byte, either way.
        """
        cfg, keys = self.config, self._keys
        sid, R = cfg.session_id, cfg.modulus
        pair_jobs = [
            PairJob(v, mask_keys[v].secret_bytes(), keys[v].mask_pk,
                    tuple((w, keys[w].mask_pk) for w in sorted(self._nbrs(v, self._u3))))
            for v in sorted(mask_keys)
        ]
        self_seeds = tuple(sorted(b_seeds.items()))
        whole = RangeJob(sid, R, cfg.prg, 0, cfg.dim, self_seeds, (), cfg.prg_version)
        if cfg.dim <= MASK_SPLIT_MAX_DIM:
            pairs = 0
            jobs = [(replace(whole, self_seeds=selfs), group)
                    for group, selfs in deal_masks(pair_jobs, self_seeds, engine.workers)]
            for partial, count in engine.map(_masks_job, jobs):
                sub_into(total, partial, R)
                pairs += count
            return pairs
        seeds: list[tuple[int, int, bytes]] = []
        groups = split_evenly(pair_jobs, engine.workers)
        for found in engine.map(_seeds_job, [(sid, group) for group in groups]):
            seeds.extend(found)
        ranges = split_ranges(cfg.dim, engine.workers, range_align(R))
        range_jobs = [replace(whole, start=a, stop=b, pair_seeds=tuple(seeds)) for a, b in ranges]
        for (a, b), partial in zip(ranges, engine.map(mask_range, range_jobs), strict=True):
            sub_into(total[a:b], partial, R)
        return len(seeds)


#: Longest vector the engine path splits by mask rather than by coordinate range: each
#: job then returns a whole partial vector (4 MiB at 32 bits), so the coordinator holds
#: one per worker; past this the masks' fixed costs are a small part of their keystream.
MASK_SPLIT_MAX_DIM = 1 << 20


def deal_masks(pair_jobs: list[PairJob], self_seeds: tuple[tuple[int, bytes], ...],
               parts: int) -> list[tuple[list[PairJob], tuple[tuple[int, bytes], ...]]]:
    """The masks dealt into at most ``parts`` jobs of about equal work: the dropped
    clients' pairs (an agreement and a mask each, weight 2) by :func:`split_evenly`,
    then each self mask (weight 1) to the lightest job. No job is empty."""
    groups = split_evenly(pair_jobs, parts)
    groups += [[] for _ in range(max(1, parts) - len(groups))]
    loads = [2 * sum(len(job.peers) for job in group) for group in groups]
    selfs: list[list[tuple[int, bytes]]] = [[] for _ in groups]
    for item in self_seeds:
        i = loads.index(min(loads))
        selfs[i].append(item)
        loads[i] += 1
    return [(g, tuple(s)) for g, s in zip(groups, selfs, strict=True) if g or s]


def _masks_job(job: tuple[RangeJob, list[PairJob]]) -> tuple[np.ndarray, int]:
    """One worker's share of the masks over the whole vector: its dropped clients'
    agreements, then its self and pairwise masks folded into one partial vector
    (a module-level function, so it pickles). Returns it and its pairwise mask count."""
    whole, group = job
    seeds = pairwise_seeds(whole.session_id, group)
    return mask_range(replace(whole, pair_seeds=tuple(seeds))), len(seeds)


#: the Shamir prime as a share's bytes: a share is in the field iff it is below these
_PRIME_BYTES = shamir.PRIME.to_bytes(SHARE_LEN, "big")
#: columns of a message's records, taken by C-level maps (a server takes n * k of them)
_FIRST, _SECOND, _THIRD = itemgetter(0), itemgetter(1), itemgetter(2)


def _seeds_job(job: tuple[bytes, list[PairJob]]) -> list[tuple[int, int, bytes]]:
    """One worker's agreements (a module-level function, so it pickles)."""
    return pairwise_seeds(*job)
