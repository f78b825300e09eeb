"""Split views caught by the honest clients' receipts (spec §18.6, §12.2 a-b).

The semi-honest scenarios that succeed by design (S2 split views, S3 key
substitution, S12 threshold peers, S16 asymmetric bundles) show different clients
different things. A server that records its transcript honestly is caught by
A3/A4/A7 already; a server that records instead what an honest server would have
sent (a consistent transcript, passing the rules that compare the transcript
with itself) is caught by A12: the honest clients' receipts list messages that
transcript does not contain, and the finding names the client and the round.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import pytest

from secagg.attacks import SCENARIOS, Harness, Setting
from secagg.audit import audit_transcript
from secagg.config import Mode
from secagg.graph import GraphKind
from secagg.messages import ServerMessage
from secagg.receipt import ReceiptObserver
from secagg.rounds import Round
from secagg.session import SessionObserver
from secagg.transcript import TranscriptRecorder

SPLIT = {"S2": GraphKind.COMPLETE, "S3": GraphKind.COMPLETE, "S12": GraphKind.COMPLETE,
         "S16": GraphKind.HARARY}


class ServerViewRecorder(SessionObserver):
    """The transcript a lying server writes: what it received, and what the honest server
    would have sent (before the attack's relay changed it)."""

    def __init__(self, recorder: TranscriptRecorder) -> None:
        self.recorder = recorder

    def on_up(self, round: Round, client_id: int, data: bytes) -> None:
        self.recorder.up(int(round), client_id, data)

    def on_round_closed(self, round: Round, outgoing: Mapping[int, ServerMessage]) -> None:
        for u, m in sorted(outgoing.items()):
            self.recorder.down(int(round), u, m.encode())


@pytest.mark.parametrize("scenario_id", sorted(SPLIT))
def test_split_view_caught_by_receipts(scenario_id: str) -> None:
    scenario = next(s for s in SCENARIOS if s.id == scenario_id)
    setting = Setting(Mode.SEMI_HONEST, SPLIT[scenario_id])
    attack = scenario.make(setting)
    h = Harness(setting, attack)
    lying = TranscriptRecorder()
    lying.begin(h.config, h.trust)
    receipts = ReceiptObserver(h.config.session_id, sorted(h.honest))
    h.run([receipts, ServerViewRecorder(lying)])
    if h.result is not None:
        lying.publish_result(h.result.sum, h.result.included, h.config.modulus)
    else:
        lying.publish_abort(h.abort_reason or "")
    kept = receipts.receipts()
    # the attack worked as designed: an honest client accepted a tampered message
    assert any(d.tampered and d.accepted and d.client in h.honest for d in h.deliveries)
    # the honest transcript: it contains everything the receipts list (a message the
    # client refused is in the transcript, not in the receipt of what it accepted), and
    # the rules comparing the transcript with itself flag the attack
    honest = audit_transcript(h.transcript(), receipts=kept)
    assert scenario.audit_rule in honest.failed
    assert not [f for f in honest.results[-1].findings
                if "the transcript does not contain" in f], honest.lines()
    # the lying transcript: A12 names the client and the round shown another message
    report = audit_transcript(lying.build(), receipts=kept)
    assert report.failed == {"A12"}, report.lines()  # A1..A11 alone would pass it
    a12 = report.results[-1].findings
    pattern = re.compile(r"^client (\d+), round (\d): the server showed the client a message")
    shown = [pattern.match(f) for f in a12]
    named = {(int(m.group(1)), int(m.group(2))) for m in shown if m}
    tampered = {(d.client, d.round) for d in h.deliveries
                if d.tampered and d.accepted and d.client in h.honest}
    assert named and named <= tampered, (named, tampered)
