"""The attack suite (spec §19): every scenario, in every mode and graph it applies to.

A scenario the mode defends must be defeated: honest clients refuse the tampered
messages, the oracle holds after the session (no honest client's two secrets
within reach, no sum over a tiny cohort, no canary in any received byte), and
the audit flags the transcript under the scenario's rule. Where the mode does
not defend the attack by design, the test asserts the opposite: the breach is
real (for S2 and S3 the oracle rebuilds the victim's input exactly), so the
threat model the spec states is the one the code has.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from secagg import cli
from secagg.attacks import (
    SCENARIOS,
    Attack,
    Expect,
    Harness,
    Setting,
    evaluate,
    run_scenario,
    settings_for,
)
from secagg.attacks import runner as runner_module
from secagg.attacks.oracle import WINDOW
from secagg.audit import audit_transcript
from secagg.config import Mode
from secagg.graph import GraphKind
from secagg.packing import bit_width, pack

CASES = [pytest.param(s, setting, id=f"{s.id}-{s.name}-{setting.mode.value}-{setting.graph.value}")
         for s in SCENARIOS for setting in settings_for(s)]
SEMI_COMPLETE = Setting(Mode.SEMI_HONEST, GraphKind.COMPLETE)
ACTIVE_COMPLETE = Setting(Mode.ACTIVE, GraphKind.COMPLETE)


def by_name(name: str):  # type: ignore[no-untyped-def]
    return next(s for s in SCENARIOS if s.name == name)


@pytest.mark.parametrize(("scenario", "setting"), CASES)
def test_scenario(scenario, setting: Setting) -> None:  # type: ignore[no-untyped-def]
    outcome = run_scenario(scenario, setting)
    expect = scenario.expect(setting)
    if expect is Expect.NOT_APPLICABLE:
        assert not setting.active and outcome.ok and outcome.verdict().startswith("n/a")
        return
    if expect is Expect.DEFENDED:
        assert outcome.defeated, outcome.reasons
        assert outcome.verdict() == "DEFEATED"
        if scenario.kind == "server":
            assert outcome.oracle is not None and outcome.oracle.holds
            if scenario.needs_refusal:
                assert outcome.refused >= 1
            if scenario.audit_rule is not None:
                assert scenario.audit_rule in outcome.flagged
        else:
            assert outcome.result in ("exact", "aborted")
            assert outcome.flagged == frozenset()
        return
    # not defended in this mode, by design: the breach must be real, and say so
    assert expect is Expect.NOT_DEFENDED and not setting.active
    assert outcome.oracle is not None and not outcome.oracle.holds
    assert outcome.ok and not outcome.counts
    assert outcome.verdict() == "not defended in semi-honest mode (by design)"
    if scenario.name in ("split-views", "key-substitution", "threshold-peers"):
        assert outcome.oracle.recovered, "the oracle should rebuild the victim's input"


def test_every_required_attack_has_a_scenario() -> None:
    names = {s.name for s in SCENARIOS}
    assert {"both-shares", "split-views", "key-substitution", "reflection", "replay-session",
            "replay-round", "bad-keys", "alive-below-t", "bad-signatures", "model-hash",
            "small-cohort", "masked-length", "masked-range", "bogus-shares",
            "bogus-shares-majority", "conflicting-duplicates"} <= names
    for s in SCENARIOS:
        assert s.expect(ACTIVE_COMPLETE) is Expect.DEFENDED, "active mode defends every attack"
        if s.expect(SEMI_COMPLETE) is not Expect.DEFENDED:
            assert s.why_not, f"{s.name}: say why semi-honest mode does not defend it"


def test_split_views_rejected_by_consistency_check() -> None:
    """Active mode: the clients told that the target dropped refuse the relay (too few
    agreeing signatures); the others unmask only their own, consistent view."""
    h = Harness(ACTIVE_COMPLETE, by_name("split-views").make(ACTIVE_COMPLETE)).run()
    attack = h.attack
    refused = {d.client for d in h.deliveries if d.round == 3 and not d.accepted}
    assert attack.told_dropped <= refused  # type: ignore[attr-defined]
    verdict = evaluate(h)
    target = attack.target  # type: ignore[attr-defined]
    b, s = verdict.max_shares[target]
    # the clients shown the target alive unmasked their (consistent) view; the others did not
    assert b >= h.config.threshold > s and verdict.holds


# --- the oracle itself ------------------------------------------------------------------------
def honest_run(setting: Setting, corrupt: frozenset[int] = frozenset()) -> Harness:
    attack = Attack()
    attack.corrupt = corrupt
    return Harness(setting, attack).run()


@pytest.mark.parametrize("setting", [SEMI_COMPLETE, ACTIVE_COMPLETE,
                                     Setting(Mode.ACTIVE, GraphKind.HARARY)],
                         ids=lambda s: f"{s.mode.value}-{s.graph.value}")
def test_honest_session_through_the_harness(setting: Setting) -> None:
    h = honest_run(setting)
    assert h.result is not None and runner_module._result(h) == "exact"
    assert evaluate(h).holds
    assert h.tampered_counts() == (0, 0)
    assert audit_transcript(h.transcript()).ok


def test_oracle_counts_corrupt_clients_shares() -> None:
    """t - 1 corrupt clients are within the model; t of them hold both shares of everyone,
    and the oracle must see it (it decrypts what was addressed to them)."""
    t = 6
    assert evaluate(honest_run(SEMI_COMPLETE, frozenset(range(1, t)))).holds
    verdict = evaluate(honest_run(SEMI_COMPLETE, frozenset(range(1, t + 1))))
    assert not verdict.holds
    assert any("b-shares and" in b for b in verdict.breaches)


def test_oracle_finds_the_canary_in_received_bytes() -> None:
    h = honest_run(SEMI_COMPLETE)
    assert evaluate(h).holds
    x = h.inputs[7]
    bits = bit_width(h.config.modulus)
    for leak in (x.tobytes(), pack(x[3:3 + WINDOW], bits), b"junk" + x[5:5 + WINDOW].tobytes()):
        h.knowledge.received.append((2, 7, leak))
        verdict = evaluate(h)
        assert any("client 7's input (canary)" in b for b in verdict.breaches), leak
        h.knowledge.received.pop()
    # a window shorter than WINDOW elements is not evidence
    h.knowledge.received.append((2, 7, x[:WINDOW - 1].tobytes()))
    assert evaluate(h).holds


def test_bogus_shares_sat_in_the_default_subset() -> None:
    """C3 is meaningful only if the bogus shares are among the first t by id, the ones a
    reconstruction without the commitment check would use."""
    attack = by_name("bogus-shares").make(SEMI_COMPLETE)
    h = Harness(SEMI_COMPLETE, attack).run()
    assert min(attack.malicious) == min(h.config.cohort)
    assert runner_module._result(h) == "exact"
    assert any("outside the Shamir field" in why for _, _, why in h.server_refusals)


# --- the command ------------------------------------------------------------------------------
def test_cli_attacks_lines_and_exit(capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["audit", "--attacks", "--scenario", "reflection", "--scenario", "S2",
                   "--graph", "complete"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    lines = [line for line in out if line[:1] in "SC"]
    assert len(lines) == 4
    assert any("split-views" in x and "not defended in semi-honest mode (by design)" in x
               for x in lines)
    assert sum("DEFEATED" in x for x in lines) == 3
    rc = cli.main(["audit", "--attacks", "--scenario", "S4", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["ok"] and {s["mode"] for s in doc["scenarios"]} == {
        "semi-honest", "active"}
    assert cli.main(["audit", "--attacks", "--scenario", "nope"]) == 2


def test_cli_attacks_fails_when_a_defence_fails(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Claiming that semi-honest mode defends split views must make the suite fail."""
    wrong = tuple(dataclasses.replace(s, semi_honest=Expect.DEFENDED)
                  if s.name == "split-views" else s for s in SCENARIOS)
    monkeypatch.setattr(runner_module, "SCENARIOS", wrong)
    rc = cli.main(["audit", "--attacks", "--scenario", "split-views", "--graph", "complete"])
    out = capsys.readouterr().out
    assert rc == 1 and "NOT DEFEATED" in out and "FAILED" in out
