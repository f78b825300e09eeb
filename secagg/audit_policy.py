"""Rules A13, A14: the declared parameters against the auditor's policy (spec §18.8).

Why a rule of its own: rules A1..A12 check that the server followed the protocol on
the config it declared, and receipts check that what the clients saw is what the
transcript says. A server that declares a bad config and then follows the protocol on
it passes all of them: a rate downgrade (scenario S14: γ = δ = 0, so Harary (k, t) =
(2, 2) and two corrupt neighbours undo a victim) or a ground permutation (S15: the
server tries ``round_index`` values until chosen corrupt clients surround a chosen
victim, §12.2 d) is an honestly recorded transcript of a bad session. Semi-honest
clients accept both by design (the client policy is opt-in there, §15.8), so the
evidence is the config itself, judged against what the auditor (or the clients'
organisation) requires: an :class:`AuditPolicy`.

The receipts need no new field for this: a receipt's session id is computed by the
client from every config field (§3.1), so a receipt for the transcript's session
proves that its client accepted exactly the recorded rates, threshold, degree and
round index (A12 fails when no receipt is for the recorded config).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from secagg import graph as graphs
from secagg.audit import AuditReport, Rule, RuleResult, Status
from secagg.checks import is_plain_int
from secagg.config import SessionConfig
from secagg.errors import ConfigError, SecAggError
from secagg.policy import ClientPolicy, required_ppm, show_ppm
from secagg.rounds import Round
from secagg.transcript import Direction, Transcript

if TYPE_CHECKING:
    from secagg.receipt import Receipt

__all__ = ["POLICY_RULES", "AuditPolicy", "check_policy"]

PARAMETER_RULE = Rule("A13", "declared parameters meet the auditor's policy",
                      "§15.8, §16.3, §18.8")
ROUND_INDEX_RULE = Rule("A14", "round index is the one scheduled (no grinding)",
                        "§12.2 d, §18.8")
POLICY_RULES = (PARAMETER_RULE, ROUND_INDEX_RULE)

#: Largest policy file read.
MAX_POLICY_BYTES = 1 << 16
_FIELDS = ("min_corruption_rate", "min_dropout_rate", "grind_margin_bits", "round_index")
_MAX_ROUND_INDEX = (1 << 64) - 1


@dataclass(frozen=True)
class AuditPolicy:
    """What the auditor requires of a session's declared config (spec §18.8).

    ``client``: the rates and grinding margin a client holding this policy would have
    demanded (:class:`~secagg.policy.ClientPolicy`, defaults 0.05, 0, 24 bits); the
    auditor applies it in both modes, since a semi-honest client does not. ``round_index``:
    the round index the deployment scheduled for this session (the FL round, or the gRPC
    server's first round plus the session's sequence, the number in the transcript's file
    name); None leaves A14 unchecked.
    """

    client: ClientPolicy = field(default_factory=ClientPolicy)
    round_index: int | None = None

    def __post_init__(self) -> None:
        index = self.round_index
        if index is not None and (not is_plain_int(index) or not 0 <= index <= _MAX_ROUND_INDEX):
            raise ConfigError("round_index must be an int in [0, 2^64 - 1]")

    @classmethod
    def from_dict(cls, obj: Mapping[str, object]) -> AuditPolicy:
        """A policy from a JSON object of the fields in :data:`_FIELDS` (all optional)."""
        unknown = sorted(set(obj) - set(_FIELDS))
        if unknown:
            raise ConfigError(f"unknown policy field {unknown[0]!r}; known: {', '.join(_FIELDS)}")
        rates = {k: v for k, v in obj.items() if k != "round_index"}
        try:
            client = ClientPolicy(**rates)  # type: ignore[arg-type]  # checked by ClientPolicy
        except TypeError:  # pragma: no cover - every key is a field
            raise ConfigError("malformed policy") from None
        index = obj.get("round_index")
        if index is not None and not is_plain_int(index):
            raise ConfigError("round_index must be an int")
        return cls(client, index)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> AuditPolicy:
        """Read a policy file (one JSON object); ConfigError when unreadable or malformed."""
        try:
            if os.path.getsize(path) > MAX_POLICY_BYTES:
                raise ConfigError(f"policy file exceeds {MAX_POLICY_BYTES} bytes")
            obj = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read policy: {exc.strerror}") from None
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ConfigError("policy is not a JSON object") from None
        if not isinstance(obj, dict):
            raise ConfigError("policy is not a JSON object")
        return cls.from_dict(obj)


def check_policy(transcript: Transcript, policy: AuditPolicy,
                 receipts: Sequence[Receipt] | None = None) -> AuditReport:
    """A13 and A14 on the transcript's config; findings name the clients that accepted it
    in round 0 (by their receipts when given, else by their round-0 messages). A14 is in
    ``unchecked`` when the policy names no round index."""
    try:
        cfg = SessionConfig.decode(transcript.config)
    except SecAggError:
        return AuditReport(tuple(RuleResult(r, Status.SKIP, (), "configuration unusable")
                                 for r in POLICY_RULES))
    who = _accepted_by(transcript, cfg, receipts)
    unchecked = frozenset({ROUND_INDEX_RULE.id} if policy.round_index is None else ())
    return AuditReport((_parameters(cfg, policy.client, who),
                        _round_index(cfg, policy.round_index, who)), unchecked)


def _accepted_by(transcript: Transcript, cfg: SessionConfig,
                 receipts: Sequence[Receipt] | None) -> str:
    held = sorted({r.client for r in receipts or () if r.session_id == cfg.session_id
                   and r.client in cfg.cohort})
    if held:
        return f"clients {ranges(held)} ({len(held)}, by their receipts)"
    sent = sorted({rec.client for rec in transcript.records if rec.direction is Direction.UP
                   and rec.round == int(Round.ADVERTISE_KEYS)})
    if sent:
        return f"clients {ranges(sent)} ({len(sent)}, by their messages in the transcript)"
    return "no client (none advertised keys)"


def ranges(ids: Sequence[int]) -> str:
    """Every id of a sorted list, runs of consecutive ids written ``a-b`` ("3-20, 25"): a
    finding names each client that accepted the config, in a line that stays short."""
    runs: list[list[int]] = []
    for u in ids:
        if runs and u == runs[-1][1] + 1:
            runs[-1][1] = u
        else:
            runs.append([u, u])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)


def _parameters(cfg: SessionConfig, policy: ClientPolicy, who: str) -> RuleResult:
    """A13: the declared rates meet the policy's minimums, and (k, t) is safe at the rates
    the policy requires (with the grinding margin in active mode, as §15.8)."""
    corrupt = required_ppm(policy.min_corruption_rate, "corruption rate")
    dropout = required_ppm(policy.min_dropout_rate, "dropout rate")
    findings = [f"round 0: {who} accepted a config declaring a {what} {show_ppm(declared)}, "
                f"below the policy's {show_ppm(required)}"
                for what, declared, required in (
                    ("corruption rate", cfg.corruption_ppm, corrupt),
                    ("dropout rate", cfg.dropout_ppm, dropout)) if declared < required]
    shape = (f"Harary (k, t) = ({cfg.degree}, {cfg.threshold})"
             if cfg.graph is graphs.GraphKind.HARARY else f"complete-graph t = {cfg.threshold}")
    corrupt, dropout = max(cfg.corruption_ppm, corrupt), max(cfg.dropout_ppm, dropout)
    try:
        # the config's own checks (§2.3, §6.5) at the policy's rates, then in active mode
        # the grinding margin of §16.3, as a client holding the policy checks (§15.8)
        policy.check(dataclasses.replace(cfg, corruption_ppm=corrupt, dropout_ppm=dropout))
    except ConfigError as exc:
        findings.append(f"round 0: {who} accepted {shape} at n = {cfg.n}, unsafe at the "
                        f"policy's rates (corruption {show_ppm(corrupt)}, dropout "
                        f"{show_ppm(dropout)}): {exc}")
    note = f"{shape}, declared corruption {show_ppm(cfg.corruption_ppm)}, dropout " \
        f"{show_ppm(cfg.dropout_ppm)}"
    return RuleResult(PARAMETER_RULE, Status.FAIL if findings else Status.PASS,
                      tuple(findings), note)


def _round_index(cfg: SessionConfig, expected: int | None, who: str) -> RuleResult:
    """A14: the config's round index is the scheduled one; a server that grinds the Harary
    permutation (§12.2 d) must pick another."""
    if expected is None:
        return RuleResult(ROUND_INDEX_RULE, Status.SKIP, (),
                          "not checked: the policy names no round index")
    if cfg.round_index == expected:
        return RuleResult(ROUND_INDEX_RULE, Status.PASS, (), f"round index {expected}")
    why = (" a server that chooses it can grind the Harary permutation (§12.2 d)"
           if cfg.graph is graphs.GraphKind.HARARY and cfg.degree < cfg.n - 1 else "")
    return RuleResult(ROUND_INDEX_RULE, Status.FAIL, (
        f"round 0: {who} accepted round index {cfg.round_index}, not the scheduled "
        f"{expected}:{why or ' another session than the one scheduled'}",), "")
