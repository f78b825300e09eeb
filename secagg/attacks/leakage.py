"""The leakage oracle: which linear combinations of honest inputs can the server learn?

Why: "did the server get t shares of both secrets of one client?" is one way
to break a client's privacy, not the only one. A server that withholds
ciphertexts, lies about dropouts to some clients only, or colludes with
clients can remove masks in ways that question misses (issue 12, finding 8).
This module answers the general question from first principles, from the
spec's derivations and not from the server's code (spec §8.3, §8.5, §12):

Every masked input the server received is one linear equation (spec §8.3)::

    y_u = x_u + PRG(b_u) + sum over v in H_u of sigma(u, v) * PRG(s_uv)

Each PRG term is a *mask symbol*. The server knows ``PRG(b_u)`` if it can
rebuild ``b_u`` (t or more b-shares of u from distinct shareholders, or u is
corrupt), and ``PRG(s_uv)`` if it knows the mask key of u or of v (t or more
s-shares, or corrupt), or if it substituted the mask key u used for v. It
learns ``sum c_u x_u`` exactly when some combination ``sum lambda_u y_u`` has
every unknown mask symbol cancel and x-coefficients ``c``. An unknown pairwise
symbol occurs in at most two equations, with opposite signs (``sigma(u, v) =
-sigma(v, u)``), so it cancels only when ``lambda_u = lambda_v``; a symbol that
occurs in one equation only (the peer sent no masked input, or did not mask
with u) and an unknown self mask force ``lambda_u = 0``. The learnable space is
therefore spanned by the sums over the connected components of the graph of
unknown mutual pairwise masks among honest senders, keeping the components
with no forced-zero member. (The coefficients are all +-1, so the argument is
the same over the rationals and over Z_R.)

A correct session gives exactly one component, all honest senders: the
server learns their total sum and nothing else (spec §12.1). An aborted one
gives none. Anything else is a leak: a partial sum or a single input.

Inputs are an :class:`AdversaryView` (what the server saw and can decrypt),
built from received and sent message bytes by :func:`view_from_messages` or
from a public transcript (spec §18.1) by :func:`view_from_transcript`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from secagg.config import SessionConfig
from secagg.errors import ProtocolError
from secagg.messages import (
    AdvertiseKeys,
    CiphertextBundle,
    KeyBroadcast,
    MaskedInput,
    Message,
    ShareKeys,
    ShareKind,
    UnmaskResponse,
    decode,
)
from secagg.rounds import Round
from secagg.transcript import Direction, Transcript

#: (round, client, message bytes): one message received from or sent to ``client``.
Wire = tuple[int, int, bytes]


@dataclass(frozen=True, order=True)
class RevealedShare:
    """The server holds ``holder``'s share of ``owner``'s secret of ``kind`` (never the value)."""

    holder: int
    owner: int
    kind: ShareKind


@dataclass(frozen=True)
class AdversaryView:
    """Everything the server holds at the end of a session, as structure (spec §8, §12).

    ``masked_with[u]`` exists for every client whose masked input the server
    received and names the peers whose pairwise masks are in ``y_u`` (the senders
    of the CiphertextBundle u accepted, spec §8.3). ``share_receivers[v]`` are the
    receivers of v's ShareKeys ciphertexts: the only clients that can hold shares
    of v. ``corrupt`` clients collude with the server: it knows their secrets
    (``c_u``, ``s_u``, ``b_u``), their inputs and every share addressed to them.
    ``substituted`` holds (u, v) where u masked with a mask key for v other than
    the one v advertised: the server is assumed to know that mask.
    """

    cohort: tuple[int, ...]
    threshold: int
    masked_with: Mapping[int, frozenset[int]]
    share_receivers: Mapping[int, frozenset[int]]
    revealed: frozenset[RevealedShare] = frozenset()
    corrupt: frozenset[int] = frozenset()
    substituted: frozenset[tuple[int, int]] = frozenset()
    advertised: Mapping[int, tuple[bytes, bytes]] = field(default_factory=dict)

    @property
    def honest_senders(self) -> frozenset[int]:
        """Honest clients whose masked input the server holds: the 'total' of a sum."""
        return frozenset(self.masked_with) - self.corrupt

    def holders(self, owner: int, kind: ShareKind) -> frozenset[int]:
        """Distinct shareholders of ``owner``'s ``kind`` secret whose share the server holds."""
        receivers = self.share_receivers.get(owner, frozenset())
        out = {r.holder for r in self.revealed
               if r.owner == owner and r.kind is kind and r.holder in receivers}
        out |= receivers & self.corrupt  # a corrupt receiver decrypts both shares
        out.discard(owner)
        return frozenset(out)

    def knows(self, owner: int, kind: ShareKind) -> bool:
        """Whether the server can rebuild ``owner``'s secret: corrupt, or t shares (§4.7)."""
        return owner in self.corrupt or len(self.holders(owner, kind)) >= self.threshold


@dataclass(frozen=True)
class Leakage:
    """The learnable subspace: the sum over each component (and combinations), nothing else.

    ``components`` are disjoint sets of honest clients, sorted; their indicator
    vectors are a basis of the space of coefficient vectors ``c`` for which the
    server can compute ``sum c_u x_u``. ``senders`` are the honest clients whose
    masked input it holds.
    """

    senders: frozenset[int]
    components: tuple[frozenset[int], ...]

    def is_nothing(self) -> bool:
        """The server can compute no combination of honest inputs."""
        return not self.components

    def is_only_total_sum(self) -> bool:
        """Exactly the sum over every honest sender, and nothing else, is learnable."""
        return self.components == (self.senders,) and len(self.senders) > 1

    def within_total_sum(self) -> bool:
        """Nothing, or only the total sum: what the protocol promises (spec §12.1)."""
        return self.is_nothing() or self.is_only_total_sum()

    def leaked_subsets(self) -> tuple[frozenset[int], ...]:
        """Learnable sums over fewer clients than the total (singles included)."""
        if self.within_total_sum():
            return ()
        return tuple(c for c in self.components if c != self.senders or len(c) == 1)

    def singles(self) -> frozenset[int]:
        """Honest clients whose input the server learns on its own."""
        return frozenset(u for c in self.components if len(c) == 1 for u in c)

    def can_learn(self, coefficients: Mapping[int, int]) -> bool:
        """Whether ``sum c_u x_u`` is learnable: c constant on each component, zero elsewhere."""
        covered = set().union(*self.components) if self.components else set()
        if any(c and u not in covered for u, c in coefficients.items()):
            return False
        return all(len({coefficients.get(u, 0) for u in comp}) == 1 for comp in self.components)

    def basis(self, order: Iterable[int]) -> list[list[int]]:
        """The components as 0/1 vectors over the clients in ``order``."""
        ids = list(order)
        return [[1 if u in comp else 0 for u in ids] for comp in self.components]

    def describe(self) -> str:
        """One line: what the server can learn."""
        if self.is_nothing():
            return "nothing"
        if self.is_only_total_sum():
            return f"only the total sum over {len(self.senders)} clients"
        return "; ".join(f"the sum over {_ids(c)}" if len(c) > 1 else f"client {min(c)}'s input"
                         for c in self.components)


def _ids(ids: Iterable[int]) -> str:
    return "{" + ", ".join(str(u) for u in sorted(ids)) + "}"


# --- the oracle ---------------------------------------------------------------------------
def learnable(view: AdversaryView) -> Leakage:
    """The linear combinations of honest inputs the server can compute (module docstring)."""
    senders = view.honest_senders
    s_known = {u: view.knows(u, ShareKind.MASK_KEY)
               for u in set(view.cohort) | set(view.masked_with)}
    parent = {u: u for u in senders}

    def find(u: int) -> int:
        while parent[u] != u:
            parent[u] = parent[parent[u]]
            u = parent[u]
        return u

    zero: set[int] = set()
    for u in senders:
        if not view.knows(u, ShareKind.SELF_MASK_SEED):
            zero.add(u)
        for v in view.masked_with[u]:
            if (u, v) in view.substituted or s_known.get(u) or s_known.get(v):
                continue  # the server can regenerate this mask
            if _mutual(view, u, v):
                parent[find(u)] = find(v)
            else:
                zero.add(u)  # an unknown mask in y_u that no other equation cancels
    groups: dict[int, set[int]] = defaultdict(set)
    for u in senders:
        groups[find(u)].add(u)
    dead = {find(u) for u in zero}
    comps = sorted((frozenset(g) for root, g in groups.items() if root not in dead),
                   key=lambda c: (min(c), len(c)))
    return Leakage(frozenset(senders), tuple(comps))


def _mutual(view: AdversaryView, u: int, v: int) -> bool:
    """Whether the same unknown symbol PRG(s_uv) is in both y_u and y_v (so it can cancel)."""
    return (v in view.masked_with and v not in view.corrupt and u in view.masked_with[v]
            and (v, u) not in view.substituted)


# --- building a view from messages ----------------------------------------------------------
def _decoded(items: Iterable[Wire], round_: Round, kind: type[Message],
             ) -> list[tuple[int, Message]]:
    out = []
    for r, client, data in items:
        if r != round_:
            continue
        try:
            msg = decode(data)
        except ProtocolError:
            continue
        if isinstance(msg, kind):
            out.append((client, msg))
    return out


def _first_by_sender(items: Iterable[Wire], round_: Round, kind: type[Message]
                     ) -> dict[int, Message]:
    """The first message of ``kind`` each client sent in ``round_`` (the one a server keeps)."""
    out: dict[int, Message] = {}
    for sender, msg in _decoded(items, round_, kind):
        if getattr(msg, "sender", sender) == sender:
            out.setdefault(sender, msg)
    return out


def _accepted(sent: list[Wire], accepted: Mapping[tuple[int, int], Message | bytes],
              round_: Round, kind: type[Message]) -> dict[int, Message]:
    """Per client, the server message of ``kind`` it acted on: given, else the last one sent."""
    out: dict[int, Message] = {}
    for client, msg in _decoded(sent, round_, kind):
        out[client] = msg
    for (client, r), item in accepted.items():
        msg = decode(item) if isinstance(item, bytes) else item
        if r == round_ and isinstance(msg, kind):
            out[client] = msg
    return out


def view_from_messages(config: SessionConfig, received: Iterable[Wire],
                       sent: Iterable[Wire] = (), *, corrupt: Iterable[int] = (),
                       accepted: Mapping[tuple[int, int], Message | bytes] | None = None,
                       opened: Iterable[RevealedShare] = ()) -> AdversaryView:
    """The server's view after a session, from the bytes it received and sent.

    ``received`` and ``sent`` are (round, client, bytes) as in a transcript
    (spec §18.1). ``accepted`` maps (client, round) to the server message the
    client acted on, where several were sent (an attack's tampered and genuine
    versions); without it the last one sent counts, and without any sent bundle
    u is taken to have masked with every peer that addressed a ciphertext to it
    (exact for an honest server unless round 1 pruned a sender; a peer too many
    only hides leakage, so give ``sent`` when judging a deviating server).
    ``opened`` are shares the server read by decrypting ciphertexts with keys of
    its own (substituted keys); corrupt clients' shares are added here.
    """
    received, sent = list(received), list(sent)
    accepted = accepted or {}
    adverts = _first_by_sender(received, Round.ADVERTISE_KEYS, AdvertiseKeys)
    advertised = {u: (m.enc_pk, m.mask_pk) for u, m in adverts.items()
                  if isinstance(m, AdvertiseKeys)}
    share_keys = _first_by_sender(received, Round.SHARE_KEYS, ShareKeys)
    receivers = {u: frozenset(v for v, _ in m.ciphertexts) for u, m in share_keys.items()
                 if isinstance(m, ShareKeys)}
    masked = _first_by_sender(received, Round.MASKED_INPUT, MaskedInput)
    bundles = _accepted(sent, accepted, Round.SHARE_KEYS, CiphertextBundle)
    key_lists = _accepted(sent, accepted, Round.ADVERTISE_KEYS, KeyBroadcast)
    masked_with: dict[int, frozenset[int]] = {}
    substituted: set[tuple[int, int]] = set()
    for u in masked:
        bundle = bundles.get(u)
        if isinstance(bundle, CiphertextBundle):
            peers = frozenset(v for v, _ in bundle.ciphertexts if v != u)
        else:
            peers = frozenset(v for v, r in receivers.items() if u in r and v != u)
        masked_with[u] = peers
        key_list = key_lists.get(u)
        if isinstance(key_list, KeyBroadcast):
            for e in key_list.entries:
                if e.client_id in peers and (
                        e.client_id not in advertised or advertised[e.client_id][1] != e.mask_pk):
                    substituted.add((u, e.client_id))
    revealed = set(opened)
    for sender, msg in _decoded(received, Round.UNMASKING, UnmaskResponse):
        if isinstance(msg, UnmaskResponse) and msg.sender == sender:
            revealed.update(RevealedShare(sender, owner, ShareKind(kind))
                            for owner, kind, _ in msg.shares)
    return AdversaryView(tuple(config.cohort), config.threshold, masked_with, receivers,
                         frozenset(revealed), frozenset(corrupt), frozenset(substituted),
                         advertised)


def view_from_transcript(transcript: Transcript, *, corrupt: Iterable[int] = (),
                         opened: Iterable[RevealedShare] = ()) -> AdversaryView:
    """The view of the server that produced ``transcript`` (spec §18.1)."""
    config = SessionConfig.decode(transcript.config)
    up = [(r.round, r.client, r.data) for r in transcript.records if r.direction is Direction.UP]
    down = [(r.round, r.client, r.data) for r in transcript.records
            if r.direction is Direction.DOWN]
    return view_from_messages(config, up, down, corrupt=corrupt, opened=opened)


class ViewRecorder:
    """Collects a server's view as a session runs, through a driver's observer hooks.

    ``on_up(round, client_id, data)`` for every message the server received and
    ``on_down(round, client_id, data)`` for every message it sent (the same calls
    a :class:`~secagg.transcript.TranscriptRecorder` gets); :meth:`view` then builds
    the :class:`AdversaryView` with :func:`view_from_messages`.
    """

    def __init__(self, config: SessionConfig) -> None:
        self.config = config
        self.received: list[Wire] = []
        self.sent: list[Wire] = []

    def on_up(self, round_number: int, client_id: int, data: bytes) -> None:
        self.received.append((int(round_number), client_id, bytes(data)))

    def on_down(self, round_number: int, client_id: int, data: bytes) -> None:
        self.sent.append((int(round_number), client_id, bytes(data)))

    def view(self, *, corrupt: Iterable[int] = (),
             accepted: Mapping[tuple[int, int], Message | bytes] | None = None,
             opened: Iterable[RevealedShare] = ()) -> AdversaryView:
        return view_from_messages(self.config, self.received, self.sent, corrupt=corrupt,
                                  accepted=accepted, opened=opened)
