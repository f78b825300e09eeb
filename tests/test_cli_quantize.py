"""``secagg quantize`` / ``secagg dequantize``: a float update into Z_R and a server's sum
back into the weighted mean, refusals in one line, and the README's worked example run as
written against a real gRPC server and clients."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from secagg.cli import main
from secagg.quantize import QuantizationConfig, error_bound

ROOT = Path(__file__).resolve().parent.parent
MARKER = "<!-- tested by tests/test_cli_quantize.py -->"


def _updates(folder: Path, n: int = 3, shape: tuple[int, ...] = (4, 3)) -> list[np.ndarray]:
    rng = np.random.default_rng(4)
    ups = [rng.normal(0, 0.2, shape) for _ in range(n)]
    for i, u in enumerate(ups, start=1):
        np.save(folder / f"update-{i}.npy", u)
    return ups


def test_quantize_then_sum_then_dequantize(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The server's part is the exact sum mod R (tested in test_transport_*): here numpy."""
    ups = _updates(tmp_path, 12)
    weights = list(range(5, 17))
    common = ["--clients", "12", "--clip", "0.5", "--bits", "12", "--max-weight", "50"]
    vectors = []
    for i, w in enumerate(weights, start=1):
        out = tmp_path / f"q-{i}.npy"
        assert main(["quantize", str(tmp_path / f"update-{i}.npy"), "--out", str(out),
                     "--weight", str(w), "--seed", str(i), "--json", *common]) == 0
        info = json.loads(capsys.readouterr().out)
        assert info["dim"] == 13 and info["dtype"] == "uint32" and info["modulus_bits"] == 32
        vectors.append(np.load(out))
    included = [1, 2, 4, 5, 6, 7, 8, 9, 10, 12]  # 3 and 11 dropped before masked input
    total = sum(vectors[u - 1].astype(np.uint64) for u in included) % (1 << 32)
    np.savez(tmp_path / "sums.npz", sum=total.astype(np.uint32),
             included=np.array(included, dtype=np.uint32), sum_0=total.astype(np.uint32),
             included_0=np.array(included, dtype=np.uint32))
    mean_path = tmp_path / "mean.npy"
    assert main(["dequantize", str(tmp_path / "sums.npz"), "--out", str(mean_path),
                 "--shape", "4,3", "--session", "0", "--json", *common]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["included"] == included
    assert info["total_weight"] == sum(weights[u - 1] for u in included)
    mean = np.load(mean_path)
    clipped = [np.clip(ups[u - 1], -0.5, 0.5) for u in included]
    exact = sum(weights[u - 1] * c for u, c in zip(included, clipped, strict=True)) / sum(
        weights[u - 1] for u in included)
    bound = error_bound(QuantizationConfig(clip=0.5, bits=12, max_clients=12, max_weight=50,
                                           modulus_bits=32))
    assert mean.shape == (4, 3)
    assert np.abs(mean - exact).max() <= bound


def test_refusals_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _updates(tmp_path, 1)
    update = str(tmp_path / "update-1.npy")
    out = str(tmp_path / "q.npy")
    cases = [
        (["quantize", update, "--out", out, "--clients", "100000", "--bits", "32",
          "--max-weight", "1000"], "modulus"),
        (["quantize", update, "--out", out, "--clients", "3", "--weight", "2"], "weight"),
        (["quantize", str(tmp_path / "none.npy"), "--out", out, "--clients", "3"],
         "no such file"),
        (["quantize", update, "--out", str(tmp_path / "no" / "q.npy"), "--clients", "3"],
         "does not exist"),
        (["dequantize", update, "--out", out, "--clients", "3"], "not the server's .npz"),
    ]
    for argv, words in cases:
        assert main(argv) == 2, argv
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.count("\n") == 1 and "refused" in captured.err, captured.err
        assert words in captured.err, captured.err
    np.savez(tmp_path / "sums.npz", sum=np.zeros(12, dtype=np.uint32),
             included=np.array([1, 2, 3], dtype=np.uint32))
    assert main(["dequantize", str(tmp_path / "sums.npz"), "--out", out, "--clients", "3",
                 "--session", "4"]) == 2
    assert "no sum_4" in capsys.readouterr().err
    assert main(["dequantize", str(tmp_path / "sums.npz"), "--out", out, "--clients", "3",
                 "--shape", "5,3"]) == 2
    assert "holds 15 values" in capsys.readouterr().err
    assert not Path(out).exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def readme_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(re.escape(MARKER) + r"\s*```sh\n(.*?)```", text, re.DOTALL)
    assert found is not None, "the README's quantize example is gone"
    return found.group(1)


@pytest.mark.slow
def test_readme_worked_example_runs(tmp_path: Path) -> None:
    """The README's block, as written (only the port is a free one), with real processes."""
    ups = _updates(tmp_path)
    script = readme_block().replace("50051", str(_free_port()))
    prelude = f'secagg() {{ "{sys.executable}" -m secagg "$@"; }}\n'
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run(["bash", "-e", "-c", prelude + script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    mean = np.load(tmp_path / "mean.npy")
    weights = [10, 20, 30]
    exact = sum(w * np.clip(u, -1, 1) for w, u in zip(weights, ups, strict=True)) / 60
    bound = error_bound(QuantizationConfig(clip=1.0, bits=16, max_clients=3, max_weight=100,
                                           modulus_bits=32))
    assert mean.shape == (4, 3)
    assert np.abs(mean - exact).max() <= bound
    assert "mean of 3 clients (total weight 60)" in done.stdout
