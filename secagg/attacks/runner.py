"""Running scenarios and judging them: one verdict line per (scenario, mode, graph).

A server scenario is **defeated** when (1) honest clients refused the tampered
messages (at least one refusal: the attack was noticed, and each refused
message changed nothing), (2) the oracle holds after the session (spec §19.2),
and (3) the audit of the recorded transcript flags the scenario's rule (spec
§18). A client scenario is defeated when the honest server published either no
sum or exactly the sum of the included clients' inputs, and the audit passes
(the server did nothing wrong by refusing the malicious messages).

A run in a mode that does not defend the attack by design is reported as such,
with the evidence of the breach, and does not count against the suite.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from secagg.audit import AuditReport, audit_transcript
from secagg.config import Mode
from secagg.graph import GraphKind
from secagg.kernels.arith import add_into

from .harness import Harness, Setting
from .oracle import OracleVerdict, evaluate
from .scenarios import SCENARIOS, Expect, Scenario


@dataclass(frozen=True)
class Outcome:
    """What happened when one scenario ran in one setting, and the verdict."""

    scenario: Scenario
    setting: Setting
    expect: Expect
    defeated: bool
    tampered: int
    refused: int
    server_refusals: int
    result: str  # "exact", "aborted", "wrong" or "none"
    oracle: OracleVerdict | None
    audit: AuditReport | None
    flagged: frozenset[str]
    seconds: float
    reasons: tuple[str, ...]  # why not defeated (empty when defeated)

    @property
    def counts(self) -> bool:
        """Whether this line decides the exit status (the mode claims a defence)."""
        return self.expect is Expect.DEFENDED

    @property
    def ok(self) -> bool:
        return self.defeated or not self.counts

    def verdict(self) -> str:
        if self.expect is Expect.NOT_APPLICABLE:
            return f"n/a in {self.setting.mode.value} mode"
        if self.defeated:
            return "DEFEATED"
        if self.expect is Expect.NOT_DEFENDED:
            return f"not defended in {self.setting.mode.value} mode (by design)"
        return "NOT DEFEATED"

    def evidence(self) -> str:
        parts = []
        if self.expect is not Expect.DEFENDED and not self.defeated:
            parts.append(self.scenario.why_not)
        if self.expect is Expect.NOT_APPLICABLE:
            return parts[0]
        if self.scenario.kind == "server":
            parts.append(f"{self.refused}/{self.tampered} tampered refused")
            if self.oracle is not None:
                parts.append("oracle holds" if self.oracle.holds else
                             "oracle: " + "; ".join(self.oracle.breaches[:2]))
        else:
            parts.append(f"server refused {self.server_refusals} message(s); sum {self.result}")
        if self.audit is not None:
            parts.append("audit flags " + (",".join(sorted(self.flagged, key=_rule_key))
                                           if self.flagged else "nothing"))
        if self.reasons and not self.defeated and self.counts:
            parts.append("FAILED: " + "; ".join(self.reasons))
        return "; ".join(parts)

    def line(self) -> str:
        s = self.scenario
        return (f"{s.id:<4}{s.name:<24}{self.setting.mode.value:<12}"
                f"{self.setting.graph.value:<9}{self.verdict()}  [{self.evidence()}]")

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.scenario.id, "name": self.scenario.name, "kind": self.scenario.kind,
            "mode": self.setting.mode.value, "graph": self.setting.graph.value,
            "expect": self.expect.value, "defeated": self.defeated, "ok": self.ok,
            "verdict": self.verdict(), "tampered": self.tampered, "refused": self.refused,
            "server_refusals": self.server_refusals, "result": self.result,
            "oracle_breaches": [] if self.oracle is None else list(self.oracle.breaches),
            "recovered": [] if self.oracle is None else list(self.oracle.recovered),
            "audit_flags": sorted(self.flagged, key=_rule_key), "seconds": self.seconds,
            "reasons": list(self.reasons),
        }


def _rule_key(rule: str) -> int:
    return int(rule[1:])


def settings_for(scenario: Scenario) -> list[Setting]:
    """Every (mode, graph) the scenario runs in."""
    return [Setting(mode, graph) for graph in scenario.graphs
            for mode in (Mode.SEMI_HONEST, Mode.ACTIVE)]


def run_scenario(scenario: Scenario, setting: Setting) -> Outcome:
    """Run one scenario in one setting and judge it."""
    start = time.perf_counter()
    expect = scenario.expect(setting)
    if expect is Expect.NOT_APPLICABLE:
        return Outcome(scenario, setting, expect, False, 0, 0, 0, "none", None, None,
                       frozenset(), 0.0, ())
    h = Harness(setting, scenario.make(setting)).run()
    audit = audit_transcript(h.transcript())
    flagged = audit.failed
    tampered, refused = h.tampered_counts()
    result = _result(h)
    reasons: list[str] = []
    oracle: OracleVerdict | None = None
    if scenario.kind == "server":
        oracle = evaluate(h)
        if scenario.needs_refusal and tampered == 0:
            reasons.append("no tampered message reached an honest client")
        elif scenario.needs_refusal and refused == 0:
            reasons.append("no honest client refused")
        if not oracle.holds:
            reasons.extend(oracle.breaches)
        if scenario.audit_rule is not None and scenario.audit_rule not in flagged:
            reasons.append(f"the audit did not flag {scenario.audit_rule}")
    else:
        if result == "wrong":
            reasons.append("the server published a wrong sum")
        if flagged:
            reasons.append(f"the audit flagged the honest server ({', '.join(sorted(flagged))})")
    return Outcome(scenario, setting, expect, not reasons, tampered, refused,
                   len(h.server_refusals), result, oracle, audit, flagged,
                   time.perf_counter() - start, tuple(reasons))


def _result(h: Harness) -> str:
    """Compare the published sum with the plaintext sum of the included clients' inputs."""
    if h.result is None:
        return "aborted"
    cfg = h.config
    expected = np.zeros(cfg.dim, dtype=h.inputs[cfg.cohort[0]].dtype)
    for u in h.result.included:
        add_into(expected, h.inputs[u], cfg.modulus)
    return "exact" if np.array_equal(expected, h.result.sum) else "wrong"


def run_suite(names: Iterable[str] | None = None,
              graphs: Iterable[GraphKind] | None = None) -> list[Outcome]:
    """Run the selected scenarios (all by default) in every setting they apply to."""
    wanted = set(names) if names else None
    kinds = set(graphs) if graphs else None
    out = []
    for scenario in SCENARIOS:
        if wanted is not None and scenario.name not in wanted and scenario.id not in wanted:
            continue
        for setting in settings_for(scenario):
            if kinds is None or setting.graph in kinds:
                out.append(run_scenario(scenario, setting))
    return out


def suite_json(outcomes: Iterable[Outcome]) -> str:
    items = [o.to_dict() for o in outcomes]
    return json.dumps({"ok": all(i["ok"] for i in items), "scenarios": items}, sort_keys=True)
