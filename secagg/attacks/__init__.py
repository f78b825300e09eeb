"""Attack suite: a scriptable malicious server and malicious clients (spec §19).

``run_suite()`` plays every scenario of :data:`SCENARIOS` in each mode and graph
it applies to and returns one :class:`Outcome` per run; ``secagg audit
--attacks`` prints them. See :mod:`secagg.attacks.harness` for the adversary's
powers, :mod:`secagg.attacks.oracle` for what counts as a breach (built on the leakage oracle
of :mod:`secagg.attacks.leakage`) and
:mod:`secagg.attacks.scenarios` for the attacks themselves.
"""

from __future__ import annotations

from .harness import Attack, Harness, Knowledge, Setting, canary_input, session_config
from .leakage import (
    AdversaryView,
    Leakage,
    RevealedShare,
    learnable,
    view_from_messages,
    view_from_transcript,
)
from .oracle import OracleVerdict, adversary_view, evaluate
from .runner import Outcome, run_scenario, run_suite, settings_for, suite_json
from .scenarios import SCENARIOS, Expect, Scenario

__all__ = [
    "SCENARIOS",
    "AdversaryView",
    "Attack",
    "Expect",
    "Harness",
    "Knowledge",
    "Leakage",
    "OracleVerdict",
    "Outcome",
    "RevealedShare",
    "Scenario",
    "Setting",
    "adversary_view",
    "canary_input",
    "evaluate",
    "learnable",
    "run_scenario",
    "run_suite",
    "session_config",
    "settings_for",
    "suite_json",
    "view_from_messages",
    "view_from_transcript",
]
