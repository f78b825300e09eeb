"""examples/pytorch end to end: a server process and 10 client processes over mTLS, 3 rounds,
2 clients SIGKILLed after joining the second round's session (issue 14 §2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")  # the torch extra is part of `make test`'s install

pytestmark = pytest.mark.slow

RUN = Path(__file__).resolve().parent.parent / "examples" / "pytorch" / "run.py"


def test_ten_client_processes_three_rounds_two_killed() -> None:
    proc = subprocess.run(
        [sys.executable, str(RUN), "--clients", "10", "--rounds", "3", "--kill", "2", "--json"],
        capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    out = json.loads(proc.stdout)
    assert out["within_bound"] is True
    assert len(out["killed"]) == 2
    rounds = out["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    assert not any(r["aborted"] for r in rounds)
    assert (rounds[0]["included"], rounds[0]["dropped"]) == (10, 0)
    # killed after joining round 1: dropped there, and gone from the later cohorts
    assert sorted(rounds[1]["dropped_ids"]) == out["killed"]
    assert rounds[1]["included"] == 8
    assert (rounds[2]["included"], rounds[2]["dropped"]) == (8, 0)
    for r in rounds:
        assert not set(out["killed"]) & set(r["included_ids"]) or r["round"] == 0
        assert 0 <= r["error"] <= r["bound"] and r["within_bound"] is True
        # a killed client closes its connection: the round never waits for its deadline
        assert r["seconds"] < 30.0, r  # run.py's --round-timeout
    assert out["final_accuracy"] > max(0.5, out["initial_accuracy"] + 0.3)
