"""Rate downgrade (S14) and permutation grinding (S15) caught by the auditor's policy
(rules A13, A14, spec §18.8).

Both scenarios recover an input in semi-honest mode with a server that follows the
protocol on a bad config it declared itself: the transcript is honest and the honest
clients' receipts match it, so A1..A12 pass. What gives the server away is the config
the receipts prove the clients accepted (their session id commits to every field, §3.1):
a declared corruption rate below the policy's (A13) and a round index other than the
scheduled one (A14, the grinding). Each finding names the clients and the round.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from secagg import cli
from secagg.attacks import SCENARIOS, Harness, Setting
from secagg.attacks.harness import Attack
from secagg.attacks.scenarios import POLICY_CORRUPTION
from secagg.audit import AuditReport, Status, audit_transcript
from secagg.audit_policy import AuditPolicy, check_policy, ranges
from secagg.config import Mode, SessionConfig
from secagg.errors import ConfigError
from secagg.graph import GraphKind
from secagg.policy import ClientPolicy
from secagg.receipt import Receipt, ReceiptObserver
from secagg.transcript import TranscriptRecorder

#: the round index every scenario's honest config carries (attacks.harness.session_config)
SCHEDULED = 7
#: the deployment's policy in S14/S15: the clients' own corruption rate, the round scheduled
POLICY = AuditPolicy(ClientPolicy(min_corruption_rate=POLICY_CORRUPTION), round_index=SCHEDULED)


def run(attack: Attack, mode: Mode = Mode.SEMI_HONEST) -> tuple[Harness, list[Receipt]]:
    h = Harness(Setting(mode, GraphKind.HARARY), attack)
    observer = ReceiptObserver(h.config.session_id, sorted(h.honest))
    h.run([observer])
    return h, observer.receipts(h.identities if mode is Mode.ACTIVE else None)


def scenario(scenario_id: str) -> Attack:
    s = next(s for s in SCENARIOS if s.id == scenario_id)
    return s.make(Setting(Mode.SEMI_HONEST, GraphKind.HARARY))


def finding(report: AuditReport, rule: str) -> str:
    result = next(r for r in report.results if r.rule.id == rule)
    assert result.status is Status.FAIL and len(result.findings) == 1, report.lines()
    return result.findings[0]


@pytest.mark.parametrize("scenario_id", ["S14", "S15"])
def test_the_breach_passes_every_rule_without_the_policy(scenario_id: str) -> None:
    h, receipts = run(scenario(scenario_id))
    assert h.result is not None  # the session completed: the victim's input is learnable
    report = audit_transcript(h.transcript(), receipts=receipts)
    assert report.ok, report.lines()


def test_rate_downgrade_flagged_with_clients_and_round() -> None:
    attack = scenario("S14")
    h, receipts = run(attack)
    report = audit_transcript(h.transcript(), receipts=receipts, policy=POLICY)
    assert "A13" in report.failed and not report.ok
    rates, = [f for f in next(r for r in report.results if r.rule.id == "A13").findings
              if "corruption rate" in f]
    honest = sorted(h.honest)
    assert rates == (f"round 0: clients {ranges(honest)} ({len(honest)}, by their receipts) "
                     "accepted a config declaring a corruption rate 0, below the policy's 0.1")
    assert attack.victim in h.honest  # the victim is among the clients named


def test_permutation_grinding_flagged_with_clients_and_round() -> None:
    attack = scenario("S15")
    h, receipts = run(attack)
    assert h.config.round_index != SCHEDULED  # the server ground the round index
    report = audit_transcript(h.transcript(), receipts=receipts, policy=POLICY)
    text = finding(report, "A14")
    assert text.startswith(f"round 0: clients {ranges(sorted(h.honest))} (18, by their receipts) "
                           f"accepted round index {h.config.round_index}, not the scheduled "
                           f"{SCHEDULED}:")
    assert "grind the Harary permutation" in text and "20" in ranges(sorted(h.honest))
    # the grinding is caught even by an auditor whose rates the config meets
    lenient = AuditPolicy(ClientPolicy(min_corruption_rate=0.0), round_index=SCHEDULED)
    assert audit_transcript(h.transcript(), receipts=receipts, policy=lenient).failed == {"A14"}


@pytest.mark.parametrize("mode", [Mode.SEMI_HONEST, Mode.ACTIVE])
def test_honest_session_meets_the_policy(mode: Mode) -> None:
    h, receipts = run(Attack(), mode)
    report = audit_transcript(h.transcript(), receipts=receipts,
                              policy=AuditPolicy(round_index=SCHEDULED))
    assert report.ok and report.failed == frozenset(), report.lines()
    assert [r.rule.id for r in report.results][-3:] == ["A12", "A13", "A14"]


def test_active_mode_refusal_still_shows_the_declared_config() -> None:
    """The active clients refuse the downgrade (their policy, §15.8) and send nothing; the
    config the server declared is still flagged, naming no client."""
    attack = next(s for s in SCENARIOS if s.id == "S14").make(
        Setting(Mode.ACTIVE, GraphKind.HARARY))
    h, _ = run(attack, Mode.ACTIVE)
    assert h.result is None
    report = audit_transcript(h.transcript(), policy=POLICY)
    assert "no client (none advertised keys)" in finding(report, "A14")
    assert "A13" in report.failed


def test_unsafe_threshold_at_the_policy_rates() -> None:
    """Declared rates can pass a lenient minimum and (k, t) still fail at the policy's
    rates: a policy asking 0.1 corrupt turns Harary (2, 2) at n = 20 into a finding on
    (k, t) as well as on the rate."""
    h, receipts = run(scenario("S14"))
    report = audit_transcript(h.transcript(), receipts=receipts, policy=POLICY)
    a13 = next(r for r in report.results if r.rule.id == "A13").findings
    assert len(a13) == 2 and "Harary (k, t) = (2, 2) at n = 20, unsafe" in a13[1]


def test_complete_graph_threshold_at_the_policy_rates() -> None:
    """Active complete graph, n = 10, t = 7 declared for 5 % corrupt: at a policy of 40 %
    (4 corrupt clients) 2t = 14 no longer exceeds n + C = 14 (§15.1), so A13 names the
    threshold as well as the rate; the round index matches, so A14 passes."""
    config = SessionConfig.create(range(1, 11), 4, 1 << 16, mode=Mode.ACTIVE, round_index=3)
    recorder = TranscriptRecorder()
    recorder.begin(config, None)
    recorder.publish_abort("nothing sent")
    policy = AuditPolicy(ClientPolicy(min_corruption_rate=0.4), round_index=3)
    report = check_policy(recorder.build(), policy)
    a13, a14 = report.results
    assert a13.status is Status.FAIL and a14.status is Status.PASS and not report.unchecked
    assert a13.findings[0].startswith("round 0: no client (none advertised keys) accepted a "
                                      "config declaring a corruption rate 0.05, below the "
                                      "policy's 0.4")
    assert "complete-graph t = 7 at n = 10, unsafe at the policy's rates (corruption 0.4" \
        in a13.findings[1]
    assert not check_policy(recorder.build(), AuditPolicy(round_index=3)).failed


def test_without_a_round_index_a14_is_not_checked() -> None:
    h, receipts = run(Attack())
    report = audit_transcript(h.transcript(), receipts=receipts, policy=AuditPolicy())
    assert report.ok and report.unchecked == {"A14"}


def test_policy_file_is_read_and_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"min_corruption_rate": 0.1, "round_index": 7}))
    assert AuditPolicy.read(path) == POLICY
    for bad in ({"min_corruption_rate": 1.5}, {"round_index": -1}, {"round_index": "7"},
                {"grind_margin_bits": 1.0}, {"min_corrupt": 0.1}, [1]):
        path.write_text(json.dumps(bad))
        with pytest.raises(ConfigError):
            AuditPolicy.read(path)
    path.write_text("{")
    with pytest.raises(ConfigError, match="JSON"):
        AuditPolicy.read(path)


def test_cli_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    h, receipts = run(scenario("S15"))
    transcript = tmp_path / "t.jsonl"
    transcript.write_text("".join(line + "\n" for line in h.transcript().to_lines()))
    folder = tmp_path / "receipts"
    for r in receipts:
        r.write(folder)
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"min_corruption_rate": 0.0, "round_index": SCHEDULED}))
    args = ["audit", str(transcript), "--receipts", str(folder), "--policy", str(policy)]
    assert cli.main(args) == 1
    out = capsys.readouterr().out
    assert "A14 " in out and f"accepted round index {h.config.round_index}" in out
    assert out.splitlines()[-1] == "verdict: FAIL (A14)"
    policy.write_text(json.dumps({"min_corruption_rate": 0.0}))
    assert cli.main(args) == 0
    assert "not checked: A14 (the policy names no round index)" in capsys.readouterr().out
    assert cli.main([*args[:-1], str(tmp_path / "missing.json")]) == 2


def test_ranges() -> None:
    assert ranges([3, 4, 5, 7, 9, 10]) == "3-5, 7, 9-10"
    assert ranges([]) == ""
