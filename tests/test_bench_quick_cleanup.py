"""``secagg bench SUITE --quick`` leaves no temporary folder behind (issue 14)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_runs_remove_their_temporary_folder(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    # run the command in-process, then list the temp folder before the interpreter exits
    script = ("import pathlib, sys, tempfile\n"
              "from secagg.cli import main\n"
              "code = main(sys.argv[1:])\n"
              "print('during', sorted(p.name for p in pathlib.Path(tempfile.gettempdir())"
              ".iterdir()))\n"
              "sys.exit(code)\n")
    done = subprocess.run([sys.executable, "-c", script, "bench", "primitives", "--quick",
                           "--no-plots"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    during = done.stdout.strip().splitlines()[-1]
    assert "secagg-bench-primitives-" in during  # the run did write into a temp folder ...
    assert list(tmp_path.iterdir()) == []  # ... and it is gone once the process ended
