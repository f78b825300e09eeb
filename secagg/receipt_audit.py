"""Rule A12: client receipts against the server's transcript (spec §18.6).

Why a module of its own: rules A1..A11 check the transcript against itself and
the spec; A12 checks it against evidence the server did not write. A server
that records one thing and sends another, or drops what a client sent, passes
A1..A11 with a consistent transcript and fails here, with the client and the
round named.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from secagg.audit import MAX_FINDINGS, Rule, RuleResult, Status
from secagg.config import Mode, SessionConfig
from secagg.errors import SecAggError
from secagg.identity import TrustStore, lookup_verify_key
from secagg.receipt import Receipt
from secagg.transcript import Direction, Transcript

RECEIPT_RULE = Rule("A12", "client receipts match the transcript", "§18.6")

_Key = tuple[int, bytes]  # (round, digest)


def check_receipts(transcript: Transcript, receipts: Sequence[Receipt], *,
                   trust_store: TrustStore | Mapping[int, bytes] | None = None) -> RuleResult:
    """A12: every receipt of this session is intact (chain; signature in active mode),
    lists only messages the transcript has, and the transcript claims from its client
    only what the client sent and (before its last message) received."""
    try:
        cfg = SessionConfig.decode(transcript.config)
    except SecAggError:
        return RuleResult(RECEIPT_RULE, Status.SKIP, (), "configuration unusable")
    mine = [r for r in receipts if r.session_id == cfg.session_id]
    findings: list[str] = []
    if not mine:
        findings.append("no receipt is for this session")
    seen: set[int] = set()
    store = trust_store if trust_store is not None else transcript.trust_store
    for receipt in sorted(mine, key=lambda r: r.client):
        u = receipt.client
        if u in seen or u not in cfg.cohort:
            findings.append(f"client {u}: a second receipt, or a client outside the cohort")
            continue
        seen.add(u)
        findings.extend(_intact(receipt, cfg.mode, store))
        findings.extend(_compare(receipt, transcript))
    other = len(receipts) - len(mine)
    note = f"{len(seen)} receipts checked" + (f", {other} of other sessions ignored"
                                              if other else "")
    tail = [f"... and {len(findings) - MAX_FINDINGS} more"] if len(findings) > MAX_FINDINGS \
        else []
    shown = tuple(findings[:MAX_FINDINGS] + tail)
    return RuleResult(RECEIPT_RULE, Status.FAIL if findings else Status.PASS, shown, note)


def _intact(receipt: Receipt, mode: Mode,
            store: TrustStore | Mapping[int, bytes] | None) -> list[str]:
    u = receipt.client
    if not receipt.chain_ok():
        return [f"client {u}: the receipt's hash chain does not match its entries (edited)"]
    if mode is not Mode.ACTIVE and receipt.signature is None:
        return []
    key = None
    if store is not None:
        try:
            key = store.get(u) if isinstance(store, Mapping) else lookup_verify_key(store, u)
        except SecAggError:
            key = None
    if key is None:
        return [f"client {u}: no identity key to verify the receipt's signature"]
    if not receipt.signature_ok(bytes(key)):
        return [f"client {u}: the receipt is not signed by the client's identity key"]
    return []


def _compare(receipt: Receipt, transcript: Transcript) -> list[str]:
    u = receipt.client
    recorded = {d: Counter[_Key]() for d in Direction}
    for rec in transcript.records:
        if rec.client == u:
            recorded[rec.direction][(rec.round, rec.message_digest)] += 1
    kept = {d: Counter[_Key]() for d in Direction}
    for e in receipt.entries:
        kept[e.direction][(e.round, e.digest)] += 1
    out = [f"client {u}, round {r}: the client sent a message the transcript does not "
           "contain (dropped or altered by the server)"
           for r in _rounds(kept[Direction.UP] - recorded[Direction.UP])]
    out += [f"client {u}, round {r}: the server showed the client a message the transcript "
            "does not contain" for r in _rounds(kept[Direction.DOWN] - recorded[Direction.DOWN])]
    out += [f"client {u}, round {r}: the transcript records a message from the client that "
            "it never sent" for r in _rounds(recorded[Direction.UP] - kept[Direction.UP])]
    last = max((e.round for e in receipt.entries if e.direction is Direction.UP), default=-1)
    unseen = recorded[Direction.DOWN] - kept[Direction.DOWN]
    out += [f"client {u}, round {r}: the transcript records a message to the client that it "
            "never received" for r in _rounds(unseen) if r < last]
    return out


def _rounds(keys: Iterable[_Key]) -> list[int]:
    return sorted({r for r, _ in keys})
