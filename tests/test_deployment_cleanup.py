"""A stopped deployment harness leaves no process behind (bench/flower_deployment.py).

Its SuperLink, SuperNodes (and the SuperExec and ClientApp processes they start) run
in their own process groups, so a SIGTERM to the harness (``pkill``) does not reach
them: the harness must turn it into a cleanup. Checked with ``sleep`` processes in
place of Flower's, so no Flower command runs and the test stays cheap.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.flower_deployment import REPO_ROOT

_HARNESS = """
import sys, time
from bench.flower_deployment import Deployment, Stopped

class Sleepers(Deployment):
    def start(self):
        for i in range(3):  # stand-ins for the SuperLink and two SuperNodes
            self._spawn(f"sleeper-{i}", ["sleep", "600"])
        return self

try:
    with Sleepers(sys.argv[1], 2) as d:
        print(" ".join(str(p.proc.pid) for p in d.processes), flush=True)
        time.sleep(600)
except Stopped as exc:
    print(exc, flush=True)
    sys.exit(3)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0): count it as gone (its parent, the harness, is too)
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


@pytest.mark.skipif(sys.platform != "linux", reason="process groups and /proc: Linux")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_to_the_harness_stops_every_process(sig: int, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    harness = subprocess.Popen([sys.executable, "-c", _HARNESS, str(tmp_path)],
                               stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert harness.stdout is not None
        pids = [int(p) for p in harness.stdout.readline().split()]
        assert len(pids) == 3 and all(_alive(p) for p in pids)
        harness.send_signal(sig)
        harness.wait(30)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [p for p in pids if _alive(p)]
    finally:
        if harness.poll() is None:
            harness.kill()
    for pid in left:  # the test must not leave them either
        os.killpg(pid, signal.SIGKILL)
    assert not left, f"{signal.Signals(sig).name} left {left} running"
    if sig != signal.SIGINT:
        assert harness.returncode == 3
