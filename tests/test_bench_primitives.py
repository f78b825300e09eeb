"""Smoke test: the primitives benchmark runs in quick mode and reports sane numbers."""

from __future__ import annotations

import json

import pytest

from bench.primitives import main


def test_quick_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quick", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["config"]["quick"] is True
    for cipher in ("aes128-ctr", "chacha20"):
        row = res["prg"][cipher]
        assert row["raw_gbps"] > 0
        for name in ("2^32", "2^32-5", "1000003"):
            assert row[f"prg_{name}_gbps"] > 0
            assert row[f"ratio_{name}"] > 0
    shamir = res["shamir"]
    assert shamir["n"] == 100 and shamir["t"] == 51
    for key in ("share_ms", "reconstruct_ms", "reconstruct_cached_ms"):
        assert shamir[key] > 0
    assert res["x25519"]["agreements_per_s"] > 0
    acc = res["accumulate"]
    for key in ("numba_2^32_ms", "numba_prime_ms", "numpy_2^32_ms"):
        assert acc[key] > 0
    assert acc["speedup_numba_vs_numpy_2^32"] > 0


def test_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "PRG/raw" in out and "Shamir" in out and "X25519" in out and "numba" in out
