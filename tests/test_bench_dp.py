"""``bench/dp.py`` at small size: the measured error follows the planner, wrap-around is rare."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench import dp


def test_mse_follows_the_prediction() -> None:
    rows = dp.mse_vs_bits(12, 16, 1.0, 8.0, 1e-5, 2, [16], trials=4,
                          rng=np.random.default_rng(0))
    assert {r["mechanism"] for r in rows} == {"ddg", "skellam"}
    for r in rows:
        assert r["refused"] is None
        # 4 sessions of 16 coordinates: the measured error is within a factor of the planner's
        assert r["mse_predicted"] / 3 < r["mse"] < 3 * r["mse_predicted"]


def test_no_wrap_at_the_planned_scale_and_wraps_far_past_it() -> None:
    rows = dp.wrap_vs_bound(12, 16, 1.0, 8.0, 1e-5, 2, 12, (1.0, 8.0), sessions=5,
                            rng=np.random.default_rng(0))
    planned = [r for r in rows if r["gamma_scale"] == 1.0]
    assert all(r["wrap_frequency"] == 0.0 and r["wrap_bound"] <= 1e-4 for r in planned)
    assert all(r["wrap_frequency"] > 0 for r in rows if r["gamma_scale"] == 8.0)


def test_quick_run_writes_its_files(tmp_path: Path) -> None:
    assert dp.main(["--quick", "--no-plots", "--out", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "dp.json").read_text())
    assert payload["suite"] == "dp" and payload["rows"]
    assert (tmp_path / "dp.csv").exists()


def test_quick_run_has_every_part_and_a_readme_section(tmp_path: Path) -> None:
    assert dp.main(["--quick", "--out", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "dp.json").read_text())
    parts = {r["part"] for r in payload["rows"]}
    assert parts == {"mse", "accuracy", "wrap"}
    for r in payload["rows"]:
        if r["part"] == "accuracy":
            assert r["epsilon_central_dp"] <= r["epsilon"] <= r["epsilon_target"]
    for name in ("dp_mse.png", "dp_accuracy.png", "dp_wrap.png"):
        assert (tmp_path / name).exists()
    text = dp.markdown(payload)
    assert "| mechanism | bits |" in text and "| mechanism | ε target |" in text
    assert "| mechanism | γ scale |" in text
