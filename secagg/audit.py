"""Offline audit of a session transcript against the server rules of the spec (§18).

Why: clients check what they receive, but each client sees only its own
messages; a server that tells different clients different things, relays
substituted keys, or announces a sum other than the one the messages imply is
visible only to someone holding the whole transcript. :func:`audit_transcript`
takes a :class:`~secagg.transcript.Transcript` and re-derives, from the client
messages it contains and the spec's acceptance rules, every set the server
should have formed (A, U1, U2, U3, and in active mode the signers U4 and the
unmasking set Q), the message each client should have received, and the result.
It then compares those with what the server actually sent and published.

The rules are numbered A1..A11 (spec §18.2); each cites the server rule it
checks. A12 (client receipts, :mod:`secagg.receipt_audit`) and A13-A14 (the declared
parameters against the auditor's policy, :mod:`secagg.audit_policy`) are added when
their evidence is given. The auditor is independent of :mod:`secagg.server`: it shares only the
codec and the cryptographic primitives, so a bug in the server's bookkeeping
shows up as a violation instead of being reproduced. Client messages the
server had to refuse (duplicates, wrong lengths, bad signatures, out-of-field
shares) are not violations: the auditor applies the same refusals.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from secagg import masking
from secagg import messages as msgs
from secagg.config import DEFAULT_MIN_COHORT, Mode, SessionConfig
from secagg.crypto import shamir
from secagg.crypto.agreement import X25519PrivateKey, public_key_matches, validate_public_key
from secagg.crypto.prg import mask_dtype
from secagg.crypto.signatures import validate_verify_key, verify
from secagg.errors import (
    InvalidKeyError,
    MessageDecodeError,
    ReconstructionError,
    SecAggError,
    SignatureError,
)
from secagg.identity import TrustStore, advertise_statement, lookup_verify_key, view_statement
from secagg.kernels.arith import add_into, sub_into
from secagg.packing import bit_width, unpack
from secagg.rounds import Round
from secagg.transcript import MASKED_HEAD, Direction, Record, Transcript
from secagg.wire import MAX_U32, Reader

if TYPE_CHECKING:
    from secagg.audit_policy import AuditPolicy
    from secagg.receipt import Receipt

__all__ = ["RULES", "AuditReport", "Rule", "RuleResult", "Status", "audit_transcript"]

#: Findings kept per rule; the rest are counted (a broken transcript can have thousands).
MAX_FINDINGS = 20


@dataclass(frozen=True)
class Rule:
    """One audit rule: its number, what it checks, and the spec sections it enforces."""

    id: str
    title: str
    cites: str


RULES: tuple[Rule, ...] = (
    Rule("A1", "transcript well-formed; each server message decodes and fits its round",
         "§2.6, §7.2-§7.6, §8.0, §15.4, §18.1"),
    Rule("A2", "session policy: cohort size and model hash", "§2.4, §15.8"),
    Rule("A3", "key lists relay exactly the accepted advertised keys", "§8.1, §15.5, §3.3"),
    Rule("A4", "each ciphertext delivered unchanged to its addressee only", "§8.2, §5"),
    Rule("A5", "sets shrink monotonically", "§8.1-§8.3, §9.2, §15.6"),
    Rule("A6", "thresholds held at every round", "§8.1-§8.5, §9.2, §15.6"),
    Rule("A7", "one consistent survivor view", "§8.3, §15.6, §15.7, §12.2 a"),
    Rule("A8", "never both shares of one client", "§8.5"),
    Rule("A9", "signatures", "§4.5, §15.3, §15.5-§15.7"),
    Rule("A10", "unmasking responses and reconstruction", "§8.5 close steps 1-2"),
    Rule("A11", "published result equals the recomputed unmasking", "§8.5 close steps 3-4"),
)
_RULE_IDS = tuple(r.id for r in RULES)

#: a server message type the audit looks for in a round
_M = TypeVar("_M", bound=msgs.Message)


class Status(enum.Enum):
    """A rule's verdict; SKIP when an earlier failure made the rule impossible to check."""

    PASS = "PASS"  # noqa: S105 (a verdict, not a password)
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True)
class RuleResult:
    rule: Rule
    status: Status
    findings: tuple[str, ...]
    note: str = ""


@dataclass(frozen=True)
class AuditReport:
    """Verdict per rule. ``ok`` only when every rule passed (a skipped rule is not a pass),
    except the rules in ``unchecked``: those the transcript's form rules out by design
    (A11 when the masked vectors are recorded as hashes, spec §18.5) or the auditor's
    policy does not ask for (A14 without a round index, §18.8), skipped and said so."""

    results: tuple[RuleResult, ...]
    unchecked: frozenset[str] = frozenset()

    @property
    def ok(self) -> bool:
        return all(r.status is Status.PASS
                   or (r.status is Status.SKIP and r.rule.id in self.unchecked)
                   for r in self.results)

    @property
    def failed(self) -> frozenset[str]:
        """Ids of the rules that found a violation."""
        return frozenset(r.rule.id for r in self.results if r.status is Status.FAIL)

    def lines(self, *, details: bool = True) -> list[str]:
        """Human-readable verdicts, one line per rule (plus indented findings)."""
        out = []
        width = max(len(r.rule.title) for r in self.results) + 2
        for res in self.results:
            note = f"; {res.note}" if res.note else ""
            leader = f"{res.rule.title} ".ljust(width, ".")
            out.append(f"{res.rule.id:<4}{leader} {res.status.value}  ({res.rule.cites}{note})")
            if details:
                out.extend(f"      - {f}" for f in res.findings)
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "unchecked": sorted(self.unchecked),
            "rules": [{"id": r.rule.id, "title": r.rule.title, "cites": r.rule.cites,
                       "status": r.status.value, "note": r.note,
                       "findings": list(r.findings)} for r in self.results],
        }


def audit_transcript(
    transcript: Transcript,
    *,
    trust_store: TrustStore | Mapping[int, bytes] | None = None,
    min_cohort: int = DEFAULT_MIN_COHORT,
    task_hash: bytes | None = None,
    receipts: Sequence[Receipt] | None = None,
    policy: AuditPolicy | None = None,
) -> AuditReport:
    """Check ``transcript`` against rules A1..A11 (A12 when ``receipts`` are given, A13 and
    A14 when a ``policy`` is).

    ``trust_store`` overrides the identity keys recorded in the transcript
    (active mode); ``min_cohort`` is the smallest cohort the auditor accepts
    (the clients' default floor, spec §15.8); ``task_hash``, when given, is the
    model hash the session must carry; ``receipts`` are clients' receipts
    (spec §18.6), checked against the transcript by rule A12; ``policy`` is the
    auditor's :class:`~secagg.audit_policy.AuditPolicy`, which the declared rates,
    threshold, degree (A13) and round index (A14) must meet (spec §18.8).
    """
    report = _Audit(transcript, trust_store, min_cohort, task_hash).run()
    results, unchecked = list(report.results), set(report.unchecked)
    if receipts is not None:
        from secagg.receipt_audit import check_receipts

        results.append(check_receipts(transcript, receipts, trust_store=trust_store))
    if policy is not None:
        from secagg.audit_policy import check_policy

        extra = check_policy(transcript, policy, receipts)
        results.extend(extra.results)
        unchecked |= extra.unchecked
    return AuditReport(tuple(results), frozenset(unchecked))


# --- the audit ----------------------------------------------------------------------------
_DOWN_TYPES: dict[Mode, dict[int, tuple[type[msgs.Message], ...]]] = {
    Mode.SEMI_HONEST: {0: (msgs.KeyBroadcast, msgs.Abort), 1: (msgs.CiphertextBundle, msgs.Abort),
                       2: (msgs.UnmaskRequest, msgs.Abort), 4: (msgs.Abort,)},
    Mode.ACTIVE: {0: (msgs.KeyBroadcast, msgs.Abort), 1: (msgs.CiphertextBundle, msgs.Abort),
                  2: (msgs.ConsistencyRequest, msgs.Abort),
                  3: (msgs.ConsistencyRequest, msgs.Abort), 4: (msgs.Abort,)},
}


@dataclass
class _Findings:
    items: dict[str, list[str]] = field(default_factory=lambda: {r: [] for r in _RULE_IDS})
    extra: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_RULE_IDS, 0))

    def add(self, rule: str, text: str) -> None:
        if len(self.items[rule]) < MAX_FINDINGS:
            if text not in self.items[rule]:
                self.items[rule].append(text)
        else:
            self.extra[rule] += 1

    def of(self, rule: str) -> tuple[str, ...]:
        more = self.extra[rule]
        tail = (f"... and {more} more",) if more else ()
        return (*self.items[rule], *tail)


def _ids(values: Iterable[int]) -> str:
    items = sorted(values)
    text = ", ".join(str(v) for v in items[:8])
    return text + (f", ... ({len(items)} in all)" if len(items) > 8 else "")


class _Audit:
    """One audit run; methods named after the rounds they replay."""

    def __init__(self, transcript: Transcript, trust_store: TrustStore | Mapping[int, bytes]
                 | None, min_cohort: int, task_hash: bytes | None) -> None:
        self.tr = transcript
        self.f = _Findings()
        self.notes: dict[str, str] = {}
        #: rules the transcript's form rules out (hashed vectors: A11)
        self.unchecked: set[str] = set()
        self.hashed = transcript.hashed
        self.min_cohort = min_cohort
        self.task_hash = task_hash
        self._trust_arg = trust_store
        # derived state
        self.up: dict[int, list[msgs.Message]] = defaultdict(list)
        self.down: dict[int, dict[int, list[msgs.Message]]] = defaultdict(lambda: defaultdict(list))
        self.adverts: dict[int, msgs.AdvertiseKeys] = {}
        self.refused_adverts: dict[int, str] = {}
        self.u1: frozenset[int] | None = None
        self.cts: dict[int, dict[int, bytes]] = {}  # sender -> receiver -> ciphertext
        self.commitments: dict[int, bytes] = {}
        self.u2: frozenset[int] | None = None
        self.u3: frozenset[int] = frozenset()
        self.accumulator: np.ndarray | None = None
        self.views: dict[int, list[msgs.ConsistencyRequest]] = defaultdict(list)
        self.signed_view: dict[int, msgs.ConsistencyRequest] = {}
        self.view_sigs: dict[int, bytes] = {}
        self.u4: frozenset[int] = frozenset()
        self.q: frozenset[int] = frozenset()
        self.shares: dict[msgs.ShareKind, dict[int, dict[int, bytes]]] = {
            msgs.ShareKind.SELF_MASK_SEED: defaultdict(dict),
            msgs.ShareKind.MASK_KEY: defaultdict(dict)}

    # -- driver ------------------------------------------------------------------------------
    def run(self) -> AuditReport:
        try:
            self.cfg = SessionConfig.decode(self.tr.config)
        except SecAggError as exc:
            self.f.add("A1", f"the configuration does not decode or validate: {exc}")
            return self._report(skip_reason="configuration unusable")
        cfg = self.cfg
        self.t = cfg.threshold
        self.sid = cfg.session_id
        self.active = cfg.mode is Mode.ACTIVE
        self.cohort = frozenset(cfg.cohort)
        self.nb = {u: frozenset(cfg.neighbours(u)) for u in cfg.cohort}
        self._load_trust()
        self._framing()
        self._policy()
        self._round0()
        self._round1()
        self._round2()
        if self.active:
            self._round3()
        self._both_shares()
        self._round4()
        return self._report()

    def _report(self, skip_reason: str = "") -> AuditReport:
        results = []
        for rule in RULES:
            findings = self.f.of(rule.id)
            if findings:
                status = Status.FAIL
            elif skip_reason or rule.id in self.unchecked:
                status = Status.SKIP
            else:
                status = Status.PASS
            note = skip_reason if skip_reason and status is Status.SKIP else self.notes.get(
                rule.id, "")
            results.append(RuleResult(rule, status, findings, note))
        return AuditReport(tuple(results), frozenset(self.unchecked) if not skip_reason
                           else frozenset())

    def nbrs(self, u: int, among: Iterable[int]) -> frozenset[int]:
        return self.nb[u] & frozenset(among)

    def domain(self, u: int) -> frozenset[int]:
        return self.nb[u] | {u}

    # -- trust store -------------------------------------------------------------------------
    def _load_trust(self) -> None:
        self.trust: dict[int, bytes | None] = {}
        source = self._trust_arg if self._trust_arg is not None else self.tr.trust_store
        self.has_trust = source is not None
        if not self.active:
            return
        if source is None:
            self.f.add("A9", "active-mode transcript without identity keys: cannot verify any "
                       "signature (record the trust store or give --trust-store)")
            return
        for u in sorted(self.cohort):
            try:
                if isinstance(source, Mapping):
                    raw = source.get(u)
                    key = None if raw is None else validate_verify_key(bytes(raw))
                else:
                    key = lookup_verify_key(source, u)
            except SecAggError:
                self.f.add("A9", f"the identity key of client {u} is not a valid Ed25519 key")
                key = None
            self.trust[u] = key

    def identity(self, u: int) -> bytes | None:
        return self.trust.get(u)

    def verifies(self, u: int, statement: bytes, signature: bytes) -> bool:
        key = self.identity(u)
        if key is None:
            return False
        try:
            verify(key, statement, signature)
        except SignatureError:
            return False
        return True

    # -- A1: framing -------------------------------------------------------------------------
    def _framing(self) -> None:
        allowed = _DOWN_TYPES[self.cfg.mode]
        seen: dict[tuple[int, int], int] = defaultdict(int)
        for i, rec in enumerate(self.tr.records, start=1):
            msg = self._decode(rec, i)
            if rec.direction is Direction.UP:
                if msg is not None and isinstance(msg, Round(rec.round).client_message):
                    self.up[rec.round].append(msg)
                continue
            where = f"server message #{i} (round {rec.round}, to client {rec.client})"
            if rec.client not in self.cohort:
                self.f.add("A1", f"{where} goes to a client outside the cohort")
            if msg is None:
                continue
            kinds = allowed.get(rec.round, ())
            if not isinstance(msg, kinds):
                self.f.add("A1", f"{where} is a {type(msg).__name__}, which round {rec.round} of "
                           f"a {self.cfg.mode.value} session never sends")
                continue
            seen[(rec.round, rec.client)] += 1
            if seen[(rec.round, rec.client)] == 2:
                self.f.add("A1", f"the server sent client {rec.client} more than one message "
                           f"when round {rec.round} closed")
            self.down[rec.round][rec.client].append(msg)
        if not self.tr.ended:
            self.f.add("A1", "the transcript has no end record (truncated?)")
        res = self.tr.result
        if res is not None and (res.bits != bit_width(self.cfg.modulus)
                                or res.count != self.cfg.dim):
            self.f.add("A1", "the published sum is not a vector of m elements packed at "
                       "ceil(log2 R) bits")

    def _decode(self, rec: Record, index: int) -> msgs.Message | None:
        if rec.hashed:
            return hashed_masked_input(rec) if rec.direction is Direction.UP else None
        try:
            return msgs.decode(rec.data)
        except MessageDecodeError as exc:
            if rec.direction is Direction.DOWN:
                self.f.add("A1", f"server message #{index} (round {rec.round}, to client "
                           f"{rec.client}) does not decode: {exc}")
            return None

    # -- A2: policy --------------------------------------------------------------------------
    def _policy(self) -> None:
        cfg = self.cfg
        if cfg.n < self.min_cohort:
            self.f.add("A2", f"the cohort has {cfg.n} clients, below the minimum of "
                       f"{self.min_cohort}: a sum over so few reveals too much about each")
        if self.task_hash is not None and cfg.task_hash != self.task_hash:
            self.f.add("A2", "the session's task hash differs from the expected model hash")

    # -- round 0 -----------------------------------------------------------------------------
    def _round0(self) -> None:
        used: set[bytes] = set()
        identities: dict[bytes, int] = {}
        for msg in self.up[0]:
            assert isinstance(msg, msgs.AdvertiseKeys)
            u = msg.sender
            reason = self._advert_refusal(msg, used, identities)
            if reason is not None:
                self.refused_adverts.setdefault(u, reason)
                continue
            self.adverts[u] = msg
            used.update((msg.enc_pk, msg.mask_pk))
            vk = self.identity(u)
            if self.active and vk is not None:
                identities[vk] = u
        self.u1 = self._prune(set(self.adverts))
        for u, broadcasts in sorted(self.down[0].items()):
            for kb in broadcasts:
                if isinstance(kb, msgs.KeyBroadcast):
                    self._check_key_list(u, kb)
        recipients = {u for u, ms in self.down[0].items()
                      if any(isinstance(m, msgs.KeyBroadcast) for m in ms)}
        self._continued(0, recipients, self.u1, "advertised keys")

    def _advert_refusal(self, msg: msgs.AdvertiseKeys, used: set[bytes],
                        identities: Mapping[bytes, int]) -> str | None:
        u = msg.sender
        if u not in self.cohort:
            return "not in the cohort"
        if u in self.adverts:
            return "duplicate"
        if msg.signature and not self.active:
            return "a signature in semi-honest mode"
        if msg.enc_pk == msg.mask_pk:
            return "one key for both purposes"
        for key in (msg.enc_pk, msg.mask_pk):
            try:
                validate_public_key(key)
            except InvalidKeyError:
                return "an invalid or low-order key"
        if msg.enc_pk in used or msg.mask_pk in used:
            return "a key another client already uses"
        if self.active and self.has_trust:
            vk = self.identity(u)
            if vk is None:
                return "no identity in the trust store"
            if not self.verifies(u, advertise_statement(self.sid, u, msg.enc_pk, msg.mask_pk),
                                 msg.signature):
                return "a signature that does not verify"
            if vk in identities:
                return "the identity key of another client"
        return None

    def _prune(self, members: set[int]) -> frozenset[int] | None:
        """Prune(S) of spec §8.1; None when fewer than t + 1 clients remain (abort)."""
        t = self.t
        changed = True
        while changed:
            changed = False
            for u in sorted(members):
                if u in members and len(self.nb[u] & members) < t:
                    members.discard(u)
                    changed = True
        return frozenset(members) if len(members) >= t + 1 else None

    def _continued(self, round_number: int, recipients: set[int], expected: frozenset[int]
                   | None, what: str) -> None:
        """A5/A6 for rounds 0 and 1: who was sent the next round's message."""
        if not recipients:
            return
        if expected is None:
            self.f.add("A6", f"round {round_number}: the server went on although fewer than "
                       f"t + 1 = {self.t + 1} clients with t neighbours {what} (it must abort)")
            return
        outside = recipients - expected
        if outside:
            self.f.add("A5", f"round {round_number}: clients {_ids(outside)} were sent the next "
                       f"round's message but are not in U{round_number + 1}")

    def _check_key_list(self, u: int, kb: msgs.KeyBroadcast) -> None:
        u1 = self.u1
        ids = [e.client_id for e in kb.entries]
        own_keys: set[bytes] = set()
        if u in self.adverts:
            own_keys = {self.adverts[u].enc_pk, self.adverts[u].mask_pk}
        seen: set[bytes] = set()
        for e in kb.entries:
            v = e.client_id
            if v != u and v not in self.nb[u]:
                self.f.add("A3", f"key list to client {u} carries client {v}, not a neighbour")
            advert = self.adverts.get(v)
            if advert is None:
                why = self.refused_adverts.get(v, "it sent none")
                self.f.add("A3", f"key list to client {u} carries keys for client {v}, whose "
                           f"advertisement the server could not accept ({why})")
            elif e != msgs.KeyEntry(v, advert.enc_pk, advert.mask_pk, advert.signature):
                fields = [name for name, a, b in (
                    ("enc_pk", e.enc_pk, advert.enc_pk), ("mask_pk", e.mask_pk, advert.mask_pk),
                    ("signature", e.signature, advert.signature)) if a != b]
                self.f.add("A3", f"key list to client {u} substitutes the {'/'.join(fields)} "
                           f"of client {v}{self._key_remark(u, v, e, own_keys, seen)}")
            seen.update((e.enc_pk, e.mask_pk))
            if self.active:
                self._check_key_signature(u, e)
            elif e.signature:
                self.f.add("A9", f"key list to client {u} carries a signature in semi-honest "
                           "mode")
        if u1 is not None and u in u1:
            expected = self.nbrs(u, u1) | {u}
            missing = expected - set(ids)
            extra = {v for v in set(ids) - expected if v in self.adverts}  # others: above
            if missing:
                self.f.add("A3", f"key list to client {u} omits clients {_ids(missing)} of U1")
            if extra:
                self.f.add("A3", f"key list to client {u} carries clients {_ids(extra)}, which "
                           "are not its neighbours in U1")

    @staticmethod
    def _key_remark(u: int, v: int, e: msgs.KeyEntry, own: set[bytes], seen: set[bytes]) -> str:
        remarks = []
        for key in (e.enc_pk, e.mask_pk):
            try:
                validate_public_key(key)
            except InvalidKeyError:
                remarks.append("an invalid or low-order key")
            if key in own and v != u:
                remarks.append(f"client {u}'s own key")
            if key in seen:
                remarks.append("a key repeated in the list")
        return f" ({', '.join(dict.fromkeys(remarks))})" if remarks else ""

    def _check_key_signature(self, u: int, e: msgs.KeyEntry) -> None:
        if not self.has_trust:
            return
        v = e.client_id
        if self.identity(v) is None:
            self.f.add("A9", f"key list to client {u} carries client {v}, which has no identity")
        elif not self.verifies(v, advertise_statement(self.sid, v, e.enc_pk, e.mask_pk),
                               e.signature):
            self.f.add("A9", f"key list to client {u} relays keys of client {v} whose signature "
                       "does not verify for this session")

    # -- round 1 -----------------------------------------------------------------------------
    def _round1(self) -> None:
        u1 = self.u1 or frozenset()
        for msg in self.up[1]:
            assert isinstance(msg, msgs.ShareKeys)
            u = msg.sender
            if u not in u1 or u in self.commitments:
                continue
            receivers = [r for r, _ in msg.ciphertexts]
            if set(receivers) != self.nbrs(u, u1) or len(receivers) != len(set(receivers)):
                continue
            self.cts[u] = dict(msg.ciphertexts)
            self.commitments[u] = msg.self_mask_commitment
        self.u2 = self._prune(set(self.commitments)) if self.u1 is not None else None
        where: dict[bytes, tuple[int, int]] = {
            ct: (s, r) for s, row in self.cts.items() for r, ct in row.items()}
        for u, bundles in sorted(self.down[1].items()):
            for b in bundles:
                if isinstance(b, msgs.CiphertextBundle):
                    self._check_bundle(u, b, where)
        recipients = {u for u, ms in self.down[1].items()
                      if any(isinstance(m, msgs.CiphertextBundle) for m in ms)}
        self._continued(1, recipients, self.u2, "shared keys")
        for u, ms in self.down[1].items():
            for m in ms:
                if isinstance(m, msgs.CiphertextBundle) and len(m.ciphertexts) < self.t:
                    self.f.add("A6", f"ciphertext bundle to client {u} carries "
                               f"{len(m.ciphertexts)} ciphertexts, fewer than t = {self.t}")

    def _check_bundle(self, u: int, bundle: msgs.CiphertextBundle,
                      where: Mapping[bytes, tuple[int, int]]) -> None:
        got = dict(bundle.ciphertexts)
        for v, ct in bundle.ciphertexts:
            if self.cts.get(v, {}).get(u) == ct:
                if self.u2 is not None and v not in self.u2:
                    self.f.add("A4", f"bundle to client {u} carries a ciphertext from client "
                               f"{v}, which is not in U2")
                continue
            origin = where.get(ct)
            if origin is None:
                self.f.add("A4", f"bundle to client {u} carries, as from client {v}, a "
                           "ciphertext no client sent")
            elif origin == (u, v):
                self.f.add("A4", f"bundle to client {u} reflects client {u}'s own ciphertext "
                           f"to client {v} back to it")
            else:
                self.f.add("A4", f"bundle to client {u} carries, as from client {v}, the "
                           f"ciphertext client {origin[0]} addressed to client {origin[1]}")
        if self.u2 is not None and u in self.u2:
            missing = {v for v in self.nbrs(u, self.u2) if v not in got}
            if missing:
                self.f.add("A4", f"bundle to client {u} withholds the ciphertexts of clients "
                           f"{_ids(missing)} in U2")

    # -- round 2 -----------------------------------------------------------------------------
    def _round2(self) -> None:
        cfg, u2 = self.cfg, self.u2 or frozenset()
        R, bits, dtype = cfg.modulus, bit_width(cfg.modulus), mask_dtype(cfg.modulus)
        accepted: set[int] = set()
        for msg in self.up[2]:
            assert isinstance(msg, msgs.MaskedInput)
            u = msg.sender
            if u not in u2 or u in accepted or msg.bits != bits or msg.count != cfg.dim:
                continue
            if not self.hashed:
                try:
                    vec = unpack(msg.packed, msg.bits, msg.count, dtype)
                except SecAggError:
                    continue
                if 1 << bits != R and vec.size and int(vec.max()) >= R:
                    continue
                if self.accumulator is None:
                    self.accumulator = np.zeros(cfg.dim, dtype=dtype)
                add_into(self.accumulator, vec, R)
            accepted.add(u)
        self.u3 = frozenset(accepted)
        self.abort2 = self._abort_reason_round2()
        requests = self._asked_to_unmask(
            2, (msgs.UnmaskRequest, msgs.ConsistencyRequest), self.abort2, self.u3,
            "sent no accepted masked input (not in U3)")
        for u, ms in sorted(requests.items()):
            for m in ms:
                assert isinstance(m, msgs.UnmaskRequest | msgs.ConsistencyRequest)
                if isinstance(m, msgs.ConsistencyRequest):
                    self.views[u].append(m)
                    if m.signatures:
                        self.f.add("A9", f"the view sent to client {u} to sign already carries "
                                   "signatures")
                self._check_view_lists(u, m.alive, m.dropped, self.domain(u), "request")

    def _abort_reason_round2(self) -> str:
        t, u3 = self.t, self.u3
        if self.u2 is None:
            return "round 1 left fewer than t + 1 clients"
        if len(u3) < t:
            return f"only {len(u3)} masked inputs were accepted, fewer than t = {t}"
        return self._short_of_helpers(u3, "surviving neighbours")

    def _asked_to_unmask(self, round_number: int, kinds: tuple[type[_M], ...], abort: str,
                         allowed: frozenset[int], not_allowed: str) -> dict[int, list[_M]]:
        """The unmask requests (messages of ``kinds``) the server sent per client when
        ``round_number`` closed, after A6 (it asked although the round must abort, for the
        reason ``abort``) and A5 (it asked clients outside ``allowed``: they ``not_allowed``)."""
        asked = {u: [m for m in ms if isinstance(m, kinds)]
                 for u, ms in self.down[round_number].items()}
        asked = {u: ms for u, ms in asked.items() if ms}
        if asked and abort:
            self.f.add("A6", f"round {round_number}: the server asked for unmasking although "
                       f"{abort} (it must abort before any share is requested)")
        outside = set(asked) - allowed
        if outside:
            self.f.add("A5", f"round {round_number}: clients {_ids(outside)} are asked to unmask "
                       f"but {not_allowed}")
        return asked

    def _short_of_helpers(self, helpers: frozenset[int], what: str) -> str:
        """The first client whose mask cannot be removed for want of t neighbours in
        ``helpers`` (those left to answer): a survivor in U3, or a client dropped after
        U2 that shares a pairwise mask with a survivor (§8.3, §9.1); "" when there is none."""
        t, u3, u2 = self.t, self.u3, self.u2 or frozenset()
        for u in sorted(u3):
            if len(self.nbrs(u, helpers)) < t:
                return f"client {u} has fewer than t {what}"
        for v in sorted(u2 - u3):
            if self.nbrs(v, u2) & u3 and len(self.nbrs(v, helpers)) < t:
                return f"dropped client {v} has fewer than t {what}"
        return ""

    def _expected_view(self, u: int, domain: frozenset[int]) -> tuple[tuple[int, ...],
                                                                      tuple[int, ...]]:
        u2 = self.u2 or frozenset()
        return (tuple(sorted(domain & self.u3)), tuple(sorted(domain & (u2 - self.u3))))

    def _check_view_lists(self, u: int, alive: tuple[int, ...], dropped: tuple[int, ...],
                          domain: frozenset[int], what: str) -> None:
        """A6 (enough alive neighbours), A5 (ids from the earlier sets), A7 (the true view)."""
        u2 = self.u2 or frozenset()
        others = set(alive) - {u}
        if u not in alive or len(self.nb[u] & others) < self.t:
            self.f.add("A6", f"{what} to client {u} lists {len(self.nb[u] & others)} alive "
                       f"neighbours, fewer than t = {self.t}")
        stray = (set(alive) | set(dropped)) - u2
        if stray:
            self.f.add("A5", f"{what} to client {u} names clients {_ids(stray)}, which are not "
                       "in U2")
        exp_alive, exp_dropped = self._expected_view(u, domain)
        if (alive, dropped) == (exp_alive, exp_dropped):
            return
        lies = []
        for v in sorted(set(alive) & (u2 - self.u3)):
            lies.append(f"{v} alive (no masked input accepted)")
        for v in sorted(set(dropped) & self.u3):
            lies.append(f"{v} dropped (its masked input was accepted)")
        omitted = (set(exp_alive) | set(exp_dropped)) - set(alive) - set(dropped)
        if omitted:
            lies.append(f"nothing about {_ids(omitted)}")
        outside = (set(alive) | set(dropped)) - domain
        if outside:
            lies.append(f"statuses of {_ids(outside)} outside its view")
        text = "; ".join(lies[:6]) if lies else "lists in another form"
        self.f.add("A7", f"{what} to client {u} does not state U3 and U2 \\ U3: it says {text}")

    # -- round 3 (active) --------------------------------------------------------------------
    def _round3(self) -> None:
        t = self.t
        for msg in self.up[3]:
            assert isinstance(msg, msgs.ConsistencySignature)
            u = msg.sender
            if u in self.view_sigs or not self.views.get(u):
                continue
            for view in self.views[u]:
                statement = view_statement(self.sid, u, view.alive, view.dropped)
                if self.verifies(u, statement, msg.signature):
                    self.view_sigs[u] = msg.signature
                    self.signed_view[u] = view
                    break
        self.u4 = frozenset(self.view_sigs)
        self.q = frozenset(u for u in self.u4 if len(self.nbrs(u, self.u4)) >= t)
        abort3 = self._abort_reason_round3()
        signed = self._asked_to_unmask(
            3, (msgs.ConsistencyRequest,), abort3, self.q,
            "are not signers with t signing neighbours (not in Q)")
        for u, ms in sorted(signed.items()):
            for m in ms:
                self.views[u].append(m)
                self._check_signed_request(u, m)

    def _abort_reason_round3(self) -> str:
        t, q = self.t, self.q
        if self.abort2:
            return self.abort2
        if len(q) < t:
            return f"only {len(q)} signers have t signing neighbours, fewer than t = {t}"
        return self._short_of_helpers(q, "neighbours able to unmask")

    def _check_signed_request(self, u: int, m: msgs.ConsistencyRequest) -> None:
        t = self.t
        signers = [v for v, _ in m.signatures]
        if len(signers) < t:
            self.f.add("A6", f"signed request to client {u} carries {len(signers)} signatures, "
                       f"fewer than t = {t}")
        expected_signers = self.nbrs(u, self.u4)
        domain = set(self.domain(u))
        for v in expected_signers:
            domain |= self.domain(v)
        self._check_view_lists(u, m.alive, m.dropped, frozenset(domain), "signed request")
        own = self.signed_view.get(u)
        if own is not None:
            mine = self.domain(u)
            if (tuple(x for x in m.alive if x in mine) != own.alive
                    or tuple(x for x in m.dropped if x in mine) != own.dropped):
                self.f.add("A7", f"signed request to client {u} does not repeat the view it "
                           "signed")
        if set(signers) != expected_signers:
            self.f.add("A9", f"signed request to client {u} relays signatures of "
                       f"{_ids(signers) or 'nobody'} instead of those of its signing "
                       f"neighbours {_ids(expected_signers) or '(none)'}")
        if not self.has_trust:
            return
        full = self.cfg.degree >= self.cfg.n - 1
        for v, sig in m.signatures:
            if v not in self.view_sigs or self.view_sigs[v] != sig:
                self.f.add("A9", f"signed request to client {u} carries a signature for client "
                           f"{v} that client {v} did not send")
                continue
            dom = self.cohort if full else self.domain(v)
            statement = view_statement(self.sid, v, [x for x in m.alive if x in dom],
                                       [x for x in m.dropped if x in dom])
            if not self.verifies(v, statement, sig):
                self.f.add("A9", f"signed request to client {u}: the signature of client {v} "
                           "does not verify on the lists it is relayed with")

    # -- A8 ----------------------------------------------------------------------------------
    def _both_shares(self) -> None:
        b_from: dict[int, set[int]] = defaultdict(set)
        s_from: dict[int, set[int]] = defaultdict(set)
        for r in (2, 3):
            for u, ms in self.down[r].items():
                for m in ms:
                    if not isinstance(m, msgs.UnmaskRequest | msgs.ConsistencyRequest):
                        continue
                    for v in set(m.alive) & self.nb[u]:
                        b_from[v].add(u)
                    for v in set(m.dropped) & self.nb[u]:
                        s_from[v].add(u)
        for v in sorted(set(b_from) & set(s_from)):
            both = b_from[v] & s_from[v]
            if both:
                self.f.add("A8", f"clients {_ids(both)} are asked for both the b-share and the "
                           f"s-share of client {v}")
            self.f.add("A8", f"client {v}'s b-shares are requested from {_ids(b_from[v])} and "
                       f"its s-shares from {_ids(s_from[v])}")

    # -- round 4 -----------------------------------------------------------------------------
    def _round4(self) -> None:
        asked = self._share_requests()
        responded: set[int] = set()
        for msg in self.up[4]:
            assert isinstance(msg, msgs.UnmaskResponse)
            u = msg.sender
            if u in responded or u not in asked:
                continue
            got = {owner: kind for owner, kind, _ in msg.shares}
            if len(got) != len(msg.shares) or got not in asked[u]:
                continue
            if any(int.from_bytes(s, "big") >= shamir.PRIME for _, _, s in msg.shares):
                continue
            for owner, kind, share in msg.shares:
                self.shares[kind][owner][u] = share
            responded.add(u)
        result = self.tr.result
        if result is None:
            self.notes["A10"] = self.notes["A11"] = "no result published"
            return
        secrets = self._reconstruct()
        if secrets is None:
            self.f.add("A11", "cannot recompute the sum: some secret does not reconstruct")
            return
        self._check_result(*secrets)

    def _share_requests(self) -> dict[int, list[dict[int, msgs.ShareKind]]]:
        """Per client, the share sets the server may accept from it (one per request)."""
        out: dict[int, list[dict[int, msgs.ShareKind]]] = defaultdict(list)
        if self.active:
            for u, ms in self.down[3].items():
                view = self.signed_view.get(u)
                if view is not None and any(isinstance(m, msgs.ConsistencyRequest) for m in ms):
                    out[u].append(_expected_shares(u, view.alive, view.dropped))
        else:
            for u, ms in self.down[2].items():
                for m in ms:
                    if isinstance(m, msgs.UnmaskRequest):
                        out[u].append(_expected_shares(u, m.alive, m.dropped))
        return out

    def _reconstruct(self) -> tuple[dict[int, bytes], dict[int, X25519PrivateKey]] | None:
        t, sid, u2, u3 = self.t, self.sid, self.u2 or frozenset(), self.u3
        b_seeds: dict[int, bytes] = {}
        ok = True
        for w in sorted(u3):
            shares = self.shares[msgs.ShareKind.SELF_MASK_SEED].get(w, {})
            commitment = self.commitments.get(w)
            if len(shares) < t or commitment is None:
                self.f.add("A10", f"a result was published with only {len(shares)} b-shares of "
                           f"client {w} (t = {t})")
                ok = False
                continue

            def check(seed: bytes, w: int = w, c: bytes = commitment) -> bool:
                return masking.self_mask_commitment(sid, w, seed) == c

            try:
                b_seeds[w] = shamir.reconstruct_verified(shares, t, check)
            except ReconstructionError:
                self.f.add("A10", f"a result was published though the b-shares of client {w} "
                           "reconstruct no seed matching its commitment")
                ok = False
        keys: dict[int, X25519PrivateKey] = {}
        for v in sorted(u2 - u3):
            if not self.nbrs(v, u2) & u3:
                continue
            shares = self.shares[msgs.ShareKind.MASK_KEY].get(v, {})
            if len(shares) < t or v not in self.adverts:
                self.f.add("A10", f"a result was published with only {len(shares)} s-shares of "
                           f"dropped client {v} (t = {t})")
                ok = False
                continue
            pk = self.adverts[v].mask_pk

            def check_key(secret: bytes, pk: bytes = pk) -> bool:
                return public_key_matches(secret, pk)

            try:
                keys[v] = X25519PrivateKey.from_bytes(
                    shamir.reconstruct_verified(shares, t, check_key))
            except ReconstructionError:
                self.f.add("A10", f"a result was published though the s-shares of dropped client "
                           f"{v} do not reconstruct its mask key")
                ok = False
        return (b_seeds, keys) if ok else None

    def _check_result(self, b_seeds: Mapping[int, bytes],
                      keys: Mapping[int, X25519PrivateKey]) -> None:
        cfg, sid = self.cfg, self.sid
        result = self.tr.result
        assert result is not None
        if result.included != tuple(sorted(self.u3)):
            self.f.add("A11", f"the published included set ({_ids(result.included)}) is not U3 "
                       f"({_ids(self.u3)})")
            return
        if result.bits != bit_width(cfg.modulus) or result.count != cfg.dim:
            return  # already an A1 finding
        if self.hashed:
            self.unchecked.add("A11")
            self.notes["A11"] = ("not checked: the masked vectors are recorded as hashes; "
                                 "the included set is")
            return
        R, dim, dtype = cfg.modulus, cfg.dim, mask_dtype(cfg.modulus)
        total = (np.zeros(dim, dtype=dtype) if self.accumulator is None
                 else self.accumulator.copy())
        scratch = np.empty(dim, dtype=dtype)
        for w, seed in sorted(b_seeds.items()):
            masking.expand_self_mask(seed, sid, w, dim, R, cfg.prg, out=scratch,
                                     version=cfg.prg_version)
            sub_into(total, scratch, R)
        for v, key in sorted(keys.items()):
            for w in sorted(self.nbrs(v, self.u3)):
                pk_v, pk_w = self.adverts[v].mask_pk, self.adverts[w].mask_pk
                seed = masking.pairwise_seed(key.exchange(pk_w), sid, v, w, pk_v, pk_w)
                masking.expand_pairwise_mask(seed, sid, v, w, dim, R, cfg.prg, out=scratch,
                                             version=cfg.prg_version)
                # w added sign(w, v) * PRG(s_vw): remove it
                if masking.pairwise_sign(w, v) > 0:
                    sub_into(total, scratch, R)
                else:
                    add_into(total, scratch, R)
        try:
            published = unpack(result.packed, result.bits, result.count, dtype)
        except SecAggError:
            self.f.add("A11", "the published sum does not unpack")
            return
        if not np.array_equal(published, total):
            wrong = int(np.count_nonzero(published != total))
            self.f.add("A11", f"the published sum differs from the recomputed unmasking in "
                       f"{wrong} of {dim} coordinates")


def hashed_masked_input(rec: Record) -> msgs.MaskedInput | None:
    """The MaskedInput a hash-mode record stands for, its vector left empty (spec §18.5):
    sender, bits and count from the recorded head, checked against the recorded size;
    None when the head does not describe a well-formed MaskedInput (the server refuses it).
    """
    r = Reader(rec.data)
    try:
        if (r.fixed(2, "magic") != msgs.MAGIC or r.u8("version") != msgs.VERSION
                or r.u8("type") != int(msgs.MaskedInput.TYPE)):
            return None
        sender, bits, count, length = r.u32("sender"), r.u8("bits"), r.u32("count"), r.u64("n")
    except MessageDecodeError:
        return None
    if (not 1 <= sender <= MAX_U32 or not 1 <= bits <= 64
            or length != (count * bits + 7) // 8 or rec.size != MASKED_HEAD + length):
        return None
    return msgs.MaskedInput(sender, bits, count, b"")


def _expected_shares(u: int, alive: Iterable[int],
                     dropped: Iterable[int]) -> dict[int, msgs.ShareKind]:
    out = {v: msgs.ShareKind.SELF_MASK_SEED for v in alive if v != u}
    out.update({v: msgs.ShareKind.MASK_KEY for v in dropped})
    return out
